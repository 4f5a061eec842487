"""Offline dependencies (issue 21 item 2): a slot's venv that lacks onnxruntime says so and
names the two fixes; ``build`` warns about (``--strict``: refuses) requirements the
wheelhouse does not carry; ``wheelhouse fetch`` takes its platform tags from the target
profile and tells "no matching distribution" from "no network". No network is used: pip's
output is faked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import EXAMPLE, REPO
from oemkit.cli import app
from oemkit.errors import EnvironmentProblem, InputError

# install's readiness check serves the release on a loopback port where it gets that far.
pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]
runner = CliRunner()
PROFILE = """\
name: test
accelerator: none
providers: [{name: CPUExecutionProvider}]
budgets: {cold_start_ms: 60000, p95_ms: 1000}
steady_state: {iterations: 5, warmup: 1}
"""
REAL_POPEN = subprocess.Popen
#: bundles/example-v1's requirements, normalised and sorted.
EXAMPLE_PROJECTS = ("httptools", "numpy", "onnxruntime", "orjson", "prometheus-client",
                    "starlette", "uvicorn", "uvloop")


def _cli(typer_app, *args):
    result = runner.invoke(typer_app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _wheel(path: Path, name: str, version: str = "1.0", requires: tuple[str, ...] = ()) -> None:
    """A minimal pure-Python wheel of project ``name`` (its METADATA names it, with
    ``requires`` as its Requires-Dist lines)."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{module}/__init__.py": "VALUE = 42\n",
             f"{dist}/METADATA": meta,
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    record = "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for n, text in files.items():
            zf.writestr(n, text)
        zf.writestr(f"{dist}/RECORD", record)


def _spec(tmp_path: Path, wheels: tuple[str, ...] | None) -> Path:
    """bundles/example-v1 with a wheelhouse holding ``wheels`` (None: no wheelhouse)."""
    spec = tmp_path / "spec"
    shutil.copytree(REPO / "bundles" / "example-v1", spec)
    if wheels is not None:
        (spec / "wheels").mkdir()
        for name in wheels:  # a version every specifier of the example accepts
            _wheel(spec / "wheels" / f"{name.replace('-', '_')}-99.0-py3-none-any.whl", name,
                   "99.0")
        (spec / "bundle.yaml").write_text((spec / "bundle.yaml").read_text()
                                          + "wheelhouse: wheels\n")
    return spec


# --------------------------------------------------------------------------- build


def test_build_warns_about_requirements_the_wheelhouse_lacks(tmp_path):
    from oemkit.release.bundle import build_bundle

    spec = _spec(tmp_path, ("oemkit-probe", "NumPy", "orjson"))
    result = build_bundle(spec, tmp_path / "dist")
    assert result.path.is_file()
    [warning] = result.warnings
    missing = tuple(p for p in EXAMPLE_PROJECTS if p not in ("numpy", "orjson"))
    assert warning.code == "E_WHEELHOUSE_INCOMPLETE" and warning.projects == missing
    assert warning.message == (
        "bundle.yaml: requirements name 6 project(s) the wheelhouse (wheels/) does not "
        "carry: httptools, onnxruntime, prometheus-client, starlette, uvicorn, uvloop; a "
        "slot's venv is built from the wheelhouse alone, so the installed release cannot "
        "import them")
    assert warning.hint == (f"fill the wheelhouse with 'oemkit wheelhouse fetch "
                            f"{spec / 'bundle.yaml'} --dest {spec / 'wheels'}' and rebuild, "
                            "or install with "
                            "--system-site-packages on hosts whose Python has them")


