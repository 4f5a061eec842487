"""The load generator process of ``oemkit sizing``: run as a plain script, never imported
(like the sizing and smoke children), with the standard library only, so the driver costs
as little as it can and nothing of oemkit's shares its interpreter.

``python _loadgen_child.py REQUEST.json`` runs one measurement against a running
``oemkit serve`` on loopback and writes one JSON result to the request's ``out`` path.
Modes (``mode``):

- ``open``: oemkit's driver. Open-loop Poisson arrivals: exponential gaps (mean 1/rate)
  from a seeded RNG give each request a scheduled send time, fixed before the run and
  kept whatever the server does. Requests go out on persistent HTTP/1.1 keep-alive
  connections (asyncio streams, up to ``max_connections``; a request that finds none idle
  waits, and that wait counts). Latency is scheduled send -> response parsed (JSON
  decoded), so time lost to a slow server or to the driver itself is counted, never
  omitted (no coordinated omission). The driver's own cost is reported as its scheduling
  lag (actual minus scheduled send) and its CPU time.
- ``closed``: ``concurrency`` connections each sending the next request as soon as the
  last one is answered: the capacity probe and the unloaded (concurrency 1) latency.
- ``mlperf``: MLPerf LoadGen (``mlperf_loadgen``, the MLCommons load generator) in its
  Server scenario at ``rate``: its system under test sends each query as the same HTTP
  request from a thread pool (one keep-alive ``http.client`` connection per thread) and
  calls ``QuerySamplesComplete`` once the response is parsed. ``null_sut``: complete each
  query at once without HTTP (LoadGen's own overhead).

Every mode first sends ``warmup`` requests (not measured), then reads ``/metrics`` and the
server processes' CPU times, measures, and reads them again: the parent splits the
server's time into queue and compute from the two scrapes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

PERCENTILES = (50, 90, 95, 99, 99.9)


def _pct(sorted_ms: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted values (None without values)."""
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, round(p / 100.0 * (len(sorted_ms) - 1)))]


def _summary(latencies_ms: list[float]) -> dict[str, Any]:
    s = sorted(latencies_ms)
    out: dict[str, Any] = {f"p{p:g}": _pct(s, p) for p in PERCENTILES}
    out.update(min=s[0] if s else None, max=s[-1] if s else None,
               mean=sum(s) / len(s) if s else None)
    return out


def _request_bytes(req: dict[str, Any]) -> bytes:
    body = req.get("body", "").encode()
    method = req.get("method", "POST")
    head = (f"{method} {req['path']} HTTP/1.1\r\nHost: {req['host']}:{req['port']}\r\n"
            "Accept: application/json\r\n")
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body if method == "POST" else b"")


def _cpu_s(pids: list[int]) -> float | None:
    """User + system CPU seconds of the server processes (Linux /proc; None elsewhere)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError, IndexError):
        return None
    return total


def _get(req: dict[str, Any], path: str) -> str:
    import http.client

    conn = http.client.HTTPConnection(req["host"], req["port"], timeout=30)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.read().decode("utf-8", "replace")
    finally:
        conn.close()


class _Snapshot:
    """/metrics text, server CPU and this process's CPU and clock at one moment."""

    def __init__(self, req: dict[str, Any]) -> None:
        self.metrics = _get(req, "/metrics") if req.get("scrape", True) else ""
        self.server_cpu = _cpu_s(req.get("pids") or [])
        times = os.times()
        self.own_cpu = times.user + times.system
        self.clock = time.perf_counter()


def _bracket(req: dict[str, Any], result: dict[str, Any], before: _Snapshot) -> None:
    after = _Snapshot(req)
    wall = after.clock - before.clock
    result["metrics_before"], result["metrics_after"] = before.metrics, after.metrics
    result["driver_cpu_cores"] = (after.own_cpu - before.own_cpu) / wall if wall > 0 else None
    if before.server_cpu is not None and after.server_cpu is not None and wall > 0:
        result["server_cpu_cores"] = (after.server_cpu - before.server_cpu) / wall
    else:
        result["server_cpu_cores"] = None


# ------------------------------------------------------------------- asyncio HTTP client


class _Conn:
    """One keep-alive HTTP/1.1 connection (asyncio streams)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Conn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def exchange(self, data: bytes) -> tuple[int, bytes, bool]:
        """Send one request; (status, body, keep-alive)."""
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = b""
        return status, body, headers.get("connection", "").lower() != "close"

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """Idle keep-alive connections; a new one while fewer than ``limit`` exist."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[_Conn] = []
        self.count = 0
        self.peak = 0
        self.waiters: list[asyncio.Future[None]] = []

    async def get(self) -> _Conn:
        while not self.idle and self.count >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter
        if self.idle:
            return self.idle.pop()
        self.count += 1
        self.peak = max(self.peak, self.count)
        try:
            return await _Conn.open(self.host, self.port)
        except BaseException:
            self.count -= 1
            self._wake()
            raise

    def put(self, conn: _Conn | None) -> None:
        if conn is None:
            self.count -= 1
        else:
            self.idle.append(conn)
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in self.idle:
            conn.close()


