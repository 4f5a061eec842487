"""Speed and memory of ``oemkit serve`` (issue 15, "Speed and memory"), each figure against
a baseline measured in the same run, on the example bundle (built, signed, installed into a
temporary prefix, with a license to check; the example keys, INSECURE):

  overhead    one client, sequential keep-alive requests on one raw socket: p50/p99 of the
              HTTP round trip of ``/v2/models/example/infer`` (JSON) minus those of a bare
              ``session.run`` of the same input in this process (targets 0.25 / 1 ms).
              Shown beside it, same client: ``/v2/health/live`` on oemkit, the minimal
              servers' infer, and a raw-socket HTTP responder (client + loopback floor).
  throughput  requests/s at saturation (a load generator in its own process, several
              keep-alive connections): one oemkit worker vs a MINIMAL server on the same
              stack written below (parse JSON, session.run, JSON out, under uvicorn with
              oemkit's settings): >= 0.8x; two workers vs one: >= 1.6x. oemkit's hot
              routes are a raw-ASGI fast path on uvicorn, so the like-for-like minimal
              server, the one the verdict uses, is one raw ASGI callable; the minimal
              Starlette route (oemkit's stack before the fast path) is shown beside it.
              Also per server CPU second (what the server did with the CPU it got).
  cold        process start to ``/v2/health/ready`` 200 of ``oemkit serve PREFIX --license``
              (license verified with a state file) vs a fresh ``python -c`` that imports
              onnxruntime and creates the session: <= baseline + 300 ms. A bundle file
              target (verified and unpacked at every start) is shown too.
  memory      resident memory per worker (one worker, and each of two) <= model size +
              80 MB; RSS sampled every 10,000 requests over 100,000: slope.

    python benchmarks/serve_runtime.py [overhead|throughput|cold|memory ...]
        [--requests 5000] [--seconds 5] [--rounds 3] [--conns 8] [--runs 7]
        [--memory-requests 100000]

Prints a table: figure, value, target, baseline, ratio, verdict. These are measurements,
not tests: on a shared 2-core machine the load generator and the servers compete for CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXAMPLE = REPO / "bundles" / "example"
KEYS = REPO / "keys-example"
PASSPHRASE = b"oemkit-example-insecure"
INFER = "/v2/models/example/infer"
MB = 1_000_000

# --------------------------------------------------------------------------- wire helpers


def request_bytes(method: str, path: str, body: bytes = b"") -> bytes:
    """One HTTP/1.1 keep-alive request, prebuilt once (the client does no work per call)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def infer_body() -> bytes:
    """The example's golden input (4x4 FP32) as an OIP JSON request."""
    spec = json.loads((EXAMPLE / "golden" / "inputs.json").read_text())["x"]
    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": spec["shape"],
                                   "data": spec["data"]}]}, separators=(",", ":")).encode()


def _complete(buf: bytearray | bytes) -> int:
    """Length of the first whole response in ``buf`` (0: not yet complete)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0
    at = buf.find(b"content-length:", 0, end)
    if at < 0:
        at = bytes(buf[:end]).lower().find(b"content-length:")
    length = int(buf[at + 15:buf.find(b"\r\n", at)]) if at >= 0 else 0
    total = end + 4 + length
    return total if len(buf) >= total else 0


def exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request, read its whole response (raises on anything but 200)."""
    sock.sendall(request)
    buf = sock.recv(65536)
    while not (size := _complete(buf)):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk
    if buf[9:12] != b"200":
        raise RuntimeError(f"HTTP {buf[:size]!r}")
    return buf[:size]


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def drive(port: int, request: bytes, conns: int, *, seconds: float | None = None,
          count: int | None = None, warmup: float = 0.0,
          pids: Sequence[int] = ()) -> dict[str, Any]:
    """A closed-loop load generator: ``conns`` keep-alive connections, each sending its next
    request as soon as the last response is in. Runs ``seconds`` after ``warmup`` (or
    until ``count`` responses); returns the responses and wall/CPU seconds of the measured
    window, and the CPU seconds the processes ``pids`` used in it."""
    import selectors

    import psutil

    procs = [psutil.Process(p) for p in pids]

    def server_cpu() -> float:
        total = 0.0
        for proc in procs:
            with_children = [proc, *proc.children(recursive=True)]
            for p in with_children:
                try:
                    t = p.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += t.user + t.system
        return total

    sel = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytearray] = {}
    for _ in range(conns):
        sock = connect(port)
        sock.setblocking(False)
        buffers[sock] = bytearray()
        sel.register(sock, selectors.EVENT_READ)
    done = sent = 0
    start = time.perf_counter()
    measure_at = start + warmup
    stop_at = measure_at + seconds if seconds is not None else float("inf")
    measuring = warmup <= 0
    base_done, base_wall, base_cpu, base_server = 0, start, time.process_time(), server_cpu()
    for sock in buffers:
        sock.send(request)
        sent += 1
    while True:
        now = time.perf_counter()
        if not measuring and now >= measure_at:
            measuring = True
            base_done, base_wall = done, now
            base_cpu, base_server = time.process_time(), server_cpu()
        if now >= stop_at or (count is not None and done >= count):
            break
        for key, _ in sel.select(1.0):
            sock = key.fileobj  # type: ignore[assignment]
            buf = buffers[sock]
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed a connection")
            buf += chunk
            size = _complete(buf)
            if not size:
                continue
            if buf[9:12] != b"200":
                raise RuntimeError(f"HTTP {bytes(buf[:size])!r}")
            del buf[:size]
            done += 1
            if count is None or sent < count:
                sock.send(request)
                sent += 1
    wall = time.perf_counter() - base_wall
    result = {"requests": done - base_done, "wall_s": wall,
              "client_cpu_s": time.process_time() - base_cpu,
              "server_cpu_s": server_cpu() - base_server}
    for sock in buffers:
        sel.unregister(sock)
        sock.close()
    return result


