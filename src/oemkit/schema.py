"""Input boundaries: strict YAML loading with line numbers, and JSON Schema validation.

YAML is loaded without aliases (no billion-laughs), without duplicate keys and with a
depth limit; every value remembers its line so that schema errors can say
"bundle.yaml line 4: ...". Only JSON's value types come out: strings (valid Unicode),
integers, finite floats, booleans, null, string-keyed mappings and sequences; timestamps,
binary, sets and other tags are refused (E_SPEC_YAML) rather than handed on.
jsonschema is imported only when something is validated.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from functools import cache
from importlib import resources
from typing import Any

import yaml

from oemkit.errors import InputError

MAX_DEPTH = 64
#: Values (scalars, sequences, mappings, keys included) in one document. PyYAML spends
#: about 40 us and 800 bytes on each, so this bounds a hostile file to well under a second
#: and a few tens of MB (a 1 MiB spec of ``[a,a,a,...]`` would otherwise take 20 s and 400 MB).
MAX_NODES = 10_000
Path_ = tuple[str | int, ...]
#: ``lines[path + (KEY_LINE,)]`` is the line of the key that names ``path`` in its mapping
#: (``lines[path]`` is where its value starts: the next line for a nested section).
KEY_LINE = -1


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (and so any alias expansion bomb) and stops composing
    after MAX_NODES values."""

    nodes = 0
    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed", event.start_mark
            )
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_NODES} values in one document", event.start_mark
            )
        if self.depth >= MAX_DEPTH + 1:
            raise _TooDeep(event.start_mark.line + 1)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _TooDeep(Exception):
    """Composing went past MAX_DEPTH levels (at this line)."""


