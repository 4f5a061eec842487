"""Support bundles: what a vendor needs to diagnose a failure on a disconnected host.

:func:`collect` gathers, read-only, from an install prefix and the host (docs/SUPPORT.md
lists every file): ``oemkit status``, every slot's ``slot.json`` and manifest, the slot
history, the reports the operator kept (``--report``), the service's journal or log files,
``profile detect``, a ``/metrics`` snapshot, the license state (no CRL text) and the
verdicts of the current slot's licenses, the live configs with every field their schema
marks secret redacted, the salted host fingerprint and the prefix's disk usage. The values
of secret fields and every ``--redact`` match are removed from every collected file. The
whole bundle stays within ``max_size``: the largest logs lose their head first, and the
manifest records what was cut. It is written as a deterministic tar compressed with zstd,
its manifest (with every file's SHA-256) first, optionally signed by a host key.

:func:`inspect` reads one back on the vendor's side: every digest and the signature
checked, and the known problems (:func:`oemkit.models.support.find_problems`) listed.
Never collected: private keys, the license state's CRL text, raw hardware ids, the config
values the schema marks secret, the values kept aside by migrations.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit import __version__
from oemkit._canonical import canonical_json, parse_json, sha256_hex
from oemkit._time import format_time, now, parse_time
from oemkit.errors import InputError, OemkitError, UsageError, VerificationError
from oemkit.models.support import (
    MANIFEST,
    MAX_MANIFEST,
    PAYLOAD_TYPE,
    REDACTED,
    SIGNATURE,
    SIGNATURE_FORMAT,
    Problem,
    SupportFile,
    SupportManifest,
    find_problems,
    path_ok,
    redact_config,
)

if TYPE_CHECKING:
    from oemkit.crypto.keys import PrivateKeyInfo, PublicKey

__all__ = ["DEFAULT_MAX_SIZE", "CollectOptions", "CollectResult", "InspectReport",
           "collect", "inspect"]

DEFAULT_MAX_SIZE = 64 << 20
MIN_MAX_SIZE = 1 << 20
#: Journal lines taken per unit (``journalctl -n``).
JOURNAL_LINES = 10_000
#: At most this many files are taken from ``--logs DIR`` (the newest by mtime first).
MAX_LOG_FILES = 200
#: A document other than a log (a slot manifest, a report) is read at most this large.
MAX_DOCUMENT = 16 << 20
#: A JSON document inspect parses (for the known problems) is at most this large.
MAX_INSPECT_DOC = 16 << 20
_ZSTD_LEVEL = 10


@dataclass(frozen=True)
class CollectOptions:
    """What :func:`collect` gathers and how (the CLI's flags)."""

    #: ``--redact PATTERN``: regular expressions replaced with REDACTED in every file.
    redact: tuple[str, ...] = ()
    #: Gather and list, write nothing (``--dry-run``).
    dry_run: bool = False
    #: Sign the manifest with this host key (``--key``).
    key: PrivateKeyInfo | None = None
    #: The bound on the whole bundle file, in bytes (``--max-size``).
    max_size: int = DEFAULT_MAX_SIZE
    #: The runtime's log files (``--logs DIR``), where there is no systemd journal.
    logs: Path | None = None
    #: The systemd unit whose journal is taken (default ``oemkit-BUNDLE.service``).
    unit: str | None = None
    #: Where the service listens (``--url http://HOST:PORT``): /metrics and readiness.
    url: str | None = None
    #: Reports the operator kept (``install/upgrade/rollback --json``, smoke results).
    reports: tuple[Path, ...] = ()
    #: The license state file (None: the host default, as ``oemkit license verify``).
    state_path: Path | None = None
    #: Replace an existing output file.
    force: bool = False
    #: journalctl lines per unit.
    journal_lines: int = JOURNAL_LINES


@dataclass
class _Item:
    """A file to collect: its bytes (or, for a log file, a reader of its tail)."""

    path: str
    source: str
    data: bytes = b""
    log: bool = False
    #: A log file's size on disk (None: ``data`` is everything).
    original_size: int | None = None
    read_tail: Callable[[int], bytes] | None = None
    truncated: bool = False
    redactions: int = 0


@dataclass(frozen=True)
class CollectResult:
    """What :func:`collect` gathered: the manifest, and where it wrote (None: dry run)."""

    manifest: SupportManifest
    out: Path | None
    size: int | None
    signer: str | None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document of ``oemkit support collect``."""
        return {"ok": True, "dry_run": self.out is None,
                "out": str(self.out) if self.out else None, "size": self.size,
                "signer": self.signer, "manifest": self.manifest.to_dict()}


def _json(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode()


class _Collector:
    def __init__(self, prefix: Path, options: CollectOptions) -> None:
        self.prefix = prefix
        self.options = options
        self.items: list[_Item] = []
        self.notes: list[str] = []
        self.secret_values: set[str] = set()
        self.secret_fields: list[str] = []
        self.moment = now()

    def add(self, path: str, data: bytes, source: str) -> None:
        assert path_ok(path), path
        self.items.append(_Item(path, source, data))

    def note(self, text: str) -> None:
        self.notes.append(text)


# --------------------------------------------------------------------------- reading


def _read_file(path: Path, limit: int) -> bytes | None:
    """A regular file's bytes (never through a link), None if absent; OSError otherwise.
    ``E_TOO_LARGE`` over ``limit``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputError("E_TOO_LARGE", f"{path} is larger than {limit} bytes",
                         hint="collect it by hand")
    return data


def _tail_reader(path: Path) -> tuple[int, Callable[[int], bytes]] | None:
    """The size of a regular log file and a reader of its last N bytes (None: not one)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None

    def read(n: int) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            start = max(0, size - n)
            chunks, left = [], min(n, size)
            os.lseek(fd, start, os.SEEK_SET)
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    return info.st_size, read


# --------------------------------------------------------------------------- what is gathered


def _gather_prefix(c: _Collector) -> tuple[str | None, list[str]]:
    """status.json, history.json, each slot's slot.json and manifest.json; the current
    slot's name, and the names of current and previous."""
    from oemkit.host.install import prefix_status
    from oemkit.host.prefix import SLOTS, Journal, scan
    from oemkit.host.slot import MAX_SLOT_JSON

    prefix = c.prefix
    try:
        layout = scan(prefix)
        status = prefix_status(prefix)
    except OemkitError as exc:
        c.note(f"oemkit status failed: {exc.code}: {exc.message}")
        c.add("status.json", _json({"ok": False, "error": exc.to_dict()}), "oemkit status")
        return None, []
    c.add("status.json", _json(status.to_dict()), "oemkit status --json")
    pending: list[str] = []
    try:
        pending = Journal.load(prefix).pending
    except OemkitError as exc:
        c.note(f"the prefix journal cannot be read: {exc.code}: {exc.message}")
    history = {
        "reports_kept": (prefix / "reports").is_dir(),
        "note": "the slot history (when each slot was installed), the links and the "
                "journal; the last install/upgrade/rollback reports are under reports/ "
                "(kept-*: what oemkit kept in PREFIX/reports; others: --report files).",
        "current": layout.current, "previous": layout.previous,
        "journal_pending": pending,
        "slots": sorted(({"name": s.name, "version": s.record.version if s.record else None,
                          "installed_at": s.record.installed_at if s.record else None,
                          "bundle_file": s.record.bundle_file if s.record else None,
                          "current": s.current, "previous": s.previous,
                          "incomplete": s.incomplete} for s in status.slots),
                        key=lambda s: (s["installed_at"] or "", s["name"])),
    }
    c.add("history.json", _json(history), "slots/*/slot.json, current, previous, .journal")
    for s in status.slots:
        folder = prefix / SLOTS / s.name
        for name, limit in (("slot.json", MAX_SLOT_JSON), ("manifest.json", MAX_DOCUMENT)):
            try:
                data = _read_file(folder / name, limit)
            except (OSError, OemkitError) as exc:
                c.note(f"slots/{s.name}/{name} cannot be read: {exc}")
                continue
            if data is None:
                c.note(f"slots/{s.name}/{name} is missing")
                continue
            c.add(f"slots/{s.name}/{name}", data, f"{prefix}/slots/{s.name}/{name}")
    return status.current, [n for n in (status.current, status.previous) if n]


def _slot_manifest(slot: Path) -> Any:
    from oemkit.models.manifest import Manifest

    data = _read_file(slot / "manifest.json", MAX_DOCUMENT)
    if data is None:
        raise InputError("E_SLOT_DAMAGED", f"{slot.name}/manifest.json is missing",
                         hint="reinstall the release")
    return Manifest.from_dict(parse_json(data, what=f"{slot.name}/manifest.json"))


def _gather_config(c: _Collector, slot: Path) -> None:
    """The slot's live config with its schema's secret fields redacted; nothing of it when
    the schema cannot be read (a config is never collected unredacted)."""
    from oemkit.host.migrate import kept_path
    from oemkit.models.config import MAX_CONFIG

    where = f"slots/{slot.name}/config.json"
    try:
        raw = _read_file(slot / "config.json", MAX_CONFIG)
    except (OSError, OemkitError) as exc:
        c.note(f"{where} cannot be read: {exc}")
        return
    if raw is None:
        return
    try:
        section = _slot_manifest(slot).runtime.config or {}
        schema_path = section.get("schema")
        if not isinstance(schema_path, str):
            raise InputError("E_CONFIG_INVALID", "the manifest names no config schema")
        schema_bytes = _read_file(slot / "bundle" / schema_path, MAX_CONFIG)
        if schema_bytes is None:
            raise InputError("E_CONFIG_INVALID", f"bundle/{schema_path} is missing")
        schema = parse_json(schema_bytes, what=schema_path)
        config = parse_json(raw, what=where)
    except (OSError, OemkitError) as exc:
        c.note(f"{where} was not collected: its schema cannot be read to redact its secret "
               f"fields ({exc})")
        return
    redacted = redact_config(config, schema)
    c.secret_values |= redacted.values
    c.secret_fields += [f"{where}:{p}" for p in redacted.paths]
    c.add(where, _json(redacted.config), f"{slot}/config.json (secret fields redacted)")
    c.items[-1].redactions = len(redacted.paths)
    kept = kept_path(slot / "config.json")
    with contextlib.suppress(OSError, OemkitError):
        data = _read_file(kept, MAX_CONFIG)
        if data is not None:
            doc = parse_json(data, what=kept.name)
            names = sorted(doc) if isinstance(doc, dict) else []
            c.add(f"slots/{slot.name}/config.kept-names.json",
                  _json({"note": "the names of the values migrations kept aside; the values "
                                 "are not collected", "names": names}), str(kept))


def _unit_for(c: _Collector, slot: Path | None) -> str | None:
    if c.options.unit:
        return c.options.unit
    if slot is None:
        return None
    from oemkit.host.slot import read_slot

    try:
        return f"oemkit-{read_slot(slot).bundle_name}.service"
    except OemkitError:
        return None


def systemd_running() -> bool:
    """Whether systemd manages this host (``/run/systemd/system`` exists, as
    ``sd_booted(3)`` tests)."""
    return Path("/run/systemd/system").is_dir()


def _gather_service(c: _Collector, slot: Path | None) -> None:
    """The unit file and its journal where systemd runs; the --logs files otherwise."""
    from oemkit.host.service import ServiceOptions, unit_path

    unit = _unit_for(c, slot)
    journalctl = shutil.which("journalctl")
    systemd = systemd_running()
    if unit is not None:
        with contextlib.suppress(OSError, OemkitError, UsageError):
            data = _read_file(unit_path(ServiceOptions(), unit), 1 << 20)
            if data is not None:
                c.add(f"service/{unit}", data, str(unit_path(ServiceOptions(), unit)))
    if unit is not None and journalctl and systemd:
        cmd = [journalctl, "-u", unit, "--no-pager", "-n", str(c.options.journal_lines),
               "-o", "short-iso"]
        try:
            proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL,
                                  timeout=120)
            if proc.returncode == 0:
                item = _Item(f"logs/journal-{unit}.txt", " ".join(cmd), proc.stdout, log=True)
                item.original_size = len(proc.stdout)
                c.items.append(item)
            else:
                c.note(f"journalctl -u {unit} failed (exit {proc.returncode}): "
                       f"{proc.stderr.decode('utf-8', 'replace').strip()[:300]}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            c.note(f"journalctl -u {unit} could not run: {exc}")
    elif c.options.logs is None:
        c.note("no service journal: " + ("systemd is not running on this host"
                                         if not systemd else "journalctl is not installed"
                                         if not journalctl else "no unit is known") +
               "; pass --logs DIR for the runtime's log files")
    if c.options.logs is not None:
        _gather_logs(c, c.options.logs)


def _gather_logs(c: _Collector, folder: Path) -> None:
    found: list[tuple[float, str, Path]] = []
    if not folder.is_dir():
        raise InputError("E_NOT_FOUND", f"--logs {folder} is not a directory",
                         hint="pass the folder the runtime writes its log files to")
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode):
                    found.append((info.st_mtime, rel, path))
    found.sort(key=lambda f: (-f[0], f[1]))
    if len(found) > MAX_LOG_FILES:
        c.note(f"--logs {folder}: {len(found)} files, only the newest {MAX_LOG_FILES} taken")
    for _, rel, path in sorted(found[:MAX_LOG_FILES], key=lambda f: f[1]):
        safe_rel = "/".join(re.sub(r"[^A-Za-z0-9._@+-]", "_", p).lstrip(".") or "_"
                            for p in rel.split("/"))
        reader = _tail_reader(path)
        if reader is None or not path_ok(f"logs/{safe_rel}"):
            c.note(f"log file {path} skipped (not a plain file or an odd name)")
            continue
        size, read = reader
        c.items.append(_Item(f"logs/{safe_rel}", str(path), log=True, original_size=size,
                             read_tail=read))


