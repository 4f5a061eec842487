"""Tests for the bundle scaffolder behind ``oemkit init`` and the committed example bundle."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from jsonschema import Draft202012Validator

from oemkit.errors import EnvironmentProblem, InputError
from oemkit.release import scaffold
from oemkit.release.scaffold import scaffold_bundle

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "bundles" / "example"
ATOL, RTOL = 1e-5, 1e-4

FILES = [
    "README.md",
    "bundle.yaml",
    "config/config.json",
    "config/config.schema.json",
    "golden/expected.json",
    "golden/inputs.json",
    "model/model.onnx",
    "runtime/main.py",
]
V2_FILES = [
    "config/migrations.yaml",
    "config/samples/v1.json",
    "config/v1.schema.json",
]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _tensor(doc: dict[str, Any], key: str) -> np.ndarray[Any, Any]:
    spec = doc[key]
    shape: list[int] = spec["shape"]
    array: np.ndarray[Any, Any] = np.asarray(spec["data"], dtype=spec["dtype"])
    return array.reshape(shape)


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _make_example_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_example", REPO / "bundles/make_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("scaffold") / "demo"
    scaffold_bundle("demo", dest)
    return dest


def test_file_list(tmp_path: Path) -> None:
    dest = tmp_path / "demo"
    written = scaffold_bundle("demo", dest)
    assert [p.as_posix() for p in written] == FILES
    assert all(not p.is_absolute() for p in written)
    assert sorted(_tree(dest)) == FILES
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temp leftovers


def test_deterministic_bytes(tmp_path: Path) -> None:
    scaffold_bundle("same", tmp_path / "one")
    scaffold_bundle("same", tmp_path / "two")
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_text_files_use_lf_and_trailing_newline(bundle: Path) -> None:
    for rel in FILES:
        if rel.endswith(".onnx"):
            continue
        data = (bundle / rel).read_bytes()
        assert b"\r" not in data and data.endswith(b"\n"), rel


def test_bundle_yaml(bundle: Path) -> None:
    text = (bundle / "bundle.yaml").read_text(encoding="utf-8")
    assert text.startswith("# oemkit bundle spec — see docs/SPEC.md\n")
    assert yaml.safe_load(text) == {
        "apiVersion": "oemkit/v1",
        "name": "demo",
        "version": "0.1.0",
        "description": "demo: a tiny ONNX classifier scaffolded by oemkit init",
        "model": "model/model.onnx",
        "entrypoint": "runtime/main.py",
        "config": {
            "file": "config/config.json",
            "schema": "config/config.schema.json",
            "version": 1,
        },
        "golden": {
            "inputs": "golden/inputs.json",
            "outputs": "golden/expected.json",
            "atol": 1e-5,
            "rtol": 1e-4,
        },
        "profiles": ["cpu-small"],
        "requirements": list(scaffold.REQUIREMENTS),  # the runner's and the server's
        "files": [],
    }
    assert "\n# license:\n#   required: false " in text  # the defaults, commented


@pytest.mark.parametrize("name", ["1.0", "on", "null", "1_000", "0x1f"])
def test_yaml_keeps_tricky_names_and_descriptions_as_strings(tmp_path: Path, name: str) -> None:
    description = 'say "hi": a #comment, \\ and ünïcode'
    scaffold_bundle(name, tmp_path / "b", description=description)
    spec = yaml.safe_load((tmp_path / "b" / "bundle.yaml").read_text(encoding="utf-8"))
    assert spec["name"] == name
    assert spec["description"] == description


@pytest.mark.parametrize("description", ["", "   ", "two\nlines", "tab\there"])
def test_bad_description(tmp_path: Path, description: str) -> None:
    with pytest.raises(InputError) as info:
        scaffold_bundle("demo", tmp_path / "b", description=description)
    assert info.value.code == "E_SPEC_DESCRIPTION"
    assert not (tmp_path / "b").exists()


def test_config_matches_its_schema(bundle: Path) -> None:
    schema = _load_json(bundle / "config/config.schema.json")
    config = _load_json(bundle / "config/config.json")
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://oemkit.dev/schemas/demo/config/v1.json"
    assert set(schema["required"]) == set(config)
    validator = Draft202012Validator(schema)
    validator.validate(config)
    for bad in (
        {**config, "extra": True},
        {**config, "schema_version": 2},
        {**config, "threshold": "high"},
        {**config, "threads": 0},
        {k: v for k, v in config.items() if k != "labels"},
    ):
        assert not validator.is_valid(bad), bad


def test_model_shape_and_metadata(bundle: Path) -> None:
    model = onnx.load(str(bundle / "model/model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert model.producer_name == "oemkit"
    assert model.producer_version == "oemkit-scaffold/1"
    assert model.graph.name == "demo-mlp"
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Relu", "Gemm", "Softmax"]

    def dims(value: onnx.ValueInfoProto) -> list[str | int]:
        shape = value.type.tensor_type.shape.dim
        return [d.dim_param or d.dim_value for d in shape]

    (x,) = model.graph.input
    (y,) = model.graph.output
    assert (x.name, x.type.tensor_type.elem_type, dims(x)) == (
        "x",
        onnx.TensorProto.FLOAT,
        ["batch", 4],
    )
    assert (y.name, y.type.tensor_type.elem_type, dims(y)) == (
        "y",
        onnx.TensorProto.FLOAT,
        ["batch", 3],
    )


def test_graph_name_follows_bundle_name(tmp_path: Path) -> None:
    scaffold_bundle("other", tmp_path / "b")
    assert onnx.load(str(tmp_path / "b/model/model.onnx")).graph.name == "other-mlp"


def test_golden_inputs_format(bundle: Path) -> None:
    doc = _load_json(bundle / "golden/inputs.json")
    assert set(doc) == {"x"}
    assert doc["x"]["dtype"] == "float32" and doc["x"]["shape"] == [4, 4]
    assert len(doc["x"]["data"]) == 16
    assert all(round(v, 6) == v for v in doc["x"]["data"])


def test_golden_outputs_match_onnxruntime(bundle: Path) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(bundle / "model/model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    x = _tensor(_load_json(bundle / "golden/inputs.json"), "x")
    (y,) = session.run(["y"], {"x": x})
    expected_doc = _load_json(bundle / "golden/expected.json")
    assert set(expected_doc) == {"y"}
    assert expected_doc["y"]["dtype"] == "float32" and expected_doc["y"]["shape"] == [4, 3]
    expected = _tensor(expected_doc, "y")
    np.testing.assert_allclose(y, expected, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, atol=1e-5)  # softmax rows


@pytest.mark.parametrize("relative", [True, False])
def test_runtime_main_in_fresh_process(bundle: Path, tmp_path: Path, relative: bool) -> None:
    out = tmp_path / "out.json"
    args = ["--out", str(out)]
    if relative:  # relative paths resolve against the bundle root, not the cwd
        args += ["--model", "model/model.onnx", "--inputs", "golden/inputs.json"]
    else:
        args += [
            "--model",
            str(bundle / "model/model.onnx"),
            "--inputs",
            str(bundle / "golden/inputs.json"),
        ]
    args += ["--providers", "CPUExecutionProvider", "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, str(bundle / "runtime/main.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = _load_json(out)
    np.testing.assert_allclose(
        _tensor(result, "y"),
        _tensor(_load_json(bundle / "golden/expected.json"), "y"),
        atol=ATOL,
        rtol=RTOL,
    )
    assert "CPUExecutionProvider" in result["_providers"]
    timings = result["_timings_ms"]
    assert set(timings) == {"import", "session", "first_inference"}
    assert all(isinstance(v, float) and v >= 0 for v in timings.values())


def test_runtime_main_needs_only_numpy_and_onnxruntime(bundle: Path) -> None:
    tree = ast.parse((bundle / "runtime/main.py").read_text(encoding="utf-8"))
    assert ast.get_docstring(tree)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - sys.stdlib_module_names == {"numpy", "onnxruntime"}


def test_runtime_main_reports_missing_input(bundle: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in.json"
    inputs.write_text('{"z": {"dtype": "float32", "shape": [1], "data": [0.0]}}\n')
    proc = subprocess.run(
        [
            sys.executable,
            str(bundle / "runtime/main.py"),
            "--inputs",
            str(inputs),
            "--out",
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "lacks model inputs ['x']" in proc.stderr


@pytest.mark.parametrize(
    "name", ["", "Upper", "-lead", ".hidden", "_x", "a" * 65, "has space", "abc\n", "a/b", "ü"]
)
def test_bad_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError) as info:
        scaffold_bundle(name, tmp_path / "b")
    assert info.value.code == "E_SPEC_NAME"
    assert info.value.hint
    assert info.value.exit_code == 3
    assert list(tmp_path.iterdir()) == []


def test_longest_name_is_accepted(tmp_path: Path) -> None:
    scaffold_bundle("a" * 64, tmp_path / "b")
    assert (tmp_path / "b" / "bundle.yaml").is_file()


def test_non_empty_dest_is_refused_and_untouched(tmp_path: Path) -> None:
    dest = tmp_path / "b"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"mine\n")
    with pytest.raises(InputError) as info:
        scaffold_bundle("demo", dest)
    assert info.value.code == "E_DEST_NOT_EMPTY"
    assert info.value.message == f"{dest} is not empty"
    assert info.value.hint == "choose another --dir or remove it"
    assert _tree(dest) == {"keep.txt": b"mine\n"}
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_dest_that_is_a_file_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "b"
    dest.write_bytes(b"x")
    with pytest.raises(InputError) as info:
        scaffold_bundle("demo", dest, force=True)
    assert info.value.code == "E_DEST_NOT_DIR"
    assert dest.read_bytes() == b"x"


def test_empty_dest_and_missing_parents_are_fine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    scaffold_bundle("demo", tmp_path / "empty")
    scaffold_bundle("demo", tmp_path / "deep" / "er" / "b")
    assert _tree(tmp_path / "empty") == _tree(tmp_path / "deep" / "er" / "b")
    assert sorted(_tree(tmp_path / "empty")) == FILES


def test_force_replaces_non_empty_dest(tmp_path: Path) -> None:
    dest = tmp_path / "b"
    (dest / "model").mkdir(parents=True)
    (dest / "stale.txt").write_bytes(b"old")
    (dest / "model" / "model.onnx").write_bytes(b"old")
    scaffold_bundle("demo", dest, force=True)
    assert sorted(_tree(dest)) == FILES
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # old tree and temp dir are gone


def test_empty_cwd_is_filled_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    scaffold_bundle("demo", Path("."))
    assert sorted(_tree(tmp_path)) == FILES
    assert Path.cwd() == tmp_path and tmp_path.is_dir()
    with pytest.raises(InputError) as info:
        scaffold_bundle("demo", Path("."), force=True)
    assert info.value.code == "E_DEST_IS_CWD"


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "b"
    calls = 0
    real_write = scaffold._write_file

    def flaky_write(path: Path, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # an interrupted init, mid-write
        real_write(path, data)

    monkeypatch.setattr(scaffold, "_write_file", flaky_write)
    with pytest.raises(KeyboardInterrupt):
        scaffold_bundle("demo", dest)
    assert list(tmp_path.iterdir()) == []

    # With force, a failure keeps the previous bundle exactly as it was.
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"mine")
    calls = 0
    with pytest.raises(KeyboardInterrupt):
        scaffold_bundle("demo", dest, force=True)
    assert _tree(dest) == {"keep.txt": b"mine"}
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_os_errors_become_environment_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scaffold, "_write_file", full_disk)
    with pytest.raises(EnvironmentProblem) as info:
        scaffold_bundle("demo", tmp_path / "b")
    assert info.value.code == "E_WRITE"
    assert "No space left on device" in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_importing_scaffold_stays_light() -> None:
    code = (
        "import sys, oemkit.release.scaffold\n"
        "heavy = sorted({'numpy', 'onnx', 'onnxruntime'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("folder", ["example-v1", "example"])
def test_committed_examples_match_make_example(tmp_path: Path, folder: str) -> None:
    """``bundles/example-v1`` and ``bundles/example`` must be what
    ``bundles/make_example.py`` would write today (a fresh scaffold, plus the release-0.2.0
    changes for ``example``).

    Every file must be byte-identical except ``golden/expected.json``: its last float32 bits
    come from onnxruntime's CPU kernels, which may differ between CPUs (AVX2, AVX-512, NEON),
    so on other machines it is compared numerically at a tolerance far below the golden one.
    """
    make_example = _make_example_module()
    make_example.write_examples(tmp_path)
    committed, expected = _tree(REPO / "bundles" / folder), _tree(tmp_path / folder)
    files = FILES if folder == "example-v1" else sorted(FILES + V2_FILES)
    assert sorted(committed) == sorted(expected) == files, "rerun bundles/make_example.py"
    for rel in files:
        if rel == "golden/expected.json" and committed[rel] != expected[rel]:
            a, b = json.loads(committed[rel]), json.loads(expected[rel])
            assert {k: v for k, v in a["y"].items() if k != "data"} == {
                k: v for k, v in b["y"].items() if k != "data"
            }
            np.testing.assert_allclose(a["y"]["data"], b["y"]["data"], atol=1e-6, rtol=0)
            continue
        assert committed[rel] == expected[rel], f"{rel} drifted: rerun bundles/make_example.py"
    assert yaml.safe_load(committed["bundle.yaml"])["description"] == make_example.DESCRIPTION
