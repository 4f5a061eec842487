"""``oemkit evidence``: an auditor's evidence pack, made and re-checked offline.

``make_pack`` verifies the bundle against the trust root (every check of ``oemkit
verify``), reads its signed metadata, and gathers what the site ran: the smoke test's
signed test-result attestation, the migration tests' JUnit file, the licenses (judged
against the bundle), the sizing document. Each becomes an artifact of the pack and one or
more claims naming it. ``verify_pack`` re-checks every claim from the pack's artifacts and
a trust root alone, in table order, and then the pack's own signature: the first claim
whose evidence no longer holds is the answer (a revoked bundle key, an edited
attestation, a license file that is not the one judged). docs/EVIDENCE.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oemkit import __version__
from oemkit._canonical import b64decode, b64encode, canonical_json, parse_json, sha256_hex
from oemkit._fs import read_input, read_member
from oemkit._time import format_time, now, parse_time
from oemkit.crypto.keys import PrivateKeyInfo, PublicKey, key_id, load_public, public_pem
from oemkit.errors import InputError, OemkitError, VerificationError
from oemkit.models.evidence import FORMAT, MAX_PACK, PAYLOAD_TYPE, Artifact, Claim, Pack
from oemkit.models.manifest import (
    LINK_DIR,
    MANIFEST,
    PAYLOAD,
    PROVENANCE,
    SBOM,
    SIGNATURE_DIR,
)
from oemkit.models.report import MIGRATE_TOOL, SMOKE_TOOL

SMOKE = "smoke.intoto.json"
MIGRATE = "migrate-junit.xml"
MIGRATE_ATTESTATION = "migrate.intoto.json"
SIZING = "sizing.json"
TRUST = "trust-root.json"
LICENSE_PREFIX = "licenses/"
MAX_INPUT = 64 << 20


def _fail(code: str, message: str, *, hint: str, member: str | None = None
          ) -> VerificationError:
    return VerificationError(code, message, check="evidence", member=member, hint=hint)


@dataclass(frozen=True)
class ClaimResult:
    """One claim as ``verify_pack`` judged it: ``holds``, or why not."""

    claim: Claim
    holds: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.claim.to_dict(), "holds": self.holds, "detail": self.detail}


@dataclass
class PackReport:
    """What ``verify_pack`` found: every claim's result and the pack's signature."""

    path: str
    bundle: str
    created: str
    results: list[ClaimResult] = field(default_factory=list)
    signer: str = ""
    signature_ok: bool = False
    signature_detail: str = ""

    @property
    def ok(self) -> bool:
        return self.signature_ok and all(r.holds for r in self.results)

    @property
    def first_failure(self) -> ClaimResult | None:
        return next((r for r in self.results if not r.holds), None)

    def to_dict(self) -> dict[str, Any]:
        """``oemkit evidence verify --json``."""
        return {"ok": self.ok, "pack": self.path, "bundle": self.bundle,
                "created": self.created, "signer": self.signer,
                "signature": {"ok": self.signature_ok, "detail": self.signature_detail},
                "claims": [r.to_dict() for r in self.results]}


# --------------------------------------------------------------------------- making a pack


@dataclass(frozen=True)
class PackInputs:
    """What ``oemkit evidence`` is given besides the bundle and the trust root."""

    smoke: Path | None = None
    smoke_key: Path | None = None
    sizing: Path | None = None
    migrate_junit: Path | None = None
    licenses: tuple[Path, ...] = ()
    #: ``oemkit migrate test --attest-key``'s attestation, and its key when not in the root.
    migrate: Path | None = None
    migrate_key: Path | None = None


def make_pack(bundle: Path, trust: Path, key: PrivateKeyInfo, inputs: PackInputs,
              *, when: dt.datetime | None = None) -> tuple[bytes, dict[str, Any]]:
    """The signed pack (file bytes) and its document.

    Raises:
        VerificationError: the bundle does not verify (its code), ``E_EVIDENCE_INPUT``
            (an attestation, JUnit file or license that is not about this bundle or does
            not hold).
        InputError: ``E_NOT_FOUND`` and the readers' codes for the inputs.
    """
    from oemkit.verify.bundle import verify_bundle
    from oemkit.verify.trust import load_pinned

    moment = when or now()
    pinned = read_input(trust, "trust root")
    root = load_pinned(pinned)
    report = verify_bundle(bundle, root)
    if not report.ok:
        assert report.error is not None
        raise report.error
    manifest = report.manifest
    digest = str(report.manifest_sha256)
    members = _metadata(bundle)
    artifacts = [Artifact(TRUST, "application/json", pinned)]
    artifacts += [Artifact(name, "application/json", data) for name, data in members]
    by_name = dict(members)
    doc: dict[str, Any] = {
        "format": FORMAT, "created": format_time(moment), "tool": f"oemkit {__version__}",
        "signer": {"keyid": key.keyid, "public_key": public_pem(key.public)},
        "bundle": {"name": manifest.name, "version": manifest.version,
                   "channel": manifest.channel, "file": Path(bundle).name,
                   "manifest_sha256": report.manifest_sha256,
                   "payload_sha256": manifest.members[PAYLOAD].sha256,
                   "files": len(manifest.files), "payload_bytes": manifest.payload_size},
        "trust_root": {"version": root.version, "sha256": sha256_hex(pinned),
                       "verified_version": report.trust_root_version},
        "verification": {"ok": True, "signers": list(report.signers),
                         "checks": [{"name": c.name, "status": c.status, "detail": c.detail}
                                    for c in report.checks]},
        "sbom": _sbom_summary(by_name[SBOM]), "smoke": None, "migration": None,
        "licenses": [], "sizing": None, "claims": [], "artifacts": []}
    config = f"--trust {TRUST} (v{root.version}, sha256 {sha256_hex(pinned)[:16]})"
    claims = [
        Claim("C1", f"{manifest.name} {manifest.version} is signed by "
              f"{len(report.signers)} bundle key(s) of trust root v{report.trust_root_version}"
              f" ({', '.join(k[:16] for k in report.signers)}), meeting its threshold",
              "oemkit verify: signatures", PROVENANCE, sha256_hex(by_name[PROVENANCE]),
              config),
        Claim("C2", f"the manifest (sha256 {digest[:16]}) is the one the "
              "signed provenance names", "oemkit verify: provenance", MANIFEST,
              sha256_hex(by_name[MANIFEST]), config),
        Claim("C3", f"the payload ({len(manifest.files)} files, {manifest.payload_size} bytes) "
              "matched every SHA-256 of the signed manifest when the pack was made",
              "oemkit verify: payload", PAYLOAD, manifest.members[PAYLOAD].sha256, config),
        Claim("C4", f"the SBOM lists all {len(manifest.files)} payload files with their "
              f"SHA-256 and {doc['sbom']['components']} components in all", "oemkit verify: "
              "sbom (CycloneDX 1.6 schema, agreement with the manifest)", SBOM,
              sha256_hex(by_name[SBOM]), config),
    ]
    bundle_facts = _facts(manifest, digest)
    if inputs.smoke is not None:
        claim, art, summary = _smoke_evidence(inputs.smoke, inputs.smoke_key, root, digest)
        artifacts += art
        doc["smoke"] = summary
        claims.append(claim)
    if inputs.migrate_junit is not None:
        data = read_input(inputs.migrate_junit, "migration JUnit file", MAX_INPUT)
        summary = _junit_summary(data, str(inputs.migrate_junit))
        artifacts.append(Artifact(MIGRATE, "application/xml", data))
        doc["migration"] = summary
        claims.append(Claim("C6", f"the config migrations pass: {summary['tests']} tests, "
                            f"{summary['failures']} failures, {summary['errors']} errors",
                            "oemkit migrate test --junit", MIGRATE, sha256_hex(data),
                            f"suite {summary['suite']}"))
    if inputs.migrate is not None:
        claim, art, attested = _migrate_evidence(inputs.migrate, inputs.migrate_key, root,
                                                 digest)
        artifacts += art
        doc["migration"] = {**(doc["migration"] or {"suite": attested["bundle"], "tests":
                                                    attested["passed"], "failures": 0,
                                                    "errors": 0}), "attested": attested}
        claims.append(claim)
    for path in inputs.licenses:
        data = read_input(path, "license", 1 << 20)
        verdict = _judge_license(data, root, moment, bundle_facts, str(path))
        lid = verdict.claims.license_id
        name = f"{LICENSE_PREFIX}{lid}.lic"
        artifacts.append(Artifact(name, "application/x-oemkit-license", data))
        doc["licenses"].append({"license_id": lid, "customer": verdict.claims.customer_name,
                                "product": verdict.claims.product, "status": verdict.status,
                                "expires": format_time(verdict.claims.expires),
                                "features": list(verdict.claims.features),
                                "signer": verdict.signer})
        claims.append(Claim(f"C7.{len(doc['licenses'])}", f"license {lid} for "
                            f"{verdict.claims.customer_name} is {verdict.status} for this "
                            f"bundle at {format_time(moment)} (until "
                            f"{format_time(verdict.claims.expires)})",
                            "oemkit license verify (signature, bindings, window)", name,
                            sha256_hex(data), config))
    if inputs.sizing is not None:
        data = read_input(inputs.sizing, "sizing document", MAX_INPUT)
        summary = _sizing_summary(data, str(inputs.sizing))
        artifacts.append(Artifact(SIZING, "application/json", data))
        doc["sizing"] = summary
        claims.append(Claim("C8", summary["claim"], "oemkit sizing (served measurement)",
                            SIZING, sha256_hex(data), f"profile {summary['profile']}"))
    doc["claims"] = [c.to_dict() for c in claims]
    doc["artifacts"] = [a.to_dict() for a in artifacts]
    payload = canonical_json(doc)
    return _envelope(payload, key), doc


def _envelope(payload: bytes, key: PrivateKeyInfo) -> bytes:
    from oemkit.crypto.dsse import sign

    sig = sign(key, PAYLOAD_TYPE, payload)
    return canonical_json({"payload": b64encode(payload), "payloadType": PAYLOAD_TYPE,
                           "signatures": [{"keyid": key.keyid, "sig": b64encode(sig)}]})


def _metadata(bundle: Path) -> list[tuple[str, bytes]]:
    """The bundle's signed metadata members (everything but the payload and licenses)."""
    from oemkit._fs import open_input
    from oemkit.verify.bundle import DEFAULT_LIMITS, scan_bundle

    with open_input(Path(bundle), "bundle") as handle:
        return [(m.name, read_member(handle, m)) for m in scan_bundle(handle, DEFAULT_LIMITS)
                if m.name in (MANIFEST, SBOM, PROVENANCE)
                or m.name.startswith((SIGNATURE_DIR, LINK_DIR))]