def _gather_reports(c: _Collector) -> None:
    """The reports install, upgrade and rollback kept in ``PREFIX/reports/`` (as
    ``reports/kept-NNNNNN-ACTION.json``), then every ``--report`` file."""
    from oemkit._fs import read_input
    from oemkit.host.prefix import REPORTS, read_regular

    folder = c.prefix / REPORTS
    try:
        kept = sorted(p.name for p in folder.iterdir() if not folder.is_symlink()
                      and re.fullmatch(r"[0-9]{6}-[a-z]+\.json", p.name))
    except OSError:
        kept = []
    for name in kept:
        try:
            data = read_regular(folder / name, MAX_DOCUMENT)
        except (OSError, OemkitError) as exc:
            c.note(f"{REPORTS}/{name} cannot be read: {exc}")
            continue
        if data is not None:
            c.add(f"reports/kept-{name}", data[:MAX_DOCUMENT], f"{folder / name}")
    for i, path in enumerate(c.options.reports, 1):
        data = read_input(Path(path), "report", MAX_DOCUMENT)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).name).lstrip(".") or "report"
        c.add(f"reports/{i:02d}-{name}", data, str(path))


def _gather_profile(c: _Collector) -> None:
    from oemkit.host.profiles import detect_host, load_profile, shipped_profiles, unmet

    try:
        host = detect_host()
        verdicts = {n: unmet(load_profile(n), host) for n in sorted(shipped_profiles())}
    except (OemkitError, OSError, ImportError) as exc:
        c.note(f"profile detect failed: {exc}")
        return
    c.add("profile.json", _json({"host": host.to_dict(), "profiles": {
        n: {"satisfied": not r, "unmet": r} for n, r in verdicts.items()}}),
        "oemkit profile detect --json")


