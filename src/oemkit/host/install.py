"""Install, upgrade, roll back: A/B slots under a prefix, switched atomically.

Layout (nothing else may be in a prefix: :mod:`oemkit.host.prefix` refuses anything
oemkit does not make, and never follows a symbolic link)::

    PREFIX/slots/NAME-VERSION-DIGEST12/   one verified bundle: bundle/ (payload),
                                          config.json (the live config), venv/ (when the
                                          bundle has wheels), slot.json (what and when),
                                          manifest.json (the authenticated manifest), and
                                          what ``oemkit serve PREFIX`` checks licenses
                                          with: trust-root.json (the root install
                                          verified against), revocations.crl (the
                                          carried CRL, if any), licenses/ (attached ones
                                          and --license)
    PREFIX/slots/.tmp-*/                  a slot being prepared
    PREFIX/current  -> slots/...          symlinks, each replaced with one rename
    PREFIX/previous -> slots/...
    PREFIX/.lock                          one operation at a time
    PREFIX/.journal                       the temporary names oemkit created and has not
                                          finished with (removed by the next run)

A new slot is prepared completely (verify, unpack, venv, config, smoke) under a temporary
name, renamed into place, and only then does ``current`` move. Every temporary name is
recorded in the journal before it is created and dropped when it is finished with; a kill
at any point leaves ``current`` on the old or the new slot, never on a half-written one,
and the next run removes exactly what the journal records. Any failure (a coded error, a
full disk, a bug) removes the new slot before the error is reported: the host is left as
it was.

With a service (:mod:`oemkit.host.service`) the switch is also gated on readiness:
``--service none --ready-check`` serves the new slot in a child process before switching;
``--service systemd`` restarts the unit after switching and switches back (restarting the
previous release) when the new one never answers ``/v2/health/ready`` with 200.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit import __version__
from oemkit._fs import atomic_write_bytes
from oemkit._time import format_time, now
from oemkit.errors import (
    EnvironmentProblem,
    FormatError,
    InputError,
    OemkitError,
    VerificationError,
    restate,
)
from oemkit.host.prefix import LOCK, SLOTS, TMP_PREFIX, Journal, Layout, scan
from oemkit.host.slot import SlotRecord, read_slot
from oemkit.models.report import Check

if TYPE_CHECKING:
    from oemkit.host.service import ServiceOptions
    from oemkit.verify.bundle import Limits

__all__ = ["SLOTS", "TMP_PREFIX", "InstallOptions", "InstallReport", "PrefixStatus",
           "SlotRecord", "SlotStatus", "install", "prefix_lock", "prefix_status", "read_slot",
           "rollback", "status", "version_key"]

@dataclass
class InstallReport:
    """What an install/upgrade/rollback did, check by check."""

    action: str
    prefix: str
    checks: list[Check] = field(default_factory=list)
    slot: str | None = None
    previous: str | None = None
    switched: bool = False
    environment_error: bool = False
    input_error: bool = False
    #: A new slot was started (not serialised): only such a run is kept in reports/ (a
    #: verification or version refusal changes nothing on the host, and leaves no trace).
    prepared: bool = False

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        if self.ok:
            return 0
        return 4 if self.environment_error else 3 if self.input_error else 1

    def add(self, name: str, status: str, detail: str, **extra: Any) -> None:
        self.checks.append(Check(name, status, detail, **extra))  # type: ignore[arg-type]

    def fail(self, name: str, exc: OemkitError) -> InstallReport:
        self.add(name, "fail", exc.message, code=exc.code, member=exc.member,
                 expected=exc.expected, actual=exc.actual, hint=exc.hint or None)
        self.environment_error = self.environment_error or exc.exit_code == 4
        self.input_error = self.input_error or exc.exit_code == 3
        return self

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document; a failed run's ``error`` is its first failed check
        (code, message, hint, exit code), as in every other command's document."""
        doc = {"action": self.action, "prefix": self.prefix, "ok": self.ok,
               "slot": self.slot, "previous": self.previous, "switched": self.switched,
               "exit_code": self.exit_code, "checks": [c.to_dict() for c in self.checks]}
        failed = next((c for c in self.checks if c.status == "fail"), None)
        if failed is not None:
            doc["error"] = {"code": failed.code, "message": failed.detail,
                            "hint": failed.hint or "", "exit_code": self.exit_code,
                            "check": failed.name}
        return doc


def _record(slot: Path) -> SlotRecord | None:
    try:
        return read_slot(slot)
    except InputError:
        return None


# --------------------------------------------------------------------------- prefix helpers


def prefix_lock(prefix: Path) -> contextlib.AbstractContextManager[None]:
    """Exclusive lock on the prefix: one install/upgrade/rollback at a time. A prefix
    that is not laid out as oemkit's is refused (``E_PREFIX_LAYOUT``) before anything is
    created in it."""
    from oemkit._lock import exclusive_lock

    prefix = Path(prefix)
    layout = scan(prefix)
    if layout.exists:
        Journal.load(prefix)  # E_PREFIX_JOURNAL before the lock file is made
    try:
        prefix.mkdir(parents=True, exist_ok=True)
        if not layout.has_slots:
            os.mkdir(prefix / SLOTS)
    except FileExistsError:
        scan(prefix)  # made meanwhile: judge what is there now
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot use {prefix}: {exc.strerror}",
                                 hint="check that the prefix is writable") from exc
    return exclusive_lock(prefix / LOCK, f"the prefix {prefix}")


def _point(journal: Journal, name: str, slot: str) -> None:
    """Atomically point ``PREFIX/name`` at ``slots/SLOT`` (see :meth:`Journal.point`)."""
    journal.point(name, slot)


def _begin(prefix: Path, report: InstallReport) -> tuple[Layout, Journal]:
    """Under the lock: the layout (checked again), and the journal with an interrupted
    run's leftovers removed (only what it records)."""
    layout = scan(prefix)
    journal = Journal.load(prefix)
    removed = journal.clean(layout.live)
    if removed:
        report.add("cleanup", "info", f"removed leftovers of an interrupted run: "
                   f"{', '.join(removed)}")
        layout = scan(prefix)
    return layout, journal