def _facts(manifest: Any, digest: str) -> Any:
    from oemkit.verify.license import BundleFacts

    return BundleFacts(digest, manifest.name, parse_time(manifest.build_time, "build_time"),
                       manifest.channel)


def _sbom_summary(data: bytes) -> dict[str, Any]:
    from oemkit.report.sbom import components

    doc = parse_json(data, what=SBOM)
    comps = components(doc)
    licenses: dict[str, int] = {}
    libraries = []
    for comp in comps:
        names = [(lic.get("license") or {}).get("id") or (lic.get("license") or {}).get("name")
                 or lic.get("expression") for lic in comp.get("licenses") or []
                 if isinstance(lic, dict)]
        for name in names or ["(none declared)"]:
            licenses[str(name)] = licenses.get(str(name), 0) + 1
        if comp.get("type") in ("library", "machine-learning-model", "application"):
            hashes = {h.get("alg"): h.get("content") for h in comp.get("hashes") or []
                      if isinstance(h, dict)}
            libraries.append({"type": comp.get("type"), "name": comp.get("name"),
                              "version": comp.get("version"), "purl": comp.get("purl"),
                              "licenses": [str(n) for n in names],
                              "sha256": hashes.get("SHA-256")})
    return {"components": len(comps),
            "files": sum(1 for c in comps if c.get("type") in ("file",
                                                               "machine-learning-model")),
            "licenses": dict(sorted(licenses.items())),
            "libraries": sorted(libraries, key=lambda r: (str(r["type"]), str(r["name"])))}


