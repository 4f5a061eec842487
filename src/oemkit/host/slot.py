"""A slot's ``slot.json``: what install wrote there (the bundle, its manifest digest, when
and by which oemkit), read back exactly. Its own module so that ``oemkit serve PREFIX``
reads it without importing the installer."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from oemkit.errors import InputError, OemkitError

__all__ = ["MAX_SLOT_JSON", "SlotRecord", "read_slot"]

#: slot.json is a few hundred bytes; a larger one is not oemkit's.
MAX_SLOT_JSON = 64 << 10

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: What install writes in each field (the manifest's name and version patterns, the slot
#: directory's name, a UTC time): nothing a terminal or rich would interpret.
_FIELDS = {"name": re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,254}"),
           "bundle_name": re.compile(r"[a-z0-9][a-z0-9._-]{0,63}"),
           "version": re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}"),
           "manifest_sha256": _SHA256,
           "installed_at": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z"),
           "oemkit_version": re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")}


@dataclass(frozen=True)
class SlotRecord:
    """A slot's ``slot.json``: what is installed there, when and by which oemkit."""

    name: str
    bundle_name: str
    version: str
    manifest_sha256: str
    bundle_file: str | None = None
    installed_at: str | None = None
    oemkit_version: str | None = None
    config_version: int | None = None
    python: str | None = None

    @classmethod
    def parse(cls, data: bytes, where: str) -> SlotRecord:
        """Check ``slot.json`` exactly (pure); ``E_SLOT_DAMAGED`` naming the field."""
        def bad(why: str) -> InputError:
            return InputError("E_SLOT_DAMAGED", f"{where} is damaged: {why}",
                              hint="oemkit wrote this file; it was changed since. Roll back "
                                   "or upgrade to another slot, or reinstall the release")

        if len(data) > MAX_SLOT_JSON:
            raise bad(f"{len(data)} bytes (at most {MAX_SLOT_JSON})")
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            raise bad("not JSON") from None
        if not isinstance(doc, dict):
            raise bad(f"a JSON {type(doc).__name__.replace('list', 'array')}, not an "
                      "object")
        values: dict[str, Any] = {}
        for name in ("name", "bundle_name", "version", "manifest_sha256", "bundle_file",
                     "installed_at", "oemkit_version", "python"):
            value = doc.get(name)
            required = name in ("name", "bundle_name", "version", "manifest_sha256")
            if value is None and not required:
                values[name] = None
                continue
            if not isinstance(value, str) or not value:
                raise bad(f"{name!r} must be a non-empty string, not {_kind(value)}")
            pattern = _FIELDS.get(name)
            if pattern is not None and not pattern.fullmatch(value):
                raise bad(f"{name!r} is not what oemkit writes there "
                          f"({value[:40]!a})")
            values[name] = value
        config_version = doc.get("config_version")
        if config_version is not None and (type(config_version) is not int
                                           or not 0 <= config_version <= 2**53 - 1):
            raise bad(f"'config_version' must be an integer, not {_kind(config_version)}")
        return cls(**values, config_version=config_version)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "an empty string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), "null")


def read_slot(slot: Path) -> SlotRecord:
    """The checked ``slot.json`` of a slot directory (never read through a link);
    ``E_SLOT_DAMAGED`` when it is missing, unreadable or malformed."""
    from oemkit.host.prefix import read_regular

    where = f"{slot.name}/slot.json"
    try:
        data = read_regular(slot / "slot.json", MAX_SLOT_JSON)
    except OemkitError as exc:
        raise InputError("E_SLOT_DAMAGED", f"{where} cannot be read: {exc.message}",
                         hint="roll back or reinstall the release") from None
    if data is None:
        raise InputError("E_SLOT_DAMAGED", f"{where} is missing: the slot is incomplete",
                         hint="roll back or reinstall the release")
    return SlotRecord.parse(data, where)
