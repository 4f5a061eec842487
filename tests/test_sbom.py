"""SBOM and provenance: outside validators accept them, they describe the bundle exactly,
and tampering with either is named."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import zipfile

import pytest

from helpers import EXAMPLE, read_members, reseal, write_members
from oemkit.errors import InputError
from oemkit.models.manifest import FileEntry
from oemkit.release.bundle import build_bundle
from oemkit.release.modelcard import read_model_card
from oemkit.release.sbom import make_sbom
from oemkit.verify.bundle import verify_bundle


def _sbom(bundle) -> dict:
    return json.loads(dict(read_members(bundle))["sbom.cdx.json"])


def _wheel(path, name: str, version: str, requires: list[str]) -> None:
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense: MIT\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}-{version}.dist-info/METADATA", meta)
        zf.writestr(f"{name}/__init__.py", "")


@pytest.fixture
def wheel_spec(tmp_path):
    spec = tmp_path / "spec"
    shutil.copytree(EXAMPLE, spec)
    (spec / "wheels").mkdir()
    _wheel(spec / "wheels" / "alpha-1.0-py3-none-any.whl", "alpha", "1.0",
           ["beta>=2", "gamma; extra == 'dev'"])
    _wheel(spec / "wheels" / "beta-2.1-py3-none-any.whl", "Beta", "2.1", [])
    text = (spec / "bundle.yaml").read_text()
    (spec / "bundle.yaml").write_text(text + "wheelhouse: wheels\n")
    return spec


def test_sbom_passes_cyclonedx_strict_validator(signed_bundle, wheel_spec, tmp_path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    validator = JsonStrictValidator(SchemaVersion.V1_6)
    wheel_bundle = build_bundle(wheel_spec, tmp_path / "w").path
    for bundle in (signed_bundle, wheel_bundle):
        text = dict(read_members(bundle))["sbom.cdx.json"].decode()
        assert validator.validate_str(text) is None


def test_model_component_carries_a_model_card(signed_bundle):
    import onnx

    model = next(c for c in _sbom(signed_bundle)["components"]
                 if c["type"] == "machine-learning-model")
    assert model["name"] == "model/model.onnx"
    digest = hashlib.sha256((EXAMPLE / "model" / "model.onnx").read_bytes()).hexdigest()
    assert model["hashes"] == [{"alg": "SHA-256", "content": digest}]
    params = model["modelCard"]["modelParameters"]
    assert params["inputs"] == [{"format": "x: float32[batch,4]"}]
    assert params["outputs"] == [{"format": "y: float32[batch,3]"}]
    props = {p["name"]: p["value"] for p in model["modelCard"]["properties"]}
    reference = onnx.load(EXAMPLE / "model" / "model.onnx")
    assert props["oemkit:onnx:opset:ai.onnx"] == str(reference.opset_import[0].version)
    assert props["oemkit:onnx:ir_version"] == str(reference.ir_version)
    assert props["oemkit:onnx:parameters"] == str(sum(
        int(__import__("numpy").prod(t.dims)) for t in reference.graph.initializer))
    assert props["oemkit:onnx:producer"] == (
        f"{reference.producer_name} {reference.producer_version}")


def test_wheelhouse_packages_and_requirements_are_libraries(wheel_spec, tmp_path):
    doc = _sbom(build_bundle(wheel_spec, tmp_path).path)
    libs = {c["name"]: c for c in doc["components"] if c["type"] == "library"}
    assert set(libs) == {"alpha", "beta", "numpy", "onnxruntime", "starlette", "uvicorn",
                         "httptools", "uvloop", "prometheus-client", "orjson"}
    alpha_sha = hashlib.sha256(
        (wheel_spec / "wheels" / "alpha-1.0-py3-none-any.whl").read_bytes()).hexdigest()
    assert libs["alpha"]["purl"] == "pkg:pypi/alpha@1.0"
    assert libs["alpha"]["hashes"] == [{"alg": "SHA-256", "content": alpha_sha}]
    assert libs["beta"]["version"] == "2.1"  # from METADATA, normalised name
    assert {"name": "oemkit:requirement", "value": ">=1.17"} in libs["onnxruntime"]["properties"]
    deps = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert deps["pkg:pypi/alpha@1.0"] == ["pkg:pypi/beta@2.1"]  # the dev extra is not a dep
    root = deps["bundle:example@0.2.0"]
    assert "pkg:pypi/alpha@1.0" in root and "file:wheels/alpha-1.0-py3-none-any.whl" in root
    # the wheel files themselves are still file components with their hash
    files = {c["name"]: c for c in doc["components"] if c["type"] == "file"}
    assert files["wheels/alpha-1.0-py3-none-any.whl"]["hashes"][0]["content"] == alpha_sha


def test_fast_path_writes_what_the_library_writes():
    import datetime as dt

    files = [FileEntry(f"dir/f{i}.bin", i, hashlib.sha256(bytes([i])).hexdigest(), 0o644)
             for i in range(40)]
    files.append(FileEntry("model/model.onnx", 1, "ab" * 32, 0o644))
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    card = read_model_card(EXAMPLE / "model" / "model.onnx")
    fast = make_sbom("n", "1", "d", files, "model/model.onnx", when, model_card=card)
    slow = make_sbom("n", "1", "d", files, "model/model.onnx", when, model_card=card,
                     fast=False)
    assert fast == slow


def test_sbom_is_reproducible_across_directories(tmp_path):
    a = build_bundle(EXAMPLE, tmp_path / "a").path
    shutil.copytree(EXAMPLE, tmp_path / "copy")
    b = build_bundle(tmp_path / "copy", tmp_path / "b").path
    assert dict(read_members(a))["sbom.cdx.json"] == dict(read_members(b))["sbom.cdx.json"]
    doc = _sbom(a)
    assert doc["serialNumber"].startswith("urn:uuid:")
    assert doc["metadata"]["timestamp"] == "1970-01-01T00:00:00+00:00"


def test_provenance_describes_the_build(signed_bundle):
    members = dict(read_members(signed_bundle))
    statement = json.loads(members["provenance.intoto.json"])
    build = statement["predicate"]["buildDefinition"]
    assert build["buildType"] == "https://oemkit.dev/build-types/bundle/v1"
    spec_digest = hashlib.sha256((EXAMPLE / "bundle.yaml").read_bytes()).hexdigest()
    assert build["externalParameters"]["spec"] == {"path": "bundle.yaml",
                                                   "digest": {"sha256": spec_digest}}
    assert build["externalParameters"]["options"] == {"source_date_epoch": 0, "zstd_level": 3}
    manifest = json.loads(members["oemkit-bundle.json"])
    deps = {d["name"]: d for d in build["resolvedDependencies"]}
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        n: d["digest"]["sha256"] for n, d in deps.items()}
    assert deps["model/model.onnx"]["annotations"] == {"oemkit.role": "model"}
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["version"]["oemkit"] == __import__("oemkit").__version__


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_dsse_signature_checks_with_cryptography_over_pae(signed_bundle, algorithm):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from oemkit.crypto.keys import PrivateKeyInfo, algorithm_of, generate, key_id
    from oemkit.release.sign import sign_bundle

    private = generate(algorithm)
    key = PrivateKeyInfo(private, private.public_key(), algorithm_of(private.public_key()),
                         key_id(private.public_key()), "t")
    sign_bundle(signed_bundle, [key])
    doc = json.loads(dict(read_members(signed_bundle))[f"signatures/{key.keyid}.sigstore.json"])
    env = doc["dsseEnvelope"]
    payload = base64.b64decode(env["payload"])
    ptype = env["payloadType"].encode()
    pae = b"DSSEv1 %d %b %d %b" % (len(ptype), ptype, len(payload), payload)
    sig = base64.b64decode(env["signatures"][0]["sig"])
    if algorithm == "ed25519":
        key.public.verify(sig, pae)
    else:
        key.public.verify(sig, pae, ec.ECDSA(hashes.SHA256()))


# --------------------------------------------------------------------------- tampering


def _sbom_edit(signed_bundle, tmp_path, keys, edit):
    members = read_members(signed_bundle)
    doc = json.loads(dict(members)["sbom.cdx.json"])
    edit(doc)
    sbom = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    return write_members(tmp_path / "t.oemb", reseal(members, [keys["bundle"]], sbom=sbom))


def _changed_hash(doc):
    comp = next(c for c in doc["components"] if c["name"] == "golden/inputs.json")
    comp["hashes"][0]["content"] = "0" * 64


def _removed(doc):
    doc["components"] = [c for c in doc["components"] if c["name"] != "runtime/main.py"]


def _added(doc):
    doc["components"].append({"bom-ref": "file:backdoor.sh", "name": "backdoor.sh",
                              "type": "file", "hashes": [{"alg": "SHA-256",
                                                          "content": "1" * 64}]})


def _not_cyclonedx(doc):
    doc["components"][0]["colour"] = "red"


@pytest.mark.parametrize("edit, code, words", [
    (_changed_hash, "E_SBOM_MISMATCH", "lists payload file golden/inputs.json with another"),
    (_removed, "E_SBOM_MISMATCH", "does not list payload file runtime/main.py"),
    (_added, "E_SBOM_MISMATCH", "claims file backdoor.sh that is not in the payload"),
    (_not_cyclonedx, "E_SBOM_SCHEMA", "not valid CycloneDX 1.6"),
])
def test_resealed_sbom_that_lies_is_rejected(signed_bundle, tmp_path, keys, trust_v2, edit,
                                             code, words):
    report = verify_bundle(_sbom_edit(signed_bundle, tmp_path, keys, edit), trust_v2)
    assert report.error is not None and report.error.code == code
    assert words in report.error.message and report.error.member == "sbom.cdx.json"


def test_sbom_swapped_for_another_bundles_is_rejected(signed_bundle, wheel_spec, tmp_path,
                                                      trust_v2):
    other = build_bundle(wheel_spec, tmp_path / "o").path
    members = read_members(signed_bundle)
    swapped = [(n, dict(read_members(other))["sbom.cdx.json"] if n == "sbom.cdx.json" else d)
               for n, d in members]
    report = verify_bundle(write_members(tmp_path / "s.oemb", swapped), trust_v2)
    assert report.error.code == "E_MEMBER_DIGEST"
    assert report.error.member == "sbom.cdx.json"


def test_provenance_payload_subject_changed_is_rejected(signed_bundle, tmp_path, keys,
                                                        trust_v2):
    members = reseal(read_members(signed_bundle), [keys["bundle"]],
                     subjects={"payload.tar.zst": "2" * 64})
    report = verify_bundle(write_members(tmp_path / "p.oemb", members), trust_v2)
    assert report.error.code == "E_PROVENANCE_SUBJECT"
    assert "disagree on the payload digest" in report.error.message


# --------------------------------------------------------------------------- model card


def test_model_card_of_old_ir_excludes_initializers_from_inputs(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3, 2), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "old",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", 2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9),
                                                    helper.make_opsetid("com.x", 1)])
    model.ir_version = 3
    onnx.save(model, tmp_path / "m.onnx")
    card = read_model_card(tmp_path / "m.onnx")
    assert [i.describe() for i in card.inputs] == ["x: float32[?,3]"]
    assert [o.describe() for o in card.outputs] == ["y: float64[n,2]"]
    assert card.opsets == {"ai.onnx": 9, "com.x": 1} and card.parameter_count == 6


def test_model_card_reads_a_large_model_without_loading_its_weights(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    big = numpy_helper.from_array(np.zeros((2048, 2048), dtype=np.float32), "big")  # 16 MiB
    graph = helper.make_graph([helper.make_node("Add", ["x", "big"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2048])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2048])],
                              [big])
    onnx.save(helper.make_model(graph), tmp_path / "big.onnx")
    import tracemalloc

    tracemalloc.start()
    card = read_model_card(tmp_path / "big.onnx")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert card.parameter_count == 2048 * 2048
    assert peak < 1 << 20  # the 16 MiB of weights were seeked over, not read


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x08" * 3,
                                     b"\x0a\xff\xff\xff\x0f" + b"x" * 8])
def test_non_onnx_model_is_refused_at_build(tmp_path, content):
    spec = tmp_path / "spec"
    shutil.copytree(EXAMPLE, spec)
    (spec / "model" / "model.onnx").write_bytes(content)
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "out")
    assert err.value.code == "E_MODEL_INVALID" and "model.onnx" in err.value.message
    assert not (tmp_path / "out" / "example-0.2.0.oemb").exists()


def test_bad_wheel_and_duplicate_wheels_are_named(wheel_spec, tmp_path):
    (wheel_spec / "wheels" / "broken-1.0-py3-none-any.whl").write_bytes(b"PK nope")
    with pytest.raises(InputError) as err:
        build_bundle(wheel_spec, tmp_path)
    assert err.value.code == "E_WHEEL_INVALID" and "broken-1.0" in err.value.message
    (wheel_spec / "wheels" / "broken-1.0-py3-none-any.whl").unlink()
    _wheel(wheel_spec / "wheels" / "alpha-2.0-py3-none-any.whl", "alpha", "2.0", [])
    with pytest.raises(InputError) as err:
        build_bundle(wheel_spec, tmp_path)
    assert err.value.code == "E_WHEEL_DUPLICATE"


def test_bad_requirement_is_named(tmp_path):
    spec = tmp_path / "spec"
    shutil.copytree(EXAMPLE, spec)
    text = (spec / "bundle.yaml").read_text().replace('"numpy>=1.24"', '"!!numpy"')
    (spec / "bundle.yaml").write_text(text)
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "o")
    assert err.value.code == "E_SPEC_REQUIREMENT" and "'!!numpy'" in err.value.message


@pytest.mark.parametrize("text", [
    "not a requirement!", "numpy>=", "numpy >=1.0 <2", "numpy @ https://example.com/n.whl",
    "numpy==1.0 garbage", "numpy=1.0", "numpy>=1,", "numpy;", "-r other.txt", "numpy.",
])
def test_garbage_requirement_is_refused(tmp_path, text):
    spec = tmp_path / "spec"
    shutil.copytree(EXAMPLE, spec)
    body = (spec / "bundle.yaml").read_text().replace('"numpy>=1.24"', json.dumps(text))
    (spec / "bundle.yaml").write_text(body)
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "o")
    assert err.value.code == "E_SPEC_REQUIREMENT"
    assert err.value.message == f"requirements[1]: {text!r} is not a requirement"
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize(("text", "parsed"), [
    ("numpy", ("numpy", "", None)),
    ("NumPy_Extra.x == 1.26.4", ("numpy-extra-x", "==1.26.4", "1.26.4")),
    ("onnxruntime[gpu] >= 1.17 , < 2 ; python_version >= '3.10'",
     ("onnxruntime", ">=1.17,<2", None)),
    ("torch===2.1.0+cpu", ("torch", "===2.1.0+cpu", None)),
    ("pkg~=1.4.*,!=1.4.2", ("pkg", "~=1.4.*,!=1.4.2", None)),
])
def test_well_formed_requirements_parse(text, parsed):
    from oemkit.release.packages import parse_requirement

    assert parse_requirement(text, "requirements[0]") == parsed


def test_requires_dist_from_wheels_stays_tolerant(tmp_path):
    from oemkit.release.packages import read_wheel

    wheel = tmp_path / "alpha-1.0-py3-none-any.whl"
    _wheel(wheel, "alpha", "1.0", ["delta (>=1.0)", "epsilon @ https://example.com/e.whl"])
    assert read_wheel(wheel, "wheels/alpha.whl", "0" * 64).requires == ("delta", "epsilon")


def _rewrite_in_place(bundle, member: str, make) -> None:
    """Overwrite ``member``'s bytes in the file itself (same inode), keeping its size."""
    import tarfile

    with tarfile.open(bundle, "r:") as tar:
        info = tar.getmember(member)
    new = make(info.size)
    assert len(new) == info.size
    with open(bundle, "r+b") as handle:
        handle.seek(info.offset_data)
        handle.write(new)


