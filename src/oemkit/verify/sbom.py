"""CycloneDX 1.6 checks for a bundle's SBOM: schema validity and agreement with the manifest.

Schema validation uses jsonschema-rs against the CycloneDX 1.6 schemas shipped in
``oemkit/schemas/cyclonedx`` (format assertions on): linear in the document, where
jsonschema's ``uniqueItems`` compares every pair of components.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from oemkit._canonical import parse_json
from oemkit.errors import InputError, VerificationError
from oemkit.models.manifest import SBOM, Manifest

_BASE = "http://cyclonedx.org/schema/"
MAX_REPORTED = 3


@cache
def _validator() -> Any:
    import jsonschema_rs

    folder = resources.files("oemkit").joinpath("schemas").joinpath("cyclonedx")

    def load(name: str) -> Any:
        return json.loads(folder.joinpath(name).read_text("utf-8"))

    registry = jsonschema_rs.Registry([
        (_BASE + "spdx.SNAPSHOT.schema.json", load("spdx.SNAPSHOT.schema.json")),
        (_BASE + "jsf-0.82.SNAPSHOT.schema.json", load("jsf-0.82.SNAPSHOT.schema.json")),
    ])
    return jsonschema_rs.validator_for(load("bom-1.6.SNAPSHOT.schema.json"), registry=registry,
                                       validate_formats=True)


def schema_errors(doc: Any) -> list[str]:
    """Up to a few human-readable CycloneDX 1.6 schema violations (empty when valid)."""
    out = []
    for error in _validator().iter_errors(doc):
        where = "/".join(str(p) for p in error.instance_path) or "(document)"
        out.append(f"{where}: {error.message}")
        if len(out) >= MAX_REPORTED:
            break
    return out


def check_schema(doc: Any, member: str) -> None:
    """Raise E_SBOM_SCHEMA naming the first violations.

    Raises:
        VerificationError: E_SBOM_SCHEMA.
    """
    problems = schema_errors(doc)
    if problems:
        raise VerificationError(
            "E_SBOM_SCHEMA", f"{member} is not valid CycloneDX 1.6: " + "; ".join(problems),
            member=member, check="sbom", hint="the SBOM was altered or written by a "
            "non-conforming tool; rebuild the bundle")


def _fail(code: str, message: str, **kw: Any) -> VerificationError:
    kw.setdefault("hint", "the SBOM does not describe this bundle; obtain a fresh copy")
    return VerificationError(code, message, member=SBOM, check="sbom", **kw)


def file_claims(doc: dict[str, Any]) -> dict[str, str]:
    """Payload path -> SHA-256 for every file and model component (duplicates rejected).

    Raises:
        VerificationError: E_SBOM_MISMATCH for a file listed twice.
    """
    claimed: dict[str, str] = {}
    for comp in doc.get("components", []) or []:
        if isinstance(comp, dict) and comp.get("type") in ("file", "machine-learning-model"):
            name = str(comp.get("name"))
            hashes = {h.get("alg"): h.get("content") for h in comp.get("hashes", []) or []
                      if isinstance(h, dict)}
            if name in claimed:
                raise _fail("E_SBOM_MISMATCH", f"{SBOM} lists file {name} twice")
            claimed[name] = str(hashes.get("SHA-256"))
    return claimed


def check_sbom(data: bytes, manifest: Manifest) -> dict[str, Any]:
    """Parse, schema-check and cross-check the SBOM against the (verified) manifest.

    Raises:
        VerificationError: E_SBOM_INVALID (not JSON, not CycloneDX 1.6), E_SBOM_SCHEMA,
            E_SBOM_MISMATCH (a file missing, extra, twice or with another SHA-256).
    """
    try:
        doc = parse_json(data, what=SBOM)
    except InputError as exc:
        raise _fail("E_SBOM_INVALID", exc.message) from exc
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX" or doc.get(
            "specVersion") != "1.6":
        raise _fail("E_SBOM_INVALID", f"{SBOM} is not a CycloneDX 1.6 document")
    check_schema(doc, SBOM)
    claimed = file_claims(doc)
    for entry in manifest.files:
        if entry.path not in claimed:
            raise _fail("E_SBOM_MISMATCH", f"{SBOM} does not list payload file {entry.path}",
                        expected=entry.sha256, actual="absent")
        if claimed[entry.path] != entry.sha256:
            raise _fail("E_SBOM_MISMATCH", f"{SBOM} lists payload file {entry.path} with another "
                        "SHA-256", expected=entry.sha256, actual=claimed[entry.path])
    extra = sorted(set(claimed) - {f.path for f in manifest.files})
    if extra:
        raise _fail("E_SBOM_MISMATCH", f"{SBOM} claims file {extra[0]} that is not in the "
                    "payload", expected="absent", actual=claimed[extra[0]])
    return doc