def version_key(version: str) -> Any:
    """Order release versions: PEP 440 when they parse (1.0.0rc1 < 1.0.0), else by
    dot-separated parts with numbers before text."""
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version), ())
    except InvalidVersion:
        parts = re.split(r"[.+_-]", version)
        return (0, None, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def prune(prefix: Path, layout: Layout, journal: Journal) -> list[str]:
    """Remove complete slots that neither ``current`` nor ``previous`` points at (only
    once both exist). A slot is complete when its ``slot.json`` is oemkit's record of that
    very directory; each removal is journaled, so a kill mid-way is finished next run."""
    if len(layout.live) < 2:
        return []
    removed = []
    for name in layout.slots:
        record = None if name in layout.live else _record(prefix / SLOTS / name)
        if record is not None and record.name == name:
            journal.add(f"{SLOTS}/{name}")
            journal.remove(f"{SLOTS}/{name}", layout.live)
            removed.append(name)
    return removed


# --------------------------------------------------------------------------- install/upgrade


@dataclass(frozen=True)
class InstallOptions:
    """How :func:`install` installs or upgrades: the defaults are what ``oemkit install``
    does without flags (``oemkit upgrade`` sets ``upgrade``)."""

    #: Upgrade an installed prefix (``oemkit upgrade``) instead of a first install.
    upgrade: bool = False
    #: The initial config file (``--config``; default: the bundle's). Install only.
    config: Path | None = None
    #: A license to check before the slot is prepared (``--license``).
    license_file: Path | None = None
    #: The smoke test's hardware profile: a shipped name, a file or the bundle's
    #: (``--profile``; default: detected).
    profile: str | None = None
    #: Switch without the smoke test (``--skip-smoke``: unsafe).
    skip_smoke: bool = False
    #: Accept an older release, or a current slot whose version is unknown.
    allow_downgrade: bool = False
    #: Let the slot's venv import the packages of the Python running oemkit.
    system_site_packages: bool = False
    #: The license state file (None: stateless; the CLI passes the host's default).
    state_path: Path | None = None
    #: Called with the bytes read while the bundle is verified and unpacked (the long step
    #: for a multi-gigabyte bundle).
    progress: Callable[[int], None] | None = None
    #: The reader limits (``verify``'s defaults unless given).
    limits: Limits | None = None
    #: The service and the readiness gate (None: no service, no readiness check; the CLI
    #: passes ``--service`` and ``--ready-check``, see :mod:`oemkit.host.service`).
    service: ServiceOptions | None = None
    #: What ``slot.json`` records as the bundle installed from (None: the bundle's path;
    #: ``upgrade --delta`` names the delta, the bundle being a temporary rebuild).
    bundle_file: str | None = None


def install(bundle: Path, prefix: Path, trust: Path | bytes,
            options: InstallOptions | None = None, *, upgrade: bool = False,
            config: Path | None = None, license_file: Path | None = None,
            profile: str | None = None, skip_smoke: bool = False,
            allow_downgrade: bool = False, system_site_packages: bool = False,
            state_path: Path | None = None,
            progress: Callable[[int], None] | None = None,
            limits: Limits | None = None,
            service: ServiceOptions | None = None,
            bundle_file: str | None = None) -> InstallReport:
    """Install (or upgrade to) ``bundle`` into a new slot and switch ``current`` to it.

    Pass the options as an :class:`InstallOptions` or as keywords of the same names (a
    shorthand for ``InstallOptions(...)``), not both (``TypeError``).
    """
    given = InstallOptions(
        upgrade=upgrade, config=config, license_file=license_file, profile=profile,
        skip_smoke=skip_smoke, allow_downgrade=allow_downgrade,
        system_site_packages=system_site_packages, state_path=state_path,
        progress=progress, limits=limits, service=service, bundle_file=bundle_file)
    if options is None:
        options = given
    elif given != InstallOptions():
        changed = [f.name for f in fields(given)
                   if getattr(given, f.name) != getattr(InstallOptions(), f.name)]
        raise TypeError(f"install() takes an InstallOptions or keyword options, not both "
                        f"(got options and {', '.join(changed)})")
    upgrade = options.upgrade
    prefix = Path(prefix).resolve()
    report = InstallReport("upgrade" if upgrade else "install", str(prefix))
    if upgrade and not scan(prefix).exists:  # answered without creating the prefix
        raise _not_installed(prefix)
    before = _names_in(prefix)
    try:
        done = _install_locked(bundle, prefix, trust, options, report)
    except OemkitError:
        _undo_skeleton(prefix, before)
        raise
    if not done.switched and not done.prepared:
        _undo_skeleton(prefix, before)
    return done


def _names_in(prefix: Path) -> set[str] | None:
    """What the prefix holds before an install (None: it does not exist)."""
    try:
        return set(os.listdir(prefix))
    except FileNotFoundError:
        return None
    except OSError:
        return {"?"}  # unreadable: prefix_lock will say so; nothing is undone


def _undo_skeleton(prefix: Path, before: set[str] | None) -> None:
    """After an install that changed nothing, remove what it made in a prefix that held no
    oemkit layout before (``before``: its names then; None: it did not exist): the lock, an
    empty journal, an empty ``slots/``, and the folder itself if it is new. Anything else
    there (a kept report, another process's files) keeps it all."""
    from oemkit.host.prefix import JOURNAL

    made = {JOURNAL, LOCK, SLOTS} - (before or set())
    if before is not None and made != {JOURNAL, LOCK, SLOTS}:
        return  # an oemkit prefix already (or part of one): leave it as it is
    try:
        names = set(os.listdir(prefix))
        if names - made - (before or set()) or (SLOTS in made and SLOTS in names
                                                 and os.listdir(prefix / SLOTS)):
            return
        if JOURNAL in names and Journal.load(prefix).pending:
            return
    except (OSError, OemkitError):
        return
    with contextlib.suppress(OSError):
        for name in (JOURNAL, LOCK):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prefix / name)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(prefix / SLOTS)
        if before is None:
            os.rmdir(prefix)


