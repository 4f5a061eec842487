"""`oemkit split` and `oemkit join`: carry a bundle on removable media (docs/MEDIA.md).

Plain functions, registered on the app by ``cli/root.py``. Only typer and
``cli._output`` are imported at module level, so ``oemkit --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

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
    check_table,
    emit_json,
    err,
    file_size,
    guard,
    int_option,
    limits,
    progress,
    safe,
)

# host.media.MAX_PARTS, not imported: that module is loaded only when a command runs,
# so that `oemkit --help` stays fast (tests check the two agree).
MAX_PARTS = typer.Option(4096, "--max-parts", parser=int_option("--max-parts", 1, 10_000_000),
                         help="Reader limit: parts in one split (the index is bounded by "
                              "it before it is parsed). Give split and join the same value.")


def split(
    bundle: Path = typer.Argument(..., help="Bundle to split."),
    size: str = typer.Option(..., "--size", help="Largest part file: 4G (GiB), 4000M, 4700MB "
                             "(decimal), or bytes. FAT32 holds at most 4G minus one byte."),
    out: Path | None = typer.Option(None, "--out", help="Directory for the parts and the "
                                    "index (default: beside the bundle)."),
    key: list[str] = typer.Option([], "--key", metavar="KEY", help="Bundle-signing key to "
                                  "sign the index (repeat for several). Without it the index "
                                  "is unsigned, bound to the bundle's signed manifest digest."
                                  + KEY_HELP),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
    max_parts: int = MAX_PARTS,
) -> None:
    """Split a bundle into numbered parts and an index (each part's size and SHA-256).

    Example: oemkit split dist/model-1.0.oemb --size 4000M --out /media/usb --key
    keys/bundle.key
    """
    with guard(json_out):
        from oemkit.cli._keys import load_keys
        from oemkit.host.media import parse_size, split_bundle

        part_size = parse_size(size)
        keys = load_keys(key, pin_file, pkcs11_module, usage="bundle", command="oemkit split")
        total = 2 * file_size(bundle)
        with progress("splitting", total) as cb:
            result = split_bundle(bundle, part_size, out, keys=keys, progress=cb,
                                  limits=limits(max_files, max_member, max_payload),
                                  max_parts=max_parts)
        idx = result.index_data
        if json_out:
            emit_json({"ok": True, "bundle": str(bundle), "index": str(result.index),
                       "signed_by": list(result.signed_by), "part_size": idx.part_size,
                       "parts": [{**p.to_dict(), "path": str(path)}
                                 for p, path in zip(idx.parts, result.parts, strict=True)]})
        for p, path in zip(idx.parts, result.parts, strict=True):
            err.print(f"  {safe(path, markup=False)}  {p.size} bytes  sha256 {p.sha256}",
                      markup=False)
        how = (f"signed by {', '.join(k[:16] + '…' for k in result.signed_by)}"
               if result.signed_by else "unsigned, bound to manifest sha256 "
               f"{idx.manifest_sha256[:16]}…")
        err.print(f"Split {safe(bundle, markup=False)} ({idx.bundle_size} bytes) into "
                  f"{len(idx.parts)} part(s); index {safe(result.index, markup=False)} ({how})",
                  markup=False)
        err.print("Carry the index with the parts (it is small: put a copy on every "
                  "medium). Join with: oemkit join INDEX PARTS... --trust ROOT", markup=False)


def join(
    *,
    parts: list[Path] = typer.Argument(..., help="Part files (any order), and the index "
                                       "(else it is looked for beside the parts)."),
    trust: TrustPinned,
    out: Path | None = typer.Option(None, "--out", help="Joined bundle (default: "
                                    "NAME-VERSION.oemb of its verified manifest, in the "
                                    "current directory or in --out if that is a "
                                    "directory). Never replaces an existing file."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file "
                               "(never a directory, never a part, the index or the trust "
                               "root)."),
    index: Path | None = typer.Option(None, "--index", help="The index, if not among PARTS "
                                      "or beside them."),
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
    max_parts: int = MAX_PARTS,
) -> None:
    """Check parts against the index, reassemble, verify, and write the bundle.

    Every part is checked before anything is joined; missing, truncated, damaged,
    foreign, mislabelled and duplicated parts are all named. Good parts are kept, so
    running join again with the missing ones (one medium at a time if need be) resumes.
    The parts are never modified or deleted; the bundle appears only once it verifies,
    named NAME-VERSION.oemb from its verified manifest unless --out says otherwise, and
    an existing file is never replaced unless --force.
    Example: oemkit join /media/usb/model-1.0.oemb.* --trust trust-root.json
    """
    with guard(json_out):
        from oemkit.host.media import plan_join

        plan = plan_join(parts, trust, out=out, index=index,
                         limits=limits(max_files, max_member, max_payload), force=force,
                         max_parts=max_parts)
        total = plan.pending_bytes() + plan.index.bundle_size
        with progress("joining and verifying", total) as cb:
            result = plan.run(cb, cb)
        report = result.report
        if json_out:  # "error" as for every failed command: the verdict's own error
            doc = report.to_dict()
            emit_json({"ok": report.ok, "bundle": str(result.path) if report.ok else None,
                       "copied": result.copied, "reused": result.reused,
                       "index_signers": list(result.index_signers),
                       "error": doc["error"], "report": doc})
        check_table(report.checks)
        if not report.ok:
            code = report.error.code if report.error is not None else "?"
            err.print(f"[bold red]REJECTED[/] the joined bundle: {code}; "
                      "nothing was written")
            raise typer.Exit(1)
        count = len(result.index.parts)
        err.print(f"[bold green]JOINED[/] {safe(result.path)}: {safe(report.name)} "
                  f"{safe(report.version)}, "
                  f"{count} part{'' if count == 1 else 's'} ({len(result.copied)} copied now, "
                  f"{len(result.reused)} from an earlier run), verified (trust root "
                  f"v{report.trust_root_version})")


