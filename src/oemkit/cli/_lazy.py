"""Start-up of the command line: build only the command that runs, coerce without pydantic.

A typer app turns into click commands when it is called, every command at once: for
oemkit's sixty-odd commands that is about 25 ms of signature and type-hint inspection
before any of them runs, most of ``oemkit --help``'s own time. :func:`root_group` builds
the root group with its options only and gives it a :class:`LazyCommands` mapping: each
command (or sub-group) is built by typer, from the same registration, the first time it
is looked up, and the root's help lists the commands from their help texts without
building them. ``typer.main.get_command(app)`` (typer's own path, which the tests' CliRunner
takes) still builds everything: tests/test_startup.py checks that both give the same help,
byte for byte, and the same command tree.

typer >= 0.29 coerces every non-boolean parameter value through a pydantic TypeAdapter,
and importing pydantic for that costs about 75 ms on every command with a path or a
string option. :func:`install_fast_coercion` puts a coercion of its own in front of
typer's for the parameter types oemkit's commands use (``str``, ``Path``, ``bool``,
numbers with or without a range, lists of those, and typer ``parser=`` callables): it
returns what typer's would, and hands every value it is not sure of (anything that would
fail, any other type) to typer's own coercion, so an error message is typer's, word for
word. tests/test_startup.py compares the two on every parameter of every command. The hook
is typer's own lazy point, ``_TyperParameter.get_runtime_param``; without it (another typer)
nothing is patched and typer coerces as it always did.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

_DIGITS = re.compile(r"[0-9]{1,18}")
_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{1,15})?")


class _Delegate(Exception):
    """This value is left to typer's own coercion."""


