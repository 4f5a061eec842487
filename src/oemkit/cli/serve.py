"""`oemkit serve`: a thin command over oemkit.serve (Open Inference Protocol v2 over HTTP,
Prometheus metrics, license enforcement). It resolves the target, the profile's session
settings and the options, then hands over to :func:`oemkit.serve.server.serve`."""

from __future__ import annotations

from pathlib import Path

import typer

from oemkit.cli._options import TrustServe
from oemkit.cli._output import guard


def serve(
    target: Path = typer.Argument(..., help="An install prefix (serves its current "
                                  "release) or a bundle file (needs --trust)."),
    trust: TrustServe = None,
    profile: str | None = typer.Option(None, "--profile", help="Profile name or YAML file "
                                       "(default: the bundle's first, else cpu-small)."),
    workers: int | None = typer.Option(None, "--workers", min=1, max=256,
                                       help="Worker processes, each with its own session "
                                       "(default: the host's cores / the profile's "
                                       "intra-op threads)."),
    max_batch: int | None = typer.Option(None, "--max-batch", min=1, max=4096,
                                         help="Most rows per executed batch (default: the "
                                         "config's max_batch, else 1)."),
    max_queue_delay: float = typer.Option(0.0, "--max-queue-delay", min=0.0, max=10_000.0,
                                          help="Milliseconds a batch waits for more rows."),
    inline_below: float = typer.Option(0.5, "--inline-below", min=0.0, max=1000.0,
                                       help="Milliseconds: a model computing faster runs on "
                                       "the event loop when nothing waits (0: always on the "
                                       "model thread)."),
    max_queue: int = typer.Option(256, "--max-queue", min=1, max=1_000_000,
                                  help="Requests a worker queues before answering 503."),
    max_body: int = typer.Option(64 << 20, "--max-body", min=1024, max=1 << 34,
                                 help="Largest request body in bytes (413 above)."),
    request_timeout: float = typer.Option(30.0, "--request-timeout", min=0.1, max=3600.0,
                                          help="Seconds a client may take to send a body."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free)."),
    port_file: Path | None = typer.Option(None, "--port-file",
                                          help="Write the bound port here once listening."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="TLS certificate (PEM)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="TLS private key (PEM)."),
    token_file: Path | None = typer.Option(None, "--token-file",
                                           help="File holding the bearer token clients "
                                           "must send (health endpoints stay open)."),
    license: list[Path] = typer.Option([], "--license", help="A license to enforce "
                                       "(repeatable; also: attached ones, SLOT/licenses/)."),
    state: Path | None = typer.Option(None, "--state", help="License state file (default: "
                                      "the host's)."),
    drain: float = typer.Option(30.0, "--drain", min=0.0, max=3600.0,
                                help="Seconds SIGTERM waits for in-flight requests."),
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
        from oemkit._extras import require_serve
        from oemkit.errors import InputError, UsageError
        from oemkit.host.license_state import default_state_path
        from oemkit.serve.runtime import Settings, default_workers, session_settings
        from oemkit.serve.server import Listen
        from oemkit.serve.server import serve as run
        from oemkit.serve.target import open_target

        require_serve("oemkit serve")
        if (tls_cert is None) != (tls_key is None):
            raise UsageError("E_USAGE", "--tls-cert and --tls-key go together",
                             hint="pass both, or neither for plain HTTP")
        token = None
        if token_file is not None:
            from oemkit._fs import read_input

            token = read_input(token_file, "token file", 4096).strip()
            if len(token) < 16:
                raise InputError("E_TOKEN_INVALID", f"{token_file} holds a token of "
                                 f"{len(token)} bytes; at least 16 are needed",
                                 hint="write a long random token, e.g. from "
                                      "'python -c \"import secrets;print(secrets.token_hex())\"'")
        target_obj = open_target(target, trust=trust, licenses=license,
                                 state_path=state or default_state_path())
        try:
            session = session_settings(profile or (target_obj.profiles[0] if
                                                   target_obj.profiles else "cpu-small"),
                                       target_obj.source.root_dir)
            settings = Settings(session=session, workers=workers or default_workers(session),
                                max_batch=max_batch, max_delay_s=max_queue_delay / 1000.0,
                                max_queue=max_queue, max_body=max_body,
                                request_timeout_s=request_timeout, token=token,
                                inline_s=inline_below / 1000.0)
            code = run(target_obj.source, settings,
                       Listen(host=host, port=port, port_file=port_file, tls_cert=tls_cert,
                              tls_key=tls_key, drain_s=drain))
        finally:
            target_obj.close()
        raise typer.Exit(code)

