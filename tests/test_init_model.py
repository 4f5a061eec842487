"""``oemkit init NAME --model FILE [--inputs FILE]`` (issue 15, "Also found"): a scaffold
around a given ONNX model, with golden inputs made from its input metadata (or the user's
file) and expected outputs computed by running it, that ``oemkit build`` accepts and the
smoke test passes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import EXAMPLE, zipmap_model
from oemkit.cli import app
from oemkit.errors import InputError, UsageError
from oemkit.release.bundle import build_bundle
from oemkit.release.from_model import INPUT_SEED
from oemkit.release.scaffold import scaffold_bundle
from oemkit.release.sign import sign_bundle

MODEL = EXAMPLE / "model" / "model.onnx"
runner = CliRunner()


def _json(path: Path):
    return json.loads(path.read_text())


def test_init_model_writes_golden_data_from_the_models_metadata(tmp_path):
    dest = tmp_path / "mine"
    result = runner.invoke(app, ["init", "mine", "--model", str(MODEL), "--dir", str(dest),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert (dest / "model" / "model.onnx").read_bytes() == MODEL.read_bytes()
    x = _json(dest / "golden" / "inputs.json")["x"]
    assert x["dtype"] == "float32" and x["shape"] == [1, 4]  # dynamic batch -> 1
    rng = np.random.default_rng(INPUT_SEED)
    assert x["data"] == np.round(rng.standard_normal((1, 4)), 6).ravel().tolist()
    y = _json(dest / "golden" / "expected.json")["y"]
    assert y["dtype"] == "float32" and y["shape"] == [1, 3]
    assert sum(y["data"]) == pytest.approx(1.0, abs=1e-6)  # softmax
    # deterministic: the same model gives the same files
    again = tmp_path / "again"
    scaffold_bundle("mine", again, model=MODEL)
    for rel in ("golden/inputs.json", "golden/expected.json", "bundle.yaml"):
        assert (again / rel).read_bytes() == (dest / rel).read_bytes()
    assert "made from the model's input metadata" in (dest / "README.md").read_text()


def test_the_scaffold_builds_and_its_model_only_smoke_passes(tmp_path, keys, trust_file):
    from oemkit.measure.smoke import run_smoke

    dest = tmp_path / "mine"
    scaffold_bundle("mine", dest, model=MODEL)
    bundle = build_bundle(dest, tmp_path / "out").path
    sign_bundle(bundle, [keys["bundle"]])
    result = run_smoke(bundle, "cpu-small", trust_file, state_path=tmp_path / "state.json",
                       served=False)
    failed = [(c.name, c.detail) for c in result.checks if c.status == "fail"]
    assert failed == [] and result.exit_code == 0
    assert {c.name for c in result.checks} >= {"golden:y", "entrypoint:y"}


def test_init_model_with_the_users_inputs(tmp_path):
    inputs = tmp_path / "sample.json"
    golden = _json(EXAMPLE / "golden" / "inputs.json")
    inputs.write_text(json.dumps(golden))
    dest = tmp_path / "mine"
    scaffold_bundle("mine", dest, model=MODEL, inputs=inputs)
    assert _json(dest / "golden" / "inputs.json") == golden
    expected = _json(EXAMPLE / "golden" / "expected.json")["y"]
    y = _json(dest / "golden" / "expected.json")["y"]
    assert y["shape"] == expected["shape"] == [4, 3]
    assert y["data"] == pytest.approx(expected["data"], abs=1e-5, rel=1e-4)
    np.savez(tmp_path / "sample.npz", x=np.asarray(golden["x"]["data"], dtype="float32")
             .reshape(golden["x"]["shape"]))
    scaffold_bundle("mine", tmp_path / "npz", model=MODEL, inputs=tmp_path / "sample.npz")
    assert _json(tmp_path / "npz" / "golden" / "expected.json")["y"]["shape"] == [4, 3]
    build_bundle(tmp_path / "npz", tmp_path / "out")


def test_inputs_that_do_not_fit_the_model_are_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"z": {"dtype": "float32", "shape": [1, 4], "data": [0] * 4}}))
    with pytest.raises(InputError) as caught:
        scaffold_bundle("mine", tmp_path / "mine", model=MODEL, inputs=bad)
    assert caught.value.code == "E_GOLDEN_INVALID"
    assert caught.value.message == ("--inputs bad.json: 'z' is not an input of the model "
                                    "(its inputs: x)")
    assert not (tmp_path / "mine").exists()
    with pytest.raises(UsageError):
        scaffold_bundle("mine", tmp_path / "mine", inputs=bad)


def test_not_a_model_is_refused(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    result = runner.invoke(app, ["init", "mine", "--model", str(junk), "--dir",
                                 str(tmp_path / "mine")])
    assert result.exit_code == 3 and "E_MODEL_INVALID" in result.stderr
    assert not (tmp_path / "mine").exists()


def test_a_zipmap_model_gets_sequence_golden_outputs_that_build_and_the_runner_accept(
        tmp_path):
    import subprocess
    import sys

    model = zipmap_model(tmp_path / "logreg.onnx")
    dest = tmp_path / "clf"
    scaffold_bundle("clf", dest, model=model)
    expected = _json(dest / "golden" / "expected.json")
    assert expected["label"]["dtype"] == "int64" and expected["label"]["shape"] == [1]
    (probs,) = expected["output_probability"]["seq"]
    assert sorted(probs) == ["0", "1", "2"] and sum(probs.values()) == pytest.approx(1.0)
    build_bundle(dest, tmp_path / "out")
    # the runner handles the seq(map) output and its output file is a golden file
    out = tmp_path / "run.json"
    subprocess.run([sys.executable, str(dest / "runtime" / "main.py"), "--out", str(out)],
                   check=True)
    ran = _json(out)
    assert ran["output_probability"]["seq"][0] == pytest.approx(probs)
    assert "_timings_ms" in ran and "_providers" in ran
    shutil.copyfile(out, dest / "golden" / "expected.json")
    build_bundle(dest, tmp_path / "out2")
