"""Pure license verification: bytes, a trust root, a reference time and the host's facts in;
a verdict (``valid`` / ``grace``) or a coded rejection out. No clock, no files.

The order (docs/LICENSE-FORMAT.md): armor, envelope, payload type, key lookup, algorithm,
key usage, signature over the exact payload bytes, canonical claims, critical extensions,
key status and revocation lists, re-issue replay, clock, validity window, bindings.
Expiry is judged at ``max(now, state.last_seen, every signed issue time)`` so turning the
clock back never extends a license. Every verification, accepted or not, advances
``last_seen`` to the host clock (a rejection carries that update, see :func:`pending_state`),
so a clock turned back after an observed expiry does not revive the license either.

Time arithmetic never overflows: clock checks compare differences of two representable
moments, and expiry plus grace is compared in integer microseconds, so a license expiring
in 9999 or a clock at the edge of the calendar is judged, never an OverflowError.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from oemkit._canonical import canonical_json, parse_json
from oemkit._time import MAX_TIME, UTC, format_time
from oemkit.crypto.armor import SignedDoc, dearmor, parse_document
from oemkit.crypto.dsse import verify_raw
from oemkit.crypto.keys import load_public
from oemkit.errors import (
    FormatError,
    InputError,
    OemkitError,
    UsageError,
    VerificationError,
    restate,
)
from oemkit.models.license import (
    CRL_PAYLOAD_TYPE,
    KNOWN_EXTENSIONS,
    LICENSE_PAYLOAD_TYPE,
    LicenseClaims,
    RevocationList,
    claims_error,
    crl_error,
    no_floats,
)
from oemkit.models.license import LICENSE_LABEL as LICENSE_LABEL  # the label, re-exported
from oemkit.models.trust import TrustKey, TrustRoot

CRL_LABEL = "OEMKIT CRL"
#: How far the clock may step back (or lag a signed time) before it counts as tampering.
CLOCK_TOLERANCE = dt.timedelta(hours=1)
_P256_HALF_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551 // 2
#: Attribute under which a rejection carries the CRL-only state update (see pending_state).
_STATE_UPDATE = "license_state_update"


class LicenseError(VerificationError):
    """A license was rejected; ``code`` says why (E_EXPIRED, E_HW_MISMATCH, ...)."""


def _reject(code: str, message: str, *, field: str | None = None, hint: str,
            expected: str | None = None, actual: str | None = None) -> LicenseError:
    return LicenseError(code, message, check="license", field=field, hint=hint,
                        expected=expected, actual=actual)


@dataclass(frozen=True)
class LicenseState:
    """What this host remembers between verifications (see host/license_state.py)."""

    last_seen: dt.datetime | None = None
    crl: bytes | None = None
    crl_seq: int = 0
    seqs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BundleFacts:
    """What a license may bind to, taken from a verified bundle."""

    manifest_sha256: str
    name: str
    build_time: dt.datetime
    channel: str | None = None


@dataclass
class Verdict:
    """An accepted license: ``status`` is ``valid`` or ``grace``."""

    status: str
    claims: LicenseClaims
    effective_time: dt.datetime
    signer: str
    grace_days_left: int | None = None
    warnings: list[str] = field(default_factory=list)
    crl_seq: int | None = None
    new_state: LicenseState | None = None

    def require_feature(self, name: str) -> None:
        """Raise E_ENTITLEMENT unless the license grants feature ``name``.

        Raises:
            LicenseError: E_ENTITLEMENT.
        """
        if name not in self.claims.features:
            raise _reject("E_ENTITLEMENT", f"feature {name!r} is not licensed",
                          field="entitlements.features", expected=name,
                          actual=", ".join(self.claims.features) or "none",
                          hint="ask the vendor for a license that includes this feature")

    def require_limit(self, name: str, value: int) -> None:
        """Raise E_LIMIT unless ``value`` is within the licensed limit ``name``.

        Raises:
            LicenseError: E_LIMIT (over the limit, or no such limit).
        """
        limit = self.claims.limits.get(name)
        if limit is None or value > limit:
            raise _reject("E_LIMIT", f"{name} = {value} exceeds the licensed limit "
                          f"({'none' if limit is None else limit})",
                          field=f"entitlements.limits.{name}", expected=f"<= {limit}",
                          actual=str(value), hint="reduce usage or ask the vendor for a higher "
                                                  "limit")

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON data: status, claims summary, grace, signer, CRL, warnings."""
        c = self.claims
        return {
            "verdict": self.status, "license_id": c.license_id, "seq": c.seq,
            "customer": {"id": c.customer_id, "name": c.customer_name},
            "product": c.product, "expires": format_time(c.expires),
            "effective_time": format_time(self.effective_time),
            "grace_days_left": self.grace_days_left, "signer": self.signer,
            "entitlements": {"features": sorted(c.features), "limits": dict(c.limits)},
            "crl_seq": self.crl_seq, "warnings": self.warnings,
        }


