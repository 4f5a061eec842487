"""Install, upgrade, roll back: A/B slots under a prefix, switched atomically.

Layout::

    PREFIX/slots/NAME-VERSION-DIGEST12/   one verified bundle: bundle/ (payload),
                                          config.json (the live config), venv/ (when the
                                          bundle has wheels), slot.json (what and when)
    PREFIX/slots/.tmp-*/                  a slot being prepared (removed on the next run)
    PREFIX/current  -> slots/...          symlinks, each replaced with one rename
    PREFIX/previous -> slots/...
    PREFIX/.lock                          one operation at a time

A new slot is prepared completely (verify, unpack, venv, config, smoke) under a temporary
name, renamed into place, and only then does ``current`` move. A kill at any point leaves
``current`` on the old or the new slot, never on a half-written one; the next run removes
the leftovers.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit import __version__
from oemkit._fs import atomic_write_bytes
from oemkit._time import format_time, now
from oemkit.errors import EnvironmentProblem, InputError, OemkitError, VerificationError
from oemkit.models.report import Check

if TYPE_CHECKING:
    from oemkit.verify.bundle import Limits

SLOTS = "slots"
TMP_PREFIX = ".tmp-"


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
        return {"action": self.action, "prefix": self.prefix, "ok": self.ok,
                "slot": self.slot, "previous": self.previous, "switched": self.switched,
                "exit_code": self.exit_code, "checks": [c.to_dict() for c in self.checks]}


# --------------------------------------------------------------------------- prefix helpers


def prefix_lock(prefix: Path) -> contextlib.AbstractContextManager[None]:
    """Exclusive lock on the prefix: one install/upgrade/rollback at a time."""
    from oemkit._lock import exclusive_lock

    try:
        (prefix / SLOTS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot use {prefix}: {exc.strerror}",
                                 hint="check that the prefix is writable") from exc
    return exclusive_lock(prefix / ".lock", f"the prefix {prefix}")


def _link_target(prefix: Path, name: str) -> Path | None:
    link = prefix / name
    if not link.is_symlink():
        return None
    target = prefix / os.readlink(link)
    return target if target.is_dir() else None


def _point(prefix: Path, name: str, slot: Path) -> None:
    """Atomically make PREFIX/name a relative symlink to ``slot``."""
    tmp = prefix / f".{name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(os.path.relpath(slot, prefix), tmp)
    os.replace(tmp, prefix / name)
    fd = os.open(prefix, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cleanup(prefix: Path) -> list[str]:
    """Remove half-prepared slots and slots nothing points at from an interrupted run."""
    removed = []
    slots = prefix / SLOTS
    keep = {p.resolve() for p in (_link_target(prefix, "current"),
                                  _link_target(prefix, "previous")) if p}
    for entry in sorted(slots.iterdir()) if slots.is_dir() else []:
        if entry.name.startswith(TMP_PREFIX) or (
                entry.resolve() not in keep and not (entry / "slot.json").is_file()):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    for stray in prefix.glob(".*.tmp"):
        stray.unlink(missing_ok=True)
    return removed


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


def prune(prefix: Path, keep: int = 2) -> list[str]:
    """Remove complete slots that neither ``current`` nor ``previous`` points at."""
    live = {p.resolve() for p in (_link_target(prefix, "current"),
                                  _link_target(prefix, "previous")) if p}
    removed = []
    for entry in sorted((prefix / SLOTS).iterdir()):
        if entry.resolve() not in live and (entry / "slot.json").is_file() and len(live) >= min(
                keep, 2):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def read_slot(slot: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((slot / "slot.json").read_text())
    except (OSError, ValueError):
        return {"name": slot.name, "incomplete": True}
    return data


# --------------------------------------------------------------------------- install/upgrade


def install(bundle: Path, prefix: Path, trust: Path | bytes, *, upgrade: bool = False,
            config: Path | None = None, license_file: Path | None = None,
            profile: str | None = None, skip_smoke: bool = False,
            allow_downgrade: bool = False, system_site_packages: bool = False,
            state_path: Path | None = None,
            progress: Callable[[int], None] | None = None,
            limits: Limits | None = None) -> InstallReport:
    """Install (or upgrade to) ``bundle`` into a new slot and switch ``current`` to it.

    ``progress`` is called with the bytes read while the bundle is verified and unpacked
    (the long step for a multi-gigabyte bundle); ``limits`` are the reader limits
    (``verify``'s defaults unless given).
    """
    prefix = Path(prefix).resolve()
    report = InstallReport("upgrade" if upgrade else "install", str(prefix))
    with prefix_lock(prefix):
        removed = cleanup(prefix)
        if removed:
            report.add("cleanup", "info", f"removed leftovers of an interrupted run: "
                       f"{', '.join(removed)}")
        current = _link_target(prefix, "current")
        if upgrade and current is None:
            raise InputError("E_NOT_INSTALLED", f"nothing is installed under {prefix}",
                             hint="use 'oemkit install' first")
        if not upgrade and current is not None:
            raise InputError("E_ALREADY_INSTALLED", f"{prefix} already has "
                             f"{read_slot(current).get('name')} installed",
                             hint="use 'oemkit upgrade' to move to another release")
        staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=prefix / SLOTS))
        try:
            return _prepare_and_switch(report, bundle, prefix, trust, staging, current,
                                       config=config, license_file=license_file,
                                       profile=profile, skip_smoke=skip_smoke,
                                       allow_downgrade=allow_downgrade,
                                       system_site_packages=system_site_packages,
                                       state_path=state_path, progress=progress,
                                       limits=limits)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _prepare_and_switch(report: InstallReport, bundle: Path, prefix: Path,
                        trust: Path | bytes, staging: Path, current: Path | None,
                        **opts: Any) -> InstallReport:
    from oemkit.runners.unpack import unpack_bundle

    try:
        verified = unpack_bundle(bundle, staging / "bundle", trust,
                                 progress=opts.pop("progress", None),
                                 limits=opts.pop("limits", None))
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
    final = prefix / SLOTS / slot_name
    report.slot = slot_name
    old = read_slot(current) if current else None
    if old and old.get("manifest_sha256") == verified.manifest_sha256:
        report.add("version", "info", f"{slot_name} is already the current slot; nothing "
                   "to do")
        return report
    if old and old.get("bundle_name") not in (None, manifest.name):
        return report.fail("version", VerificationError(
            "E_PRODUCT_MISMATCH", f"{prefix} runs {old.get('bundle_name')}; this bundle is "
            f"{manifest.name}", expected=str(old.get("bundle_name")), actual=manifest.name,
            hint="install a different product under its own --prefix"))
    if old and not opts["allow_downgrade"] and version_key(manifest.version) < version_key(
            str(old.get("version"))):
        return report.fail("version", VerificationError(
            "E_DOWNGRADE", f"{manifest.version} is older than the installed "
            f"{old.get('version')}", expected=f">= {old.get('version')}",
            actual=manifest.version, hint="pass --allow-downgrade to go back on purpose"))
    n = 2
    while final.exists():  # never touch an existing slot: it may be the rollback target
        final = prefix / SLOTS / f"{slot_name}-{n}"
        n += 1
    slot_name = report.slot = final.name
    try:
        # The slot gets its final path before the venv is made (venvs are not relocatable);
        # until slot.json is written it is incomplete, and the next run removes it.
        os.rename(staging, final)
        os.chmod(final, 0o755 & ~_umask())
        python = _prepare_slot(report, final, verified, current, opts)
        if python is None:
            shutil.rmtree(final, ignore_errors=True)
            return report
        slot_doc = {"name": slot_name, "bundle_name": manifest.name,
                    "version": manifest.version, "manifest_sha256": verified.manifest_sha256,
                    "bundle_file": str(Path(bundle).resolve()),
                    "installed_at": format_time(now()), "oemkit_version": __version__,
                    "config_version": _config_version(final / "config.json"),
                    "python": python}
        atomic_write_bytes(final / "manifest.json", verified.manifest.to_bytes())
        atomic_write_bytes(final / "slot.json",
                           (json.dumps(slot_doc, indent=2) + "\n").encode())
        if current is not None:
            _point(prefix, "previous", current)
        _point(prefix, "current", final)
    except OemkitError as exc:
        shutil.rmtree(final, ignore_errors=True)
        return report.fail("install", exc)
    except OSError as exc:
        shutil.rmtree(final, ignore_errors=True)
        return report.fail("install", EnvironmentProblem(
            "E_WRITE", f"cannot write under {prefix}: {exc.strerror or exc}",
            hint="check free space and permissions; the current slot is unchanged"))
    pruned = prune(prefix)
    if pruned:
        report.add("prune", "info", f"removed old slots: {', '.join(pruned)}")
    report.switched = True
    report.previous = current.name if current else None
    report.add("switch", "pass", f"current -> slots/{slot_name}"
               + (f" (previous: {current.name})" if current else ""))
    return report


def _prepare_slot(report: InstallReport, slot: Path, verified: Any, current: Path | None,
                  opts: dict[str, Any]) -> str | None:
    """License, venv, config and smoke test of a new slot; its Python, or None on failure."""
    if not _license(report, verified, opts["license_file"], opts["state_path"]):
        return None
    python = _venv(report, slot, verified.manifest, opts["system_site_packages"])
    if python is None or not _config(report, slot, verified, current, opts["config"]):
        return None
    if opts["skip_smoke"]:
        report.add("smoke", "warn", "skipped (--skip-smoke): the slot was not tested")
    elif not _smoke(report, slot, verified.manifest, opts["profile"], python):
        return None
    return python


def _license(report: InstallReport, verified: Any, license_file: Path | None,
             state_path: Path | None) -> bool:
    from oemkit._fs import read_input
    from oemkit.runners.license import bundle_facts, verify_license

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
    return str(venv / "bin" / "python")


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
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _config(report: InstallReport, slot: Path, verified: Any, current: Path | None,
            config_file: Path | None) -> bool:
    """Write the slot's live config: given, migrated from the current slot, or default."""
    from oemkit.runners.migrate import kept_path, load_configs, plan, read_config

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
            kept = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
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


def _slot_configs(slot: Path) -> Any:
    """The config versions and migrations of an installed slot's (verified) bundle."""
    from oemkit._canonical import parse_json
    from oemkit.models.manifest import Manifest
    from oemkit.runners.migrate import load_configs

    manifest = Manifest.from_dict(parse_json((slot / "manifest.json").read_bytes(),
                                             what=f"{slot.name}/manifest.json"))
    files = {f.path: (slot / "bundle" / f.path).read_bytes() for f in manifest.files
             if f.size <= 4 << 20}
    return load_configs(files, manifest.runtime.config, verified=True)


def _smoke(report: InstallReport, slot: Path, manifest: Any, profile_name: str | None,
           python: str) -> bool:
    from oemkit.runners.profiles import load_profile
    from oemkit.runners.smoke import SmokeResult, run_unpacked

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


def rollback(prefix: Path) -> InstallReport:
    """Point ``current`` back at ``previous`` (with its config as it was)."""
    report = InstallReport("rollback", str(prefix))
    with prefix_lock(prefix):
        cleanup(prefix)
        current, previous = _link_target(prefix, "current"), _link_target(prefix, "previous")
        if previous is None:
            raise InputError("E_NO_PREVIOUS", f"{prefix} has no previous slot to roll back to",
                             hint="'oemkit status --prefix DIR' shows the slots")
        _point(prefix, "current", previous)
        if current is not None:
            _point(prefix, "previous", current)
        report.slot, report.previous, report.switched = previous.name, (
            current.name if current else None), True
        report.add("switch", "pass", f"current -> slots/{previous.name}")
    return report


def status(prefix: Path) -> dict[str, Any]:
    """Slots, versions, digests, when and by which oemkit they were installed."""
    prefix = Path(prefix)
    current, previous = _link_target(prefix, "current"), _link_target(prefix, "previous")
    slots = []
    for entry in sorted((prefix / SLOTS).iterdir()) if (prefix / SLOTS).is_dir() else []:
        doc = read_slot(entry)
        doc["current"] = current is not None and entry.resolve() == current.resolve()
        doc["previous"] = previous is not None and entry.resolve() == previous.resolve()
        if entry.name.startswith(TMP_PREFIX):
            doc["incomplete"] = True
        slots.append(doc)
    consistent = current is None or (current / "slot.json").is_file()
    return {"prefix": str(prefix), "current": current.name if current else None,
            "previous": previous.name if previous else None, "consistent": consistent,
            "slots": slots}