def test_build_cli_prints_the_warning_and_lists_it_in_json(tmp_path):
    spec = _spec(tmp_path, ("oemkit-probe",))
    result = _cli(app, "build", spec, "--out", tmp_path / "dist", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    [warning] = doc["warnings"]
    assert warning["code"] == "E_WHEELHOUSE_INCOMPLETE"
    assert warning["projects"] == list(EXAMPLE_PROJECTS)
    assert "WARNING E_WHEELHOUSE_INCOMPLETE" in result.stderr
    assert "oemkit wheelhouse fetch" in result.stderr and "hint: fill the wheelhouse" \
        in result.stderr


def test_build_strict_refuses_an_incomplete_wheelhouse(tmp_path):
    from oemkit.release.bundle import build_bundle

    spec = _spec(tmp_path, ("numpy",))
    with pytest.raises(InputError) as caught:
        build_bundle(spec, tmp_path / "dist", strict=True)
    assert caught.value.code == "E_WHEELHOUSE_INCOMPLETE" and caught.value.exit_code == 3
    assert caught.value.message.startswith(
        "bundle.yaml: requirements name 7 project(s) the wheelhouse (wheels/) does not "
        "carry: httptools, onnxruntime, orjson, prometheus-client, starlette, uvicorn, "
        "uvloop;")
    assert not (tmp_path / "dist" / "example-0.1.0.oemb").exists()
    result = _cli(app, "build", spec, "--out", tmp_path / "dist", "--strict", "--json")
    assert result.exit_code == 3
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_WHEELHOUSE_INCOMPLETE"
    assert error["message"] == caught.value.message


def test_build_with_a_complete_wheelhouse_has_no_warning(tmp_path):
    from oemkit.release.bundle import build_bundle

    spec = _spec(tmp_path, EXAMPLE_PROJECTS)
    assert build_bundle(spec, tmp_path / "dist", strict=True).warnings == ()


def test_build_without_a_wheelhouse_warns_not_but_strict_refuses(tmp_path):
    from oemkit.release.bundle import build_bundle

    spec = _spec(tmp_path, None)
    assert build_bundle(spec, tmp_path / "dist").warnings == ()  # runs on the host's Python
    with pytest.raises(InputError) as caught:
        build_bundle(spec, tmp_path / "dist2", strict=True)
    assert caught.value.code == "E_WHEELHOUSE_INCOMPLETE"
    assert caught.value.message == (
        "bundle.yaml: requirements name 8 project(s) and the spec has no wheelhouse to "
        "carry them: " + ", ".join(EXAMPLE_PROJECTS))
    assert caught.value.hint.startswith("add 'wheelhouse: wheels' to the spec")


def test_build_follows_what_the_carried_wheels_require_on_the_target(tmp_path):
    """Markers are judged for the Linux host the wheels' tags name (cp311, x86_64), extras
    are followed, versions are checked; a marker false there asks for nothing."""
    from oemkit.release.bundle import build_bundle

    spec = _spec(tmp_path, tuple(p for p in EXAMPLE_PROJECTS if p != "uvicorn"))
    wheels = spec / "wheels"
    _wheel(wheels / "uvicorn-99.0-py3-none-any.whl", "uvicorn", "99.0", (
        "click>=7.0", "h11>=0.8", "typing-extensions; python_version < '3.11'",
        "colorama; sys_platform == 'win32'", "watchfiles; extra == 'standard'",
        "pytest; extra == 'test'"))
    _wheel(wheels / "click-8.0-py3-none-any.whl", "click", "8.0")
    _wheel(wheels / "h11-0.7-py3-none-any.whl", "h11", "0.7")
    _wheel(wheels / "extra_tagged-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", "extra-tagged")
    bundle_yaml = spec / "bundle.yaml"
    bundle_yaml.write_text(bundle_yaml.read_text().replace(
        '"uvicorn>=0.30"', '"uvicorn[standard]>=0.30", "pywin32; sys_platform == \'win32\'"'))
    [warning] = build_bundle(spec, tmp_path / "dist").warnings
    assert warning.projects == ("h11", "watchfiles")
    assert warning.message == (
        "bundle.yaml: requirements name 1 project(s) the wheelhouse (wheels/) does not "
        "carry: watchfiles (needed by uvicorn); the wheelhouse (wheels/) carries versions "
        "the requirements exclude: h11 0.7 (uvicorn wants >=0.8); a slot's venv is built "
        "from the wheelhouse alone, so the installed release cannot import them")
    # the missing ones carried: nothing more is asked (typing-extensions: python 3.11 here)
    (wheels / "h11-0.7-py3-none-any.whl").unlink()
    _wheel(wheels / "h11-0.14-py3-none-any.whl", "h11", "0.14")
    _wheel(wheels / "watchfiles-1.0-py3-none-any.whl", "watchfiles", "1.0")
    assert build_bundle(spec, tmp_path / "dist2", strict=True).warnings == ()


def test_target_environment_comes_from_the_wheel_tags():
    from oemkit.models.wheelhouse import target_environment

    host = {"python_version": "3.12", "platform_machine": "arm64", "sys_platform": "darwin"}
    env = target_environment(["w/a-1-cp311-cp311-manylinux_2_28_x86_64.whl",
                              "w/b-1-cp311-abi3-manylinux2014_x86_64.whl",
                              "w/c-1-py3-none-any.whl"], host)
    assert (env["python_version"], env["platform_machine"], env["sys_platform"],
            env["platform_system"]) == ("3.11", "x86_64", "linux", "Linux")
    pure = target_environment(["w/c-1-py3-none-any.whl"], host)
    assert (pure["python_version"], pure["platform_machine"]) == ("3.12", "arm64")


def test_missing_projects_is_by_normalised_name():
    from oemkit.models.wheelhouse import missing_projects, wheel_project

    assert missing_projects(["Prometheus_Client", "numpy", "numpy"],
                            ["prometheus-client"]) == ("numpy",)
    assert missing_projects([], ["x"]) == ()
    assert wheel_project("wheels/onnxruntime-1.20.1-cp311-cp311-manylinux_2_27_x86_64."
                         "manylinux_2_28_x86_64.whl") == "onnxruntime"
    assert wheel_project("Prometheus_Client-0.20.0-1-py3-none-any.whl") == "prometheus-client"
    assert wheel_project("notes.txt") is None and wheel_project("bad-1.0.whl") is None


# --------------------------------------------------------------------------- install


def test_a_slot_venv_without_onnxruntime_says_so_and_names_the_fixes(tmp_path, keys,
                                                                       trust_file):
    from oemkit.host.install import install
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle

    bundle = build_bundle(_spec(tmp_path, ("oemkit-probe",)), tmp_path / "dist").path
    sign_bundle(bundle, [keys["bundle"]])
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    import onnxruntime  # noqa: F401  (installed on this host: the old hint blamed the host)

    report = install(bundle, tmp_path / "p", trust_file, profile=str(profile))
    assert not report.ok and not (tmp_path / "p" / "current").exists()
    [smoke] = [c for c in report.checks if c.name == "smoke"]
    assert smoke.code == "E_NO_ONNXRUNTIME"
    assert re.search(r"the slot's venv \(\S+/slots/example-0\.1\.0-\S+/venv\)",
                     smoke.detail), smoke.detail
    assert ("built from the bundle's wheelhouse, has no "
            "numpy and onnxruntime (No module named 'numpy'); the wheelhouse carries 1 "
            "project(s): oemkit-probe, and the venv does not see this host's packages, "
            "so onnxruntime installed on the host does not help: ship the wheels in the "
            "bundle or install with --system-site-packages") in smoke.detail
    result = _cli(app, "install", bundle, "--prefix", tmp_path / "q", "--trust", trust_file,
                  "--profile", profile, "--service", "none", "--json")
    assert result.exit_code == 4
    rows = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert rows["smoke"]["code"] == "E_NO_ONNXRUNTIME"
    assert "--system-site-packages" in rows["smoke"]["detail"]
    assert "built from the bundle's wheelhouse" in rows["smoke"]["detail"]


def _child():
    sys.path.insert(0, str(REPO / "src" / "oemkit" / "measure"))
    try:
        import _smoke_child
    finally:
        sys.path.pop(0)
    return _smoke_child


def test_the_import_failure_message_depends_on_the_situation(tmp_path):
    child = _child()
    exc = ImportError("No module named 'numpy'", name="numpy")
    # a bare host: oemkit's own Python (no slot)
    message, hint = child.import_failure(exc, sys.prefix, sys.base_prefix, "/usr/bin/python3")
    assert message == ("cannot import onnxruntime/numpy with /usr/bin/python3: No module "
                       "named 'numpy'")
    assert hint == "install onnxruntime and numpy for /usr/bin/python3"
    # a slot's venv built from a wheelhouse holding two wheels
    slot = tmp_path / "slots" / "example-0.1.0-abc"
    site = slot / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (slot / "bundle" / "wheels").mkdir(parents=True)
    for name in ("onnxruntime-1.20.1-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "oemkit_probe-1.0-py3-none-any.whl"):
        (slot / "bundle" / "wheels" / name).write_bytes(b"")
    venv = str(slot / "venv")
    message, hint = child.import_failure(exc, venv, "/usr", venv + "/bin/python")
    assert message == (
        f"cannot import onnxruntime/numpy: the slot's venv ({venv}), built from the bundle's "
        "wheelhouse, has no numpy (No module named 'numpy'); the wheelhouse carries 2 "
        "project(s): oemkit-probe, onnxruntime, and the venv does not see this host's "
        "packages, so onnxruntime installed on the host does not help: ship the wheels in "
        "the bundle or install with --system-site-packages")
    assert hint == child.SLOT_FIXES and "oemkit wheelhouse fetch" in hint
    # the same with --system-site-packages: the host's Python lacks it too
    (site / child.HOST_PTH).write_text("/opt/py/site-packages\n")
    message, hint = child.import_failure(exc, venv, "/usr", venv + "/bin/python")
    assert message == (
        f"cannot import onnxruntime/numpy: neither the slot's venv ({venv}), built from the "
        "bundle's wheelhouse, nor this host's packages it sees through "
        "--system-site-packages (/opt/py/site-packages) have numpy (No module named "
        "'numpy')")
    assert hint.startswith("install onnxruntime and numpy for the Python that runs oemkit")


def test_the_child_reports_the_slot_situation_in_its_result(tmp_path):
    """The model process itself, run by a slot's venv without numpy (no pip: fast)."""
    slot = tmp_path / "slot"
    (slot / "bundle").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(slot / "venv")],
                   check=True)
    request = tmp_path / "request.json"
    out = tmp_path / "result.json"
    request.write_text(json.dumps({"out": str(out), "t0": 0.0}))
    subprocess.run([str(slot / "venv" / "bin" / "python"),
                    str(REPO / "src" / "oemkit" / "measure" / "_smoke_child.py"),
                    str(request)], check=True)
    error = json.loads(out.read_text())["error"]
    assert error["code"] == "E_NO_ONNXRUNTIME"
    assert "the slot's venv" in error["message"] and "wheelhouse carries 0 project(s)" \
        in error["message"]
    assert error["hint"] == _child().SLOT_FIXES


