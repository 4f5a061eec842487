"""Output conventions without typer: human text on stderr, one JSON document on stdout.

:func:`safe` makes an untrusted string (anything read from a bundle, a license, a path)
harmless for a terminal and for rich markup; :func:`print_error` writes an
:class:`OemkitError` with its hint (or a JSON error document); :func:`outcome` maps any
exception a command body raises to what is printed and the exit code, the one mapping that
``cli._output.guard`` (typer commands) and ``cli._hot`` (the commands that answer without
typer) both use. :func:`int_option` / :func:`parse_int` and :func:`float_option` /
:func:`parse_float` parse every numeric option with bounded digits and range
(``E_USAGE``). Nothing here imports typer, and rich only when something is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit._numbers import MAX_SAFE_INTEGER as MAX_SAFE_INTEGER
from oemkit._numbers import parse_float as parse_float
from oemkit._numbers import parse_int as parse_int
from oemkit.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, OemkitError

if TYPE_CHECKING:
    from rich.console import Console

    from oemkit.verify.bundle import Limits


class _Stderr:
    """rich's Console on stderr, made at its first use: importing rich.console costs
    about 25 ms, which ``--help`` and a ``--json`` answer need not pay."""

    _console: Console | None = None

    def _make(self) -> Console:
        from rich.console import Console

        console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
        self._console = console
        return console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._console or self._make(), name)


#: Human output: rich on stderr (typed as the Console it stands for).
err: Console = _Stderr()  # type: ignore[assignment]
STATE: dict[str, Any] = {"debug": False, "depth": 0}
_PENDING: list[str] = []  # JSON documents waiting for the command body to end

# C0 and C1 controls (ESC, CR, BEL, backspace, newline, ...), DEL, and the Unicode
# characters that reorder or break lines on a terminal (bidi embeddings, overrides and
# isolates, marks, line/paragraph separators): shown as visible escapes instead.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                     "\u202a-\u202e\u2066-\u2069\ufeff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe(value: object, *, markup: bool = True) -> str:
    """``value`` as text that cannot drive a terminal or rich: every control character
    (ESC, CR, newline, C1), bidi override and line separator becomes a visible escape
    such as ``\\x1b``, and (``markup=True``, for strings interpolated into rich markup or
    table cells) rich markup such as ``[/x]`` is escaped so it prints as written. Use it
    on every untrusted string a command prints; ``markup=False`` for ``markup=False``
    prints."""
    text = _UNSAFE.sub(_visible, str(value))
    if markup:
        from rich.markup import escape

        text = escape(text)
    return text


def emit_json(doc: Any) -> None:
    """One JSON document for stdout: written when the command body ends (inside
    :func:`guard`), so an error raised later replaces it instead of following it."""
    text = json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
    if STATE["depth"]:
        _PENDING.append(text)
        return
    sys.stdout.write(text)
    sys.stdout.flush()


def _flush() -> None:
    while _PENDING:
        sys.stdout.write(_PENDING.pop(0))
    sys.stdout.flush()


@contextlib.contextmanager
def held() -> Iterator[Callable[[], None]]:
    """A command body's documents held until the outermost body ends (then written); the
    function it yields drops those this body emitted, for an error document instead. The
    bookkeeping of ``cli._output.guard`` and ``cli._hot.guarded``."""
    STATE["depth"] += 1
    start = len(_PENDING)
    try:
        yield lambda: _PENDING.__delitem__(slice(start, None))
    finally:
        STATE["depth"] -= 1
        if not STATE["depth"]:
            _flush()


def error_hint(exc: OemkitError) -> str:
    """The hint shown for ``exc``: the raise site's, else the code's default hint from the
    error registry (docs/ERRORS.md), so no registered code reaches a user without one. The
    registry is imported only for an error that carries no hint of its own."""
    if exc.hint:
        return exc.hint
    info = exc.code_info()
    return info.hint if info is not None else ""


def print_error(exc: OemkitError, json_out: bool) -> None:
    hint = error_hint(exc)
    if json_out:
        emit_json({"ok": False, "error": {**exc.to_dict(), "hint": hint}})
    err.print(f"[bold red]error[/] [red]{safe(exc.code)}[/]: {safe(exc.message)}")
    for label in ("member", "check", "field", "expected", "actual"):
        value = getattr(exc, label)
        if value is not None:
            err.print(f"  {label}: {safe(value, markup=False)}", markup=False)
    if hint:
        err.print(f"  [bold]hint[/]: {safe(hint)}")


def _internal(exc: BaseException, json_out: bool) -> None:
    message = f"internal error: {type(exc).__name__}: {exc}"
    hint = "rerun with --debug for a traceback and report it"
    if json_out:
        emit_json({"ok": False, "error": {"code": "E_INTERNAL", "message": message,
                                          "hint": hint, "exit_code": EXIT_INTERNAL}})
    err.print(f"error E_INTERNAL: {safe(message, markup=False)}", markup=False)
    err.print(f"  hint: {hint}", markup=False)


def _interrupted(json_out: bool) -> None:
    if json_out:
        emit_json({"ok": False, "error": {"code": "E_INTERRUPTED", "message": "interrupted",
                                          "hint": "run the command again",
                                          "exit_code": EXIT_INTERRUPTED}})
    err.print("interrupted", markup=False)



def outcome(exc: BaseException, json_out: bool) -> int:
    """Print what ``exc``, raised by a command body, means and return the exit code (see
    DESIGN.md): an OemkitError its own code, an interruption ``E_INTERRUPTED``, anything
    else ``E_INTERNAL`` (exit 70: a crash is never a verdict). Documents the body emitted
    are dropped for the error's own."""
    if isinstance(exc, OemkitError):
        print_error(exc, json_out)
        return exc.exit_code
    if isinstance(exc, (KeyboardInterrupt, EOFError)):
        _interrupted(json_out)
        return EXIT_INTERRUPTED
    _internal(exc, json_out)
    return EXIT_INTERNAL


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


