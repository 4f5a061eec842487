"""`oemkit serve`: a thin command over oemkit.serve (Open Inference Protocol v2 over HTTP,
Prometheus metrics, license enforcement).

The console script usually starts a server without this module (:mod:`oemkit._entry`
hands a well-formed ``oemkit serve`` line to :mod:`oemkit.serve.entry`, skipping the CLI's
imports); this command answers the rest (``--help``, usage errors, ``oemkit --debug
serve``) and ``python -m oemkit.cli``. Both read the options' types, defaults and ranges
from :data:`oemkit.serve.entry.OPTIONS`; the help texts are here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from oemkit.cli._options import TrustServe
from oemkit.cli._output import guard
from oemkit.serve.entry import OPTIONS, ServeArgs, start

_BY_FLAG = {o.flag: o for o in OPTIONS}


def _opt(flag: str, help: str) -> Any:
    """The typer option for ``flag``, with the default and range :data:`OPTIONS` gives."""
    o = _BY_FLAG[flag]
    default = [] if o.multiple else o.default
    if o.min is None and o.max is None:
        return typer.Option(default, flag, help=help)
    return typer.Option(default, flag, min=o.min, max=o.max, help=help)


def serve(
    target: Path = typer.Argument(..., help="An install prefix (serves its current "
                                  "release) or a bundle file (needs --trust)."),
    trust: TrustServe = None,
    profile: str | None = _opt("--profile", "Profile name or YAML file (default: the "
                               "bundle's first, else cpu-small)."),
    workers: int | None = _opt("--workers", "Worker processes, each with its own session "
                               "(default: the host's cores / the profile's intra-op "
                               "threads)."),
    max_batch: int | None = _opt("--max-batch", "Most rows per executed batch (default: "
                                 "the config's max_batch, else 1)."),
    max_queue_delay: float = _opt("--max-queue-delay", "Milliseconds a batch waits for "
                                  "more rows."),
    inline_below: float = _opt("--inline-below", "Milliseconds: a model computing faster "
                               "runs on the event loop when nothing waits (0: always on "
                               "the model thread)."),
    max_queue: int = _opt("--max-queue", "Requests a worker queues before answering 503."),
    max_body: int = _opt("--max-body", "Largest request body in bytes (413 above)."),
    request_timeout: float = _opt("--request-timeout", "Seconds a client may take to send "
                                  "a body."),
    host: str = _opt("--host", "Address to bind."),
    port: int = _opt("--port", "Port (0: any free)."),
    port_file: Path | None = _opt("--port-file", "Write the bound port here once "
                                  "listening."),
    tls_cert: Path | None = _opt("--tls-cert", "TLS certificate (PEM)."),
    tls_key: Path | None = _opt("--tls-key", "TLS private key (PEM)."),
    token_file: Path | None = _opt("--token-file", "File holding the bearer token clients "
                                   "must send (health endpoints stay open)."),
    license: list[Path] = _opt("--license", "A license to enforce (repeatable; also: "
                               "attached ones, SLOT/licenses/)."),
    state: Path | None = _opt("--state", "License state file (default: the host's)."),
    drain: float = _opt("--drain", "Seconds SIGTERM waits for in-flight requests."),
) -> None:
    """Serve the bundle's model over HTTP (Open Inference Protocol v2) until SIGTERM.

    Endpoints: /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/versions/V],
    .../ready, .../infer (JSON and binary tensors), /metrics. SIGTERM drains and exits 0;
    SIGHUP re-reads the license and the live config. Logs: JSON lines on stderr.
    Exit 3: bad target or options; 1: the bundle does not verify; 4: this host cannot
    serve (port in use, onnxruntime or the server stack missing).
    Example: oemkit serve /opt/example --trust trust-root.json --port 8000
    """
    with guard(False):
        code = start(ServeArgs(
            target=target, trust=trust, profile=profile, workers=workers,
            max_batch=max_batch, max_queue_delay=max_queue_delay, inline_below=inline_below,
            max_queue=max_queue, max_body=max_body, request_timeout=request_timeout,
            host=host, port=port, port_file=port_file, tls_cert=tls_cert, tls_key=tls_key,
            token_file=token_file, license=list(license), state=state, drain=drain))
        raise typer.Exit(code)
