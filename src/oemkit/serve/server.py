"""Run the runtime: bind the socket, start the workers, handle the signals.

One worker runs in the ``oemkit serve`` process itself (the fastest cold start). With
``--workers N`` (N > 1) this process becomes a supervisor: it binds the socket, forks N
workers before it has imported onnxruntime (each then makes its own session and serves
on the shared socket: the kernel spreads the connections), forwards SIGTERM and SIGHUP to
them, restarts a worker that dies, and removes the shared metrics folder at exit.

Signals: SIGTERM (or SIGINT) stops accepting, lets in-flight requests finish (at most
``drain_s``) and exits 0; SIGHUP re-reads the license and the live config without
dropping a request. Logs are one JSON object per line on stderr (:mod:`.logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit.serve.logs import setup_logging

if TYPE_CHECKING:
    from oemkit.serve.runtime import Runtime, Settings, Source

log = logging.getLogger("oemkit.serve")


@dataclass
class Listen:
    """Where to listen: host, port (0: any free one, written to ``port_file``), TLS."""

    host: str = "127.0.0.1"
    port: int = 8000
    port_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    drain_s: float = 30.0


def bind(listen: Listen) -> socket.socket:
    """The listening socket (IPv6 when the host is an IPv6 address).

    Raises:
        EnvironmentProblem: E_BIND (the port is in use, not ours to take, or the host is
            not an address of this machine).
    """
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listen.host, listen.port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        from oemkit.errors import EnvironmentProblem

        raise EnvironmentProblem("E_BIND", f"cannot listen on {listen.host}:{listen.port}: "
                                 f"{exc.strerror or exc}",
                                 hint="choose another --port, or stop what holds it") from None
    sock.set_inheritable(True)
    return sock


def _check_tls(listen: Listen) -> None:
    """Load the certificate and key once before serving, so that a missing or bad pair is
    a coded error now rather than a failure inside uvicorn (or in every worker).

    Raises:
        InputError: E_TLS_INVALID naming the files and what the TLS library said.
    """
    if listen.tls_cert is None or listen.tls_key is None:
        return
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            str(listen.tls_cert), str(listen.tls_key))
    except (OSError, ssl.SSLError) as exc:
        from oemkit.errors import InputError

        raise InputError("E_TLS_INVALID", f"cannot use --tls-cert {listen.tls_cert} with "
                         f"--tls-key {listen.tls_key}: {getattr(exc, 'strerror', None) or exc}",
                         hint="pass a PEM certificate and the unencrypted PEM private key "
                              "that belongs to it") from None


def _announce(sock: socket.socket, listen: Listen, workers: int) -> None:
    host, port = sock.getsockname()[:2]
    scheme = "https" if listen.tls_cert else "http"
    log.info("listening", extra={"fields": {"url": f"{scheme}://{host}:{port}",
                                            "port": port, "workers": workers}})
    if listen.port_file is not None:
        tmp = listen.port_file.with_name(listen.port_file.name + ".tmp")
        tmp.write_text(f"{port}\n", encoding="utf-8")
        os.replace(tmp, listen.port_file)


def build_runtime(source: Source, settings: Settings) -> Runtime:
    """Load the model, the live config and the license standing (one worker)."""
    from oemkit.serve.metrics import Metrics
    from oemkit.serve.model import Model
    from oemkit.serve.runtime import Runtime

    model = Model(source.model, source.name, source.version, settings.session)
    runtime = Runtime(source, settings, model, Metrics(source.name))
    runtime.load_config()
    runtime.check_license()
    return runtime


def worker_app(runtime: Runtime, started: float | None = None) -> Any:
    """The ASGI app of one worker, with its lifecycle: at start-up the batcher, the
    periodic license check and (in the main thread) the SIGHUP handler; at shutdown the
    drain of the batcher."""
    from oemkit.serve.app import create_app
    from oemkit.serve.batcher import Batcher

    settings, source = runtime.settings, runtime.source
    tasks: list[asyncio.Task[Any]] = []
    metering: list[tuple[asyncio.Event, asyncio.Task[Any]]] = []

    async def recheck() -> None:
        standing, claims = await asyncio.to_thread(runtime.judge_license)
        runtime.apply_license(standing, claims)  # on the loop, where the meter is used

    async def reload() -> None:
        from oemkit.errors import OemkitError

        log.info("SIGHUP: re-reading the license and the config")
        try:
            await asyncio.to_thread(runtime.load_config)
        except OemkitError as exc:  # keep serving with the config in force
            log.error(f"SIGHUP: the config was not changed: {exc.message}",
                      extra={"fields": {"code": exc.code, "hint": exc.hint}})
        await recheck()

    async def every() -> None:
        while True:
            await asyncio.sleep(source.policy.check_interval_s)
            try:
                await recheck()
            except Exception as exc:  # a check must never stop the server
                log.error(f"license check failed: {exc}")

    async def meter(stopping: asyncio.Event) -> None:
        from oemkit.errors import OemkitError
        from oemkit.host.usage import flush_interval

        interval = flush_interval()
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
            usage = runtime.usage
            if usage is None or stopping.is_set():  # the last flush is shutdown's
                continue
            pending, salts = usage.take()  # on the loop: no request counts meanwhile
            if not pending and not salts:
                continue
            try:  # not cancelled at shutdown: shutdown waits for this write to end
                await asyncio.to_thread(usage.write, pending, salts)
            except OemkitError as exc:  # kept for the next flush
                usage.put_back(pending, salts)
                log.error(f"usage counts not written: {exc.message}",
                          extra={"fields": {"code": exc.code, "hint": exc.hint}})
            except Exception as exc:  # a flush must never stop the server
                usage.put_back(pending, salts)
                log.error(f"usage flush failed: {exc}")

    async def startup() -> None:
        loop = asyncio.get_running_loop()
        batcher = Batcher(runtime.model, max_batch=runtime.max_batch,
                          max_delay_s=settings.max_delay_s, max_queue=settings.max_queue,
                          inline_s=settings.inline_s)
        runtime.batcher = batcher
        batcher.start()
        with contextlib.suppress(RuntimeError, ValueError):  # not the main thread (tests)
            loop.add_signal_handler(signal.SIGHUP, lambda: tasks.append(
                loop.create_task(reload())))
        tasks.append(loop.create_task(every()))
        stopping = asyncio.Event()  # made on the loop that serves (one per start-up)
        metering.append((stopping, loop.create_task(meter(stopping))))
        fields = runtime.describe()
        if started is not None:
            fields["ready_s"] = round(time.monotonic() - started, 4)
        fields["model_load_s"] = round(runtime.model.load_seconds, 4)
        log.info("ready" if runtime.ready else "started, not ready", extra={"fields": fields})

    async def shutdown() -> None:
        runtime.draining = True
        for stopping, _ in metering:
            stopping.set()
        for task in tasks:
            task.cancel()
        if runtime.batcher is not None:
            await runtime.batcher.stop()
        while metering:  # a write in flight ends (or fails and puts its counts back)
            await metering.pop()[1]
        runtime.flush_usage()  # SIGTERM: what was counted since the last flush

    return create_app(runtime, on_startup=startup, on_shutdown=shutdown)


def run_worker(sock: socket.socket, source: Source, settings: Settings, listen: Listen,
               started: float) -> int:
    """Serve on ``sock`` until SIGTERM; 0 after a clean drain."""
    import uvicorn

    runtime = build_runtime(source, settings)
    app = worker_app(runtime, started)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", server_header=False,
        proxy_headers=False,  # no X-Forwarded-* rewriting: a loopback client pays it per request
        ws="none",  # no websockets: their import alone is about 24 ms of the cold start
        timeout_graceful_shutdown=int(max(1, listen.drain_s)), timeout_keep_alive=5,
        ssl_certfile=str(listen.tls_cert) if listen.tls_cert else None,
        ssl_keyfile=str(listen.tls_key) if listen.tls_key else None)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            runtime.draining = True
            super().handle_exit(sig, frame)
            # uvicorn re-raises a captured signal once it has shut down, so the process
            # would die of SIGTERM; a drained runtime exits 0 instead.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    server = _Server(config)
    server.run(sockets=[sock])
    log.info("stopped", extra={"fields": {"pid": os.getpid()}})
    return 0 if server.started else 4


def serve(source: Source, settings: Settings, listen: Listen) -> int:
    """Serve until SIGTERM; the exit status (0 after a clean drain)."""
    started = time.monotonic()
    setup_logging()
    settings = _licensed_workers(source, settings)
    _check_tls(listen)
    sock = bind(listen)
    if settings.workers <= 1:
        _announce(sock, listen, 1)
        return run_worker(sock, source, settings, listen, started)
    return _supervise(sock, source, settings, listen, started)


class _Supervisor:
    """N forked workers on one socket: started, signalled, reaped and restarted."""

    def __init__(self, sock: socket.socket, source: Source, settings: Settings,
                 listen: Listen, started: float) -> None:
        self.sock, self.source, self.settings = sock, source, settings
        self.listen, self.started = listen, started
        self.children: dict[int, int] = {}
        self.events: list[signal.Signals] = []
        self.failures: list[float] = []
        self.stopping = False
        self.status = 0

    def spawn(self, index: int) -> None:
        """Fork worker ``index``; the child serves and exits, never returns."""
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = 70
            try:
                code = run_worker(self.sock, self.source, self.settings, self.listen,
                                  self.started)
            except BaseException as exc:  # a worker reports and exits
                log.error(f"worker failed to start: {exc}")
                code = getattr(exc, "exit_code", 70)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = index

    def signal_all(self, sig: signal.Signals) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def handle_events(self) -> None:
        while self.events:
            sig = self.events.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.stopping = True
                self.signal_all(signal.SIGTERM)
            else:
                self.signal_all(signal.SIGHUP)

    def reaped(self, pid: int, code: int) -> None:
        """A worker exited: count it at shutdown, else restart it (give up after 3 x N
        failures within a minute)."""
        from oemkit.serve.metrics import mark_dead

        index = self.children.pop(pid)
        mark_dead(pid)
        if self.stopping:
            self.status = max(self.status, code if code > 0 else 0)
            return
        log.error("worker exited", extra={"fields": {"pid": pid, "exit": code}})
        now = time.monotonic()
        self.failures = [t for t in self.failures if now - t < 60] + [now]
        if len(self.failures) > 3 * self.settings.workers:
            log.error("workers keep failing; stopping")
            self.signal_all(signal.SIGTERM)
            self.stopping = True
            self.status = code if code > 0 else 1
            return
        self.spawn(index)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda sig, frame: self.events.append(signal.Signals(sig)))
        for index in range(self.settings.workers):
            self.spawn(index)
        _announce(self.sock, self.listen, self.settings.workers)
        while self.children:
            self.handle_events()
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
            else:
                self.reaped(pid, os.waitstatus_to_exitcode(raw))
        return self.status


def _licensed_workers(source: Source, settings: Settings) -> Settings:
    """Settings with ``workers`` capped by the license when the policy maps a licensed
    limit to it (checked here, before any worker starts: each worker checks again)."""
    if "workers" not in source.policy.limits:
        return settings
    import dataclasses

    from oemkit.serve.runtime import check_licenses

    cap = check_licenses(source).caps.get("workers")
    if cap is None or cap >= settings.workers:
        return settings
    log.warning(f"the license allows {max(cap, 1)} worker(s); starting that many, not "
                f"{settings.workers}", extra={"fields": {"licensed_workers": cap}})
    return dataclasses.replace(settings, workers=max(cap, 1))


def _supervise(sock: socket.socket, source: Source, settings: Settings, listen: Listen,
               started: float) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="oemkit-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _Supervisor(sock, source, settings, listen, started).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        sock.close()
        sys.stderr.flush()
