"""``oemkit demo`` serves what it built (issue 15, item 6): after build, sign and verify it
starts ``oemkit serve`` in a child process, makes one inference over HTTP with the golden
input, prints the answer with the config's labels and stops the server with SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from helpers import EXAMPLE
from oemkit.cli import app
from oemkit.errors import EnvironmentProblem

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]


def _expected() -> tuple[list[float], list[str]]:
    y = json.loads((EXAMPLE / "golden" / "expected.json").read_text())["y"]
    labels = json.loads((EXAMPLE / "config" / "config.json").read_text())["labels"]
    return y["data"], labels


def _top(data: list[float], labels: list[str]) -> list[str]:
    rows = [data[i:i + 3] for i in range(0, len(data), 3)]
    return [labels[max(range(3), key=row.__getitem__)] for row in rows]


def test_demo_prints_the_http_answer_and_stops_the_server(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OEMKIT_STATE": str(tmp_path / "state.json")}
    proc = subprocess.run([sys.executable, "-m", "oemkit", "demo", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stderr
    assert "Infer   POST /v2/models/example/infer with the golden input" in text
    assert "  y FP32 [4, 3]:" in text
    data, labels = _expected()
    first_row = [round(v, 4) for v in data[:3]]
    assert f"    {first_row}" in text
    rows = [data[i:i + 3] for i in range(0, len(data), 3)]
    assert "  top class: " + ", ".join(
        f"row {i}: {label} ({max(row):.3f})"
        for i, (label, row) in enumerate(zip(_top(data, labels), rows, strict=True))) in text
    assert "Stopped SIGTERM: drained and exited 0" in text
    assert "OK every check passed" in text
    log = [json.loads(line) for line in (out / "serve.log").read_text().splitlines() if line]
    assert any(entry.get("msg") == "ready" and entry.get("model") == "example" for entry in log)
    assert not (out / "serve.port").exists()


def test_demo_json_carries_the_served_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("OEMKIT_STATE", str(tmp_path / "state.json"))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    served = json.loads(result.stdout)["served"]
    data, labels = _expected()
    assert served["model"] == "example" and served["exit_code"] == 0
    y = served["outputs"]["y"]
    assert y["datatype"] == "FP32" and y["shape"] == [4, 3]
    assert y["data"] == pytest.approx(data, abs=1e-5, rel=1e-4)
    assert [t["label"] for t in served["top"]] == _top(data, labels)
    assert served["timings_ms"]["start_to_ready"] > 0


def test_demo_no_serve_builds_signs_and_verifies_only(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out"), "--no-serve",
                                      "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["served"] is None
    assert not (tmp_path / "out" / "serve.log").exists()


def test_a_server_that_exits_early_is_named_with_its_log(tmp_path, monkeypatch):
    import oemkit.host.demo as demo

    wrapper = tmp_path / "python-that-fails"
    wrapper.write_text("#!/bin/sh\necho '{\"msg\": \"boom\"}' >&2\nexit 4\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(demo.sys, "executable", str(wrapper))
    with pytest.raises(EnvironmentProblem) as caught:
        demo.run_demo(tmp_path / "out")
    assert caught.value.code == "E_DEMO_SERVE" and caught.value.exit_code == 4
    log = tmp_path / "out" / "serve.log"
    assert caught.value.message == (
        f"the server exited with status 4 before listening (log: {log}); last log line: "
        '{"msg": "boom"}')