def _install_locked(bundle: Path, prefix: Path, trust: Path | bytes, options: InstallOptions,
                    report: InstallReport) -> InstallReport:
    """:func:`install` under the prefix lock."""
    upgrade = options.upgrade
    with prefix_lock(prefix):
        layout, journal = _begin(prefix, report)
        current = layout.current
        if upgrade and current is None:
            raise _not_installed(prefix)
        if not upgrade and current is not None:
            raise InputError("E_ALREADY_INSTALLED", f"{prefix} already has {current} "
                             "installed", hint="use 'oemkit upgrade' to move to another "
                             "release")
        staging = journal.make_staging()
        name = f"{SLOTS}/{staging.name}"
        try:
            done = _prepare_and_switch(report, bundle, prefix, trust, staging, layout,
                                       journal, options)
        except OemkitError as exc:
            if report.prepared:  # refused before a slot was made: nothing changed
                keep_report(prefix, report.fail(report.action, exc))
            raise
        finally:
            if name in journal.pending:
                journal.discard(name)
        if done.prepared:  # a refusal that changed nothing leaves no trace either
            keep_report(prefix, done)
        return done


def _not_installed(prefix: Path) -> InputError:
    return InputError("E_NOT_INSTALLED", f"nothing is installed under {prefix}",
                      hint="use 'oemkit install' first")


def _no_previous(prefix: Path) -> InputError:
    return InputError("E_NO_PREVIOUS", f"{prefix} has no previous slot to roll back to",
                      hint="'oemkit status --prefix DIR' shows the slots")


def _prepare_and_switch(report: InstallReport, bundle: Path, prefix: Path,
                        trust: Path | bytes, staging: Path, layout: Layout,
                        journal: Journal, opts: InstallOptions) -> InstallReport:
    from oemkit.host.unpack import unpack_bundle

    try:
        verified = unpack_bundle(bundle, staging / "bundle", trust, progress=opts.progress,
                                 limits=opts.limits)
    except OemkitError as exc:
        return report.fail("unpack", exc)
    if not verified.ok:
        assert verified.error is not None
        return report.fail("verify", verified.error)
    manifest = verified.manifest
    report.add("verify", "pass", f"{manifest.name} {manifest.version} verified; "
               f"{verified.files} files unpacked")
    assert verified.manifest_sha256 is not None
    slot_name = f"{manifest.name}-{manifest.version}-{verified.manifest_sha256[:12]}"
    report.slot = slot_name
    current = prefix / SLOTS / layout.current if layout.current else None
    old: SlotRecord | InputError | None = None
    if current is not None:
        try:
            old = read_slot(current)
        except InputError as exc:
            old = exc
    if isinstance(old, SlotRecord) and old.manifest_sha256 == verified.manifest_sha256:
        report.add("version", "info", f"{slot_name} is already the current slot; nothing "
                   "to do")
        return report
    problem = _version_problem(prefix, old, manifest, opts.allow_downgrade)
    if problem is not None:
        return report.fail("version", problem)
    final = prefix / SLOTS / slot_name
    n = 2
    while os.path.lexists(final):  # never touch an existing slot: it may be the rollback
        final = prefix / SLOTS / f"{slot_name}-{n}"  # target
        n += 1
    slot_name = report.slot = final.name
    report.prepared = True
    entry = f"{SLOTS}/{slot_name}"
    try:
        # The slot gets its final path before the venv is made (venvs are not relocatable);
        # it stays in the journal (removed by the next run) until current points at it.
        journal.add(entry)
        os.rename(staging, final)
        journal.drop(f"{SLOTS}/{staging.name}")
        os.chmod(final, 0o755 & ~_umask())
        python = _prepare_slot(report, final, verified, current, opts)
        if python is None:
            journal.remove(entry)
            return report
        _serving_files(report, final, bundle, trust, verified, opts)
        _delta_base(report, final, bundle, verified, opts)
        slot_doc = SlotRecord(
            name=slot_name, bundle_name=manifest.name, version=manifest.version,
            manifest_sha256=verified.manifest_sha256,
            bundle_file=opts.bundle_file or str(Path(bundle).resolve()),
            installed_at=format_time(now()), oemkit_version=__version__,
            config_version=_config_version(final / "config.json"), python=python)
        atomic_write_bytes(final / "manifest.json", verified.manifest.to_bytes())
        atomic_write_bytes(final / "slot.json",
                           (json.dumps(slot_doc.to_dict(), indent=2) + "\n").encode())
        svc = opts.service
        if svc is not None and svc.mode == "none" and svc.ready_check and not _ready_before(
                report, final, svc, opts.state_path):
            journal.remove(entry)
            return report
        if svc is not None and svc.mode == "none" and not svc.ready_check:
            report.add("ready", "info", "not checked (--service none without --ready-check)")
        if current is not None:
            _point(journal, "previous", current.name)
        _point(journal, "current", slot_name)
        journal.drop(entry)
    except OemkitError as exc:
        journal.discard(entry)
        return report.fail("install", exc)
    except OSError as exc:
        journal.discard(entry)
        return report.fail("install", EnvironmentProblem(
            "E_WRITE", f"cannot write under {prefix}: {exc.strerror or exc}",
            hint="check free space and permissions; the current slot is unchanged"))
    except BaseException:
        journal.discard(entry)  # a bug or an interrupt: the host stays as it was
        raise
    report.switched = True
    report.previous = current.name if current else None
    report.add("switch", "pass", f"current -> slots/{slot_name}"
               + (f" (previous: {current.name})" if current else ""))
    if svc is not None and svc.mode == "systemd" and not _systemd_gate(
            report, prefix, journal, manifest.name, svc, opts.state_path,
            before=(layout.current, layout.previous), discard=entry):
        return report
    live = Layout(slots=scan(prefix).slots, current=slot_name,
                  previous=current.name if current else None, exists=True, has_slots=True)
    pruned = prune(prefix, live, journal)
    if pruned:
        report.add("prune", "info", f"removed old slots: {', '.join(pruned)}")
    return report