def _attest_keys(root: Any, smoke_key: Path | None) -> list[tuple[str, PublicKey]]:
    keys = [(k.keyid, load_public(k.public_key, k.keyid)) for k in root.keys]
    if smoke_key is not None:
        from oemkit.crypto.keys import load_public_file

        public = load_public_file(smoke_key)
        keys.insert(0, (key_id(public), public))
    return keys


def _judge_attestation(data: bytes, keys: list[tuple[str, PublicKey]], manifest_sha256: str,
                       what: str, tool: str = SMOKE_TOOL) -> tuple[str, dict[str, Any]]:
    """(signer key id, statement) of an attestation ``tool`` wrote about this bundle that
    passed (a smoke attestation is not a migration one, nor the reverse)."""
    from oemkit.crypto.dsse import INTOTO_PAYLOAD_TYPE, parse_sigstore_bundle, signers_of

    envelope = parse_sigstore_bundle(data, what)
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise InputError("E_EVIDENCE_INPUT", f"{what} is not an in-toto attestation")
    signers = signers_of(envelope, keys)
    if not signers:
        raise InputError("E_EVIDENCE_INPUT", f"{what} is signed by no key the pack knows "
                         "(the trust root's, or --smoke-key)",
                         hint="pass the attestation key's public half with --smoke-key")
    statement = parse_json(envelope.payload, what=what)
    subjects = [s.get("digest", {}).get("sha256") for s in statement.get("subject", [])
                if isinstance(s, dict)] if isinstance(statement, dict) else []
    if manifest_sha256 not in subjects:
        raise InputError("E_EVIDENCE_INPUT", f"{what} is about another bundle (its subject is "
                         "not this bundle's manifest)")
    predicate = statement.get("predicate") or {}
    runs = [c for c in predicate.get("configuration") or [] if isinstance(c, dict)
            and c.get("name") == "run"]
    made_by = (runs[0].get("annotations") or {}).get("tool") if runs else None
    if made_by != tool:
        raise InputError("E_EVIDENCE_INPUT", f"{what} was written by {made_by!r}, not "
                         f"{tool!r}", hint=f"pass the attestation {tool} --attest-key wrote")
    result = predicate.get("result")
    if result != "PASSED":
        raise InputError("E_EVIDENCE_INPUT", f"{what} records result {result!r}, not PASSED")
    return signers[0], statement