def _gather_metrics(c: _Collector) -> None:
    import http.client
    from urllib.parse import urlsplit

    url = c.options.url
    if url is None:
        c.note("no /metrics snapshot: pass --url http://HOST:PORT where the service listens")
        return
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise UsageError("E_USAGE", f"--url {url!r} is not http://HOST:PORT",
                         hint="pass where oemkit serve listens, e.g. http://127.0.0.1:8000")
    port = parts.port or 80
    for path, name in (("/metrics", "metrics.txt"), ("/v2/health/ready", "service/ready.txt")):
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read(MAX_DOCUMENT + 1)[:MAX_DOCUMENT]
            if name == "metrics.txt" and resp.status != 200:
                c.note(f"GET {url}{path} answered {resp.status}")
                continue
            c.add(name, body if name == "metrics.txt" else
                  f"HTTP {resp.status}\n".encode() + body, f"GET {url}{path}")
        except OSError as exc:
            c.note(f"GET {url}{path} failed: {exc}; the service is not answering")
            break
        finally:
            conn.close()


def _state_summary(data: bytes) -> dict[str, Any]:
    """The license state file without the CRLs' text (their digest instead)."""
    doc = parse_json(data, what="the license state")
    if not isinstance(doc, dict):
        raise InputError("E_JSON", "the license state is not a JSON object")
    issuers = []
    raw = doc.get("issuers")
    for issuer in raw if isinstance(raw, list) else ():
        if not isinstance(issuer, dict):
            continue
        crl = issuer.get("crl")
        issuers.append({"root_keys": issuer.get("root_keys"), "crl_seq": issuer.get("crl_seq"),
                        "crl_sha256": sha256_hex(crl.encode()) if isinstance(crl, str)
                        else None, "seqs": issuer.get("seqs")})
    return {"type": doc.get("type"), "last_seen": doc.get("last_seen"), "issuers": issuers}


