"""benchmarks/serve_runtime.py works: with tiny request counts it starts every server it
compares (oemkit with one and two workers, the minimal raw-ASGI and Starlette servers, the
raw-socket floor, the bare and stack-floor cold starts), drives them and prints its
table. The figures themselves are not checked: they are measurements on a shared machine,
recorded in benchmarks/RESULTS.md."""

from __future__ import annotations

import os
import sys

import pytest

from helpers import REPO

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]

FIGURES = ("overhead p50 (infer RTT - bare run)", "overhead p99 (infer RTT - bare run)",
           "throughput 1 worker / minimal server", "throughput 2 workers / 1 worker",
           "cold start to ready (prefix, license)", "RSS per worker (1 worker, max)",
           "RSS per worker (2 workers, max)", "RSS slope over 60 requests")


def test_the_benchmark_prints_its_table(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    sys.modules.pop("serve_runtime", None)
    import serve_runtime

    prefix_before = os.environ.get("PYTHONPYCACHEPREFIX")
    serve_runtime.main(["--requests", "20", "--seconds", "0.2", "--rounds", "1",
                        "--runs", "1", "--memory-requests", "60"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("figure "))
    assert lines[header].split() == ["figure", "value", "target", "baseline", "ratio",
                                     "verdict"]
    rows = {line.split("  ")[0]: line for line in lines[header + 2:]}
    for figure in FIGURES:
        assert figure in rows, out
        assert rows[figure].split()[-1] in ("PASS", "MISS"), rows[figure]
    assert "license valid" in out  # the cold start checked the license it was given
    # the bytecode cache the servers used is the run's own, not left to later tests
    assert os.environ.get("PYTHONPYCACHEPREFIX") == prefix_before
    for baseline in ("  stack floor: its imports + session + bind",
                     "  stack floor RSS (its imports + session + bind)",
                     "  oemkit over the stack floor"):
        assert any(line.startswith(baseline) for line in lines), out


def test_an_unknown_benchmark_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import serve_runtime

    with pytest.raises(SystemExit) as exc:
        serve_runtime.main(["speed"])
    assert exc.value.code == 2
    assert "unknown benchmark(s) speed" in capsys.readouterr().err
