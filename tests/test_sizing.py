"""Sizing: measurements, the recommendation's arithmetic, reports, compare, bad input."""

from __future__ import annotations

import json
import math
import re

import pytest
from typer.testing import CliRunner

from oemkit.cli import app
from oemkit.errors import EnvironmentProblem, UsageError
from oemkit.measure.sizing import (
    SizingRequest,
    Slo,
    ceiling,
    parse_duration,
    parse_slo,
    run_sizing,
)
from oemkit.report.sizing import compare, k8s_snippet, to_html, to_markdown

# The parent reads the served runtime's /metrics over loopback (its children need nothing).
pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]

runner = CliRunner()
# A generous SLO: the served levels must pass on a busy 2-core test machine.
QUICK = SizingRequest(target_qps=500, slo=Slo("p99", 2000), headroom=0.3, redundancy=1,
                      batches=(1, 4), threads=(1,), duration_s=0.3, server_duration_s=0.2,
                      workers=1, levels=(0.2, 0.4), level_duration_s=0.4, mlperf="off")
SERVED = ["--workers", "1", "--levels", "0.3", "--level-duration", "0.3s", "--mlperf", "off"]


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def sized(tmp_path_factory, keys, trust_v2):
    from helpers import EXAMPLE
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle

    bundle = build_bundle(EXAMPLE, tmp_path_factory.mktemp("b")).path
    sign_bundle(bundle, [keys["bundle"]])
    return run_sizing(bundle, "cpu-small", trust_v2, QUICK), bundle


def test_measures_every_configuration_and_the_server_scenario(sized):
    doc, _ = sized
    assert doc["complete"] and doc["name"] == "example"
    configs = {(c["batch"], c["threads"]): c for c in doc["configurations"]}
    assert set(configs) == {(1, 1), (4, 1)}
    for c in configs.values():
        s = c["stream"]
        assert s["samples"] >= 50 and s["min"] <= s["p50"] <= s["p99"] <= s["max"]
        assert s["p99_ci"][0] <= s["p99"] <= s["p99_ci"][1]
        assert c["session_ms"] > 0 and c["first_inference_ms"] > 0
        assert c["peak_rss_mb"] > 0 and c["harness_overhead_ms"] > 0
        assert s["throughput_samples_s"] > 0
    assert doc["server"] and all(p["rate"] > 0 for p in doc["server"])
    assert doc["host"]["cores"] >= 1 and doc["manifest_sha256"]
    assert doc["oemkit_version"] and doc["host"]["onnxruntime"]


def test_recommendation_arithmetic_is_shown_and_right(sized):
    """The served figures size the instances; the in-process ones are only the ceiling."""
    doc, _ = sized
    rec = doc["recommendation"]
    assert rec["achievable"] and rec["basis"] == "served"
    qps = rec["sustainable_qps_per_instance"]
    assert rec["instances"] == math.ceil(500 / (qps * 0.7)) + 1
    assert rec["arithmetic"].startswith(f"ceil(500 / ({qps:.1f} x (1 - 0.3))) + 1")
    assert max(lv["rate"] for lv in doc["served"]["levels"] if lv["meets_slo"]) == qps
    top = doc["ceiling"]["sustainable_qps_per_instance"]
    assert max(p["rate"] for p in doc["server"] if p["meets_slo"]) == top


def test_unreachable_slo_is_a_clear_answer():
    doc = {"server": [{"rate": 10.0, "p99": 80.0, "meets_slo": False}],
           "configurations": [{"batch": 1, "threads": 1, "peak_rss_mb": 90,
                               "stream": {"p99": 75.0}}]}
    rec = ceiling(doc, Slo("p99", 50))
    assert rec["achievable"] is False
    assert rec["reason"].startswith("not achievable on this host with any number of "
                                    "instances: even unloaded, one instance's best p99 is "
                                    "75.00 ms (batch 1, 1 thread(s)), above the 50 ms SLO")


