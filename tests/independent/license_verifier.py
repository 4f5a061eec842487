"""An independent, stateless verifier for oemkit offline licenses.

Written only from docs/LICENSE-FORMAT.md, with ``cryptography`` and the standard library:
it deliberately imports nothing from oemkit, so that it checks the document as much as
the code. It implements §11 steps 1-10, 14, 17, 19, 20 and the hardware and environment
parts of 21 (no host state, no revocation lists, no bundle facts).

    claims = verify_license(armored_bytes, {keyid: ("ed25519", pem)}, now)

raises :class:`Rejected` (with ``.code``, e.g. ``E_SIG_INVALID``) or returns the claims
as a ``dict``; :func:`judge` also returns the status (``valid`` / ``grace``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

UTC = dt.timezone.utc
LICENSE_LABEL = "OEMKIT LICENSE"
LICENSE_PAYLOAD_TYPE = "application/vnd.oemkit.license+json"
LICENSE_TYPE = "oemkit-license/v1"
MAX_ARMORED = 65536
MAX_DEPTH = 64
MAX_SAFE_INTEGER = 2**53 - 1
LATEST = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
CLOCK_TOLERANCE = dt.timedelta(hours=1)
KNOWN_CRITICAL = frozenset({"bundle", "environment", "hardware", "min_crl_seq"})
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_L = 2**252 + 27742317777372353535851937790883648493
SMALL_ORDER = frozenset(bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
))
_ARMOR_BODY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n")
_B64 = re.compile(r"([A-Za-z0-9+/]*)(={0,2})")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class Rejected(Exception):
    """The license (or the trusted-key list) was rejected; ``code`` is the error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Verdict:
    status: str
    claims: dict[str, Any]
    effective_time: dt.datetime
    grace_days_left: int | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Key:
    algorithm: str
    public: Any
    usages: tuple[str, ...] | None


# --------------------------------------------------------------------------- helpers


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (§4)."""
    ptype = payload_type.encode("utf-8")
    return b"DSSEv1 " + str(len(ptype)).encode() + b" " + ptype + b" " + \
        str(len(payload)).encode() + b" " + payload


def keyed_hash(salt_hex: str, kind: str, value: str) -> str:
    """HMAC-SHA256(bytes of the hex salt, UTF-8 "kind:value"), lower-case hex (§9)."""
    return hmac.new(bytes.fromhex(salt_hex), (kind + ":" + value).encode("utf-8"),
                    hashlib.sha256).hexdigest()


def _strict_b64(text: str) -> bytes:
    """§2.4: canonical standard base64, exactly the padding needed, unused bits zero."""
    match = _B64.fullmatch(text)
    if len(text) % 4 or not match:
        raise ValueError("not strict base64")
    body, padding = match.group(1), len(match.group(2))
    if padding != (4 - len(body) % 4) % 4:
        raise ValueError("wrong amount of '=' padding")
    data = base64.b64decode(text, validate=True)
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError("non-zero unused bits")
    return data


def _dsse_b64(value: object) -> bytes:
    """Standard or URL-safe base64, padding optional, outer whitespace ignored (§3.6)."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    text = value.strip()
    text += "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    return _strict_b64(text)


def dearmor(data: bytes, label: str) -> bytes:
    """§2: the bytes inside exactly one armor block."""
    if len(data) > MAX_ARMORED:
        raise Rejected("E_TOO_LARGE", f"{len(data)} bytes (limit {MAX_ARMORED})")
    if any(b >= 0x80 for b in data):
        raise Rejected("E_ARMOR", "not ASCII text")
    text = data.decode("ascii").strip()
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    if not (text.startswith(begin) and text.endswith(end)) or len(text) < len(begin) + len(end):
        raise Rejected("E_ARMOR", f"no well-formed '{begin}' block")
    middle = text[len(begin):len(text) - len(end)]
    if middle.startswith("\r\n"):
        rest = middle[2:]
    elif middle.startswith("\n"):
        rest = middle[1:]
    else:
        raise Rejected("E_ARMOR", "the BEGIN line does not end the line")
    if len(rest) < 2 or not rest.endswith("\n") or not set(rest) <= _ARMOR_BODY:
        raise Rejected("E_ARMOR", "malformed body (characters that are not base64)")
    try:
        return _strict_b64("".join(rest.split()))
    except (ValueError, binascii.Error) as exc:
        raise Rejected("E_ARMOR", f"bad base64 ({exc})") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard constant {name}")


