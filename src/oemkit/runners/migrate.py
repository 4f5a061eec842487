"""Config migrations on a host: plan, apply (backup, lock, atomic write), and the release
job's upgrade-path test over the samples a bundle ships.

Every config file carries ``schema_version``; the engine sets it after each hop. A bundle
describes its config versions in the manifest's runtime config section: the current
schema, older versions' schemas and samples (``history``), and the migrations file.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oemkit._fs import atomic_write_bytes, read_input
from oemkit.errors import InputError
from oemkit.models.migration import Migration, Outcome, Step, apply_steps, chain, diff
from oemkit.models.migration import parse_migrations as _parse_migrations
from oemkit.models.report import Check

MAX_CONFIG = 4 << 20


@dataclass
class BundleConfigs:
    """What a bundle knows about its config versions."""

    version: int
    schemas: dict[int, Any]
    samples: dict[int, list[tuple[str, Any]]]
    migrations: dict[int, Migration]
    default: Any = None
    verified: bool = False


def _parse(data: bytes, name: str) -> Any:
    """A config-side document: YAML by suffix, otherwise strict JSON."""
    if name.endswith((".yaml", ".yml")):
        from oemkit.schema import load_yaml

        return load_yaml(data, name)[0]
    from oemkit._canonical import parse_json

    return parse_json(data, what=name, code="E_CONFIG_INVALID")


def load_configs(files: dict[str, bytes], config_section: dict[str, Any] | None,
                 verified: bool) -> BundleConfigs:
    """Build :class:`BundleConfigs` from the bundle's files and manifest config section."""
    if not config_section:
        raise InputError("E_NO_CONFIG", "the bundle declares no config",
                         hint="add a 'config:' section to the bundle spec")
    current = int(config_section["version"])
    schemas = {current: _parse(files[config_section["schema"]], config_section["schema"])}
    samples: dict[int, list[tuple[str, Any]]] = {}
    for old in config_section.get("history", []):
        schemas[int(old["version"])] = _parse(files[old["schema"]], old["schema"])
        samples[int(old["version"])] = [(s, _parse(files[s], s)) for s in old.get("samples", [])]
    migrations = {}
    if config_section.get("migrations"):
        name = config_section["migrations"]
        migrations = _parse_migrations(_parse(files[name], name), name)
    return BundleConfigs(current, schemas, samples, migrations,
                         _parse(files[config_section["file"]], config_section["file"]),
                         verified)


