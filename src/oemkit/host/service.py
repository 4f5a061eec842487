"""The service an install runs: the readiness gate around the switch, under systemd or with
the foreground server.

``oemkit install/upgrade/rollback --service systemd`` writes a hardened unit that runs
``oemkit serve PREFIX`` (:func:`unit_text`), reloads systemd, (re)starts the unit after the
switch and keeps the switch only once ``GET /v2/health/ready`` answers 200 within the
budget; otherwise install switches back and restarts the previous release. With
``--service none`` and the readiness check (:func:`foreground_check`), ``oemkit serve`` runs
on the new slot in a child process on a free port *before* the switch, and a release that
never becomes ready is never switched to.

The server is always a separate process (``python -m oemkit serve``): the host side never
imports the serving runtime. Nothing here changes the prefix's links; install does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from oemkit.errors import EnvironmentProblem, UsageError, VerificationError

__all__ = ["DEFAULT_PORT", "DEFAULT_READY_TIMEOUT", "SERVICE_STATE", "Readiness",
           "ServiceOptions", "default_mode", "foreground_check", "hidden_paths", "probe",
           "read_unit_header", "systemctl", "unit_name", "unit_path", "unit_text",
           "verify_unit", "wait_ready"]

Mode = Literal["systemd", "none"]
DEFAULT_PORT = 8000
DEFAULT_READY_TIMEOUT = 60.0
#: Where systemd units are written unless ``--unit-dir`` or ``$OEMKIT_SYSTEMD_DIR`` says.
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
#: The service's license state file unless --state or $OEMKIT_STATE says (a system path:
#: the unit's ProtectHome=yes hides the home folders where the host default lies).
SERVICE_STATE = Path("/var/lib/oemkit/license-state.json")
#: The first line of a unit oemkit wrote: what upgrade and rollback read back.
HEADER = "# oemkit-unit: "
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.@-]{1,200}")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
#: Folders ``ProtectHome=yes`` hides from the service.
_HOMES = ("/home", "/root", "/run/user")


def default_mode() -> Mode:
    """``systemd`` where systemd is running (``/run/systemd/system`` exists), else ``none``."""
    return "systemd" if Path("/run/systemd/system").is_dir() else "none"


@dataclass(frozen=True)
class ServiceOptions:
    """How install/upgrade/rollback run the release they switch to (``--service``...).

    The defaults are the library's: no service and no readiness check (the CLI chooses
    ``systemd`` where systemd runs, and the check where the serving stack is installed).
    """

    #: ``systemd``: write, (re)start and gate on the unit; ``none``: no service.
    mode: Mode = "none"
    #: With ``none``: start ``oemkit serve`` on the new slot before the switch and switch
    #: only once it is ready (``--ready-check``). ``systemd`` always gates on readiness.
    ready_check: bool = False
    #: Seconds the release has to answer ``/v2/health/ready`` with 200.
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT
    #: The unit's name (default ``oemkit-BUNDLE.service``).
    name: str | None = None
    #: Where the unit file goes (default ``$OEMKIT_SYSTEMD_DIR``, else /etc/systemd/system).
    unit_dir: Path | None = None
    #: Run the service as this existing user (default: ``DynamicUser=yes``).
    user: str | None = None
    #: Where the service listens (None: the installed unit's, else 127.0.0.1:8000).
    host: str | None = None
    port: int | None = None
    #: The interpreter that runs ``-m oemkit serve`` (default: the one running oemkit).
    python: str = field(default_factory=lambda: sys.executable)
    #: ``oemkit serve --profile`` (default: the bundle's first profile).
    profile: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("systemd", "none"):
            raise UsageError("E_USAGE", f"--service must be systemd or none, not "
                             f"{self.mode!r}", hint="pass --service systemd or --service none")
        if self.name is not None and not _UNIT_NAME.fullmatch(self.name):
            raise UsageError("E_USAGE", f"{self.name!r} is not a systemd unit name",
                             hint="letters, digits and :_.@- only")
        if self.user is not None and not _USER.fullmatch(self.user):
            raise UsageError("E_USAGE", f"{self.user!r} is not a user name",
                             hint="pass an existing system user, or omit --service-user for "
                                  "DynamicUser=yes")
        if not self.ready_timeout_s > 0:
            raise UsageError("E_USAGE", "--ready-timeout must be positive",
                             hint="pass the seconds the release has to become ready")


@dataclass(frozen=True)
class Readiness:
    """What the readiness gate saw: ready or not, and the last answer in words."""

    ready: bool
    detail: str
    seconds: float
    code: str | None = None

    def error(self, what: str) -> VerificationError:
        """``E_SERVICE_NOT_READY`` naming ``what`` and what the endpoint said last."""
        return VerificationError(
            "E_SERVICE_NOT_READY", f"{what} did not become ready in {self.seconds:.1f} s: "
            f"{self.detail}", actual=self.code,
            hint="fix what the readiness endpoint names (a license: oemkit license verify; "
                 "a model or config: the release), or raise --ready-timeout")


# --------------------------------------------------------------------------- readiness


def probe(host: str, port: int, timeout: float = 2.0) -> tuple[int, dict[str, object] | None,
                                                                 str]:
    """``GET /v2/health/ready`` once: the HTTP status (0: no answer), its JSON body, and a
    description of the answer."""
    import http.client  # here: 8 ms of every install/upgrade command's start otherwise

    conn = http.client.HTTPConnection(_probe_host(host), port, timeout=timeout)
    try:
        conn.request("GET", "/v2/health/ready")
        res = conn.getresponse()
        body = res.read(64 << 10)
    except (OSError, http.client.HTTPException) as exc:
        return 0, None, f"no answer on {host}:{port} ({type(exc).__name__}: {exc})"
    finally:
        conn.close()
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return res.status, None, f"HTTP {res.status}"
    said = ": ".join(str(doc[k]) for k in ("code", "error") if doc.get(k))
    return res.status, doc, f"HTTP {res.status}" + (f" {said}" if said else "")


def _probe_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def wait_ready(host: str, port: int, timeout_s: float,
               alive: object = None) -> Readiness:
    """Poll the readiness endpoint until it answers 200 or ``timeout_s`` passes. A 503
    from a license policy that refuses (``license_state`` invalid) ends the wait at once;
    so does ``alive``, a callable returning a reason once the server is known to be dead."""
    start = time.monotonic()
    detail, code = "no answer", None
    while True:
        status, doc, detail = probe(host, port)
        if status == 200:
            return Readiness(True, detail, time.monotonic() - start)
        if doc is not None and isinstance(doc.get("code"), str):
            code = str(doc["code"])
        if status == 503 and doc is not None and doc.get("license_state") == "invalid":
            # The license standing is decided at start-up and checked again only on
            # SIGHUP or every check_interval_s: waiting longer would not change it.
            return Readiness(False, f"{detail} (the license policy refuses)",
                             time.monotonic() - start, code)
        if callable(alive):
            dead = alive()
            if dead:
                return Readiness(False, dead, time.monotonic() - start, code)
        if time.monotonic() - start >= timeout_s:
            return Readiness(False, f"last answer: {detail}", time.monotonic() - start, code)
        time.sleep(0.2)


def _log_reason(log: Path) -> tuple[str, str | None]:
    """Why a server that exited did: its last error line (JSON or the CLI's text)."""
    try:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no log", None
    for line in reversed(lines):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("level") in ("error", "ERROR", "critical"):
            return str(doc.get("msg", line))[:300], doc.get("code")
    tail = " | ".join(lines[-3:])[-400:]
    found = re.search(r"\bE_[A-Z0-9_]+\b", tail)
    return tail or "no output", found.group(0) if found else None


def foreground_check(slot: Path, *, options: ServiceOptions, state_path: Path | None,
                     work: Path | None = None) -> Readiness:
    """Serve ``slot`` (not yet current) with ``oemkit serve`` in a child process on a free
    loopback port, wait until it is ready, stop it with SIGTERM.

    ``oemkit serve`` takes a prefix: the child serves a temporary one whose ``current``
    links to ``slot``, so it reads exactly what ``oemkit serve PREFIX`` will after the
    switch (the slot's payload, live config, trust root, CRL and licenses).
    """
    tmp = Path(tempfile.mkdtemp(prefix="oemkit-ready-", dir=work))
    try:
        os.symlink(slot.resolve(), tmp / "current")
        port_file, log_path = tmp / "port", tmp / "serve.log"
        cmd = [options.python, "-m", "oemkit", "serve", str(tmp), "--host", "127.0.0.1",
               "--port", "0", "--port-file", str(port_file), "--workers", "1",
               "--drain", "5"]
        if state_path is not None:
            cmd += ["--state", str(state_path)]
        if options.profile is not None:
            cmd += ["--profile", options.profile]
        start = time.monotonic()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log, start_new_session=True)
            try:
                return _watch(proc, port_file, log_path, options.ready_timeout_s, start)
            finally:
                _kill(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def wait_for_port(proc: subprocess.Popen[bytes], port_file: Path, deadline: float,
                  poll_s: float = 0.02) -> int | None:
    """The port ``oemkit serve --port-file`` wrote once it listens (written atomically), or
    None when the process exited first or ``deadline`` (``time.monotonic()``) passed: the
    caller tells which by ``proc.poll()``. One loop for install's gate, smoke, sizing and
    the demo."""
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            return None
        time.sleep(poll_s)
    try:
        return int(port_file.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError):  # not oemkit's: no port to use
        return None


def _watch(proc: subprocess.Popen[bytes], port_file: Path, log: Path, budget: float,
           start: float) -> Readiness:
    def dead() -> str | None:
        rc = proc.poll()
        if rc is None:
            return None
        reason, _ = _log_reason(log)
        return f"the server exited with status {rc}: {reason}"

    port = wait_for_port(proc, port_file, start + budget)
    if port is None:
        gone = dead()
        if gone:
            return Readiness(False, gone, time.monotonic() - start, _log_reason(log)[1])
        return Readiness(False, "the server was not listening yet", time.monotonic() - start)
    left = max(0.0, budget - (time.monotonic() - start))
    seen = wait_ready("127.0.0.1", port, left, alive=dead)
    code = seen.code or (None if seen.ready else _log_reason(log)[1])
    return Readiness(seen.ready, seen.detail, time.monotonic() - start, code)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """End the gate's probe at once (SIGKILL) and reap it. It served no one, it has
    checked its license and written its state before it said ready, and a drain would
    cost a quarter of a second of uvicorn's shutdown ticks per host; that a release drains
    and exits 0 on SIGTERM is the served smoke test's to show (``oemkit smoke``)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait()


# --------------------------------------------------------------------------- systemd


def unit_name(options: ServiceOptions, bundle_name: str) -> str:
    """The unit's name: ``--service-name`` or ``oemkit-BUNDLE``, with ``.service``."""
    name = options.name or f"oemkit-{bundle_name}"
    return name if name.endswith(".service") else f"{name}.service"


def unit_path(options: ServiceOptions, name: str) -> Path:
    """Where the unit file goes."""
    folder = options.unit_dir or Path(os.environ.get("OEMKIT_SYSTEMD_DIR") or
                                      SYSTEM_UNIT_DIR)
    return folder / name


def read_unit_header(path: Path) -> dict[str, object]:
    """The settings an oemkit unit records on its first line ({} for none or another's)."""
    try:
        with path.open("rb") as handle:
            first = handle.readline(4096).decode("utf-8", "replace")
    except OSError:
        return {}
    if not first.startswith(HEADER):
        return {}
    try:
        doc = json.loads(first[len(HEADER):])
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _quote(arg: str) -> str:
    """One ExecStart= word: quoted when it holds a space, quote, backslash or ``$``/``%``."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_./:=+,@-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_text(prefix: Path, *, bundle_name: str, options: ServiceOptions, host: str,
              port: int, state_path: Path, drain_s: float = 30.0) -> str:
    """The hardened unit that runs ``oemkit serve PREFIX`` (pure).

    Its own user (``DynamicUser=yes``, or ``User=``), a read-only system
    (``ProtectSystem=strict``) but for the license state file's folder
    (``ReadWritePaths=``), no home folders, a private /tmp, no privilege gain; SIGHUP on
    ``systemctl reload``; restarted on failure.
    """
    state_dir = state_path.parent
    exec_start = [options.python, "-m", "oemkit", "serve", str(prefix), "--host", host,
                  "--port", str(port), "--state", str(state_path), "--drain", f"{drain_s:g}"]
    if options.profile is not None:
        exec_start += ["--profile", options.profile]
    header = json.dumps({"prefix": str(prefix), "bundle": bundle_name, "host": host,
                         "port": port, "state": str(state_path)}, sort_keys=True)
    if options.user is None:
        who = ["DynamicUser=yes"]
        # A dynamic user can write only a folder systemd hands it: under /var/lib that is
        # StateDirectory= (created and owned for the service, kept across restarts).
        rel = os.path.relpath(state_dir, "/var/lib")
        if state_dir.is_absolute() and not rel.startswith(".."):
            who.append(f"StateDirectory={rel}")
    else:
        who = [f"User={options.user}", f"Group={options.user}"]
    lines = [
        f"{HEADER}{header}",
        "# Written by oemkit install/upgrade/rollback; rewritten by the next one.",
        "[Unit]",
        f"Description=oemkit serve {_quote(str(prefix))} ({bundle_name})",
        "After=network.target",
        "",
        "[Service]",
        "Type=exec",
        "ExecStart=" + " ".join(_quote(a) for a in exec_start),
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={int(drain_s) + 10}s",
        "Restart=on-failure",
        "RestartSec=2s",
        *who,
        f"ReadWritePaths={_quote(str(state_dir))}",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=",
        "UMask=0027",
        "Environment=PYTHONDONTWRITEBYTECODE=1",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def hidden_paths(prefix: Path, options: ServiceOptions, state_path: Path) -> list[str]:
    """Paths the unit needs that ``ProtectHome=yes`` hides (the service could not start)."""
    needed = {"the prefix": str(prefix), "the interpreter": options.python,
              "the license state file": str(state_path)}
    return [f"{what} {path}" for what, path in needed.items()
            if any(path == h or path.startswith(h + "/") for h in _HOMES)]


def systemctl(*args: str) -> str:
    """Run ``systemctl ARGS``; its output.

    Raises:
        EnvironmentProblem: E_SERVICE_FAILED (no systemctl, or it failed).
    """
    exe = shutil.which("systemctl")
    if exe is None:
        raise EnvironmentProblem("E_SERVICE_FAILED", "systemctl is not installed",
                                 hint="pass --service none where systemd does not run")
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem("E_SERVICE_FAILED", f"systemctl {' '.join(args)} did not "
                                 "finish in 120 s", hint="check 'systemctl status'") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise EnvironmentProblem("E_SERVICE_FAILED", f"systemctl {' '.join(args)} failed "
                                 f"(exit {proc.returncode}): {tail}",
                                 hint="check 'systemctl status' and 'journalctl -u' for the "
                                      "unit; run as root to manage system units")
    return proc.stdout


def verify_unit(path: Path) -> tuple[bool, str] | None:
    """``systemd-analyze verify UNIT`` where that program exists (None where it does not):
    whether it passed, and what it said."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "verify", str(path)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "systemd-analyze verify did not finish in 120 s"
    said = " | ".join((proc.stderr + proc.stdout).strip().splitlines()[-4:])
    return proc.returncode == 0, said
