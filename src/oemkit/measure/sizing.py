"""Sizing: measure a verified bundle on this host, then turn a target load into instances.

Two measurements, both reported:

- **Served** (the recommendation's basis): ``oemkit serve`` started from the bundle in its
  own process, driven over loopback by a load generator in another process
  (``_loadgen_child.py``): a closed-loop probe (concurrency 1: the unloaded latency; many
  connections: the capacity), then open-loop Poisson arrivals at several offered rates
  (fractions of that capacity, refined by bisection), latency from each request's
  scheduled send to its parsed response; after each level the server's /metrics split
  its time into queue and compute. MLPerf LoadGen (Server scenario), when installed, is a
  second driver at the same rates. Each driver's own overhead is measured too.
- **Model-only ceiling**: every configuration (batch size x thread count) in a fresh
  process (``_sizing_child.py``) timing ``session.run`` in a loop, and an in-process
  Poisson scenario: no HTTP, no server, an upper bound no deployed service reaches.

The recommendation, from the served figures at the SLO::

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


#: The percentiles an SLO may name, with their value in percent.
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}


@dataclass(frozen=True)
class Slo:
    """A latency objective: ``percentile`` (a key of :data:`PERCENTILES`) at most ``ms``."""

    percentile: str = "p99"
    ms: float = 100.0

    def __str__(self) -> str:
        return f"{self.percentile} <= {self.ms:g} ms"


@dataclass(frozen=True)
class SizingRequest:
    """What to measure and what load to size for.

    ``slo``: None means the profile's p95 budget. The served measurement starts ``oemkit
    serve`` with ``workers`` workers (None: what ``oemkit serve`` would choose) and offers
    ``levels`` (fractions of the capacity its closed-loop probe measured) for
    ``level_duration_s`` each; ``mlperf``: ``auto`` (MLPerf LoadGen as a second driver
    when installed), ``on`` (required: E_MISSING_EXTRA without it) or ``off``."""

    target_qps: float | None = None
    slo: Slo | None = None
    headroom: float = 0.3
    redundancy: int = 0
    batches: tuple[int, ...] = (1, 8, 32)
    threads: tuple[int, ...] = ()
    duration_s: float = 5.0
    server_duration_s: float = 3.0
    force: bool = False
    workers: int | None = None
    levels: tuple[float, ...] = (0.25, 0.5, 0.7, 0.85, 1.0)
    level_duration_s: float = 3.0
    max_connections: int = 64
    mlperf: str = "auto"


#: Longest number text parse_slo and parse_duration take (400 digits would be ``inf``).
MAX_NUMBER_DIGITS = 12


def parse_slo(text: str) -> Slo:
    """``p95=20ms`` (``p50``, ``p90``, ``p95``, ``p99``, ``p99.9``; ``s`` or ``ms``) -> Slo;
    a bare ``50ms`` or ``0.05s`` is a p99.

    Raises:
        UsageError: E_USAGE, naming the percentiles accepted or the number's bounds.
    """
    import re

    shown = repr(text[:40])
    match = re.fullmatch(r"(?:([A-Za-z][0-9.]*)\s*=)?\s*([0-9]*\.?[0-9]+)\s*(ms|s)?",
                         text.strip())
    if match and match.group(1) is not None and match.group(1).lower() not in PERCENTILES:
        raise UsageError("E_USAGE", f"--slo {shown}: {match.group(1)[:10]} is not one of "
                         f"{', '.join(PERCENTILES)}",
                         hint="e.g. --slo p95=20ms or --slo p99=50ms")
    if not match or len(match.group(2)) > MAX_NUMBER_DIGITS or float(match.group(2)) <= 0:
        raise UsageError("E_USAGE", f"--slo {shown} is not a latency percentile",
                         hint=f"PERCENTILE=NUMBER with ms or s, PERCENTILE one of "
                              f"{', '.join(PERCENTILES)} (default p99) and a positive number "
                              f"of at most {MAX_NUMBER_DIGITS} characters, e.g. --slo p95=20ms")
    value = float(match.group(2))
    return Slo((match.group(1) or "p99").lower(),
               value * 1000 if match.group(3) == "s" else value)


def parse_duration(text: str, what: str = "--duration") -> float:
    """``20s``, ``500ms``, ``2m`` (a bare number is seconds) -> seconds.

    Raises:
        UsageError: E_USAGE, naming ``what`` (the option).
    """
    import re

    match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ms|s|m)?", text.strip())
    if not match or len(match.group(1)) > MAX_NUMBER_DIGITS:
        raise UsageError("E_USAGE", f"{what} {text[:40]!r} is not a duration",
                         hint=f"a number of at most {MAX_NUMBER_DIGITS} characters with ms, s "
                              f"or m, e.g. {what} 20s")
    value = float(match.group(1))
    return {"ms": value / 1000, "m": value * 60}.get(match.group(2) or "s", value)


def _spawn(req: dict[str, Any], work: Path, python: str, timeout: float,
           child: Path = CHILD) -> dict[str, Any]:
    req_path = work / f"req-{time.monotonic_ns()}.json"
    out = req_path.with_suffix(".out.json")
    req["out"] = str(out)
    req_path.write_text(json.dumps(req))
    proc = subprocess.Popen([python, str(child), str(req_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            cwd=work)
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


class _Say:
    """The run's two progress callbacks: ``progress`` before each measurement (what is
    being measured now: a terminal's spinner), ``measured`` after it (one line with its
    figures: the log of a run whose stderr is not a terminal)."""

    def __init__(self, progress: ProgressFn | None, measured: ProgressFn | None) -> None:
        self._progress, self._measured = progress, measured

    def __call__(self, message: str) -> None:
        if self._progress is not None:
            self._progress(message)

    def done(self, message: str) -> None:
        """One measurement finished: ``message`` says what and its figures."""
        if self._measured is not None:
            self._measured(message)


def _ms(value: Any) -> str:
    """A latency for a progress line (``0.109 ms``, ``12.3 ms``, ``1604 ms``; ``-`` when
    there is none)."""
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.3g} ms"


def _per_s(value: Any) -> str:
    """A rate for a progress line (``184/s``)."""
    return f"{value:.0f}/s" if isinstance(value, (int, float)) else "-/s"


class _Interrupted(Exception):
    def __init__(self, partial: dict[str, Any]) -> None:
        super().__init__("interrupted")
        self.partial = partial


def run_sizing(bundle: Path, profile_name: str, trust: Path | bytes, request: SizingRequest,
               *, progress: ProgressFn | None = None,
               measured: ProgressFn | None = None,
               python: str = sys.executable) -> dict[str, Any]:
    """Measure and recommend; returns the sizing document (what ``sizing.json`` holds).

    ``progress`` is told what is measured next; ``measured`` gets one line per finished
    measurement (each in-process configuration with its place, ``(2/6)``, and each
    model-only, closed-loop and served load level) with its figures.

    Raises:
        EnvironmentProblem: E_PROFILE_UNMET (without ``force``), E_MISSING_EXTRA (the
            ONNX stack in oemkit's interpreter; MLPerf LoadGen with ``mlperf="on"``).
        InputError: E_NO_GOLDEN, and the verifier's and the profile's codes.
    """
    from oemkit.host.profiles import load_profile
    from oemkit.host.unpack import unpack_bundle

    say = _Say(progress, measured)
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
        if isinstance(trust, bytes):
            (work / "trust-root.json").write_bytes(trust)
            trust = work / "trust-root.json"
        served = _Served(bundle, Path(trust), profile_name, work)
        return _run(bundle, report, profile, request, work, say, python, served)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(bundle: Path, report: Any, profile: Any, request: SizingRequest, work: Path,
         say: _Say, python: str, served: _Served | None = None) -> dict[str, Any]:
    from oemkit.host.profiles import detect_host, unmet

    host = detect_host()
    reasons = unmet(profile, host)
    if reasons and not request.force:
        raise EnvironmentProblem(
            "E_PROFILE_UNMET", f"this host does not satisfy profile {profile.name}: "
            + "; ".join(reasons), hint="size on a host that matches the profile, choose "
            "another --profile, or pass --force to measure anyway (the report says so)")
    slo = request.slo or Slo("p95", float(profile.budgets.get("p95_ms", 100.0)))
    threads = request.threads or ((profile.intra_op or host.cores),)
    doc: dict[str, Any] = {
        "oemkit_version": __version__, "bundle": str(bundle), "profile": profile.to_dict(),
        "host": host.to_dict(), "unmet": reasons, "complete": True,
        "request": {"target_qps": request.target_qps,
                    "slo": {"percentile": slo.percentile, "ms": slo.ms},
                    "headroom": request.headroom,
                    "redundancy": request.redundancy, "batches": list(request.batches),
                    "threads": list(threads), "duration_s": request.duration_s,
                    "workers": request.workers, "levels": list(request.levels),
                    "level_duration_s": request.level_duration_s, "mlperf": request.mlperf},
        "configurations": [], "server": [], "served": None, "notes": [],
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
    use_mlperf = _mlperf_wanted(request.mlperf)
    if served is not None:
        from oemkit._extras import require_serve

        require_serve("oemkit sizing")
    try:
        _measure(doc, base, request, threads, slo, work, python, say)
        doc["ceiling"] = ceiling(doc, slo)
        if served is not None:
            served.run(doc, request, slo, Path(str(base["inputs"])), manifest.name, use_mlperf,
                       say)
    except _Interrupted as stop:
        doc["complete"] = False
        doc["notes"].append("interrupted (Ctrl-C): the figures below are what was "
                            "measured before it; the run is incomplete")
        if stop.partial.get("stream") and stop.partial.get("mode") == "stream":
            doc["configurations"].append(stop.partial)
    doc.setdefault("ceiling", ceiling(doc, slo))
    doc["recommendation"] = recommend(doc, request, slo)
    return doc


def _mlperf_wanted(mode: str) -> bool:
    """Whether MLPerf LoadGen drives too (``auto``: when installed).

    Raises:
        EnvironmentProblem: E_MISSING_EXTRA for ``on`` without ``mlperf_loadgen``.
    """
    import importlib.util

    if mode == "off":
        return False
    found = importlib.util.find_spec("mlperf_loadgen") is not None
    if mode == "on" and not found:
        raise EnvironmentProblem(
            "E_MISSING_EXTRA", "oemkit sizing --mlperf on needs MLPerf LoadGen (the "
            f"'{SIZING_EXTRA}' extra: mlcommons-loadgen); not installed: mlperf_loadgen",
            hint=SIZING_HINT)
    return found


def _measure(doc: dict[str, Any], base: dict[str, Any], request: SizingRequest,
             threads: Sequence[int], slo: Slo, work: Path, python: str,
             say: _Say) -> None:
    timeout = request.duration_s * 4 + 120
    total = len(threads) * len(request.batches)
    for n, (t, batch) in enumerate(((t, b) for t in threads for b in request.batches), 1):
        place = f"({n}/{total})"
        say(f"batch {batch}, {t} thread(s)")
        result = _spawn({**base, "mode": "stream", "batch": batch, "threads": t,
                         "duration_s": request.duration_s}, work, python, timeout)
        result.update(batch=batch, threads=t)
        if not result.get("ok"):
            doc["notes"].append(f"batch {batch}, {t} thread(s): {result.get('error')}")
            say.done(f"batch {batch}, {t} thread(s): failed {place}")
            continue
        stream = result.get("stream") or {}
        pct = slo.percentile if slo.percentile in stream else "p99"
        say.done(f"batch {batch}, {t} thread(s): "
                 f"{_per_s(stream.get('throughput_samples_s'))} "
                 f"{pct} {_ms(stream.get(pct))} {place}")
        _annotate(doc, result)
        doc["configurations"].append(result)
    single = [c for c in doc["configurations"] if c["batch"] == 1]
    if not single:
        doc["notes"].append("no batch-1 measurement: the in-process server scenario (the "
                            "model-only ceiling) was not run")
        return
    best = max(single, key=lambda c: c["stream"]["throughput_samples_s"] or 0)
    rate = max(1.0, 0.5 * (best["stream"]["throughput_samples_s"] or 1.0))
    good: float | None = None
    bad: float | None = None
    for _ in range(12):
        if bad is not None and good is not None and bad / good < 1.1:
            break
        say(f"model-only server scenario at {rate:.0f} queries/s")
        result = _spawn({**base, "mode": "server", "batch": 1, "threads": best["threads"],
                         "rate": rate, "queries": int(max(200, rate * request.server_duration_s)),
                         "duration_s": request.server_duration_s}, work, python,
                        request.server_duration_s * 4 + 120)
        if not result.get("ok") or not result.get("server"):
            doc["notes"].append(f"server scenario at {rate:.0f}/s: {result.get('error')}")
            break
        point = result["server"]
        keeps_up = (point["achieved_qps"] or 0) >= 0.95 * rate
        at = point.get(slo.percentile)
        meets = at is not None and at <= slo.ms and keeps_up
        point["meets_slo"] = meets
        doc["server"].append(point)
        say.done(f"model-only server scenario at {rate:.0f} queries/s: "
                 f"{_per_s(point.get('achieved_qps'))} {slo.percentile} {_ms(at)}, "
                 + ("meets the SLO" if meets else "misses the SLO"))
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


def _why_not(doc: dict[str, Any], slo: Slo) -> str:
    """The plain answer when no in-process arrival rate kept the percentile inside the SLO."""
    key = slo.percentile
    measured = [c for c in doc["configurations"] if c["stream"].get(key) is not None]
    if not measured:
        return "no measurement completed, so nothing can be recommended"
    best = min(measured, key=lambda c: c["stream"][key])
    if best["stream"][key] > slo.ms:
        return (f"not achievable on this host with any number of instances: even unloaded, "
                f"one instance's best {key} is {best['stream'][key]:.2f} ms (batch "
                f"{best['batch']}, {best['threads']} thread(s)), above the {slo.ms:g} ms SLO "
                "(more instances add throughput, not speed)")
    tried = min(doc["server"], key=lambda p: p["rate"]) if doc["server"] else None
    if tried is None:
        return "the server scenario did not run (see the notes), so no rate is known"
    return (f"not achievable on this host at any tested load: unloaded, {key} is "
            f"{best['stream'][key]:.2f} ms, but already at {tried['rate']:.1f} queries/s "
            f"the {key} under random arrivals was {tried[key]:.2f} ms, above the "
            f"{slo.ms:g} ms SLO")


def ceiling(doc: dict[str, Any], slo: Slo) -> dict[str, Any]:
    """The model-only ceiling: the highest in-process Poisson rate (``session.run`` in a
    loop, no HTTP, no server) that met the SLO. Never a sizing: a served instance carries
    less (the served figures are the recommendation's)."""
    passing = [p for p in doc["server"] if p.get("meets_slo")]
    out: dict[str, Any] = {"basis": "model only, in process (no HTTP, no server)",
                           "slo_percentile": slo.percentile, "slo_ms": slo.ms}
    if not passing:
        out.update(achievable=False, reason=_why_not(doc, slo))
        return out
    out.update(achievable=True, sustainable_qps_per_instance=max(p["rate"] for p in passing))
    return out


def instances_arithmetic(target_qps: float, qps: float, headroom: float,
                         redundancy: int) -> tuple[int, str]:
    """``ceil(target / (qps x (1 - headroom))) + redundancy``, and the sum written out."""
    per = qps * (1 - headroom)
    base = math.ceil(target_qps / per)
    return base + redundancy, (
        f"ceil({target_qps:g} / ({qps:.1f} x (1 - {headroom:g}))) + {redundancy} = "
        f"ceil({target_qps / per:.2f}) + {redundancy} = {base + redundancy}")


def recommend(doc: dict[str, Any], request: SizingRequest, slo: Slo) -> dict[str, Any]:
    """Instances for the target load from the SERVED figures, with the arithmetic written
    out; without served figures, not achievable (the model-only ceiling over-promises)."""
    served = doc.get("served")
    if not served:
        out: dict[str, Any] = {"basis": "served", "slo_percentile": slo.percentile,
                               "slo_ms": slo.ms, "achievable": False,
                               "memory_mb_per_instance": None, "cores_per_instance": None}
        out["reason"] = ("the served measurement did not run (see the notes), so no "
                         "served rate is known; the model-only ceiling is not a sizing")
        if doc["configurations"] and not doc["configurations"][0]["stream"].get("p50"):
            out["reason"] = "no measurement completed, so nothing can be recommended"
        return out
    return recommend_served(served, slo, request.target_qps, request.headroom,
                            request.redundancy)


def recommend_served(served: dict[str, Any], slo: Slo, target_qps: float | None,
                     headroom: float, redundancy: int) -> dict[str, Any]:
    """The recommendation from the served figures (a pure function of ``served``: its
    ``levels``, ``closed_loop``, ``workers``, ``threads_per_worker``, ``memory_mb``).

    One instance is one ``oemkit serve`` with ``workers`` workers; it sustains the highest
    offered rate whose level met the SLO with oemkit's driver (``meets_slo``)."""
    workers = int(served.get("workers") or 1)
    threads = max(1, int(served.get("threads_per_worker") or 1))
    memory = served.get("memory_mb")
    out: dict[str, Any] = {
        "basis": "served", "slo_percentile": slo.percentile, "slo_ms": slo.ms,
        "workers_per_instance": workers, "cores_per_instance": workers * threads,
        "memory_mb_per_instance": math.ceil(memory) if memory else None}
    levels = served.get("levels") or []
    passing = [lv for lv in levels if lv.get("meets_slo")]
    if not passing:
        out.update(achievable=False, reason=_served_why_not(served, slo))
        return out
    best = max(passing, key=lambda lv: lv["rate"])
    qps = best["rate"]
    out.update(achievable=True, sustainable_qps_per_instance=qps,
               at_slo_ms=best["oemkit"]["latency_ms"].get(slo.percentile))
    mlperf = best.get("mlperf_loadgen")
    if isinstance(mlperf, dict) and mlperf.get("meets_slo") is not None:
        out["mlperf_loadgen_agrees"] = bool(mlperf["meets_slo"])
    if target_qps:
        out["instances"], out["arithmetic"] = instances_arithmetic(target_qps, qps, headroom,
                                                                   redundancy)
    return out


def _served_why_not(served: dict[str, Any], slo: Slo) -> str:
    key = slo.percentile
    unloaded = next((c for c in served.get("closed_loop") or []
                     if c.get("concurrency") == 1), None)
    at = (unloaded or {}).get("latency_ms", {}).get(key)
    if at is not None and at > slo.ms:
        return (f"not achievable on this host with any number of instances: even unloaded "
                f"(one request at a time), the served {key} is {at:.2f} ms, above the "
                f"{slo.ms:g} ms SLO (more instances add throughput, not speed)")
    levels = served.get("levels") or []
    if not levels:
        return "no served load level completed (see the notes), so no rate is known"
    low = min(levels, key=lambda lv: lv["rate"])
    figures = low["oemkit"]
    why = []
    value = figures["latency_ms"].get(key)
    if value is None or value > slo.ms:
        why.append(f"the served {key} was "
                   + ("not measured" if value is None else f"{value:.2f} ms") +
                   f", above the {slo.ms:g} ms SLO")
    if figures.get("errors"):
        why.append(f"{figures['errors']} request(s) failed")
    if not figures.get("keeps_up", True):
        why.append(f"only {figures.get('achieved_qps') or 0:.1f} queries/s were answered")
    return (f"not achievable on this host at any tested load: already at the lowest offered "
            f"rate, {low['rate']:.1f} queries/s, " + "; ".join(why or ["the SLO was missed"]))


# --------------------------------------------------------------------- the served runtime

LOADGEN = Path(__file__).with_name("_loadgen_child.py")
#: The optional extra with MLPerf LoadGen, and its install line.
SIZING_EXTRA = "sizing"
SIZING_HINT = "pip install 'oemkit[sizing]' (or: pip install mlcommons-loadgen)"
#: A level keeps up when it answered at least this share of the rate it scheduled.
KEEP_UP = 0.95
#: How long the server may take to become ready.
READY_BUDGET_S = 120.0


def meets_slo(figures: dict[str, Any], slo: Slo) -> bool:
    """A served level meets the SLO: its percentile within the SLO, no failed request, and
    at least :data:`KEEP_UP` of the scheduled rate answered (sets ``keeps_up``)."""
    scheduled = figures.get("scheduled_qps") or figures.get("offered_qps") or 0.0
    figures["keeps_up"] = (figures.get("achieved_qps") or 0.0) >= KEEP_UP * scheduled
    at = (figures.get("latency_ms") or {}).get(slo.percentile)
    return bool(at is not None and at <= slo.ms and not figures.get("errors")
                and figures.get("succeeded") and figures["keeps_up"])


def parse_metrics(text: str) -> dict[str, float]:
    """The runtime's /metrics text as ``sample name[|outcome]`` -> value, summed over the
    other labels (prometheus_client's text parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name
            if "outcome" in sample.labels:
                key += "|" + sample.labels["outcome"]
            elif "le" in sample.labels:
                continue
            values[key] = values.get(key, 0.0) + float(sample.value)
    return values


def split_server_time(before: str, after: str,
                      client_mean_ms: float | None = None) -> dict[str, Any]:
    """Where a level's time went, from two /metrics scrapes bracketing it: the mean
    server-side time per request (body read to response ready) split into queue (waiting
    for a batch to start) and compute (the batch's model run), the rest of the server's
    handling, and, with the driver's mean latency, the time outside the server (HTTP,
    loopback, the driver)."""
    b, a = parse_metrics(before), parse_metrics(after)

    def delta(name: str) -> float:
        return a.get(name, 0.0) - b.get(name, 0.0)

    def mean_ms(name: str) -> float | None:
        count = delta(f"{name}_count")
        return delta(f"{name}_sum") / count * 1000.0 if count > 0 else None

    server = mean_ms("oemkit_request_duration_seconds")
    queue = mean_ms("oemkit_queue_duration_seconds")
    compute = mean_ms("oemkit_compute_duration_seconds")
    observed = delta("oemkit_batch_size_count")  # one observation per request
    out: dict[str, Any] = {
        "requests": delta("oemkit_request_duration_seconds_count"),
        "server_ms_mean": server, "queue_ms_mean": queue, "compute_ms_mean": compute,
        "other_server_ms_mean": (server - queue - compute)
        if server is not None and queue is not None and compute is not None else None,
        "batch_rows_mean": delta("oemkit_batch_size_sum") / observed if observed > 0 else None,
        "outcomes": {k.partition("|")[2]: delta(k) for k in sorted(set(a) | set(b))
                     if k.startswith("oemkit_requests_total|") and delta(k)},
        "client_ms_mean": client_mean_ms,
        "outside_server_ms_mean": (client_mean_ms - server)
        if client_mean_ms is not None and server is not None else None,
    }
    return out


def infer_body(inputs_json: Path, rows: int | None = 1) -> str:
    """An Open Inference Protocol v2 JSON request from the golden inputs: the first
    ``rows`` rows of each input (None: the whole golden input)."""
    datatypes = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int8": "INT8",
                 "int16": "INT16", "int32": "INT32", "int64": "INT64", "uint8": "UINT8",
                 "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64", "bool": "BOOL"}
    golden = json.loads(inputs_json.read_text(encoding="utf-8"))
    entries = []
    for name, spec in golden.items():
        shape = list(spec["shape"])
        data = spec["data"]
        if rows is not None and shape and shape[0] > rows:
            per_row = math.prod(shape[1:])
            data = _flat(data)[:rows * per_row]
            shape = [rows, *shape[1:]]
        entries.append({"name": name, "datatype": datatypes.get(spec["dtype"], "BYTES"),
                        "shape": shape, "data": _flat(data)})
    return json.dumps({"inputs": entries}, separators=(",", ":"))


def _flat(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [x for item in data for x in _flat(item)] if any(
            isinstance(i, list) for i in data) else list(data)
    return [data]


class _Served:
    """The served measurement: ``oemkit serve`` started from the bundle (verified again,
    as a host would), driven over loopback by the load generator processes."""

    def __init__(self, bundle: Path, trust: Path, profile: str, work: Path) -> None:
        # The server runs in the work folder: every path it is given is absolute.
        self.bundle, self.trust, self.work = bundle.resolve(), trust.resolve(), work
        self.profile = (str(Path(profile).resolve()) if profile.endswith((".yaml", ".yml"))
                        or "/" in profile else profile)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pids: list[int] = []
        self.log = work / "serve.log"

    # ------------------------------------------------------------------------ process

    def start(self, workers: int) -> float:
        """Start the server; seconds to ready. Raises RuntimeError with the reason."""
        import os

        port_file = self.work / "serve.port"
        self.command = [sys.executable, "-m", "oemkit", "serve", str(self.bundle),
                        "--trust", str(self.trust), "--profile", self.profile,
                        "--workers", str(workers), "--port", "0", "--port-file",
                        str(port_file), "--state", str(self.work / "license-state.json")]
        started = time.monotonic()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=log,
                                         stdin=subprocess.DEVNULL, cwd=self.work,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = started + READY_BUDGET_S
        from oemkit.host.service import wait_for_port

        port = wait_for_port(self.proc, port_file, deadline, poll_s=0.05)
        if port is None:
            raise RuntimeError(f"oemkit serve did not start: {self._tail()}")
        self.port = port
        status, body = 0, b""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"oemkit serve exited: {self._tail()}")
            status, body = self.request("GET", "/v2/health/ready")
            if status == 200:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"oemkit serve never became ready (last answer {status}: "
                               f"{body[:200].decode('utf-8', 'replace')})")
        ready_s = time.monotonic() - started
        while len(self._ready_pids()) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pids = sorted(set(self._ready_pids()) | {self.proc.pid})
        return ready_s

    def _lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out

    def _ready_pids(self) -> list[int]:
        return [int(x["pid"]) for x in self._lines() if x.get("msg") == "ready"
                and isinstance(x.get("pid"), int)]

    def _tail(self) -> str:
        lines = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "no output"

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body, {"Content-Type": "application/json"}
                         if body else {})
            res = conn.getresponse()
            return res.status, res.read()
        except OSError:
            return 0, b""
        finally:
            conn.close()

    def peak_rss_mb(self) -> float | None:
        """Sum of the server processes' peak RSS (Linux VmHWM), MB."""
        total = 0.0
        for pid in self.pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
            except OSError:
                return None
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024.0
        return total or None

    def stop(self) -> int | None:
        import signal

        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    # ------------------------------------------------------------------------ driving

    def drive(self, req: dict[str, Any]) -> dict[str, Any]:
        """One load generator run (a fresh process, oemkit's interpreter)."""
        full = {"host": "127.0.0.1", "port": self.port, "pids": self.pids, "warmup": 20,
                **req}
        if full["mode"] == "mlperf":
            full["outdir"] = str(self.work / f"mlperf-{time.monotonic_ns()}")
        timeout = float(full.get("duration_s", 1.0)) * 4 + 120
        return _spawn(full, self.work, sys.executable, timeout, child=LOADGEN)

    def run(self, doc: dict[str, Any], request: SizingRequest, slo: Slo, inputs: Path,
            model: str, use_mlperf: bool, say: _Say) -> None:
        """Measure the served runtime into ``doc["served"]`` (notes on failure)."""
        from oemkit.serve.runtime import default_workers, session_settings

        session = session_settings(self.profile, self.work / "bundle")
        workers = request.workers or default_workers(session)
        say(f"starting oemkit serve with {workers} worker(s)")
        ready_s = None
        try:
            try:
                ready_s = self.start(workers)
            except RuntimeError as exc:
                doc["notes"].append(f"served measurement: {exc}")
                return
            served = self._levels(doc, request, slo, inputs, model, use_mlperf, say,
                                  workers)
            doc["served"] = served
        finally:
            if isinstance(doc.get("served"), dict):
                doc["served"].update(ready_s=ready_s, workers=workers,
                                     threads_per_worker=session.intra_op,
                                     memory_mb=self.peak_rss_mb(), pids=self.pids,
                                     command=["oemkit", *self.command[3:]])
            code = self.stop()
            if code not in (0, None):
                doc["notes"].append(f"served measurement: oemkit serve exited {code} on "
                                    f"SIGTERM: {self._tail()}")

    def _levels(self, doc: dict[str, Any], request: SizingRequest, slo: Slo, inputs: Path,
                model: str, use_mlperf: bool, say: _Say,
                workers: int) -> dict[str, Any]:
        path = f"/v2/models/{model}/infer"
        body = infer_body(inputs, 1)
        status, answer = self.request("POST", path, body)
        rows: int | None = 1
        if status != 200:  # a model with a fixed batch dimension: the whole golden input
            body, rows = infer_body(inputs, None), None
            status, answer = self.request("POST", path, body)
        if status != 200:
            raise_note = answer[:300].decode("utf-8", "replace")
            doc["notes"].append(f"served measurement: the golden input was refused "
                                f"({status}: {raise_note})")
            return {"levels": [], "closed_loop": [], "drivers": {}, "rows_per_request": rows}
        base = {"path": path, "body": body, "max_connections": request.max_connections}
        served: dict[str, Any] = {"rows_per_request": rows, "closed_loop": [], "levels": [],
                                  "slo_percentile": slo.percentile, "slo_ms": slo.ms,
                                  "workers": workers, "drivers": {}}
        doc["served"] = served  # what is measured stays when Ctrl-C stops the run
        probe_s = max(0.2, request.level_duration_s / 2)
        for concurrency in sorted({1, max(4, 4 * workers)}):
            say(f"served closed loop, {concurrency} connection(s)")
            result = self.drive({**base, "mode": "closed", "concurrency": concurrency,
                                 "duration_s": probe_s})
            if not result.get("ok"):
                doc["notes"].append(f"served closed loop at concurrency {concurrency}: "
                                    f"{result.get('error')}")
                say.done(f"served closed loop, {concurrency} connection(s): failed")
                continue
            say.done(f"served closed loop, {concurrency} connection(s): "
                     f"{_per_s(result.get('achieved_qps'))} {slo.percentile} "
                     f"{_ms((result.get('latency_ms') or {}).get(slo.percentile))}")
            result["split"] = split_server_time(result.pop("metrics_before", ""),
                                                result.pop("metrics_after", ""),
                                                result["latency_ms"].get("mean"))
            served["closed_loop"].append(result)
        capacity = max((c.get("achieved_qps") or 0.0 for c in served["closed_loop"]),
                       default=0.0)
        served["capacity_qps"] = capacity
        if capacity <= 0:
            doc["notes"].append("served measurement: the closed-loop probe answered nothing")
            return served
        levels: dict[float, dict[str, Any]] = {}

        def level(rate: float) -> dict[str, Any] | None:
            rate = round(rate, 3)
            if rate in levels or rate <= 0:
                return levels.get(rate)
            say(f"served, oemkit driver at {rate:.0f} queries/s")
            result = self.drive({**base, "mode": "open", "rate": rate,
                                 "duration_s": request.level_duration_s,
                                 "seed": 1 + len(levels)})
            if not result.get("ok"):
                doc["notes"].append(f"served level {rate:.1f}/s: {result.get('error')}")
                say.done(f"served, {workers} worker(s), oemkit driver at {rate:.0f} "
                         "queries/s: failed")
                return None
            entry = self._entry(rate, result, slo)
            levels[rate] = entry
            say.done(f"served, {workers} worker(s), oemkit driver at {rate:.0f} queries/s: "
                     f"{_per_s(result.get('achieved_qps'))} {slo.percentile} "
                     f"{_ms(result['latency_ms'].get(slo.percentile))}, "
                     + ("meets the SLO" if entry["meets_slo"] else "misses the SLO"))
            return entry

        def publish() -> None:
            served["levels"] = sorted(levels.values(), key=lambda lv: lv["rate"])

        for fraction in request.levels:
            level(fraction * capacity)
            publish()
        for _ in range(3):  # refine: bisect, or go higher while the top level passes
            done = sorted(levels.values(), key=lambda lv: lv["rate"])
            good = [lv["rate"] for lv in done if lv["meets_slo"]]
            bad = [lv["rate"] for lv in done if not lv["meets_slo"] and
                   (not good or lv["rate"] > max(good))]
            if good and bad:
                if min(bad) / max(good) < 1.1:
                    break
                level((max(good) + min(bad)) / 2)
            elif good:
                level(max(good) * 1.25)
            else:
                break
            publish()
        publish()
        passing = [lv["rate"] for lv in served["levels"] if lv["meets_slo"]]
        point = max(passing) if passing else min(levels, default=capacity / 4)
        served["operating_rate"] = point
        drivers: dict[str, Any] = {"oemkit": self._own_overhead(base, point, request, say)}
        if use_mlperf:
            drivers["mlperf_loadgen"] = self._mlperf(doc, served, base, point, request, slo,
                                                     say)
        else:
            doc["notes"].append("MLPerf LoadGen did not run (" + (
                "--mlperf off" if request.mlperf == "off" else
                f"not installed: {SIZING_HINT}") + "): only oemkit's driver measured")
        served["drivers"] = drivers
        return served

    def _entry(self, rate: float, result: dict[str, Any], slo: Slo) -> dict[str, Any]:
        split = split_server_time(result.pop("metrics_before", ""),
                                  result.pop("metrics_after", ""),
                                  result["latency_ms"].get("mean"))
        result.pop("ok", None)
        result.pop("complete", None)
        result.pop("mode", None)
        result["meets_slo"] = meets_slo(result, slo)
        return {"rate": rate, "meets_slo": result["meets_slo"], "oemkit": result,
                "split": split, "mlperf_loadgen": None}

    def _own_overhead(self, base: dict[str, Any], rate: float, request: SizingRequest,
                      say: _Say) -> dict[str, Any]:
        """oemkit's driver against GET /v2/health/live at the operating rate: what the
        driver, HTTP and loopback cost with (almost) no server work."""
        say("oemkit driver overhead (GET /v2/health/live)")
        result = self.drive({**base, "mode": "open", "method": "GET",
                             "path": "/v2/health/live", "rate": rate, "scrape": False,
                             "duration_s": request.level_duration_s})
        out: dict[str, Any] = {"name": "oemkit (asyncio, keep-alive, open-loop Poisson)",
                               "process": "its own (measure/_loadgen_child.py)"}
        if result.get("ok"):
            out["trivial_endpoint"] = {k: result.get(k) for k in (
                "offered_qps", "achieved_qps", "latency_ms", "lag_ms", "driver_cpu_cores",
                "errors")}
        else:
            out["error"] = result.get("error")
        return out

    def _mlperf(self, doc: dict[str, Any], served: dict[str, Any], base: dict[str, Any],
                point: float, request: SizingRequest, slo: Slo,
                say: _Say) -> dict[str, Any]:
        pct = PERCENTILES[slo.percentile]
        common = {**base, "mode": "mlperf", "slo_ms": slo.ms, "percentile": pct,
                  "duration_s": request.level_duration_s}
        version = None
        for lv in served["levels"]:
            say(f"served, MLPerf LoadGen at {lv['rate']:.0f} queries/s")
            result = self.drive({**common, "rate": lv["rate"]})
            if not result.get("ok"):
                doc["notes"].append(f"MLPerf LoadGen at {lv['rate']:.1f}/s: "
                                    f"{result.get('error')}")
                continue
            split = split_server_time(result.pop("metrics_before", ""),
                                      result.pop("metrics_after", ""),
                                      result["latency_ms"].get("mean"))
            for key in ("ok", "complete", "mode"):
                result.pop(key, None)
            result["meets_slo"] = meets_slo(result, slo)
            result["split"] = split
            say.done(f"served, MLPerf LoadGen at {lv['rate']:.0f} queries/s: "
                     f"{_per_s(result.get('achieved_qps'))} {slo.percentile} "
                     f"{_ms(result['latency_ms'].get(slo.percentile))}, "
                     + ("meets the SLO" if result["meets_slo"] else "misses the SLO"))
            version = result.get("loadgen_version") or version
            lv["mlperf_loadgen"] = result
        out: dict[str, Any] = {"name": "MLPerf LoadGen (Server scenario), thread-pool SUT "
                               "calling the HTTP endpoint", "version": version,
                               "process": "its own (measure/_loadgen_child.py, mode mlperf)"}
        say("MLPerf LoadGen overhead (a SUT that answers at once; GET /v2/health/live)")
        for key, extra in (("null_sut", {"null_sut": True}),
                           ("trivial_endpoint", {"method": "GET", "path": "/v2/health/live",
                                                 "scrape": False})):
            result = self.drive({**common, **extra, "rate": point})
            out[key] = ({k: result.get(k) for k in ("offered_qps", "achieved_qps",
                                                    "latency_ms", "driver_cpu_cores",
                                                    "errors")}
                        if result.get("ok") else {"error": result.get("error")})
        return out
