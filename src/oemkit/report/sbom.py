"""Reading a bundle's SBOM and provenance for people, and diffing two SBOMs.

``read_member_json`` returns a member either verified (the whole bundle checked against
a trust root first) or marked unverified. Either way the member is read with the
verifier's bounded reader (``scan_bundle`` under reader limits) and must pass the
verifier's structural checks for its kind (CycloneDX 1.6 schema for the SBOM, in-toto
Statement v1 with a SLSA predicate for the provenance): what anyone can put in an
unsigned bundle gets a coded error, never a crash. The diff and the rows are pure
functions that tolerate any JSON value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from oemkit._canonical import parse_json, sha256_hex
from oemkit._fs import OuterMember, open_input, read_input, read_member
from oemkit.errors import VerificationError
from oemkit.models.manifest import MANIFEST, PROVENANCE, SBOM, SIGNATURE_DIR, Manifest
from oemkit.models.report import VerifyReport

if TYPE_CHECKING:
    from oemkit.verify.bundle import Limits


@dataclass(frozen=True)
class MemberDoc:
    """A parsed metadata member and whether the bundle verified."""

    bundle: str
    member: str
    doc: Any
    verified: bool


def read_member_json(bundle: Path, member: str, trust: Path | None = None, *,
                     limits: Limits | None = None) -> MemberDoc:
    """Parse ``member`` of ``bundle``; with ``trust`` the bundle must verify first.

    The bundle is opened once: the member is read from the very handle that was verified,
    and its bytes are checked against the digests verification established. Without
    ``trust`` nothing is believed, but the outer archive is scanned under ``limits`` and
    the member must have the structure verification requires (:func:`check_shape`).
    """
    from oemkit.verify.bundle import Limits, scan_bundle, verify_open_bundle

    limits = limits or Limits()
    pinned = read_input(trust, "trust root") if trust is not None else None
    with open_input(bundle, "bundle") as handle:
        report = None
        if pinned is not None:
            report = verify_open_bundle(handle, pinned, name=str(bundle), limits=limits)
            if not report.ok:
                assert report.error is not None
                raise report.error
        members = {m.name: m for m in scan_bundle(handle, limits)}
        if member not in members:
            raise VerificationError("E_MEMBER_MISSING", f"{bundle} has no {member}",
                                    member=member, hint="is this an oemkit bundle?")
        data = read_member(handle, members[member])
        if report is not None:
            _check_verified(handle, members, member, data, report)
    return MemberDoc(str(bundle), member, check_shape(member, data), trust is not None)


def check_shape(member: str, data: bytes) -> Any:
    """``data`` parsed, after the verifier's structural checks for ``member``: the SBOM is
    a CycloneDX 1.6 object valid against the schema (``E_SBOM_INVALID``,
    ``E_SBOM_SCHEMA``), the provenance an in-toto Statement v1 with a SLSA Provenance v1
    predicate (``E_PROVENANCE_INVALID``); other members are canonical-JSON parsed."""
    from oemkit.errors import InputError

    if member == PROVENANCE:
        from oemkit.verify.bundle import _statement

        statement = _statement(data)
        predicate = statement.get("predicate")
        if not (isinstance(predicate, dict)
                and all(isinstance(predicate.get(k), dict)
                        for k in ("buildDefinition", "runDetails"))
                and all(isinstance(s, dict) for s in statement["subject"])):
            raise VerificationError(
                "E_PROVENANCE_INVALID", f"{PROVENANCE} is not an in-toto Statement v1 with a "
                "SLSA Provenance v1 predicate", check="provenance", member=PROVENANCE,
                hint="the bundle is damaged or not an oemkit bundle; obtain a fresh copy")
        return statement
    try:
        doc = parse_json(data, what=member)
    except InputError as exc:
        if member != SBOM:
            raise
        raise VerificationError("E_SBOM_INVALID", exc.message, member=SBOM, check="sbom",
                                hint="the SBOM is damaged; obtain a fresh copy") from exc
    if member == SBOM:
        from oemkit.verify.sbom import check_schema

        if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX" or doc.get(
                "specVersion") != "1.6":
            raise VerificationError("E_SBOM_INVALID", f"{SBOM} is not a CycloneDX 1.6 "
                                    "document", member=SBOM, check="sbom",
                                    hint="the SBOM is damaged; obtain a fresh copy")
        check_schema(doc, SBOM)
    return doc


def _check_verified(handle: BinaryIO, members: dict[str, OuterMember], member: str,
                    data: bytes, report: VerifyReport) -> None:
    """Raise unless ``data`` is what verification judged (the file may change meanwhile)."""
    from oemkit.verify.bundle import _judge_signatures, _statement, _subject_digests

    def changed(expected: str | None) -> VerificationError:
        return VerificationError(
            "E_MEMBER_DIGEST", f"{member} no longer matches what was verified: the bundle "
            "changed while it was being read", member=member, check="verified read",
            expected=expected, actual=sha256_hex(data),
            hint="make sure nothing writes to the bundle, then run the command again")

    manifest: Manifest = report.manifest
    if member == MANIFEST:
        if sha256_hex(data) != report.manifest_sha256:
            raise changed(report.manifest_sha256)
    elif member in manifest.members:
        if sha256_hex(data) != manifest.members[member].sha256:
            raise changed(manifest.members[member].sha256)
    elif member == PROVENANCE:
        # Bound by the signatures, not by the manifest: judge them again over these bytes
        # with the root verification ended on, and check that they bind the same manifest.
        sigs = [(m.name, read_member(handle, m)) for m in members.values()
                if m.name.startswith(SIGNATURE_DIR)]
        try:
            _judge_signatures(VerifyReport(bundle=report.bundle), report.root, data, sigs)
            bound = _subject_digests(_statement(data)).get(MANIFEST)
        except VerificationError as exc:
            raise changed(None) from exc
        if bound != report.manifest_sha256:
            raise changed(None)
    else:
        raise VerificationError("E_MEMBER_UNVERIFIED", f"{member} is not covered by the "
                                "bundle's signatures", member=member,
                                hint="read it without --trust (unverified)")


def _key(comp: dict[str, Any]) -> tuple[str, str]:
    return str(comp.get("type")), str(comp.get("name"))


def _sha(comp: dict[str, Any]) -> str | None:
    hashes = comp.get("hashes")
    for h in hashes if isinstance(hashes, list) else []:
        if isinstance(h, dict) and h.get("alg") == "SHA-256":
            return str(h.get("content"))
    return None


def components(doc: Any) -> list[dict[str, Any]]:
    """The SBOM's components that are objects (nothing else counts as one)."""
    found = doc.get("components") if isinstance(doc, dict) else None
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def component_rows(doc: Any) -> list[dict[str, Any]]:
    """One row per component: type, name, version, purl, sha256."""
    rows = []
    for comp in components(doc):
        rows.append({"type": comp.get("type"), "name": comp.get("name"),
                     "version": comp.get("version"), "purl": comp.get("purl"),
                     "sha256": _sha(comp)})
    return sorted(rows, key=lambda r: (str(r["type"]), str(r["name"])))


def sbom_diff(old: Any, new: Any) -> dict[str, list[dict[str, Any]]]:
    """Components added, removed and changed (version or SHA-256) from ``old`` to ``new``."""
    before = {_key(c): c for c in components(old)}
    after = {_key(c): c for c in components(new)}

    def brief(comp: dict[str, Any]) -> dict[str, Any]:
        return {"type": comp.get("type"), "name": comp.get("name"),
                "version": comp.get("version"), "sha256": _sha(comp)}

    changed = []
    for key in sorted(set(before) & set(after)):
        a, b = before[key], after[key]
        if (a.get("version"), _sha(a)) != (b.get("version"), _sha(b)):
            changed.append({"type": key[0], "name": key[1],
                            "old": {"version": a.get("version"), "sha256": _sha(a)},
                            "new": {"version": b.get("version"), "sha256": _sha(b)}})
    return {
        "added": [brief(after[k]) for k in sorted(set(after) - set(before))],
        "removed": [brief(before[k]) for k in sorted(set(before) - set(after))],
        "changed": changed,
    }
