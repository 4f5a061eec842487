"""One worker's runtime state: the model, its live config, its license standing, its
batcher and metrics; the license checks and the SIGHUP reload are its I/O.

A :class:`Source` says where everything comes from (the unpacked bundle, the slot's live
config, the licenses and CRLs to check, the trust root and state file to check them with);
:class:`Settings` how to serve. :meth:`Runtime.check_license` verifies every license it
can find with the host's state file (rollback protection) and the carried CRL, and
:func:`oemkit.models.serving.decide` turns the first accepted one (or the last refusal)
into the runtime's standing under the bundle's policy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit.models.serving import LicensePolicy, Standing, decide

if TYPE_CHECKING:
    from oemkit.host.usage import UsageMeter
    from oemkit.models.license import LicenseClaims
    from oemkit.models.trust import TrustRoot
    from oemkit.serve.batcher import Batcher
    from oemkit.serve.metrics import Metrics
    from oemkit.serve.model import Model, SessionSettings
    from oemkit.verify.license import BundleFacts

log = logging.getLogger("oemkit.serve")

#: Config keys the runtime itself honours (docs/SERVE.md "Config keys").
CONFIG_KEYS = ("max_batch", "threads", "labels", "score_threshold")
MAX_LICENSE_FILE = 1 << 20


@dataclass
class Source:
    """What a runtime serves and checks: all paths on the host, read at start and on
    SIGHUP (config and licenses), never written except the license state file."""

    root_dir: Path
    model: Path
    name: str
    version: str
    config: Path | None = None
    policy: LicensePolicy = field(default_factory=LicensePolicy)
    trust: TrustRoot | None = None
    license_files: list[Path] = field(default_factory=list)
    license_dirs: list[Path] = field(default_factory=list)
    attached: list[tuple[str, bytes]] = field(default_factory=list)
    crls: list[tuple[str, bytes, bool]] = field(default_factory=list)
    state_path: Path | None = None
    bundle: BundleFacts | None = None


@dataclass
class Settings:
    """How to serve (CLI options; None: from the config, the profile, the license)."""

    session: SessionSettings
    workers: int = 1
    max_batch: int | None = None
    max_delay_s: float = 0.0
    max_queue: int = 256
    max_body: int = 64 << 20
    request_timeout_s: float = 30.0
    token: bytes | None = None
    #: Run a model faster than this on the event loop when nothing waits (0: never).
    inline_s: float = 0.0005


def read_config(path: Path | None) -> dict[str, Any]:
    """The live config (a JSON object), or {} when the bundle has none.

    Raises:
        InputError: E_CONFIG_INVALID (unreadable, not JSON, not an object).
    """
    from oemkit.errors import InputError

    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError("E_CONFIG_INVALID", f"the live config {path} cannot be read: {exc}",
                         hint="fix the config (oemkit migrate, or restore the slot's "
                              "config.json)") from None
    if not isinstance(data, dict):
        raise InputError("E_CONFIG_INVALID", f"the live config {path} is not a JSON object",
                         hint="fix the config (oemkit migrate, or restore the slot's "
                              "config.json)")
    return data


class Runtime:
    """Everything one worker needs to answer a request."""

    def __init__(self, source: Source, settings: Settings, model: Model,
                 metrics: Metrics) -> None:
        self.source = source
        self.settings = settings
        self.model = model
        self.metrics = metrics
        self.config: dict[str, Any] = {}
        self.standing = Standing("none", not source.policy.required)
        self.batcher: Batcher | None = None
        self.draining = False
        #: The usage meter while the license in force says ``metering`` (else None): the
        #: request path counts into it; ``usage`` keeps it (and its unflushed counts)
        #: across license checks.
        self.meter: UsageMeter | None = None
        self.usage: UsageMeter | None = None
        metrics.load.labels(model.name).set(model.load_seconds)

    # ------------------------------------------------------------------ derived settings

    @property
    def max_batch(self) -> int:
        """Rows per batch: --max-batch, else the config's max_batch, else 1; capped by
        the license's limit and 1 when batching is not among a degraded runtime's features."""
        value = self.settings.max_batch
        if value is None:
            configured = self.config.get("max_batch")
            value = configured if type(configured) is int and configured > 0 else 1
        cap = self.standing.caps.get("max_batch")
        if cap is not None:
            value = min(value, max(cap, 1))
        if not self.standing.allows("batching"):
            value = 1
        return value

    @property
    def labels(self) -> list[str] | None:
        """The config's class labels (the classification extension names classes by them)."""
        labels = self.config.get("labels")
        return labels if isinstance(labels, list) and all(
            isinstance(x, str) for x in labels) else None

    @property
    def score_threshold(self) -> float | None:
        """The config's score_threshold: classes scoring below it are not reported."""
        value = self.config.get("score_threshold")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def ready(self) -> bool:
        """Whether to answer inference: the license standing allows it and no drain began."""
        return self.standing.ready and not self.draining

    # ------------------------------------------------------------------ I/O

    def load_config(self) -> None:
        """(Re-)read the live config; a running batcher takes the new max_batch.

        Raises:
            InputError: E_CONFIG_INVALID (the config in force stays as it was).
        """
        self.config = read_config(self.source.config)
        if self.batcher is not None:
            self.batcher.max_batch = self.max_batch if self.model.batchable else 1

    def check_license(self) -> Standing:
        """Verify the licenses now; set and return the new standing (logged on change)."""
        standing, claims = self.judge_license()
        return self.apply_license(standing, claims)

    def judge_license(self) -> tuple[Standing, LicenseClaims | None]:
        """Verify the licenses now without changing anything (a thread may run it: it
        reads files and the state, and touches no runtime field)."""
        return licensed_standing(self.source)

    def apply_license(self, standing: Standing, claims: LicenseClaims | None) -> Standing:
        """Put a :meth:`judge_license` result in force: the standing, the metrics and the
        usage meter. Runs on the event loop (the request path counts into the meter
        there), so a periodic check never races a flush taking the meter's counts."""
        self._set(standing)
        self._meter(claims if standing.ready else None)
        return standing

    def _meter(self, claims: LicenseClaims | None) -> None:
        """Count into the usage meter while the license in force says ``metering``."""
        if claims is None or not claims.metering:
            if self.meter is not None:
                log.info("usage metering stopped", extra={"fields": {
                    "license_id": self.meter.license_id}})
            self.meter = None
            return
        if self.source.state_path is None:
            if self.meter is None:
                log.warning(f"license {claims.license_id} asks for usage metering, but "
                            "there is no state file to count into")
            return
        if self.usage is None:
            from oemkit.host.usage import UsageMeter

            self.usage = UsageMeter(self.source.state_path, self.model.name)
        if self.meter is None or self.usage.license_id != claims.license_id:
            log.info("usage metering", extra={"fields": {"license_id": claims.license_id}})
        self.usage.activate(claims.license_id,
                            claims.hardware.salt if claims.hardware else None)
        self.meter = self.usage

    def flush_usage(self) -> None:
        """Write what the meter counted to the usage state now (at shutdown; the periodic
        flush is :func:`oemkit.serve.server.worker_app`'s). Counts that cannot be written
        go to an unsaved file beside it, added by the next flush or report; only when that
        cannot be written either are they lost, and the log says how many."""
        from oemkit.errors import OemkitError
        from oemkit.host.usage import save_unsaved

        usage = self.usage
        if usage is None:
            return
        pending, salts = usage.take()
        if not pending and not salts:
            return
        try:
            usage.write(pending, salts)
            return
        except OemkitError as exc:
            failed = exc
        try:
            kept = save_unsaved(usage.state_path, usage.model, pending, salts)
        except OemkitError as exc:
            lost = sum(v[0] for (_, _, f), v in pending.items() if f == "infer")
            log.error(f"usage counts lost: {lost} metered requests were not written "
                      f"({failed.message}; {exc.message})",
                      extra={"fields": {"code": failed.code, "hint": failed.hint,
                                        "lost_requests": lost}})
            return
        log.warning(f"usage counts not written ({failed.message}); kept in {kept}, added "
                    "at the next flush or report once the usage state is usable again",
                    extra={"fields": {"code": failed.code, "hint": failed.hint,
                                      "unsaved": str(kept)}})

    def _set(self, standing: Standing) -> None:
        before = self.standing
        self.standing = standing
        self.metrics.set_license(standing.state, standing.seconds_left)
        if self.batcher is not None:
            self.batcher.max_batch = self.max_batch if self.model.batchable else 1
        if (before.state, before.ready) != (standing.state, standing.ready) or \
                standing.warning:
            fields: dict[str, Any] = {"license_state": standing.state,
                                      "ready": standing.ready,
                                      "license_id": standing.license_id}
            if standing.error:
                fields["error"] = standing.error
            level = logging.INFO if standing.state in ("valid", "none") else logging.WARNING
            log.log(level, standing.warning or f"license state {standing.state}",
                    extra={"fields": fields})

    def describe(self) -> dict[str, Any]:
        """What the runtime serves with, for the start-up log line and ``/v2``."""
        return {"model": self.model.name, "version": self.model.version,
                "providers": self.model.providers, "max_batch": self.max_batch,
                "license_state": self.standing.state, "pid": os.getpid(),
                "settings": {k: v for k, v in dataclasses.asdict(self.settings).items()
                             if k not in ("token", "session")}}


