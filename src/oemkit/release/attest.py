"""Signed in-toto test-result attestations for smoke runs and migration tests.

A Statement v1 whose subject is the bundle's manifest digest and whose predicate is
``https://in-toto.io/attestation/test-result/v0.1`` (result, configuration, passed /
warned / failed tests), signed as a DSSE envelope in a Sigstore v0.3 bundle: the same
format as bundle signatures, so cosign, sigstore-js and oemkit all verify it.
"""

from __future__ import annotations

import json
from typing import Any

from oemkit._canonical import canonical_json
from oemkit.crypto.dsse import INTOTO_PAYLOAD_TYPE, make_envelope, sigstore_bundle
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.models.report import MIGRATE_TOOL, SMOKE_TOOL

TEST_RESULT_V01 = "https://in-toto.io/attestation/test-result/v0.1"


def _statement(manifest_sha256: str, bundle: str, result: str,
               configuration: list[dict[str, Any]], checks: Any, tool: str,
               when: str) -> bytes:
    by_status = {s: [c.name for c in checks if c.status == s] for s in ("pass", "warn", "fail")}
    statement: dict[str, Any] = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "oemkit-bundle.json", "digest": {"sha256": manifest_sha256},
                     "annotations": {"bundle": bundle}}],
        "predicateType": TEST_RESULT_V01,
        "predicate": {
            "result": result,
            "configuration": [*configuration, {"name": "run", "annotations": {
                "finishedOn": when, "tool": tool}}],
            "passedTests": by_status["pass"],
            "warnedTests": by_status["warn"],
            "failedTests": by_status["fail"],
        },
    }
    return canonical_json(statement)


def test_result_statement(result: Any, when: str) -> bytes:
    """Canonical JSON of the attestation statement for a :class:`SmokeResult`."""
    profile, host = result.profile, result.host
    configuration = []
    if profile is not None:
        configuration.append({"name": f"profile:{profile.name}", "uri": profile.source,
                              "digest": {"sha256": profile.sha256}})
    if host is not None:
        configuration.append({"name": "host", "annotations": {
            "arch": host.arch, "cores": str(host.cores), "memory_mb": str(host.memory_mb),
            "cpu": host.cpu_model, "providers": ",".join(host.providers),
            "gpus": ",".join(host.gpus), "onnxruntime": host.onnxruntime or ""}})
    return _statement(result.manifest_sha256, f"{result.bundle_name}-{result.bundle_version}",
                      result.result, configuration, result.checks, SMOKE_TOOL, when)


def migration_statement(configs: Any, checks: Any, when: str) -> bytes:
    """Canonical JSON of the attestation statement for ``oemkit migrate test`` of a
    verified bundle (``configs``: its :class:`~oemkit.models.config.BundleConfigs`):
    PASSED when no check failed; the configuration names the config versions tested."""
    failed = any(c.status == "fail" for c in checks)
    versions = sorted(configs.samples)
    configuration = [{"name": "config", "annotations": {
        "version": str(configs.version),
        "samples_from": ",".join(str(v) for v in versions),
        "samples": str(sum(len(configs.samples[v]) for v in versions))}}]
    return _statement(configs.manifest_sha256, configs.bundle or "",
                      "FAILED" if failed else "PASSED", configuration, checks, MIGRATE_TOOL,
                      when)


def sign_attestation(statement: bytes, key: PrivateKeyInfo) -> bytes:
    """A Sigstore v0.3 bundle (JSON bytes) wrapping the DSSE-signed statement."""
    envelope = make_envelope([key], INTOTO_PAYLOAD_TYPE, statement)
    return (json.dumps(sigstore_bundle(envelope, key.public), indent=2, sort_keys=True)
            + "\n").encode()
