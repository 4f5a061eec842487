"""The support bundle's manifest, config redaction and the known problems inspect flags.

A support bundle (``oemkit support collect``, docs/SUPPORT.md) is a zstd-compressed tar:
``oemkit-support.json`` (this module's :class:`SupportManifest`: every collected file with
its size and SHA-256, what was truncated and redacted), an optional
``oemkit-support.sig.json`` (a DSSE envelope over the manifest's exact bytes, by a host
key), then the files. Pure: no file access, no clock. :func:`redact_config` replaces every
config value the config's JSON Schema marks secret (``writeOnly: true`` or
``x-oemkit-secret: true``); :func:`find_problems` turns the collected documents into the
known problems a support engineer looks for first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from oemkit.errors import FormatError

FORMAT = "oemkit-support/v1"
SIGNATURE_FORMAT = "oemkit-support-signature/v1"
MANIFEST = "oemkit-support.json"
SIGNATURE = "oemkit-support.sig.json"
PAYLOAD_TYPE = "application/vnd.oemkit.support+json"
#: What a secret value (and a ``--redact`` match) is replaced with.
REDACTED = "[REDACTED]"
#: A manifest larger than this, or with more files, is not oemkit's.
MAX_MANIFEST = 4 << 20
MAX_FILES = 10_000
MAX_SIZE = 1 << 50
#: Free space below this fraction of the prefix's file system, or below MIN_FREE bytes,
#: is "disk nearly full".
DISK_FREE_FRACTION = 0.10
MIN_FREE = 1 << 30
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+-]{0,200}(/[A-Za-z0-9_][A-Za-z0-9._@+-]{0,200})"
                   r"{0,15}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _bad(message: str, where: str | None = None) -> FormatError:
    return FormatError("E_SUPPORT_INVALID", f"the support manifest {message}", field=where,
                       hint="the support bundle is damaged or was not written by oemkit "
                            "support collect; ask for a fresh one")


def _obj(value: Any, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"field {where} is not an object", where)
    missing = [k for k in keys if k not in value]
    extra = sorted(set(value) - set(keys))
    if missing or extra:
        raise _bad(f"field {where} has " + "; ".join(
            p for p in (f"missing {', '.join(missing)}" if missing else "",
                        f"unknown {', '.join(extra)}" if extra else "") if p) + " field(s)",
            where)
    return value


def _int(value: Any, where: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SIZE:
        raise _bad(f"field {where} is not an integer from 0 to {MAX_SIZE}", where)
    return value


def _str(value: Any, where: str, pattern: re.Pattern[str] | None = None,
         limit: int = 4096) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or (
            pattern is not None and not pattern.fullmatch(value)):
        raise _bad(f"field {where} is not a valid string", where)
    return value


def path_ok(path: str) -> bool:
    """Whether ``path`` is a name collect writes: relative, no ``..``, plain characters."""
    return bool(_PATH.fullmatch(path)) and ".." not in path.split("/")


@dataclass(frozen=True)
class SupportFile:
    """One collected file: where it is in the bundle, what it came from, its digest."""

    path: str
    size: int
    sha256: str
    source: str
    #: The head was cut off to keep the bundle within its size bound (the tail is kept).
    truncated: bool = False
    #: The size of what was read from before truncation (None: not truncated).
    original_size: int | None = None
    #: How many values or matches were replaced with REDACTED in this file.
    redactions: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The manifest's entry for the file."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256,
                "source": self.source, "truncated": self.truncated,
                "original_size": self.original_size, "redactions": self.redactions}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SupportFile:
        """A file entry, every field checked.

        Raises:
            FormatError: E_SUPPORT_INVALID naming the field.
        """
        d = _obj(data, ("path", "size", "sha256", "source", "truncated", "original_size",
                        "redactions"), where)
        path = _str(d["path"], f"{where}.path")
        if not path_ok(path) or path in (MANIFEST, SIGNATURE):
            raise _bad(f"field {where}.path {path[:80]!r} is not a name collect writes",
                       f"{where}.path")
        if not isinstance(d["truncated"], bool):
            raise _bad(f"field {where}.truncated is not a boolean", f"{where}.truncated")
        original = d["original_size"]
        if original is not None:
            original = _int(original, f"{where}.original_size")
        return cls(path, _int(d["size"], f"{where}.size"),
                   _str(d["sha256"], f"{where}.sha256", _HEX64),
                   _str(d["source"], f"{where}.source"), d["truncated"], original,
                   _int(d["redactions"], f"{where}.redactions"))


@dataclass(frozen=True)
class SupportManifest:
    """What a support bundle holds: its files (with digests), when and from which prefix
    it was collected, its size bound, the redaction rules applied and what was left out."""

    created: str
    oemkit_version: str
    prefix: str
    max_size: int
    files: tuple[SupportFile, ...]
    #: JSON paths of the config fields redacted because their schema marks them secret.
    secret_fields: tuple[str, ...] = ()
    #: The ``--redact`` patterns applied to every collected text file, each named by its
    #: digest (``sha256:HEX`` of the pattern: a pattern may be the secret itself).
    patterns: tuple[str, ...] = ()
    #: What could not be collected, and why (a missing journal, a service not answering).
    notes: tuple[str, ...] = ()
    format: str = FORMAT

    def file(self, path: str) -> SupportFile | None:
        """The entry for ``path``, or None."""
        return next((f for f in self.files if f.path == path), None)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON data (written canonically by collect)."""
        return {"format": self.format, "created": self.created,
                "oemkit_version": self.oemkit_version, "prefix": self.prefix,
                "max_size": self.max_size, "files": [f.to_dict() for f in self.files],
                "redaction": {"secret_fields": list(self.secret_fields),
                              "patterns": list(self.patterns)},
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: Any) -> SupportManifest:
        """The manifest, strictly: exactly its fields, each typed and bounded, file paths
        unique and safe.

        Raises:
            FormatError: E_SUPPORT_INVALID naming the field.
        """
        d = _obj(data, ("format", "created", "oemkit_version", "prefix", "max_size", "files",
                        "redaction", "notes"), "manifest")
        if d["format"] != FORMAT:
            raise _bad(f"format is not {FORMAT}", "format")
        files = d["files"]
        if not isinstance(files, list) or len(files) > MAX_FILES:
            raise _bad(f"field files is not a list of at most {MAX_FILES} entries", "files")
        parsed = tuple(SupportFile.from_dict(f, f"files[{i}]") for i, f in enumerate(files))
        seen: set[str] = set()
        for f in parsed:
            if f.path in seen:
                raise _bad(f"lists {f.path!r} twice", "files")
            seen.add(f.path)
        red = _obj(d["redaction"], ("secret_fields", "patterns"), "redaction")
        lists = {}
        for name, value in (("redaction.secret_fields", red["secret_fields"]),
                            ("redaction.patterns", red["patterns"]), ("notes", d["notes"])):
            if not isinstance(value, list) or len(value) > MAX_FILES:
                raise _bad(f"field {name} is not a list", name)
            lists[name] = tuple(_str(v, f"{name}[{i}]") for i, v in enumerate(value))
        return cls(created=_str(d["created"], "created", _TIME),
                   oemkit_version=_str(d["oemkit_version"], "oemkit_version", limit=64),
                   prefix=_str(d["prefix"], "prefix"),
                   max_size=_int(d["max_size"], "max_size"), files=parsed,
                   secret_fields=lists["redaction.secret_fields"],
                   patterns=lists["redaction.patterns"], notes=lists["notes"])


