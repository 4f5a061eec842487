"""The evidence pack (``.oeme``): what is deployed and how we know, for an auditor.

A pack is a DSSE envelope (payload type ``application/vnd.oemkit.evidence+json``) over the
canonical JSON of one document: the bundle, the trust root, the verification checks, an
SBOM summary, the smoke, migration, license and sizing results, the **claims** (each
naming the check or test, the artifact and its digest, and the configuration it holds
under) and the **artifacts** themselves (the bundle's signed metadata, the SBOM, the
attestation, the JUnit file, the licenses, the sizing document), so that every claim can
be re-checked offline, years later, from the pack and a trust root alone. Pure: the types,
their strict parsing (``FormatError`` ``E_EVIDENCE_INVALID``) and the artifact digests;
``report.evidence`` makes and re-checks packs. docs/EVIDENCE.md; the JSON Schema is
``schemas/evidence.schema.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from oemkit._canonical import b64decode, sha256_hex
from oemkit.errors import FormatError

FORMAT = "oemkit-evidence/v1"
PAYLOAD_TYPE = "application/vnd.oemkit.evidence+json"
#: The largest pack oemkit reads (the SBOM and the provenance of a large bundle inside).
MAX_PACK = 256 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = ("format", "created", "tool", "signer", "bundle", "trust_root", "verification",
           "sbom", "smoke", "migration", "licenses", "sizing", "claims", "artifacts")


def _bad(message: str, field: str | None = None) -> FormatError:
    return FormatError("E_EVIDENCE_INVALID", f"the evidence pack {message}", field=field,
                       hint="the pack is damaged or was not written by oemkit evidence")


@dataclass(frozen=True)
class Artifact:
    """One piece of evidence carried in the pack: its name, media type and bytes."""

    name: str
    media_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        """The SHA-256 of the content (what a claim names)."""
        return sha256_hex(self.content)

    def to_dict(self) -> dict[str, Any]:
        """The artifact as the pack writes it (content in base64)."""
        from oemkit._canonical import b64encode

        return {"name": self.name, "media_type": self.media_type, "sha256": self.sha256,
                "size": len(self.content), "content": b64encode(self.content)}


@dataclass(frozen=True)
class Claim:
    """One row of the claim table: what is claimed, by which check or test, on which
    artifact (and its digest), under which configuration."""

    id: str
    claim: str
    evidence: str
    artifact: str
    digest: str
    config: str

    def to_dict(self) -> dict[str, str]:
        """The claim as the pack writes it."""
        return {"id": self.id, "claim": self.claim, "evidence": self.evidence,
                "artifact": self.artifact, "digest": self.digest, "config": self.config}


@dataclass(frozen=True)
class Pack:
    """A parsed pack document: ``doc`` as written (every section), its claims and its
    artifacts by name (each with the digest the pack recorded, checked by the reader of
    the claim, not here)."""

    doc: dict[str, Any]
    claims: tuple[Claim, ...]
    artifacts: dict[str, tuple[Artifact, str]]

    @classmethod
    def from_dict(cls, doc: Any) -> Pack:
        """The pack from its parsed JSON: the sections, claims and artifacts checked for
        form (what they say is judged by ``report.evidence.verify_pack``).

        Raises:
            FormatError: ``E_EVIDENCE_INVALID`` naming the field.
            InputError: ``E_BASE64`` (an artifact's content).
        """
        if not isinstance(doc, dict) or sorted(doc) != sorted(_FIELDS):
            raise _bad("does not have the sections of " + FORMAT, "format")
        if doc["format"] != FORMAT:
            raise _bad(f"format is {doc['format']!r}, not {FORMAT!r}", "format")
        claims = doc["claims"]
        if not isinstance(claims, list) or not claims:
            raise _bad("has no claims", "claims")
        parsed: list[Claim] = []
        for i, raw in enumerate(claims):
            keys = ("id", "claim", "evidence", "artifact", "digest", "config")
            if not isinstance(raw, dict) or sorted(raw) != sorted(keys) or not all(
                    isinstance(raw[k], str) for k in keys):
                raise _bad(f"claim {i} is not {{{', '.join(keys)}}} of strings", f"claims[{i}]")
            parsed.append(Claim(*(raw[k] for k in keys)))
        artifacts: dict[str, tuple[Artifact, str]] = {}
        raw_artifacts = doc["artifacts"]
        if not isinstance(raw_artifacts, list):
            raise _bad("artifacts is not a list", "artifacts")
        fields = ("name", "media_type", "sha256", "size", "content")
        for i, raw in enumerate(raw_artifacts):
            if not isinstance(raw, dict) or sorted(raw) != sorted(fields):
                raise _bad(f"artifact {i} is not {{{', '.join(fields)}}}", f"artifacts[{i}]")
            if not isinstance(raw["name"], str) or not isinstance(raw["media_type"], str) or \
                    not isinstance(raw["sha256"], str) or not _HEX64.fullmatch(raw["sha256"]):
                raise _bad(f"artifact {i} has a malformed name, media type or digest",
                           f"artifacts[{i}]")
            if raw["name"] in artifacts:
                raise _bad(f"carries artifact {raw['name']!r} twice", f"artifacts[{i}]")
            content = b64decode(raw["content"], what=f"evidence artifact {raw['name']}")
            artifacts[raw["name"]] = (Artifact(raw["name"], raw["media_type"], content),
                                      raw["sha256"])
        return cls(doc, tuple(parsed), artifacts)
