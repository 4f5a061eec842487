"""The serving runtime's license policy (the spec's ``license:`` section), pure.

It says whether the runtime needs a license, which features it needs, what a license in
grace means (``serve`` with a warning, or ``refuse``), what an invalid or missing one
means (``refuse``: never ready; ``degrade``: serve with a named feature set), how often to
check again, and which runtime settings a licensed limit caps. docs/SERVE.md "License
policy" documents every field and state. :func:`decide` turns one license check's outcome
into the runtime's state; it does no I/O and reads no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oemkit.errors import InputError

#: Runtime settings a licensed limit may cap.
LIMITABLE = ("max_batch", "workers")
#: Features the runtime itself knows (a license may grant others for the product).
RUNTIME_FEATURES = ("batching", "classification")
MIN_INTERVAL_S = 1
MAX_INTERVAL_S = 7 * 24 * 3600


def _bad(message: str) -> InputError:
    return InputError("E_SPEC_INVALID", f"license policy: {message}",
                      hint="fix the spec's license: section (docs/SERVE.md#license-policy)",
                      field="license")


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or any(not isinstance(v, str) or not v for v in value):
        raise _bad(f"'{where}' must be a list of non-empty strings")
    return tuple(value)


@dataclass(frozen=True)
class LicensePolicy:
    """What the runtime does with its license (defaults: none needed, grace serves)."""

    required: bool = False
    features: tuple[str, ...] = ()
    grace: str = "serve"
    invalid: str = "refuse"
    degrade_features: tuple[str, ...] = ()
    check_interval_s: int = 600
    limits: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The policy as manifest JSON (the inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {"required": self.required, "features": list(self.features),
                               "grace": self.grace, "invalid": self.invalid,
                               "check_interval_s": self.check_interval_s}
        if self.invalid == "degrade":
            out["degrade_features"] = list(self.degrade_features)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> LicensePolicy:
        """Check a ``license:`` section exactly.

        Raises:
            InputError: E_SPEC_INVALID naming the field.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise _bad("must be a mapping")
        known = {"required", "features", "grace", "invalid", "degrade_features",
                 "check_interval_s", "limits"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise _bad(f"unknown field(s) {', '.join(map(str, unknown))} (known: "
                       f"{', '.join(sorted(known))})")
        required = data.get("required", False)
        if not isinstance(required, bool):
            raise _bad("'required' must be true or false")
        grace = data.get("grace", "serve")
        if grace not in ("serve", "refuse"):
            raise _bad(f"'grace' must be serve or refuse, not {grace!r}")
        invalid = data.get("invalid", "refuse")
        if invalid not in ("refuse", "degrade"):
            raise _bad(f"'invalid' must be refuse or degrade, not {invalid!r}")
        degrade = _names(data.get("degrade_features", []), "degrade_features")
        if degrade and invalid != "degrade":
            raise _bad("'degrade_features' needs invalid: degrade")
        interval = data.get("check_interval_s", 600)
        if type(interval) is not int or not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
            raise _bad(f"'check_interval_s' must be an integer from {MIN_INTERVAL_S} to "
                       f"{MAX_INTERVAL_S}")
        limits = data.get("limits", {})
        if not isinstance(limits, Mapping):
            raise _bad("'limits' must map a runtime setting to a license limit name")
        for key, value in limits.items():
            if key not in LIMITABLE:
                raise _bad(f"'limits' may cap {', '.join(LIMITABLE)}, not {key!r}")
            if not isinstance(value, str) or not value:
                raise _bad(f"'limits.{key}' must name a license limit")
        return cls(required, _names(data.get("features", []), "features"), grace, invalid,
                   degrade, interval, dict(limits))


@dataclass(frozen=True)
class Standing:
    """The runtime's license state after a check: ``state`` is valid, grace, invalid or
    none (no license and none required); ``ready`` whether to serve; ``features`` the
    runtime features allowed (None: all; a degraded runtime has only the policy's
    ``degrade_features``); ``error`` the code, message and hint of the
    refusal; ``caps`` the runtime settings the license limits."""

    state: str
    ready: bool
    features: frozenset[str] | None = None
    error: dict[str, str] | None = None
    seconds_left: float | None = None
    license_id: str | None = None
    caps: dict[str, int] = field(default_factory=dict)
    warning: str | None = None

    def allows(self, feature: str) -> bool:
        """Whether the runtime may use ``feature`` (``batching``, ``classification``)."""
        return self.features is None or feature in self.features


def decide(policy: LicensePolicy, *, status: str | None, features: tuple[str, ...] = (),
           limits: Mapping[str, int] | None = None, seconds_left: float | None = None,
           license_id: str | None = None, error: Mapping[str, str] | None = None) -> Standing:
    """The runtime's standing from one check: ``status`` is the verdict's (valid, grace),
    or None with ``error`` set (rejected) or unset (no license found)."""
    def refused(why: Mapping[str, str]) -> Standing:
        if policy.invalid == "degrade":
            kept = ", ".join(policy.degrade_features) or "no optional features"
            return Standing("invalid", True, frozenset(policy.degrade_features), dict(why),
                            seconds_left, license_id,
                                            warning=f"serving degraded ({kept}): {why['code']}: "
                                    f"{why['message']}")
        return Standing("invalid", False, frozenset(), dict(why), seconds_left, license_id)

    if status is None:
        if error is None and not policy.required:
            return Standing("none", True)
        return refused(error or {"code": "E_LICENSE_REQUIRED",
                                 "message": "this runtime needs a license and none was found",
                                 "hint": "attach one (oemkit license attach) or pass --license"})
    granted = frozenset(features)
    missing = [f for f in policy.features if f not in granted]
    if missing:
        return refused({"code": "E_ENTITLEMENT",
                        "message": f"the license does not grant feature(s) "
                                   f"{', '.join(missing)} this runtime needs",
                        "hint": "ask the vendor for a license that includes them"})
    caps = {setting: int(limits[name]) for setting, name in policy.limits.items()
            if limits and name in limits}
    if status == "grace":
        if policy.grace == "refuse":
            return refused({"code": "E_EXPIRED",
                            "message": "the license has expired (in grace) and this runtime "
                                       "refuses to serve in grace",
                            "hint": "ask the vendor to renew the license"})
        return Standing("grace", True, None, None, seconds_left, license_id, caps,
                        warning=f"license {license_id} has expired and is in grace: renew it")
    return Standing("valid", True, None, None, seconds_left, license_id, caps)