def _finished(config: dict[Any, Any]) -> Any:
    """The attestation's ``run`` configuration's ``finishedOn``."""
    return ((config.get("run") or {}).get("annotations") or {}).get("finishedOn")


def _attestation_artifacts(name: str, data: bytes, key_name: str,
                           key: Path | None) -> list[Artifact]:
    """The attestation and, when given, the public key it is checked with."""
    artifacts = [Artifact(name, "application/vnd.dev.sigstore.bundle.v0.3+json", data)]
    if key is not None:
        artifacts.append(Artifact(key_name, "application/x-pem-file",
                                  read_input(key, "public key", 1 << 16)))
    return artifacts


def _smoke_evidence(path: Path, smoke_key: Path | None, root: Any, manifest_sha256: str
                    ) -> tuple[Claim, list[Artifact], dict[str, Any]]:
    data = read_input(path, "smoke attestation", MAX_INPUT)
    keys = _attest_keys(root, smoke_key)
    try:
        signer, statement = _judge_attestation(data, keys, manifest_sha256, str(path))
    except InputError as exc:
        raise InputError("E_EVIDENCE_INPUT", exc.message, hint=exc.hint or "pass the "
                         "attestation oemkit smoke --attest-key wrote for this bundle") from exc
    predicate = statement["predicate"]
    config = {c.get("name"): c for c in predicate.get("configuration", [])
              if isinstance(c, dict)}
    profile = next((str(n).split(":", 1)[1] for n in config if str(n).startswith("profile:")),
                   "?")
    host = (config.get("host") or {}).get("annotations", {})
    summary = {"result": predicate.get("result"), "profile": profile,
               "host": host, "passed": len(predicate.get("passedTests", [])),
               "warned": len(predicate.get("warnedTests", [])),
               "failed": len(predicate.get("failedTests", [])), "attested_by": signer,
               "finished": _finished(config)}
    artifacts = _attestation_artifacts(SMOKE, data, "smoke-key.pub", smoke_key)
    claim = Claim("C5", f"the smoke test PASSED on profile {profile} "
                  f"({summary['passed']} checks passed, {summary['failed']} failed), "
                  f"attested by key {signer[:16]}", "oemkit smoke --attest-key "
                  "(in-toto test-result/v0.1)", SMOKE, sha256_hex(data), f"--profile {profile}")
    return claim, artifacts, summary


