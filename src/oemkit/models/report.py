"""Results: one :class:`Check` per thing verified, collected in a :class:`VerifyReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from oemkit.errors import OemkitError

Status = Literal["pass", "fail", "warn", "info"]


#: The ``run`` configuration's ``tool`` in a test-result attestation (release.attest): what
#: it is evidence of, checked by report.evidence so one kind is never taken for the other.
SMOKE_TOOL = "oemkit smoke"
MIGRATE_TOOL = "oemkit migrate test"

@dataclass
class Check:
    """One named check and its outcome."""

    name: str
    status: Status
    detail: str
    member: str | None = None
    code: str | None = None
    expected: str | None = None
    actual: str | None = None
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON data, without unset fields."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class VerifyReport:
    """Everything ``verify`` established about a bundle, pass or fail."""

    bundle: str
    checks: list[Check] = field(default_factory=list)
    name: str | None = None
    version: str | None = None
    manifest_sha256: str | None = None
    signers: list[str] = field(default_factory=list)
    trust_root_version: int | None = None
    files: int = 0
    payload_bytes: int = 0
    error: OemkitError | None = None
    #: Set once verification got that far (not serialised): the trusted root used, the
    #: authenticated manifest, and the carried CRL's bytes.
    root: Any = field(default=None, repr=False)
    manifest: Any = field(default=None, repr=False)
    crl: bytes | None = field(default=None, repr=False)
    licenses: list[tuple[str, bytes]] = field(default_factory=list, repr=False)
    license: Any = field(default=None, repr=False)
    #: The SHA-256 of the signed provenance (not serialised): install keeps the provenance
    #: in the slot for a later ``upgrade --delta`` and checks the copy it reads with it.
    provenance_sha256: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when nothing failed and no error was recorded."""
        return self.error is None and all(c.status != "fail" for c in self.checks)

    def passed(self, name: str, detail: str, member: str | None = None) -> None:
        """Record a passed check."""
        self.checks.append(Check(name, "pass", detail, member=member))

    def warned(self, name: str, detail: str, hint: str | None = None) -> None:
        """Record a warning."""
        self.checks.append(Check(name, "warn", detail, hint=hint))

    def failed(self, exc: OemkitError, name: str | None = None) -> None:
        """Record ``exc`` as the error and as a failed check."""
        self.error = exc
        self.checks.append(Check(
            name or exc.check or "verification", "fail", exc.message, member=exc.member,
            code=exc.code, expected=exc.expected, actual=exc.actual, hint=exc.hint or None))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON data, its checks and error included."""
        return {
            "bundle": self.bundle,
            "ok": self.ok,
            "verdict": "verified" if self.ok else "rejected",
            "name": self.name,
            "version": self.version,
            "manifest_sha256": self.manifest_sha256,
            "signers": self.signers,
            "trust_root_version": self.trust_root_version,
            "files": self.files,
            "payload_bytes": self.payload_bytes,
            "checks": [c.to_dict() for c in self.checks],
            "error": self.error.to_dict() if self.error else None,
            "license": self.license,
        }