# --------------------------------------------------------------------------- wheelhouse


def test_platform_tags_are_those_current_onnxruntime_wheels_carry():
    from oemkit.models.wheelhouse import platform_tags, target_arch

    assert platform_tags("x86_64") == ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                                       "manylinux2014_x86_64")
    assert platform_tags("arm64") == ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64",
                                      "manylinux2014_aarch64")
    assert target_arch(("aarch64",), "x86_64") == "aarch64"
    assert target_arch((), "AMD64") == "x86_64"
    assert target_arch((), "arm64") == "aarch64"
    assert target_arch((), "riscv64") == "x86_64"


def test_default_platforms_follow_the_target_profile(tmp_path):
    from oemkit.host.wheelhouse import default_platforms

    req = tmp_path / "requirements.txt"
    req.write_text("numpy==2.0.0\n")
    # the spec's first profile (cpu-small names no cpu.arch: this machine's)
    chosen = default_platforms(EXAMPLE, machine="aarch64")
    assert (chosen.profile, chosen.arch) == ("cpu-small", "aarch64")
    assert chosen.tags[0] == "manylinux_2_28_aarch64"
    assert chosen.source == "profile cpu-small, which names no cpu.arch: this machine's " \
                            "(aarch64)"
    # a profile that names its architecture wins over this machine's
    chosen = default_platforms(req, "npu-openvino", machine="aarch64")
    assert (chosen.profile, chosen.arch, chosen.source) == (
        "npu-openvino", "x86_64", "profile npu-openvino (x86_64)")
    arm = tmp_path / "arm.yaml"
    arm.write_text(PROFILE.replace("name: test", "name: arm") + "cpu: {arch: [arm64]}\n")
    assert default_platforms(req, str(arm), machine="x86_64").tags == (
        "manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64")
    # a requirements file and no profile: this machine's
    chosen = default_platforms(req, machine="x86_64")
    assert chosen.profile is None and chosen.arch == "x86_64"
    with pytest.raises(InputError) as caught:
        default_platforms(req, "cpu-smal")
    assert caught.value.code == "E_PROFILE_NOT_FOUND"