def _gather_usage(c: _Collector, state_path: Path) -> None:
    """license/usage.json, when the host meters usage (``host.usage.usage_summary``: per
    license the report sequence, period and unreported totals, no salt; whether the usage
    state is usable; the unsaved files waiting beside it; docs/USAGE.md)."""
    from oemkit.host.usage import usage_path, usage_summary

    doc = usage_summary(state_path)
    if not doc["present"] and not doc["unsaved"]:
        return  # this host meters nothing
    c.add("license/usage.json", _json(doc),
          f"{usage_path(state_path)} and its unsaved files (salts left out)")


def _gather_license(c: _Collector, slot: Path | None) -> str | None:
    """license/state.json and license/verdicts.json (the current slot's licenses and the
    prefix's, judged read-only against the slot's trust root); a salt for the fingerprint
    (the first accepted license's hardware binding's), or None."""
    from oemkit.host import license_state as ls
    from oemkit.host.prefix import LICENSES
    from oemkit.verify.license import BundleFacts, LicenseState, evaluate

    state_path = c.options.state_path or ls.default_state_path()
    state_data: bytes | None = None
    try:
        state_data = _read_file(state_path, ls.MAX_STATE_BYTES)
        summary: dict[str, Any] = ({"path": str(state_path), "present": False}
                                   if state_data is None else
                                   {"path": str(state_path), "present": True,
                                    **_state_summary(state_data)})
    except (OSError, OemkitError) as exc:
        summary = {"path": str(state_path), "present": True, "error": str(exc)}
    c.add("license/state.json", _json(summary), f"{state_path} (CRL text left out)")
    _gather_usage(c, state_path)
    if slot is None:
        return None
    from oemkit.host.slot import read_slot
    from oemkit.verify.trust import load_pinned

    verdicts: list[dict[str, Any]] = []
    salt = None
    try:
        root_data = _read_file(slot / "trust-root.json", 16 << 20)
        if root_data is None:
            raise InputError("E_NOT_FOUND", f"{slot.name}/trust-root.json is missing")
        root = load_pinned(root_data)
        record = read_slot(slot)
        manifest = _slot_manifest(slot)
        facts = BundleFacts(record.manifest_sha256, manifest.name,
                            parse_time(manifest.build_time, "build_time"), manifest.channel)
        crl = _read_file(slot / "revocations.crl", 16 << 20)
        state = LicenseState()
        if state_data is not None:
            with contextlib.suppress(ValueError, OemkitError):
                state = ls._parse_state(state_data).view(root)  # read-only: nothing moved
    except (OSError, OemkitError) as exc:
        c.add("license/verdicts.json", _json({"slot": slot.name, "error": str(exc),
                                               "verdicts": []}), f"{slot}/licenses")
        return None
    files = []
    for folder, label in ((slot / "licenses", f"slots/{slot.name}/licenses"),
                          (c.prefix / LICENSES, "licenses")):
        with contextlib.suppress(OSError):
            files += [(f"{label}/{p.name}", p) for p in sorted(folder.glob("*.lic"))]
    host = ls.collect_host()
    for name, path in files:
        entry: dict[str, Any] = {"license": name}
        try:
            data = _read_file(path, 1 << 20)
            if data is None:
                continue
            verdict = evaluate(data, root, c.moment, state=state,
                               crls=[("revocations.crl", crl, False)] if crl else [],
                               bundle=facts, host=host,
                               environment=os.environ.get("OEMKIT_ENV"), what=name)
            entry.update(verdict.to_dict())
            if salt is None and verdict.claims.hardware is not None:
                salt = verdict.claims.hardware.salt
        except OemkitError as exc:
            entry.update({"verdict": "rejected", "error": exc.to_dict()})
        except OSError as exc:
            entry.update({"verdict": "rejected", "error": {"code": "E_PERMISSION",
                                                           "message": str(exc)}})
        verdicts.append(entry)
    c.add("license/verdicts.json", _json({"slot": slot.name, "judged_at":
                                           format_time(c.moment), "trust_root_version":
                                           root.version, "verdicts": verdicts}),
          f"{slot}/licenses, {c.prefix / LICENSES}, {slot}/trust-root.json")
    return salt