def _migrate_evidence(path: Path, migrate_key: Path | None, root: Any, manifest_sha256: str
                      ) -> tuple[Claim, list[Artifact], dict[str, Any]]:
    data = read_input(path, "migration attestation", MAX_INPUT)
    keys = _attest_keys(root, migrate_key)
    try:
        signer, statement = _judge_attestation(data, keys, manifest_sha256, str(path),
                                               MIGRATE_TOOL)
    except InputError as exc:
        raise InputError("E_EVIDENCE_INPUT", exc.message, hint=exc.hint or "pass the "
                         "attestation oemkit migrate test --attest-key wrote for this bundle"
                         ) from exc
    predicate = statement["predicate"]
    config = {c.get("name"): c for c in predicate.get("configuration", [])
              if isinstance(c, dict)}
    versions = (config.get("config") or {}).get("annotations") or {}
    bundle = ((statement.get("subject") or [{}])[0].get("annotations") or {}).get("bundle", "")
    summary = {"result": predicate.get("result"), "bundle": bundle,
               "config_version": versions.get("version"),
               "samples_from": versions.get("samples_from"),
               "passed": len(predicate.get("passedTests", [])),
               "failed": len(predicate.get("failedTests", [])), "attested_by": signer,
               "finished": _finished(config)}
    artifacts = _attestation_artifacts(MIGRATE_ATTESTATION, data, "migrate-key.pub",
                                       migrate_key)
    claim = Claim("C9", f"the config migrations PASSED for this bundle (to config version "
                  f"{summary['config_version']}, {summary['passed']} checks passed), attested "
                  f"by key {signer[:16]}", "oemkit migrate test --attest-key (in-toto "
                  "test-result/v0.1)", MIGRATE_ATTESTATION, sha256_hex(data),
                  f"samples of config version(s) {summary['samples_from'] or 'none'}")
    return claim, artifacts, summary


def _junit_summary(data: bytes, what: str) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InputError("E_EVIDENCE_INPUT", f"{what} is not JUnit XML ({exc})",
                         hint="pass the file oemkit migrate test --junit wrote") from None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    if root.tag not in ("testsuites", "testsuite") or not suites:
        raise InputError("E_EVIDENCE_INPUT", f"{what} holds no <testsuite>",
                         hint="pass the file oemkit migrate test --junit wrote")

    def count(name: str) -> int:
        return sum(int(s.get(name, "0") or 0) for s in suites)

    try:
        summary = {"suite": root.get("name") or suites[0].get("name") or "", "tests":
                   count("tests"), "failures": count("failures"), "errors": count("errors")}
    except ValueError:
        raise InputError("E_EVIDENCE_INPUT", f"{what} has non-numeric test counts",
                         hint="pass the file oemkit migrate test --junit wrote") from None
    if not summary["tests"] or summary["failures"] or summary["errors"]:
        raise InputError("E_EVIDENCE_INPUT", f"{what} records {summary['tests']} tests, "
                         f"{summary['failures']} failures and {summary['errors']} errors: "
                         "it is not evidence that the migrations pass",
                         hint="fix the migrations and run oemkit migrate test again")
    return summary