# --------------------------------------------------------------------------- child modes


def minimal_server(model: str, port_file: str, thread: bool) -> None:
    """The baseline: the least a server on oemkit's stack (Starlette, uvicorn with
    httptools and uvloop, onnxruntime with the profile's threads) must do per request."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import onnxruntime as ort
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    pool = ThreadPoolExecutor(1)

    async def infer(request: Request) -> Response:
        doc = json.loads(await request.body())
        item = doc["inputs"][0]
        x = np.asarray(item["data"], dtype=np.float32).reshape(item["shape"])
        if thread:
            (y,) = await asyncio.get_running_loop().run_in_executor(
                pool, session.run, None, {item["name"]: x})
        else:
            (y,) = session.run(None, {item["name"]: x})
        out = {"model_name": "example", "model_version": "1",
               "outputs": [{"name": "y", "datatype": "FP32", "shape": list(y.shape),
                            "data": y.ravel().tolist()}]}
        return Response(json.dumps(out, separators=(",", ":")), media_type="application/json")

    async def live(request: Request) -> Response:
        return Response(b'{"live":true}', media_type="application/json")

    app = Starlette(routes=[Route(INFER, infer, methods=["POST"]),
                            Route("/v2/health/live", live, methods=["GET"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            server_header=False, timeout_keep_alive=5)
    uvicorn.Server(config).run(sockets=[sock])


def minimal_asgi_server(model: str, port_file: str) -> None:
    """The like-for-like baseline of oemkit's fast path: one raw ASGI callable under
    uvicorn with the same settings as :func:`minimal_server` (read the body off
    ``receive``, ``json.loads``, ``np.asarray``, ``session.run``, ``json.dumps``, send)."""
    import numpy as np
    import onnxruntime as ort
    import uvicorn

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    json_type = (b"content-type", b"application/json")

    async def reply(send: Any, body: bytes) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), json_type]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["method"] == "POST" and scope["path"] == INFER:
            message = await receive()
            body = message.get("body", b"")
            while message.get("more_body", False):
                message = await receive()
                body += message.get("body", b"")
            doc = json.loads(body)
            item = doc["inputs"][0]
            x = np.asarray(item["data"], dtype=np.float32).reshape(item["shape"])
            (y,) = session.run(None, {item["name"]: x})
            out = {"model_name": "example", "model_version": "1",
                   "outputs": [{"name": "y", "datatype": "FP32", "shape": list(y.shape),
                                "data": y.ravel().tolist()}]}
            await reply(send, json.dumps(out, separators=(",", ":")).encode())
        else:
            await reply(send, b'{"live":true}')

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            server_header=False, timeout_keep_alive=5)
    uvicorn.Server(config).run(sockets=[sock])


def floor_server(port_file: str) -> None:
    """Client + loopback floor: a blocking raw-socket responder, one thread a connection,
    answering every request with a fixed 2-byte JSON body (no HTTP library, no model)."""
    import threading

    reply = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2"
             b"\r\n\r\n{}")

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            buf += chunk
            while (size := _request_size(buf)):
                buf = buf[size:]
                conn.sendall(reply)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def _request_size(buf: bytes) -> int:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0
    head = buf[:end].lower()
    at = head.find(b"content-length:")
    length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0
                      else len(head)]) if at >= 0 else 0
    total = end + 4 + length
    return total if len(buf) >= total else 0


# --------------------------------------------------------------------------- set-up


@dataclass
class Fixture:
    """The example installed in a prefix, a trust root with the license key, a license."""

    tmp: Path
    prefix: Path
    bundle: Path
    trust: Path
    license: Path
    model: Path

    def state(self) -> Path:
        return self.tmp / "state.json"

    def serve_args(self, target: Path | None = None, *extra: str) -> list[str]:
        return [sys.executable, "-m", "oemkit", "serve", str(target or self.prefix), "--trust",
                str(self.trust), "--license", str(self.license), "--state", str(self.state()),
                "--port", "0", *extra]


def make_fixture(tmp: Path) -> Fixture:
    import oemkit.license
    from oemkit.crypto.keys import load_private_file
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.trust import parse_root

    keys = {n: load_private_file(KEYS / f"{n}.key", PASSPHRASE)
            for n in ("root", "bundle", "license")}
    root = init_root([keys["root"]], names=["root"])
    root = add_key(parse_root(root), keys["bundle"].public, ["bundle"], [keys["root"]],
                   name="bundle")
    root = add_key(parse_root(root), keys["license"].public, ["license"], [keys["root"]],
                   name="license")
    trust = tmp / "trust-root.json"
    trust.write_bytes(root)
    bundle = build_bundle(EXAMPLE / "bundle.yaml", tmp / "dist").path
    sign_bundle(bundle, [keys["bundle"]])
    lic = tmp / "example.lic"
    lic.write_bytes(oemkit.license.issue(
        key=keys["license"], issuer="license", customer="acme", customer_name="ACME",
        product="example", expires="2099-01-01T00:00:00Z", features=["serve"],
        issued_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)))
    prefix = tmp / "prefix"
    subprocess.run([sys.executable, "-m", "oemkit", "install", str(bundle), "--prefix",
                    str(prefix), "--trust", str(trust), "--skip-smoke",
                    "--system-site-packages", "--state", str(tmp / "state.json")],
                   check=True, capture_output=True)
    manifest = json.loads((prefix / "current" / "manifest.json").read_text())
    model = prefix / "current" / "bundle" / manifest["runtime"]["model"]
    return Fixture(tmp, prefix, bundle, trust, lic, model)


class Served:
    """A server in a child process, listening on a free port once ``ready``."""

    def __init__(self, args: list[str], tmp: Path, name: str, ready: str) -> None:
        self.name = name
        self.port_file = tmp / f"port-{name}-{time.monotonic_ns()}"
        self.log = tmp / f"{name}-{time.monotonic_ns()}.log"
        if "--port" in args:
            args = [*args, "--port-file", str(self.port_file)]
        else:
            args = [*args, str(self.port_file)]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log,
                                         cwd=REPO)
        deadline = time.monotonic() + 120
        while not self.port_file.exists() or not self.port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {self.log.read_text()}")
            time.sleep(0.01)
        self.port = int(self.port_file.read_text())
        while True:
            try:
                sock = connect(self.port)
                exchange(sock, request_bytes("GET", ready))
                sock.close()
                break
            except (OSError, RuntimeError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} is not ready: {self.log.read_text()}") from None
                time.sleep(0.02)

    def workers(self) -> list[int]:
        """The processes that serve: the children of a supervisor, else the process."""
        import psutil

        children = psutil.Process(self.proc.pid).children()
        return [c.pid for c in children] or [self.proc.pid]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def oemkit_server(fx: Fixture, name: str, *extra: str) -> Served:
    return Served(fx.serve_args(None, *extra), fx.tmp, name, "/v2/health/ready")


def minimal(fx: Fixture, name: str = "minimal", thread: bool = False,
            asgi: bool = False) -> Served:
    mode = "_asgi" if asgi else "_thread" if thread else "_minimal"
    args = [sys.executable, str(Path(__file__).resolve()), mode, str(fx.model)]
    return Served(args, fx.tmp, name, "/v2/health/live")


def bare_session(model: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def golden_x() -> Any:
    import numpy as np

    spec = json.loads((EXAMPLE / "golden" / "inputs.json").read_text())["x"]
    return np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    figure: str
    value: str
    target: str = ""
    baseline: str = ""
    ratio: str = ""
    verdict: str = "info"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args: str, ok: bool | None = None) -> None:
        row = Row(*args)
        if ok is not None:
            row.verdict = "PASS" if ok else "MISS"
        self.rows.append(row)

    def print(self) -> None:
        head = Row("figure", "value", "target", "baseline", "ratio", "verdict")
        table = [head, *self.rows]
        widths = [max(len(getattr(r, f)) for r in table) for f in
                  ("figure", "value", "target", "baseline", "ratio", "verdict")]
        for index, row in enumerate(table):
            cells = [row.figure, row.value, row.target, row.baseline, row.ratio, row.verdict]
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
            if index == 0:
                print("  ".join("-" * w for w in widths))
        for note in self.notes:
            print(note)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


# --------------------------------------------------------------------------- benchmarks


def bench_overhead(fx: Fixture, report: Report, requests: int) -> None:
    """Sequential keep-alive requests, interleaved in blocks with bare session.run calls."""
    ours = oemkit_server(fx, "overhead")
    base = minimal(fx)
    raw = minimal(fx, "minimal-asgi", asgi=True)
    threaded = minimal(fx, "minimal-thread", thread=True)
    floor = Served([sys.executable, str(Path(__file__).resolve()), "_floor"], fx.tmp, "floor",
                   "/")
    try:
        session, x = bare_session(fx.model), golden_x()
        infer = request_bytes("POST", INFER, infer_body())
        live = request_bytes("GET", "/v2/health/live")
        plan: list[tuple[str, int, bytes]] = [
            ("oemkit infer", ours.port, infer), ("oemkit live", ours.port, live),
            ("minimal asgi infer", raw.port, infer), ("minimal infer", base.port, infer),
            ("minimal+thread infer", threaded.port, infer), ("floor", floor.port, infer)]
        socks = {name: connect(port) for name, port, _ in plan}
        samples: dict[str, list[float]] = {name: [] for name, _, _ in plan}
        samples["bare run"] = []
        client_cpu: list[float] = []
        block = max(10, min(500, requests // 10))
        clock = time.perf_counter
        for name, _, req in plan:  # warm every connection and server
            for _ in range(min(200, requests)):
                exchange(socks[name], req)
        for _ in range(min(200, requests)):
            session.run(None, {"x": x})
        done = 0
        while done < requests:
            n = min(block, requests - done)
            for _ in range(n):
                t = clock()
                session.run(None, {"x": x})
                samples["bare run"].append(clock() - t)
            for name, _, req in plan:
                sock, out = socks[name], samples[name]
                cpu = time.process_time()
                for _ in range(n):
                    t = clock()
                    exchange(sock, req)
                    out.append(clock() - t)
                if name == "floor":
                    client_cpu.append((time.process_time() - cpu) / n)
            done += n
        for sock in socks.values():
            sock.close()
    finally:
        for server in (ours, base, raw, threaded, floor):
            server.stop()
    bare = samples["bare run"]
    b50, b99 = pct(bare, 50), pct(bare, 99)
    rtt = samples["oemkit infer"]
    o50, o99 = pct(rtt, 50) - b50, pct(rtt, 99) - b99
    report.add("overhead p50 (infer RTT - bare run)", ms(o50), "<= 0.250 ms",
               f"bare run {ms(b50)}", f"{o50 / 0.25e-3:.2f} of target", ok=o50 <= 0.25e-3)
    report.add("overhead p99 (infer RTT - bare run)", ms(o99), "<= 1.000 ms",
               f"bare run {ms(b99)}", f"{o99 / 1e-3:.2f} of target", ok=o99 <= 1e-3)
    for name in ("oemkit infer", "oemkit live", "minimal asgi infer", "minimal infer",
                 "minimal+thread infer", "floor"):
        values = samples[name]
        extra = ""
        if name.endswith("infer"):
            extra = f"over bare: {ms(pct(values, 50) - b50)}"
        report.add(f"  RTT {name} p50 / p99", f"{ms(pct(values, 50))} / {ms(pct(values, 99))}",
                   "", extra)
    report.add("  client CPU per request (raw socket)", ms(sum(client_cpu) / len(client_cpu)))
    own = pct(rtt, 50) - pct(samples["minimal asgi infer"], 50)
    report.add("  oemkit over the minimal raw-ASGI server, p50", ms(own))
    own = pct(rtt, 50) - pct(samples["minimal infer"], 50)
    report.add("  oemkit over the minimal Starlette server, p50", ms(own))
    report.notes.append(
        f"overhead: {requests} sequential requests per line, one keep-alive raw socket each, "
        f"in blocks of {block} interleaved with the bare session.run calls; 'minimal asgi' "
        "is one raw ASGI callable on uvicorn, 'minimal' one Starlette route (both: "
        "json.loads, np.asarray, session.run, json.dumps); 'floor' is a raw-socket "
        "responder (no HTTP library, no model): the client + loopback cost.")


def bench_throughput(fx: Fixture, report: Report, seconds: float, rounds: int,
                     conns: int) -> None:
    servers = {
        "minimal asgi": minimal(fx, "minimal-asgi-tp", asgi=True),
        "minimal": minimal(fx),
        "minimal+thread": minimal(fx, "minimal-thread-tp", thread=True),
        "oemkit 1 worker": oemkit_server(fx, "w1", "--workers", "1", "--max-batch", "1"),
        "oemkit 1 worker, batching": oemkit_server(fx, "w1b", "--workers", "1"),
        "oemkit 2 workers": oemkit_server(fx, "w2", "--workers", "2", "--max-batch", "1"),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    try:
        for _ in range(rounds):
            for name, server in servers.items():
                load = 2 * conns if "2 workers" in name else conns
                out = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "_load", str(server.port),
                     str(seconds), str(load), str(server.proc.pid)],
                    check=True, capture_output=True, text=True)
                runs[name].append(json.loads(out.stdout))
    finally:
        for server in servers.values():
            server.stop()

    def rate(r: dict[str, Any]) -> float:
        return float(r["requests"] / r["wall_s"])

    def per_cpu(r: dict[str, Any]) -> float:
        return float(r["requests"] / max(r["server_cpu_s"], 1e-9))

    best = {n: max(runs[n], key=rate) for n in runs}
    med = {n: sorted(rate(r) for r in runs[n])[len(runs[n]) // 2] for n in runs}
    for name in servers:
        r = best[name]
        report.add(f"  {name}: req/s best (median)", f"{rate(r):.0f} ({med[name]:.0f})", "",
                   "", "", "info")
        report.add("    server / load generator CPU use",
                   f"{r['server_cpu_s'] / r['wall_s']:.2f} / "
                   f"{r['client_cpu_s'] / r['wall_s']:.2f} cores",
                   "", "", "", "info")
    one = best["oemkit 1 worker"]
    # the verdict: the raw-ASGI minimal server (the fast path's stack); Starlette: info
    for key, label, verdict in (
            ("minimal asgi", "throughput 1 worker / minimal server", True),
            ("minimal", "  1 worker / minimal Starlette server (info)", False)):
        base = best[key]
        ratio = rate(one) / rate(base)
        name = "raw-ASGI minimal" if verdict else "Starlette minimal"
        report.add(label, f"{rate(one):.0f} req/s", ">= 0.80x" if verdict else "",
                   f"{name} {rate(base):.0f} req/s",
                   f"{ratio:.2f}x (median {med['oemkit 1 worker'] / med[key]:.2f}x)",
                   ok=ratio >= 0.8 if verdict else None)
        report.add("  same, per server CPU second", f"{per_cpu(one):.0f} req/cpu-s", "",
                   f"{name} {per_cpu(base):.0f}", f"{per_cpu(one) / per_cpu(base):.2f}x")
    two = best["oemkit 2 workers"]
    ratio2 = rate(two) / rate(one)
    report.add("throughput 2 workers / 1 worker", f"{rate(two):.0f} req/s", ">= 1.60x",
               f"1 worker {rate(one):.0f} req/s",
               f"{ratio2:.2f}x (median {med['oemkit 2 workers'] / med['oemkit 1 worker']:.2f}x)",
               ok=ratio2 >= 1.6)
    report.add("  same, per server CPU second", f"{per_cpu(two):.0f} req/cpu-s", "",
               f"1 worker {per_cpu(one):.0f}", f"{per_cpu(two) / per_cpu(one):.2f}x")
    report.notes.append(
        f"throughput: closed loop, {conns} keep-alive connections ({2 * conns} for 2 workers) "
        f"from one load-generator process, {seconds:g} s after 1 s of warm-up, {rounds} "
        f"round(s) alternating the servers; ratios best vs best. oemkit runs --max-batch 1 "
        "(one session.run per request, as the minimal server); 'batching' is the config's "
        "max_batch. The verdict is against the minimal raw-ASGI server (oemkit's hot path "
        "is raw ASGI on uvicorn: the same stack); the minimal Starlette route is "
        f"information. This host has {os.cpu_count()} cores: the load generator needs one "
        "of them, so two workers share what is left.")


#: The bare baseline: import onnxruntime, make the session, say ready.
BARE_CODE = ("import sys, onnxruntime as ort\n"
             "o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1\n"
             "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])\n"
             "print('ready', flush=True); sys.stdin.read()\n")
#: The stack floor: the same, after importing every third-party module ``oemkit serve``
#: imports (its server stack, the license check's cryptography, the profile's YAML and
#: schema), and binding a socket: what any server on these dependencies pays before it
#: runs a line of its own.
FLOOR_CODE = ("import sys, socket, onnxruntime as ort\n"
              "import uvicorn, uvloop, httptools, uvicorn.loops.uvloop\n"
              "import uvicorn.protocols.http.httptools_impl, uvicorn.lifespan.on\n"
              "import starlette.applications, starlette.routing, starlette.responses\n"
              "import prometheus_client\n"
              "from cryptography.hazmat.primitives import serialization\n"
              "from cryptography.hazmat.primitives.asymmetric import ec, ed25519\n"
              "import yaml, jsonschema_rs, rfc8785\n"
              "o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1\n"
              "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])\n"
              "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
              "print('ready', flush=True); sys.stdin.read()\n")


def baseline_start(code: str, model: Path) -> tuple[float, int]:
    """Seconds from spawning ``code`` to its 'ready' line, and its RSS then (bytes)."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, str(model)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.readline()
    seconds = time.perf_counter() - start
    rss = psutil.Process(proc.pid).memory_info().rss
    proc.stdin.close()
    proc.wait()
    return seconds, rss