def load_yaml(data: bytes, what: str) -> tuple[Any, dict[Path_, int]]:
    """Parse one YAML document; return the value and a map from value path to line."""
    lines: dict[Path_, int] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("E_SPEC_YAML", f"{what} is not UTF-8 (byte {exc.start})",
                         hint="save the file as UTF-8") from None
    try:
        loader = _StrictLoader(text)  # checks every character up front
    except yaml.reader.ReaderError as exc:
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        line = text.count("\n", 0, exc.position) + 1
        raise InputError("E_SPEC_YAML", f"{what} line {line}: character U+{char:04X} is not "
                         "allowed in YAML", hint="remove the control character") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise InputError("E_SPEC_YAML", f"{what} is empty", hint="see docs/SPEC.md")
        value = _construct(loader, node, (), lines, 0, what)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError("E_SPEC_YAML", f"{what}{where}: {exc.problem or exc.context}",
                         hint="fix the YAML syntax at that line") from None
    except yaml.YAMLError as exc:
        raise InputError("E_SPEC_YAML", f"{what}: {exc}", hint="fix the YAML syntax") from None
    except _TooDeep as exc:
        raise InputError("E_SPEC_DEPTH", f"{what} line {exc.args[0]}: nested deeper than "
                         f"{MAX_DEPTH} levels", hint="flatten the document") from None
    except RecursionError:
        raise InputError("E_SPEC_DEPTH", f"{what} is nested too deeply",
                         hint=f"specs are at most {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    return value, lines


_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


def _yaml_error(what: str, node: yaml.Node, problem: str, hint: str) -> InputError:
    return InputError("E_SPEC_YAML", f"{what} line {node.start_mark.line + 1}: {problem}",
                      hint=hint)


def _scalar(loader: _StrictLoader, node: yaml.Node, what: str) -> Any:
    """One scalar as a JSON value: str, int, finite float, bool or None; anything else is
    E_SPEC_YAML (a timestamp, !!binary, an integer too long to convert, a lone surrogate)."""
    if not isinstance(node, yaml.ScalarNode):
        raise _yaml_error(what, node, "a mapping or sequence is used as a key",
                          "keys must be plain strings")
    try:
        value = loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        raise _yaml_error(what, node, f"cannot read the value ({exc})",
                          "write a shorter number, or quote the value") from None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _yaml_error(what, node, "the string is not valid Unicode (a lone "
                              "surrogate escape such as \\ud800)",
                              "remove the escape") from None
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise _yaml_error(what, node, f"{node.value!r} is not a finite number",
                          "use a finite number")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    kind = {"date": "a date", "datetime": "a timestamp", "bytes": "binary data"}.get(
        type(value).__name__, f"a YAML {node.tag} value")
    raise _yaml_error(what, node, f"{node.value[:40]!r} is {kind}, which is not allowed",
                      "quote the value to make it a string")


def _construct(loader: _StrictLoader, node: yaml.Node, path: Path_, lines: dict[Path_, int],
               depth: int, what: str) -> Any:
    if depth > MAX_DEPTH:
        raise InputError("E_SPEC_DEPTH", f"{what} line {node.start_mark.line + 1}: nested "
                         f"deeper than {MAX_DEPTH} levels", hint="flatten the document")
    lines[path] = node.start_mark.line + 1
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in (
            _MAP_TAG, _SEQ_TAG):
        raise _yaml_error(what, node, f"YAML tag {node.tag!r} is not allowed",
                          "remove the tag: only plain mappings and sequences are read")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(loader, key_node, what)
            if not isinstance(key, str):
                raise InputError("E_SPEC_YAML", f"{what} line {key_node.start_mark.line + 1}: "
                                 f"key {key!r} is not a string", hint="quote the key")
            if key in out:
                raise InputError("E_SPEC_DUPLICATE_KEY",
                                 f"{what} line {key_node.start_mark.line + 1}: duplicate key "
                                 f"{key!r}", hint="remove one of the two entries")
            out[key] = _construct(loader, value_node, (*path, key), lines, depth + 1, what)
            key_at = (*path, key, KEY_LINE)
            lines[key_at] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, (*path, i), lines, depth + 1, what)
                for i, item in enumerate(node.value)]
    return _scalar(loader, node, what)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped in ``oemkit/schemas``."""
    text = resources.files("oemkit").joinpath("schemas").joinpath(name).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _at(obj: Any, path: Path_) -> Any:
    for part in path:
        obj = obj[part]
    return obj


#: A number as JSON (and YAML 1.2) writes it, which YAML 1.1 (PyYAML) reads as a string
#: when its mantissa has no dot or its exponent no sign: ``1e-5``, ``2E6``.
_NUMBER_LIKE = re.compile(r"([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))[eE]([-+]?)([0-9]{1,4})")


def yaml11_number(text: str) -> str | None:
    """How to write ``text`` (a number with an exponent that YAML 1.1 reads as a string,
    such as ``1e-5``) so that YAML reads a number (``1.0e-5``); None for anything else."""
    found = _NUMBER_LIKE.fullmatch(text.strip())
    if found is None:
        return None
    mantissa, sign, exponent = found.groups()
    if "." not in mantissa:
        mantissa += ".0"
    elif mantissa.endswith("."):
        mantissa += "0"
    marker = text.strip()[len(found.group(1))]  # e or E, as written
    return f"{mantissa}{marker}{sign or '+'}{exponent}"


def _describe(error: Any, instance: Any, schema: dict[str, Any], lines: dict[Path_, int],
              what: str) -> tuple[str, str, str | None]:
    """The message, hint and field path of a schema error."""
    path: Path_ = tuple(error.instance_path)
    dotted = ".".join(str(p) for p in path) or "the top level"
    line = lines.get(path)
    probe = path
    while line is None and probe:
        probe = probe[:-1]
        line = lines.get(probe)
    where = f"{what} line {line}" if line else what
    hint = "see docs/SPEC.md for the fields and their types"
    kind = type(error.kind).__name__
    if kind == "AdditionalProperties":
        extras = sorted(error.kind.unexpected)
        parent = _at(schema, tuple(error.schema_path)[:-1])
        allowed = list(parent.get("properties", {}))
        line = lines.get((*path, extras[0], KEY_LINE), line)
        where = f"{what} line {line}" if line else what
        close = difflib.get_close_matches(extras[0], allowed, n=1)
        suggestion = f" (did you mean {close[0]!r}?)" if close else ""
        section = "at the top level" if not path else f"in {dotted}"
        hint = (f"rename it to {close[0]!r}; " if close else "") + \
            f"allowed fields {section}: {', '.join(allowed)}"
        unknown = ".".join(str(p) for p in (*path, extras[0]))
        return f"{where}: unknown field {extras[0]!r} in {dotted}{suggestion}", hint, unknown
    if kind == "Required":
        missing = ".".join(str(p) for p in (*path, error.kind.property))
        return (f"{where}: required field {error.kind.property!r} is missing in {dotted}",
                hint, missing)
    value = _at(instance, path)
    field = ".".join(str(p) for p in path) or None
    if kind == "Type" and isinstance(value, (int, float, bool)) and "string" in str(
            error.message):
        hint = f'quote the value in YAML: {dotted}: "{value}"'
    if kind == "Type" and isinstance(value, str) and "number" in list(
            getattr(error.kind, "types", ())):
        number = yaml11_number(value)
        if number is not None:
            return (f"{where}: {dotted}: YAML reads {value} as a string; write {number}",
                    f"YAML 1.1 reads a number with an exponent only with a dot and a signed "
                    f"exponent: {dotted}: {number}", field)
    return f"{where}: {dotted}: {error.message}", hint, field


#: Nesting (objects and lists) of a JSON Schema or of an instance handed to the schema
#: library. jsonschema-rs gives up at about 255 levels ("Recursion limit reached"), and
#: Python's json and copy modules at about 1,000; documents are read with MAX_DEPTH (64),
#: but a migration can deepen a config, so every validation checks the bound itself.
MAX_SCHEMA_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_SCHEMA_DEPTH) -> bool:
    """Whether ``value`` nests objects and lists more than ``limit`` levels below the top
    one (iterative: a hostile depth costs no stack). Nothing the document loaders accept
    (``load_yaml``, ``parse_json``: 64 levels) is too deep."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def compile_schema(schema: Any, what: str, code: str, hint: str) -> Any:
    """A jsonschema-rs validator for an untrusted JSON Schema (a bundle's config schema).

    Offline: a ``$ref`` to anything outside the document (``http://``, ``file:///etc/...``)
    is refused, never fetched or read from the host. The schema must be an object or a
    boolean, nested at most MAX_SCHEMA_DEPTH levels, and valid for its draft; anything
    else is ``InputError(code)`` naming ``what``, never the library's exception.
    """
    import jsonschema_rs

    if not isinstance(schema, (dict, bool)):
        raise InputError(code, f"{what} is not a JSON Schema (an object or a boolean)",
                         hint=hint)
    if too_deep(schema):
        raise InputError(code, f"{what} is nested deeper than {MAX_SCHEMA_DEPTH} levels",
                         hint=hint)
    try:
        return jsonschema_rs.validator_for(schema, offline=True)
    except (ValueError, TypeError, OverflowError) as exc:  # ValidationError, ReferencingError
        raise InputError(code, f"{what} is not a usable JSON Schema: {_first_line(exc)}",
                         hint=hint) from None


