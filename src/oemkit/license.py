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
    (``oemkit.verify.trust.load_pinned``)."""
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
