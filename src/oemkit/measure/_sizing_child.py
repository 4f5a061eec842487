"""The sizing measurement process: run as a plain script, never imported (like the smoke
child), so each configuration starts cold and measures only onnxruntime and numpy.

Modes (``REQUEST.json`` field ``mode``):

- ``stream``: session creation, first inference, then latency samples in blocks until the
  reported percentile's confidence interval is narrow enough or the time budget ends;
  throughput, CPU utilisation, peak RSS, and the harness's own per-sample overhead.
- ``server``: open-loop Poisson arrivals at a given rate against one session (one
  instance); latency is completion minus scheduled arrival, so queueing counts.

A Ctrl-C (SIGINT) stops the loop; what was measured is written, marked incomplete.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def _pct(sorted_ms: list[Any], p: float) -> Any:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, round(p / 100.0 * (len(sorted_ms) - 1)))]


def _ci(sorted_ms: list[Any], p: float, z: float = 1.96) -> tuple[Any, Any]:
    """Distribution-free confidence interval of the p-th percentile (binomial order
    statistics, as MLPerf LoadGen's early-stopping estimate uses)."""
    n = len(sorted_ms)
    q = p / 100.0
    half = z * math.sqrt(n * q * (1 - q))
    lo = max(0, math.floor(n * q - half))
    hi = min(n - 1, math.ceil(n * q + half))
    return sorted_ms[lo], sorted_ms[hi]


def _summary(samples: list[float], batch: int, wall_s: float) -> dict[str, Any]:
    s = sorted(samples)
    lo, hi = _ci(s, 99) if s else (float("nan"), float("nan"))
    return {
        "samples": len(s), "batch": batch, "min": s[0] if s else None,
        "max": s[-1] if s else None, "mean": sum(s) / len(s) if s else None,
        "p50": _pct(s, 50), "p90": _pct(s, 90), "p95": _pct(s, 95), "p99": _pct(s, 99),
        "p99.9": _pct(s, 99.9), "p99_ci": [lo, hi],
        "throughput_samples_s": (len(s) * batch / wall_s) if wall_s > 0 else None,
        "distribution": [[p, _pct(s, p)] for p in (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)]
        if s else [],
    }


def _feed(session: Any, golden: dict[str, Any], batch: int, np: Any) -> dict[str, Any]:
    feed = {}
    for inp in session.get_inputs():
        value = golden[inp.name]
        if value.ndim:
            reps = -(-batch // max(1, value.shape[0]))
            value = np.concatenate([value] * reps)[:batch]
        feed[inp.name] = value
    return feed


def _harness_overhead_ms(n: int = 20000) -> float:
    """What one step of the measurement loop costs around a call that does nothing."""
    def nothing(_a: Any, _b: Any) -> None:
        return None

    clock = time.perf_counter_ns
    stamps = [0] * (n + 1)
    for i in range(n):
        stamps[i] = clock()
        nothing(None, None)
    stamps[n] = clock()
    gaps = sorted(stamps[i + 1] - stamps[i] for i in range(n))
    return gaps[n // 2] / 1e6


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        req = json.load(handle)
    out = req["out"]
    result: dict[str, Any] = {"ok": True, "complete": True, "mode": req["mode"]}
    try:
        _run(req, result)
    except KeyboardInterrupt:
        result["complete"] = False
    except Exception as exc:  # reported to the parent, which decides
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


def _run(req: dict[str, Any], result: dict[str, Any]) -> None:
    import numpy as np
    import onnxruntime as ort

    result["onnxruntime"] = ort.__version__
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(req.get("threads", 0))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    t = time.perf_counter()
    session = ort.InferenceSession(req["model"], sess_options=options,
                                   providers=req["providers"])
    result["session_ms"] = (time.perf_counter() - t) * 1000.0
    result["providers_used"] = session.get_providers()
    with open(req["inputs"], encoding="utf-8") as handle:
        golden = {k: np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"])
                  for k, v in json.load(handle).items()}
    batch = int(req.get("batch", 1))
    feed = _feed(session, golden, batch, np)
    run = session.run
    t = time.perf_counter()
    run(None, feed)
    result["first_inference_ms"] = (time.perf_counter() - t) * 1000.0
    for _ in range(int(req.get("warmup", 20))):
        run(None, feed)
    result["harness_overhead_ms"] = _harness_overhead_ms()
    if req["mode"] == "server":
        _server(req, result, run, feed)
    else:
        _stream(req, result, run, feed, batch)


def _stream(req: dict[str, Any], result: dict[str, Any], run: Any, feed: Any,
            batch: int) -> None:
    clock = time.perf_counter_ns
    max_s = float(req.get("duration_s", 5.0))
    min_samples = int(req.get("min_samples", 200))
    target_rel = float(req.get("ci_rel", 0.05))
    blocks: list[list[int]] = []
    cpu0 = os.times()
    start = clock()
    deadline = start + int(max_s * 1e9)
    size = max(50, min_samples // 4)
    stamps = [0] * (size + 1)
    next_check = min_samples

    def gaps() -> list[int]:
        return [g for b in blocks for g in map(int.__sub__, b[1:], b[:-1])]

    try:
        while True:
            # One timestamp per call, back to back: each sample is one call plus one loop
            # step, and the clock is read once per call instead of twice. Raw integer
            # stamps are kept; differences are taken only when needed.
            for i in range(size):
                stamps[i] = clock()
                run(None, feed)
            stamps[size] = clock()
            blocks.append(stamps[:])
            if stamps[size] >= deadline:
                result["stopped"] = "time budget"
                break
            count = len(blocks) * size
            if count >= next_check and len(blocks) >= 3:
                # The stopping rule sorts the samples: only when their count has doubled.
                next_check = 2 * count
                s = sorted(gaps())
                lo, hi = _ci(s, 99)
                p99 = _pct(s, 99)
                if p99 > 0 and (hi - lo) / p99 <= target_rel:
                    result["stopped"] = "stable"
                    break
    except KeyboardInterrupt:
        result["complete"] = False
    wall = (clock() - start) / 1e9
    cpu1 = os.times()
    samples = [g / 1e6 for g in gaps()]
    result["stream"] = _summary(samples, batch, wall)
    # Repeatability: p50 of three consecutive thirds of the run (after the first tenth).
    steady = samples[len(samples) // 10:]
    third = len(steady) // 3
    result["thirds_p50"] = [_pct(sorted(steady[i * third:(i + 1) * third]), 50)
                            for i in range(3)] if third else []
    result["cpu_utilisation_cores"] = ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
                                       ) / wall if wall > 0 else None


def _server(req: dict[str, Any], result: dict[str, Any], run: Any, feed: Any) -> None:
    rate = float(req["rate"])
    n = int(req.get("queries", 1000))
    max_s = float(req.get("duration_s", 5.0))
    rng = random.Random(int(req.get("seed", 1)))
    clock = time.perf_counter
    latencies: list[float] = []
    start = clock()
    due = start
    try:
        for _ in range(n):
            due += rng.expovariate(rate)
            while clock() < due:  # spin: sleep() is too coarse for sub-ms arrivals
                pass
            run(None, feed)
            latencies.append((clock() - due) * 1000.0)
            if clock() - start > max_s:
                break
    except KeyboardInterrupt:
        result["complete"] = False
    wall = clock() - start
    result["server"] = _summary(latencies, 1, wall)
    result["server"]["rate"] = rate
    result["server"]["achieved_qps"] = len(latencies) / wall if wall > 0 else None


if __name__ == "__main__":
    main()
