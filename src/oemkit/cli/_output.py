"""The typer layer of the CLI's conventions: the body guard and the root group.

Every command body runs inside :func:`guard`, which turns an :class:`OemkitError` into a
message with its hint (or a JSON error document) and the error's exit code; anything
unexpected becomes a one-line "internal error" (``E_INTERNAL``, exit 70: a crash is never
a verdict) unless ``--debug`` was given (the mapping is ``cli._print.outcome``). Documents a
command emits are held until its body ends, so an error after a partial result still
leaves exactly one document on stdout.

:class:`OemkitGroup` (the root app's click group) does the same for what happens before a
command body runs: click's usage errors become ``E_USAGE`` (a JSON error document with
``--json``), and file arguments are left to oemkit to open, so an unreadable file is
``E_PERMISSION`` (exit 4), not click's text.

:func:`install_help_format` (run when this module is imported) fixes two things in every
command's ``--help``, for the lazy root and typer's own build alike: "Example:" lines are
printed whole, each on one line, however narrow the terminal (so they paste), and a list
option or argument shows its item type (``<path>``), not a Python type name.

The output helpers themselves (:func:`safe`, :func:`emit_json`, :func:`print_error`,
``err``, the numeric option parsers) are typer-free, in :mod:`oemkit.cli._print`, and
re-exported here for the command modules.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import sys
from collections.abc import Iterator, Sequence
from gettext import gettext
from typing import Any

import typer
from typer.core import TyperGroup

from oemkit.cli._lazy import LazyCommands
from oemkit.cli._print import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_MEMBER,
    DEFAULT_MAX_PAYLOAD,
    MAX_SAFE_INTEGER,
    STATE,
    _internal,
    _interrupted,
    check_table,
    emit_json,
    err,
    error_hint,
    file_size,
    float_option,
    held,
    human_bytes,
    int_option,
    limits,
    outcome,
    parse_float,
    parse_int,
    passphrase_for,
    print_error,
    progress,
    safe,
)
from oemkit.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, OemkitError, UsageError

__all__ = ["DEFAULT_MAX_FILES", "DEFAULT_MAX_MEMBER", "DEFAULT_MAX_PAYLOAD", "MAX_SAFE_INTEGER",
           "STATE", "DefaultCommandGroup", "OemkitGroup", "check_table", "emit_json", "err",
           "error_hint", "examples_unwrapped", "file_size", "float_option", "guard",
           "human_bytes", "install_help_format", "int_option", "limits", "outcome",
           "parse_float", "parse_int", "passphrase_for", "print_error", "progress", "safe"]


class DefaultCommandGroup(TyperGroup):
    """A group whose first word is one of its subcommands, or else the start of its
    default command's line (``oemkit sizing BUNDLE``, ``oemkit evidence BUNDLE``): that
    command's context stands in for the group's, so usage lines and errors read ``oemkit
    sizing``. Subclasses give :attr:`default_command` (built on first use)."""

    @property
    @abc.abstractmethod
    def default_command(self) -> Any:
        """The command a line without a subcommand goes to."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            return super().parse_args(ctx, args)
        ctx.args = list(args)  # no subcommand: every word is the default command's
        return list(ctx.args)

    def invoke(self, ctx: Any) -> Any:
        if ctx._protected_args:  # a subcommand
            return super().invoke(ctx)
        command = self.default_command
        sub_ctx = command.make_context(ctx.info_name, list(ctx.args), parent=ctx.parent)
        with sub_ctx:
            return command.invoke(sub_ctx)


@contextlib.contextmanager
def guard(json_out: bool = False) -> Iterator[None]:
    """Map errors to messages and exit codes (see DESIGN.md, ``cli._print.outcome``): an
    OemkitError to its own exit code, an unexpected exception to ``E_INTERNAL`` and exit
    70. Documents emitted inside are written when the body ends; an error drops them for
    its error document (``cli._print.held``)."""
    with held() as drop:
        try:
            yield
        except typer.Exit:
            raise
        except (typer.Abort, KeyboardInterrupt, EOFError):
            drop()
            raise typer.Exit(outcome(KeyboardInterrupt(), json_out)) from None
        except Exception as exc:
            drop()
            if STATE["debug"]:
                raise
            if isinstance(exc, _click().ClickException):  # typer.BadParameter in a body
                exc = UsageError("E_USAGE", exc.format_message(),
                                 hint="run the command with --help")
            raise typer.Exit(outcome(exc, json_out)) from None


# --------------------------------------------------------------------------- the root group


def _click() -> Any:
    """The click typer runs on (vendored as ``typer._click`` since typer 0.2x)."""
    try:
        from typer import _click as click
    except ImportError:  # older typer: the click package
        import click  # type: ignore[no-redef]
    return click