def _judge_license(data: bytes, root: Any, moment: dt.datetime, facts: Any, what: str) -> Any:
    from oemkit.verify.license import evaluate

    try:
        return evaluate(data, root, moment, bundle=facts, what=what)
    except OemkitError as exc:
        raise InputError("E_EVIDENCE_INPUT", f"{what} does not hold for this bundle: "
                         f"{exc.code}: {exc.message}", hint=exc.hint) from exc


def _sizing_summary(data: bytes, what: str) -> dict[str, Any]:
    doc = parse_json(data, what=what)
    rec = doc.get("recommendation") if isinstance(doc, dict) else None
    if not isinstance(rec, dict):
        raise InputError("E_EVIDENCE_INPUT", f"{what} has no recommendation",
                         hint="pass the sizing.json oemkit sizing wrote")
    profile = (doc.get("profile") or {}).get("name", "?")
    slo = (doc.get("request") or {}).get("slo") or {}
    instances = rec.get("instances")
    basis = rec.get("basis", "?")
    target = (doc.get("request") or {}).get("target_qps")
    claim = (f"sizing ({basis}): {instances} instance(s) for {target} requests/s at "
             f"{slo.get('percentile', '?')} <= {slo.get('ms', '?')} ms on profile {profile}"
             if instances is not None else f"sizing ({basis}) measured on profile {profile}")
    return {"profile": profile, "recommendation": rec, "claim": claim}


# --------------------------------------------------------------------------- verifying a pack


def read_pack(data: bytes, what: str) -> tuple[dict[str, Any], Pack, bytes, bytes]:
    """(envelope, parsed pack, payload bytes, signature) of a pack file, unverified.

    Raises:
        VerificationError: ``E_EVIDENCE_INVALID`` (not an oemkit evidence pack).
    """
    try:
        envelope = parse_json(data, what=what, code="E_EVIDENCE_INVALID")
        if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE or \
                not isinstance(envelope.get("signatures"), list) or len(
                    envelope["signatures"]) != 1:
            raise InputError("E_EVIDENCE_INVALID", f"{what} is not an oemkit evidence pack "
                             "(a DSSE envelope of one signature)")
        payload = b64decode(envelope.get("payload"), what=f"{what} payload")
        sig = b64decode(envelope["signatures"][0].get("sig") if isinstance(
            envelope["signatures"][0], dict) else None, what=f"{what} signature")
        pack = Pack.from_dict(parse_json(payload, what=f"{what} payload",
                                         code="E_EVIDENCE_INVALID"))
    except InputError as exc:
        raise VerificationError("E_EVIDENCE_INVALID", exc.message, check="evidence",
                                hint="pass a .oeme file oemkit evidence wrote") from exc
    return envelope, pack, payload, sig


