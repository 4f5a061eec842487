"""The trust root: which keys may sign what, for how long, and how many must agree.

A trust root document is a DSSE envelope whose payload is the canonical JSON of
:class:`TrustRoot`. Classes validate in their constructors (``from_dict``) so that a
parsed object is always a well-formed one.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from oemkit._time import format_time, parse_time
from oemkit.errors import FormatError

TRUST_ROOT_TYPE = "oemkit-trust-root"
TRUST_ROOT_PAYLOAD_TYPE = "application/vnd.oemkit.trust-root+json"
Usage = Literal["root", "bundle", "license", "crl"]
USAGES: tuple[Usage, ...] = ("root", "bundle", "license", "crl")
Status = Literal["active", "retired", "compromised"]
STATUSES: tuple[Status, ...] = ("active", "retired", "compromised")
#: A trust root listing more keys than this is rejected as hostile (E_TRUST_TOO_MANY_KEYS),
#: before any key is loaded. Retired keys stay listed, so a root grows with its history;
#: 256 is far above any real one and bounds what loading a root's keys costs.
MAX_KEYS = 256
#: A trust root envelope with more signatures than this is rejected as hostile
#: (E_TOO_MANY_SIGNATURES), before any is checked: counting the signers costs
#: signatures x candidate keys verifications, and a real root carries a threshold of
#: its own root keys plus, across a rotation, of its predecessor's.
MAX_ROOT_SIGNATURES = 16
#: A trust root document larger than this is refused (E_TOO_LARGE) before it is parsed:
#: MAX_KEYS keys of MAX_PUBLIC_KEY_CHARS each, base64-encoded in the envelope, fit with
#: room to spare (an oemkit root of 256 Ed25519 keys is about 110 KiB).
MAX_ROOT_BYTES = 1 << 20
#: An Ed25519 SPKI PEM is 113 characters, a P-256 one 178; anything far longer is refused
#: before it is decoded.
MAX_PUBLIC_KEY_CHARS = 1024
_KEYID = re.compile(r"[0-9a-f]{64}")


def _invalid(message: str) -> FormatError:
    return FormatError("E_TRUST_INVALID", f"trust root: {message}",
                      hint="the trust root is damaged; get it again from the vendor")


def _is_int(value: object) -> bool:
    """An integer, and not a boolean (JSON ``true`` is not the number 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_thresholds(thresholds: dict[str, Any]) -> None:
    for usage in USAGES:
        value = thresholds.get(usage)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _invalid(f"threshold for {usage!r} must be a positive integer, got "
                           f"{value!r}")


#: Ed25519 points of small order (y with the sign bit cleared), as in libsodium's
#: blocklist: a signature "verifies" under them for many messages.
_SMALL_ORDER_Y = {bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
)}


def is_weak_key(public: object) -> bool:
    """True for an Ed25519 public key of small order (never a legitimately generated key)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if not isinstance(public, ed25519.Ed25519PublicKey):
        return False
    raw = bytearray(public.public_bytes_raw())
    raw[31] &= 0x7F
    return bytes(raw) in _SMALL_ORDER_Y


@dataclass(frozen=True)
class TrustKey:
    """One key of the trust root with its usages, status and validity window."""

    keyid: str
    name: str
    algorithm: str
    public_key: str
    usage: tuple[Usage, ...]
    status: Status = "active"
    not_before: dt.datetime | None = None
    expires: dt.datetime | None = None
    retired_at: dt.datetime | None = None

    def window_end(self) -> dt.datetime | None:
        """The end of the key's validity: the earlier of expiry and retirement."""
        ends = [t for t in (self.expires, self.retired_at) if t is not None]
        return min(ends) if ends else None

    def valid_at(self, moment: dt.datetime) -> bool:
        """Whether something signed at ``moment`` falls inside this key's window."""
        if self.status == "compromised":
            return False
        if self.not_before is not None and moment < self.not_before:
            return False
        end = self.window_end()
        return end is None or moment <= end

    def to_dict(self) -> dict[str, Any]:
        """The key as trust-root JSON."""
        return {
            "keyid": self.keyid,
            "name": self.name,
            "algorithm": self.algorithm,
            "public_key": self.public_key,
            "usage": list(self.usage),
            "status": self.status,
            "not_before": format_time(self.not_before) if self.not_before else None,
            "expires": format_time(self.expires) if self.expires else None,
            "retired_at": format_time(self.retired_at) if self.retired_at else None,
        }

    @classmethod
    def from_dict(cls, data: Any) -> TrustKey:
        """Parse one key entry: shape first, then the public key, which must match
        its key id.

        Raises:
            FormatError: E_TRUST_INVALID, E_TRUST_WEAK_KEY (a small-order Ed25519 point).
            InputError: E_KEY_FORMAT, E_KEY_ALGORITHM (the key loader's), E_TIME (a key
                window time).
        """
        from oemkit.crypto.keys import algorithm_of, key_id, load_public

        if not isinstance(data, dict):
            raise _invalid("a key entry is not an object")
        keyid = data.get("keyid")
        pem = data.get("public_key")
        if not isinstance(keyid, str) or not isinstance(pem, str):
            raise _invalid("a key entry lacks keyid or public_key")
        if not _KEYID.fullmatch(keyid):
            raise _invalid(f"key id {keyid[:70]!r} is not 64 lowercase hex digits")
        if len(pem) > MAX_PUBLIC_KEY_CHARS:
            raise _invalid(f"key {keyid[:16]}…: public_key is {len(pem)} characters (an "
                           f"oemkit public key PEM has at most {MAX_PUBLIC_KEY_CHARS})")
        # The cheap checks first: loading the public key is what a key costs.
        usage = data.get("usage")
        if not isinstance(usage, list) or not usage or any(u not in USAGES for u in usage):
            raise _invalid(f"key {keyid[:16]}… has invalid usage {usage!r}")
        status = data.get("status", "active")
        if status not in STATUSES:
            raise _invalid(f"key {keyid[:16]}… has invalid status {status!r}")
        name = data.get("name", "")
        if not isinstance(name, str):
            raise _invalid(f"key {keyid[:16]}… has a non-string name")
        public = load_public(pem, f"trust root key {keyid[:16]}")
        if is_weak_key(public):
            raise FormatError("E_TRUST_WEAK_KEY", f"trust root: key {keyid[:16]}… is a "
                              "small-order Ed25519 point that would accept forged signatures",
                              hint="the trust root is hostile or broken; get it again from the "
                                   "vendor")
        if key_id(public) != keyid:
            raise _invalid(f"key {keyid[:16]}… does not match its public key")

        def when(field_name: str) -> dt.datetime | None:
            value = data.get(field_name)
            return None if value is None else parse_time(value, f"key {keyid[:16]} {field_name}")

        return cls(
            keyid=keyid, name=name, algorithm=algorithm_of(public), public_key=pem,
            usage=tuple(usage), status=status, not_before=when("not_before"),
            expires=when("expires"), retired_at=when("retired_at"),
        )