def _gather_host(c: _Collector, salt: str | None) -> None:
    from oemkit.host.license_state import collect_host, fingerprint

    doc = fingerprint(collect_host(), salt=salt, created=c.moment)
    c.add("fingerprint.json", _json({**doc, "salt_from": "the current slot's license"
                                     if salt else "fresh (no license binds hardware)"}),
          "oemkit license fingerprint (salted, no raw ids)")
    try:
        usage = shutil.disk_usage(c.prefix)
        c.add("disk.json", _json({"path": str(c.prefix), "total": usage.total,
                                  "used": usage.used, "free": usage.free}),
              f"shutil.disk_usage({c.prefix})")
    except OSError as exc:
        c.note(f"disk usage of {c.prefix} unknown: {exc}")
    import platform

    c.add("host.json", _json({"oemkit_version": __version__, "python": sys.version.split()[0],
                              "platform": platform.platform(), "collected_at":
                              format_time(c.moment)}), "this oemkit and Python")


# --------------------------------------------------------------------------- redaction, bound


def _redactor(c: _Collector) -> Callable[[bytes], tuple[bytes, int]]:
    """Replace the secret values (as they are, and as JSON escapes them) and every
    --redact match with REDACTED."""
    literal: set[str] = set()
    for value in c.secret_values:
        if len(value) >= 3:
            literal.add(value)
            literal.add(json.dumps(value)[1:-1])
    rules = [re.compile("|".join(re.escape(v) for v in sorted(literal, key=len,
                                                               reverse=True)))] if literal else []
    for pattern in c.options.redact:
        rules.append(re.compile(pattern))

    def apply(data: bytes) -> tuple[bytes, int]:
        if not rules:
            return data, 0
        text = data.decode("utf-8", "surrogateescape")
        count = 0
        for rule in rules:
            text, n = rule.subn(REDACTED, text)
            count += n
        return text.encode("utf-8", "surrogateescape"), count

    return apply


def _line_start(data: bytes) -> bytes:
    """A tail cut mid-line starts at its next line (when that is near)."""
    cut = data.find(b"\n", 0, 4096)
    return data[cut + 1:] if cut >= 0 else data


