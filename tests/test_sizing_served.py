"""Sizing measures the served runtime: ``oemkit serve`` driven over loopback by oemkit's
open-loop load generator and by MLPerf LoadGen, the server's queue/compute split from its
/metrics, a recommendation from the served figures, the in-process figures kept as the
model-only ceiling; ``--slo`` at p50/p90/p95/p99/p99.9."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest
from typer.testing import CliRunner

from oemkit.cli import app
from oemkit.errors import EnvironmentProblem, UsageError
from oemkit.measure import sizing
from oemkit.measure.sizing import (
    SizingRequest,
    Slo,
    infer_body,
    instances_arithmetic,
    meets_slo,
    parse_slo,
    recommend_served,
    run_sizing,
    split_server_time,
)
from oemkit.report.sizing import to_markdown

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]

runner = CliRunner()
HAVE_LOADGEN = importlib.util.find_spec("mlperf_loadgen") is not None
PCTS = ("p50", "p90", "p95", "p99", "p99.9")
# Small levels and a generous SLO, so the levels pass on a busy 2-core test machine.
SMALL = SizingRequest(target_qps=100, slo=Slo("p95", 3000), batches=(1,), threads=(1,),
                      duration_s=0.2, server_duration_s=0.2, workers=1, levels=(0.2, 0.4),
                      level_duration_s=0.5, mlperf="auto")


@pytest.fixture(scope="module")
def sized(tmp_path_factory, keys, trust_v2):
    from helpers import EXAMPLE
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle

    bundle = build_bundle(EXAMPLE, tmp_path_factory.mktemp("b")).path
    sign_bundle(bundle, [keys["bundle"]])
    return run_sizing(bundle, "cpu-small", trust_v2, SMALL)


# --------------------------------------------------------------------- a real served run


def test_served_levels_come_from_the_running_server(sized):
    served = sized["served"]
    assert served["workers"] == 1 and served["ready_s"] > 0
    assert served["command"][:2] == ["oemkit", "serve"] and "--workers" in served["command"]
    assert [c["concurrency"] for c in served["closed_loop"]] == [1, 4]
    assert served["capacity_qps"] == max(c["achieved_qps"] for c in served["closed_loop"])
    levels = served["levels"]
    assert len(levels) >= 2 and [lv["rate"] for lv in levels] == sorted(lv["rate"]
                                                                         for lv in levels)
    for lv in levels:
        ours = lv["oemkit"]
        assert ours["succeeded"] > 0 and ours["errors"] == 0 and ours["achieved_qps"] > 0
        lat = ours["latency_ms"]
        assert all(lat[p] is not None for p in PCTS)
        assert [lat[p] for p in PCTS] == sorted(lat[p] for p in PCTS)
        assert ours["lag_ms"]["p50"] is not None and ours["driver_cpu_cores"] > 0
        assert lv["meets_slo"] is meets_slo(dict(ours), Slo("p95", 3000))
    json.dumps(sized)  # the whole document is JSON


def test_the_server_time_splits_into_queue_and_compute(sized):
    for lv in sized["served"]["levels"]:
        split = lv["split"]
        # The scrapes bracket exactly the measured requests (warm-up before the first).
        assert split["requests"] == lv["oemkit"]["succeeded"]
        assert split["outcomes"] == {"success": lv["oemkit"]["succeeded"]}
        assert split["queue_ms_mean"] >= 0 and split["compute_ms_mean"] > 0
        assert split["server_ms_mean"] >= split["queue_ms_mean"] + split["compute_ms_mean"]
        assert split["client_ms_mean"] == lv["oemkit"]["latency_ms"]["mean"]
        assert split["outside_server_ms_mean"] == pytest.approx(
            split["client_ms_mean"] - split["server_ms_mean"])
        assert split["batch_rows_mean"] >= 1


def test_both_drivers_report_side_by_side_with_their_overheads(sized):
    served = sized["served"]
    own = served["drivers"]["oemkit"]["trivial_endpoint"]
    assert own["errors"] == 0 and own["latency_ms"]["p50"] > 0 and own["lag_ms"]["p99"] >= 0
    if not HAVE_LOADGEN:  # the suite's test extra installs it; without it, said so
        assert "mlperf_loadgen" not in served["drivers"]
        assert any(n.startswith("MLPerf LoadGen did not run (not installed: pip install "
                                "'oemkit[sizing]'") for n in sized["notes"])
        return
    lg = served["drivers"]["mlperf_loadgen"]
    assert lg["version"] and lg["null_sut"]["latency_ms"]["p50"] > 0
    assert lg["trivial_endpoint"]["errors"] == 0
    for lv in served["levels"]:
        theirs = lv["mlperf_loadgen"]
        assert theirs["offered_qps"] == lv["rate"] and theirs["errors"] == 0
        assert theirs["requests"] > 0 and theirs["validity"] in ("VALID", "INVALID")
        assert all(theirs["latency_ms"][p] is not None for p in PCTS)
        assert theirs["split"]["requests"] == theirs["requests"]
    md = to_markdown(sized)
    assert "## Served, side by side: MLPerf LoadGen (Server scenario)" in md
    assert "| MLPerf LoadGen " in md and "a SUT that completes at once (no HTTP)" in md


def test_the_recommendation_is_the_served_one_and_the_ceiling_stays(sized):
    rec, served = sized["recommendation"], sized["served"]
    assert rec["basis"] == "served" and rec["achievable"], rec
    best = max(lv["rate"] for lv in served["levels"] if lv["meets_slo"])
    assert rec["sustainable_qps_per_instance"] == best
    assert (rec["instances"], rec["arithmetic"]) == instances_arithmetic(100, best, 0.3, 0)
    assert rec["memory_mb_per_instance"] == math.ceil(served["memory_mb"])
    assert rec["cores_per_instance"] == 1 and rec["workers_per_instance"] == 1
    ceiling = sized["ceiling"]
    assert ceiling["basis"] == "model only, in process (no HTTP, no server)"
    assert ceiling["sustainable_qps_per_instance"] > best  # the ceiling over-promises
    md = to_markdown(sized)
    assert md.index("## Recommendation (from the served figures)") < md.index(
        "## Model-only ceiling")
    assert "not used for the recommendation" in md


def test_the_server_is_stopped_afterwards(sized):
    for pid in sized["served"]["pids"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# --------------------------------------------------------------------- pure functions


def _level(rate, p95, meets):
    return {"rate": rate, "meets_slo": meets,
            "oemkit": {"latency_ms": {"p95": p95}}, "mlperf_loadgen": None}


def test_recommend_served_arithmetic_on_a_fixed_input():
    served = {"workers": 2, "threads_per_worker": 1, "memory_mb": 180.4,
              "levels": [_level(100.0, 5.0, True), _level(200.0, 9.0, True),
                         _level(300.0, 80.0, False)]}
    rec = recommend_served(served, Slo("p95", 20), 1000, 0.3, 1)
    assert rec == {
        "basis": "served", "slo_percentile": "p95", "slo_ms": 20, "workers_per_instance": 2,
        "cores_per_instance": 2, "memory_mb_per_instance": 181, "achievable": True,
        "sustainable_qps_per_instance": 200.0, "at_slo_ms": 9.0, "instances": 9,
        "arithmetic": "ceil(1000 / (200.0 x (1 - 0.3))) + 1 = ceil(7.14) + 1 = 9"}
    assert instances_arithmetic(50, 200.0, 0.0, 0) == (
        1, "ceil(50 / (200.0 x (1 - 0))) + 0 = ceil(0.25) + 0 = 1")


def test_recommend_served_explains_why_not():
    slow = {"workers": 1, "levels": [_level(10.0, 90.0, False)],
            "closed_loop": [{"concurrency": 1, "latency_ms": {"p95": 60.0}}]}
    rec = recommend_served(slow, Slo("p95", 50), 100, 0.3, 0)
    assert rec["achievable"] is False and rec["reason"] == (
        "not achievable on this host with any number of instances: even unloaded (one "
        "request at a time), the served p95 is 60.00 ms, above the 50 ms SLO (more instances "
        "add throughput, not speed)")
    loaded = {"workers": 1, "levels": [_level(10.0, 90.0, False)],
              "closed_loop": [{"concurrency": 1, "latency_ms": {"p95": 2.0}}]}
    assert recommend_served(loaded, Slo("p95", 50), 100, 0.3, 0)["reason"] == (
        "not achievable on this host at any tested load: already at the lowest offered "
        "rate, 10.0 queries/s, the served p95 was 90.00 ms, above the 50 ms SLO")


def test_without_served_figures_nothing_is_recommended():
    doc = {"served": None, "configurations": [{"stream": {"p50": 0.01}}]}
    rec = sizing.recommend(doc, SizingRequest(target_qps=10), Slo("p99", 50))
    assert rec["achievable"] is False and rec["reason"].startswith(
        "the served measurement did not run (see the notes)")


def test_meets_slo_needs_the_percentile_no_errors_and_keeping_up():
    good = {"latency_ms": {"p99": 10.0}, "errors": 0, "succeeded": 100,
            "scheduled_qps": 100.0, "achieved_qps": 96.0}
    assert meets_slo(dict(good), Slo("p99", 10))
    assert not meets_slo(dict(good), Slo("p99", 9.9))
    assert not meets_slo({**good, "errors": 1}, Slo("p99", 10))
    assert not meets_slo({**good, "achieved_qps": 94.0}, Slo("p99", 10))
    assert not meets_slo({**good, "latency_ms": {"p99": None}}, Slo("p99", 10))
    assert not meets_slo(dict(good), Slo("p99.9", 50))  # not measured: not met


def _scrape(n, request_s, queue_s, compute_s, rows, failed=0):
    return "\n".join([
        "# TYPE oemkit_requests counter",
        f'oemkit_requests_total{{model="m",outcome="success"}} {n}',
        f'oemkit_requests_total{{model="m",outcome="overloaded"}} {failed}',
        "# TYPE oemkit_request_duration_seconds histogram",
        f'oemkit_request_duration_seconds_bucket{{model="m",le="+Inf"}} {n}',
        f'oemkit_request_duration_seconds_count{{model="m"}} {n}',
        f'oemkit_request_duration_seconds_sum{{model="m"}} {request_s}',
        "# TYPE oemkit_queue_duration_seconds histogram",
        f'oemkit_queue_duration_seconds_bucket{{model="m",le="+Inf"}} {n}',
        f'oemkit_queue_duration_seconds_count{{model="m"}} {n}',
        f'oemkit_queue_duration_seconds_sum{{model="m"}} {queue_s}',
        "# TYPE oemkit_compute_duration_seconds histogram",
        f'oemkit_compute_duration_seconds_bucket{{model="m",le="+Inf"}} {n}',
        f'oemkit_compute_duration_seconds_count{{model="m"}} {n}',
        f'oemkit_compute_duration_seconds_sum{{model="m"}} {compute_s}',
        "# TYPE oemkit_batch_size histogram",
        f'oemkit_batch_size_bucket{{model="m",le="+Inf"}} {n}',
        f'oemkit_batch_size_count{{model="m"}} {n}',
        f'oemkit_batch_size_sum{{model="m"}} {rows}', ""])


def test_split_server_time_from_two_scrapes():
    before = _scrape(20, 0.5, 0.1, 0.2, 20)
    after = _scrape(120, 1.5, 0.3, 0.7, 320, failed=3)
    split = split_server_time(before, after, client_mean_ms=14.0)
    assert split == {
        "requests": 100.0, "server_ms_mean": pytest.approx(10.0),
        "queue_ms_mean": pytest.approx(2.0), "compute_ms_mean": pytest.approx(5.0),
        "other_server_ms_mean": pytest.approx(3.0), "batch_rows_mean": 3.0,
        "outcomes": {"overloaded": 3.0, "success": 100.0}, "client_ms_mean": 14.0,
        "outside_server_ms_mean": pytest.approx(4.0)}
    empty = split_server_time(before, before)
    assert empty["server_ms_mean"] is None and empty["outside_server_ms_mean"] is None


def test_the_request_is_the_first_golden_row(tmp_path):
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps({"x": {"dtype": "float32", "shape": [2, 3],
                                      "data": [[1, 2, 3], [4, 5, 6]]}}))
    assert json.loads(infer_body(path)) == {"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    assert json.loads(infer_body(path, None))["inputs"][0]["shape"] == [2, 3]


# --------------------------------------------------------------------- --slo and --mlperf


@pytest.mark.parametrize("text, slo", [
    ("p50=1ms", Slo("p50", 1.0)), ("p90=2.5ms", Slo("p90", 2.5)),
    ("p95=20ms", Slo("p95", 20.0)), ("p99=0.05s", Slo("p99", 50.0)),
    ("p99.9=100", Slo("p99.9", 100.0)), ("P95 = 7ms", Slo("p95", 7.0)),
    ("30ms", Slo("p99", 30.0)),
])
def test_slo_names_any_of_five_percentiles(text, slo):
    assert parse_slo(text) == slo


@pytest.mark.parametrize("text, message, hint", [
    ("p97=5ms", "--slo 'p97=5ms': p97 is not one of p50, p90, p95, p99, p99.9",
     "e.g. --slo p95=20ms or --slo p99=50ms"),
    ("p100=5ms", "--slo 'p100=5ms': p100 is not one of p50, p90, p95, p99, p99.9",
     "e.g. --slo p95=20ms or --slo p99=50ms"),
    ("p95=", "--slo 'p95=' is not a latency percentile",
     "PERCENTILE=NUMBER with ms or s, PERCENTILE one of p50, p90, p95, p99, p99.9 (default "
     "p99) and a positive number of at most 12 characters, e.g. --slo p95=20ms"),
    ("p95=0ms", "--slo 'p95=0ms' is not a latency percentile", None),
    ("p95=20us", "--slo 'p95=20us' is not a latency percentile", None),
    ("fast", "--slo 'fast' is not a latency percentile", None),
])
def test_bad_slo_values_have_exact_messages(text, message, hint):
    with pytest.raises(UsageError) as info:
        parse_slo(text)
    assert info.value.code == "E_USAGE" and info.value.message == message
    if hint is not None:
        assert info.value.hint == hint


def test_help_names_the_five_percentiles():
    result = runner.invoke(app, ["sizing", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "PERCENTILE one of p50, p90, p95, p99, p99.9" in text
    assert "p95=the profile's p95 budget" in text
    for option in ("--workers", "--levels", "--level-duration", "--mlperf"):
        assert option in text


def test_mlperf_on_without_loadgen_is_a_missing_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlperf_loadgen" else real(name, *a))
    with pytest.raises(EnvironmentProblem) as info:
        sizing._mlperf_wanted("on")
    assert info.value.code == "E_MISSING_EXTRA" and info.value.exit_code == 4
    assert info.value.message == (
        "oemkit sizing --mlperf on needs MLPerf LoadGen (the 'sizing' extra: "
        "mlcommons-loadgen); not installed: mlperf_loadgen")
    assert info.value.hint == "pip install 'oemkit[sizing]' (or: pip install mlcommons-loadgen)"
    assert sizing._mlperf_wanted("auto") is False and sizing._mlperf_wanted("off") is False
