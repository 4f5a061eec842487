"""`oemkit trust sign`, `trust merge` and `trust status`: a trust-root change signed by
root-key holders on their own machines (docs/TRUST.md, "A ceremony across machines").

A proposal (`trust init/add-key/... --propose`) is an ordinary trust-root document with
too few signatures; each holder adds theirs (`sign`), or the copies they signed are
joined (`merge`); `status` says who has signed and who is missing, and exits 0 only when
verifiers would accept the document as it is. Thin commands over oemkit.release.trust and
oemkit.verify.trust.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from oemkit.cli._keys import KEY_HELP, PinFile, Pkcs11Module
from oemkit.cli._options import JsonOut
from oemkit.cli._output import emit_json, err, guard, safe

if TYPE_CHECKING:
    from oemkit.verify.trust import ProposalStatus, SignedRoot

CurrentRoot = typer.Option(None, "--current", help="The trust root in force, which the "
                           "proposal follows (needed for every version after 1).")


def status_doc(status: ProposalStatus) -> dict[str, Any]:
    """The status as JSON: each requirement's need, signed and missing names."""
    def part(need: Any) -> dict[str, Any] | None:
        return None if need is None else {
            "of": need.of, "need": need.need, "signed": list(need.signed),
            "missing": list(need.missing), "met": need.met}

    return {"version": status.version, "complete": status.complete,
            "own": part(status.own), "chain": part(status.chain),
            "unknown_signatures": status.unknown}


def print_status(status: ProposalStatus, path: Path) -> None:
    """Who has signed the proposal and who is still needed (stderr)."""
    for need in (status.chain, status.own):
        if need is None:
            continue
        names = ", ".join(safe(n) for n in need.signed) or "none"
        line = f"  {need.of}'s root keys: {len(need.signed)} of {need.need} needed ({names})"
        if not need.met:
            line += f"; still needed: {need.need - len(need.signed)} of " + ", ".join(
                safe(n) for n in need.missing)
        err.print(line)
    if status.unknown:
        err.print(f"  {status.unknown} signature(s) by no root key (ignored by verifiers)")
    err.print(f"Complete: {safe(path)} is trust root v{status.version} as it is"
              if status.complete else
              f"Not complete: verifiers refuse {safe(path)} until the missing holders sign")


def _interactive() -> bool:
    """Whether a person can answer (stdin is a terminal)."""
    return sys.stdin.isatty()


def _read(path: Path) -> SignedRoot:
    from oemkit._fs import read_input

    return _parse(read_input(path, "trust-root proposal"), path)


def _parse(data: bytes, path: Path) -> SignedRoot:
    from oemkit.verify.trust import parse_root

    return parse_root(data, str(path), proposal=True)


def _current(path: Path | None) -> Any:
    if path is None:
        return None
    from oemkit.cli.root import _current_root

    return _current_root(path).root


def _changes(proposal: SignedRoot, current: Any) -> list[str]:
    """What the proposal changes against the version in force, one line each (its key
    names are the proposal's, so printed through ``safe``)."""
    new = proposal.root
    if current is None:
        return [f"creates trust root v1: {len(new.keys)} key(s), root threshold "
                f"{new.thresholds['root']}"]
    lines = []
    for key in new.keys:
        old = current.key(key.keyid)
        if old is None:
            lines.append(f"adds {safe(key.name)} ({key.keyid[:16]}…) for "
                         f"{','.join(key.usage)}")
        elif old.status != key.status:
            lines.append(f"marks {safe(key.name)} ({key.keyid[:16]}…) {key.status}")
    lines += [f"drops {safe(k.name)} ({k.keyid[:16]}…)" for k in current.keys
              if new.key(k.keyid) is None]
    lines += [f"sets the {u} threshold {current.thresholds[u]} -> {n}"
              for u, n in new.thresholds.items() if current.thresholds.get(u) != n]
    return lines or ["changes no key and no threshold"]