# --------------------------------------------------------------------------- redaction


def _marks_secret(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("writeOnly") is True
                                         or schema.get("x-oemkit-secret") is True)


def _resolve(ref: Any, root: Any) -> Any:
    """A local ``$ref`` (``#/...``, a JSON pointer into the root schema), or None."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _expand(schema: Any, root: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """``schema`` and every subschema that applies to the same value: ``$ref``,
    ``allOf``/``anyOf``/``oneOf``, ``if``/``then``/``else``, ``dependentSchemas``. Any of
    them marking the value secret makes it secret (redacting too much is the safe error)."""
    if not isinstance(schema, dict) or depth > 32:
        return
    yield schema
    target = _resolve(schema.get("$ref"), root)
    if target is not None:
        yield from _expand(target, root, depth + 1)
    for key in ("allOf", "anyOf", "oneOf"):
        subs = schema.get(key)
        for sub in subs if isinstance(subs, list) else ():
            yield from _expand(sub, root, depth + 1)
    for key in ("if", "then", "else"):
        yield from _expand(schema.get(key), root, depth + 1)
    dependent = schema.get("dependentSchemas")
    if isinstance(dependent, dict):
        for sub in dependent.values():
            yield from _expand(sub, root, depth + 1)


def _children(schemas: list[dict[str, Any]], value: Any) -> Iterator[tuple[Any, list[Any]]]:
    """(key or index, the subschemas that apply to it) for each child of ``value``."""
    if isinstance(value, dict):
        for key in value:
            subs: list[Any] = []
            for s in schemas:
                found = s.get("properties")
                props: dict[str, Any] = found if isinstance(found, dict) else {}
                matched = key in props
                if matched:
                    subs.append(props[key])
                patterns = s.get("patternProperties")
                if isinstance(patterns, dict):
                    for pattern, sub in patterns.items():
                        try:
                            hit = re.search(pattern, key) is not None
                        except re.error:
                            hit = True  # a pattern Python cannot read: assume it applies
                        if hit:
                            matched = True
                            subs.append(sub)
                if not matched and "additionalProperties" in s:
                    subs.append(s["additionalProperties"])
            yield key, subs
    elif isinstance(value, list):
        for i in range(len(value)):
            subs = []
            for s in schemas:
                prefix = s.get("prefixItems")
                items = s.get("items")
                if isinstance(prefix, list) and i < len(prefix):
                    subs.append(prefix[i])
                elif isinstance(items, list):  # draft 4-7 tuple form
                    if i < len(items):
                        subs.append(items[i])
                    elif "additionalItems" in s:
                        subs.append(s["additionalItems"])
                elif items is not None:
                    subs.append(items)
            yield i, subs


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@dataclass
class Redacted:
    """A config with its secret values replaced: the config, the JSON paths replaced, and
    the secret strings themselves (collect removes them from every other collected file)."""

    config: Any
    paths: list[str] = field(default_factory=list)
    values: set[str] = field(default_factory=set)


def redact_config(config: Any, schema: Any) -> Redacted:
    """Replace every value of ``config`` whose schema (the config's JSON Schema, local
    ``$ref`` and composition included) says ``writeOnly: true`` or ``x-oemkit-secret:
    true`` with REDACTED. Pure; the input is not changed."""
    out = Redacted(None)

    def walk(value: Any, subs: list[Any], path: str, depth: int) -> Any:
        expanded = [s for sub in subs for s in _expand(sub, schema)]
        if any(_marks_secret(s) for s in expanded) or depth > 64:
            out.paths.append(path or "$")
            out.values.update(s for s in _strings(value) if s)
            return REDACTED
        if isinstance(value, dict):
            return {k: walk(value[k], sub, f"{path}.{k}" if path else k, depth + 1)
                    for k, sub in _children(expanded, value)}
        if isinstance(value, list):
            return [walk(value[i], sub, f"{path}[{i}]", depth + 1)
                    for i, sub in _children(expanded, value)]
        return value

    out.config = walk(config, [schema], "", 0)
    return out


def secret_fields(schema: Any) -> list[str]:
    """The property paths a schema marks secret (for the docs and ``--dry-run``): dotted
    names, ``[]`` for array items, ``*`` for additional or pattern properties."""
    found: list[str] = []

    def walk(node: Any, path: str, depth: int) -> None:
        if depth > 16:
            return
        nodes = list(_expand(node, schema))
        if any(_marks_secret(s) for s in nodes):
            found.append(path or "$")
            return
        for s in nodes:
            props = s.get("properties")
            if isinstance(props, dict):
                for key, sub in props.items():
                    walk(sub, f"{path}.{key}" if path else str(key), depth + 1)
            for key in ("additionalProperties",):
                if isinstance(s.get(key), dict):
                    walk(s[key], f"{path}.*" if path else "*", depth + 1)
            if isinstance(s.get("patternProperties"), dict):
                for sub in s["patternProperties"].values():
                    walk(sub, f"{path}.*" if path else "*", depth + 1)
            if isinstance(s.get("items"), dict):
                walk(s["items"], f"{path}[]", depth + 1)
            for key in ("prefixItems", "items"):
                if isinstance(s.get(key), list):
                    for sub in s[key]:
                        walk(sub, f"{path}[]", depth + 1)

    walk(schema, "", 0)
    return sorted(dict.fromkeys(found))


# --------------------------------------------------------------------------- known problems


@dataclass(frozen=True)
class Problem:
    """A known problem found in a support bundle: a stable kind, how bad, what, and the
    collected file that shows it."""

    kind: str
    severity: str
    message: str
    evidence: str

    def to_dict(self) -> dict[str, str]:
        """The problem as JSON data."""
        return {"kind": self.kind, "severity": self.severity, "message": self.message,
                "evidence": self.evidence}


def version_key(version: str) -> tuple[Any, ...]:
    """Order release versions: PEP 440 when they parse, else by dot-separated parts with
    numbers before text (as ``oemkit upgrade`` orders them)."""
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version), ())
    except InvalidVersion:
        parts = re.split(r"[.+_-]", version)
        return (0, None, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts))


def _checks(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    checks = doc.get("checks")
    return [c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []


def _report_problems(path: str, doc: Mapping[str, Any]) -> Iterator[Problem]:
    """Problems an install/upgrade/rollback report or a smoke result shows."""
    action = doc.get("action")
    failed = [c for c in _checks(doc) if c.get("status") == "fail"]
    smoke = [c for c in failed if c.get("name") == "smoke"]
    if action is None and doc.get("ok") is False and "profile" in doc:  # a smoke result
        smoke = failed or [{"detail": "the smoke test failed"}]
    for check in smoke:
        yield Problem("smoke-failed", "error", f"smoke test failed: {check.get('code') or ''} "
                      f"{check.get('detail') or ''}".replace("  ", " ").strip(), path)
    if action in ("install", "upgrade", "rollback") and failed and not smoke:
        first = failed[0]
        yield Problem(f"{action}-failed", "error", f"{action} failed at "
                      f"{first.get('name')}: {first.get('code') or ''} "
                      f"{first.get('detail') or ''}".replace("  ", " ").strip(), path)
    elif action == "upgrade" and smoke:
        yield Problem("upgrade-failed", "error", "upgrade failed: its smoke test failed", path)
    if action == "rollback" and doc.get("switched") is True:
        yield Problem("rollback", "warn", f"rolled back to {doc.get('slot')} (from "
                      f"{doc.get('previous')})", path)


def _slot_problems(status: Mapping[str, Any]) -> Iterator[Problem]:
    slots = [s for s in status.get("slots") or () if isinstance(s, dict)]
    if status.get("consistent") is False:
        yield Problem("slot-damaged", "error", f"current points at {status.get('current')}, "
                      "which has no usable slot.json", "status.json")
    for s in slots:
        if s.get("problem"):
            yield Problem("slot-damaged", "error", f"slot {s.get('name')}: {s.get('problem')}",
                          "status.json")
    current = next((s for s in slots if s.get("current")), None)
    previous = next((s for s in slots if s.get("previous")), None)
    if current is None or previous is None:
        return
    cv, pv = current.get("version"), previous.get("version")
    ct, pt = current.get("installed_at"), previous.get("installed_at")
    if isinstance(cv, str) and isinstance(pv, str) and version_key(pv) > version_key(cv):
        yield Problem("rollback", "warn", f"the previous slot ({pv}) is newer than the current "
                      f"one ({cv}): the host was rolled back or downgraded", "status.json")
    elif isinstance(ct, str) and isinstance(pt, str) and pt > ct:
        yield Problem("rollback", "warn", f"the previous slot was installed after the current "
                      f"one ({pt} > {ct}): the host was rolled back", "status.json")


def _license_problems(doc: Any) -> Iterator[Problem]:
    for v in doc.get("verdicts") or () if isinstance(doc, dict) else ():
        if not isinstance(v, dict):
            continue
        name = v.get("license")
        error = v.get("error") if isinstance(v.get("error"), dict) else None
        if v.get("verdict") == "grace":
            yield Problem("license-grace", "warn", f"{name} is expired and in its grace "
                          f"period ({v.get('grace_days_left')} days left)", "license/verdicts.json")
        elif error is not None:
            code = error.get("code")
            kind = "license-expired" if code == "E_EXPIRED" else "license-invalid"
            yield Problem(kind, "error", f"{name}: {code}: {error.get('message')}",
                          "license/verdicts.json")


def _usage_problems(doc: Any) -> Iterator[Problem]:
    if not isinstance(doc, dict):
        return
    where = "license/usage.json"
    error = doc.get("error")
    if isinstance(error, dict):
        yield Problem("usage-state-damaged", "error", f"the usage state cannot be used: "
                      f"{error.get('code')}: {error.get('message')} (nothing is counted into it "
                      "or reported from it)", where)
    unsaved = [u for u in doc.get("unsaved") or () if isinstance(u, dict)]
    if unsaved:
        requests = sum(u["requests"] for u in unsaved if type(u.get("requests")) is int)
        yield Problem("usage-unsaved", "warn", f"{len(unsaved)} unsaved usage file(s) with "
                      f"{requests} metered request(s) wait beside the usage state: a shutdown "
                      "could not write them; the next flush or report adds them once the state "
                      "is usable", where)
    for u in unsaved:
        if isinstance(u.get("error"), dict):
            yield Problem("usage-unsaved-damaged", "error", f"unsaved usage file {u.get('name')}"
                          f": {u['error'].get('message')}", where)


def _disk_problems(doc: Any) -> Iterator[Problem]:
    if not isinstance(doc, dict):
        return
    total, free = doc.get("total"), doc.get("free")
    if type(total) is int and type(free) is int and total > 0 and (
            free < total * DISK_FREE_FRACTION or free < MIN_FREE):
        yield Problem("disk-nearly-full", "error" if free < total * 0.02 else "warn",
                      f"{free} of {total} bytes free ({free / total:.1%}) on the prefix's "
                      "file system", "disk.json")


def find_problems(docs: Mapping[str, Any]) -> list[Problem]:
    """The known problems the collected JSON documents show (``docs``: bundle path ->
    parsed JSON): failed smoke tests and upgrades, rollbacks, expired or invalid licenses,
    a nearly full disk, a damaged slot, an interrupted run, a damaged usage state or usage
    counts waiting in unsaved files. Documents that are missing or
    not shaped as collect writes them are skipped."""
    found: list[Problem] = []
    status = docs.get("status.json")
    if isinstance(status, dict):
        found += _slot_problems(status)
    history = docs.get("history.json")
    if isinstance(history, dict) and history.get("journal_pending"):
        found.append(Problem("interrupted", "warn", "the prefix's journal records names an "
                             "interrupted run left: " + ", ".join(
                                 str(n) for n in history["journal_pending"]), "history.json"))
    found += _license_problems(docs.get("license/verdicts.json"))
    found += _disk_problems(docs.get("disk.json"))
    found += _usage_problems(docs.get("license/usage.json"))
    for path in sorted(docs):
        doc = docs[path]
        if path.startswith("reports/") and isinstance(doc, dict):
            found += _report_problems(path, doc)
    unique: dict[tuple[str, str], Problem] = {}
    for p in found:
        unique.setdefault((p.kind, p.message), p)
    order = {"error": 0, "warn": 1, "info": 2}
    return sorted(unique.values(), key=lambda p: (order.get(p.severity, 3), p.kind))