def _leaf(annotation: Any, info: Any) -> Any:
    """A coercion function for one leaf type, or None when typer's own must do it."""
    from typer._param_types import coerce_cli_path, lenient_issubclass, routes_to_path

    if info.parser is not None:
        parser = info.parser

        def parsed(value: Any, param: Any, ctx: Any) -> Any:
            try:
                return parser(value)
            except (ValueError, AssertionError):  # pydantic words these: typer's turn
                raise _Delegate from None
        return parsed
    if annotation in (str, bool):  # as given (a flag's bool, a str): anything else to typer
        def exact(value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is annotation:
                return value
            raise _Delegate
        return exact
    if annotation in (int, float) and not info.clamp:
        low, high = info.min, info.max
        pattern = _DIGITS if annotation is int else _DECIMAL

        def number(value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is annotation:
                result = value
            elif type(value) is str and pattern.fullmatch(value):
                result = annotation(value)
            else:
                raise _Delegate
            if (low is not None and result < low) or (high is not None and result > high):
                raise _Delegate  # typer words the range error
            return result
        return number
    if routes_to_path(annotation, info) and lenient_issubclass(annotation, Path):
        path_type = info.path_type
        if path_type is None:
            path_type = annotation
        if path_type is not annotation:
            return None

        def path(value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is str:
                value = annotation(value)  # what pydantic's Path validation makes of a str
            elif not isinstance(value, annotation):
                raise _Delegate
            return coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)
        return path
    return None


def _fast_param(descriptor: Any) -> Any:
    """typer's RuntimeParam for ``descriptor`` with the fast coercion in front, or None."""
    from typer._typing import get_args, get_origin

    if descriptor.file_annotation is not None or descriptor.is_choice:
        return None
    annotation, info = descriptor.annotation, descriptor.parameter_info
    many = get_origin(annotation) is list
    if many:
        args = get_args(annotation)
        if len(args) != 1:
            return None
        leaf = _leaf(args[0], info)
    elif get_origin(annotation) is not None:
        return None
    else:
        leaf = _leaf(annotation, info)
    if leaf is None:
        return None
    return _fast_class()(parameter_info=info, annotation=annotation, descriptor=descriptor,
                         leaf=leaf, many=many)


_FAST: list[type] = []


def _fast_class() -> type:
    """The RuntimeParam subclass of the fast coercion (made once: a dataclass costs about
    half a millisecond to create)."""
    if _FAST:
        return _FAST[0]
    from typer._coercion import RuntimeParam, build_runtime_param

    @dataclass(frozen=True)
    class Fast(RuntimeParam):
        descriptor: Any = None
        leaf: Any = None
        many: bool = False

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                if self.many:
                    items = value if isinstance(value, (list, tuple)) else [value]
                    return [self.leaf(item, param, ctx) for item in items]
                return self.leaf(value, param, ctx)
            except _Delegate:
                typer_own = build_runtime_param(self.descriptor)
                return typer_own._coerce_value(value, param=param, ctx=ctx)

    _FAST.append(Fast)
    return Fast


def install_fast_coercion() -> bool:
    """Put :func:`_fast_param` in front of typer's coercion (once); False when this typer
    has no such hook (then nothing changes)."""
    try:
        from typer import core
        from typer._coercion import build_runtime_param
    except ImportError:
        return False
    cls = getattr(core, "_TyperParameter", None)
    if cls is None or not hasattr(cls, "get_runtime_param"):
        return False
    if getattr(cls.get_runtime_param, "_oemkit", False):
        return True

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            self._runtime_param = (_fast_param(self.type_descriptor)
                                   or build_runtime_param(self.type_descriptor))
        return self._runtime_param

    get_runtime_param._oemkit = True  # type: ignore[attr-defined]
    cls.get_runtime_param = get_runtime_param
    return True


# --------------------------------------------------------------------------- lazy commands


class LazyCommands(MutableMapping[str, Any]):
    """The root group's commands by name, in typer's order (commands, then sub-groups, in
    registration order), each built by typer the first time it is looked up."""

    def __init__(self, app: typer.Typer, on_build: Any) -> None:
        from typer.main import get_command_name

        self._app = app
        self._on_build = on_build
        self._infos: dict[str, tuple[str, Any]] = {}
        for command in app.registered_commands:
            assert command.callback is not None
            name = command.name or get_command_name(command.callback.__name__)
            self._infos[name] = ("command", command)
        for group in app.registered_groups:
            assert group.name is not None  # every oemkit sub-app is added with a name
            self._infos[group.name] = ("group", group)
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        built = self._built.get(name)
        if built is not None:
            return built
        kind, info = self._infos[name]
        app = self._app
        from typer.main import get_command_from_info, get_group_from_info

        if kind == "command":
            built = get_command_from_info(info, pretty_exceptions_short=app.pretty_exceptions_short,
                                          rich_markup_mode=app.rich_markup_mode)
        else:
            built = get_group_from_info(info, pretty_exceptions_short=app.pretty_exceptions_short,
                                        rich_markup_mode=app.rich_markup_mode,
                                        suggest_commands=app.suggest_commands)
        self._on_build(built)
        self._built[name] = built
        return built

    def __setitem__(self, name: str, command: Any) -> None:
        self._infos.setdefault(name, ("built", None))
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._infos[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def summary(self, name: str) -> Any:
        """A stand-in for the help listing: a click command with the real one's help,
        short help, hidden and deprecated settings, made without building it (typer's own
        rules for each, as ``get_command_from_info`` and ``get_group_from_info`` apply)."""
        built = self._built.get(name)
        if built is not None:
            return built
        import inspect

        from typer.core import TyperCommand
        from typer.main import solve_typer_info_defaults

        kind, info = self._infos[name]
        if kind == "command":
            text = inspect.getdoc(info.callback) if info.help is None else \
                inspect.cleandoc(info.help)
            return TyperCommand(name=name, help=text, short_help=info.short_help,
                                hidden=info.hidden, deprecated=info.deprecated)
        solved = solve_typer_info_defaults(info)
        return TyperCommand(name=name, help=solved.help, short_help=solved.short_help,
                            hidden=solved.hidden, deprecated=solved.deprecated)


def root_group(app: typer.Typer, on_build: Any) -> Any:
    """``app``'s click group with its own options, its commands built on demand."""
    import copy

    from typer.main import get_group

    bare = copy.copy(app)
    bare.registered_commands = []
    bare.registered_groups = []
    group = get_group(bare)
    group.commands = LazyCommands(app, on_build)
    return group