def verify_pack(path: Path, trust: Path, *, signer: Path | None = None) -> PackReport:
    """Re-check every claim of the pack at ``path`` from its artifacts and ``trust`` (the
    auditor's pinned root: it may be newer than the pack's), then its signature.

    Raises:
        VerificationError: ``E_EVIDENCE_INVALID`` (not a pack).
        InputError: the readers' codes for ``path``, ``trust``, ``signer``.
    """
    from oemkit.crypto.dsse import verify_signature
    from oemkit.verify.trust import load_pinned

    data = read_input(path, "evidence pack", MAX_PACK)
    _, pack, payload, sig = read_pack(data, str(path))
    root = load_pinned(read_input(trust, "trust root"))
    doc = pack.doc
    report = PackReport(str(path), f"{doc['bundle'].get('name')} "
                        f"{doc['bundle'].get('version')}", str(doc["created"]))
    signed: _Signed | OemkitError
    try:
        signed = _signed(pack, root)
    except OemkitError as exc:  # every claim rests on it: each fails with this reason
        signed = exc
    for claim in pack.claims:
        try:
            if isinstance(signed, OemkitError):
                raise signed
            detail = _recheck(claim, pack, root, signed)
            report.results.append(ClaimResult(claim, True, detail))
        except OemkitError as exc:
            report.results.append(ClaimResult(claim, False, f"{exc.code}: {exc.message}"))
    try:
        public = load_public(str(doc["signer"]["public_key"]), "the pack's signer")
        report.signer = key_id(public)
        if signer is not None:
            from oemkit.crypto.keys import load_public_file

            pinned = key_id(load_public_file(signer))
            if pinned != report.signer:
                raise _fail("E_EVIDENCE_SIGNATURE", f"the pack is signed by key "
                            f"{report.signer[:16]}, not the expected {pinned[:16]}",
                            hint="check who made the pack")
        if not verify_signature(public, PAYLOAD_TYPE, payload, sig):
            raise _fail("E_EVIDENCE_SIGNATURE", "the pack's signature does not verify: it was "
                        "changed after it was signed", hint="obtain the original pack")
        report.signature_ok = True
        report.signature_detail = f"signed by key {report.signer[:16]}" + (
            " (the expected signer)" if signer is not None else " (not pinned: pass --signer)")
    except (OemkitError, KeyError, TypeError) as exc:
        report.signature_detail = (f"{exc.code}: {exc.message}" if isinstance(exc, OemkitError)
                                   else f"no usable signer key ({exc})")
    return report


def _artifact(pack: Pack, name: str, claimed: str) -> bytes:
    """An artifact's bytes, which must have both the digest the artifact list records and
    the digest the claim names."""
    found = pack.artifacts.get(name)
    if found is None:
        raise _fail("E_EVIDENCE_MISSING", f"the pack does not carry {name}",
                    hint="the pack is damaged or was edited", member=name)
    artifact, recorded = found
    actual = artifact.sha256
    if actual != recorded or (claimed and actual != claimed):
        raise _fail("E_EVIDENCE_DIGEST", f"{name} does not match the digest the pack records "
                    f"(sha256 {actual[:16]}, recorded {(claimed or recorded)[:16]})",
                    hint="the pack was edited after it was made", member=name)
    return artifact.content


@dataclass(frozen=True)
class _Signed:
    """What every claim rests on, checked once: the bundle keys that signed the carried
    provenance, its subjects, and the manifest it names."""

    signers: list[str]
    subjects: dict[str, str]
    manifest_bytes: bytes
    manifest: Any


def _signed(pack: Pack, root: Any) -> _Signed:
    """The carried provenance judged by ``root``'s bundle policy and the manifest it names
    (raises the reason either does not hold)."""
    from oemkit.verify.bundle import judge_provenance, parse_manifest

    provenance = _artifact(pack, PROVENANCE, "")
    sigs = [(n, a.content) for n, (a, _) in pack.artifacts.items()
            if n.startswith(SIGNATURE_DIR)]
    signers, subjects = judge_provenance(root, provenance, sigs)
    manifest_bytes = _artifact(pack, MANIFEST, "")
    if subjects.get(MANIFEST) != sha256_hex(manifest_bytes):
        raise _fail("E_EVIDENCE_DIGEST", "the manifest is not the one the signed provenance "
                    "names", hint="the pack was edited after it was made", member=MANIFEST)
    return _Signed(signers, subjects, manifest_bytes, parse_manifest(manifest_bytes))


