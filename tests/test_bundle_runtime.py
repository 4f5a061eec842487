"""The bundle declares and ships its runtime (issue 15, items 2 and 6): the spec's
``license:`` policy carried in the manifest's runtime section, the example's server
packages in its SBOM and in ``oemkit wheelhouse fetch``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import EXAMPLE, read_members
from oemkit.errors import FormatError, InputError
from oemkit.models.manifest import Manifest, Runtime
from oemkit.models.serving import LicensePolicy
from oemkit.release.bundle import build_bundle

EXAMPLE_POLICY = {"required": False, "features": [], "grace": "serve", "invalid": "refuse",
                  "check_interval_s": 600}


def _manifest(bundle: Path) -> dict:
    return json.loads(dict(read_members(bundle))["oemkit-bundle.json"])


def _spec(tmp_path: Path, license_text: str | None) -> Path:
    """A copy of the example with its license: section replaced (None: removed)."""
    spec = tmp_path / "spec"
    shutil.copytree(EXAMPLE, spec)
    text = (spec / "bundle.yaml").read_text(encoding="utf-8")
    head = text[:text.index("license:\n")]
    (spec / "bundle.yaml").write_text(head + (license_text or ""), encoding="utf-8")
    return spec


@pytest.fixture(scope="module")
def example_bundle(tmp_path_factory) -> Path:
    return build_bundle(EXAMPLE / "bundle.yaml", tmp_path_factory.mktemp("b")).path


# --------------------------------------------------------------------------- manifest


def test_the_example_manifest_carries_its_license_policy(example_bundle):
    runtime = _manifest(example_bundle)["runtime"]
    assert runtime["license"] == EXAMPLE_POLICY
    manifest = Manifest.from_dict(_manifest(example_bundle))
    assert manifest.runtime.license == EXAMPLE_POLICY
    # what oemkit serve reads
    from oemkit.serve.target import _policy

    assert _policy(manifest) == LicensePolicy(required=False, grace="serve", invalid="refuse")


def test_a_spec_without_the_section_writes_no_license_key(tmp_path):
    bundle = build_bundle(_spec(tmp_path, None), tmp_path / "out").path
    data = _manifest(bundle)
    assert "license" not in data["runtime"]
    assert sorted(data["runtime"]) == ["config", "entrypoint", "golden", "migrations", "model",
                                       "profiles"]
    manifest = Manifest.from_dict(data)
    assert manifest.runtime.license is None
    assert manifest.to_bytes() == dict(read_members(bundle))["oemkit-bundle.json"]


@pytest.mark.parametrize("policy", [None, EXAMPLE_POLICY, {
    "required": True, "features": ["serve"], "grace": "refuse", "invalid": "degrade",
    "degrade_features": ["batching"], "check_interval_s": 60,
    "limits": {"max_batch": "max_batch", "workers": "instances"}}])
def test_runtime_round_trip(example_bundle, policy):
    data = _manifest(example_bundle)
    if policy is None:
        del data["runtime"]["license"]
    else:
        data["runtime"]["license"] = policy
    manifest = Manifest.from_dict(data)
    assert manifest.runtime.license == policy
    again = Manifest.from_dict(json.loads(manifest.to_bytes()))
    assert again == manifest and again.to_bytes() == manifest.to_bytes()
    assert ("license" in manifest.runtime.to_dict()) is (policy is not None)
    assert Runtime(model="m").to_dict().keys() == {"model", "entrypoint", "profiles", "config",
                                                   "golden", "migrations"}


@pytest.mark.parametrize(("policy", "problem"), [
    ([], "must be an object, not a list"),
    (None, "must be an object, not null"),
    ({"grace": "maybe"}, "'grace' must be serve or refuse, not 'maybe'"),
    ({"requird": True}, "unknown field(s) requird (known: check_interval_s, degrade_features, "
                        "features, grace, invalid, limits, required)"),
    ({"degrade_features": ["batching"]}, "'degrade_features' needs invalid: degrade"),
    ({"check_interval_s": 0}, "'check_interval_s' must be an integer from 1 to 604800"),
    ({"limits": {"threads": "x"}}, "'limits' may cap max_batch, workers, not 'threads'"),
])
def test_the_manifest_parser_refuses_a_bad_policy(example_bundle, policy, problem):
    data = _manifest(example_bundle)
    data["runtime"]["license"] = policy
    with pytest.raises(FormatError) as caught:
        Manifest.from_dict(data)
    assert caught.value.code == "E_MANIFEST_INVALID"
    assert caught.value.message == f"manifest: runtime.license: {problem}"
    assert caught.value.field == "runtime.license"


def test_an_unknown_runtime_field_is_still_refused(example_bundle):
    data = _manifest(example_bundle)
    data["runtime"]["licence"] = {}
    with pytest.raises(FormatError) as caught:
        Manifest.from_dict(data)
    assert caught.value.message.startswith("manifest: runtime: unknown field 'licence'")


# --------------------------------------------------------------------------- spec


@pytest.mark.parametrize(("section", "message"), [
    ("license:\n  required: true\n  degrade_features: [batching]\n",
     "bundle.yaml line 42: license: 'degrade_features' needs invalid: degrade"),
    ("license:\n  grace: maybe\n",
     'bundle.yaml line 42: license.grace: "maybe" is not one of "serve" or "refuse"'),
    ("license:\n  requird: true\n",
     "bundle.yaml line 42: unknown field 'requird' in license (did you mean 'required'?)"),
    ("license: []\n", 'bundle.yaml line 41: license: [] is not of type "object"'),
    ("license:\n  limits: {threads: x}\n",
     "bundle.yaml line 42: unknown field 'threads' in license.limits"),
    ("license:\n  check_interval_s: 0\n",
     "bundle.yaml line 42: license.check_interval_s: 0 is less than the minimum of 1"),
])
def test_spec_errors_for_a_bad_license_section(tmp_path, section, message):
    spec = _spec(tmp_path, section)
    with pytest.raises(InputError) as caught:
        build_bundle(spec, tmp_path / "out")
    assert caught.value.code == "E_SPEC_INVALID" and caught.value.exit_code == 3
    assert caught.value.message == message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_policy_in_the_spec_reaches_the_manifest_with_its_defaults(tmp_path):
    spec = _spec(tmp_path, "license:\n  required: true\n  invalid: degrade\n"
                           "  degrade_features: [classification]\n"
                           "  limits: {max_batch: max_batch}\n")
    policy = _manifest(build_bundle(spec, tmp_path / "out").path)["runtime"]["license"]
    assert policy == {"required": True, "features": [], "grace": "serve",
                      "invalid": "degrade", "degrade_features": ["classification"],
                      "check_interval_s": 600, "limits": {"max_batch": "max_batch"}}


# --------------------------------------------------------------------------- packages

SERVER_PACKAGES = {"starlette", "uvicorn", "httptools", "uvloop", "prometheus-client", "orjson"}


def test_the_example_sbom_lists_the_server_packages(example_bundle):
    sbom = json.loads(dict(read_members(example_bundle))["sbom.cdx.json"])
    libs = {c["name"]: c for c in sbom["components"] if c["type"] == "library"}
    assert {"starlette", "uvicorn"} <= set(libs)
    assert set(libs) == {"onnxruntime", "numpy"} | SERVER_PACKAGES
    assert {"name": "oemkit:requirement", "value": ">=0.30"} in libs["uvicorn"]["properties"]


def test_wheelhouse_fetch_takes_the_spec_requirements(tmp_path):
    from oemkit.cli import app
    from oemkit.host.wheelhouse import pip_download_command, spec_requirements

    wanted = spec_requirements(EXAMPLE)
    assert {re.split(r"[<>=; ]", r)[0] for r in wanted} >= {"starlette", "uvicorn",
                                                              "onnxruntime"}
    for target in (EXAMPLE, EXAMPLE / "bundle.yaml"):
        cmd = pip_download_command(target, tmp_path / "w")
        assert cmd[-len(wanted):] == wanted and "-r" not in cmd
    result = CliRunner().invoke(app, ["wheelhouse", "fetch", str(EXAMPLE), "--dest",
                                      str(tmp_path / "w"), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["command"][-len(wanted):] == wanted
    # a requirements file is still passed with -r
    req = tmp_path / "requirements.txt"
    req.write_text("numpy==1.26.4\n")
    assert pip_download_command(req, tmp_path / "w")[-2:] == ["-r", str(req)]


def test_wheelhouse_fetch_of_a_spec_without_requirements(tmp_path):
    from oemkit.host.wheelhouse import spec_requirements

    spec = _spec(tmp_path, None)
    text = (spec / "bundle.yaml").read_text()
    text = re.sub(r"requirements: \[[^\]]*\]\n", "", text)
    (spec / "bundle.yaml").write_text(text)
    with pytest.raises(InputError) as caught:
        spec_requirements(spec)
    assert caught.value.code == "E_SPEC_INVALID"
    assert caught.value.message == "bundle.yaml lists no requirements"
