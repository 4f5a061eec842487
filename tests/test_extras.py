"""The declared dependencies (issue 14 step 6, issue 15 item 6): every runtime dependency is
imported by the package; the serving stack (onnxruntime, numpy, starlette, uvicorn,
prometheus-client) is in the core dependencies, so ``pip install -e . && oemkit demo``
serves; ``onnx``, the model-building package, is the ``onnx`` extra; where a module is
missing the commands that need it fail with E_MISSING_EXTRA (exit 4, the install line as
hint) while the rest still work.

The absence of the stack is simulated in-process: ``sys.modules[NAME] = None`` makes every
later ``import NAME`` raise ImportError, as on a host where it was never installed.
"""

from __future__ import annotations

import builtins
import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oemkit._extras import ONNX_HINT, ONNX_STACK, require_onnx
from oemkit.cli import app
from oemkit.errors import EnvironmentProblem

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "hostile" / "corpus"
runner = CliRunner()

#: Import name of each runtime dependency (distribution name -> top-level module).
IMPORT_NAME = {
    "typer": "typer", "rich": "rich", "cryptography": "cryptography",
    "securesystemslib": "securesystemslib", "cyclonedx-python-lib": "cyclonedx",
    "packageurl-python": "packageurl", "pyyaml": "yaml", "jsonschema-rs": "jsonschema_rs",
    "zstandard": "zstandard", "rfc8785": "rfc8785", "psutil": "psutil",
    "packaging": "packaging",
    "onnxruntime": "onnxruntime", "numpy": "numpy", "starlette": "starlette",
    "uvicorn": "uvicorn", "prometheus-client": "prometheus_client",
    "httptools": "httptools", "uvloop": "uvloop", "orjson": "orjson", "in-toto": "in_toto",
}
#: Declared, never imported by name: uvicorn's "auto" HTTP protocol and event loop pick them.
UVICORN_PICKS = {"httptools", "uvloop"}
SERVE_STACK = {"onnxruntime", "numpy", "starlette", "uvicorn", "prometheus-client",
               "httptools", "uvloop", "orjson"}


def _project() -> dict:
    # tomllib is in the standard library from Python 3.11; oemkit supports 3.10, where no
    # TOML reader is installed, so there (only) these pyproject checks cannot run.
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def _imported_tops(where: Path) -> set[str]:
    found = set()
    for path in where.rglob("*.py"):
        for match in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", path.read_text(
                encoding="utf-8"), re.MULTILINE):
            found.add(match.group(1))
    return found


@pytest.fixture
def no_onnx(monkeypatch):
    """This interpreter without the ONNX stack (the onnx extra, and onnxruntime and numpy as
    on a broken install or a --no-deps one)."""
    for name in list(sys.modules):
        if name.partition(".")[0] in ONNX_STACK:
            monkeypatch.setitem(sys.modules, name, None)
    for name in ONNX_STACK:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError):
        import numpy  # noqa: F401


def _assert_missing_extra(exc: EnvironmentProblem, *missing: str) -> None:
    assert exc.code == "E_MISSING_EXTRA" and exc.exit_code == 4
    assert exc.hint == ONNX_HINT and "pip install 'oemkit[onnx]'" in exc.hint
    assert f"not installed: {', '.join(missing)}" in exc.message


# --------------------------------------------------------------------------- declarations


def test_every_runtime_dependency_is_imported_by_the_package():
    declared = [_name(d) for d in _project()["dependencies"]]
    unknown = [d for d in declared if d not in IMPORT_NAME]
    assert not unknown, f"add the import name of {unknown} to IMPORT_NAME"
    imported = _imported_tops(ROOT / "src" / "oemkit")
    unused = [d for d in declared if IMPORT_NAME[d] not in imported and d not in UVICORN_PICKS]
    assert unused == [], f"declared but imported nowhere in src/oemkit: {unused}"
    assert "in-toto" in declared  # sign's links, layout init and verify --layout (issue 17)


def test_the_serving_stack_is_core_and_onnx_the_onnx_extra():
    project = _project()
    extras = project["optional-dependencies"]
    core = {_name(d) for d in project["dependencies"]}
    assert core >= SERVE_STACK  # pip install -e . && oemkit demo serves
    assert [_name(d) for d in extras["onnx"]] == ["onnx"] and "onnx" not in core
    assert extras["serve"] == []  # kept so that pip install 'oemkit[serve]' still works
    assert "oemkit[onnx]" in extras["test"]
    assert "oemkit[onnx]" in extras["lint"]  # mypy reads onnx's types
    uvloop = next(d for d in project["dependencies"] if _name(d) == "uvloop")
    assert "sys_platform != 'win32'" in uvloop  # uvloop has no Windows wheels


def test_the_example_requires_what_the_core_dependencies_declare():
    from oemkit.release.scaffold import REQUIREMENTS

    core = {_name(d) for d in _project()["dependencies"]}
    assert {_name(r) for r in REQUIREMENTS} == SERVE_STACK and core >= SERVE_STACK


