"""The license API an OEM runtime calls at start-up::

    import oemkit.license
    verdict = oemkit.license.verify("customer.lic", trust="trust-root.json")
    verdict.require_feature("batch-api")
    verdict.require_limit("seats", 40)

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from oemkit.models.trust import TrustRoot
from oemkit.verify.license import BundleFacts, LicenseError, LicenseState, Verdict

__all__ = ["BundleFacts", "LicenseError", "LicenseState", "Verdict", "load_trust", "verify"]

_DEFAULT: Any = object()


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
    crl: Sequence[Path | str | bytes] = (), bundle: BundleFacts | None = None,
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

    Raises:
        LicenseError: E_PAYLOAD_TYPE, E_KID_UNKNOWN, E_ALG_MISMATCH, E_KEY_USAGE,
            E_SIG_INVALID, E_CLAIMS_INVALID, E_CRIT_UNKNOWN, E_KEY_REVOKED, E_KEY_WINDOW,
            E_CRL_ROLLBACK, E_CRL_STALE, E_REVOKED, E_LICENSE_SUPERSEDED, E_CLOCK_BEHIND,
            E_CLOCK_ROLLBACK, E_NOT_YET_VALID, E_EXPIRED, E_BUNDLE_MISMATCH, E_HW_MISMATCH,
            E_ENV_MISMATCH.
        VerificationError: E_ARMOR, E_ENVELOPE (license or CRL), E_CRL_INVALID.
        InputError: E_NOT_FOUND, E_NOT_A_FILE, E_TOO_LARGE (license, CRL, trust root),
            E_LOCK_UNSAFE, E_TIME, and :func:`load_trust`'s codes.
        EnvironmentProblem: E_STATE_UNUSABLE, E_PERMISSION, E_WRITE, E_LOCKED.
        UsageError: E_USAGE for a naive ``now``.
    """
    from oemkit._fs import read_input
    from oemkit.host.license_state import default_state_path, verify_license

    data = license if isinstance(license, bytes) else read_input(Path(license), "license",
                                                                 1 << 20)
    crls = [(f"crl[{i}]", c if isinstance(c, bytes) else read_input(Path(c), "CRL", 1 << 20),
             True) for i, c in enumerate(crl)]
    state_path = default_state_path() if state is _DEFAULT else (
        None if state is None else Path(state))
    return verify_license(data, load_trust(trust), now=now, state_path=state_path, crls=crls,
                          bundle=bundle, host=host, environment=environment).verdict