class _Tally:
    """What a run saw: latencies of answered requests, errors by kind, lags."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.errors: dict[str, int] = {}
        self.sent = 0
        self.first_done = float("inf")
        self.last_done = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def _check(status: int, body: bytes, infer: bool) -> str | None:
    """None for a good answer, else the error's kind."""
    if status != 200:
        return f"HTTP {status}"
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return "unparsable response"
        if infer and not (isinstance(parsed, dict) and "outputs" in parsed):
            return "response without outputs"
    return None


async def _send(pool: _Pool, data: bytes, infer: bool, tally: _Tally, due: float,
                timeout: float) -> None:
    clock = time.perf_counter
    try:
        conn: _Conn | None = await pool.get()
    except OSError as exc:
        tally.error(f"connection: {type(exc).__name__}")
        return
    assert conn is not None
    tally.lags.append((clock() - due) * 1000.0)
    try:
        status, body, keep = await asyncio.wait_for(conn.exchange(data), timeout)
        kind = _check(status, body, infer)  # the response is parsed before the clock
        done = clock()
        if kind is None:
            tally.latencies.append((done - due) * 1000.0)
        else:
            tally.error(kind)
        tally.first_done = min(tally.first_done, done)
        tally.last_done = max(tally.last_done, done)
        if not keep:
            conn.close()
            conn = None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            asyncio.TimeoutError, ValueError) as exc:
        tally.error("timeout" if isinstance(exc, asyncio.TimeoutError) else
                    f"connection: {type(exc).__name__}")
        if conn is not None:
            conn.close()
        conn = None
    finally:
        pool.put(conn)


async def _warm(pool: _Pool, data: bytes, infer: bool, n: int) -> None:
    tally = _Tally()
    for _ in range(n):
        await _send(pool, data, infer, tally, time.perf_counter(), 30.0)
    if tally.errors and not tally.latencies:
        raise RuntimeError(f"every warm-up request failed: {tally.errors}")


async def _open_loop(req: dict[str, Any], result: dict[str, Any]) -> None:
    rate = float(req["rate"])
    duration = float(req["duration_s"])
    infer = req.get("method", "POST") == "POST"
    data = _request_bytes(req)
    pool = _Pool(req["host"], req["port"], int(req.get("max_connections", 64)))
    timeout = float(req.get("request_timeout_s", 30.0))
    await _warm(pool, data, infer, int(req.get("warmup", 20)))
    rng = random.Random(int(req.get("seed", 1)))
    dues = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration:
            break
        dues.append(t)
    before = await asyncio.to_thread(_Snapshot, req)
    tally = _Tally()
    clock = time.perf_counter
    start = clock()
    tasks = []
    for offset in dues:
        due = start + offset
        # Sleep until about a millisecond before (the selector's timer resolution), then
        # yield to the loop until due: responses keep being read while waiting.
        ahead = due - clock() - 0.0015
        if ahead > 0:
            await asyncio.sleep(ahead)
        while clock() < due:
            await asyncio.sleep(0)
        tasks.append(asyncio.ensure_future(_send(pool, data, infer, tally, due, timeout)))
        tally.sent += 1
    issued = clock()
    if tasks:
        await asyncio.gather(*tasks)
    end = max(tally.last_done, issued)
    await asyncio.to_thread(_bracket, req, result, before)
    pool.close()
    result.update(_figures(tally, end - start, issued - start, len(dues) / duration if dues
                           else 0.0, rate))
    # Throughput over the completions' own window (first to last answer), which a level as
    # long as its latency tail does not bias; a server that falls behind stretches it.
    window = tally.last_done - tally.first_done
    if len(tally.latencies) > 1 and window > 0:
        result["achieved_qps"] = (len(tally.latencies) - 1) / window
    lags = sorted(tally.lags)
    result["lag_ms"] = {"p50": _pct(lags, 50), "p99": _pct(lags, 99),
                        "max": lags[-1] if lags else None}
    result["connections"] = pool.peak


def _figures(tally: _Tally, wall: float, issue_wall: float, scheduled_qps: float,
             rate: float) -> dict[str, Any]:
    ok = len(tally.latencies)
    errors = sum(tally.errors.values())
    return {"offered_qps": rate, "scheduled_qps": scheduled_qps, "requests": ok + errors,
            "succeeded": ok, "errors": errors, "error_kinds": tally.errors,
            "achieved_qps": ok / wall if wall > 0 else None, "wall_s": wall,
            "issue_s": issue_wall, "latency_ms": _summary(tally.latencies)}


async def _closed_loop(req: dict[str, Any], result: dict[str, Any]) -> None:
    concurrency = int(req["concurrency"])
    duration = float(req["duration_s"])
    infer = req.get("method", "POST") == "POST"
    data = _request_bytes(req)
    pool = _Pool(req["host"], req["port"], concurrency)
    await _warm(pool, data, infer, int(req.get("warmup", 20)))
    before = await asyncio.to_thread(_Snapshot, req)
    tally = _Tally()
    clock = time.perf_counter
    start = clock()
    stop = start + duration

    async def client() -> None:
        while clock() < stop:
            tally.sent += 1
            await _send(pool, data, infer, tally, clock(), 30.0)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    end = clock()
    await asyncio.to_thread(_bracket, req, result, before)
    pool.close()
    result.update(_figures(tally, end - start, end - start, 0.0, 0.0))
    result["concurrency"] = concurrency