def component_hash(salt: str, kind: str, value: str) -> str:
    """Keyed hash of one host component: HMAC-SHA256(salt, "kind:value")."""
    return hmac.new(bytes.fromhex(salt), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def check_signature(doc: SignedDoc, root: TrustRoot, usage: str, what: str) -> TrustKey:
    """Key lookup by hint, algorithm and usage checks, then the signature itself.

    Raises:
        LicenseError: E_KID_UNKNOWN, E_ALG_MISMATCH, E_KEY_USAGE, E_SIG_INVALID.
        InputError: E_KEY_FORMAT, E_KEY_ALGORITHM if the trust-root key does not load
            (a parsed root's keys always do).
    """
    key = root.key(doc.keyid)
    if key is None:
        raise _reject("E_KID_UNKNOWN", f"{what} is signed by key {doc.keyid[:16]}…, which the "
                      f"trust root v{root.version} does not list", field="signatures[0].keyid",
                      hint="verify with the vendor's current trust root (--trust)")
    if doc.alg != key.algorithm:
        raise _reject("E_ALG_MISMATCH", f"{what} claims algorithm {doc.alg!r} but key "
                      f"{key.keyid[:16]}… is {key.algorithm}", field="signatures[0].alg",
                      expected=key.algorithm, actual=doc.alg,
                      hint="the file was tampered with (algorithm confusion)")
    if usage not in key.usage:
        raise _reject("E_KEY_USAGE", f"{what} is signed by key {key.keyid[:16]}… ({key.name}), "
                      f"trusted for {', '.join(key.usage)}, not {usage}",
                      field="signatures[0].keyid", expected=usage, actual=", ".join(key.usage),
                      hint=f"{usage} documents must be signed with a {usage} key")
    public = load_public(key.public_key, key.keyid)
    if not _canonical_signature(key.algorithm, doc.sig) or not verify_raw(
            public, _pae(doc), doc.sig):
        raise _reject("E_SIG_INVALID", f"{what}'s signature does not verify", field="signatures",
                      hint="the file was altered after signing; ask the vendor for a fresh copy")
    return key


def _pae(doc: SignedDoc) -> bytes:
    from oemkit._canonical import pae

    return pae(doc.payload_type, doc.payload)


def _canonical_signature(algorithm: str, sig: bytes) -> bool:
    """Reject malleated forms: Ed25519 is 64 bytes; ECDSA must be low-S DER."""
    if algorithm == "ed25519":
        return len(sig) == 64
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    try:
        _, s = decode_dss_signature(sig)
    except ValueError:
        return False
    return s <= _P256_HALF_N


def _payload(payload: bytes, what: str, *, crl: bool) -> Any:
    """A signed payload as JSON: strict parse, integers only, canonical (RFC 8785).

    License payloads fail with E_CLAIMS_INVALID (a VerificationError, or the models'
    FormatError for a float), CRL payloads with E_CRL_INVALID (the models' FormatError:
    :func:`read_crl` restates it).
    """
    def fail(message: str, hint: str) -> OemkitError:
        if crl:
            return crl_error(message)
        return VerificationError("E_CLAIMS_INVALID", message, check="license claims", hint=hint)

    try:
        obj = parse_json(payload, what=what)
    except InputError as exc:
        raise fail(exc.message, "the signer wrote malformed claims; ask the vendor to "
                                "re-issue") from None
    no_floats(obj, bad=crl_error if crl else claims_error)
    try:
        canonical = canonical_json(obj)
    except InputError as exc:  # E_CANONICAL: a huge integer or a lone surrogate
        raise fail(f"{what}: {exc.message}", "the signer wrote a value RFC 8785 cannot "
                   "represent (an integer beyond +-(2^53-1) or an unpaired surrogate); ask the "
                   "vendor to re-issue") from None
    if canonical != payload:
        raise fail(f"{what} are not in canonical form (RFC 8785)",
                   "oemkit signs only canonical JSON; this was not issued by oemkit")
    return obj


def pending_state(exc: BaseException) -> LicenseState | None:
    """The state update a rejection raised by :func:`evaluate` carries.

    A rejection never records re-issue numbers, but it does record what it observed:
    ``last_seen`` advances to the host clock (an E_EXPIRED seen today must not turn into
    a VALID once the clock is set back), and a newer, validly signed CRL read before it
    (often the very reason for it: E_REVOKED, E_KEY_REVOKED) is kept, or the revoked
    license would verify again without it.
    """
    value = getattr(exc, _STATE_UPDATE, None)
    return value if isinstance(value, LicenseState) else None


def _carry(exc: BaseException, update: LicenseState | None) -> None:
    if update is not None and pending_state(exc) is None:
        setattr(exc, _STATE_UPDATE, update)


def read_crl(data: bytes, root: TrustRoot, what: str) -> RevocationList:
    """Verify and decode one armored CRL signed by a ``crl`` key of ``root``.

    Raises:
        LicenseError: E_PAYLOAD_TYPE, E_KID_UNKNOWN, E_ALG_MISMATCH, E_KEY_USAGE, E_SIG_INVALID,
            E_KEY_REVOKED (a compromised key), E_KEY_WINDOW (signed outside the key's window).
        VerificationError: E_ARMOR, E_ENVELOPE, E_CRL_INVALID.
        InputError: E_TOO_LARGE (over MAX_ARMORED), and :func:`check_signature`'s.
    """
    doc = parse_document(dearmor(data, CRL_LABEL, what), what)
    if doc.payload_type != CRL_PAYLOAD_TYPE:
        raise _reject("E_PAYLOAD_TYPE", f"{what} is a {doc.payload_type!r} document, not a CRL",
                      field="payloadType", expected=CRL_PAYLOAD_TYPE, actual=doc.payload_type,
                      hint="pass a revocation list written by 'oemkit crl issue'")
    key = check_signature(doc, root, "crl", what)
    if key.status == "compromised":
        raise _reject("E_KEY_REVOKED", f"{what} is signed by compromised key {key.keyid[:16]}…",
                      hint="ask the vendor for a CRL signed with a current key")
    try:
        crl = RevocationList.from_dict(_payload(doc.payload, what, crl=True))
    except FormatError as exc:  # a malformed signed CRL is a "no"
        raise restate(exc, VerificationError) from exc
    if not key.valid_at(crl.issued_at):
        # A retired or expired key must not sign new CRLs: one with a higher seq and an
        # empty list would otherwise un-revoke everything.
        raise _reject("E_KEY_WINDOW", f"{what} (sequence {crl.seq}) was issued at "
                      f"{format_time(crl.issued_at)}, when its signing key "
                      f"{key.keyid[:16]}… ({key.name}) was not valid (retired or expired)",
                      field="issued_at", hint="the CRL key had expired or been retired when "
                      "this CRL was signed; ask the vendor for a CRL signed with a current key")
    return crl


@dataclass
class _Revocations:
    """The CRLs a verification uses, and what the host should remember of them."""

    lists: list[RevocationList] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    remember: bytes | None = None  # the armored CRL the state should hold
    remember_seq: int = 0

    @property
    def newest(self) -> RevocationList | None:
        return max(self.lists, key=lambda c: c.seq, default=None)

    def update(self, state: LicenseState) -> LicenseState | None:
        """The CRL-only state change (None when the host learnt nothing new)."""
        if self.remember == state.crl and self.remember_seq <= state.crl_seq:
            return None
        return replace(state, crl=self.remember, crl_seq=max(state.crl_seq, self.remember_seq))


def _read_revocations(root: TrustRoot, state: LicenseState,
                      crls: Sequence[tuple[str, bytes, bool]]) -> _Revocations:
    """Step 11: the remembered CRL (if still usable), then each given one, in order."""
    out = _Revocations(remember=state.crl, remember_seq=state.crl_seq)
    usable = True  # the remembered CRL (if any) is in out.lists
    if state.crl is not None:
        try:
            remembered = read_crl(state.crl, root, "remembered CRL")
        except OemkitError as exc:
            # Its key may since be compromised, retired or gone from this trust root (or
            # the state was damaged): it must not block every verification. Its sequence
            # number is kept, so older CRLs are still refused; the text stays in the state
            # until a newer CRL replaces it (it may verify under another trust root).
            usable = False
            out.warnings.append(f"the remembered CRL (sequence {state.crl_seq}) is ignored: "
                                f"{exc.code}: {exc.message}; CRLs older than sequence "
                                f"{state.crl_seq} are still refused")
        else:
            out.lists.append(remembered)
            out.remember_seq = max(out.remember_seq, remembered.seq)
    for name, crl_data, explicit in crls:
        try:
            crl = read_crl(crl_data, root, name)
        except OemkitError as exc:
            _carry(exc, out.update(state))
            raise
        if crl.seq < state.crl_seq:
            if explicit:
                rollback = _reject("E_CRL_ROLLBACK", f"{name} has sequence {crl.seq}, older "
                                   f"than sequence {state.crl_seq} already seen on this host",
                                   field="seq", expected=f">= {state.crl_seq}",
                                   actual=str(crl.seq),
                                   hint="use the newest revocation list from the vendor")
                _carry(rollback, out.update(state))
                raise rollback
            out.warnings.append(
                f"{name} (seq {crl.seq}) is older than the remembered CRL (seq "
                f"{state.crl_seq}); " + ("using the newer one" if usable else
                                         "the remembered one is unusable, so this one is used"))
        out.lists.append(crl)
        if crl.seq >= out.remember_seq:
            out.remember, out.remember_seq = crl_data, crl.seq
    return out


def _open_license(data: bytes, root: TrustRoot, what: str
                  ) -> tuple[TrustKey, LicenseClaims]:
    """Steps 1-9: armor, envelope, payload type, key, signature, canonical claims."""
    doc = parse_document(dearmor(data, LICENSE_LABEL, what), what)
    if doc.payload_type != LICENSE_PAYLOAD_TYPE:
        raise _reject("E_PAYLOAD_TYPE", f"{what} is a {doc.payload_type!r} document, not a "
                      "license", field="payloadType", expected=LICENSE_PAYLOAD_TYPE,
                      actual=doc.payload_type, hint="pass a license written by 'oemkit license "
                                                    "issue'")
    key = check_signature(doc, root, "license", what)
    try:
        claims = LicenseClaims.from_dict(_payload(doc.payload, f"{what} claims", crl=False))
    except (VerificationError, FormatError) as exc:
        raise _reject("E_CLAIMS_INVALID", exc.message, hint=exc.hint) from None
    return key, claims


def _check_key(key: TrustKey, claims: LicenseClaims, newest: RevocationList | None) -> None:
    """Steps 12-13: the signing key is not revoked and was valid when it signed."""
    if key.status == "compromised" or (newest and key.keyid in newest.keys):
        why = ("marked compromised in the trust root" if key.status == "compromised"
               else f"listed in CRL sequence {newest.seq if newest else 0}")
        raise _reject("E_KEY_REVOKED", f"the signing key {key.keyid[:16]}… ({key.name}) is "
                      f"revoked ({why})", field="signatures[0].keyid",
                      hint="a revoked key invalidates everything it signed; ask the vendor to "
                           "re-issue the license with a current key")
    if not key.valid_at(claims.issued_at):
        raise _reject("E_KEY_WINDOW", f"the signing key {key.keyid[:16]}… ({key.name}) was not "
                      f"valid at the license's issue time {format_time(claims.issued_at)}",
                      field="issued_at", hint="the key had expired or been retired when this "
                                              "license was issued; ask for a re-issue")


def _check_revoked(claims: LicenseClaims, newest: RevocationList | None) -> None:
    """Step 15: the newest CRL does not revoke this license (at this re-issue)."""
    if newest is not None and newest.revokes(claims.license_id, claims.seq):
        raise _reject("E_REVOKED", f"license {claims.license_id} (re-issue {claims.seq}) is "
                      f"revoked by CRL sequence {newest.seq}", field="license_id",
                      hint="contact the vendor for a replacement license")


def check_signer(data: bytes, root: TrustRoot, *, crls: Sequence[tuple[str, bytes]] = (),
                 what: str = "license") -> tuple[LicenseClaims, TrustKey, RevocationList | None]:
    """What 'license inspect --trust' vouches for: steps 1-9, then 11-13 and 15 with the
    given CRLs only (no host state, clock or bindings).

    A license signed by a compromised or CRL-revoked key is E_KEY_REVOKED, never
    "verified".

    Raises:
        LicenseError: E_PAYLOAD_TYPE, E_KID_UNKNOWN, E_ALG_MISMATCH, E_KEY_USAGE, E_SIG_INVALID,
            E_CLAIMS_INVALID, E_KEY_REVOKED, E_KEY_WINDOW, E_REVOKED.
        VerificationError: E_ARMOR, E_ENVELOPE, E_CRL_INVALID (a given CRL).
        InputError: E_TOO_LARGE, E_KEY_FORMAT, E_KEY_ALGORITHM (as :func:`check_signature`).
    """
    key, claims = _open_license(data, root, what)
    lists = [read_crl(crl_data, root, name) for name, crl_data in crls]
    newest = max(lists, key=lambda c: c.seq, default=None)
    _check_key(key, claims, newest)
    _check_revoked(claims, newest)
    return claims, key, newest


def evaluate(
    data: bytes, root: TrustRoot, now: dt.datetime, *,
    state: LicenseState | None = None, crls: Sequence[tuple[str, bytes, bool]] = (),
    bundle: BundleFacts | None = None, host: Mapping[str, Sequence[str]] | None = None,
    environment: str | None = None, what: str = "license",
) -> Verdict:
    """Judge one armored license. ``crls`` holds (name, bytes, explicitly given).

    Raises :class:`LicenseError` (or another OemkitError) when it is rejected. A rejection
    raised after a newer CRL was read carries the CRL-only state update
    (:func:`pending_state`), for the caller to save.

    Raises:
        LicenseError: E_PAYLOAD_TYPE, E_KID_UNKNOWN, E_ALG_MISMATCH, E_KEY_USAGE, E_SIG_INVALID,
            E_CLAIMS_INVALID, E_CRIT_UNKNOWN, E_KEY_REVOKED, E_KEY_WINDOW, E_CRL_ROLLBACK,
            E_CRL_STALE, E_REVOKED, E_LICENSE_SUPERSEDED, E_CLOCK_BEHIND, E_CLOCK_ROLLBACK,
            E_NOT_YET_VALID, E_EXPIRED, E_BUNDLE_MISMATCH, E_HW_MISMATCH, E_ENV_MISMATCH.
        VerificationError: E_ARMOR, E_ENVELOPE, E_CRL_INVALID (a given CRL).
        InputError: E_TOO_LARGE, E_TIME (``now``), E_KEY_FORMAT, E_KEY_ALGORITHM.
        UsageError: E_USAGE for a naive ``now``.
    """
    now = utc_moment(now, "now")
    state = state or LicenseState()
    seen = now if state.last_seen is None else max(state.last_seen, now)
    try:
        key, claims = _open_license(data, root, what)
        unknown = sorted(set(claims.critical) - KNOWN_EXTENSIONS)
        if unknown:
            raise _reject("E_CRIT_UNKNOWN", f"the license requires extension {unknown[0]!r}, "
                          "which this oemkit does not understand", field="critical",
                          hint="upgrade oemkit on this host to a version that supports it")

        # Revocation lists: the newest signed one wins; the host remembers it.
        revs = _read_revocations(root, state, crls)
        try:
            return _judge(key, claims, revs, now, state, bundle, host, environment)
        except OemkitError as exc:
            _carry(exc, revs.update(state))
            raise
    except OemkitError as exc:
        # Every observation of the clock advances last_seen, rejections included.
        setattr(exc, _STATE_UPDATE, replace(pending_state(exc) or state, last_seen=seen))
        raise


def utc_moment(moment: dt.datetime, what: str) -> dt.datetime:
    """``moment`` in UTC; a naive datetime is a caller's mistake (E_USAGE), not UTC.

    Raises:
        UsageError: E_USAGE for a naive datetime or not a datetime.
        InputError: E_TIME when UTC falls outside the years 0001..9999.
    """
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None \
            or moment.utcoffset() is None:
        raise UsageError("E_USAGE", f"{what} must be a timezone-aware datetime, not "
                         f"{moment!r}", hint="pass e.g. datetime.now(timezone.utc)")
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InputError("E_TIME", f"{what} {moment.isoformat()} is outside the years "
                         "0001..9999 once converted to UTC", hint="pass a time between "
                         "0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z") from None


def _microseconds(delta: dt.timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _grace_end(claims: LicenseClaims, *, day: bool = False) -> str:
    """``expires + grace_seconds`` for messages (never an OverflowError)."""
    try:
        text = format_time(claims.expires + dt.timedelta(seconds=claims.grace_seconds))
    except OverflowError:
        text = "after " + format_time(MAX_TIME)
    return text[:-10] if day and not text.startswith("after") else text


def _judge(key: TrustKey, claims: LicenseClaims, revs: _Revocations, now: dt.datetime,
           state: LicenseState, bundle: BundleFacts | None,
           host: Mapping[str, Sequence[str]] | None, environment: str | None) -> Verdict:
    """Steps 12-22, once the license and the revocation lists are read."""
    warnings = list(revs.warnings)
    lists, newest = revs.lists, revs.newest
    _check_key(key, claims, newest)
    if claims.min_crl_seq is not None and (newest is None or newest.seq < claims.min_crl_seq):
        have = "no revocation list" if newest is None else f"CRL sequence {newest.seq}"
        raise _reject("E_CRL_STALE", f"the license requires CRL sequence >= "
                      f"{claims.min_crl_seq}; this host has {have}", field="min_crl_seq",
                      expected=f">= {claims.min_crl_seq}",
                      actual="none" if newest is None else str(newest.seq),
                      hint="bring the newest revocation list (--crl, or a newer bundle)")
    _check_revoked(claims, newest)
    seen_seq = state.seqs.get(claims.license_id, 0)
    if claims.seq < seen_seq:
        raise _reject("E_LICENSE_SUPERSEDED", f"license {claims.license_id} re-issue "
                      f"{claims.seq} is older than re-issue {seen_seq} already seen on this host",
                      field="seq", expected=f">= {seen_seq}", actual=str(claims.seq),
                      hint="use the newest license file the vendor sent")

    # Clock: never earlier than what was signed or already seen here.
    signed_times = [claims.issued_at] + [c.issued_at for c in lists]
    newest_signed = max(signed_times)
    # (Differences of two representable moments never overflow; sums near 9999 could.)
    if newest_signed - now > CLOCK_TOLERANCE:
        raise _reject("E_CLOCK_BEHIND", f"this host's clock ({format_time(now)}) is behind "
                      f"a signed issue time ({format_time(newest_signed)})",
                      field="issued_at", hint="set the host clock to the correct time (UTC)")
    if state.last_seen is not None and state.last_seen - now > CLOCK_TOLERANCE:
        raise _reject("E_CLOCK_ROLLBACK", f"the clock was turned back: now "
                      f"{format_time(now)}, but a license was already verified here at "
                      f"{format_time(state.last_seen)}", field="last_seen",
                      hint="set the host clock to the correct time (UTC)")
    effective = max([now, newest_signed] + ([state.last_seen] if state.last_seen else []))
    if effective < claims.not_before:
        raise _reject("E_NOT_YET_VALID", f"the license is valid from "
                      f"{format_time(claims.not_before)}", field="not_before",
                      hint="wait until then, or check the host clock")
    # How far past expiry, in microseconds, against the grace period: integer arithmetic.
    late = _microseconds(effective - claims.expires)
    grace = claims.grace_seconds * 1_000_000
    if late > grace:
        raise _reject("E_EXPIRED", f"the license expired at {format_time(claims.expires)}"
                      f" (grace ended {_grace_end(claims)}); judged at "
                      f"{format_time(effective)}", field="expires",
                      hint="ask the vendor to renew the license")

    _check_bindings(claims, bundle, host, environment, warnings)

    status, days_left = "valid", None
    if late > 0:
        status = "grace"
        days_left = (grace - late) // (86400 * 1_000_000)
        warnings.append(f"the license expired at {format_time(claims.expires)[:10]}; grace "
                        f"period ends {_grace_end(claims, day=True)} ({days_left} days left)")
    seqs = dict(state.seqs)
    seqs[claims.license_id] = max(claims.seq, seen_seq)
    crl_state = revs.update(state) or state
    new_state = replace(crl_state, last_seen=max(now, state.last_seen or now), seqs=seqs)
    return Verdict(status, claims, effective, key.keyid, days_left, warnings,
                   newest.seq if newest else None, new_state)


def _check_bindings(claims: LicenseClaims, bundle: BundleFacts | None,
                    host: Mapping[str, Sequence[str]] | None, environment: str | None,
                    warnings: list[str]) -> None:
    binding = claims.bundle
    if binding is not None:
        if bundle is None:
            warnings.append("the license binds to bundles; no bundle was given, so that "
                            "binding was not checked")
        elif binding.digests and f"sha256:{bundle.manifest_sha256}" not in binding.digests:
            raise _reject("E_BUNDLE_MISMATCH", f"bundle {bundle.name} (manifest sha256:"
                          f"{bundle.manifest_sha256[:16]}…) is not one of the licensed bundles",
                          field="bindings.bundle.digests", hint="use the licensed bundle or "
                          "ask the vendor to add this one")
        elif binding.channel and bundle.channel != binding.channel:
            raise _reject("E_BUNDLE_MISMATCH", f"bundle {bundle.name} is on channel "
                          f"{bundle.channel or 'none'}, the license covers {binding.channel}",
                          field="bindings.bundle.channel", expected=binding.channel,
                          actual=bundle.channel or "none", hint="use a bundle from the licensed "
                                                                "channel")
        elif binding.updates_until and bundle.build_time > binding.updates_until:
            raise _reject("E_BUNDLE_MISMATCH", f"bundle {bundle.name} was built "
                          f"{format_time(bundle.build_time)[:10]}, after the licensed updates "
                          f"window (until {format_time(binding.updates_until)[:10]})",
                          field="bindings.bundle.updates_until", hint="stay on an older bundle "
                          "or renew the update subscription")
    hw = claims.hardware
    if hw is not None:
        present = {(kind, component_hash(hw.salt, kind, value))
                   for kind, values in (host or {}).items() for value in values}
        matched = sum(1 for comp in hw.components if comp in present)
        if matched < hw.match:
            raise _reject("E_HW_MISMATCH", f"{matched} of {len(hw.components)} licensed "
                          f"hardware components match this host; {hw.match} are required",
                          field="bindings.hardware", expected=f">= {hw.match}",
                          actual=str(matched), hint="run the license on the licensed host, or "
                          "send 'oemkit license fingerprint' output to the vendor for a re-issue")
    if claims.environment is not None and environment != claims.environment:
        raise _reject("E_ENV_MISMATCH", f"the license is for environment "
                      f"{claims.environment!r}, this host declares {environment or 'none'!r}",
                      field="bindings.environment", expected=claims.environment,
                      actual=environment or "none",
                      hint="set OEMKIT_ENV (or --env) to the licensed environment")


__all__ = ["BundleFacts", "LicenseError", "LicenseState", "OemkitError", "Verdict",
           "check_signature", "check_signer", "component_hash", "evaluate", "pending_state",
           "read_crl", "utc_moment"]
