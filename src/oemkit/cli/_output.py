"""CLI output conventions: human text on stderr, one JSON document on stdout, exit codes.

Every command body runs inside :func:`guard`, which turns an :class:`OemkitError` into a
message with its hint (or a JSON error document) and the error's exit code; anything
unexpected becomes a one-line "internal error" unless ``--debug`` was given.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from oemkit.errors import EXIT_FAILED, OemkitError

err = Console(stderr=True, highlight=False, soft_wrap=True)
STATE = {"debug": False}


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def print_error(exc: OemkitError, json_out: bool) -> None:
    if json_out:
        emit_json({"ok": False, "error": exc.to_dict()})
    from rich.markup import escape

    err.print(f"[bold red]error[/] [red]{exc.code}[/]: {escape(exc.message)}", markup=True)
    for label in ("member", "check", "field", "expected", "actual"):
        value = getattr(exc, label)
        if value is not None:
            err.print(f"  {label}: {value}", markup=False)
    if exc.hint:
        err.print(f"  [bold]hint[/]: {escape(exc.hint)}")


@contextlib.contextmanager
def guard(json_out: bool = False) -> Iterator[None]:
    """Map errors to messages and exit codes (see DESIGN.md)."""
    try:
        yield
    except OemkitError as exc:
        if STATE["debug"]:
            raise
        print_error(exc, json_out)
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        if STATE["debug"]:
            raise
        message = f"internal error: {type(exc).__name__}: {exc}"
        if json_out:
            emit_json({"ok": False, "error": {"code": "E_INTERNAL", "message": message}})
        err.print(f"error {message}", markup=False)
        err.print("  hint: rerun with --debug for a traceback and report it")
        raise typer.Exit(EXIT_FAILED) from None


def passphrase_for(path: Any) -> bytes | None:
    """OEMKIT_KEY_PASSPHRASE, else a prompt when a terminal is attached and the key needs one."""
    env = os.environ.get("OEMKIT_KEY_PASSPHRASE")
    if env:
        return env.encode("utf-8")
    try:
        with open(path, "rb") as handle:
            encrypted = b"ENCRYPTED PRIVATE KEY" in handle.read(4096)
    except OSError:
        return None
    if encrypted and sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"Passphrase for {path}: ").encode("utf-8")
    return None


# Reader limits, shared by every command that reads a whole bundle (docs/SECURITY.md).
MAX_FILES = typer.Option(1_000_000, "--max-files", help="Reader limit: payload files.")
MAX_MEMBER = typer.Option(64 << 20, "--max-member-size",
                          help="Reader limit: bytes per metadata member.")
MAX_PAYLOAD = typer.Option(1 << 40, "--max-payload-bytes",
                           help="Reader limit: payload bytes, compressed or not.")


def limits(max_files: int, max_member: int, max_payload: int) -> Any:
    """The ``Limits`` the three flags ask for (all metadata together: 4x one member)."""
    from oemkit.verify.bundle import Limits

    return Limits(max_files=max_files, max_metadata_bytes=max_member,
                  max_metadata_total=max(4 * max_member, 256 << 20),
                  max_payload_bytes=max_payload)


def file_size(path: Path) -> int:
    """A progress bar's total: 0 (no bar) when ``path`` is not a file; the command itself
    then reports what is wrong with it."""
    return path.stat().st_size if path.is_file() else 0


@contextlib.contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr when it is a terminal; otherwise no callback at all."""
    if not err.is_terminal or not total:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err,
                  transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def check_table(checks: list[Any]) -> None:
    """Render verify checks as a table on stderr."""
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    marks = {"pass": "[green]PASS[/]", "fail": "[bold red]FAIL[/]", "warn": "[yellow]WARN[/]",
             "info": "[blue]INFO[/]"}
    for check in checks:
        detail = check.detail
        if check.status == "fail":
            extra = [f"{k}: {getattr(check, k)}" for k in ("code", "member", "expected",
                                                           "actual", "hint")
                     if getattr(check, k)]
            detail = detail + "\n" + "\n".join(extra)
        from rich.markup import escape

        table.add_row(check.name, marks[check.status], escape(detail))
    err.print(table)