def _depth_ok(obj: Any) -> bool:
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def strict_json(data: bytes, code: str) -> Any:
    """UTF-8 (no BOM), no duplicate keys, no NaN/Infinity, depth <= 64."""
    try:
        text = data.decode("utf-8")
        if text.startswith("\ufeff"):
            raise ValueError("byte-order mark")
        obj = json.loads(text, object_pairs_hook=_no_duplicates,
                         parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Rejected(code, f"not strict JSON: {exc}") from None
    if not _depth_ok(obj):
        raise Rejected(code, f"nested deeper than {MAX_DEPTH} levels")
    return obj


# --------------------------------------------------------------------------- RFC 8785


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                  "\f": "\\f", "\r": "\\r"}


def _canon_string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            raise Rejected("E_CLAIMS_INVALID", "a string holds an unpaired surrogate")
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _canon(obj: Any) -> str:
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        if abs(obj) > MAX_SAFE_INTEGER:
            raise Rejected("E_CLAIMS_INVALID", f"integer {obj} has no RFC 8785 form")
        return str(obj)
    if isinstance(obj, float):
        raise Rejected("E_CLAIMS_INVALID", "a floating-point number")
    if isinstance(obj, str):
        return _canon_string(obj)
    if isinstance(obj, list):
        return "[" + ",".join(_canon(v) for v in obj) + "]"
    if isinstance(obj, dict):
        keys = sorted(obj, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(_canon_string(k) + ":" + _canon(obj[k]) for k in keys) + "}"
    raise TypeError(type(obj).__name__)


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 for the subset of §6 (integers only)."""
    return _canon(obj).encode("utf-8")


def _has_float(obj: Any) -> bool:
    if isinstance(obj, float):
        return True
    if isinstance(obj, dict):
        return any(_has_float(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_float(v) for v in obj)
    return False


# --------------------------------------------------------------------------- keys, signatures


def _load_trusted(trusted: Mapping[str, Sequence[Any]]) -> dict[str, _Key]:
    out = {}
    for keyid, entry in trusted.items():
        algorithm, pem = entry[0], entry[1]
        usages = tuple(entry[2]) if len(entry) > 2 else None
        raw = pem.encode("ascii") if isinstance(pem, str) else pem
        try:
            public = serialization.load_pem_public_key(raw)
        except ValueError as exc:
            raise Rejected("E_TRUST_INVALID", f"key {keyid[:16]}: {exc}") from None
        if isinstance(public, ed25519.Ed25519PublicKey):
            actual = "ed25519"
            point = bytearray(public.public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw))
            point[31] &= 0x7F
            if bytes(point) in SMALL_ORDER:
                raise Rejected("E_TRUST_WEAK_KEY", f"key {keyid[:16]} has small order")
        elif isinstance(public, ec.EllipticCurvePublicKey) and \
                isinstance(public.curve, ec.SECP256R1):
            actual = "ecdsa-p256"
        else:
            raise Rejected("E_TRUST_INVALID", f"key {keyid[:16]} is not Ed25519 or P-256")
        if actual != algorithm:
            raise Rejected("E_TRUST_INVALID", f"key {keyid[:16]} is {actual}, not {algorithm}")
        der = public.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        if hashlib.sha256(der).hexdigest() != keyid:
            raise Rejected("E_TRUST_INVALID", f"key id {keyid[:16]} does not match its key")
        out[keyid] = _Key(algorithm, public, usages)
    return out


def parse_der_signature(sig: bytes) -> tuple[int, int]:
    """Strict DER SEQUENCE { INTEGER r, INTEGER s } (ValueError otherwise)."""
    if len(sig) < 8 or sig[0] != 0x30 or sig[1] >= 0x80 or sig[1] != len(sig) - 2:
        raise ValueError("not a DER SEQUENCE of the right length")
    pos, values = 2, []
    for _ in range(2):
        if pos + 2 > len(sig) or sig[pos] != 0x02:
            raise ValueError("not an INTEGER")
        length = sig[pos + 1]
        body = sig[pos + 2:pos + 2 + length]
        if length == 0 or length >= 0x80 or len(body) != length:
            raise ValueError("bad INTEGER length")
        if body[0] & 0x80:
            raise ValueError("negative INTEGER")
        if length > 1 and body[0] == 0 and not body[1] & 0x80:
            raise ValueError("non-minimal INTEGER")
        values.append(int.from_bytes(body, "big"))
        pos += 2 + length
    if pos != len(sig):
        raise ValueError("trailing bytes")
    return values[0], values[1]


def _signature_ok(key: _Key, message: bytes, sig: bytes) -> bool:
    try:
        if key.algorithm == "ed25519":
            if len(sig) != 64 or int.from_bytes(sig[32:], "little") >= ED25519_L:
                return False
            key.public.verify(sig, message)
        else:
            r, s = parse_der_signature(sig)
            if not (1 <= r < P256_N and 1 <= s <= P256_N // 2):
                return False
            key.public.verify(sig, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- claims


def _bad(message: str) -> Rejected:
    return Rejected("E_CLAIMS_INVALID", message)


def parse_time(value: object, name: str) -> dt.datetime:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise _bad(f"{name} must be YYYY-MM-DDTHH:MM:SSZ")
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise _bad(f"{name} is not a valid time") from None


def _nonempty(obj: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    # §7: an optional field is absent or holds a value; null is not "absent"
    if name not in obj and optional:
        return None
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} must be a non-empty string")
    return value


def _integer(obj: Mapping[str, Any], name: str, minimum: int, *, optional: bool = False
             ) -> int | None:
    if name not in obj and optional:
        return None
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _bad(f"{name} must be an integer >= {minimum}")
    return value


def _only(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = set(obj) - allowed
    if extra:
        raise _bad(f"unknown field(s) {sorted(extra)} in {where}")


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object")
    return value


def check_claims(obj: Any) -> None:
    """The schema of §7."""
    claims = _object(obj, "the claims")
    if claims.get("type") != LICENSE_TYPE:
        raise _bad(f"type is not {LICENSE_TYPE}")
    _only(claims, {"type", "license_id", "seq", "issuer", "customer", "product", "issued_at",
                   "not_before", "expires", "grace_seconds", "bindings", "entitlements",
                   "critical", "extensions", "min_crl_seq"}, "the claims")
    license_id = claims.get("license_id")
    if not isinstance(license_id, str) or not _ID.fullmatch(license_id):
        raise _bad("license_id must be 1-64 of A-Z a-z 0-9 . _ -")
    _integer(claims, "seq", 1)
    _nonempty(claims, "issuer")
    customer = _object(claims.get("customer"), "customer")
    _only(customer, {"id", "name"}, "customer")
    _nonempty(customer, "id")
    _nonempty(customer, "name")
    _nonempty(claims, "product")
    parse_time(claims.get("issued_at"), "issued_at")
    not_before = parse_time(claims.get("not_before"), "not_before")
    expires = parse_time(claims.get("expires"), "expires")
    if expires <= not_before:
        raise _bad("expires must be after not_before")
    grace = _integer(claims, "grace_seconds", 0)
    assert grace is not None
    if grace > (LATEST - expires).total_seconds():
        raise _bad("expires + grace_seconds is after 9999-12-31T23:59:59Z")
    _integer(claims, "min_crl_seq", 0, optional=True)

    bindings = _object(claims.get("bindings", {}), "bindings")
    _only(bindings, {"bundle", "hardware", "environment"}, "bindings")
    if "bundle" in bindings:
        bundle = _object(bindings["bundle"], "bindings.bundle")
        if len(bundle) != 1:
            raise _bad("bindings.bundle must hold exactly one of its keys")
        _only(bundle, {"digests", "channel", "updates_until"}, "bindings.bundle")
        digests = bundle.get("digests", [])
        if not isinstance(digests, list) or any(
                not isinstance(d, str) or not _DIGEST.fullmatch(d) for d in digests):
            raise _bad("bindings.bundle.digests must be sha256:<64 hex> strings")
        if "digests" in bundle and not digests:
            raise _bad("bindings.bundle.digests must not be empty")
        _nonempty(bundle, "channel", optional=True)
        if "updates_until" in bundle:
            parse_time(bundle["updates_until"], "bindings.bundle.updates_until")
    if "hardware" in bindings:
        hardware = _object(bindings["hardware"], "bindings.hardware")
        _only(hardware, {"salt", "match", "components"}, "bindings.hardware")
        salt = hardware.get("salt")
        if not isinstance(salt, str) or not _HEX64.fullmatch(salt):
            raise _bad("bindings.hardware.salt must be 64 lower-case hex digits")
        components = hardware.get("components")
        if not isinstance(components, list) or not components:
            raise _bad("bindings.hardware.components must be a non-empty list")
        for comp in components:
            if (not isinstance(comp, dict) or set(comp) != {"kind", "hash"}
                    or not isinstance(comp["kind"], str) or not isinstance(comp["hash"], str)
                    or not _HEX64.fullmatch(comp["hash"])):
                raise _bad("each hardware component is {kind, hash (64 hex)}")
        match = _integer(hardware, "match", 1)
        assert match is not None
        if match > len(components):
            raise _bad("bindings.hardware.match exceeds the number of components")
    _nonempty(bindings, "environment", optional=True)

    entitlements = _object(claims.get("entitlements", {}), "entitlements")
    _only(entitlements, {"features", "limits"}, "entitlements")
    features = entitlements.get("features", [])
    if not isinstance(features, list) or any(not isinstance(f, str) for f in features):
        raise _bad("entitlements.features must be a list of strings")
    limits = entitlements.get("limits", {})
    if not isinstance(limits, dict) or any(
            not isinstance(v, int) or isinstance(v, bool) for v in limits.values()):
        raise _bad("entitlements.limits must map names to integers")
    critical = claims.get("critical", [])
    if not isinstance(critical, list) or any(not isinstance(c, str) for c in critical):
        raise _bad("critical must be a list of strings")
    _object(claims.get("extensions", {}), "extensions")


# --------------------------------------------------------------------------- the verifier


def judge(data: bytes, trusted: Mapping[str, Sequence[Any]], now: dt.datetime, *,
          host: Mapping[str, Sequence[str]] | None = None,
          environment: str | None = None) -> Verdict:
    """Steps 1-10, 14, 17, 19-21 of §11 for one armored license, judged at ``now``."""
    keys = _load_trusted(trusted)
    # 1-2 size and armor
    envelope_bytes = dearmor(data, LICENSE_LABEL)
    # 3 envelope
    env = strict_json(envelope_bytes, "E_ENVELOPE")
    if not isinstance(env, dict) or set(env) != {"payloadType", "payload", "signatures"}:
        raise Rejected("E_ENVELOPE", "not {payloadType, payload, signatures}")
    sigs = env["signatures"]
    if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict):
        raise Rejected("E_ENVELOPE", "exactly one signature is expected")
    entry = sigs[0]
    if set(entry) != {"keyid", "alg", "sig"} or not all(isinstance(v, str)
                                                        for v in entry.values()):
        raise Rejected("E_ENVELOPE", "the signature must be {keyid, alg, sig} strings")
    if not isinstance(env["payloadType"], str):
        raise Rejected("E_ENVELOPE", "payloadType must be a string")
    try:
        payload = _dsse_b64(env["payload"])
        sig = _dsse_b64(entry["sig"])
    except (ValueError, binascii.Error) as exc:
        raise Rejected("E_ENVELOPE", f"bad base64 ({exc})") from None
    # 4 payload type
    if env["payloadType"] != LICENSE_PAYLOAD_TYPE:
        raise Rejected("E_PAYLOAD_TYPE", f"{env['payloadType']!r} is not a license")
    # 5 key lookup, 6 algorithm, 7 usage
    key = keys.get(entry["keyid"])
    if key is None:
        raise Rejected("E_KID_UNKNOWN", f"key {entry['keyid'][:16]} is not trusted")
    if entry["alg"] != key.algorithm:
        raise Rejected("E_ALG_MISMATCH", f"alg {entry['alg']!r}, key is {key.algorithm}")
    if key.usages is not None and "license" not in key.usages:
        raise Rejected("E_KEY_USAGE", f"key is trusted for {', '.join(key.usages)}")
    # 8 signature over PAE
    if not _signature_ok(key, pae(LICENSE_PAYLOAD_TYPE, payload), sig):
        raise Rejected("E_SIG_INVALID", "the signature does not verify")
    # 9 claims: strict JSON, no floats, canonical, schema
    claims = strict_json(payload, "E_CLAIMS_INVALID")
    if _has_float(claims):
        raise _bad("a floating-point number")
    if canonical_json(claims) != payload:
        raise _bad("not in canonical form (RFC 8785)")
    check_claims(claims)
    # 10 critical
    unknown = sorted(set(claims.get("critical", [])) - KNOWN_CRITICAL)
    if unknown:
        raise Rejected("E_CRIT_UNKNOWN", f"unknown critical extension {unknown[0]!r}")
    # 14 no CRL is available to this verifier
    if "min_crl_seq" in claims:
        raise Rejected("E_CRL_STALE", f"needs CRL sequence >= {claims['min_crl_seq']}")
    # 17, 19, 20 time
    issued = parse_time(claims["issued_at"], "issued_at")
    not_before = parse_time(claims["not_before"], "not_before")
    expires = parse_time(claims["expires"], "expires")
    if now + CLOCK_TOLERANCE < issued:
        raise Rejected("E_CLOCK_BEHIND", "the clock is behind the signed issue time")
    effective = max(now, issued)
    if effective < not_before:
        raise Rejected("E_NOT_YET_VALID", f"valid from {claims['not_before']}")
    grace_end = expires + dt.timedelta(seconds=claims["grace_seconds"])
    if effective > grace_end:
        raise Rejected("E_EXPIRED", f"expired at {claims['expires']}")
    # 21 bindings
    warnings = []
    bindings = claims.get("bindings", {})
    if "bundle" in bindings:
        warnings.append("bundle binding not checked (no bundle facts)")
    hardware = bindings.get("hardware")
    if hardware is not None:
        present = {(kind, keyed_hash(hardware["salt"], kind, value))
                   for kind, values in (host or {}).items() for value in values}
        matched = sum(1 for c in hardware["components"] if (c["kind"], c["hash"]) in present)
        if matched < hardware["match"]:
            raise Rejected("E_HW_MISMATCH", f"{matched} components match, "
                           f"{hardware['match']} required")
    wanted = bindings.get("environment")
    if "environment" in bindings and environment != wanted:
        raise Rejected("E_ENV_MISMATCH", f"licensed for {wanted!r}, host is {environment!r}")
    # 22 verdict
    if effective > expires:
        days = (grace_end - effective) // dt.timedelta(days=1)
        return Verdict("grace", claims, effective, days, warnings)
    return Verdict("valid", claims, effective, None, warnings)


def verify_license(data: bytes, trusted: Mapping[str, Sequence[Any]], now: dt.datetime, *,
                   host: Mapping[str, Sequence[str]] | None = None,
                   environment: str | None = None) -> dict[str, Any]:
    """The decoded claims of an acceptable license; :class:`Rejected` otherwise."""
    return judge(data, trusted, now, host=host, environment=environment).claims
