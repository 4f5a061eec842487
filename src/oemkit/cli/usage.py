"""`oemkit usage report` (on the customer host) and `oemkit usage verify` (at the vendor):
thin commands over oemkit.host.usage and oemkit.models.usage (docs/USAGE.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from oemkit.cli._keys import KEY_HELP, PinFile, Pkcs11Module
from oemkit.cli._options import JsonOut
from oemkit.cli._output import emit_json, err, guard, int_option, safe

usage_app = typer.Typer(
    rich_markup_mode=None,
    help="Metered usage: sign the host's counts for billing, and check them at the vendor.",
    no_args_is_help=True)


def _installed_licenses(prefix: Path) -> list[str]:
    """The ids of the licenses an install serves under (its slot's and prefix's
    ``licenses/*.lic``; read unverified, only to choose which usage to report)."""
    from oemkit.errors import InputError, OemkitError
    from oemkit.license import read_claims

    if not prefix.is_dir():
        raise InputError("E_NOT_FOUND", f"the install prefix {prefix} does not exist",
                         hint="pass the --prefix the release was installed into")
    ids = []
    for folder in (prefix / "current" / "licenses", prefix / "licenses"):
        for path in sorted(folder.glob("*.lic")) if folder.is_dir() else []:
            try:
                claims, _ = read_claims(path.read_bytes()[:1 << 20], str(path))
            except (OSError, OemkitError):
                continue
            if claims.metering and claims.license_id not in ids:
                ids.append(claims.license_id)
    return ids


def _totals(report: Any) -> str:
    parts = [f"{name} {t['requests']} requests / {t['rows']} rows"
             for name, t in report.totals.items()]
    return ", ".join(parts) or "no inferences"


@usage_app.command("report")
def report(
    prefix: Path = typer.Option(..., "--prefix", help="Install prefix whose usage to report."),
    key: str = typer.Option(..., "--key", metavar="KEY",
                            help="This host's signing key (private)." + KEY_HELP),
    out: Path = typer.Option(..., "--out", help="Where to write FILE.oemu."),
    license_id: str | None = typer.Option(None, "--license-id",
                                          help="Which metered license (default: the one "
                                               "the install uses)."),
    fingerprint: Path | None = typer.Option(None, "--fingerprint",
                                            help="The fingerprint the vendor holds (default: "
                                                 "the license's hardware binding)."),
    state: Path | None = typer.Option(None, "--state", help="License state file the runtime "
                                      "uses (default: $OEMKIT_STATE or ~/.local/state/...)."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Sign the inferences counted since the last report, with the next sequence number.

    Example: oemkit usage report --prefix /opt/vision --key host.key --out usage-7.oemu
    """
    with guard(json_out):
        from oemkit.cli._keys import load_key
        from oemkit.host.license_state import default_state_path, read_fingerprint
        from oemkit.host.usage import make_report

        candidates = _installed_licenses(prefix)
        salt = read_fingerprint(fingerprint)["salt"] if fingerprint is not None else None
        signer = load_key(key, pin_file, pkcs11_module)
        made = make_report(state or default_state_path(), signer, out,
                           license_id=license_id, candidates=candidates, salt=salt)
        r = made.report
        if json_out:
            emit_json({"ok": True, "report": str(out), "digest": made.digest,
                       **r.to_dict()})
        err.print(f"Wrote {safe(out)}: usage report {r.seq} of license {safe(r.license_id)}, "
                  f"{r.period_start:%Y-%m-%d %H:%M} to {r.period_end:%Y-%m-%d %H:%M} UTC: "
                  f"{safe(_totals(r))}; signed by host key {signer.keyid[:16]}…")


@usage_app.command("status")
def status(
    state: Path | None = typer.Option(None, "--state", help="License state file the runtime "
                                      "uses (default: $OEMKIT_STATE or ~/.local/state/...)."),
    json_out: JsonOut = False,
) -> None:
    """Show what the meter holds on this host: per license the reports made and what is
    counted since, and the unsaved counts a shutdown left (read-only, no lock taken).

    Exit 0; 4 (E_USAGE_STATE) when the usage state or an unsaved file is not usable.
    Example: oemkit usage status --state /var/lib/oemkit/license-state.json
    """
    with guard(json_out):
        from oemkit.errors import EnvironmentProblem
        from oemkit.host.license_state import default_state_path
        from oemkit.host.usage import usage_summary

        doc = usage_summary(state or default_state_path())
        if json_out:
            emit_json({"ok": "error" not in doc and not any(
                "error" in u for u in doc["unsaved"]), **doc})
        if not doc["present"] and not doc["unsaved"]:
            err.print(f"Nothing metered on this host yet ({safe(doc['path'])} does not exist)")
        for lid, u in doc["licenses"].items():
            since = u["reported_until"] or u["first"] or "-"
            err.print(f"{safe(lid)}: {u['seq']} report(s) made; since {safe(since)}: "
                      f"{u['unreported_requests']} requests / {u['unreported_rows']} rows "
                      f"over {u['days']} day(s)"
                      + ("" if u["salt_known"] else "; no hardware salt recorded (the "
                         "report needs --fingerprint)"))
        waiting = sum(u.get("requests", 0) for u in doc["unsaved"])
        if doc["unsaved"]:
            err.print(f"{len(doc['unsaved'])} unsaved file(s) with {waiting} request(s) wait "
                      "beside the usage state: the next flush or report adds them")
        bad = doc.get("error") or next((u["error"] for u in doc["unsaved"] if "error" in u),
                                       None)
        if bad is not None:
            raise EnvironmentProblem("E_USAGE_STATE", bad["message"], hint=bad["hint"])


def _load_ledger(path: Path, *, create: bool) -> Any:
    from oemkit._fs import read_input
    from oemkit.models.usage import Ledger

    if create and not path.exists():
        return Ledger()
    return Ledger.from_bytes(read_input(path, "usage ledger"), str(path))


@usage_app.command("verify")
def verify(
    file: Path = typer.Argument(..., help="The usage report (.oemu)."),
    fingerprint: Path = typer.Option(..., "--fingerprint",
                                     help="The customer host's fingerprint file."),
    host_key: Path | None = typer.Option(None, "--host-key",
                                         help="Pin the host's public key (default: the "
                                              "ledger's, else the report's own)."),
    ledger: Path | None = typer.Option(None, "--ledger", help="Accepted reports so far."),
    record: bool = typer.Option(False, "--record", help="With --ledger: record the report "
                                "as accepted (the ledger is created if missing)."),
    last_seq: int | None = typer.Option(None, "--last-seq",
                                        parser=int_option("--last-seq", 0),
                                        help="Without a ledger: the last accepted sequence."),
    match: int | None = typer.Option(None, "--match", parser=int_option("--match", 1),
                                     help="Fingerprint components that must match "
                                          "(default: all)."),
    allow_gap: bool = typer.Option(False, "--allow-gap",
                                   help="Accept a report after missing ones."),
    json_out: JsonOut = False,
) -> None:
    """Check a usage report before billing: signature, host, sequence (no replay, no gap).

    Example: oemkit usage verify usage-7.oemu --fingerprint acme.fp --ledger acme.ledger
    --record
    """
    with guard(json_out):
        import contextlib

        from oemkit._fs import atomic_write_bytes
        from oemkit._lock import exclusive_lock
        from oemkit.crypto.armor import read_armored
        from oemkit.crypto.keys import load_public_file
        from oemkit.errors import UsageError
        from oemkit.host.license_state import read_fingerprint
        from oemkit.models.usage import verify_report

        if record and ledger is None:
            raise UsageError("E_USAGE", "--record needs --ledger",
                             hint="pass the ledger file to record the report in")
        if ledger is not None and last_seq is not None:
            raise UsageError("E_USAGE", "choose one of --ledger and --last-seq",
                             hint="the ledger already holds the last accepted sequence")
        fp = read_fingerprint(fingerprint)
        pinned = load_public_file(host_key) if host_key is not None else None
        data = read_armored(file, "usage report")
        with contextlib.ExitStack() as stack:
            book = None
            if ledger is not None:
                if record:
                    stack.enter_context(exclusive_lock(
                        ledger.with_name(ledger.name + ".lock"), f"the ledger {ledger}"))
                book = _load_ledger(ledger, create=record)
            checked = verify_report(data, fingerprint=fp, host_key=pinned, ledger=book,
                                    last_seq=last_seq, match=match, allow_gap=allow_gap,
                                    what=str(file))
            if record and book is not None and ledger is not None:
                atomic_write_bytes(ledger, book.record(checked).to_bytes())
        r = checked.report
        if json_out:
            emit_json({"ok": True, "recorded": record, **checked.to_dict()})
        err.print(f"[bold green]VERIFIED[/] usage report {r.seq} of license "
                  f"{safe(r.license_id)}: {r.period_start:%Y-%m-%d %H:%M} to "
                  f"{r.period_end:%Y-%m-%d %H:%M} UTC, {safe(_totals(r))}; host "
                  f"{checked.matched}/{checked.of} fingerprint components, key "
                  f"{checked.keyid[:16]}…" + (f"; recorded in {safe(ledger)}" if record
                                              else ""))
