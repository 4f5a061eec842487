"""CLI output conventions: human text on stderr, one JSON document on stdout, exit codes.

Every command body runs inside :func:`guard`, which turns an :class:`OemkitError` into a
message with its hint (or a JSON error document) and the error's exit code; anything
unexpected becomes a one-line "internal error" (``E_INTERNAL``, exit 70: a crash is never
a verdict) unless ``--debug`` was given. Documents a command emits are held until its body
ends, so an error after a partial result still leaves exactly one document on stdout.

:class:`OemkitGroup` (the root app's click group) does the same for what happens before a
command body runs: click's usage errors become ``E_USAGE`` (a JSON error document with
``--json``), and file arguments are left to oemkit to open, so an unreadable file is
``E_PERMISSION`` (exit 4), not click's text.

:func:`safe` makes an untrusted string (anything read from a bundle, a license, a path)
harmless for a terminal and for rich markup; :func:`int_option` / :func:`parse_int` and
:func:`float_option` / :func:`parse_float` parse every numeric option with bounded digits
and range (``E_USAGE``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from oemkit._numbers import MAX_SAFE_INTEGER as MAX_SAFE_INTEGER
from oemkit._numbers import parse_float as parse_float
from oemkit._numbers import parse_int as parse_int
from oemkit.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    OemkitError,
    UsageError,
)

if TYPE_CHECKING:
    from oemkit.verify.bundle import Limits

err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
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


@contextlib.contextmanager
def guard(json_out: bool = False) -> Iterator[None]:
    """Map errors to messages and exit codes (see DESIGN.md): an OemkitError to its own
    exit code, an unexpected exception to ``E_INTERNAL`` and exit 70. Documents emitted
    inside are written when the body ends; an error drops them for its error document."""
    STATE["depth"] += 1
    start = len(_PENDING)
    try:
        yield
    except OemkitError as exc:
        del _PENDING[start:]
        if STATE["debug"]:
            raise
        print_error(exc, json_out)
        raise typer.Exit(exc.exit_code) from None
    except typer.Exit:
        raise
    except (typer.Abort, KeyboardInterrupt, EOFError):
        del _PENDING[start:]
        _interrupted(json_out)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        del _PENDING[start:]
        if STATE["debug"]:
            raise
        if isinstance(exc, _click().ClickException):  # typer.BadParameter in a body
            print_error(UsageError("E_USAGE", exc.format_message(),
                                   hint="run the command with --help"), json_out)
            raise typer.Exit(EXIT_USAGE) from None
        _internal(exc, json_out)
        raise typer.Exit(EXIT_INTERNAL) from None
    finally:
        STATE["depth"] -= 1
        if not STATE["depth"]:
            _flush()


# --------------------------------------------------------------------------- the root group


def _click() -> Any:
    """The click typer runs on (vendored as ``typer._click`` since typer 0.2x)."""
    try:
        from typer import _click as click
    except ImportError:  # older typer: the click package
        import click  # type: ignore[no-redef]
    return click


def _leave_paths_to_oemkit(command: Any) -> None:
    """Typer checks that an existing ``Path`` argument is readable (``readable=True`` by
    default) and answers with exit 2 and click's text before oemkit runs. Every command
    opens its files itself (``oemkit._fs.open_input``: E_NOT_FOUND 3, E_PERMISSION 4,
    E_NOT_A_FILE 3), so that check is switched off for every parameter of every command:
    typer >= 0.29 keeps it on the parameter's info, older typer on a ``click.Path``."""
    for param in getattr(command, "params", []):
        info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
        for holder in (info, getattr(param, "type", None)):
            if getattr(holder, "readable", None) is True:
                holder.readable = False  # type: ignore[union-attr]
    for sub in getattr(command, "commands", {}).values():
        _leave_paths_to_oemkit(sub)
    default = getattr(command, "default_command", None)  # cli.sizing.SizingGroup
    if default is not None:
        _leave_paths_to_oemkit(default)


def _wants_json(args: Sequence[str]) -> bool:
    words = list(args)
    if "--" in words:
        words = words[:words.index("--")]
    return "--json" in words


class OemkitGroup(TyperGroup):
    """The root group: runs click in non-standalone mode and answers everything that goes
    wrong before a command body (usage errors, option values, an OemkitError raised while
    parsing an option) in oemkit's own terms: a coded message, one JSON document with
    ``--json``, exit 2 for usage, 70 for anything unexpected. Works for ``main()`` and for
    ``CliRunner().invoke(app, ...)`` alike."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        click = _click()
        argv = list(sys.argv[1:] if args is None else args)
        json_out = _wants_json(argv)
        code: Any = 0
        try:
            _leave_paths_to_oemkit(self)
            code = super().main(args=argv, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False,
                                windows_expand_args=windows_expand_args, **extra)
        except click.ClickException as exc:
            code = self._usage(exc, json_out, click)
        except OemkitError as exc:
            print_error(exc, json_out)
            code = exc.exit_code
        except click.exceptions.Abort:
            _interrupted(json_out)
            code = EXIT_INTERRUPTED
        except Exception as exc:
            if STATE["debug"]:
                raise
            _internal(exc, json_out)
            code = EXIT_INTERNAL
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    @staticmethod
    def _usage(exc: Any, json_out: bool, click: Any) -> int:
        """A click error (missing or unknown option, bad value): E_USAGE, exit 2."""
        if json_out:
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path if ctx is not None else "oemkit"
            error = UsageError("E_USAGE", exc.format_message(),
                               hint=f"run '{command} --help' for the options")
            emit_json({"ok": False, "error": error.to_dict()})
        exc.show()
        return EXIT_USAGE


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
