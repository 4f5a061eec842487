"""The license API an OEM runtime calls at start-up::

    import oemkit.license
    verdict = oemkit.license.verify("customer.lic", trust="trust-root.json")
    verdict.require_feature("batch-api")
    verdict.require_limit("seats", 40)

``issue`` writes (signs) one: every rule ``oemkit license issue`` applies, with the same
error codes (``UsageError`` E_USAGE for claims that cannot be issued, ``InputError`` E_TIME
or E_FINGERPRINT for bad inputs, the key loader's codes)::

    data = oemkit.license.issue(key="keys/license.key", customer="acme",
                                customer_name="ACME Corp", product="vision",
                                expires="2027-06-30", grace="14d", features=["batch"],
                                limits={"seats": 50})

``verify`` returns a :class:`Verdict` (``status`` ``valid`` or ``grace``) or raises
:class:`LicenseError` with a stable ``code`` (``E_EXPIRED``, ``E_HW_MISMATCH``, ...),
``message``, ``field`` and ``hint``. Every other failure is an ``oemkit.errors.OemkitError``
too, never another exception: bad input files (``InputError``), a state file that cannot
be used or written (``EnvironmentProblem``: E_STATE_UNUSABLE, E_PERMISSION, E_WRITE,
E_LOCKED), a naive ``now`` (``UsageError``, E_USAGE). It imports nothing heavy (no
onnxruntime, cyclonedx, jsonschema, securesystemslib) and needs no network.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit._numbers import parse_int, parse_limits
from oemkit.models.license import LicenseClaims, seal_license
from oemkit.models.trust import TrustRoot
from oemkit.verify.license import BundleFacts, LicenseError, LicenseState, Verdict

if TYPE_CHECKING:
    from oemkit.crypto.keys import PrivateKeyInfo

__all__ = ["BundleFacts", "LicenseClaims", "LicenseError", "LicenseInfo", "LicenseState",
           "Verdict", "inspect", "issue", "load_trust", "read_claims", "verify"]

_DEFAULT: Any = object()

#: What ``issue`` accepts for a time: an ISO 8601 string (naive means UTC) or an aware
#: datetime.
Time = dt.datetime | str
#: A key passphrase, or a function of the key file's path returning one (called only
#: after the requested claims were judged, so a prompt never precedes a usage error).
Passphrase = bytes | str | Callable[[Path], bytes | None] | None

# the largest integer canonical JSON carries exactly, and at most 16 ASCII digits: the
def _time(value: Time, what: str) -> dt.datetime:
    from oemkit._time import parse_time
    from oemkit.errors import UsageError

    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise UsageError("E_USAGE", f"{what} must be timezone-aware",
                             hint="pass e.g. datetime(..., tzinfo=timezone.utc)")
        return value.astimezone(dt.timezone.utc)
    return parse_time(value, what)


def _grace_seconds(value: str | dt.timedelta) -> int:
    """``--grace``: ``14d``, ``36h``, ``90m`` or a bare number of days; or a timedelta."""
    from oemkit.errors import UsageError

    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
        if seconds != int(seconds):
            raise UsageError("E_USAGE", f"--grace {value} is not a whole number of seconds",
                             hint="use e.g. timedelta(days=14)")
        return parse_int(int(seconds), "--grace", maximum=10_000 * 366 * 86400)
    match = re.fullmatch(r"([0-9]+)([dhm]?)", value.strip())
    if not match:
        raise UsageError("E_USAGE", f"--grace {value[:40]!r} is not a duration",
                         hint="use e.g. 14d, 36h or 90m")
    unit = match.group(2) or "d"
    scale = {"d": 86400, "h": 3600, "m": 60}[unit]
    # at most about 10,000 years: the claims check then judges expires + grace
    return parse_int(match.group(1), "--grace", maximum=(10_000 * 366 * 86400) // scale) * scale


def _claims(
    *, issuer: str, customer: str, customer_name: str, product: str, expires: Time,
    not_before: Time | None, grace: str | dt.timedelta, features: Sequence[str] | str,
    limits: Mapping[str, int] | Sequence[str], bundle_digests: Sequence[str],
    channel: str | None, updates_until: Time | None, hardware: Path | str | None,
    match: int | None, environment: str | None, seq: int, license_id: str | None,
    min_crl_seq: int | None, issued_at: Time | None, metering: bool = False,
) -> LicenseClaims:
    """The requested claims, every rule of ``issue`` applied (no key needed)."""
    from oemkit._time import now
    from oemkit.errors import FormatError, UsageError
    from oemkit.models.license import BundleBinding, HardwareBinding

    seq = parse_int(seq, "--seq", minimum=1)
    if match is not None:
        match = parse_int(match, "--match", minimum=1)
    if min_crl_seq is not None:
        min_crl_seq = parse_int(min_crl_seq, "--min-crl-seq")
    digests_in = (bundle_digests,) if isinstance(bundle_digests, str) else tuple(bundle_digests)
    chosen = [bool(digests_in), channel is not None, updates_until is not None]
    if sum(chosen) > 1:
        raise UsageError("E_USAGE", "choose one of --bundle-digest, --channel, "
                         "--updates-until", hint="a license binds to bundles one way")
    binding = None
    if any(chosen):
        digests = tuple(d if d.startswith("sha256:") else f"sha256:{d}" for d in digests_in)
        binding = BundleBinding(digests, channel, _time(updates_until, "--updates-until")
                                if updates_until else None)
    hw = None
    if hardware is not None:
        from oemkit.host.license_state import read_fingerprint

        fp = read_fingerprint(Path(hardware))
        comps = tuple((c["kind"], c["hash"]) for c in fp["components"])
        hw = HardwareBinding(fp["salt"], match or len(comps), comps)
    elif match is not None:
        raise UsageError("E_USAGE", "--match needs --hardware",
                         hint="pass the customer's fingerprint file")
    when = _time(issued_at, "--issued-at") if issued_at else now()
    lid = license_id or re.sub(r"[^A-Za-z0-9._-]+", "-", f"{customer}-{product}")[:64]
    start = _time(not_before, "--not-before") if not_before else when
    end = _time(expires, "--expires")
    if end <= start:
        raise UsageError(
            "E_USAGE", f"--expires {end:%Y-%m-%dT%H:%M:%SZ} is not after the start of "
            f"validity {start:%Y-%m-%dT%H:%M:%SZ} ("
            + ("--not-before" if not_before else "the issue time, now") + ")",
            hint="pass an --expires later than " + (
                "--not-before" if not_before else "today (--not-before defaults to now)"))
    wanted = features.split(",") if isinstance(features, str) else features
    claims = LicenseClaims(
        license_id=lid, seq=seq, issuer=issuer, customer_id=customer,
        customer_name=customer_name, product=product, issued_at=when,
        not_before=start, expires=end, grace_seconds=_grace_seconds(grace),
        features=tuple(f for f in wanted if f), limits=parse_limits(limits),
        bundle=binding, hardware=hw, environment=environment, min_crl_seq=min_crl_seq,
        metering=bool(metering))
    try:  # the requested claims, judged before the key (and its passphrase) is needed
        LicenseClaims.from_dict(claims.to_dict())
    except FormatError as exc:
        raise UsageError("E_USAGE", f"cannot issue this license: {exc.message}",
                         hint="fix the option behind that field (--license-id, "
                              "--customer, --product, --env, --bundle-digest, --match, "
                              "--grace, ...)") from None
    return claims


def issue(
    *, key: Path | str | PrivateKeyInfo, customer: str, customer_name: str, product: str,
    expires: Time, not_before: Time | None = None, grace: str | dt.timedelta = "0",
    features: Sequence[str] | str = (), limits: Mapping[str, int] | Sequence[str] = (),
    bundle_digests: Sequence[str] = (), channel: str | None = None,
    updates_until: Time | None = None, hardware: Path | str | None = None,
    match: int | None = None, environment: str | None = None, seq: int = 1,
    license_id: str | None = None, min_crl_seq: int | None = None,
    issued_at: Time | None = None, issuer: str | None = None, passphrase: Passphrase = None,
    metering: bool = False,
) -> bytes:
    """Issue a signed offline license: the armored ``.lic`` bytes (what
    ``oemkit license issue`` writes, byte for byte, for the same inputs).

    Every keyword is the CLI option of the same name (``environment`` is ``--env``,
    ``bundle_digests`` ``--bundle-digest``, ``limits`` ``--limit``); error messages name
    the option. ``key`` is a key file (``usage: license``) or a loaded key; ``issuer``
    defaults to the key file's name without its suffix (``keys/license.key`` ->
    ``license``). ``passphrase`` (or a function of the key's path returning it) is used
    only after the claims were judged. Times are ISO 8601 strings (naive means UTC) or
    aware datetimes; ``issued_at`` defaults to now and ``not_before`` to ``issued_at``.
    ``grace`` is ``14d``, ``36h``, ``90m``, a bare number of days, or a timedelta;
    ``features`` a list or a comma-separated string; ``limits`` a mapping or
    ``NAME=INTEGER`` items; at most one of ``bundle_digests`` (``sha256:`` optional),
    ``channel`` and ``updates_until``; ``hardware`` a fingerprint file, ``match`` how many
    of its components must match (default: all); ``license_id`` defaults to
    CUSTOMER-PRODUCT. ``metering`` makes the serving runtime count inferences for billing
    (``"metering": true`` in the claims, docs/USAGE.md).

    Raises:
        UsageError: E_USAGE: two bundle bindings, ``match`` without ``hardware``, a
            ``seq`` or ``match`` below 1, a negative ``min_crl_seq``,
            ``expires`` not after the start of validity, a bad ``grace`` or ``limits``
            item, a naive datetime, or claims that do not validate (``cannot issue this
            license: ...``).
        InputError: E_TIME (a time that is not ISO 8601), E_FINGERPRINT (the hardware
            file), and the key file's E_NOT_FOUND, E_NOT_A_FILE, E_TOO_LARGE, E_KEY_FORMAT,
            E_KEY_PASSPHRASE_REQUIRED, E_KEY_PASSPHRASE, E_KEY_ALGORITHM.
        EnvironmentProblem: E_PERMISSION (the key or the fingerprint file).
    """
    from oemkit.crypto.keys import PrivateKeyInfo, load_private_file

    if isinstance(key, PrivateKeyInfo):
        signer, path, name = key, Path(key.source), key.name
    else:
        signer, path, name = None, Path(key), Path(key).stem
    claims = _claims(
        issuer=issuer if issuer is not None else name, customer=customer,
        customer_name=customer_name, product=product, expires=expires,
        not_before=not_before, grace=grace, features=features, limits=limits,
        bundle_digests=bundle_digests, channel=channel, updates_until=updates_until,
        hardware=hardware, match=match, environment=environment, seq=seq,
        license_id=license_id, min_crl_seq=min_crl_seq, issued_at=issued_at,
        metering=metering)
    if signer is None:
        secret = passphrase(path) if callable(passphrase) else passphrase
        signer = load_private_file(path, secret.encode() if isinstance(secret, str)
                                   else secret)
    # The claims were judged above (_claims: their FormatError is E_USAGE), so sealing
    # them validates what already passed.
    return seal_license(signer, claims)


def read_claims(data: bytes, what: str = "license") -> tuple[LicenseClaims, str]:
    """The claims a license states and the id of the key that signed it, UNVERIFIED (no
    signature or trust check: for showing what :func:`issue` just wrote; use
    :func:`verify` to trust a license).

    Raises:
        VerificationError: E_ARMOR, E_ENVELOPE, E_CLAIMS_INVALID.
        InputError: E_JSON (claims that are not strict JSON).
    """
    from oemkit._canonical import parse_json
    from oemkit.crypto.armor import dearmor, parse_document
    from oemkit.errors import FormatError, VerificationError, restate
    from oemkit.models.license import LICENSE_LABEL

    doc = parse_document(dearmor(data, LICENSE_LABEL, what), what)
    claims = parse_json(doc.payload, what=f"{what} claims")
    try:
        return LicenseClaims.from_dict(claims), doc.keyid
    except FormatError as exc:  # the same "no" verify gives for these claims
        raise restate(exc, VerificationError) from exc


@dataclass(frozen=True)
class LicenseInfo:
    """What :func:`inspect` found in a license: the claims as signed and who signed them;
    with a trust root, the claims as verified and the newest CRL that was checked."""

    #: The claims JSON exactly as the license states it (UNVERIFIED without a trust root:
    #: not even its schema is checked, so it is shown as it is).
    claims: Any
    #: The key id the license's signature names.
    signer: str
    #: The validated claims when the signature, the claims, the key's status and window
    #: and the given CRLs were checked (``trust`` given), else None.
    verified_claims: LicenseClaims | None = None
    #: The sequence number of the newest CRL checked, or None (no CRL, or no trust root).
    crl_seq: int | None = None

    @property
    def verified(self) -> bool:
        """Whether the signature and the signing key were checked against a trust root."""
        return self.verified_claims is not None

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``oemkit license inspect --json`` prints (after its ``ok``)."""
        return {"verified": self.verified, "signer": self.signer, "crl_seq": self.crl_seq,
                "claims": self.claims}


def inspect(license: Path | str | bytes, trust: Path | str | bytes | TrustRoot | None = None,
            *, crl: Sequence[Path | str | bytes] = (), what: str | None = None) -> LicenseInfo:
    """A license's claims and signer, UNVERIFIED unless ``trust`` is given (what
    ``oemkit license inspect`` shows).

    With ``trust`` the signature, the claims, the signing key's status and window and
    each ``crl`` are checked (``oemkit.verify.license.check_signer``), not the dates,
    bindings or host state (:func:`verify` judges those). ``license`` and each CRL are a
    file or its bytes; ``what`` names the license in messages (default: its path, or
    ``license``).

    Raises:
        UsageError: E_USAGE (``crl`` without ``trust``).
        InputError: E_NOT_FOUND, E_NOT_A_FILE, E_TOO_LARGE (the license or a CRL file),
            E_JSON (claims that are not strict JSON), and :func:`load_trust`'s codes.
        VerificationError: E_ARMOR, E_ENVELOPE; with ``trust`` E_CRL_INVALID.
        LicenseError: with ``trust`` E_PAYLOAD_TYPE, E_KID_UNKNOWN, E_ALG_MISMATCH,
            E_KEY_USAGE, E_SIG_INVALID, E_CLAIMS_INVALID, E_KEY_REVOKED, E_KEY_WINDOW,
            E_REVOKED.
        EnvironmentProblem: E_PERMISSION.
    """
    from oemkit._canonical import parse_json
    from oemkit.crypto.armor import dearmor, parse_document, read_armored
    from oemkit.errors import UsageError
    from oemkit.models.license import LICENSE_LABEL
    from oemkit.verify.license import check_signer

    if crl and trust is None:
        raise UsageError("E_USAGE", "--crl needs --trust",
                         hint="pass the vendor's trust root to check revocation")
    if isinstance(license, bytes):
        data, name = license, what or "license"
    else:
        data, name = read_armored(Path(license), "license"), what or str(license)
    doc = parse_document(dearmor(data, LICENSE_LABEL, name), name)
    claims = parse_json(doc.payload, what=f"{name} claims")
    if trust is None:
        return LicenseInfo(claims, doc.keyid)
    root = load_trust(trust)
    crls = [(f"crl[{i}]", c) if isinstance(c, bytes) else (str(c), read_armored(Path(c), "CRL"))
            for i, c in enumerate(crl)]
    checked, _, newest = check_signer(data, root, what=name, crls=crls)
    return LicenseInfo(claims, doc.keyid, checked, newest.seq if newest else None)


def load_trust(trust: Path | str | bytes | TrustRoot) -> TrustRoot:
    """A pinned trust root from a file, its bytes, or an already-parsed root
    (``oemkit.verify.trust.load_pinned``).

    Raises:
        InputError: E_NOT_FOUND, E_NOT_A_FILE, E_TOO_LARGE (a file over 16 MiB);
            E_TRUST_INVALID, E_ENVELOPE, E_BASE64, E_TOO_MANY_SIGNATURES,
            E_TRUST_TOO_MANY_KEYS, E_TRUST_WEAK_KEY, E_KEY_FORMAT, E_KEY_ALGORITHM, E_TIME (not
            a trust root); E_TRUST_THRESHOLD (not properly self-signed: exit 3 here).
        EnvironmentProblem: E_PERMISSION.
    """
    if isinstance(trust, TrustRoot):
        return trust
    from oemkit.verify.trust import load_pinned

    return load_pinned(trust)


def verify(
    license: Path | str | bytes, trust: Path | str | bytes | TrustRoot, *,
    crl: Sequence[Path | str | bytes] = (),
    bundle: BundleFacts | Path | str | bytes | None = None,
    state: Path | str | None = _DEFAULT, now: dt.datetime | None = None,
    host: Mapping[str, Sequence[str]] | None = None, environment: str | None = None,
) -> Verdict:
    """Verify a license offline; raise :class:`LicenseError` when it is rejected.

    ``state`` defaults to the host's state file (see ``default_state_path``); pass
    ``None`` for a stateless check. With a state file, the check is locked against other
    verifications and records what it observed, accepted or not (the clock, a newer CRL;
    docs/LICENSE-FORMAT.md section 10); damaged content is set aside with a warning in
    ``Verdict.warnings``. ``now`` (default: the host clock) must be timezone-aware.
    ``host`` defaults to this machine's hardware ids and ``environment`` to
    ``$OEMKIT_ENV``.

    ``bundle`` binds the check to a bundle as ``oemkit license verify --bundle`` does: a
    bundle file (or its bytes) is verified against ``trust`` first (its failure is raised
    as ``verify`` reports it), then the license is judged against the newest root its
    carried roots chain to, its manifest's digest, name, build time and channel, and its
    carried CRL (before those in ``crl``). Already-verified facts may be passed as a
    :class:`BundleFacts`.

    Raises:
        LicenseError: E_PAYLOAD_TYPE, E_KID_UNKNOWN, E_ALG_MISMATCH, E_KEY_USAGE,
            E_SIG_INVALID, E_CLAIMS_INVALID, E_CRIT_UNKNOWN, E_KEY_REVOKED, E_KEY_WINDOW,
            E_CRL_ROLLBACK, E_CRL_STALE, E_REVOKED, E_LICENSE_SUPERSEDED, E_CLOCK_BEHIND,
            E_CLOCK_ROLLBACK, E_NOT_YET_VALID, E_EXPIRED, E_BUNDLE_MISMATCH, E_HW_MISMATCH,
            E_ENV_MISMATCH.
        VerificationError: E_ARMOR, E_ENVELOPE (license or CRL), E_CRL_INVALID.
        InputError: E_NOT_FOUND, E_NOT_A_FILE, E_TOO_LARGE (license, CRL, trust root,
            bundle), E_LOCK_UNSAFE, E_TIME, and :func:`load_trust`'s codes.
        OemkitError: with a bundle file or bytes, the error its verification failed with
            (the codes of ``oemkit.verify.bundle.verify_bundle``, e.g. E_SIGNATURE_UNTRUSTED,
            E_PAYLOAD_DIGEST).
        EnvironmentProblem: E_STATE_UNUSABLE, E_PERMISSION, E_WRITE, E_LOCKED.
        UsageError: E_USAGE for a naive ``now``.
    """
    from oemkit._fs import read_input
    from oemkit.host.license_state import bind_bundle, default_state_path, verify_license

    data = license if isinstance(license, bytes) else read_input(Path(license), "license",
                                                                 1 << 20)
    crls = [(f"crl[{i}]", c if isinstance(c, bytes) else read_input(Path(c), "CRL", 1 << 20),
             True) for i, c in enumerate(crl)]
    root = load_trust(trust)
    facts = bundle if bundle is None or isinstance(bundle, BundleFacts) else None
    if bundle is not None and not isinstance(bundle, BundleFacts):
        root, facts, carried = bind_bundle(bundle, root)
        crls = carried + crls
    state_path = default_state_path() if state is _DEFAULT else (
        None if state is None else Path(state))
    return verify_license(data, root, now=now, state_path=state_path, crls=crls,
                          bundle=facts, host=host, environment=environment).verdict
