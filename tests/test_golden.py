"""Build checks the golden data against the model's graph (issue 15, "Also found"): names,
dtypes and shapes, with E_GOLDEN_INVALID (exit 3) naming the file and the tensor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import EXAMPLE
from oemkit.cli import app
from oemkit.errors import InputError
from oemkit.release.bundle import build_bundle

HINT = ("make golden data from the model with 'oemkit init NAME --model MODEL' (or "
        "regenerate it), or fix the file (docs/SPEC.md#golden-data)")


@pytest.fixture
def spec(tmp_path) -> Path:
    dest = tmp_path / "spec"
    shutil.copytree(EXAMPLE, dest)
    return dest


def _edit(spec: Path, rel: str, change) -> None:
    path = spec / rel
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _refused(spec: Path, tmp_path: Path) -> InputError:
    with pytest.raises(InputError) as caught:
        build_bundle(spec, tmp_path / "out")
    assert caught.value.code == "E_GOLDEN_INVALID" and caught.value.exit_code == 3
    assert caught.value.hint == HINT
    assert not (tmp_path / "out" / "example-0.2.0.oemb").exists()
    return caught.value


def _set(key: str, value):
    def change(doc):
        doc["x"][key] = value
    return change


@pytest.mark.parametrize(("rel", "change", "message", "field", "expected", "actual"), [
    ("golden/inputs.json", _set("dtype", "int64"),
     "golden/inputs.json: input 'x' is int64, the model's is float32",
     "golden.inputs", "float32", "int64"),
    ("golden/inputs.json", lambda d: d["x"].update(shape=[2, 8]),
     "golden/inputs.json: input 'x' has shape [2, 8], the model's is [batch, 4]",
     "golden.inputs", "[batch, 4]", "[2, 8]"),
    ("golden/inputs.json", lambda d: d["x"].update(shape=[16]),
     "golden/inputs.json: input 'x' has shape [16], the model's is [batch, 4]",
     "golden.inputs", "[batch, 4]", "[16]"),
    ("golden/inputs.json", lambda d: d.update(z=d.pop("x")),
     "golden/inputs.json: 'z' is not an input of the model (its inputs: x)",
     "golden.inputs", "x", "z"),
    ("golden/inputs.json", lambda d: d.update(z=d["x"]),
     "golden/inputs.json: 'z' is not an input of the model (its inputs: x)",
     "golden.inputs", "x", "z"),
    ("golden/inputs.json", lambda d: d.clear(),
     "golden/inputs.json lacks the model input 'x'", "golden.inputs", "x", "none"),
    ("golden/inputs.json", lambda d: d["x"]["data"].pop(),
     "golden/inputs.json: input 'x': shape [4, 4] holds 16 values, data has 15",
     "golden.inputs", "16", "15"),
    ("golden/inputs.json", _set("dtype", "flaot32"),
     'golden/inputs.json: input \'x\': "flaot32" is not a dtype (write a NumPy name: '
     "float32, int64, bool, ...)", "golden.inputs", None, None),
    ("golden/expected.json", lambda d: d.update(y={"dtype": "float32", "shape": [3, 3],
                                                   "data": [0.0] * 9}),
     "golden/expected.json: output 'y' has shape [3, 3], but 'batch' is 4 in "
     "golden/inputs.json: input 'x'", "golden.outputs", "batch = 4", "batch = 3"),
    ("golden/expected.json", lambda d: d.update(probs=d["y"]),
     "golden/expected.json: 'probs' is not an output of the model (its outputs: y)",
     "golden.outputs", "y", "probs"),
    ("golden/expected.json", lambda d: d.update(y={"seq": [{"a": 1.0}]}),
     "golden/expected.json: output 'y' is a sequence, the model's is a float32 tensor",
     "golden.outputs", "float32", "sequence"),
    ("golden/expected.json", lambda d: d["y"].update(dtype="float64"),
     "golden/expected.json: output 'y' is float64, the model's is float32",
     "golden.outputs", "float32", "float64"),
])
def test_build_refuses_golden_data_the_model_cannot_take(spec, tmp_path, rel, change, message,
                                                          field, expected, actual):
    _edit(spec, rel, change)
    error = _refused(spec, tmp_path)
    assert error.message == f"bundle.yaml: golden: {message}"
    assert (error.field, error.expected, error.actual) == (field, expected, actual)


def test_not_json_is_named(spec, tmp_path):
    (spec / "golden" / "inputs.json").write_text("{")
    error = _refused(spec, tmp_path)
    assert error.message.startswith("bundle.yaml: golden: golden/inputs.json is not JSON: ")


def test_the_cli_shows_the_tensor_and_exits_3(spec, tmp_path):
    _edit(spec, "golden/inputs.json", _set("dtype", "int64"))
    result = CliRunner().invoke(app, ["build", str(spec), "--out", str(tmp_path / "o"),
                                      "--json"])
    assert result.exit_code == 3, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_GOLDEN_INVALID" and error["field"] == "golden.inputs"
    assert error["expected"] == "float32" and error["actual"] == "int64"


def test_the_runners_own_output_is_a_golden_outputs_file(spec, tmp_path):
    def runner_output(doc):
        doc["_timings_ms"] = {"import": 1.0, "session": 2.0, "first_inference": 0.1}
        doc["_providers"] = ["CPUExecutionProvider"]
    _edit(spec, "golden/expected.json", runner_output)
    assert build_bundle(spec, tmp_path / "out").files == 9


def test_npz_golden_files_are_checked_too(spec, tmp_path):
    import numpy as np

    doc = json.loads((spec / "golden" / "inputs.json").read_text())
    x = np.asarray(doc["x"]["data"], dtype="float32").reshape(doc["x"]["shape"])
    np.savez(spec / "golden" / "inputs.npz", x=x)
    text = (spec / "bundle.yaml").read_text().replace("golden/inputs.json", "golden/inputs.npz")
    (spec / "bundle.yaml").write_text(text)
    build_bundle(spec, tmp_path / "ok")
    np.savez(spec / "golden" / "inputs.npz", x=x.astype("float64"))
    error = _refused(spec, tmp_path)
    assert error.message == ("bundle.yaml: golden: golden/inputs.npz: input 'x' is float64, "
                             "the model's is float32")