# --------------------------------------------------------------------------- serving


#: A license file name kept in SLOT/licenses/ (the serving runtime reads ``*.lic`` there).
_LICENSE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")


def _serving_files(report: InstallReport, slot: Path, bundle: Path, trust: Path | bytes,
                   verified: Any, opts: InstallOptions) -> None:
    """What ``oemkit serve PREFIX`` checks licenses with, without the bundle file:
    ``trust-root.json`` (the root this install verified the bundle against: the pinned
    root, or the newest carried root the chain reached), ``revocations.crl`` (the carried
    CRL) and ``licenses/`` (the attached licenses and ``--license``)."""
    from oemkit._fs import read_input

    root = _verified_root_bytes(bundle, trust, verified, opts)
    atomic_write_bytes(slot / "trust-root.json", root)
    made = [f"trust-root.json (v{verified.root.version})"]
    if verified.crl:
        atomic_write_bytes(slot / "revocations.crl", verified.crl)
        made.append("revocations.crl")
    folder = slot / "licenses"
    folder.mkdir(mode=0o755, exist_ok=True)
    licenses = [(name.rsplit("/", 1)[-1], data) for name, data in verified.licenses]
    if opts.license_file is not None:
        licenses.append((f"given-{Path(opts.license_file).name}",
                         read_input(opts.license_file, "license", 1 << 20)))
    for i, (name, data) in enumerate(licenses):
        if not _LICENSE_NAME.fullmatch(name):
            name = f"license-{i}"
        atomic_write_bytes(folder / (name if name.endswith(".lic") else f"{name}.lic"), data)
    made.append(f"{len(licenses)} license(s) in licenses/")
    report.add("serving files", "pass", ", ".join(made))


def _delta_base(report: InstallReport, slot: Path, bundle: Path, verified: Any,
                opts: InstallOptions) -> None:
    """``members/``: the bundle's SBOM, provenance, in-toto links and signatures, kept so
    that ``oemkit upgrade --delta`` can patch the next release's metadata against them
    (docs/DELTA.md). The SBOM and provenance are checked against the digests verification
    established (a bundle changed under the install is ``E_INPUT_CHANGED``); a delta's
    result is verified whole, so these copies are never trusted for anything else."""
    from oemkit._canonical import sha256_hex
    from oemkit._fs import read_member
    from oemkit.models.manifest import LINK_DIR, PROVENANCE, SBOM, SIGNATURE_DIR
    from oemkit.verify.bundle import DEFAULT_LIMITS, scan_bundle

    expected = {SBOM: verified.manifest.members[SBOM].sha256,
                PROVENANCE: verified.provenance_sha256}
    folder = slot / "members"
    for sub in ("", LINK_DIR, SIGNATURE_DIR):
        (folder / sub).mkdir(mode=0o755, exist_ok=True)
    with Path(bundle).open("rb") as handle:
        members = scan_bundle(handle, opts.limits or DEFAULT_LIMITS)
        for member in members:
            name = member.name
            if name not in expected and not name.startswith((LINK_DIR, SIGNATURE_DIR)):
                continue
            data = read_member(handle, member)
            if name in expected and sha256_hex(data) != expected[name]:
                raise InputError("E_INPUT_CHANGED", f"{bundle} changed while it was installed "
                                 f"({name})", member=name,
                                 hint="install from a copy nothing else writes to")
            atomic_write_bytes(folder / name, data)
    report.add("delta base", "pass", "members/ keeps the SBOM, provenance, in-toto links and "
               "signatures for upgrade --delta")


def _verified_root_bytes(bundle: Path, trust: Path | bytes, verified: Any,
                         opts: InstallOptions) -> bytes:
    """The document of the trust root the bundle verified against: the pinned bytes, or
    the carried ``trust/root-N.json`` the chain advanced to (read again from the bundle
    and kept only when it parses to exactly that root: ``E_TRUST_INVALID`` otherwise)."""
    from oemkit._fs import read_input
    from oemkit.verify.trust import load_pinned, parse_root

    pinned = trust if isinstance(trust, bytes) else read_input(Path(trust), "trust root")
    if load_pinned(pinned).version == verified.root.version:
        data = pinned
    else:
        from oemkit._fs import read_member
        from oemkit.models.manifest import TRUST_DIR
        from oemkit.verify.bundle import DEFAULT_LIMITS, scan_bundle

        want = f"{TRUST_DIR}root-{verified.root.version}.json"
        with Path(bundle).open("rb") as handle:
            members = [m for m in scan_bundle(handle, opts.limits or DEFAULT_LIMITS)
                       if m.name == want]
            data = read_member(handle, members[0]) if members else b""
    if not data or parse_root(data, "the verified trust root").root != verified.root:
        raise VerificationError("E_TRUST_INVALID", f"{bundle} changed while it was "
                                "installed: its trust root is not the one verified",
                                hint="install again from a bundle file nothing writes to")
    return data


def _ready_before(report: InstallReport, slot: Path, svc: ServiceOptions,
                  state_path: Path | None) -> bool:
    """The foreground readiness gate: ``oemkit serve`` on the new slot, before the switch."""
    from oemkit.host.service import foreground_check

    seen = foreground_check(slot, options=svc, state_path=state_path)
    if not seen.ready:
        report.fail("ready", seen.error(f"oemkit serve on slots/{slot.name}"))
        return False
    report.add("ready", "pass", f"oemkit serve on slots/{slot.name} was ready in "
               f"{seen.seconds:.1f} s ({seen.detail}) and stopped")
    return True