def _same_size_json(size: int) -> bytes:
    return b'{"x":"' + b"a" * (size - 8) + b'"}'


@pytest.fixture
def changed_after_verification(monkeypatch):
    """Make the bundle change on disk right after verification passed on its handle."""
    import oemkit.verify.bundle as vb

    def arm(bundle, member: str):
        real = vb.verify_open_bundle

        def verify_then_change(*args, **kwargs):
            report = real(*args, **kwargs)
            assert report.ok
            _rewrite_in_place(bundle, member, _same_size_json)
            return report

        monkeypatch.setattr(vb, "verify_open_bundle", verify_then_change)
    return arm


@pytest.mark.parametrize("member", ["sbom.cdx.json", "provenance.intoto.json"])
def test_verified_read_returns_only_the_verified_bytes(signed_bundle, trust_file, member,
                                                       changed_after_verification):
    from oemkit.errors import VerificationError
    from oemkit.report.sbom import read_member_json

    assert read_member_json(signed_bundle, member, trust_file).verified is True
    changed_after_verification(signed_bundle, member)
    with pytest.raises(VerificationError) as err:
        read_member_json(signed_bundle, member, trust_file)
    assert err.value.code == "E_MEMBER_DIGEST" and err.value.member == member
    assert "no longer matches what was verified" in err.value.message
    assert "changed while it was being read" in err.value.message