def _bound(c: _Collector, redact: Callable[[bytes], tuple[bytes, int]]) -> None:
    """Redact everything, then fit the logs into what the bound leaves, largest cut first
    (each keeps its tail)."""
    max_size = c.options.max_size
    reserve = (64 << 10) + 2048 * (len(c.items) + 2) + max_size // 200
    small = [i for i in c.items if not i.log]
    logs = [i for i in c.items if i.log]
    for item in small:
        item.data, n = redact(item.data)
        item.redactions += n
    used = sum(len(i.data) for i in small)
    budget = max_size - reserve - used
    if budget < 0:
        raise UsageError("E_USAGE", f"--max-size {max_size} is too small: the documents "
                         f"alone take {used} bytes", hint=f"pass --max-size "
                         f"{used + reserve + (1 << 20)} or more")
    logs.sort(key=lambda i: (i.original_size or 0, i.path))
    for n, item in enumerate(logs):
        share = budget // (len(logs) - n)
        size = item.original_size or 0
        take = min(size, share)
        data = item.read_tail(take) if item.read_tail else item.data[len(item.data) - take:]
        item.truncated = take < size
        if item.truncated:
            data = _line_start(data)
        data, count = redact(data)
        if len(data) > take:  # replacements made it longer: cut its head again
            data = data[len(data) - take:]
            item.truncated = True
        item.data, item.redactions = data, count
        item.read_tail = None
        budget -= len(data)


# --------------------------------------------------------------------------- writing


def _tar(members: Sequence[tuple[str, bytes]], mtime: int) -> Callable[[Any], None]:
    def write(handle: Any) -> None:
        with tarfile.open(fileobj=handle, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), mtime, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return write


def _signature(key: PrivateKeyInfo, manifest: bytes) -> bytes:
    from oemkit.crypto.dsse import make_envelope
    from oemkit.crypto.keys import public_pem

    env = make_envelope([key], PAYLOAD_TYPE, manifest)
    return canonical_json({"format": SIGNATURE_FORMAT, "keyid": key.keyid,
                           "public_key": public_pem(key.public),
                           "envelope": env.to_dict(keyid=key.keyid)})


def collect(prefix: Path, out: Path | None, options: CollectOptions | None = None
            ) -> CollectResult:
    """Gather a support bundle from ``prefix`` and this host and write it to ``out``
    (atomically, mode 0600), or only list it (``options.dry_run``: nothing written).

    Raises:
        UsageError: E_USAGE (a bad --redact pattern, --max-size under 1 MiB or too small
            for the documents, a bad --url, no --out without --dry-run).
        InputError: E_NOT_INSTALLED (no prefix), E_OUTPUT_EXISTS (``out`` exists, no
            force), E_NOT_FOUND (--logs, --report), E_TOO_LARGE.
        EnvironmentProblem: E_WRITE, E_PERMISSION, E_SUPPORT_TOO_LARGE (the written
            bundle exceeds the bound: removed).
    """
    options = options or CollectOptions()
    prefix = Path(prefix).resolve()
    if options.max_size < MIN_MAX_SIZE:
        raise UsageError("E_USAGE", f"--max-size {options.max_size} is under "
                         f"{MIN_MAX_SIZE} bytes (1 MiB)", hint="pass --max-size 1048576 or more")
    for pattern in options.redact:
        try:
            if re.compile(pattern).search(""):
                raise UsageError("E_USAGE", f"--redact {pattern!r} matches the empty string",
                                 hint="give a pattern that matches at least one character")
        except re.error as exc:
            raise UsageError("E_USAGE", f"--redact {pattern!r} is not a regular expression: "
                             f"{exc}", hint="use Python's re syntax, e.g. "
                                            "--redact 'token=[A-Za-z0-9]+'") from None
    if out is None and not options.dry_run:
        raise UsageError("E_USAGE", "oemkit support collect needs --out FILE (or --dry-run)",
                         hint="oemkit support collect --prefix P --out support.tar.zst")
    if out is not None and not options.dry_run and os.path.lexists(out) and not options.force:
        raise InputError("E_OUTPUT_EXISTS", f"{out} already exists",
                         hint="choose another --out, or pass --force to replace it")
    from oemkit.host.prefix import SLOTS, scan

    if not scan(prefix).exists:
        raise InputError("E_NOT_INSTALLED", f"nothing is installed under {prefix}",
                         hint="pass the --prefix oemkit install used")
    c = _Collector(prefix, options)
    current_name, live = _gather_prefix(c)
    current = prefix / SLOTS / current_name if current_name else None
    for name in live:
        _gather_config(c, prefix / SLOTS / name)
    _gather_reports(c)
    _gather_service(c, current)
    _gather_profile(c)
    _gather_metrics(c)
    salt = _gather_license(c, current)
    _gather_host(c, salt)
    redact = _redactor(c)
    _bound(c, redact)
    # The manifest is not redacted text: it names each --redact rule by its digest (a
    # rule may be the secret itself), and its notes pass through the same rules.
    notes = tuple(redact(n.encode("utf-8", "surrogateescape"))[0].decode(
        "utf-8", "replace") for n in c.notes)
    rules = tuple(f"sha256:{sha256_hex(p.encode())}" for p in options.redact)
    files = tuple(SupportFile(i.path, len(i.data), sha256_hex(i.data), i.source,
                              i.truncated, i.original_size if i.truncated else None,
                              i.redactions) for i in c.items)
    manifest = SupportManifest(created=format_time(c.moment), oemkit_version=__version__,
                               prefix=str(prefix), max_size=options.max_size, files=files,
                               secret_fields=tuple(c.secret_fields),
                               patterns=rules, notes=notes)
    if options.dry_run or out is None:
        return CollectResult(manifest, None, None, None)
    manifest_bytes = canonical_json(manifest.to_dict())
    members = [(MANIFEST, manifest_bytes)]
    if options.key is not None:
        members.append((SIGNATURE, _signature(options.key, manifest_bytes)))
    members += [(i.path, i.data) for i in c.items]
    size = _write(Path(out), members, int(c.moment.timestamp()), options.max_size)
    return CollectResult(manifest, Path(out), size,
                         options.key.keyid if options.key is not None else None)