def _set_links(prefix: Path, journal: Journal, current: str | None,
               previous: str | None) -> None:
    """Point ``current`` and ``previous`` as given (None: no such link)."""
    for link, slot in (("current", current), ("previous", previous)):
        if slot is not None:
            _point(journal, link, slot)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prefix / link)


def _systemd_gate(report: InstallReport, prefix: Path, journal: Journal, bundle_name: str,
                  svc: ServiceOptions, state_path: Path | None, *,
                  before: tuple[str | None, str | None], discard: str | None) -> bool:
    """After the switch: write and check the unit, reload systemd, (re)start the unit and
    wait until ``/v2/health/ready`` answers 200. Otherwise put the links back as they were
    (``before``: current, previous), remove ``discard`` (the new slot), restore the unit
    file, restart the release that was current, and return False with the reason."""
    from oemkit.host import service as sv

    name = sv.unit_name(svc, bundle_name)
    path = sv.unit_path(svc, name)
    old_text = path.read_bytes() if path.is_file() else None
    recorded = sv.read_unit_header(path)
    host = svc.host or str(recorded.get("host") or "127.0.0.1")
    port = svc.port or _int(recorded.get("port")) or sv.DEFAULT_PORT
    state = state_path or Path(str(recorded.get("state") or sv.SERVICE_STATE))
    try:
        for hidden in sv.hidden_paths(prefix, svc, state):
            report.add("service", "warn", f"ProtectHome=yes hides {hidden} from the "
                       "service", hint="install under /opt or /srv, with a system Python")
        text = sv.unit_text(prefix, bundle_name=bundle_name, options=svc, host=host,
                            port=port, state_path=state)
        path.parent.mkdir(parents=True, exist_ok=True)
        state.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, text.encode())
        checked = sv.verify_unit(path)
        if checked is not None and not checked[0]:
            raise EnvironmentProblem("E_SERVICE_FAILED", f"systemd-analyze verify rejects "
                                     f"{path}: {checked[1]}",
                                     hint="check the --service-user, the prefix and the "
                                          "interpreter paths the unit names")
        report.add("service", "pass", f"{path} written" + (
            "; systemd-analyze verify passed" if checked else
            "; systemd-analyze not installed, not verified"))
        sv.systemctl("daemon-reload")
        sv.systemctl("enable", name)
        sv.systemctl("restart", name)
        seen = sv.wait_ready(host, port, svc.ready_timeout_s)
        if seen.ready:
            report.add("ready", "pass", f"{name} on {host}:{port} was ready in "
                       f"{seen.seconds:.1f} s")
            return True
        failure: OemkitError = seen.error(f"{name} on {host}:{port}")
    except OemkitError as exc:
        failure = exc
    except OSError as exc:
        failure = EnvironmentProblem("E_SERVICE_FAILED", f"cannot write {path}: "
                                     f"{exc.strerror or exc}",
                                     hint="run as root to install a system unit, or pass "
                                          "--unit-dir")
    report.fail("ready" if failure.code == "E_SERVICE_NOT_READY" else "service", failure)
    _revert(report, prefix, journal, svc, name, path, old_text, before, discard,
            (host, port))
    return False


def _int(value: object) -> int | None:
    return value if type(value) is int and 0 < value < 65536 else None


def _revert(report: InstallReport, prefix: Path, journal: Journal, svc: ServiceOptions,
            name: str, path: Path, old_text: bytes | None,
            before: tuple[str | None, str | None], discard: str | None,
            listen: tuple[str, int]) -> None:
    """Undo a switch whose service never became ready (best effort, each step reported)."""
    from oemkit.host import service as sv

    report.switched = False
    try:
        _set_links(prefix, journal, *before)
        if discard is not None:
            journal.add(discard)
            journal.remove(discard, [n for n in before if n])
        report.add("switch back", "pass", f"current -> slots/{before[0]}" if before[0]
                   else "current removed (nothing was installed before)")
    except (OemkitError, OSError) as exc:
        report.add("switch back", "fail", f"cannot restore the links: {exc}",
                   code="E_WRITE", hint="run 'oemkit rollback' or fix the prefix by hand")
        return
    try:
        if old_text is not None:
            atomic_write_bytes(path, old_text)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        sv.systemctl("daemon-reload")
        if before[0] is None:
            if old_text is not None:
                sv.systemctl("stop", name)
            else:
                sv.systemctl("disable", "--now", name)
            return
        sv.systemctl("restart", name)
        seen = sv.wait_ready(*listen, svc.ready_timeout_s)
    except OemkitError as exc:
        report.add("restore", "fail", f"the previous release was not restarted: "
                   f"{exc.message}", code=exc.code, hint=exc.hint)
        return
    if seen.ready:
        report.add("restore", "pass", f"{name} serves slots/{before[0]} again (ready in "
                   f"{seen.seconds:.1f} s)")
    else:
        report.add("restore", "fail", f"slots/{before[0]} is current again but "
                   f"{name} is not ready: {seen.detail}", code="E_SERVICE_NOT_READY",
                   hint="check 'systemctl status' and 'journalctl -u' for the unit")


def _version_problem(prefix: Path, old: SlotRecord | InputError | None, manifest: Any,
                     allow_downgrade: bool) -> OemkitError | None:
    """Why this bundle may not replace the current slot (``old``: its record, or why it
    cannot be read), or None."""
    if old is None:
        return None
    if isinstance(old, InputError):
        if allow_downgrade:
            return None
        return restate(old, InputError, message=f"{old.message}; the installed version is "
                       "unknown", hint="pass --allow-downgrade to replace the current slot "
                       "anyway, or roll back")
    if old.bundle_name != manifest.name:
        return VerificationError(
            "E_PRODUCT_MISMATCH", f"{prefix} runs {old.bundle_name}; this bundle is "
            f"{manifest.name}", expected=old.bundle_name, actual=manifest.name,
            hint="install a different product under its own --prefix")
    if not allow_downgrade and version_key(manifest.version) < version_key(old.version):
        return VerificationError(
            "E_DOWNGRADE", f"{manifest.version} is older than the installed "
            f"{old.version}", expected=f">= {old.version}", actual=manifest.version,
            hint="pass --allow-downgrade to go back on purpose")
    return None


