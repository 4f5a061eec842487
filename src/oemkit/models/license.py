"""License claims, revocation lists and host fingerprints: typed, validated, canonical.

A license is an armored DSSE envelope whose payload is the RFC 8785 canonical JSON of
:class:`LicenseClaims`; a CRL the same with :class:`RevocationList`. ``from_dict``
validates strictly: unknown fields, floats and wrong types are rejected, so a parsed
object is always one that oemkit itself could have written.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oemkit._time import MAX_TIME, UTC, format_time
from oemkit.errors import FormatError

if TYPE_CHECKING:
    from oemkit.crypto.keys import PrivateKeyInfo

#: The armor label of a license document (``-----BEGIN OEMKIT LICENSE-----``).
LICENSE_LABEL = "OEMKIT LICENSE"
LICENSE_TYPE = "oemkit-license/v1"
LICENSE_PAYLOAD_TYPE = "application/vnd.oemkit.license+json"
CRL_TYPE = "oemkit-crl/v1"
CRL_PAYLOAD_TYPE = "application/vnd.oemkit.crl+json"
FINGERPRINT_TYPE = "oemkit-fingerprint/v1"
#: Claims oemkit understands; a name in ``critical`` outside this set fails closed.
KNOWN_EXTENSIONS = frozenset({"hardware", "bundle", "environment", "min_crl_seq"})
#: Identifiers and digests are matched with ``fullmatch``: ``re.match(r"...$")`` would
#: also accept a trailing newline.
LICENSE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: The only time form allowed in signed claims and CRLs (what oemkit writes).
_SIGNED_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
#: The latest representable moment; ``expires + grace_seconds`` must not pass it.
_MAX_TIME = MAX_TIME


def _bad(message: str) -> FormatError:
    return FormatError("E_CLAIMS_INVALID", f"license claims: {message}",
                       check="license claims",
                       hint="the license was not written by a compatible oemkit")


def crl_error(message: str) -> FormatError:
    """E_CRL_INVALID: the signed document of a revocation list is malformed (a verifier
    restates it as a VerificationError)."""
    return FormatError("E_CRL_INVALID", f"revocation list: {message}",
                       check="revocation list",
                       hint="the CRL is damaged; get a fresh one from the vendor")


claims_error = _bad


def parse_signed_time(value: object) -> dt.datetime:
    """A time of a signed document: exactly ``YYYY-MM-DDTHH:MM:SSZ`` (ValueError otherwise).

    Stricter than ``_time.parse_time`` (which reads command-line input): no date-only,
    basic or space-separated forms, no fractions, no offsets, no missing zone.

    Raises:
        ValueError: any other form (callers raise their own code).
    """
    if not isinstance(value, str) or not _SIGNED_TIME.fullmatch(value):
        raise ValueError(f"{value!r} is not YYYY-MM-DDTHH:MM:SSZ")
    # the fields by position (the pattern fixed them): strptime would import _strptime
    # and compile its locale's patterns, about 3 ms of a license check's first call
    return dt.datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]),
                       int(value[14:16]), int(value[17:19]), tzinfo=UTC)


def is_license_id(value: object) -> bool:
    """Whether ``value`` is a valid license id (1-64 of A-Z a-z 0-9 . _ -, alnum first)."""
    return isinstance(value, str) and LICENSE_ID.fullmatch(value) is not None


def no_floats(obj: Any, where: str = "", bad: Any = _bad) -> None:
    """Signed oemkit documents hold integers only: floats have no single canonical form.

    ``bad`` makes the error (license claims by default, :func:`crl_error` for CRLs).

    Raises:
        FormatError: E_CLAIMS_INVALID (or ``bad``'s code: E_CRL_INVALID).
    """
    if isinstance(obj, float):
        raise bad(f"{where or 'a value'} is a floating-point number")
    if isinstance(obj, dict):
        for k, v in obj.items():
            no_floats(v, f"{where}.{k}" if where else k, bad)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            no_floats(v, f"{where}[{i}]", bad)


# Optional fields are either absent or hold a value: an explicit ``null`` is rejected
# (oemkit never writes one, and "null means absent" is one more spelling to get wrong).


def _str(data: dict[str, Any], key: str, *, required: bool = True, where: str = ""
         ) -> str | None:
    if key not in data and not required:
        return None
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise _bad(f"{where}{key} must be a non-empty string")
    return value


def _int(data: dict[str, Any], key: str, *, minimum: int = 0, required: bool = True
         ) -> int | None:
    if key not in data and not required:
        return None
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _bad(f"{key} must be an integer >= {minimum}")
    return value


def _time(data: dict[str, Any], key: str, *, required: bool = True, where: str = ""
          ) -> dt.datetime | None:
    if key not in data and not required:
        return None
    try:
        return parse_signed_time(data.get(key))
    except ValueError:
        raise _bad(f"{where}{key} must be a UTC time written YYYY-MM-DDTHH:MM:SSZ, got "
                   f"{data.get(key)!r}") from None


def _only(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise _bad(f"unknown field(s) {sorted(unknown)} in {where}")


@dataclass(frozen=True)
class HardwareBinding:
    """k-of-n keyed hashes of host components (HMAC-SHA256 under ``salt``)."""

    salt: str
    match: int
    components: tuple[tuple[str, str], ...]  # (kind, hex hmac)

    def to_dict(self) -> dict[str, Any]:
        """The binding as its claims JSON (the inverse of :meth:`from_dict`)."""
        return {"salt": self.salt, "match": self.match,
                "components": [{"kind": k, "hash": h} for k, h in self.components]}

    @classmethod
    def from_dict(cls, data: Any) -> HardwareBinding:
        """Parse ``bindings.hardware`` strictly.

        Raises:
            FormatError: E_CLAIMS_INVALID.
        """
        if not isinstance(data, dict):
            raise _bad("bindings.hardware must be an object")
        _only(data, {"salt", "match", "components"}, "bindings.hardware")
        salt = _str(data, "salt")
        assert salt is not None
        if not _HEX.fullmatch(salt):
            raise _bad("bindings.hardware.salt must be 64 hex digits")
        comps = data.get("components")
        if not isinstance(comps, list) or not comps:
            raise _bad("bindings.hardware.components must be a non-empty list")
        parsed = []
        for c in comps:
            if (not isinstance(c, dict) or set(c) != {"kind", "hash"}
                    or not isinstance(c["kind"], str) or not isinstance(c["hash"], str)
                    or not _HEX.fullmatch(c["hash"])):
                raise _bad("each hardware component is {kind, hash (64 hex)}")
            parsed.append((c["kind"], c["hash"]))
        match = _int(data, "match", minimum=1)
        assert match is not None
        if match > len(parsed):
            raise _bad(f"bindings.hardware.match {match} exceeds {len(parsed)} components")
        return cls(salt, match, tuple(parsed))


@dataclass(frozen=True)
class BundleBinding:
    """Which bundles the license covers: exact digests, a channel, or builds up to a date."""

    digests: tuple[str, ...] = ()
    channel: str | None = None
    updates_until: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The binding as its claims JSON (the inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {}
        if self.digests:
            out["digests"] = list(self.digests)
        if self.channel:
            out["channel"] = self.channel
        if self.updates_until:
            out["updates_until"] = format_time(self.updates_until)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> BundleBinding:
        """Parse ``bindings.bundle`` strictly.

        Raises:
            FormatError: E_CLAIMS_INVALID.
        """
        if not isinstance(data, dict) or len(data) != 1:
            raise _bad("bindings.bundle must hold exactly one of digests, channel, "
                       "updates_until")
        _only(data, {"digests", "channel", "updates_until"}, "bindings.bundle")
        digests = data.get("digests", [])
        if not isinstance(digests, list) or any(
                not isinstance(d, str) or not _DIGEST.fullmatch(d) for d in digests):
            raise _bad("bindings.bundle.digests must be sha256:<64 hex> strings")
        if "digests" in data and not digests:
            raise _bad("bindings.bundle.digests is empty: a binding must bind something")
        return cls(tuple(digests), _str(data, "channel", required=False, where="bindings.bundle."),
                   _time(data, "updates_until", required=False, where="bindings.bundle."))


@dataclass(frozen=True)
class LicenseClaims:
    """Everything a license says, as signed."""

    license_id: str
    seq: int
    issuer: str
    customer_id: str
    customer_name: str
    product: str
    issued_at: dt.datetime
    not_before: dt.datetime
    expires: dt.datetime
    grace_seconds: int = 0
    features: tuple[str, ...] = ()
    limits: dict[str, int] = field(default_factory=dict)
    bundle: BundleBinding | None = None
    hardware: HardwareBinding | None = None
    environment: str | None = None
    min_crl_seq: int | None = None
    critical: tuple[str, ...] = ()
    extensions: dict[str, Any] = field(default_factory=dict)
    #: The runtime counts inferences for billing (docs/USAGE.md); written only when true.
    metering: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The claims as JSON data (the inverse of :meth:`from_dict`)."""
        bindings: dict[str, Any] = {}
        if self.bundle:
            bindings["bundle"] = self.bundle.to_dict()
        if self.hardware:
            bindings["hardware"] = self.hardware.to_dict()
        if self.environment:
            bindings["environment"] = self.environment
        out: dict[str, Any] = {
            "type": LICENSE_TYPE,
            "license_id": self.license_id,
            "seq": self.seq,
            "issuer": self.issuer,
            "customer": {"id": self.customer_id, "name": self.customer_name},
            "product": self.product,
            "issued_at": format_time(self.issued_at),
            "not_before": format_time(self.not_before),
            "expires": format_time(self.expires),
            "grace_seconds": self.grace_seconds,
            "bindings": bindings,
            "entitlements": {"features": sorted(self.features),
                             "limits": dict(sorted(self.limits.items()))},
            "critical": sorted(self.critical),
            "extensions": self.extensions,
        }
        if self.min_crl_seq is not None:
            out["min_crl_seq"] = self.min_crl_seq
        if self.metering:
            out["metering"] = True
        return out

    @classmethod
    def from_dict(cls, data: Any) -> LicenseClaims:
        """Parse a license payload strictly: unknown fields, floats, nulls and wrong
        types are rejected.

        Raises:
            FormatError: E_CLAIMS_INVALID.
        """
        if not isinstance(data, dict):
            raise _bad("not a JSON object")
        if data.get("type") != LICENSE_TYPE:
            raise _bad(f"type is {data.get('type')!r}, not {LICENSE_TYPE}")
        _only(data, {"type", "license_id", "seq", "issuer", "customer", "product", "issued_at",
                     "not_before", "expires", "grace_seconds", "bindings", "entitlements",
                     "critical", "extensions", "min_crl_seq", "metering"}, "the claims")
        no_floats(data)
        license_id = data.get("license_id")
        if not is_license_id(license_id):
            raise _bad("license_id must be 1-64 of A-Z a-z 0-9 . _ - (alphanumeric first)")
        assert isinstance(license_id, str)
        customer = data.get("customer")
        if not isinstance(customer, dict):
            raise _bad("customer must be an object")
        _only(customer, {"id", "name"}, "customer")
        bindings = data.get("bindings", {})
        if not isinstance(bindings, dict):
            raise _bad("bindings must be an object")
        _only(bindings, {"bundle", "hardware", "environment"}, "bindings")
        ent = data.get("entitlements", {})
        if not isinstance(ent, dict):
            raise _bad("entitlements must be an object")
        _only(ent, {"features", "limits"}, "entitlements")
        features = ent.get("features", [])
        limits = ent.get("limits", {})
        if not isinstance(features, list) or any(not isinstance(f, str) for f in features):
            raise _bad("entitlements.features must be a list of strings")
        if not isinstance(limits, dict) or any(
                not isinstance(v, int) or isinstance(v, bool) for v in limits.values()):
            raise _bad("entitlements.limits must map names to integers")
        critical = data.get("critical", [])
        if not isinstance(critical, list) or any(not isinstance(c, str) for c in critical):
            raise _bad("critical must be a list of strings")
        extensions = data.get("extensions", {})
        if not isinstance(extensions, dict):
            raise _bad("extensions must be an object")
        metering = data.get("metering", False)
        if not isinstance(metering, bool):
            raise _bad("metering must be true or false")
        seq, grace = _int(data, "seq", minimum=1), _int(data, "grace_seconds")
        issued, not_before, expires = (_time(data, "issued_at"), _time(data, "not_before"),
                                       _time(data, "expires"))
        assert seq is not None and grace is not None
        assert issued is not None and not_before is not None and expires is not None
        if expires <= not_before:
            raise _bad("expires must be after not_before")
        if grace > (_MAX_TIME - expires).total_seconds():
            raise _bad(f"expires + grace_seconds is after {format_time(_MAX_TIME)}")
        return cls(
            license_id=license_id, seq=seq, issuer=str(_str(data, "issuer")),
            customer_id=str(_str(customer, "id")), customer_name=str(_str(customer, "name")),
            product=str(_str(data, "product")), issued_at=issued, not_before=not_before,
            expires=expires, grace_seconds=grace, features=tuple(features),
            limits=dict(limits),
            bundle=BundleBinding.from_dict(bindings["bundle"]) if "bundle" in bindings
            else None,
            hardware=HardwareBinding.from_dict(bindings["hardware"]) if "hardware" in bindings
            else None,
            environment=_str(bindings, "environment", required=False, where="bindings."),
            min_crl_seq=_int(data, "min_crl_seq", required=False),
            critical=tuple(critical), extensions=dict(extensions), metering=metering)


@dataclass(frozen=True)
class RevocationList:
    """A signed, sequenced list of revoked licenses (optionally below a re-issue) and keys."""

    seq: int
    issued_at: dt.datetime
    licenses: dict[str, int | None]  # license id -> revoke re-issues below this seq, or all
    keys: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The CRL as JSON data (the inverse of :meth:`from_dict`)."""
        return {
            "type": CRL_TYPE,
            "seq": self.seq,
            "issued_at": format_time(self.issued_at),
            "revoked_licenses": [{"license_id": k, "below_seq": v} if v is not None
                                 else {"license_id": k} for k, v in sorted(self.licenses.items())],
            "revoked_keys": sorted(self.keys),
        }

    def revokes(self, license_id: str, seq: int) -> bool:
        """Whether this list revokes re-issue ``seq`` of ``license_id`` (every
        re-issue, or those below its ``below_seq``)."""
        if license_id not in self.licenses:
            return False
        below = self.licenses[license_id]
        return below is None or seq < below

    @classmethod
    def from_dict(cls, data: Any) -> RevocationList:
        """Parse a CRL payload strictly.

        Raises:
            FormatError: E_CRL_INVALID.
        """
        bad = crl_error
        if not isinstance(data, dict) or data.get("type") != CRL_TYPE:
            raise bad(f"type is not {CRL_TYPE}")
        unknown = set(data) - {"type", "seq", "issued_at", "revoked_licenses", "revoked_keys"}
        if unknown:
            raise bad(f"unknown field(s) {sorted(unknown)}")
        no_floats(data, bad=bad)
        seq = data.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise bad("seq must be a positive integer")
        try:
            issued = parse_signed_time(data.get("issued_at"))
        except ValueError:
            raise bad(f"issued_at must be a UTC time written YYYY-MM-DDTHH:MM:SSZ, got "
                      f"{data.get('issued_at')!r}") from None
        entries = data.get("revoked_licenses", [])
        if not isinstance(entries, list):
            raise bad("revoked_licenses must be a list")
        licenses: dict[str, int | None] = {}
        for i, item in enumerate(entries):
            if (not isinstance(item, dict) or not isinstance(item.get("license_id"), str)
                    or set(item) - {"license_id", "below_seq"}):
                raise bad(f"revoked_licenses[{i}] must be {{license_id[, below_seq]}} with a "
                          "string license_id")
            below = item.get("below_seq")
            if "below_seq" in item and (not isinstance(below, int) or isinstance(below, bool)):
                raise bad(f"revoked_licenses[{i}].below_seq must be an integer")
            licenses[item["license_id"]] = below
        keys = data.get("revoked_keys", [])
        if not isinstance(keys, list) or any(not isinstance(k, str) for k in keys):
            raise bad("revoked_keys must be a list of key ids")
        return cls(seq, issued, licenses, tuple(keys))


def seal_license(key: PrivateKeyInfo, claims: LicenseClaims) -> bytes:
    """The armored license for ``claims``: canonicalised (RFC 8785), re-validated (what
    :meth:`LicenseClaims.from_dict` would refuse is never signed), signed once by ``key``
    (a DSSE envelope of payload type :data:`LICENSE_PAYLOAD_TYPE`) and armored with
    :data:`LICENSE_LABEL`. The one way oemkit writes a license: ``oemkit license issue``,
    ``oemkit.license.issue`` and ``release.licensing.issue_license`` all call it.

    Raises:
        FormatError: E_CLAIMS_INVALID (claims a verifier would refuse).
        InputError: E_CANONICAL (a value RFC 8785 cannot represent).
    """
    from oemkit._canonical import canonical_json
    from oemkit.crypto.armor import armor, sign_document

    payload = canonical_json(claims.to_dict())
    LicenseClaims.from_dict(claims.to_dict())
    return armor(LICENSE_LABEL, sign_document(key, LICENSE_PAYLOAD_TYPE, payload))