@dataclass(frozen=True)
class TrustRoot:
    """One version of the trust root."""

    version: int
    issued: dt.datetime
    thresholds: dict[str, int]
    keys: tuple[TrustKey, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise _invalid(f"version must be >= 1, got {self.version}")
        _check_thresholds(self.thresholds)
        ids = [k.keyid for k in self.keys]
        if len(set(ids)) != len(ids):
            raise _invalid("a key is listed twice")
        active_root = [k for k in self.keys if "root" in k.usage and k.status == "active"]
        if len(active_root) < self.thresholds["root"]:
            raise _invalid(
                f"it has {len(active_root)} active root key(s) but the root threshold is "
                f"{self.thresholds['root']}"
            )

    def key(self, keyid: str) -> TrustKey | None:
        """The key with ``keyid``, or None."""
        for k in self.keys:
            if k.keyid == keyid:
                return k
        return None

    def keys_for(self, usage: Usage) -> list[TrustKey]:
        """Keys listed for ``usage`` that are not compromised."""
        return [k for k in self.keys if usage in k.usage and k.status != "compromised"]

    def active_root_keys(self) -> list[TrustKey]:
        """The active keys with ``root`` usage."""
        return [k for k in self.keys if "root" in k.usage and k.status == "active"]

    def to_dict(self) -> dict[str, Any]:
        """The root as its signed JSON payload, keys sorted by key id."""
        return {
            "type": TRUST_ROOT_TYPE,
            "spec_version": 1,
            "version": self.version,
            "issued": format_time(self.issued),
            "thresholds": {u: self.thresholds[u] for u in USAGES},
            "keys": [k.to_dict() for k in sorted(self.keys, key=lambda k: k.keyid)],
        }

    @staticmethod
    def check_shape(data: Any) -> int:
        """The cheap checks of a payload, before any key is loaded: the document type,
        its fields, the version, the threshold values and the number of keys (at most
        :data:`MAX_KEYS`). Returns the version. :meth:`from_dict` starts with these, and
        a verifier runs them on a carried root before it checks any signature.

        Raises:
            FormatError: E_TRUST_INVALID, E_TRUST_TOO_MANY_KEYS.
        """
        if not isinstance(data, dict):
            raise _invalid("payload is not an object")
        spec_version = data.get("spec_version")
        if (data.get("type") != TRUST_ROOT_TYPE or not _is_int(spec_version)
                or spec_version != 1):
            raise _invalid(f"type is not {TRUST_ROOT_TYPE} v1")
        unknown = set(data) - {"type", "spec_version", "version", "issued", "thresholds", "keys"}
        if unknown:
            raise _invalid(f"unknown field(s) {sorted(unknown)}")
        version = data.get("version")
        if not _is_int(version):
            raise _invalid("version is not an integer")
        keys = data.get("keys")
        if not isinstance(keys, list):
            raise _invalid("keys is not a list")
        if len(keys) > MAX_KEYS:
            raise FormatError("E_TRUST_TOO_MANY_KEYS",
                              f"trust root lists {len(keys)} keys (limit {MAX_KEYS})",
                              hint="the trust root is hostile or damaged")
        thresholds = data.get("thresholds")
        if not isinstance(thresholds, dict):
            raise _invalid("thresholds is not an object")
        unknown = set(thresholds) - set(USAGES)
        if unknown:
            raise _invalid(f"unknown threshold(s) {sorted(unknown)}")
        _check_thresholds(thresholds)
        assert isinstance(version, int)
        return version

    @classmethod
    def from_dict(cls, data: Any) -> TrustRoot:
        """Parse a trust-root payload (not its signatures: see ``verify.trust``).

        Raises:
            FormatError: E_TRUST_INVALID, E_TRUST_TOO_MANY_KEYS, E_TRUST_WEAK_KEY.
            InputError: E_KEY_FORMAT, E_KEY_ALGORITHM (the key loader's), E_TIME (the
                issued or a key window time).
        """
        cls.check_shape(data)
        return cls(
            version=data["version"],
            issued=parse_time(data.get("issued"), "trust root issued"),
            thresholds=dict(data["thresholds"]),
            keys=tuple(TrustKey.from_dict(k) for k in data["keys"]),
        )

    def next_version(self, issued: dt.datetime, **changes: Any) -> TrustRoot:
        """The next version, issued at ``issued``, with ``changes`` applied."""
        return replace(self, version=self.version + 1, issued=issued, **changes)