def test_reports_are_self_contained_and_include_the_k8s_snippet(sized):
    doc, _ = sized
    md = to_markdown(doc)
    assert "## Served: oemkit serve, 1 worker(s)" in md and "| batch | threads |" in md
    assert "## Model-only ceiling: Poisson arrivals in process" in md
    assert "instances: **" in md and "- SLO: p99 <= 2000 ms" in md
    page = to_html(doc)
    assert "<h2>Recommendation (from the served figures)</h2>" in page
    assert "<th>queue ms</th>" in page and "<th>compute ms</th>" in page
    assert page.count("<svg") >= 4 and "SLO 2000 ms" in page  # tests/test_charts.py: the rest
    assert not re.search(r"(src|href)=\"https?://", page)  # nothing fetched from a network
    assert "<script" not in page
    snippet = k8s_snippet(doc)
    assert f"replicas: {doc['recommendation']['instances']}" in snippet
    assert "requests: {cpu: \"1\"" in snippet


def test_compare_reports_ratios_and_regressions(sized, tmp_path):
    doc, _ = sized
    slower = json.loads(json.dumps(doc))
    for c in slower["configurations"]:
        c["stream"]["p50"] *= 1.5
        c["stream"]["throughput_samples_s"] /= 1.5
    rows = {r["figure"]: r for r in compare(doc, slower)}
    assert rows["batch 1, 1 thr p50 ms"]["ratio"] == pytest.approx(1.5)
    assert rows["batch 1, 1 thr p50 ms"]["worse"] is True
    (tmp_path / "a.json").write_text(json.dumps(doc))
    (tmp_path / "b.json").write_text(json.dumps(slower))
    same = cli("sizing", "compare", tmp_path / "a.json", tmp_path / "a.json",
               "--max-regression", "0.1", "--json")
    assert same.exit_code == 0 and json.loads(same.stdout)["regressed"] == []
    worse = cli("sizing", "compare", tmp_path / "a.json", tmp_path / "b.json",
                "--max-regression", "0.1", "--json")
    assert worse.exit_code == 1
    assert "batch 1, 1 thr p50 ms" in json.loads(worse.stdout)["regressed"]


