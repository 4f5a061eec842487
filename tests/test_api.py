"""The public Python API: lazy re-exports and the report object partners script against."""

from __future__ import annotations

import subprocess
import sys

import oemkit
from helpers import EXAMPLE


def test_import_oemkit_is_cheap():
    code = ("import sys, oemkit; heavy = {'onnxruntime', 'cyclonedx', 'jsonschema', 'typer', "
            "'rich', 'securesystemslib', 'zstandard'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_build_sign_verify_unpack_through_the_api(tmp_path, keys, trust_v2):
    result = oemkit.build_bundle(EXAMPLE / "bundle.yaml", tmp_path / "dist")
    assert result.path.name == "example-0.2.0.oemb" and result.files == 9
    signed = oemkit.sign_bundle(result.path, [keys["bundle"]])
    assert signed.added == (keys["bundle"].keyid,)
    report = oemkit.verify_bundle(result.path, trust_v2)
    assert report.ok and report.signers == [keys["bundle"].keyid]
    doc = report.to_dict()
    assert doc["verdict"] == "verified" and doc["error"] is None
    unpacked = oemkit.unpack_bundle(result.path, tmp_path / "out", trust_v2)
    assert unpacked.ok
    assert (tmp_path / "out" / "model" / "model.onnx").read_bytes() == (
        EXAMPLE / "model" / "model.onnx").read_bytes()


def test_failed_report_carries_the_error(tmp_path, keys, trust_v1):
    result = oemkit.build_bundle(EXAMPLE / "bundle.yaml", tmp_path)
    oemkit.sign_bundle(result.path, [keys["bundle"]])
    report = oemkit.verify_bundle(result.path, trust_v1)  # v1 has no bundle key
    assert not report.ok
    assert report.error is not None and report.error.code == "E_SIGNATURE_UNTRUSTED"
    assert report.checks[-1].status == "fail" and report.checks[-1].name == "signatures"
    assert [c.status for c in report.checks[:-1]] == ["pass", "pass"]


def test_progress_callbacks_cover_every_payload_byte(tmp_path, keys, trust_v2):
    seen: list[int] = []
    result = oemkit.build_bundle(EXAMPLE, tmp_path, progress=seen.append)
    assert sum(seen) == result.payload_bytes
    oemkit.sign_bundle(result.path, [keys["bundle"]])
    from helpers import read_members

    payload = dict(read_members(result.path))["payload.tar.zst"]
    seen.clear()
    assert oemkit.verify_bundle(result.path, trust_v2, progress=seen.append).ok
    assert sum(seen) == len(payload)