def test_sbom_cli_refuses_a_bundle_changed_after_verification(signed_bundle, trust_file,
                                                             changed_after_verification):
    from typer.testing import CliRunner

    from oemkit.cli import app

    changed_after_verification(signed_bundle, "sbom.cdx.json")
    result = CliRunner().invoke(app, ["sbom", str(signed_bundle), "--trust", str(trust_file),
                                      "--format", "json"])
    assert "Traceback" not in result.output
    assert result.exit_code == 1, result.output
    assert "E_MEMBER_DIGEST" in result.stderr and "no longer matches" in result.stderr
    assert '"x"' not in result.stdout


def test_wheels_must_match_pinned_versions_and_hashes(wheel_spec, tmp_path):
    alpha = wheel_spec / "wheels" / "alpha-1.0-py3-none-any.whl"
    digest = hashlib.sha256(alpha.read_bytes()).hexdigest()
    text = (wheel_spec / "bundle.yaml").read_text()

    def build_with(requirement: str):
        (wheel_spec / "bundle.yaml").write_text(text.replace(
            '"numpy>=1.24"', f'"numpy>=1.24", "{requirement}"'))
        return build_bundle(wheel_spec, tmp_path / "o")

    doc = _sbom(build_with(f"alpha==1.0 --hash=sha256:{digest}").path)
    assert "alpha" in {c["name"] for c in doc["components"]}
    with pytest.raises(InputError) as err:
        build_with(f"alpha==1.0 --hash=sha256:{'0' * 64}")
    assert err.value.code == "E_WHEEL_HASH" and "alpha-1.0-py3-none-any.whl" in (
        err.value.message)
    with pytest.raises(InputError) as err:
        build_with("alpha==2.0")
    assert err.value.code == "E_WHEEL_VERSION" and "pins alpha==2.0" in err.value.message