def trust_sign(
    proposal: Path = typer.Argument(..., help="The proposal (rewritten atomically)."),
    key: list[str] = typer.Option(..., "--key", metavar="KEY",
                                  help="Your root key (repeat)." + KEY_HELP),
    current: Path | None = CurrentRoot,
    out: Path | None = typer.Option(None, "--out", help="Write here instead of over "
                                    "PROPOSAL."),
    yes: bool = typer.Option(False, "--yes", help="Sign without asking (a terminal is "
                             "asked to confirm the changes shown)."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Add your root key's signature to a trust-root proposal, after showing what it
    changes (and, on a terminal, asking); signing again with the same key changes nothing.

    Example: oemkit trust sign trust-root-v3.proposal.json --current trust-root.json
    --key 'pkcs11:token=release-b;object=root-b'
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit.cli.root import _root_keys
        from oemkit.release.trust import sign_proposal
        from oemkit.verify.trust import proposal_status

        signed = _read(proposal)
        root = _current(current)
        proposal_status(signed, root)  # version, rollback, revocations: before any PIN
        for line in _changes(signed, root):
            err.print(f"  v{signed.root.version} {line}")
        if not yes and _interactive() and not typer.confirm(
                f"Sign trust root v{signed.root.version} as shown?", default=False,
                err=True):
            from oemkit.errors import UsageError

            raise UsageError("E_USAGE", f"{proposal} was not signed: not confirmed",
                             hint="run it again and answer y, or pass --yes")
        keys = _root_keys(key, pin_file, pkcs11_module)
        doc, added, already = sign_proposal(signed, keys, root)
        target = out or proposal
        atomic_write_bytes(target, doc)
        status = proposal_status(_parse(doc, target), root)
        if json_out:
            emit_json({"ok": True, "path": str(target), "signed": added,
                       "already_signed": already, "proposal": status_doc(status)})
        for kid in already:
            err.print(f"{kid[:16]}… had signed already: nothing added")
        err.print(f"Signed {safe(target)} with {len(added)} key(s)")
        print_status(status, target)


def trust_merge(
    proposals: list[Path] = typer.Argument(..., help="Copies of one proposal, each signed "
                                           "by some holders."),
    out: Path = typer.Option(..., "--out", help="Where to write the joined proposal."),
    current: Path | None = CurrentRoot,
    json_out: JsonOut = False,
) -> None:
    """Join the signatures of copies of one proposal (signed in parallel on separate
    machines) into one document; each root key counts once.

    Example: oemkit trust merge signed-a.json signed-b.json --current trust-root.json
    --out trust-root-v3.json
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit.release.trust import merge_proposals
        from oemkit.verify.trust import proposal_status

        root = _current(current)
        doc, dropped = merge_proposals([(str(p), _read(p)) for p in proposals], root)
        atomic_write_bytes(out, doc)
        status = proposal_status(_parse(doc, out), root)
        if json_out:
            emit_json({"ok": True, "path": str(out), "dropped_signatures": dropped,
                       "proposal": status_doc(status)})
        err.print(f"Merged {len(proposals)} copies into {safe(out)}"
                  + (f" ({dropped} duplicate or foreign signature(s) dropped)"
                     if dropped else ""))
        print_status(status, out)


def trust_status(
    proposal: Path = typer.Argument(..., help="A trust-root proposal (or a trust root)."),
    current: Path | None = CurrentRoot,
    json_out: JsonOut = False,
) -> None:
    """Show what a proposal changes, who has signed it and who is missing; exit 0 only
    when verifiers accept it as it is (else E_TRUST_THRESHOLD, exit 1).

    Example: oemkit trust status trust-root-v3.proposal.json --current trust-root.json
    """
    with guard(json_out):
        from oemkit.verify.trust import proposal_status, require_complete

        signed = _read(proposal)
        root = _current(current)
        status = proposal_status(signed, root)
        if not json_out:
            for line in _changes(signed, root):
                err.print(f"  v{signed.root.version} {line}")
            print_status(status, proposal)
        require_complete(status, f"the proposal {proposal}")
        if json_out:
            emit_json({"ok": True, "path": str(proposal), "proposal": status_doc(status)})