def session_settings(profile: str, bundle_dir: Path | None = None) -> SessionSettings:
    """A worker's session settings from a hardware profile (its providers, in order, with
    their options, and its thread counts).

    Raises:
        InputError: E_PROFILE_NOT_FOUND and the profile's own format codes.
    """
    from oemkit.host.profiles import load_profile
    from oemkit.serve.model import SessionSettings

    prof = load_profile(profile, bundle_dir)
    return SessionSettings(
        providers=[(p.name, {k: str(v) for k, v in p.options.items()})
                   for p in prof.providers],
        intra_op=prof.intra_op, inter_op=prof.inter_op)


def default_workers(session: SessionSettings) -> int:
    """One worker per ``intra_op`` threads' worth of this host's usable cores (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, session.intra_op))


def _licenses(source: Source) -> tuple[list[tuple[str, bytes | Path]], dict[str, str] | None]:
    """Every license the source names (attached ones as bytes, files as paths, read later
    one by one and bounded), and the error of a licenses folder that cannot be listed."""
    found: list[tuple[str, bytes | Path]] = list(source.attached)
    found += [(str(path), path) for path in source.license_files]
    error = None
    for folder in source.license_dirs:
        try:
            if folder.is_dir():
                found += [(str(path), path) for path in sorted(folder.glob("*.lic"))]
        except OSError as exc:
            error = {"code": "E_LICENSE_UNREADABLE",
                     "message": f"cannot list the licenses in {folder}: {exc.strerror or exc}",
                     "hint": "check the folder's permissions"}
    return found, error


def check_licenses(source: Source) -> Standing:
    """Verify every license ``source`` finds now, with the host's state file and the
    carried CRL, and decide the standing under its policy (the first accepted license
    that satisfies the policy wins; otherwise the last refusal). Never raises for a
    license: a refusal (one that cannot even be read included) is the standing's error."""
    return licensed_standing(source)[0]