def bench_cold(fx: Fixture, report: Report, runs: int) -> float:
    """Best-of ``runs``: process start to ready; returns the baseline's RSS in bytes."""
    bare: list[float] = []
    floor: list[float] = []
    rss: list[int] = []
    times: dict[str, list[float]] = {"prefix": [], "bundle": []}
    logged: list[dict[str, Any]] = []
    for _ in range(runs):
        seconds, size = baseline_start(BARE_CODE, fx.model)
        bare.append(seconds)
        rss.append(size)
        floor.append(baseline_start(FLOOR_CODE, fx.model)[0])
        for kind, target in (("prefix", fx.prefix), ("bundle", fx.bundle)):
            seconds, lines = cold_start(fx, target)
            times[kind].append(seconds)
            if kind == "prefix":
                at = {x.get("msg"): x for x in lines}
                logged.append({**at["ready"], "listening_at": at["listening"]["at_s"],
                               "license_at": next(x["at_s"] for x in lines
                                                  if "license_state" in x), "total": seconds})
    b = min(bare)
    for kind, label in (("prefix", "cold start to ready (prefix, license)"),
                        ("bundle", "  cold start, bundle file (verify+unpack)")):
        t = min(times[kind])
        report.add(label, f"{t * 1000:.0f} ms", f"<= {b * 1000 + 300:.0f} ms",
                   f"bare ort {b * 1000:.0f} ms", f"+{(t - b) * 1000:.0f} ms",
                   ok=t <= b + 0.3)
    f = min(floor)
    report.add("  stack floor: its imports + session + bind", f"{f * 1000:.0f} ms", "",
               f"bare ort {b * 1000:.0f} ms", f"+{(f - b) * 1000:.0f} ms")
    report.add("  oemkit over the stack floor", f"+{(min(times['prefix']) - f) * 1000:.0f} ms")
    fields = min(logged, key=lambda f: float(f["total"]))
    states = ",".join(sorted({str(f.get("license_state")) for f in logged}))
    report.add("  spawn -> 'listening' (interpreter, CLI, target)",
               f"{fields['listening_at'] * 1000:.0f} ms", "", "", "", "info")
    report.add("  spawn -> license checked (+ onnxruntime, session)",
               f"{fields['license_at'] * 1000:.0f} ms", "", f"license {states}")
    report.add("  spawn -> 'ready' logged / 200 seen",
               f"{fields['at_s'] * 1000:.0f} / {fields['total'] * 1000:.0f} ms", "",
               f"model_load_s {float(fields['model_load_s']) * 1000:.1f} ms")
    report.notes.append(
        f"cold start: best of {runs}, alternating; wall time from spawning the process to the "
        "first 200 of /v2/health/ready (the bare baseline: to its 'ready' line after the "
        "session exists); the 'spawn ->' lines are serve's log timestamps less the spawn "
        "time (best run). The stack floor is a python -c that imports every third-party "
        "module oemkit serve imports (uvicorn, uvloop, httptools, starlette, "
        "prometheus_client, cryptography, yaml, jsonschema_rs, rfc8785), makes the same "
        "session and binds a socket: no server on these dependencies starts faster.")
    return float(min(rss))