def _prepare_slot(report: InstallReport, slot: Path, verified: Any, current: Path | None,
                  opts: InstallOptions) -> str | None:
    """License, venv, config and smoke test of a new slot; its Python, or None on failure."""
    if not _license(report, verified, opts.license_file, opts.state_path):
        return None
    python = _venv(report, slot, verified.manifest, opts.system_site_packages)
    if python is None or not _config(report, slot, verified, current, opts.config):
        return None
    if opts.skip_smoke:
        report.add("smoke", "warn", "skipped (--skip-smoke): the slot was not tested")
    elif not _smoke(report, slot, verified.manifest, opts.profile, python):
        return None
    return python


def _license(report: InstallReport, verified: Any, license_file: Path | None,
             state_path: Path | None) -> bool:
    from oemkit._fs import read_input
    from oemkit.host.license_state import bundle_facts, verify_license

    licenses = ([(str(license_file), read_input(license_file, "license", 1 << 20))]
                if license_file else verified.licenses)
    crls = [("revocations.crl", verified.crl, False)] if verified.crl else []
    for name, data in licenses:
        try:
            verdict = verify_license(data, verified.root, state_path=state_path, crls=crls,
                                     bundle=bundle_facts(verified), what=name).verdict
        except OemkitError as exc:
            report.fail("license", exc)
            return False
        report.add("license", "warn" if verdict.status == "grace" else "pass",
                   f"{verdict.claims.license_id}: {verdict.status}")
    return True


def _venv(report: InstallReport, slot: Path, manifest: Any, system_site: bool) -> str | None:
    """Create slot/venv and install the bundle's wheels offline (pip --no-index)."""
    wheels = [f.path for f in manifest.files if f.path.endswith(".whl")]
    if not wheels:
        report.add("dependencies", "info", "the bundle carries no wheels; using this "
                   "interpreter's packages")
        return sys.executable
    venv = slot / "venv"
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index",
              "--no-deps", "--disable-pip-version-check", "--quiet",
              *[str(slot / "bundle" / w) for w in wheels]]]
    for i, cmd in enumerate(steps):
        if i == 1 and system_site:
            _see_host_packages(venv)
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            report.fail("dependencies", EnvironmentProblem(
                "E_PIP", f"offline install of the bundle's wheels failed: {tail}",
                hint="the wheelhouse must hold every dependency for this platform and "
                     "Python version"))
            return None
    report.add("dependencies", "pass", f"{len(wheels)} wheel(s) installed offline into "
               "the slot's venv")
    _license_api(report, slot, venv / "bin" / "python")
    return str(venv / "bin" / "python")


def _license_api(report: InstallReport, slot: Path, python: Path) -> None:
    """Give the slot's venv the license API (``import oemkit.license``, docs/LICENSE-FORMAT.md
    section 13.4): this host's own oemkit without its other dependencies, and what the API
    imports, each taken from the wheelhouse when it carried it, else repacked offline from
    this interpreter's installed files (:mod:`oemkit.host.selfwheel`); then imported by the
    slot's Python. What cannot be provided is a warning (E_SLOT_LICENSE_API), not a refusal:
    a runtime that does not call the API (the example's) needs none of it, and one that does
    fails its smoke test."""
    from oemkit.host.selfwheel import (
        LICENSE_API_PROBE,
        license_api_distributions,
        wheel_of_installed,
    )

    work = slot / ".license-api"
    try:
        wanted = license_api_distributions()
        present = _venv_has(python, wanted)
        missing = [n for n in wanted if n not in present]
        work.mkdir()
        made = [wheel_of_installed(n, work) for n in missing]
        if made:
            _run_venv(python, ["install", "--no-index", "--no-deps",
                                *[str(w.path) for w in made]], "the license API's wheels")
        _run_venv(python, ["-c", LICENSE_API_PROBE], "import oemkit.license",
                   module=False)
    except EnvironmentProblem as exc:
        report.add("license api", "warn", f"the slot's venv cannot import oemkit.license: "
                   f"{exc.message}", code=exc.code, hint=exc.hint)
        return
    finally:
        shutil.rmtree(work, ignore_errors=True)
    copied = ", ".join(f"{w.name} {w.version}" + (" (an editable checkout)" if w.editable
                                                  else "") for w in made)
    kept = [n for n in wanted if n in present]
    report.add("license api", "pass", "import oemkit.license works in the slot's venv"
               + (f"; copied from this host: {copied}" if made else "")
               + (f"; already there: {', '.join(kept)}" if kept else ""))


def _venv_has(python: Path, names: list[str]) -> set[str]:
    """Which of ``names`` the venv's Python already provides: oemkit when it can import it
    (an editable host's metadata may be visible through --system-site-packages while its
    package is not), any other when its metadata is found."""
    script = ("import importlib.metadata as m, importlib.util as u, json, sys\n"
              "def has(n):\n"
              "    if n == 'oemkit':\n"
              "        return u.find_spec('oemkit') is not None\n"
              "    try:\n"
              "        m.distribution(n)\n"
              "    except m.PackageNotFoundError:\n"
              "        return False\n"
              "    return True\n"
              "print(json.dumps([n for n in sys.argv[1:] if has(n)]))\n")
    out = _run_venv(python, ["-c", script, *names], "the slot's venv", module=False)
    try:
        found = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        found = []
    return {n for n in found if isinstance(n, str)}