def licensed_standing(source: Source) -> tuple[Standing, LicenseClaims | None]:
    """:func:`check_licenses` and the claims of the accepted license the standing comes
    from (None when no license was accepted)."""
    from oemkit._fs import read_input
    from oemkit._time import now as utc_now
    from oemkit.errors import OemkitError
    from oemkit.host.license_state import verify_license

    policy = source.policy
    licenses, error = _licenses(source)
    standing: Standing | None = None
    chosen: LicenseClaims | None = None
    if licenses and source.trust is None:
        error = {"code": "E_NO_TRUST", "message": "licenses were found but no trust root "
                 "to verify them against", "hint": "pass --trust ROOT"}
        licenses = []
    for name, given in licenses:
        try:
            data = given if isinstance(given, bytes) else read_input(given, "license",
                                                                     MAX_LICENSE_FILE)
            assert source.trust is not None
            check = verify_license(data, source.trust,
                                   state_path=source.state_path,
                                   crls=source.crls, bundle=source.bundle,
                                   what=name)
        except OemkitError as exc:
            error = {"code": exc.code, "message": f"{name}: {exc.message}",
                     "hint": exc.hint}
            continue
        verdict = check.verdict
        claims = verdict.claims
        end = claims.expires.timestamp() + (claims.grace_seconds
                                            if verdict.status == "grace" else 0)
        standing = decide(policy, status=verdict.status, features=claims.features,
                          limits=claims.limits, license_id=claims.license_id,
                          seconds_left=end - utc_now().timestamp())
        chosen = claims
        if standing.ready:
            break
    if standing is None:
        standing = decide(policy, status=None, error=error)
    return standing, chosen
