"""Declarative config migrations: ordered steps between consecutive schema versions.

A migration file lists, for each pair of consecutive versions, steps drawn from a small
set of operations. No code runs: every step is data, and every step but a type
conversion without ``from_type`` has an inverse, so a chain can also be walked down.
Values a step removes are *kept aside* (returned to the caller), and a later step that
would set that field restores the kept value instead: upgrade after downgrade gives back
exactly the original config.

Operations (``path`` is dotted, e.g. ``server.port``):

- ``set_default: {path, value}``      add the field when absent
- ``rename: {from, to}`` / ``move: {from, to}``  move a value (parents created)
- ``delete: {path}``                  remove a field (its value is kept aside)
- ``convert: {path, type, from_type?}``  int | float | str | bool; reversible with from_type
- ``scale: {path, factor}``           multiply a number (unit change, e.g. s -> ms: 1000)
- ``split: {path, into: [a, b, ...], separator}``  "h:p" -> {a: "h", b: "p"}
- ``merge: {paths: [a, b, ...], into, separator}``  the inverse of split
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from oemkit.errors import FormatError, InputError

OPS = ("set_default", "rename", "move", "delete", "convert", "scale", "split", "merge")
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
_MISSING = object()
#: Migrations one document may hold, and so the longest chain a plan walks.
MAX_MIGRATIONS = 1000
#: Steps in one migrations document, all migrations together.
MAX_STEPS = 10_000
#: Components of a dotted field path (``server.tls.port`` has 3): a step cannot build a
#: config nested deeper than the schema library and Python's json can take.
MAX_PATH_PARTS = 32
MAX_PATH_CHARS = 1024
#: Parts a split makes (or a merge joins).
MAX_PARTS = 64
#: Nesting of a config after migration (the bound documents are read with).
MAX_CONFIG_DEPTH = 64


def _bad(message: str, where: str) -> FormatError:
    return FormatError("E_MIGRATION_INVALID", f"{where}: {message}",
                       hint="see the migration operations in docs/INSTALL.md")


@dataclass(frozen=True)
class Step:
    """One operation with its arguments."""

    op: str
    args: dict[str, Any]

    @property
    def reversible(self) -> bool:
        """Whether :meth:`inverse` exists (a convert must know its source type)."""
        return self.op != "convert" or "from_type" in self.args

    def describe(self) -> str:
        """One line for plans and logs, e.g. ``rename a -> b``."""
        a = self.args
        return {
            "set_default": lambda: f"set default {a.get('path')} = {a.get('value')!r}",
            "rename": lambda: f"rename {a.get('from')} -> {a.get('to')}",
            "move": lambda: f"move {a.get('from')} -> {a.get('to')}",
            "delete": lambda: f"delete {a.get('path')}",
            "convert": lambda: f"convert {a.get('path')} to {a.get('type')}",
            "scale": lambda: f"scale {a.get('path')} by {a.get('factor')}",
            "split": lambda: f"split {a.get('path')} into {', '.join(a.get('into', []))}",
            "merge": lambda: f"merge {', '.join(a.get('paths', []))} into {a.get('into')}",
        }[self.op]()

    def inverse(self) -> Step:
        """The step that undoes this one (only when :attr:`reversible`)."""
        a = self.args
        if self.op in ("rename", "move"):
            return Step(self.op, {"from": a["to"], "to": a["from"]})
        if self.op == "set_default":
            return Step("delete", {"path": a["path"]})
        if self.op == "delete":
            return Step("set_default", {"path": a["path"], "value": _MISSING})
        if self.op == "convert":
            return Step("convert", {"path": a["path"], "type": a["from_type"],
                                    "from_type": a["type"]})
        if self.op == "scale":
            return Step("scale", {"path": a["path"], "factor": 1 / a["factor"]})
        if self.op == "split":
            return Step("merge", {"paths": a["into"], "into": a["path"],
                                  "separator": a["separator"]})
        return Step("split", {"path": a["into"], "into": a["paths"],
                              "separator": a["separator"]})


@dataclass(frozen=True)
class Migration:
    """The steps from version ``source`` to ``target`` (= source + 1)."""

    source: int
    target: int
    steps: tuple[Step, ...]


_REQUIRED = {"set_default": {"path", "value"}, "rename": {"from", "to"},
             "move": {"from", "to"}, "delete": {"path"}, "convert": {"path", "type"},
             "scale": {"path", "factor"}, "split": {"path", "into", "separator"},
             "merge": {"paths", "into", "separator"}}
_OPTIONAL = {"convert": {"from_type"}}
#: Which argument holds what: one dotted path, a list of them, a separator.
_PATH_ARGS = {"path", "from", "to"}


def _dotted(value: Any, at: str, name: str) -> str:
    """A dotted field path: text, at most MAX_PATH_PARTS non-empty components."""
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} must be a dotted field path such as server.port, not {value!r}",
                   at)
    parts = value.split(".")
    if "" in parts:
        raise _bad(f"{name} {value!r} has an empty component", at)
    if len(parts) > MAX_PATH_PARTS or len(value) > MAX_PATH_CHARS:
        raise _bad(f"{name} is {len(parts)} levels / {len(value)} characters long (at most "
                   f"{MAX_PATH_PARTS} levels and {MAX_PATH_CHARS} characters)", at)
    return value


def _dotted_list(value: Any, at: str, name: str) -> list[str]:
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_PARTS:
        raise _bad(f"{name} must be a list of 2 to {MAX_PARTS} dotted field paths", at)
    return [_dotted(v, at, f"{name}[{k}]") for k, v in enumerate(value)]


def _check_args(op: str, args: dict[str, Any], at: str) -> None:
    """Every argument of ``op`` of its type (so applying or describing it cannot crash)."""
    for name in _PATH_ARGS & set(args):
        _dotted(args[name], at, name)
    if op == "convert":
        for name in ("type", "from_type"):
            if name in args and (not isinstance(args[name], str) or args[name] not in _TYPES):
                raise _bad(f"convert {name} must be one of {', '.join(_TYPES)}, not "
                           f"{args[name]!r}", at)
    elif op == "scale":
        factor = args["factor"]
        if (type(factor) not in (int, float) or not math.isfinite(factor)
                or not 1e-300 <= abs(factor) <= 1e300):
            raise _bad(f"scale factor must be a finite non-zero number, not {factor!r}", at)
    elif op in ("split", "merge"):
        separator = args["separator"]
        if not isinstance(separator, str) or not separator:
            raise _bad(f"{op} separator must be non-empty text, not {separator!r}", at)
        if op == "split":
            _dotted_list(args["into"], at, "into")
        else:
            _dotted_list(args["paths"], at, "paths")
            _dotted(args["into"], at, "into")


def parse_migrations(doc: Any, where: str) -> dict[int, Migration]:
    """Validate a migrations document; map source version -> migration.

    Every argument is checked for its type here (paths dotted and at most MAX_PATH_PARTS
    deep, factors finite, separators non-empty), at most MAX_MIGRATIONS migrations and
    MAX_STEPS steps: a bundle's migrations cannot crash a host that applies them.

    Raises:
        FormatError: E_MIGRATION_INVALID.
    """
    if not isinstance(doc, dict) or set(doc) != {"migrations"} or not isinstance(
            doc["migrations"], list):
        raise _bad("the file must hold one key 'migrations' with a list", where)
    if len(doc["migrations"]) > MAX_MIGRATIONS:
        raise _bad(f"{len(doc['migrations'])} migrations (at most {MAX_MIGRATIONS})", where)
    out: dict[int, Migration] = {}
    total = 0
    for i, item in enumerate(doc["migrations"]):
        here = f"{where} migrations[{i}]"
        if not isinstance(item, dict) or set(item) != {"from", "to", "steps"}:
            raise _bad("each migration is {from, to, steps}", here)
        source, target = item["from"], item["to"]
        if (type(source) is not int or type(target) is not int or source < 1
                or target != source + 1):
            raise _bad(f"from/to must be consecutive integers >= 1, got {source!r} -> "
                       f"{target!r}", here)
        if source in out:
            raise _bad(f"a second migration from version {source}", here)
        raw_steps = [] if item["steps"] is None else item["steps"]
        if not isinstance(raw_steps, list):
            raise _bad("steps must be a list of operations", here)
        total += len(raw_steps)
        if total > MAX_STEPS:
            raise _bad(f"more than {MAX_STEPS} steps in all", here)
        steps = []
        for j, raw in enumerate(raw_steps):
            at = f"{here}.steps[{j}]"
            if not isinstance(raw, dict) or len(raw) != 1:
                raise _bad("each step is a single operation, e.g. {rename: {from: a, to: b}}",
                           at)
            op, args = next(iter(raw.items()))
            if op not in OPS:
                import difflib

                close = difflib.get_close_matches(str(op), OPS, n=1)
                raise _bad(f"unknown operation {op!r}"
                           + (f" (did you mean {close[0]!r}?)" if close else ""), at)
            if not isinstance(args, dict) or not _REQUIRED[op] <= set(args) or set(args) - (
                    _REQUIRED[op] | _OPTIONAL.get(op, set())):
                raise _bad(f"{op} takes {', '.join(sorted(_REQUIRED[op]))}", at)
            _check_args(op, args, at)
            steps.append(Step(op, dict(args)))
        out[source] = Migration(source, target, tuple(steps))
    return out


def chain(migrations: dict[int, Migration], source: int, target: int) -> list[Step]:
    """The steps from ``source`` to ``target`` (either direction); raise on a gap or on a
    chain longer than MAX_MIGRATIONS hops."""
    if source == target:
        return []
    if abs(target - source) > MAX_MIGRATIONS:
        raise InputError("E_MIGRATION_CHAIN", f"config version {source} -> {target} is "
                         f"{abs(target - source)} hops (at most {MAX_MIGRATIONS})",
                         hint="migrate through an intermediate release")
    steps: list[Step] = []
    if source < target:
        for version in range(source, target):
            if version not in migrations:
                raise InputError("E_MIGRATION_GAP", f"no migration from config version "
                                 f"{version} to {version + 1}",
                                 hint="the bundle cannot upgrade this config; the vendor must "
                                      "ship the missing migration")
            steps.extend(migrations[version].steps)
        return steps
    for version in range(source - 1, target - 1, -1):
        if version not in migrations:
            raise InputError("E_MIGRATION_GAP", f"no migration between config versions "
                             f"{version} and {version + 1}", hint="this downgrade is not "
                             "possible")
        for step in reversed(migrations[version].steps):
            if not step.reversible:
                raise InputError("E_MIGRATION_IRREVERSIBLE", f"step '{step.describe()}' "
                                 f"({version} -> {version + 1}) has no inverse",
                                 hint="give the convert step a from_type to allow downgrades")
            steps.append(step.inverse())
    return steps


# --------------------------------------------------------------------------- applying


def _split(path: str) -> list[str]:
    return path.split(".")


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in _split(path):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    parts = _split(path)
    node = doc
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InputError("E_MIGRATION_APPLY", f"cannot set {path}: {part} is not an "
                             "object", hint="the config does not have the expected shape")
    node[parts[-1]] = value


def _pop(doc: dict[str, Any], path: str) -> Any:
    parts = _split(path)
    node: Any = doc
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        return _MISSING
    return node.pop(parts[-1])


@dataclass
class Outcome:
    """A migrated config, the values kept aside, and what each step did."""

    config: dict[str, Any]
    kept: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def apply_steps(config: dict[str, Any], steps: Sequence[Step],
                kept: dict[str, Any] | None = None) -> Outcome:
    """Apply ``steps`` to a copy of ``config``; ``kept`` restores values set aside earlier."""
    doc = copy.deepcopy(config)
    stash = dict(kept or {})
    out = Outcome(doc, stash)
    for step in steps:
        a = step.args
        if step.op == "set_default":
            if _get(doc, a["path"]) is _MISSING:
                if a["path"] in stash:
                    _set(doc, a["path"], stash.pop(a["path"]))
                    out.log.append(f"restored {a['path']} (kept aside earlier)")
                elif a["value"] is not _MISSING:
                    _set(doc, a["path"], copy.deepcopy(a["value"]))
                    out.log.append(f"set {a['path']} = {a['value']!r}")
        elif step.op in ("rename", "move"):
            value = _pop(doc, a["from"])
            if value is not _MISSING:
                _set(doc, a["to"], value)
                out.log.append(f"moved {a['from']} -> {a['to']}")
        elif step.op == "delete":
            value = _pop(doc, a["path"])
            if value is not _MISSING:
                stash[a["path"]] = value
                out.log.append(f"removed {a['path']} (kept aside)")
        elif step.op == "convert":
            value = _get(doc, a["path"])
            if value is not _MISSING:
                _set(doc, a["path"], _convert(value, a["type"], a["path"]))
                out.log.append(f"converted {a['path']} to {a['type']}")
        elif step.op == "scale":
            value = _get(doc, a["path"])
            if value is not _MISSING:
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise InputError("E_MIGRATION_APPLY", f"cannot scale {a['path']}: "
                                     f"{value!r} is not a number", hint="fix the config")
                try:
                    scaled = value * a["factor"]
                    if isinstance(scaled, float) and not math.isfinite(scaled):
                        raise OverflowError
                except OverflowError:
                    raise InputError("E_MIGRATION_APPLY", f"cannot scale {a['path']}: "
                                     f"{value!r} x {a['factor']} is out of range",
                                     hint="fix the config") from None
                if isinstance(scaled, float):
                    scaled = float(f"{scaled:.15g}")  # no binary noise: 0.8, not 0.8000...2
                if isinstance(value, int) and float(scaled).is_integer():
                    scaled = int(scaled)
                _set(doc, a["path"], scaled)
                out.log.append(f"scaled {a['path']} by {a['factor']}")
        elif step.op == "split":
            value = _get(doc, a["path"])
            if value is not _MISSING:
                parts = str(value).split(a["separator"])
                if len(parts) != len(a["into"]):
                    raise InputError("E_MIGRATION_APPLY", f"cannot split {a['path']}={value!r}"
                                     f" into {len(a['into'])} parts", hint="fix the config")
                _pop(doc, a["path"])
                for name, part in zip(a["into"], parts, strict=True):
                    _set(doc, name, part)
                out.log.append(f"split {a['path']} into {', '.join(a['into'])}")
        elif step.op == "merge":
            values = [_get(doc, p) for p in a["paths"]]
            if all(v is not _MISSING for v in values):
                for p in a["paths"]:
                    _pop(doc, p)
                _set(doc, a["into"], a["separator"].join(str(v) for v in values))
                out.log.append(f"merged {', '.join(a['paths'])} into {a['into']}")
    from oemkit.schema import too_deep

    if too_deep(doc, MAX_CONFIG_DEPTH):
        raise InputError("E_MIGRATION_APPLY", f"the migrated config is nested deeper than "
                         f"{MAX_CONFIG_DEPTH} levels", hint="the migrations move or set "
                         "values too deep; fix the migrations")
    return out



def _convert(value: Any, kind: str, path: str) -> Any:
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind == "int" and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if kind in ("int", "float") and not isinstance(value, (str, int, float)):
            raise TypeError(value)  # int([1]) fails anyway; int({}) too, float(True) not
        out = _TYPES[kind](value)
        if isinstance(out, float) and not math.isfinite(out):
            raise ValueError(value)  # "1e400" or "nan": JSON cannot hold the result
        return out
    except (TypeError, ValueError, OverflowError):
        raise InputError("E_MIGRATION_APPLY", f"cannot convert {path}={value!r} to {kind}",
                         hint="fix the config value") from None


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable changes between two configs (added, removed, changed paths)."""
    lines: list[str] = []
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else key
            if key not in old:
                lines.append(f"+ {path} = {new[key]!r}")
            elif key not in new:
                lines.append(f"- {path} (was {old[key]!r})")
            else:
                lines.extend(diff(old[key], new[key], path))
    elif old != new:
        lines.append(f"~ {prefix}: {old!r} -> {new!r}")
    return lines