def first_error(validator: Any, instance: Any, what: str, code: str, hint: str) -> Any:
    """The first way ``instance`` fails ``validator`` (None when it is valid); an instance
    the library cannot take (too deep, a non-string key, a number beyond any float) is
    ``InputError(code)``."""
    if too_deep(instance):
        raise InputError(code, f"{what} is nested deeper than {MAX_SCHEMA_DEPTH} levels",
                         hint=hint)
    try:
        return next(iter(validator.iter_errors(instance)), None)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(code, f"{what} cannot be validated: {_first_line(exc)}",
                         hint=hint) from None


def validate(instance: Any, schema_name: str, what: str,
             lines: dict[Path_, int] | None = None, code: str = "E_SPEC_INVALID") -> None:
    """Validate against a shipped schema; raise InputError for the most specific error.

    Uses jsonschema-rs: it imports in about 40 ms (jsonschema's format checkers can take
    1.5 s) and validates large documents in linear time.
    """
    import jsonschema_rs

    schema = load_schema(schema_name)
    try:
        errors = list(jsonschema_rs.validator_for(schema, offline=True).iter_errors(instance))
    except ValueError as exc:  # a value JSON cannot hold (load_yaml never returns one)
        raise InputError(code, f"{what}: {exc}", hint="see docs/SPEC.md for the fields and "
                         "their types") from None
    if errors:
        # The deepest error; at one depth, an unknown field before a missing one (a typo
        # is both, and the typo is what to fix).
        best = max(errors, key=lambda e: (len(list(e.instance_path)),
                                          type(e.kind).__name__ == "AdditionalProperties"))
        message, hint, field = _describe(best, instance, schema, lines or {}, what)
        raise InputError(code, message, hint=hint, field=field)