def test_fetch_uses_the_profile_tags_unless_platform_is_given(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("numpy==2.0.0\n")
    result = _cli(app, "wheelhouse", "fetch", req, "--dest", tmp_path / "w", "--profile",
                  "npu-openvino", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["platforms"] == ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                                "manylinux2014_x86_64"]
    assert doc["profile"] == "npu-openvino" and doc["arch"] == "x86_64"
    cmd = doc["command"]
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"] == doc["platforms"]
    assert cmd[-2:] == ["-r", str(req)]
    assert "platform tags from profile npu-openvino (x86_64)" in result.stderr
    given = _cli(app, "wheelhouse", "fetch", req, "--dest", tmp_path / "w", "--platform",
                 "manylinux_2_28_aarch64", "--dry-run", "--json")
    doc = json.loads(given.stdout)
    assert doc["platforms"] == ["manylinux_2_28_aarch64"] and doc["profile"] is None
    assert doc["command"].count("--platform") == 1


def test_fetch_help_example_uses_tags_onnxruntime_ships():
    result = _cli(app, "wheelhouse", "fetch", "--help")
    assert result.exit_code == 0
    assert "manylinux2014_x86_64" not in result.output
    assert "--profile" in result.output


def _pip_saying(monkeypatch, text: str, status: int) -> None:
    """Make run_pip's subprocess a process that prints ``text`` and exits ``status``."""
    import oemkit.host.wheelhouse as wheelhouse

    def fake(cmd, **kwargs):
        script = f"import sys; sys.stdout.write({text!r}); sys.exit({status})"
        return REAL_POPEN([sys.executable, "-c", script], **kwargs)

    monkeypatch.setattr(wheelhouse.subprocess, "Popen", fake)


NO_NETWORK = """\
Looking in indexes: https://pypi.org/simple
WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) \
after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.\
HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary \
failure in name resolution')': /simple/numpy/
ERROR: Could not find a version that satisfies the requirement numpy==2.0.0 (from versions: \
none)
ERROR: No matching distribution found for numpy==2.0.0
"""
NO_MATCH = """\
Collecting onnxruntime>=1.17
ERROR: Could not find a version that satisfies the requirement onnxruntime>=1.17 (from \
versions: none)
ERROR: No matching distribution found for onnxruntime>=1.17
"""
HASHES = """\
ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.
    numpy==2.0.0 from https://files/numpy.whl:
        Expected sha256 00
             Got        11
"""
CMD = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", "w",
       "--platform", "manylinux_2_28_x86_64", "onnxruntime>=1.17", "--python-version", "3.11"]


