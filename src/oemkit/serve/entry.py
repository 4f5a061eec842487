"""``oemkit serve`` without the CLI layer: the command's options as data, a parser for a
well-formed command line, and the start-up itself.

A service is started far more often than a person types a command, and every worker
would carry the CLI's imports (typer, rich, pydantic: about 0.4 s and 20-36 MB on a
small host). So the console script (:mod:`oemkit._entry`) hands ``oemkit serve ...``
straight to :func:`accept` and :func:`start`; whatever :func:`accept` does not accept
(``--help``, an unknown or malformed option, a value out of range) goes to the typer
command in :mod:`oemkit.cli.serve` instead, which answers exactly as before. Both parse
the same :data:`OPTIONS` (tests/test_serve_entry.py compares them with the typer
command's own parameters), and both call :func:`start`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Option:
    """One ``--flag VALUE`` of ``oemkit serve``: its type, default and inclusive range."""

    flag: str
    kind: type
    default: Any = None
    min: float | None = None
    max: float | None = None
    multiple: bool = False

    @property
    def dest(self) -> str:
        """The :class:`ServeArgs` field it fills (``--max-batch``: ``max_batch``)."""
        return self.flag[2:].replace("-", "_")


#: The options of ``oemkit serve``, as the typer command in :mod:`oemkit.cli.serve`
#: declares them (help texts live there).
OPTIONS: tuple[Option, ...] = (
    Option("--trust", Path),
    Option("--profile", str),
    Option("--workers", int, None, 1, 256),
    Option("--max-batch", int, None, 1, 4096),
    Option("--max-queue-delay", float, 0.0, 0.0, 10_000.0),
    Option("--inline-below", float, 0.5, 0.0, 1000.0),
    Option("--max-queue", int, 256, 1, 1_000_000),
    Option("--max-body", int, 64 << 20, 1024, 1 << 34),
    Option("--request-timeout", float, 30.0, 0.1, 3600.0),
    Option("--host", str, "127.0.0.1"),
    Option("--port", int, 8000, 0, 65535),
    Option("--port-file", Path),
    Option("--tls-cert", Path),
    Option("--tls-key", Path),
    Option("--token-file", Path),
    Option("--license", Path, multiple=True),
    Option("--state", Path),
    Option("--drain", float, 30.0, 0.0, 3600.0),
)
_BY_FLAG = {o.flag: o for o in OPTIONS}


@dataclass
class ServeArgs:
    """A parsed ``oemkit serve`` command line (the defaults are :data:`OPTIONS`')."""

    target: Path
    trust: Path | None = None
    profile: str | None = None
    workers: int | None = None
    max_batch: int | None = None
    max_queue_delay: float = 0.0
    inline_below: float = 0.5
    max_queue: int = 256
    max_body: int = 64 << 20
    request_timeout: float = 30.0
    host: str = "127.0.0.1"
    port: int = 8000
    port_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token_file: Path | None = None
    license: list[Path] = field(default_factory=list)
    state: Path | None = None
    drain: float = 30.0


def _value(option: Option, text: str) -> Any:
    """``text`` as the option's type, or None when it is not one or out of range."""
    if option.kind is Path or option.kind is str:
        return option.kind(text) if text else None
    try:
        value = option.kind(text)
    except ValueError:
        return None
    if value != value or (option.min is not None and value < option.min) or (
            option.max is not None and value > option.max):
        return None
    return value


def accept(argv: list[str]) -> ServeArgs | None:
    """The arguments after ``serve``, or None for anything but a well-formed command line
    (help, an unknown option, a missing or bad value, no target or two): the CLI then
    parses the same line and answers it, help and usage errors included."""
    values: dict[str, Any] = {}
    target: str | None = None
    items = iter(argv)
    for item in items:
        if item.startswith("-"):
            flag, eq, text = item.partition("=")
            option = _BY_FLAG.get(flag)
            if option is None:
                return None
            if not eq:
                text = next(items, "")
                if text.startswith("-"):  # click would take it as the value: let it
                    return None
            value = _value(option, text)
            if value is None:
                return None
            if option.multiple:
                values.setdefault(option.dest, []).append(value)
            else:
                values[option.dest] = value
        elif target is None and item:
            target = item
        else:
            return None
    if target is None:
        return None
    return ServeArgs(target=Path(target), **values)


def start(args: ServeArgs) -> int:
    """Resolve the target, the profile's session settings and the options, then serve
    until SIGTERM; the exit status.

    Raises:
        UsageError: E_USAGE (``--tls-cert`` without ``--tls-key`` or the reverse).
        InputError: E_TOKEN_INVALID (a token under 16 bytes), the target's codes
            (:func:`oemkit.serve.target.open_target`), the profile's.
        EnvironmentProblem: E_MISSING_EXTRA, E_BIND.
    """
    from oemkit._extras import require_serve
    from oemkit.errors import InputError, UsageError
    from oemkit.serve.runtime import Settings, default_workers, session_settings
    from oemkit.serve.server import Listen, serve
    from oemkit.serve.target import open_target

    require_serve("oemkit serve")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("E_USAGE", "--tls-cert and --tls-key go together",
                         hint="pass both, or neither for plain HTTP")
    token = None
    if args.token_file is not None:
        from oemkit._fs import read_input

        token = read_input(args.token_file, "token file", 4096).strip()
        if len(token) < 16:
            raise InputError("E_TOKEN_INVALID", f"{args.token_file} holds a token of "
                             f"{len(token)} bytes; at least 16 are needed",
                             hint="write a long random token, e.g. from "
                                  "'python -c \"import secrets;print(secrets.token_hex())\"'")
    if args.state is not None:
        state = args.state
    else:
        from oemkit.host.license_state import default_state_path

        state = default_state_path()
    target = open_target(args.target, trust=args.trust, licenses=args.license,
                         state_path=state)
    try:
        session = session_settings(args.profile or (target.profiles[0] if target.profiles
                                                    else "cpu-small"),
                                   target.source.root_dir)
        settings = Settings(session=session, workers=args.workers or default_workers(session),
                            max_batch=args.max_batch, max_delay_s=args.max_queue_delay / 1000.0,
                            max_queue=args.max_queue, max_body=args.max_body,
                            request_timeout_s=args.request_timeout, token=token,
                            inline_s=args.inline_below / 1000.0)
        return serve(target.source, settings,
                     Listen(host=args.host, port=args.port, port_file=args.port_file,
                            tls_cert=args.tls_cert, tls_key=args.tls_key, drain_s=args.drain))
    finally:
        target.close()