def cold_start(fx: Fixture, target: Path) -> tuple[float, list[dict[str, Any]]]:
    port_file = fx.tmp / f"cold-{time.monotonic_ns()}"
    log = fx.tmp / f"cold-{time.monotonic_ns()}.log"
    ready = request_bytes("GET", "/v2/health/ready")
    with log.open("wb") as err:
        epoch = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen([*fx.serve_args(target), "--port-file", str(port_file),
                                 "--workers", "1"], stdout=subprocess.DEVNULL, stderr=err,
                                cwd=REPO)
        try:
            while not port_file.exists():
                if proc.poll() is not None:
                    raise RuntimeError(log.read_text())
                time.sleep(0.001)
            port = int(port_file.read_text())
            while True:  # the kernel queues the connection; uvicorn answers once it is up
                try:
                    sock = connect(port)
                    exchange(sock, ready)
                    sock.close()
                    break
                except (OSError, RuntimeError):
                    if proc.poll() is not None:
                        raise RuntimeError(log.read_text()) from None
                    time.sleep(0.001)
            seconds = time.perf_counter() - start
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    for line in lines:  # seconds from the spawn to each log line
        stamp = dt.datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).timestamp()
        line["at_s"] = stamp - epoch
    return seconds, lines


def bench_memory(fx: Fixture, report: Report, total: int, bare_rss: float | None) -> None:
    import psutil

    size = fx.model.stat().st_size
    limit = size + 80 * MB
    base = f"bare ort {bare_rss / MB:.1f} MB" if bare_rss else ""
    floor_rss = min(baseline_start(FLOOR_CODE, fx.model)[1] for _ in range(3))
    report.add("  stack floor RSS (its imports + session + bind)", f"{floor_rss / MB:.1f} MB",
               f"<= {limit / MB:.1f} MB", base,
               f"{floor_rss / bare_rss:.2f}x bare" if bare_rss else "")
    request = request_bytes("POST", INFER, infer_body())
    two = oemkit_server(fx, "mem2", "--workers", "2")
    try:
        drive(two.port, request, 8, count=min(2000, total))
        worst = 0.0
        for index, pid in enumerate(two.workers()):
            info = psutil.Process(pid).memory_full_info()
            worst = max(worst, info.rss)
            report.add(f"  2 workers: worker {index + 1} RSS / anon / USS / PSS",
                       f"{info.rss / MB:.1f} / {(info.rss - info.shared) / MB:.1f} / "
                       f"{info.uss / MB:.1f} / {info.pss / MB:.1f} MB")
        sup = psutil.Process(two.proc.pid).memory_info().rss
        report.add("  2 workers: supervisor RSS", f"{sup / MB:.1f} MB")
    finally:
        two.stop()
    one = oemkit_server(fx, "mem1", "--workers", "1")
    samples: list[tuple[int, float]] = []
    try:
        proc = psutil.Process(one.proc.pid)
        drive(one.port, request, 4, count=min(1000, total))  # warm-up, not counted
        served = 0
        step = max(1, total // 10)
        samples.append((0, proc.memory_info().rss))
        while served < total:
            drive(one.port, request, 4, count=step)
            served += step
            samples.append((served, proc.memory_info().rss))
        last = proc.memory_full_info()
    finally:
        one.stop()
    rss = max(r for _, r in samples)
    report.add("RSS per worker (1 worker, max)", f"{rss / MB:.1f} MB",
               f"<= {limit / MB:.1f} MB", base,
               f"{rss / bare_rss:.2f}x bare" if bare_rss else "", ok=rss <= limit)
    report.add("  1 worker at the end: anon / USS / PSS",
               f"{(last.rss - last.shared) / MB:.1f} / {last.uss / MB:.1f} / "
               f"{last.pss / MB:.1f} MB")
    report.add("RSS per worker (2 workers, max)", f"{worst / MB:.1f} MB",
               f"<= {limit / MB:.1f} MB", base,
               f"{worst / bare_rss:.2f}x bare" if bare_rss else "", ok=worst <= limit)
    n = len(samples)
    mean_x = sum(x for x, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    var = sum((x - mean_x) ** 2 for x, _ in samples)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in samples) / var if var else 0.0
    per_10k = slope * 10_000
    growth = samples[-1][1] - samples[0][1]
    later = samples[-1][1] - samples[1][1]
    report.add(f"RSS slope over {total} requests", f"{per_10k / 1024:+.1f} KiB per 10k",
               "<= 100 KiB per 10k", f"start {samples[0][1] / MB:.1f} MB",
               f"{growth / 1024:+.0f} KiB, {later / 1024:+.0f} after 1st step",
               ok=per_10k <= 100 * 1024)
    report.notes.append(
        "memory: RSS of the serving process(es) via psutil after warm-up "
        f"({min(2000, total)} requests for two workers, {min(1000, total)} for one), then "
        f"every {step} requests (4 connections); the slope is a least-"
        "squares fit over the samples; 'no growth' read as at most 100 KiB per 10,000 "
        f"requests. anon: RSS less file-backed pages (psutil 'shared': the interpreter's, "
        "onnxruntime's and numpy's mapped libraries, in the page cache and shared between "
        "processes). Samples (requests: MB): "
        + ", ".join(f"{x}: {y / MB:.2f}" for x, y in samples) + f". Model size {size} B.")


# --------------------------------------------------------------------------- main


def describe() -> str:
    import onnxruntime
    import starlette
    import uvicorn

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"python {sys.version.split()[0]}, onnxruntime {onnxruntime.__version__}, "
            f"uvicorn {uvicorn.__version__}, starlette {starlette.__version__}; "
            f"{os.cpu_count()} CPUs; load average {load}")


