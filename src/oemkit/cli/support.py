"""`oemkit support collect` and `oemkit support inspect`: thin commands over
oemkit.host.support (docs/SUPPORT.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from oemkit.cli._keys import KEY_HELP, PinFile, Pkcs11Module
from oemkit.cli._options import JsonOut
from oemkit.cli._output import (
    emit_json,
    err,
    guard,
    human_bytes,
    int_option,
    safe,
)

support_app = typer.Typer(
    rich_markup_mode=None,
    help="Support bundles: collect what a vendor needs to diagnose a host, inspect one.",
    no_args_is_help=True)


def _files(doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="collected files", title_justify="left")
    for column in ("path", "size", "truncated", "redactions"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for f in doc["files"]:
        cut = f"from {human_bytes(f['original_size'])}" if f["truncated"] else ""
        table.add_row(safe(f["path"]), human_bytes(f["size"]), cut,
                      str(f["redactions"] or ""))
    err.print(table)
    for note in doc["notes"]:
        err.print(f"[yellow]note[/]: {safe(note)}")


@support_app.command("collect")
def collect(
    prefix: Path = typer.Option(..., "--prefix", help="The install prefix."),
    out: Path | None = typer.Option(None, "--out", help="Support bundle to write "
                                    "(support.tar.zst)."),
    redact: list[str] = typer.Option([], "--redact", help="A regular expression replaced "
                                     "with [REDACTED] in every collected file (repeat)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the files and sizes; write "
                                 "nothing."),
    key: str | None = typer.Option(None, "--key", metavar="KEY", help="Sign the manifest "
                                   "with this host key." + KEY_HELP),
    max_size: int = typer.Option(64 << 20, "--max-size", parser=int_option("--max-size", 1),
                                 help="Bound on the bundle file in bytes (the largest logs "
                                      "lose their head first)."),
    logs: Path | None = typer.Option(None, "--logs", help="The runtime's log folder (where "
                                     "there is no systemd journal)."),
    unit: str | None = typer.Option(None, "--unit", help="systemd unit whose journal is "
                                    "taken (default oemkit-BUNDLE.service)."),
    url: str | None = typer.Option(None, "--url", help="Where the service listens "
                                   "(http://HOST:PORT): a /metrics snapshot."),
    report: list[Path] = typer.Option([], "--report", help="A saved install/upgrade/"
                                      "rollback --json report or smoke result (repeat)."),
    state: Path | None = typer.Option(None, "--state", help="License state file."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Gather, read-only, what a vendor needs to diagnose this host without a remote
    session: status, slot history, service logs, profile detect, /metrics, license state
    and verdicts, the config with its secret fields redacted, the salted host fingerprint.
    Bounded in size, with a manifest of digests, optionally signed by a host key.

    Example: oemkit support collect --prefix /opt/example --out support.tar.zst
    """
    with guard(json_out):
        from oemkit.host.support import CollectOptions
        from oemkit.host.support import collect as do_collect

        signer = None
        if key is not None:
            from oemkit.cli._keys import load_key

            signer = load_key(key, pin_file, pkcs11_module)
        options = CollectOptions(redact=tuple(redact), dry_run=dry_run, key=signer,
                                 max_size=max_size, logs=logs, unit=unit, url=url,
                                 reports=tuple(report), state_path=state, force=force)
        result = do_collect(prefix, out, options)
        doc = result.to_dict()
        if json_out:
            emit_json(doc)
        manifest = doc["manifest"]
        total = sum(f["size"] for f in manifest["files"])
        if dry_run:
            if not json_out:
                _files(manifest)
            err.print(f"Would collect {len(manifest['files'])} files, {human_bytes(total)} "
                      "(nothing written)")
            return
        err.print(f"Wrote {safe(result.out)}: {len(manifest['files'])} files, "
                  f"{human_bytes(total)} collected, {human_bytes(result.size or 0)} "
                  "compressed"
                  + (f"; signed by {safe(result.signer[:16])}…" if result.signer else ""))
        for note in manifest["notes"]:
            err.print(f"[yellow]note[/]: {safe(note)}")


@support_app.command("inspect")
def inspect(
    bundle: Path = typer.Argument(..., help="The support bundle (support.tar.zst)."),
    key: Path | None = typer.Option(None, "--key", help="The site's host public key: the "
                                    "bundle must be signed by it."),
    json_out: JsonOut = False,
) -> None:
    """Check a support bundle (every file's digest, the signature) and list the known
    problems it shows: failed smoke or upgrade, expired or invalid license, rollbacks,
    disk nearly full, a damaged slot. Exit 1 when it was tampered with.

    Example: oemkit support inspect support.tar.zst --key site-host.pub
    """
    with guard(json_out):
        from oemkit.host.support import inspect as do_inspect
        from oemkit.host.support import load_host_key

        report = do_inspect(bundle, load_host_key(key) if key is not None else None)
        doc = report.to_dict()
        if json_out:
            emit_json(doc)
        m = report.manifest
        if m is not None:
            err.print(f"Support bundle from {safe(m.prefix)}, collected {safe(m.created)} by "
                      f"oemkit {safe(m.oemkit_version)}: {len(m.files)} files")
        sig = doc["signature"]
        if sig["signed"]:
            mark = "[green]valid[/]" if sig["valid"] else "[red]INVALID[/]"
            err.print(f"signature by {safe(str(sig['signer'])[:16])}…: {mark}"
                      + (f" ({safe(sig['problem'])})" if sig["problem"] else ""))
        else:
            err.print("unsigned" + (f" ({safe(sig['problem'])})" if sig["problem"] else ""))
        for problem in report.tampered:
            err.print(f"[red]tampered[/]: {safe(problem)}")
        colours = {"error": "red", "warn": "yellow", "info": "blue"}
        for p in report.problems:
            colour = colours.get(p.severity, "white")
            err.print(f"[{colour}]{safe(p.kind)}[/]: {safe(p.message)} "
                      f"[dim]({safe(p.evidence)})[/]")
        if not report.problems and report.ok:
            err.print("no known problems found")
        if not report.ok:
            raise typer.Exit(report.exit_code)