# ------------------------------------------------------------------------ MLPerf LoadGen


def _mlperf(req: dict[str, Any], result: dict[str, Any]) -> None:
    import http.client
    import importlib
    from concurrent.futures import ThreadPoolExecutor

    lg: Any = importlib.import_module("mlperf_loadgen")  # the sizing extra

    infer = req.get("method", "POST") == "POST"
    body = req.get("body", "").encode() if infer else None
    headers = {"Content-Type": "application/json"} if infer else {}
    local = threading.local()
    lock = threading.Lock()
    tally = _Tally()

    def conn() -> http.client.HTTPConnection:
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection(req["host"], req["port"], timeout=30)
        return local.conn  # type: ignore[no-any-return]

    def call() -> str | None:
        try:
            c = conn()
            c.request(req.get("method", "POST"), req["path"], body, headers)
            res = c.getresponse()
            data = res.read()
            if res.getheader("connection", "").lower() == "close":
                c.close()
                local.conn = None
            return _check(res.status, data, infer)
        except (OSError, http.client.HTTPException) as exc:
            local.conn = None
            return f"connection: {type(exc).__name__}"

    def one(sample_id: int) -> None:
        kind = call()
        if kind is not None:
            with lock:
                tally.error(kind)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(sample_id, 0, 0)])

    threads = int(req.get("max_connections", 64))
    pool = ThreadPoolExecutor(max_workers=threads)
    null = bool(req.get("null_sut"))

    def issue(samples: Any) -> None:
        if null:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])
            return
        for s in samples:
            pool.submit(one, s.id)

    def flush() -> None:
        return None

    if not null:
        for _ in range(int(req.get("warmup", 20))):
            call()
    outdir = req["outdir"]
    os.makedirs(outdir, exist_ok=True)
    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = float(req["rate"])
    settings.server_target_latency_ns = int(float(req["slo_ms"]) * 1e6)
    settings.server_target_latency_percentile = float(req["percentile"]) / 100.0
    settings.min_duration_ms = int(float(req["duration_s"]) * 1000)
    settings.min_query_count = 1
    log = lg.LogSettings()
    log.log_output.outdir = outdir
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    sut = lg.ConstructSUT(issue, flush)
    qsl = lg.ConstructQSL(16, 16, lambda _s: None, lambda _s: None)
    before = _Snapshot({**req, "scrape": not null and req.get("scrape", True)})
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
    finally:
        pool.shutdown(wait=True)
        _bracket({**req, "scrape": not null and req.get("scrape", True)}, result, before)
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    found = _mlperf_log(os.path.join(outdir, "mlperf_log_detail.txt"))
    count = int(found.get("result_query_count") or 0)
    errors = sum(tally.errors.values())
    pct = {p: found.get(f"result_{p:.2f}_percentile_latency_ns") for p in
           (50.0, 90.0, 95.0, 97.0, 99.0, 99.9)}
    latency = {f"p{p:g}": (v / 1e6 if isinstance(v, (int, float)) else None)
               for p, v in pct.items()}
    for key in ("min", "max", "mean"):
        v = found.get(f"result_{key}_latency_ns")
        latency[key] = v / 1e6 if isinstance(v, (int, float)) else None
    result.update(
        offered_qps=float(req["rate"]), scheduled_qps=found.get("result_scheduled_samples_per_sec"),
        achieved_qps=found.get("result_completed_samples_per_sec"), requests=count,
        succeeded=count - errors, errors=errors, error_kinds=tally.errors, latency_ms=latency,
        validity=found.get("result_validity"),
        early_stopping=str(found.get("early_stopping_result", "")).strip() or None,
        perf_constraints_met=found.get("result_perf_constraints_met"),
        loadgen_version=found.get("loadgen_version"), threads=threads)


def _mlperf_log(path: str) -> dict[str, Any]:
    """The ``:::MLLOG`` JSON records of LoadGen's detail log, key -> value."""
    found: dict[str, Any] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(":::MLLOG "):
                try:
                    record = json.loads(line[len(":::MLLOG "):])
                except ValueError:
                    continue
                found[record.get("key")] = record.get("value")
    return found


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        req = json.load(handle)
    result: dict[str, Any] = {"ok": True, "mode": req["mode"], "complete": True}
    try:
        if req["mode"] == "mlperf":
            _mlperf(req, result)
        elif req["mode"] == "closed":
            asyncio.run(_closed_loop(req, result))
        else:
            asyncio.run(_open_loop(req, result))
    except KeyboardInterrupt:
        result.update(ok=False, complete=False, error="interrupted")
    except Exception as exc:  # reported to the parent, which decides
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    with open(req["out"], "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
