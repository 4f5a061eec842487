"""Canonical JSON (RFC 8785), DSSE pre-authentication encoding and digests.

Everything oemkit signs or hashes goes through here, so that "the same document" always
means "the same bytes".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from oemkit.errors import InputError

MAX_JSON_DEPTH = 64


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` as RFC 8785 canonical JSON (sorted keys, no whitespace, UTF-8)."""
    import rfc8785

    return rfc8785.dumps(obj)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature actually covers."""
    ptype = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(ptype), ptype, len(payload), payload)


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (what DSSE and Sigstore write)."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: object, *, what: str) -> bytes:
    """Decode standard or URL-safe base64, as DSSE verifiers must accept both."""
    if not isinstance(text, str):
        raise InputError("E_BASE64", f"{what} is not a base64 string", hint="the file is damaged")
    cleaned = text.strip()
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.b64decode(cleaned, altchars=b"-_", validate=True)
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(
            "E_BASE64", f"{what} is not valid base64 ({exc})", hint="the file is damaged"
        ) from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _depth(obj: Any, limit: int) -> None:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise ValueError(f"nested deeper than {limit} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def parse_json(data: bytes, *, what: str, code: str = "E_JSON") -> Any:
    """Parse untrusted JSON strictly: UTF-8 only, no duplicate keys, no NaN, bounded depth.

    Raises InputError naming ``what``; callers that judge a bundle re-raise as a
    verification failure.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(code, f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})",
                         hint="the file is damaged or not JSON") from exc
    def _reject_constant(name: str) -> Any:
        raise ValueError(f"non-standard constant {name}")

    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
        _depth(obj, MAX_JSON_DEPTH)
    except (ValueError, RecursionError) as exc:
        raise InputError(code, f"{what} is not valid JSON: {exc}",
                         hint="the file is damaged or not JSON") from exc
    return obj
