"""Signed in-toto test-result attestations for smoke runs.

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

TEST_RESULT_V01 = "https://in-toto.io/attestation/test-result/v0.1"


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
    by_status = {s: [c.name for c in result.checks if c.status == s]
                 for s in ("pass", "warn", "fail")}
    statement: dict[str, Any] = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "oemkit-bundle.json",
                     "digest": {"sha256": result.manifest_sha256},
                     "annotations": {"bundle": f"{result.bundle_name}-{result.bundle_version}"}}],
        "predicateType": TEST_RESULT_V01,
        "predicate": {
            "result": result.result,
            "configuration": configuration,
            "passedTests": by_status["pass"],
            "warnedTests": by_status["warn"],
            "failedTests": by_status["fail"],
        },
    }
    statement["predicate"]["configuration"].append(
        {"name": "run", "annotations": {"finishedOn": when, "tool": "oemkit smoke"}})
    return canonical_json(statement)


def sign_attestation(statement: bytes, key: PrivateKeyInfo) -> bytes:
    """A Sigstore v0.3 bundle (JSON bytes) wrapping the DSSE-signed statement."""
    envelope = make_envelope([key], INTOTO_PAYLOAD_TYPE, statement)
    return (json.dumps(sigstore_bundle(envelope, key.public), indent=2, sort_keys=True)
            + "\n").encode()