def test_cli_start_imports_no_serving_stack():
    import subprocess

    code = ("import sys, oemkit.cli; heavy = {'onnxruntime', 'numpy', 'starlette', 'uvicorn', "
            "'prometheus_client', 'orjson', 'onnx'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_jsonschema_is_declared_where_the_tests_import_it():
    imported = _imported_tops(ROOT / "tests")
    test_extra = {_name(d) for d in _project()["optional-dependencies"]["test"]}
    assert "jsonschema" in imported and "jsonschema" in test_extra


# --------------------------------------------------------------------------- missing stack


def test_require_onnx_names_every_missing_module(no_onnx):
    with pytest.raises(EnvironmentProblem) as caught:
        require_onnx("oemkit init")
    _assert_missing_extra(caught.value, "onnx", "onnxruntime", "numpy")
    assert caught.value.code_info() is not None  # registered (docs/ERRORS.md)


def test_require_onnx_sees_a_failing_import_statement(monkeypatch):
    real = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.partition(".")[0] == "onnxruntime":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(EnvironmentProblem) as caught:
        require_onnx("oemkit sizing", ("onnxruntime", "numpy"))
    _assert_missing_extra(caught.value, "onnxruntime")
    require_onnx("oemkit sizing", ("numpy",))  # present: no error


def test_init_without_the_extra_is_exit_4_with_the_hint_and_writes_nothing(no_onnx, tmp_path):
    dest = tmp_path / "my-model"
    result = runner.invoke(app, ["init", "my-model", "--dir", str(dest), "--json"])
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_MISSING_EXTRA" and error["hint"] == ONNX_HINT
    assert "oemkit init" in error["message"]
    assert not dest.exists() and list(tmp_path.iterdir()) == []

    result = runner.invoke(app, ["init", "my-model", "--dir", str(dest)])
    assert result.exit_code == 4 and "E_MISSING_EXTRA" in result.stderr
    assert "pip install 'oemkit[onnx]'" in result.stderr


def test_init_model_needs_onnxruntime_and_numpy_but_not_onnx(no_onnx, tmp_path):
    model = ROOT / "bundles" / "example" / "model" / "model.onnx"
    result = runner.invoke(app, ["init", "m", "--model", str(model), "--dir",
                                 str(tmp_path / "m"), "--json"])
    assert result.exit_code == 4, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_MISSING_EXTRA" and "oemkit init --model" in error["message"]
    assert "not installed: onnxruntime, numpy" in error["message"]
    assert not (tmp_path / "m").exists()


def test_init_model_and_build_without_the_onnx_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # the onnx extra not installed
    model = ROOT / "bundles" / "example" / "model" / "model.onnx"
    result = runner.invoke(app, ["init", "m", "--model", str(model), "--dir",
                                 str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["build", str(tmp_path / "m"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output  # the golden check reads the graph itself
    assert sys.modules["onnx"] is None


def test_sizing_in_oemkits_interpreter_without_the_extra(no_onnx, signed_bundle, trust_file):
    from oemkit.measure.sizing import SizingRequest, run_sizing

    with pytest.raises(EnvironmentProblem) as caught:
        run_sizing(signed_bundle, "cpu-small", trust_file,
                   SizingRequest(batches=(1,), duration_s=0.5, force=True))
    _assert_missing_extra(caught.value, "onnxruntime", "numpy")


def test_smoke_in_oemkits_interpreter_names_the_extra(signed_bundle, trust_file, tmp_path,
                                                        monkeypatch):
    from oemkit.measure.smoke import run_smoke

    # A model process that cannot import onnxruntime, standing in for oemkit's own.
    wrapper = tmp_path / "python-without-site"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -S -I \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(wrapper))
    result = run_smoke(signed_bundle, "cpu-small", trust_file, python=str(wrapper))
    run = next(c for c in result.checks if c.name == "run")
    assert result.exit_code == 4 and run.code == "E_NO_ONNXRUNTIME"
    assert run.hint == f"install onnxruntime on this host: {ONNX_HINT}"


def test_npz_golden_outputs_without_numpy_are_an_environment_failure(no_onnx, tmp_path):
    from oemkit.measure.smoke import SmokeResult, _compare

    result = SmokeResult(bundle="b.oemb")
    _compare(result, "golden", {}, tmp_path / "expected.npz", 1e-5, 1e-4)
    (check,) = result.checks
    assert check.status == "fail" and check.code == "E_MISSING_EXTRA"
    assert check.hint == ONNX_HINT and result.environment_error and result.exit_code == 4


def test_profile_detect_reports_onnxruntime_absent(no_onnx):
    from oemkit.host.profiles import detect_host

    host = detect_host()
    assert host.onnxruntime is None and host.providers == ()
    result = runner.invoke(app, ["profile", "detect"])
    assert result.exit_code == 0 and "onnxruntime not installed" in result.output


# --------------------------------------------------------------------------- what needs none


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_release_verify_host_and_license_commands_need_no_onnx_stack(no_onnx, tmp_path,
                                                                       monkeypatch):
    """None of them imports the ONNX stack in oemkit's process (build hosts, verifiers and
    license-only runtimes load none of it); the demo's server is a child process."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "dist"

    def ok(*args: str) -> None:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, (args, result.output)
        assert "Traceback" not in result.output

    ok("demo", "--out", out)  # build, sign, verify, serve (the README's first command)
    bundle, trust = out / "example-0.2.0.oemb", out / "trust-root.json"
    ok("verify", bundle, "--trust", trust)
    ok("inspect", bundle)
    ok("sbom", bundle, "--trust", trust)
    ok("unpack", bundle, tmp_path / "unpacked", "--trust", trust)
    ok("install", bundle, "--prefix", tmp_path / "prefix", "--trust", trust, "--skip-smoke")
    ok("license", "verify", CORPUS / "control-license-valid.lic", "--trust",
       CORPUS / "trust-root.json", "--state", tmp_path / "state.json")
    assert all(sys.modules.get(m) is None for m in ONNX_STACK)