def _write(out: Path, members: Sequence[tuple[str, bytes]], mtime: int, bound: int) -> int:
    import zstandard

    from oemkit._fs import atomic_output
    from oemkit.errors import EnvironmentProblem

    with atomic_output(out, 0o600) as handle:
        writer = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).stream_writer(
            handle, closefd=False)
        _tar(members, mtime)(writer)
        writer.close()  # type: ignore[no-untyped-call]
        size = handle.tell()
        if size > bound:
            raise EnvironmentProblem("E_SUPPORT_TOO_LARGE", f"the support bundle came to "
                                     f"{size} bytes, over --max-size {bound}; nothing was "
                                     "written", hint="pass a larger --max-size")
    return size


# --------------------------------------------------------------------------- inspect


@dataclass
class InspectReport:
    """What :func:`inspect` found: the manifest, integrity and signature, known problems."""

    path: str
    manifest: SupportManifest | None = None
    #: Integrity failures: a file missing, added, changed, or an unsafe member.
    tampered: list[str] = field(default_factory=list)
    signed: bool = False
    signer: str | None = None
    signature_valid: bool | None = None
    signature_problem: str | None = None
    problems: list[Problem] = field(default_factory=list)
    documents: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every digest matches and a signature, if any, verifies."""
        return not self.tampered and self.signature_valid is not False

    @property
    def exit_code(self) -> int:
        """0 when intact (known problems do not change it), 1 when tampered."""
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document of ``oemkit support inspect``."""
        m = self.manifest
        doc: dict[str, Any] = {
            "ok": self.ok, "path": self.path, "exit_code": self.exit_code,
            "integrity": {"ok": not self.tampered, "problems": self.tampered},
            "signature": {"signed": self.signed, "signer": self.signer,
                          "valid": self.signature_valid, "problem": self.signature_problem},
            "problems": [p.to_dict() for p in self.problems],
            "manifest": m.to_dict() if m else None,
        }
        status = self.documents.get("status.json")
        if isinstance(status, dict):
            doc["status"] = {"current": status.get("current"),
                             "previous": status.get("previous")}
        if not self.ok:
            first = self.tampered[0] if self.tampered else self.signature_problem
            doc["error"] = {"code": "E_SUPPORT_TAMPERED", "message": first,
                            "hint": _TAMPER_HINT, "exit_code": 1}
        return doc


_TAMPER_HINT = ("the support bundle was changed after it was collected (or damaged in "
                "transit): ask the site for a fresh one")


def _public_of(doc: Any) -> tuple[str, PublicKey]:
    from oemkit.crypto.keys import key_id, load_public

    if not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT or not isinstance(
            doc.get("public_key"), str):
        raise InputError("E_ENVELOPE", f"{SIGNATURE} is not an oemkit support signature")
    public = load_public(doc["public_key"], SIGNATURE)
    return key_id(public), public


def _check_signature(report: InspectReport, manifest_bytes: bytes, sig: bytes,
                     pinned: PublicKey | None) -> None:
    from oemkit.crypto.dsse import parse_envelope, verify_signature
    from oemkit.crypto.keys import key_id

    report.signed = True
    try:
        doc = parse_json(sig, what=SIGNATURE, code="E_ENVELOPE")
        keyid, public = _public_of(doc)
        report.signer = keyid
        env = parse_envelope(doc.get("envelope"), SIGNATURE)
    except OemkitError as exc:
        report.signature_valid, report.signature_problem = False, exc.message
        return
    if pinned is not None and key_id(pinned) != keyid:
        report.signature_valid = False
        report.signature_problem = (f"signed by key {keyid[:16]}…, not by the expected host "
                                    f"key {key_id(pinned)[:16]}…")
        return
    if env.payload_type != PAYLOAD_TYPE or env.payload != manifest_bytes:
        report.signature_valid = False
        report.signature_problem = "the signature covers another manifest than the one here"
        return
    if not any(verify_signature(public, env.payload_type, env.payload, s)
               for s in env.signatures):
        report.signature_valid = False
        report.signature_problem = f"the signature by {keyid[:16]}… does not verify"
        return
    report.signature_valid = True


