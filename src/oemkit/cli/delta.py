"""`oemkit delta` and `oemkit patch`: thin commands over oemkit.release.delta and
oemkit.release.patch (docs/DELTA.md). `oemkit upgrade --delta` is in cli/install.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from oemkit.cli._keys import KEY_HELP, PinFile, Pkcs11Module
from oemkit.cli._options import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_MEMBER,
    DEFAULT_MAX_PAYLOAD,
    JsonOut,
    MaxFiles,
    MaxMember,
    MaxPayload,
    TrustPinned,
)
from oemkit.cli._output import (
    emit_json,
    err,
    guard,
    human_bytes,
    limits,
    progress,
    safe,
)
from oemkit.errors import UsageError


def _pairs(values: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        new, sep, old = value.partition("=")
        if not sep or not new or not old:
            raise UsageError("E_USAGE", f"--pair {value!r} is not NEWPATH=OLDPATH",
                             hint="name a NEW payload path, '=', and the OLD payload path it "
                                  "should be patched against: --pair model/v2.onnx=model/v1.onnx")
        pairs[new] = old
    return pairs


def _payload_bytes(bundle: Path) -> int | None:
    """The payload's file bytes (a progress bar's total), when stderr is a terminal."""
    if not err.is_terminal:
        return None
    from oemkit.errors import OemkitError
    from oemkit.verify.bundle import inspect_bundle

    try:
        return inspect_bundle(bundle).manifest.payload_size
    except OemkitError:
        return None  # the command itself says what is wrong


def _explain(doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="payload files", title_justify="left")
    for column in ("path", "op", "size", "delta bytes"):
        table.add_column(column, justify="right" if column != "path" and column != "op"
                         else "left")
    for f in doc["files"]:
        table.add_row(safe(f["path"]), f["op"], human_bytes(f["size"]),
                      human_bytes(f["cost"]))
    err.print(table)
    members = Table(title="bundle members", title_justify="left")
    for column in ("member", "op", "size", "delta bytes"):
        members.add_column(column, justify="right" if column in ("size", "delta bytes")
                           else "left")
    for m in doc["members"]:
        members.add_row(safe(m["name"]), m["op"], human_bytes(m["size"]),
                        human_bytes(m["cost"]))
    err.print(members)


def delta(
    old: Path = typer.Argument(..., help="The release the site has (OLD.oemb)."),
    new: Path = typer.Argument(..., help="The release to ship (NEW.oemb)."),
    out: Path | None = typer.Option(None, "--out", help="Delta file to write (NEW.oemd)."),
    key: list[str] = typer.Option([], "--key", metavar="KEY", help="Sign the delta with this "
                                  "bundle key (repeat for several)." + KEY_HELP),
    pair: list[str] = typer.Option([], "--pair", help="NEWPATH=OLDPATH: patch a renamed "
                                   "file against its old name (repeat)."),
    explain: bool = typer.Option(False, "--explain", help="Print per file: reused, patched "
                                 "or whole, and the bytes each costs; write nothing."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Write what changed from OLD to NEW: NEW's manifest and signatures as they are, each
    payload file NEW shares with OLD by digest named only, each changed one as a zstd
    patch against its OLD counterpart (or whole, when that is smaller).

    Example: oemkit delta dist/example-0.2.0.oemb dist/example-0.3.0.oemb --out
    example-0.3.0.oemd --key keys/bundle.key
    """
    with guard(json_out):
        if out is None and not explain:
            raise UsageError("E_USAGE", "oemkit delta needs --out FILE (or --explain)",
                             hint="oemkit delta OLD.oemb NEW.oemb --out NEW.oemd")
        if explain and (out is not None or key):
            raise UsageError("E_USAGE", "--explain writes nothing: it takes no --out or --key",
                             hint="run it without --out and --key, then again to write")
        from oemkit.cli._keys import load_keys
        from oemkit.release.delta import make_delta

        keys = load_keys(key, pin_file, pkcs11_module, usage="bundle", command="oemkit delta")
        with progress("comparing", _payload_bytes(new)) as cb:
            result = make_delta(old, new, out, keys=keys, pairs=_pairs(pair), force=force,
                                limits=limits(max_files, max_member, max_payload), progress=cb)
        doc = result.to_dict()
        if explain and not json_out:
            _explain(doc)
        if json_out:
            emit_json(doc)
        totals = doc["totals"]
        what = "would be" if explain else "is"
        err.print(f"{'Planned' if explain else 'Wrote'} "
                  f"{safe(out) if out else 'a delta'}: {human_bytes(result.size)} (the full "
                  f"bundle {what} {human_bytes(result.new_bundle_size)}, "
                  f"{result.size / max(result.new_bundle_size, 1):.1%}); files reused "
                  f"{totals['reused']}, patched {totals['patched']}, whole {totals['whole']}; "
                  f"payload {human_bytes(totals['payload_cost'])}, metadata "
                  f"{human_bytes(totals['metadata_cost'])}")
        for keyid in result.signers:
            err.print(f"Signed with key {safe(keyid)}")


def patch(
    *,
    old: Path = typer.Argument(..., help="The release the delta was made from (OLD.oemb)."),
    delta_file: Path = typer.Argument(..., metavar="DELTA", help="The delta (NEW.oemd)."),
    out: Path = typer.Option(..., "--out", help="NEW bundle to write."),
    trust: TrustPinned,
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Rebuild NEW from OLD and a delta, byte for byte, and verify it against the trust
    root before writing it; a wrong OLD, a tampered or truncated delta writes nothing.

    Example: oemkit patch example-0.2.0.oemb example-0.3.0.oemd --out example-0.3.0.oemb
    --trust trust-root.json
    """
    with guard(json_out):
        from oemkit.release.patch import patch_bundle

        with progress("rebuilding", _payload_bytes(old)) as cb:
            result = patch_bundle(old, delta_file, out, trust, force=force,
                                  limits=limits(max_files, max_member, max_payload), progress=cb)
        if json_out:
            emit_json(result.to_dict())
        signed = (f"delta signed by {', '.join(safe(k[:16]) for k in result.signers)}"
                  if result.signers else "delta unsigned")
        err.print(f"Rebuilt {safe(result.path)}: {safe(result.name)} {safe(result.version)}, "
                  f"{result.files} files, {result.size} bytes; verified against the trust "
                  f"root ({signed})")