def compiled_bytecode(tmp: Path) -> None:
    """Serve as an installed oemkit does: from compiled bytecode. A wheel install compiles
    every module (the site-packages the baselines import are compiled); a checkout under
    ``PYTHONDONTWRITEBYTECODE`` (as on this project's machines) would recompile oemkit's
    modules at every start, about 70 ms that no installed service pays. So the servers
    this run starts read oemkit's bytecode from a cache under ``tmp``, compiled first."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")  # main() restores both
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "oemkit")],
                   check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str]) -> None:
    if argv and argv[0] in ("_minimal", "_thread"):
        minimal_server(argv[1], argv[2], thread=argv[0] == "_thread")
        return
    if argv and argv[0] == "_asgi":
        minimal_asgi_server(argv[1], argv[2])
        return
    if argv and argv[0] == "_floor":
        floor_server(argv[1])
        return
    if argv and argv[0] == "_load":
        pids = [int(p) for p in argv[4].split(",") if p]
        request = request_bytes("POST", INFER, infer_body())
        print(json.dumps(drive(int(argv[1]), request, int(argv[3]), seconds=float(argv[2]),
                               warmup=1.0, pids=pids)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                        help="overhead, throughput, cold, memory (default: all)")
    parser.add_argument("--requests", type=int, default=5000,
                        help="sequential requests per line of the overhead benchmark")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measured seconds per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    parser.add_argument("--conns", type=int, default=8,
                        help="load-generator connections per worker")
    parser.add_argument("--runs", type=int, default=7, help="cold starts of each kind")
    parser.add_argument("--memory-requests", type=int, default=100_000)
    args = parser.parse_args(argv)
    everything = ["overhead", "throughput", "cold", "memory"]
    chosen = args.benchmarks or everything
    unknown = [b for b in chosen if b not in everything]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from "
                     f"{', '.join(everything)}")
    print(describe())
    report = Report()
    tmp = Path(tempfile.mkdtemp(prefix="oemkit-bench-serve-"))
    saved = {k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    try:
        compiled_bytecode(tmp)
        fx = make_fixture(tmp)
        steps: list[tuple[str, Callable[[], Any]]] = []
        bare_rss: list[float] = []
        if "overhead" in chosen:
            steps.append(("overhead", lambda: bench_overhead(fx, report, args.requests)))
        if "throughput" in chosen:
            steps.append(("throughput", lambda: bench_throughput(
                fx, report, args.seconds, args.rounds, args.conns)))
        if "cold" in chosen or "memory" in chosen:
            steps.append(("cold", lambda: bare_rss.append(bench_cold(
                fx, report if "cold" in chosen else Report(), args.runs))))
        if "memory" in chosen:
            steps.append(("memory", lambda: bench_memory(
                fx, report, args.memory_requests, bare_rss[0] if bare_rss else None)))
        for name, step in steps:
            started = time.perf_counter()
            step()
            print(f"[{name} done in {time.perf_counter() - started:.0f} s; load average "
                  f"{os.getloadavg()[0]:.2f}]", flush=True)
    finally:
        for key, value in saved.items():  # the caller's environment (tests run main())
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    report.print()
    print(describe())


if __name__ == "__main__":
    main(sys.argv[1:])