def inspect(path: Path, key: PublicKey | None = None) -> InspectReport:
    """Read a support bundle: check the manifest, every file's size and SHA-256 and the
    signature (against ``key`` when given), and list the known problems. Streams: only the
    manifest and JSON documents up to 16 MiB are held in memory.

    Raises:
        InputError: E_NOT_FOUND, E_SUPPORT_INVALID (not a zstd tar with an oemkit support
            manifest first), E_JSON.
        EnvironmentProblem: E_PERMISSION.
    """
    import zstandard

    from oemkit._fs import open_input
    from oemkit.errors import FormatError

    report = InspectReport(str(path))

    def invalid(why: str) -> InputError:
        return FormatError("E_SUPPORT_INVALID", f"{path} is not an oemkit support bundle: "
                           f"{why}", hint="pass the support.tar.zst oemkit support collect "
                                          "wrote")

    seen: dict[str, tuple[int, str]] = {}
    manifest_bytes: bytes | None = None
    signature: bytes | None = None
    with open_input(Path(path), "support bundle") as handle:
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(handle)
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for n, info in enumerate(tar):
                    name = info.name
                    if n == 0:
                        if name != MANIFEST or not info.isreg() or info.size > MAX_MANIFEST:
                            raise invalid(f"its first member is {name[:80]!r}, not {MANIFEST}")
                        manifest_bytes = _read_member(tar, info)
                        continue
                    if name == SIGNATURE and n == 1 and info.isreg() and info.size < 1 << 20:
                        signature = _read_member(tar, info)
                        continue
                    if not info.isreg():
                        report.tampered.append(f"{name[:120]!r} is not a regular file")
                        continue
                    if not path_ok(name) or name in seen or name in (MANIFEST, SIGNATURE):
                        report.tampered.append(f"unexpected member {name[:120]!r}")
                        continue
                    seen[name] = _hash_member(tar, info, report.documents)
        except (zstandard.ZstdError, tarfile.TarError, EOFError) as exc:
            if manifest_bytes is None:
                raise invalid(f"{exc}") from None
            report.tampered.append(f"the archive is damaged after {len(seen)} files: {exc}")
    if manifest_bytes is None:
        raise invalid("it is empty")
    manifest = SupportManifest.from_dict(parse_json(manifest_bytes, what=MANIFEST,
                                                    code="E_SUPPORT_INVALID"))
    report.manifest = manifest
    listed = {f.path: f for f in manifest.files}
    for f in manifest.files:
        got = seen.get(f.path)
        if got is None:
            report.tampered.append(f"{f.path} is listed in the manifest but missing")
        elif got != (f.size, f.sha256):
            report.tampered.append(f"{f.path} was changed (sha256 {got[1][:16]}…, the "
                                   f"manifest says {f.sha256[:16]}…)")
    report.tampered += [f"{p} is not listed in the manifest" for p in seen if p not in listed]
    if signature is not None:
        _check_signature(report, manifest_bytes, signature, key)
    elif key is not None:
        report.signature_valid = False
        report.signature_problem = "the bundle is not signed, and a host key was expected"
    intact = {p: d for p, d in report.documents.items()
              if p in listed and seen.get(p) == (listed[p].size, listed[p].sha256)}
    report.documents = intact
    report.problems = find_problems(intact)
    truncated = [f.path for f in manifest.files if f.truncated]
    if truncated:
        report.problems.append(Problem("truncated", "info", "cut to fit the size bound (the "
                                       "tail is kept): " + ", ".join(truncated), MANIFEST))
    return report


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    assert handle is not None
    return handle.read()


def _hash_member(tar: tarfile.TarFile, info: tarfile.TarInfo,
                 documents: dict[str, Any]) -> tuple[int, str]:
    handle = tar.extractfile(info)
    assert handle is not None
    digest, size = hashlib.sha256(), 0
    keep = info.name.endswith(".json") and info.size <= MAX_INSPECT_DOC
    kept = []
    while True:
        chunk = handle.read(1 << 20)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        if keep:
            kept.append(chunk)
    if keep:
        with contextlib.suppress(OemkitError):
            documents[info.name] = parse_json(b"".join(kept), what=info.name)
    return size, digest.hexdigest()


def load_host_key(path: Path) -> PublicKey:
    """A host's public key file (``--key`` of inspect), or the public half of a private
    one is refused: the vendor only ever holds the public key.

    Raises:
        InputError: E_NOT_FOUND, E_KEY_FORMAT, E_KEY_ALGORITHM.
    """
    from oemkit.crypto.keys import load_public_file

    return load_public_file(path)


def verify_support(path: Path, key: PublicKey | None = None) -> InspectReport:
    """:func:`inspect`, raising ``E_SUPPORT_TAMPERED`` when the bundle is not intact.

    Raises:
        VerificationError: E_SUPPORT_TAMPERED.
        InputError: as :func:`inspect`.
    """
    report = inspect(path, key)
    if not report.ok:
        first = report.tampered[0] if report.tampered else report.signature_problem
        raise VerificationError("E_SUPPORT_TAMPERED", f"{path}: {first}", hint=_TAMPER_HINT)
    return report