# --------------------------------------------------------------------------- numbers

def int_option(what: str, minimum: int = 0,
               maximum: int = MAX_SAFE_INTEGER) -> Callable[[object], int]:
    """A typer ``parser=`` for an integer option, through :func:`parse_int`."""
    return lambda value: parse_int(value, what, minimum=minimum, maximum=maximum)


def float_option(what: str, minimum: float,
                 maximum: float = float(MAX_SAFE_INTEGER)) -> Callable[[object], float]:
    """A typer ``parser=`` for a decimal option, through :func:`parse_float`."""
    return lambda value: parse_float(value, what, minimum=minimum, maximum=maximum)


#: The reader limits' defaults: ``oemkit.verify.bundle.DEFAULT_LIMITS``'s ``max_files``,
#: ``max_metadata_bytes`` and ``max_payload_bytes``, written out so that ``oemkit --help``
#: need not import the verifier (and cryptography); tests/test_cli.py checks they agree.
DEFAULT_MAX_FILES = 1_000_000
DEFAULT_MAX_MEMBER = 64 << 20
DEFAULT_MAX_PAYLOAD = 1 << 40


def limits(max_files: int, max_member: int, max_payload: int) -> Limits:
    """The ``Limits`` the three reader-limit flags ask for (``cli._options``; shared by
    every command that reads a whole bundle, docs/SECURITY.md): all metadata together is
    4x one member."""
    from oemkit.verify.bundle import Limits

    return Limits(max_files=max_files, max_metadata_bytes=max_member,
                  max_metadata_total=max(4 * max_member, 256 << 20),
                  max_payload_bytes=max_payload)


def human_bytes(n: int) -> str:
    """``n`` bytes as a table shows them: ``512 B``, ``3.4 KiB``, ``1.0 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


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
    """Render verify checks as a table on stderr (every cell through :func:`safe`)."""
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    marks = {"pass": "[green]PASS[/]", "fail": "[bold red]FAIL[/]", "warn": "[yellow]WARN[/]",
             "info": "[blue]INFO[/]"}
    for check in checks:
        lines = [safe(check.detail)]
        if check.status == "fail":
            lines += [f"{k}: {safe(getattr(check, k))}" for k in ("code", "member", "expected",
                                                                  "actual", "hint")
                      if getattr(check, k)]
        table.add_row(safe(check.name), marks.get(check.status, safe(check.status)),
                      "\n".join(lines))
    err.print(table)