def _run_venv(python: Path, args: list[str], what: str, *, module: bool = True) -> str:
    """Run the venv's ``python -m pip ARGS`` (or ``python -I ARGS``) in the slot, isolated
    from this process's environment and working directory; its stdout.

    Raises:
        EnvironmentProblem: E_SLOT_LICENSE_API with the last lines of its output.
    """
    cmd = [str(python), "-I", *(["-m", "pip", "--disable-pip-version-check", "--quiet"]
                                if module else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          cwd=python.parent)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
        raise EnvironmentProblem("E_SLOT_LICENSE_API", f"{what} failed: {tail}",
                                 hint="ship the license API's wheels (oemkit, cryptography, "
                                      "rfc8785 and what they require) in the bundle's "
                                      "wheelhouse, or install with --system-site-packages")
    return proc.stdout


def _see_host_packages(venv: Path) -> None:
    """Let the venv import what the interpreter running oemkit has (a .pth file), so a
    wheelhouse may omit packages the host already provides (e.g. onnxruntime-gpu)."""
    import sysconfig

    paths = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "_oemkit_host.pth").write_text("".join(f"{p}\n" for p in sorted(paths)))


def _config_version(path: Path) -> int | None:
    try:
        value = json.loads(path.read_text()).get("schema_version")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return value if type(value) is int else None


