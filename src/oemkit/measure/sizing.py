"""Sizing: measure a verified bundle on this host, then turn a target load into instances.

Every configuration (batch size x thread count) runs in its own fresh process
(``_sizing_child.py``): session creation, first inference, then latency samples until the
p99's confidence interval is within 5 % or the time budget ends. A server scenario then
drives one instance with open-loop Poisson arrivals at increasing rates to find the
highest rate whose p99 stays inside the SLO. The recommendation is::

    instances = ceil(target_qps / (sustainable_qps x (1 - headroom))) + redundancy
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oemkit import __version__
from oemkit.errors import EnvironmentProblem, InputError, UsageError

CHILD = Path(__file__).with_name("_sizing_child.py")
ProgressFn = Callable[[str], None]
#: Below this many harness overheads per call, the harness is more than 2 % of a sample.
RESOLUTION_FACTOR = 50.0
NOISY_SPREAD = 0.05


@dataclass(frozen=True)
class SizingRequest:
    """What to measure and what load to size for."""

    target_qps: float | None = None
    slo_p99_ms: float | None = None
    headroom: float = 0.3
    redundancy: int = 0
    batches: tuple[int, ...] = (1, 8, 32)
    threads: tuple[int, ...] = ()
    duration_s: float = 5.0
    server_duration_s: float = 3.0
    force: bool = False


#: Longest number text parse_slo and parse_duration take (400 digits would be ``inf``).
MAX_NUMBER_DIGITS = 12


def parse_slo(text: str) -> float:
    """``p99=50ms`` (or ``50ms``, ``0.05s``) -> milliseconds at p99."""
    import re

    match = re.fullmatch(r"(?:p99=)?\s*([0-9]*\.?[0-9]+)\s*(ms|s)?", text.strip())
    if not match or len(match.group(1)) > MAX_NUMBER_DIGITS or float(match.group(1)) <= 0:
        raise UsageError("E_USAGE", f"--slo {text[:40]!r} is not a p99 latency",
                         hint=f"a positive number of at most {MAX_NUMBER_DIGITS} characters "
                              "with ms or s, e.g. --slo p99=50ms")
    value = float(match.group(1))
    return value * 1000 if match.group(2) == "s" else value


def parse_duration(text: str) -> float:
    import re

    match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ms|s|m)?", text.strip())
    if not match or len(match.group(1)) > MAX_NUMBER_DIGITS:
        raise UsageError("E_USAGE", f"--duration {text[:40]!r} is not a duration",
                         hint=f"a number of at most {MAX_NUMBER_DIGITS} characters with ms, s "
                              "or m, e.g. --duration 20s")
    value = float(match.group(1))
    return {"ms": value / 1000, "m": value * 60}.get(match.group(2) or "s", value)


def _spawn(req: dict[str, Any], work: Path, python: str, timeout: float) -> dict[str, Any]:
    req_path = work / f"req-{time.monotonic_ns()}.json"
    out = req_path.with_suffix(".out.json")
    req["out"] = str(out)
    req_path.write_text(json.dumps(req))
    proc = subprocess.Popen([python, str(CHILD), str(req_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"ok": False, "error": f"the measurement did not finish within {timeout:g} s"}
    except KeyboardInterrupt:
        # The child got the same SIGINT: give it time to write what it measured.
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        result: dict[str, Any] = (json.loads(out.read_text()) if out.is_file()
                                  else {"ok": False, "error": "interrupted"})
        result.update(complete=False, batch=req.get("batch"), threads=req.get("threads"))
        raise _Interrupted(result) from None
    if not out.is_file():
        tail = " | ".join((stderr or "").strip().splitlines()[-3:])
        return {"ok": False, "error": f"the measurement process failed: {tail}"}
    data: dict[str, Any] = json.loads(out.read_text())
    return data


class _Interrupted(Exception):
    def __init__(self, partial: dict[str, Any]) -> None:
        super().__init__("interrupted")
        self.partial = partial


def run_sizing(bundle: Path, profile_name: str, trust: Path | bytes, request: SizingRequest,
               *, progress: ProgressFn | None = None,
               python: str = sys.executable) -> dict[str, Any]:
    """Measure and recommend; returns the sizing document (what ``sizing.json`` holds)."""
    from oemkit.host.profiles import load_profile
    from oemkit.host.unpack import unpack_bundle

    say = progress or (lambda _msg: None)
    profile = load_profile(profile_name) if profile_name.endswith((".yaml", ".yml")) or (
        "/" in profile_name) else None
    work = Path(tempfile.mkdtemp(prefix="oemkit-sizing-"))
    try:
        report = unpack_bundle(bundle, work / "bundle", trust)
        if not report.ok:
            assert report.error is not None
            raise report.error
        # The bundle's own profiles/NAME.yaml takes precedence over a shipped profile.
        profile = profile or load_profile(profile_name, work / "bundle")
        return _run(bundle, report, profile, request, work, say, python)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(bundle: Path, report: Any, profile: Any, request: SizingRequest, work: Path,
         say: ProgressFn, python: str) -> dict[str, Any]:
    from oemkit.host.profiles import detect_host, unmet

    host = detect_host()
    reasons = unmet(profile, host)
    if reasons and not request.force:
        raise EnvironmentProblem(
            "E_PROFILE_UNMET", f"this host does not satisfy profile {profile.name}: "
            + "; ".join(reasons), hint="size on a host that matches the profile, choose "
            "another --profile, or pass --force to measure anyway (the report says so)")
    slo = request.slo_p99_ms or float(profile.budgets.get("p95_ms", 100.0))
    threads = request.threads or ((profile.intra_op or host.cores),)
    doc: dict[str, Any] = {
        "oemkit_version": __version__, "bundle": str(bundle), "profile": profile.to_dict(),
        "host": host.to_dict(), "unmet": reasons, "complete": True,
        "request": {"target_qps": request.target_qps, "slo_p99_ms": slo,
                    "headroom": request.headroom, "redundancy": request.redundancy,
                    "batches": list(request.batches), "threads": list(threads),
                    "duration_s": request.duration_s},
        "configurations": [], "server": [], "notes": [],
    }
    if reasons:
        doc["notes"].append("--force: this host does not satisfy the profile (" +
                            "; ".join(reasons) + "); the figures describe this host only")
    manifest = report.manifest
    golden = (manifest.runtime.golden or {}).get("inputs")
    if not golden or not golden.endswith(".json"):
        raise InputError("E_NO_GOLDEN", "sizing needs the bundle's golden inputs as JSON",
                         hint="add golden.inputs (JSON tensors) to the bundle spec")
    doc.update(name=manifest.name, version=manifest.version,
               manifest_sha256=report.manifest_sha256)
    base = {"model": str(work / "bundle" / manifest.runtime.model),
            "inputs": str(work / "bundle" / golden),
            "providers": [p.name for p in profile.providers
                          if p.name in host.providers] or ["CPUExecutionProvider"],
            "warmup": 20}
    if python == sys.executable:  # measured in oemkit's own interpreter: its onnx extra
        from oemkit._extras import require_onnx

        require_onnx("oemkit sizing", ("onnxruntime", "numpy"))
    try:
        _measure(doc, base, request, threads, slo, work, python, say)
    except _Interrupted as stop:
        doc["complete"] = False
        doc["notes"].append("interrupted (Ctrl-C): the figures below are what was "
                            "measured before it; the run is incomplete")
        if stop.partial.get("stream") and stop.partial.get("mode") == "stream":
            doc["configurations"].append(stop.partial)
    doc["recommendation"] = recommend(doc, request, slo)
    return doc


def _measure(doc: dict[str, Any], base: dict[str, Any], request: SizingRequest,
             threads: Sequence[int], slo: float, work: Path, python: str,
             say: ProgressFn) -> None:
    timeout = request.duration_s * 4 + 120
    for t in threads:
        for batch in request.batches:
            say(f"batch {batch}, {t} thread(s)")
            result = _spawn({**base, "mode": "stream", "batch": batch, "threads": t,
                             "duration_s": request.duration_s}, work, python, timeout)
            result.update(batch=batch, threads=t)
            if not result.get("ok"):
                doc["notes"].append(f"batch {batch}, {t} thread(s): {result.get('error')}")
                continue
            _annotate(doc, result)
            doc["configurations"].append(result)
    single = [c for c in doc["configurations"] if c["batch"] == 1]
    if not single:
        doc["notes"].append("no batch-1 measurement: the server scenario was not run")
        return
    best = max(single, key=lambda c: c["stream"]["throughput_samples_s"] or 0)
    rate = max(1.0, 0.5 * (best["stream"]["throughput_samples_s"] or 1.0))
    good: float | None = None
    bad: float | None = None
    for _ in range(12):
        if bad is not None and good is not None and bad / good < 1.1:
            break
        say(f"server scenario at {rate:.0f} queries/s")
        result = _spawn({**base, "mode": "server", "batch": 1, "threads": best["threads"],
                         "rate": rate, "queries": int(max(200, rate * request.server_duration_s)),
                         "duration_s": request.server_duration_s}, work, python,
                        request.server_duration_s * 4 + 120)
        if not result.get("ok") or not result.get("server"):
            doc["notes"].append(f"server scenario at {rate:.0f}/s: {result.get('error')}")
            break
        point = result["server"]
        keeps_up = (point["achieved_qps"] or 0) >= 0.95 * rate
        meets = point["p99"] is not None and point["p99"] <= slo and keeps_up
        point["meets_slo"] = meets
        doc["server"].append(point)
        if meets:
            good = rate
        else:
            bad = rate
        rate = rate * 2 if bad is None else ((good or rate / 4) + bad) / 2
        if good is None and bad is not None and rate < 1.0:
            break
    doc["server"].sort(key=lambda p: p["rate"])


def _annotate(doc: dict[str, Any], result: dict[str, Any]) -> None:
    stream = result["stream"]
    overhead = result.get("harness_overhead_ms") or 0.0
    per_call = stream["p50"] or 0.0
    if per_call and per_call < RESOLUTION_FACTOR * overhead:
        doc["notes"].append(
            f"batch {result['batch']}: the model ({per_call:.4f} ms per call) is faster than "
            f"{RESOLUTION_FACTOR:g}x the harness overhead ({overhead:.4f} ms per sample): the "
            "harness is more than 2 % of these figures (nothing was subtracted)")
    thirds = [b for b in result.get("thirds_p50", []) if b]
    if len(thirds) == 3:
        spread = (max(thirds) - min(thirds)) / sorted(thirds)[1]
        result["spread"] = spread
        if spread > NOISY_SPREAD:
            doc["notes"].append(f"batch {result['batch']}, {result['threads']} thread(s): p50 "
                                f"varied {spread:.0%} across the run's thirds (more than "
                                f"{NOISY_SPREAD:.0%}): a noisy host; repeat on an idle machine")


def _why_not(doc: dict[str, Any], slo: float) -> str:
    """The plain answer when no arrival rate kept the p99 inside the SLO."""
    measured = [c for c in doc["configurations"] if c["stream"]["p99"] is not None]
    if not measured:
        return "no measurement completed, so nothing can be recommended"
    best = min(measured, key=lambda c: c["stream"]["p99"])
    if best["stream"]["p99"] > slo:
        return (f"not achievable on this host with any number of instances: even unloaded, "
                f"one instance's best p99 is {best['stream']['p99']:.2f} ms (batch "
                f"{best['batch']}, {best['threads']} thread(s)), above the {slo:g} ms SLO "
                "(more instances add throughput, not speed)")
    tried = min(doc["server"], key=lambda p: p["rate"]) if doc["server"] else None
    if tried is None:
        return "the server scenario did not run (see the notes), so no rate is known"
    return (f"not achievable on this host at any tested load: unloaded, p99 is "
            f"{best['stream']['p99']:.2f} ms, but already at {tried['rate']:.1f} queries/s "
            f"the p99 under random arrivals was {tried['p99']:.2f} ms, above the {slo:g} ms "
            "SLO")


def recommend(doc: dict[str, Any], request: SizingRequest, slo: float) -> dict[str, Any]:
    """Instances for the target load, with the arithmetic written out."""
    passing = [p for p in doc["server"] if p.get("meets_slo")]
    rss = max((c.get("peak_rss_mb") or 0 for c in doc["configurations"]), default=0.0)
    cores = max((c["threads"] for c in doc["configurations"]), default=1)
    out: dict[str, Any] = {"slo_p99_ms": slo, "memory_mb_per_instance": math.ceil(rss),
                           "cores_per_instance": cores}
    if not passing:
        out.update(achievable=False, reason=_why_not(doc, slo))
        return out
    qps = max(p["rate"] for p in passing)
    out.update(achievable=True, sustainable_qps_per_instance=qps)
    if request.target_qps:
        per = qps * (1 - request.headroom)
        base = math.ceil(request.target_qps / per)
        out.update(instances=base + request.redundancy, arithmetic=(
            f"ceil({request.target_qps:g} / ({qps:.1f} x (1 - {request.headroom:g}))) + "
            f"{request.redundancy} = ceil({request.target_qps / per:.2f}) + "
            f"{request.redundancy} = {base + request.redundancy}"))
    return out