def _recheck(claim: Claim, pack: Pack, root: Any, signed: _Signed) -> str:
    """Why ``claim`` still holds (raises the reason it does not)."""
    doc = pack.doc
    subjects, manifest_bytes, manifest = signed.subjects, signed.manifest_bytes, signed.manifest
    if claim.id == "C1":
        _artifact(pack, PROVENANCE, claim.digest)
        return (f"signed by {', '.join(k[:16] for k in signed.signers)} under trust root "
                f"v{root.version}")
    if claim.id == "C2":
        _artifact(pack, MANIFEST, claim.digest)
        return f"provenance subject {MANIFEST} sha256 {subjects[MANIFEST][:16]}"
    if claim.id == "C3":
        recorded = manifest.members[PAYLOAD].sha256
        if recorded != claim.digest or subjects.get(PAYLOAD) != recorded:
            raise _fail("E_EVIDENCE_DIGEST", "the payload digest is not the signed one",
                        hint="the pack was edited after it was made", member=PAYLOAD)
        check = next((c for c in doc["verification"]["checks"] if c.get("name") == "payload"),
                     None)
        if not check or check.get("status") != "pass":
            raise _fail("E_EVIDENCE_CLAIM", "the pack records no passed payload check",
                        hint="make the pack again from a bundle that verifies")
        return f"signed manifest and provenance name payload sha256 {recorded[:16]}"
    if claim.id == "C4":
        from oemkit.verify.sbom import check_sbom

        sbom = _artifact(pack, SBOM, claim.digest)
        if sha256_hex(sbom) != manifest.members[SBOM].sha256:
            raise _fail("E_EVIDENCE_DIGEST", "the SBOM is not the one the signed manifest "
                        "lists", hint="the pack was edited after it was made", member=SBOM)
        check_sbom(sbom, manifest)
        return "valid CycloneDX 1.6, agrees with the signed manifest"
    if claim.id in ("C5", "C9"):
        name, key_name, tool, kind = ((SMOKE, "smoke-key.pub", SMOKE_TOOL, "smoke")
                                      if claim.id == "C5" else
                                      (MIGRATE_ATTESTATION, "migrate-key.pub", MIGRATE_TOOL,
                                       "migration"))
        data = _artifact(pack, name, claim.digest)
        keys = [(k.keyid, load_public(k.public_key, k.keyid)) for k in root.keys]
        if key_name in pack.artifacts:
            public = load_public(pack.artifacts[key_name][0].content, key_name)
            keys.insert(0, (key_id(public), public))
        try:
            signer, _ = _judge_attestation(data, keys, sha256_hex(manifest_bytes), name, tool)
        except InputError as exc:
            raise _fail("E_EVIDENCE_CLAIM", exc.message, member=name,
                        hint="the attestation was edited, or is about another bundle") from exc
        trusted = any(k.keyid == signer for k in root.keys)
        return f"attestation verifies under key {signer[:16]}" + (
            " (a key of the trust root)" if trusted else f" (the pack's {kind} key)")
    if claim.id == "C6":
        data = _artifact(pack, MIGRATE, claim.digest)
        summary = _recheck_input(_junit_summary, data, MIGRATE)
        return f"{summary['tests']} tests, no failures"
    if claim.id.startswith("C7."):
        data = _artifact(pack, claim.artifact, claim.digest)
        moment = parse_time(doc["created"], "created")
        verdict = _recheck_input(lambda d, w: _judge_license(
            d, root, moment, _facts(manifest, sha256_hex(manifest_bytes)), w), data,
            claim.artifact)
        return f"{verdict.status} at {doc['created']}, signed by {verdict.signer[:16]}"
    if claim.id == "C8":
        data = _artifact(pack, SIZING, claim.digest)
        summary = _recheck_input(_sizing_summary, data, SIZING)
        return str(summary["claim"])
    raise _fail("E_EVIDENCE_CLAIM", f"claim {claim.id} is not one oemkit makes",
                hint="the pack was edited after it was made")


def _recheck_input(fn: Callable[[bytes, str], Any], data: bytes, name: str) -> Any:
    try:
        return fn(data, name)
    except InputError as exc:
        raise _fail("E_EVIDENCE_CLAIM", exc.message, member=name,
                    hint="the evidence was edited, or no longer holds") from exc