def _config(report: InstallReport, slot: Path, verified: Any, current: Path | None,
            config_file: Path | None) -> bool:
    """Write the slot's live config: given, migrated from the current slot, or default."""
    from oemkit.host.migrate import kept_path, read_config
    from oemkit.models.config import load_configs, plan

    section = verified.manifest.runtime.config
    if not section:
        report.add("config", "info", "the bundle has no config")
        return True
    root = slot / "bundle"
    files = {f.path: (root / f.path).read_bytes() for f in verified.manifest.files
             if f.size <= 4 << 20}
    try:
        configs = load_configs(files, section, verified=True)
        kept: dict[str, Any] = {}
        if config_file is not None:
            source, where = read_config(config_file), str(config_file)
        elif current is not None and (current / "config.json").is_file():
            source, where = read_config(current / "config.json"), "the current config"
            sidecar = kept_path(current / "config.json")
            kept = _kept(sidecar) if sidecar.is_file() else {}
        else:
            source, where = configs.default, "the bundle's default config"
        if current is not None and config_file is None and _config_version(
                current / "config.json") not in (None, *configs.schemas):
            # A downgrade: only the newer (current) release knows how to walk back down.
            newer = _slot_configs(current)
            down = plan(source, newer, where, target=configs.version, kept=kept)
            source, kept = down.outcome.config, down.outcome.kept
            where = (f"the current config, walked down v{down.source} -> v{down.target} "
                     f"({len(down.steps)} steps, {len(kept)} value(s) kept aside),")
        result = plan(source, configs, where, kept=kept)
    except OemkitError as exc:
        report.fail("config", exc)
        return False
    text = json.dumps(result.outcome.config, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(slot / "config.json", text.encode())
    if result.outcome.kept:
        atomic_write_bytes(kept_path(slot / "config.json"),
                           json.dumps(result.outcome.kept, indent=2).encode(), mode=0o600)
    detail = (f"{where} migrated v{result.source} -> v{result.target} "
              f"({len(result.steps)} steps)" if result.steps else
              f"{where} (version {result.target}) is valid")
    report.add("config", "pass", detail)
    return True


def _kept(sidecar: Path) -> dict[str, Any]:
    """The current slot's kept-aside values (a JSON object), or a coded error."""
    from oemkit._canonical import parse_json
    from oemkit._fs import read_input
    from oemkit.models.config import MAX_CONFIG

    doc = parse_json(read_input(sidecar, "kept-aside values", MAX_CONFIG),
                     what=str(sidecar), code="E_CONFIG_INVALID")
    if not isinstance(doc, dict):
        raise InputError("E_CONFIG_INVALID", f"{sidecar} is not a JSON object",
                         hint="restore the file from the slot's backup or delete it (the "
                              "values kept aside in it are then lost)")
    return doc


def _slot_configs(slot: Path) -> Any:
    """The config versions and migrations of an installed slot's (verified) bundle."""
    from oemkit._canonical import parse_json
    from oemkit.models.config import load_configs
    from oemkit.models.manifest import Manifest

    try:
        manifest = Manifest.from_dict(parse_json((slot / "manifest.json").read_bytes(),
                                                 what=f"{slot.name}/manifest.json"))
    except FormatError as exc:  # the verified bundle's manifest, changed since: a "no"
        raise restate(exc, VerificationError) from exc
    files = {f.path: (slot / "bundle" / f.path).read_bytes() for f in manifest.files
             if f.size <= 4 << 20}
    return load_configs(files, manifest.runtime.config, verified=True)


def _smoke(report: InstallReport, slot: Path, manifest: Any, profile_name: str | None,
           python: str) -> bool:
    from oemkit.host.profiles import load_profile
    from oemkit.measure.smoke import SmokeResult, run_unpacked

    name = profile_name or (manifest.runtime.profiles[0] if manifest.runtime.profiles
                            else "cpu-small")
    try:
        profile = load_profile(name, slot / "bundle")
    except OemkitError as exc:
        report.fail("smoke", exc)
        return False
    result = SmokeResult(bundle=manifest.name)
    work = slot / ".smoke"
    work.mkdir()
    try:
        run_unpacked(result, manifest, slot / "bundle", profile, work, python)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [c for c in result.checks if c.status == "fail"]
    if failed:
        first = failed[0]
        report.add("smoke", "fail", f"post-install smoke test on {profile.name} failed: "
                   f"{first.name}: {first.detail}", code=first.code, hint=first.hint)
        report.environment_error = result.environment_error
        return False
    report.add("smoke", "pass", f"smoke test on profile {profile.name} passed "
               f"({len(result.checks)} checks)")
    return True


# --------------------------------------------------------------------------- rollback/status


def rollback(prefix: Path, service: ServiceOptions | None = None,
             state_path: Path | None = None) -> InstallReport:
    """Point ``current`` back at ``previous`` (with its config as it was).

    With ``service``: ``none`` with the readiness check serves the previous slot on a free
    port first and does not switch when it never becomes ready; ``systemd`` restarts the
    unit after the switch and switches back when the release never becomes ready.

    Raises:
        InputError: E_NO_PREVIOUS, E_SLOT_DAMAGED, E_PREFIX_LAYOUT, E_PREFIX_JOURNAL.
        EnvironmentProblem: E_WRITE (the links cannot be switched).
    """
    prefix = Path(prefix).resolve()
    report = InstallReport("rollback", str(prefix))
    if not scan(prefix).exists:  # answered without creating the prefix
        raise _no_previous(prefix)
    with prefix_lock(prefix):
        layout, journal = _begin(prefix, report)
        current, previous = layout.current, layout.previous
        if previous is None:
            raise _no_previous(prefix)
        record = read_slot(prefix / SLOTS / previous)  # E_SLOT_DAMAGED: never switch to a
        report.slot, report.previous = previous, current  # wreck
        if service is not None and service.mode == "none" and service.ready_check and (
                not _ready_before(report, prefix / SLOTS / previous, service, state_path)):
            return report
        try:
            _point(journal, "current", previous)
            if current is not None:
                _point(journal, "previous", current)
        except OSError as exc:
            raise EnvironmentProblem("E_WRITE", f"cannot switch the links in {prefix}: "
                                     f"{exc.strerror or exc}", hint="check the prefix's "
                                     "permissions; each link is either old or new") from exc
        report.switched = True
        report.add("switch", "pass", f"current -> slots/{previous}")
        if service is not None and service.mode == "systemd":
            _systemd_gate(report, prefix, journal, record.bundle_name, service, state_path,
                          before=(current, previous), discard=None)
        keep_report(prefix, report)
    return report


def keep_report(prefix: Path, report: InstallReport) -> None:
    """Keep ``report`` (its ``--json`` document, with the time) as
    ``PREFIX/reports/NNNNNN-ACTION.json``, and only the newest ``KEEP_REPORTS``: what
    ``oemkit support collect`` carries out. Best effort: a report that cannot be kept
    never changes the outcome it reports."""
    from oemkit.host.prefix import KEEP_REPORTS, REPORTS

    folder = prefix / REPORTS
    try:
        if folder.is_symlink():
            return
        folder.mkdir(mode=0o755, exist_ok=True)
        kept = sorted(p.name for p in folder.iterdir()
                      if re.fullmatch(r"[0-9]{6}-[a-z]+\.json", p.name))
        number = int(kept[-1][:6]) + 1 if kept else 1
        doc = {"recorded_at": format_time(now()), **report.to_dict()}
        atomic_write_bytes(folder / f"{number % 1_000_000:06d}-{report.action}.json",
                           (json.dumps(doc, indent=2) + "\n").encode())
        for old in kept[:max(0, len(kept) + 1 - KEEP_REPORTS)]:
            (folder / old).unlink(missing_ok=True)
    except Exception:  # keeping the record must never change the outcome it records
        return


@dataclass(frozen=True)
class SlotStatus:
    """One slot as :func:`prefix_status` found it."""

    #: The slot's directory name under ``PREFIX/slots``.
    name: str
    #: Its ``slot.json``, or None when that is missing or malformed (see ``problem``).
    record: SlotRecord | None
    #: Why ``record`` is None (the ``E_SLOT_DAMAGED`` or read error's message).
    problem: str | None
    #: Not finished: no usable ``slot.json``, a ``.tmp-*`` name, or still journaled.
    incomplete: bool
    current: bool
    previous: bool

    def to_dict(self) -> dict[str, Any]:
        """What ``oemkit status --json`` lists for the slot: the record's fields (or the
        name and the problem), ``incomplete`` only when true, ``current``, ``previous``."""
        doc: dict[str, Any]
        if self.record is None:
            doc = {"name": self.name, "incomplete": True, "problem": self.problem}
        else:
            doc = self.record.to_dict()
            if self.incomplete:
                doc["incomplete"] = True
        doc["current"] = self.current
        doc["previous"] = self.previous
        return doc


@dataclass(frozen=True)
class PrefixStatus:
    """An install prefix as :func:`prefix_status` found it."""

    prefix: str
    #: The slot names ``current`` and ``previous`` point at (None: no such link).
    current: str | None
    previous: str | None
    #: False when ``current`` points at a slot without a usable ``slot.json``.
    consistent: bool
    slots: tuple[SlotStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        """The document ``oemkit status --json`` prints (with ``ok``) and :func:`status`
        returns."""
        return {"prefix": self.prefix, "current": self.current, "previous": self.previous,
                "consistent": self.consistent, "slots": [s.to_dict() for s in self.slots]}


def prefix_status(prefix: Path) -> PrefixStatus:
    """Slots, versions, digests, when and by which oemkit they were installed.

    Reads only (no lock, nothing written, no link followed). A slot whose ``slot.json``
    is missing or malformed is ``incomplete`` with the ``problem``; a prefix that is not
    laid out as oemkit's is ``E_PREFIX_LAYOUT``; a journal that is not oemkit's
    ``E_PREFIX_JOURNAL``.
    """
    prefix = Path(prefix)
    layout = scan(prefix)
    pending = set(Journal.load(prefix).pending) if layout.exists else set()
    slots = []
    for name in layout.slots:
        record: SlotRecord | None = None
        problem = None
        try:
            record = read_slot(prefix / SLOTS / name)
        except InputError as exc:
            problem = exc.message
        incomplete = record is None or name.startswith(TMP_PREFIX) or (
            f"{SLOTS}/{name}" in pending)
        slots.append(SlotStatus(name, record, problem, incomplete,
                                current=name == layout.current,
                                previous=name == layout.previous))
    records = {s.name for s in slots if s.record is not None}
    consistent = layout.current is None or layout.current in records
    return PrefixStatus(str(prefix), layout.current, layout.previous, consistent,
                        tuple(slots))


def status(prefix: Path) -> dict[str, Any]:
    """:func:`prefix_status` as the JSON document ``oemkit status --json`` prints.

    Raises:
        InputError: E_PREFIX_LAYOUT, E_PREFIX_JOURNAL.
    """
    return prefix_status(prefix).to_dict()
