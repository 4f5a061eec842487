"""A bundle's config versions, pure: the config section's files parsed and checked
(schemas compiled, migrations parsed), a config's migration planned and validated, and the
release job's upgrade-path test over the shipped samples. No file I/O: the release side
(``release.bundle``'s config check) and the host (``host.migrate``: reading, backup, lock,
atomic write) both build on it.

Every config file carries ``schema_version``; the engine sets it after each hop. A bundle
describes its config versions in the manifest's runtime config section: the current
schema, older versions' schemas and samples (``history``), and the migrations file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from oemkit.errors import FormatError, InputError, restate
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
    #: The verified bundle's manifest digest and NAME-VERSION (None when unverified): the
    #: subject of a migration attestation.
    manifest_sha256: str | None = None
    bundle: str | None = None
    #: Compiled schema per version (made by ``load_configs``; compiled on first use
    #: otherwise).
    validators: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)

    def validator(self, version: int) -> Any:
        """The compiled schema of ``version``, compiled once and cached.

        Raises:
            FormatError: E_CONFIG_SCHEMA when the schema does not compile.
        """
        if version not in self.validators:
            from oemkit.schema import compile_schema

            with _as_format():
                self.validators[version] = compile_schema(
                    self.schemas[version], f"the config schema of version {version}",
                    "E_CONFIG_SCHEMA", _SCHEMA_HINT)
        return self.validators[version]


@contextmanager
def _as_format() -> Iterator[None]:
    """The JSON, YAML and schema readers' InputError (code, message and fields kept) as
    the FormatError every parser here raises."""
    try:
        yield
    except FormatError:
        raise
    except InputError as exc:
        raise restate(exc, FormatError) from exc


def parse_config(data: bytes, name: str) -> Any:
    """A config-side document: YAML by suffix, otherwise strict JSON (finite numbers only:
    ``1e400`` would be written back as ``Infinity``, which is not JSON).

    Raises:
        FormatError: E_CONFIG_INVALID (not strict JSON, or a non-finite number);
            for YAML E_SPEC_YAML, E_SPEC_DEPTH, E_SPEC_DUPLICATE_KEY.
    """
    if name.endswith((".yaml", ".yml")):
        from oemkit.schema import load_yaml

        with _as_format():
            return load_yaml(data, name)[0]
    from oemkit._canonical import parse_json

    with _as_format():
        doc = parse_json(data, what=name, code="E_CONFIG_INVALID")
    if not _finite(doc):
        raise FormatError("E_CONFIG_INVALID", f"{name} holds a number too large for a "
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

    Raises:
        FormatError: E_CONFIG_INVALID, E_CONFIG_SCHEMA, E_MIGRATION_INVALID, and
            :func:`parse_config`'s E_SPEC_YAML, E_SPEC_DEPTH, E_SPEC_DUPLICATE_KEY.
        InputError: E_NO_CONFIG (no config section: nothing malformed, nothing to load).
    """
    if not config_section:
        raise InputError("E_NO_CONFIG", "the bundle declares no config",
                         hint="add a 'config:' section to the bundle spec")
    try:
        section = check_config_section(config_section)
    except SectionProblem as exc:
        raise FormatError("E_CONFIG_INVALID", f"the bundle's {exc.where}: {exc.problem}",
                          hint="the bundle's config section is malformed; the vendor must "
                               "rebuild it") from None

    def doc(name: str) -> Any:
        if name not in files:
            raise FormatError("E_CONFIG_INVALID", f"{name}, named by the bundle's config "
                              f"section, is not in the bundle (or is larger than "
                              f"{MAX_CONFIG} bytes)", hint="the bundle is incomplete; the "
                              "vendor must rebuild it")
        return parse_config(files[name], name)

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


def wanted_files(section: Any) -> set[str]:
    """The payload files a config section names (config, schemas, migrations, samples);
    a malformed section is ``E_CONFIG_INVALID``.

    Raises:
        FormatError: E_CONFIG_INVALID.
    """
    if not section:
        return set()
    try:
        section = check_config_section(section)
    except SectionProblem as exc:
        raise FormatError("E_CONFIG_INVALID", f"the bundle's {exc.where}: {exc.problem}",
                          hint="the bundle's config section is malformed") from None
    names = {section["file"], section["schema"]}
    if section.get("migrations"):
        names.add(section["migrations"])
    for old in section.get("history", []):
        names.add(old["schema"])
        names.update(old.get("samples", []))
    return names




def config_version(config: Any, where: str) -> int:
    """The ``schema_version`` of a config document.

    Raises:
        FormatError: E_CONFIG_VERSION unless it is an integer >= 1.
    """
    version = config.get("schema_version") if isinstance(config, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FormatError("E_CONFIG_VERSION", f"{where} has no integer schema_version",
                          hint="every config file states its schema_version")
    return version


def validate_config(config: Any, schema: Any, where: str) -> None:
    """``config`` must match ``schema`` (a raw schema, or one compiled by
    ``compile_schema``): ``E_CONFIG_INVALID`` naming the first failing field.

    Raises:
        FormatError: E_CONFIG_INVALID; E_CONFIG_SCHEMA for a raw schema that does not
            compile.
    """
    from oemkit.schema import compile_schema, first_error

    hint = "fix the config so that it matches its version's schema"
    with _as_format():
        validator = (schema if hasattr(schema, "iter_errors") else
                     compile_schema(schema, f"the schema for {where}", "E_CONFIG_SCHEMA",
                                    _SCHEMA_HINT))
        first = first_error(validator, config, where, "E_CONFIG_INVALID", hint)
    if first is not None:
        at = "/".join(str(p) for p in first.instance_path) or "(top level)"
        message = str(first.message)
        if len(message) > 300:
            message = message[:297] + "..."
        raise FormatError("E_CONFIG_INVALID", f"{where}: {at}: {message}", hint=hint)


@dataclass
class Plan:
    """The migration of one config to a target version."""

    source: int
    target: int
    steps: list[Step]
    outcome: Outcome
    changes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON data: versions, steps, log, diff, kept-aside keys, result."""
        return {"from": self.source, "to": self.target,
                "steps": [s.describe() for s in self.steps], "log": self.outcome.log,
                "diff": self.changes, "kept_aside": sorted(self.outcome.kept),
                "config": self.outcome.config}


def plan(config: Any, configs: BundleConfigs, where: str, *, target: int | None = None,
         kept: dict[str, Any] | None = None) -> Plan:
    """Validate ``config`` against its own version, migrate it, validate the result.

    Raises:
        FormatError: E_CONFIG_VERSION (no integer schema_version), E_CONFIG_INVALID (the
            config fails its schema), E_CONFIG_SCHEMA.
        InputError: E_CONFIG_VERSION (a version the bundle has no schema for),
            E_MIGRATION_CHAIN, E_MIGRATION_GAP, E_MIGRATION_IRREVERSIBLE, E_MIGRATION_APPLY.
    """
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
