"""Config migrations on a host: plan, apply (backup, lock, atomic write), and the release
job's upgrade-path test over the samples a bundle ships.

Every config file carries ``schema_version``; the engine sets it after each hop. A bundle
describes its config versions in the manifest's runtime config section: the current
schema, older versions' schemas and samples (``history``), and the migrations file.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from oemkit._fs import atomic_write_bytes, read_input
from oemkit.errors import InputError, OemkitError
from oemkit.models.manifest import SectionProblem, check_config_section
from oemkit.models.migration import (
    MAX_MIGRATIONS,
    Migration,
    Outcome,
    Step,
    apply_steps,
    chain,
    diff,
)
from oemkit.models.migration import parse_migrations as _parse_migrations
from oemkit.models.report import Check

if TYPE_CHECKING:
    from oemkit.verify.bundle import Limits

MAX_CONFIG = 4 << 20
_SCHEMA_HINT = ("the bundle's config schemas must be self-contained JSON Schemas (no $ref "
                "outside the document); fix the schema and rebuild")


@dataclass
class BundleConfigs:
    """What a bundle knows about its config versions."""

    version: int
    schemas: dict[int, Any]
    samples: dict[int, list[tuple[str, Any]]]
    migrations: dict[int, Migration]
    default: Any = None
    verified: bool = False
    #: Compiled schema per version (made by ``load_configs``; compiled on first use
    #: otherwise).
    validators: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)

    def validator(self, version: int) -> Any:
        if version not in self.validators:
            from oemkit.schema import compile_schema

            self.validators[version] = compile_schema(
                self.schemas[version], f"the config schema of version {version}",
                "E_CONFIG_SCHEMA", _SCHEMA_HINT)
        return self.validators[version]


def _parse(data: bytes, name: str) -> Any:
    """A config-side document: YAML by suffix, otherwise strict JSON (finite numbers only:
    ``1e400`` would be written back as ``Infinity``, which is not JSON)."""
    if name.endswith((".yaml", ".yml")):
        from oemkit.schema import load_yaml

        return load_yaml(data, name)[0]
    from oemkit._canonical import parse_json

    doc = parse_json(data, what=name, code="E_CONFIG_INVALID")
    if not _finite(doc):
        raise InputError("E_CONFIG_INVALID", f"{name} holds a number too large for a "
                         "64-bit float (such as 1e400)", hint="write a smaller number")
    return doc


def _finite(value: Any) -> bool:
    """Whether every float in ``value`` is finite (iterative; depth is bounded already)."""
    pending = [value]
    while pending:
        node = pending.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return False
        if isinstance(node, dict):
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return True


def load_configs(files: dict[str, bytes], config_section: Any, verified: bool) -> BundleConfigs:
    """Build :class:`BundleConfigs` from the bundle's files and manifest config section.

    The section is checked exactly first (``check_config_section``: the shape verify
    enforces), so a malformed one is ``E_CONFIG_INVALID`` naming the field, never a
    KeyError; a file it names that ``files`` lacks (absent, or over MAX_CONFIG bytes) is
    ``E_CONFIG_INVALID`` naming the file; every schema is compiled (``E_CONFIG_SCHEMA``).
    """
    if not config_section:
        raise InputError("E_NO_CONFIG", "the bundle declares no config",
                         hint="add a 'config:' section to the bundle spec")
    try:
        section = check_config_section(config_section)
    except SectionProblem as exc:
        raise InputError("E_CONFIG_INVALID", f"the bundle's {exc.where}: {exc.problem}",
                         hint="the bundle's config section is malformed; the vendor must "
                              "rebuild it") from None

    def doc(name: str) -> Any:
        if name not in files:
            raise InputError("E_CONFIG_INVALID", f"{name}, named by the bundle's config "
                             f"section, is not in the bundle (or is larger than "
                             f"{MAX_CONFIG} bytes)", hint="the bundle is incomplete; the "
                             "vendor must rebuild it")
        return _parse(files[name], name)

    current = section["version"]
    schemas = {current: doc(section["schema"])}
    samples: dict[int, list[tuple[str, Any]]] = {}
    for old in section.get("history", []):
        schemas[old["version"]] = doc(old["schema"])
        samples[old["version"]] = [(s, doc(s)) for s in old.get("samples", [])]
    migrations = {}
    if section.get("migrations"):
        name = section["migrations"]
        migrations = _parse_migrations(doc(name), name)
    configs = BundleConfigs(current, schemas, samples, migrations, doc(section["file"]),
                            verified)
    for version in sorted(schemas):
        configs.validator(version)
    return configs


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
            return load_configs(files, section, verified=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if limits is None:
        from oemkit.verify.bundle import Limits

        limits = Limits()
    return _unverified_configs(bundle, limits)


def wanted_files(section: Any) -> set[str]:
    """The payload files a config section names (config, schemas, migrations, samples);
    a malformed section is ``E_CONFIG_INVALID``."""
    if not section:
        return set()
    try:
        section = check_config_section(section)
    except SectionProblem as exc:
        raise InputError("E_CONFIG_INVALID", f"the bundle's {exc.where}: {exc.problem}",
                         hint="the bundle's config section is malformed") from None
    names = {section["file"], section["schema"]}
    if section.get("migrations"):
        names.add(section["migrations"])
    for old in section.get("history", []):
        names.add(old["schema"])
        names.update(old.get("samples", []))
    return names


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


# --------------------------------------------------------------------------- plan / apply


def config_version(config: Any, where: str) -> int:
    version = config.get("schema_version") if isinstance(config, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError("E_CONFIG_VERSION", f"{where} has no integer schema_version",
                         hint="every config file states its schema_version")
    return version


def validate_config(config: Any, schema: Any, where: str) -> None:
    """``config`` must match ``schema`` (a raw schema, or one compiled by
    ``compile_schema``): ``E_CONFIG_INVALID`` naming the first failing field."""
    from oemkit.schema import compile_schema, first_error

    hint = "fix the config so that it matches its version's schema"
    validator = (schema if hasattr(schema, "iter_errors") else
                 compile_schema(schema, f"the schema for {where}", "E_CONFIG_SCHEMA",
                                _SCHEMA_HINT))
    first = first_error(validator, config, where, "E_CONFIG_INVALID", hint)
    if first is not None:
        at = "/".join(str(p) for p in first.instance_path) or "(top level)"
        message = str(first.message)
        if len(message) > 300:
            message = message[:297] + "..."
        raise InputError("E_CONFIG_INVALID", f"{where}: {at}: {message}", hint=hint)


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
    if abs(target - source) > MAX_MIGRATIONS:
        raise InputError("E_MIGRATION_CHAIN", f"{where} is config version {source}; "
                         f"migrating it to {target} is {abs(target - source)} hops (at most "
                         f"{MAX_MIGRATIONS})", hint="migrate through an intermediate release")
    validate_config(config, configs.validator(source), f"{where} (version {source})")
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
    validate_config(outcome.config, configs.validator(target),
                    f"{where} migrated to {target}")
    return Plan(source, target, steps, outcome, diff(config, outcome.config))


def migration_lock(path: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock so that two migrations never run on one config at once."""
    from oemkit._lock import exclusive_lock

    return exclusive_lock(path.with_name(path.name + ".lock"), f"the config {path.name}")


def kept_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".kept.json")


def read_config(path: Path) -> Any:
    return _parse(read_input(path, "config", MAX_CONFIG), path.name)


def read_kept(sidecar: Path) -> dict[str, Any]:
    """The values a config's earlier migrations kept aside (``{}`` when there are none); a
    damaged sidecar is ``E_CONFIG_INVALID`` naming it."""
    if not sidecar.is_file():
        return {}
    kept = _parse(read_input(sidecar, "kept-aside values", MAX_CONFIG), sidecar.name)
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
