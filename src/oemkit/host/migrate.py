"""Config migrations on a host: a bundle's config versions read (verified, or unverified
through the verifier's bounded reader) and a config file migrated in place (lock, backup,
atomic write, the kept-aside sidecar). The pure half (parsing the config section, planning,
the upgrade-path test) is ``oemkit.models.config``.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from oemkit._fs import atomic_write_bytes, read_input
from oemkit.errors import InputError, OemkitError
from oemkit.models.config import (
    MAX_CONFIG,
    BundleConfigs,
    Plan,
    load_configs,
    parse_config,
    plan,
    wanted_files,
)

if TYPE_CHECKING:
    from oemkit.verify.bundle import Limits


def bundle_configs(bundle: Path, trust: Path | bytes | None = None, *,
                   limits: Limits | None = None) -> BundleConfigs:
    """Read a bundle's config versions; verified when ``trust`` is given. ``limits``: the
    reader limits (default ``Limits()``), with or without ``trust``."""
    if trust is not None:
        import shutil
        import tempfile

        from oemkit.host.unpack import unpack_bundle

        work = Path(tempfile.mkdtemp(prefix="oemkit-migrate-"))
        try:
            report = unpack_bundle(bundle, work / "b", trust, limits=limits)
            if not report.ok:
                assert report.error is not None
                raise report.error
            section = report.manifest.runtime.config
            files = {f.path: (work / "b" / f.path).read_bytes()
                     for f in report.manifest.files if f.size <= MAX_CONFIG}
            import dataclasses

            manifest = report.manifest
            return dataclasses.replace(load_configs(files, section, verified=True),
                                       manifest_sha256=report.manifest_sha256,
                                       bundle=f"{manifest.name}-{manifest.version}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if limits is None:
        from oemkit.verify.bundle import Limits

        limits = Limits()
    return _unverified_configs(bundle, limits)


class _Enough(OemkitError):
    """Every wanted file has been read (and matched its manifest digest): stop reading.

    Raised by the sink, caught by ``_unverified_configs``; an OemkitError so that the
    payload reader passes it on as it does every coded finding (it turns anything else
    into E_PAYLOAD_CORRUPT)."""

    def __init__(self) -> None:
        super().__init__("E_STOP", "all wanted payload files read")


class _Capture(io.BytesIO):
    """A payload file being read into memory; its bytes are kept when it is closed."""

    def __init__(self, out: dict[str, bytes], path: str) -> None:
        super().__init__()
        self._out, self._path = out, path

    def close(self) -> None:
        if not self.closed:
            self._out[self._path] = self.getvalue()
        super().close()


class _Discard(io.BytesIO):
    """A payload file nobody wants: its bytes are hashed by the reader, then dropped."""

    def write(self, data: Any) -> int:
        return len(data)


def _unverified_configs(bundle: Path, limits: Limits) -> BundleConfigs:
    """The config versions of a bundle read without a trust decision (UNVERIFIED).

    Read as verify reads: the outer archive scanned with the reader limits, the manifest
    checked exactly (``Manifest.from_dict``, canonical JSON), and the payload streamed by
    the verifier's bounded reader (decompression bounded by the declared sizes, only the
    payload member's bytes, every entry safe and in the manifest's order, each file's
    digest checked before it is used), stopping after the last file wanted.
    """
    from oemkit._fs import open_input, read_member
    from oemkit.models.manifest import MANIFEST, PAYLOAD, FileEntry
    from oemkit.verify.bundle import _stream_payload, parse_manifest, scan_bundle

    with open_input(bundle, "bundle") as handle:
        members = {m.name: m for m in scan_bundle(handle, limits)}
        manifest = parse_manifest(read_member(handle, members[MANIFEST]))
        section = manifest.runtime.config
        wanted = wanted_files(section)
        for name in sorted(wanted):
            entry = manifest.entry(name)
            if entry is not None and entry.size > MAX_CONFIG:
                raise InputError("E_CONFIG_INVALID", f"{name}, named by the bundle's config "
                                 f"section, is {entry.size} bytes (at most {MAX_CONFIG})",
                                 hint="config files, schemas and migrations are small "
                                      "documents; the bundle is damaged or hostile")
        out: dict[str, bytes] = {}

        def sink(entry: FileEntry) -> BinaryIO:
            if len(out) == len(wanted):
                raise _Enough
            return _Capture(out, entry.path) if entry.path in wanted else _Discard()

        if wanted and PAYLOAD in members:
            with contextlib.suppress(_Enough):
                _stream_payload(handle, members[PAYLOAD], manifest, limits, None, sink)
    return load_configs(out, section, verified=False)


# --------------------------------------------------------------------------- apply


def migration_lock(path: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock so that two migrations never run on one config at once."""
    from oemkit._lock import exclusive_lock

    return exclusive_lock(path.with_name(path.name + ".lock"), f"the config {path.name}")


def kept_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".kept.json")


def read_config(path: Path) -> Any:
    return parse_config(read_input(path, "config", MAX_CONFIG), path.name)


def read_kept(sidecar: Path) -> dict[str, Any]:
    """The values a config's earlier migrations kept aside (``{}`` when there are none); a
    damaged sidecar is ``E_CONFIG_INVALID`` naming it."""
    if not sidecar.is_file():
        return {}
    kept = parse_config(read_input(sidecar, "kept-aside values", MAX_CONFIG), sidecar.name)
    if not isinstance(kept, dict):
        raise InputError("E_CONFIG_INVALID", f"{sidecar} does not hold an object of kept-"
                         "aside values", hint="restore it from a backup, or delete it to "
                         "drop the values it kept")
    return kept


def apply_file(config_path: Path, configs: BundleConfigs, *, target: int | None = None,
               out: Path | None = None) -> Plan:
    """Migrate a config file: backup, then atomic write; values kept aside go to a sidecar."""
    with migration_lock(config_path):
        config = read_config(config_path)
        kept = read_kept(kept_path(config_path))
        result = plan(config, configs, str(config_path), target=target, kept=kept)
        destination = out or config_path
        backup = config_path.with_name(f"{config_path.name}.v{result.source}.bak")
        atomic_write_bytes(backup, config_path.read_bytes(), mode=0o600)
        text = json.dumps(result.outcome.config, indent=2, sort_keys=True) + "\n"
        mode = config_path.stat().st_mode & 0o777  # a 0600 config stays 0600
        atomic_write_bytes(destination, text.encode(), mode=mode)
        if result.outcome.kept:
            atomic_write_bytes(kept_path(destination),
                               json.dumps(result.outcome.kept, indent=2).encode(), mode=0o600)
        elif kept_path(destination).exists():
            kept_path(destination).unlink()
        return result