def bundle_configs(bundle: Path, trust: Path | bytes | None = None) -> BundleConfigs:
    """Read a bundle's config versions; verified when ``trust`` is given."""
    from oemkit.verify.bundle import inspect_bundle

    if trust is not None:
        import shutil
        import tempfile

        from oemkit.runners.unpack import unpack_bundle

        work = Path(tempfile.mkdtemp(prefix="oemkit-migrate-"))
        try:
            report = unpack_bundle(bundle, work / "b", trust)
            if not report.ok:
                assert report.error is not None
                raise report.error
            section = report.manifest.runtime.config
            files = {f.path: (work / "b" / f.path).read_bytes()
                     for f in report.manifest.files if f.size <= MAX_CONFIG}
            return load_configs(files, section, verified=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    info = inspect_bundle(bundle)
    section = info["manifest"]["runtime"]["config"]
    return load_configs(_unverified_files(bundle, wanted_files(section)), section, verified=False)


def wanted_files(section: dict[str, Any] | None) -> set[str]:
    """The payload files a config section names (config, schemas, migrations, samples)."""
    if not section:
        return set()
    names = {section["file"], section["schema"]}
    if section.get("migrations"):
        names.add(section["migrations"])
    for old in section.get("history", []):
        names.add(old["schema"])
        names.update(old.get("samples", []))
    return names


def _unverified_files(bundle: Path, wanted: set[str]) -> dict[str, bytes]:
    """Small payload files by path, read without verification (marked UNVERIFIED)."""
    import zstandard

    from oemkit._fs import open_input
    from oemkit.verify.bundle import Limits, scan_bundle

    out: dict[str, bytes] = {}
    with open_input(bundle, "bundle") as handle:
        payload = next(m for m in scan_bundle(handle, Limits()) if m.name == "payload.tar.zst")
        handle.seek(payload.offset)
        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for info in tar:
                if info.name in wanted and info.isreg() and info.size <= MAX_CONFIG:
                    src = tar.extractfile(info)
                    assert src is not None
                    out[info.name] = src.read()
                if len(out) == len(wanted):
                    break
    return out


# --------------------------------------------------------------------------- plan / apply


def config_version(config: Any, where: str) -> int:
    version = config.get("schema_version") if isinstance(config, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError("E_CONFIG_VERSION", f"{where} has no integer schema_version",
                         hint="every config file states its schema_version")
    return version


def validate_config(config: Any, schema: Any, where: str) -> None:
    import jsonschema_rs

    errors = list(jsonschema_rs.validator_for(schema).iter_errors(config))
    if errors:
        first = errors[0]
        at = "/".join(str(p) for p in first.instance_path) or "(top level)"
        raise InputError("E_CONFIG_INVALID", f"{where}: {at}: {first.message}",
                         hint="fix the config so that it matches its version's schema")


@dataclass
class Plan:
    """The migration of one config to a target version."""

    source: int
    target: int
    steps: list[Step]
    outcome: Outcome
    changes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target,
                "steps": [s.describe() for s in self.steps], "log": self.outcome.log,
                "diff": self.changes, "kept_aside": sorted(self.outcome.kept),
                "config": self.outcome.config}


def plan(config: Any, configs: BundleConfigs, where: str, *, target: int | None = None,
         kept: dict[str, Any] | None = None) -> Plan:
    """Validate ``config`` against its own version, migrate it, validate the result."""
    source = config_version(config, where)
    target = configs.version if target is None else target
    if source not in configs.schemas:
        known = ", ".join(str(v) for v in sorted(configs.schemas))
        newer = source > configs.version
        raise InputError("E_CONFIG_VERSION", f"{where} is config version {source}; this bundle "
                         f"knows versions {known}",
                         hint="this config comes from a newer release than this bundle; "
                              "migrate it with that newer release's bundle" if newer else
                              "the bundle cannot upgrade a config this old")
    validate_config(config, configs.schemas[source], f"{where} (version {source})")
    steps: list[Step] = []
    outcome = Outcome(dict(config), dict(kept or {}))
    step_dir = 1 if target >= source else -1
    for version in range(source, target, step_dir):
        hop = chain(configs.migrations, version, version + step_dir)
        steps.extend(hop)
        outcome = apply_steps(outcome.config, hop, outcome.kept) if hop else outcome
        outcome.config["schema_version"] = version + step_dir
    if target not in configs.schemas:
        raise InputError("E_CONFIG_VERSION", f"the bundle has no schema for version {target}",
                         hint="the bundle is incomplete")
    validate_config(outcome.config, configs.schemas[target], f"{where} migrated to {target}")
    return Plan(source, target, steps, outcome, diff(config, outcome.config))


def migration_lock(path: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock so that two migrations never run on one config at once."""
    from oemkit._lock import exclusive_lock

    return exclusive_lock(path.with_name(path.name + ".lock"), f"the config {path.name}")


def kept_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".kept.json")


def read_config(path: Path) -> Any:
    return _parse(read_input(path, "config", MAX_CONFIG), path.name)


def apply_file(config_path: Path, configs: BundleConfigs, *, target: int | None = None,
               out: Path | None = None) -> Plan:
    """Migrate a config file: backup, then atomic write; values kept aside go to a sidecar."""
    with migration_lock(config_path):
        config = read_config(config_path)
        sidecar = kept_path(config_path)
        kept = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
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


def upgrade_path_test(configs: BundleConfigs) -> list[Check]:
    """The release job's test: every shipped sample migrates up, validates, and (where the
    chain is reversible) comes back down to exactly itself."""
    checks: list[Check] = []
    if not configs.samples:
        checks.append(Check("samples", "warn", "the bundle ships no sample configs of older "
                            "versions; nothing to test"))
    for version in sorted(configs.samples):
        for name, sample in configs.samples[version]:
            label = f"{name} (v{version} -> v{configs.version})"
            try:
                up = plan(sample, configs, name)
            except InputError as exc:
                checks.append(Check(label, "fail", exc.message, code=exc.code, hint=exc.hint))
                continue
            checks.append(Check(label, "pass", f"{len(up.steps)} steps; valid against the v"
                                f"{configs.version} schema"))
            back_label = f"{name} (v{configs.version} -> v{version} round trip)"
            try:
                down = plan(up.outcome.config, configs, name, target=version,
                            kept=up.outcome.kept)
            except InputError as exc:
                if exc.code == "E_MIGRATION_IRREVERSIBLE":
                    checks.append(Check(back_label, "warn", exc.message, code=exc.code))
                else:
                    checks.append(Check(back_label, "fail", exc.message, code=exc.code))
                continue
            if down.outcome.config == sample:
                checks.append(Check(back_label, "pass", "downgrade gives back the sample "
                                    "exactly"))
            else:
                checks.append(Check(back_label, "fail", "downgrade does not give back the "
                                    "sample: " + "; ".join(diff(sample, down.outcome.config)),
                                    code="E_MIGRATION_ROUNDTRIP"))
    return checks