def test_cli_writes_the_three_reports(sized, trust_file, tmp_path):
    _, bundle = sized
    out = tmp_path / "out"
    result = cli("sizing", bundle, "--profile", "cpu-small", "--trust", trust_file,
                 "--target-qps", "100", "--slo", "p99=2s", "--batch", "1",
                 "--duration", "0.2s", *SERVED, "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["sizing.html", "sizing.json", "sizing.md"]
    written = json.loads((out / "sizing.json").read_text())
    assert written["request"]["slo"] == {"percentile": "p99", "ms": 2000}
    said = " ".join(result.stderr.split())  # the console wraps long lines
    assert "one instance (oemkit serve, 1 worker(s)) sustains" in said, said
    assert "queries/s served at p99 <= 2000 ms" in said


def test_a_profile_the_host_does_not_satisfy_is_reported(sized, trust_v2):
    _, bundle = sized
    with pytest.raises(EnvironmentProblem) as err:
        run_sizing(bundle, "gpu-cuda", trust_v2, QUICK)
    assert err.value.code == "E_PROFILE_UNMET"
    assert "required provider CUDAExecutionProvider is not available" in err.value.message


@pytest.mark.parametrize("args, words", [
    (["--batch", "0"], "--batch '0' is not a list of positive integers"),
    (["--slo", "fast"], "--slo 'fast' is not a latency percentile"),
    (["--slo", "p97=5ms"], "--slo 'p97=5ms': p97 is not one of p50, p90, p95, p99, p99.9"),
    (["--duration", "soon"], "--duration 'soon' is not a duration"),
    (["--level-duration", "soon"], "--level-duration 'soon' is not a duration"),
    (["--levels", "0.5,0"], "--levels '0.5,0' is not a list of fractions"),
    (["--levels", "nan"], "--levels 'nan' is not a list of fractions"),
    (["--mlperf", "maybe"], "--mlperf 'maybe' is not auto, on or off"),
    (["--workers", "0"], "--workers"),
    (["--format", "pdf"], "--format 'pdf'"),
])
def test_bad_options_are_usage_errors(sized, trust_file, args, words):
    _, bundle = sized
    result = cli("sizing", bundle, "--profile", "cpu-small", "--trust", trust_file, *args)
    assert result.exit_code == 2 and words in result.stderr


def test_parsers():
    assert parse_slo("p99=50ms") == Slo("p99", 50) and parse_slo("0.2s") == Slo("p99", 200)
    assert parse_slo("p50=1ms") == Slo("p50", 1) and parse_slo("P99.9 = 2s") == Slo("p99.9", 2000)
    assert parse_duration("20s") == 20 and parse_duration("500ms") == 0.5
    with pytest.raises(UsageError):
        parse_slo("p97=1ms")


@pytest.mark.parametrize("text", ["9" * 400, "0", "0.0ms", "1" * 13 + "ms"])
def test_slo_parser_refuses_huge_and_zero(text):
    """400 digits used to become inf (a sizing against an infinite SLO); zero is no SLO."""
    with pytest.raises(UsageError) as info:
        parse_slo(text)
    assert info.value.code == "E_USAGE" and "is not a latency percentile" in info.value.message
    assert "at most 12 characters" in info.value.hint


def test_duration_parser_refuses_huge_numbers():
    with pytest.raises(UsageError) as info:
        parse_duration("9" * 400 + "s")
    assert info.value.code == "E_USAGE" and "is not a duration" in info.value.message


def test_interrupted_run_keeps_what_was_measured(sized, trust_v2, monkeypatch):
    import oemkit.measure.sizing as sizing

    doc, bundle = sized
    partial = dict(doc["configurations"][0], complete=False, mode="stream")
    calls = []

    def spawn(req, *args):
        calls.append(req["mode"])
        raise sizing._Interrupted(dict(partial, batch=req["batch"], threads=req["threads"]))

    monkeypatch.setattr(sizing, "_spawn", spawn)
    result = run_sizing(bundle, "cpu-small", trust_v2, QUICK)
    assert result["complete"] is False and calls == ["stream"]
    assert len(result["configurations"]) == 1
    assert any("interrupted (Ctrl-C)" in n for n in result["notes"])
    assert "complete: NO (interrupted)" in to_markdown(result)


def test_slo_missed_under_load_but_not_unloaded_is_explained():
    doc = {"server": [{"rate": 100.0, "p99": 90.0, "meets_slo": False}],
           "configurations": [{"batch": 8, "threads": 1, "peak_rss_mb": 90,
                               "stream": {"p99": 0.02}}]}
    rec = ceiling(doc, Slo("p99", 50))
    assert rec["reason"].startswith("not achievable on this host at any tested load: "
                                    "unloaded, p99 is 0.02 ms, but already at 100.0 queries/s")


def test_compare_refuses_files_that_are_not_sizing_reports(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    result = cli("sizing", "compare", tmp_path / "x.json", tmp_path / "x.json")
    assert result.exit_code == 3 and "E_SIZING_INVALID" in result.stderr


def test_compare_is_a_subcommand_with_two_files(tmp_path):
    """`sizing compare` takes exactly A.json and B.json (E_USAGE otherwise, a JSON error
    document with --json); its help is its own, the measurement's is `sizing --help`."""
    (tmp_path / "a.json").write_text('{"hello": 1}')
    one = cli("sizing", "compare", tmp_path / "a.json", "--json")
    assert one.exit_code == 2 and json.loads(one.stdout)["error"]["code"] == "E_USAGE"
    three = cli("sizing", "compare", tmp_path / "a.json", tmp_path / "a.json", "x.json")
    assert three.exit_code == 2 and "E_USAGE" not in three.stdout
    helped = cli("sizing", "compare", "--help")
    assert helped.exit_code == 0 and "--max-regression" in helped.output
    assert "--profile" not in helped.output and "A.json" in helped.output
    measuring = cli("sizing", "--help")
    assert measuring.exit_code == 0
    assert measuring.output.startswith("Usage: oemkit sizing [OPTIONS] {BUNDLE}")
    assert "--profile" in measuring.output and "sizing compare" in measuring.output


@pytest.mark.parametrize("args", [[], ["--json"], ["a.oemb", "b.oemb"]])
def test_sizing_without_one_bundle_is_a_usage_error(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("sizing", *args)
    assert result.exit_code == 2 and "oemkit sizing --help" in result.stderr
    if "--json" in args:
        assert json.loads(result.stdout)["error"]["code"] == "E_USAGE"


def test_sizing_without_profile_or_trust_says_so(tmp_path):
    result = cli("sizing", tmp_path / "x.oemb", "--profile", "cpu-small", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["message"] == (
        "sizing takes one bundle, --profile and --trust")