def _leave_paths_to_oemkit(command: Any, *, walk: bool = True) -> None:
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
    if not walk:
        return
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
            if isinstance(self.commands, LazyCommands):  # each is fixed as it is built
                _leave_paths_to_oemkit(self, walk=False)
            else:
                _leave_paths_to_oemkit(self)
            code = super().main(args=argv, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False,
                                windows_expand_args=windows_expand_args, **extra)
        except click.ClickException as exc:
            code = self._usage(exc, json_out, click)
        except OemkitError as exc:
            print_error(exc, json_out)
            code = exc.exit_code
        except typer.Abort:  # typer's own since 0.29 (click's before, which it re-exported)
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

    def list_commands(self, ctx: Any) -> list[str]:
        """The commands' names in typer's order, without building them."""
        return list(self.commands)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """typer's listing, from each command's help text when the commands are built on
        demand (:class:`oemkit.cli._lazy.LazyCommands`), so ``--help`` builds none."""
        commands = self.commands
        if not isinstance(commands, LazyCommands):
            super().format_commands(ctx, formatter)
            return
        rows = [(name, commands.summary(name)) for name in commands]
        rows = [(name, cmd) for name, cmd in rows if not cmd.hidden]
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section(gettext("Commands")):  # as typer's, translations too
                formatter.write_dl([(name, cmd.get_short_help_str(limit))
                                    for name, cmd in rows])

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




# --------------------------------------------------------------------------- help text

#: How a help paragraph starts when click must print its lines as they are (no rewrapping).
_RAW = "\b"


def examples_unwrapped(text: str) -> str:
    """``text`` (a command's help) with its "Example:" lines kept whole: an example that
    continues on the docstring's next lines is joined into one line, and the examples of a
    paragraph become a paragraph of their own that click prints without rewrapping
    (``\\b``), however narrow the terminal. Everything else is left as it is."""
    out: list[str] = []
    in_examples = raw = False
    for line in text.split("\n"):
        if not line:  # click's paragraph break (a line with spaces is not one)
            in_examples = raw = False
            out.append(line)
            continue
        if raw or ((not out or not out[-1]) and line.strip() == _RAW):
            raw = True  # a paragraph printed as it is already
            out.append(line)
            continue
        if line.lstrip().startswith("Example:"):
            if not in_examples:
                if out and out[-1]:
                    out.append("")  # the prose before it stays a paragraph of its own
                out.append(_RAW)
                in_examples = True
            out.append(line.strip())
        elif in_examples:
            out[-1] = f"{out[-1]} {line.strip()}"  # the example goes on
        else:
            out.append(line)
    return "\n".join(out)


def _format_help_text(self: Any, ctx: Any, formatter: Any) -> None:
    """click's ``Command.format_help_text``, with :func:`examples_unwrapped`."""
    text = inspect.cleandoc(self.help).partition("\f")[0] if self.help is not None else ""
    text = examples_unwrapped(text)
    if self.deprecated:
        note = (f"(DEPRECATED: {self.deprecated})" if isinstance(self.deprecated, str)
                else "(DEPRECATED)")
        text = f"{note}\n\n{text}" if text else note  # never glued to an example line
    if text:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(text)


def _item_label(annotation: Any) -> str | None:
    """``<path>`` or ``<str>`` for ``list[Path]`` or ``list[str]`` (None: not a list)."""
    from pathlib import PurePath

    from typer._typing import get_args, get_origin

    if get_origin(annotation) is not list:
        return None
    args = get_args(annotation)
    item = args[0] if len(args) == 1 else str
    if isinstance(item, type) and issubclass(item, PurePath):
        return "<path>"
    name = item.__name__ if isinstance(item, type) else "value"
    return f"<{name.lower()}>"


def install_help_format() -> bool:
    """Make typer's commands and groups print help with :func:`examples_unwrapped`, and
    its list parameters show their item type (``--crl <path>``, not ``<list[Path]>``);
    once. False when this typer lacks the hooks (then its help is left as it is)."""
    from typer import core

    param_cls = getattr(core, "_TyperParameter", None)
    if param_cls is None or not hasattr(param_cls, "display_type"):
        return False
    if getattr(param_cls.display_type, "_oemkit", False):
        return True
    typer_own = param_cls.display_type

    def display_type(self: Any, ctx: Any) -> Any:
        desc = getattr(self, "type_descriptor", None)
        if desc is not None and not desc.is_choice:
            label = _item_label(desc.annotation)
            if label is not None:
                return label
        return typer_own(self, ctx)

    display_type._oemkit = True  # type: ignore[attr-defined]
    param_cls.display_type = display_type
    for cls in (core.TyperCommand, core.TyperGroup):
        cls.format_help_text = _format_help_text  # type: ignore[method-assign]
    return True


install_help_format()