def test_pip_without_network_is_e_wheelhouse_offline(monkeypatch, capsys):
    from oemkit.host.wheelhouse import run_pip

    _pip_saying(monkeypatch, NO_NETWORK, 1)
    with pytest.raises(EnvironmentProblem) as caught:
        run_pip(CMD)
    assert caught.value.code == "E_WHEELHOUSE_OFFLINE" and caught.value.exit_code == 4
    assert caught.value.message == ("pip download could not reach the package index "
                                    "(https://pypi.org/simple): [Errno -3] Temporary failure "
                                    "in name resolution")
    assert caught.value.hint.startswith("this step needs the package index: run it on a "
                                        "connected machine")
    assert "Temporary failure in name resolution" in capsys.readouterr().err  # echoed


def test_pip_without_a_matching_wheel_is_e_wheelhouse_no_match(monkeypatch):
    from oemkit.host.wheelhouse import run_pip

    _pip_saying(monkeypatch, NO_MATCH, 1)
    with pytest.raises(EnvironmentProblem) as caught:
        run_pip(CMD)
    assert caught.value.code == "E_WHEELHOUSE_NO_MATCH" and caught.value.exit_code == 4
    assert caught.value.message == ("the package index has no wheel of onnxruntime>=1.17 "
                                    "for platforms manylinux_2_28_x86_64 and Python 3.11")
    assert "--profile" in caught.value.hint and "network" not in caught.value.hint


def test_other_pip_failures_stay_e_pip(monkeypatch):
    from oemkit.host.wheelhouse import run_pip

    _pip_saying(monkeypatch, HASHES, 1)
    with pytest.raises(EnvironmentProblem) as caught:
        run_pip(CMD)
    assert caught.value.code == "E_PIP"
    assert caught.value.message == ("pip download failed (exit status 1): ERROR: THESE "
                                    "PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS "
                                    "FILE.")
    _pip_saying(monkeypatch, "Saved w/numpy.whl\n", 0)
    run_pip(CMD)


def test_fetch_json_is_one_document_after_pip_ran(monkeypatch, tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("onnxruntime>=1.17\n")
    _pip_saying(monkeypatch, NO_MATCH, 1)
    result = _cli(app, "wheelhouse", "fetch", req, "--dest", tmp_path / "w", "--json")
    assert result.exit_code == 4
    assert json.loads(result.stdout)["error"]["code"] == "E_WHEELHOUSE_NO_MATCH"
    _pip_saying(monkeypatch, "Saved w/onnxruntime.whl\n", 0)
    result = _cli(app, "wheelhouse", "fetch", req, "--dest", tmp_path / "w", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["dry_run"] is False
    assert "Saved w/onnxruntime.whl" in result.stderr


def test_classify_pip_output_is_pure():
    from oemkit.models.wheelhouse import classify_pip_output

    offline = classify_pip_output(NO_NETWORK.splitlines())
    assert offline.kind == "network" and offline.indexes == "https://pypi.org/simple"
    assert offline.reason == "[Errno -3] Temporary failure in name resolution"
    assert classify_pip_output(["WARNING: ProxyError('Cannot connect to proxy.')"]).reason \
        == "WARNING: ProxyError('Cannot connect to proxy.')"
    verdict = classify_pip_output(NO_MATCH.splitlines())
    assert verdict.kind == "no_match" and verdict.requirements == ("onnxruntime>=1.17",)
    assert classify_pip_output(HASHES.splitlines()).kind == "other"
    assert classify_pip_output([]).last == ""
