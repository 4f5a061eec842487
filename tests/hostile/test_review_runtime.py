"""Issue 13, area ``runtime``: what a signed manifest's runtime section may name, and config
sections and migrations that must end in coded errors (never a crash, never a host file).

Class 6: verify enforces everything build enforces about the runtime section (paths
inside the payload and listed in it, exact types, profile names never host paths, canonical
JSON). Class 8 (config part): malformed config sections, migrations and schemas are coded
errors; migration chains and nesting are bounded. Class 3 (migrate part): ``migrate
plan/test`` without ``--trust`` read the payload with the verifier's bounded reader.
Low: Windows look-alike names are refused at build and at verify.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostile.make_corpus import CORPUS, FILES, TRUST, Forge, load_keys
from oemkit.errors import FormatError, InputError, OemkitError, VerificationError
from oemkit.models.manifest import (
    Manifest,
    check_config_section,
    collision_key,
    path_problem,
)
from oemkit.verify.bundle import verify_open_bundle
from oemkit.verify.trust import parse_root

KEYS = load_keys()
ROOT = parse_root((CORPUS / TRUST).read_bytes()).root


def _manifest_bytes(edit: Callable[[dict[str, Any]], None]) -> bytes:
    return dict(Forge(KEYS).parts(manifest_edit=edit))["oemkit-bundle.json"]


def _verify(data: bytes) -> Any:
    return verify_open_bundle(io.BytesIO(data), ROOT)


def _runtime(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["runtime"].update(fields)
    return edit


def _rejected(data: bytes, code: str, *words: str, field: str | None = None) -> None:
    report = _verify(data)
    assert not report.ok
    assert report.error is not None
    assert report.error.code == code, report.error.to_dict()
    for word in words:
        assert word in report.error.message, report.error.message
    if field is not None:
        assert report.error.field == field, report.error.to_dict()


def test_the_control_bundle_verifies() -> None:
    assert _verify(Forge(KEYS).bundle()).ok


# --------------------------------------------------------------------------- class 6

CONFIG = {"file": "a.txt", "schema": "a.txt", "version": 2}


@pytest.mark.parametrize(("edit", "field", "words"), [
    ({"entrypoint": "/bin/sh"}, "runtime.entrypoint", ("'/bin/sh'", "absolute path")),
    ({"entrypoint": "../../usr/bin/python3"}, "runtime.entrypoint", ("'..'",)),
    ({"entrypoint": "bin/other"}, "runtime.entrypoint", ("not a file of this bundle",)),
    ({"entrypoint": 7}, "runtime.entrypoint", ("not an integer",)),
    ({"model": "/etc/passwd"}, "runtime.model", ("absolute path",)),
    ({"model": None}, "runtime.model", ("not null",)),
    ({"profiles": ["/etc/oemkit/evil.yaml"]}, "runtime.profiles[0]", ("not a profile name",)),
    ({"profiles": ["evil.yaml"]}, "runtime.profiles[0]", ("no .yaml suffix",)),
    ({"profiles": ["cpu-small", 3]}, "runtime.profiles[1]", ("not an integer",)),
    ({"profiles": "cpu-small"}, "runtime.profiles", ("not a string",)),
    ({"golden": {"inputs": "a.txt", "outputs": "a.txt", "atol": "text"}},
     "runtime.golden.atol", ("finite number",)),
    ({"golden": {"inputs": "a.txt", "outputs": "a.txt", "rtol": True}},
     "runtime.golden.rtol", ("finite number",)),
    ({"golden": {"inputs": "a.txt", "outputs": "a.txt", "atol": -1}},
     "runtime.golden.atol", (">= 0",)),
    ({"golden": {"inputs": "/dev/zero", "outputs": "a.txt"}}, "runtime.golden.inputs",
     ("absolute path",)),
    ({"golden": {"inputs": "a.txt"}}, "runtime.golden", ("'outputs' is missing",)),
    ({"golden": {"inputs": "a.txt", "outputs": "a.txt", "cmd": "sh"}}, "runtime.golden",
     ("unknown field 'cmd'",)),
    ({"config": {"file": "a.txt", "schema": "a.txt"}}, "runtime.config",
     ("'version' is missing",)),
    ({"config": {**CONFIG, "version": "2"}}, "runtime.config.version", ("integer",)),
    ({"config": {**CONFIG, "file": "../etc/app.json"}}, "runtime.config.file", ("'..'",)),
    ({"config": {**CONFIG, "schema": "missing.json"}}, "runtime.config.schema",
     ("not a file of this bundle",)),
    ({"config": {**CONFIG, "migrations": ["a.txt"]}}, "runtime.config.migrations",
     ("not a list",)),
    ({"config": {**CONFIG, "history": {"version": 1}}}, "runtime.config.history",
     ("not an object",)),
    ({"config": {**CONFIG, "history": [{"version": 1}]}}, "runtime.config.history[0]",
     ("'schema' is missing",)),
    ({"config": {**CONFIG, "history": [{"version": 2, "schema": "a.txt"}]}},
     "runtime.config.history[0].version", ("described twice", "current version")),
    ({"config": {**CONFIG, "history": [{"version": 1, "schema": "a.txt",
                                        "samples": ["/etc/shadow"]}]}},
     "runtime.config.history[0].samples[0]", ("absolute path",)),
    ({"config": ["a.txt"]}, "runtime.config", ("not a list",)),
    ({"migrations": [{"from": 1}]}, "runtime.migrations", ("reserved",)),
])
def test_a_signed_runtime_section_is_checked_exactly(edit: dict[str, Any], field: str,
                                                     words: tuple[str, ...]) -> None:
    data = Forge(KEYS).bundle(manifest_edit=_runtime(**edit))
    _rejected(data, "E_MANIFEST_INVALID", field, *words, field=field)


def test_a_runtime_section_with_a_field_missing_or_added_is_refused() -> None:
    def drop(doc: dict[str, Any]) -> None:
        del doc["runtime"]["golden"]

    _rejected(Forge(KEYS).bundle(manifest_edit=drop), "E_MANIFEST_INVALID",
              "'golden' is missing", field="runtime")
    _rejected(Forge(KEYS).bundle(manifest_edit=_runtime(hook="rm -rf /")),
              "E_MANIFEST_INVALID", "unknown field 'hook'", field="runtime")


def test_a_complete_runtime_section_naming_payload_files_verifies() -> None:
    section = {"entrypoint": "bin/run", "profiles": ["cpu-small", "my-board"],
               "golden": {"inputs": "a.txt", "outputs": "a.txt", "atol": 0, "rtol": 1e-4},
               "config": {**CONFIG, "migrations": "a.txt",
                          "history": [{"version": 1, "schema": "a.txt",
                                       "samples": ["a.txt"]}]}}
    report = _verify(Forge(KEYS).bundle(manifest_edit=_runtime(**section)))
    assert report.ok, report.to_dict()
    assert report.manifest.runtime.entrypoint == "bin/run"


def _members(data: bytes) -> list[tuple[str, bytes]]:
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]


def _respelled(old: bytes, new: bytes) -> bytes:
    """The forged bundle with a manifest whose canonical ``old`` is written ``new``."""
    manifest = _manifest_bytes(_runtime(config=CONFIG))
    assert manifest.count(old) >= 1
    return Forge(KEYS).bundle(manifest_bytes=manifest.replace(old, new))


@pytest.mark.parametrize(("old", "new", "words"), [
    (b'"mode":420', b'"mode":420.0', "mode must be the integer 420"),
    (b'"mode":420', b'"mode":true', "mode must be the integer 420"),
    (b'"mode":420', b'"mode":"420"', "mode must be the integer 420"),
    (b'"version":2', b'"version":2.0', "runtime.config.version: must be an integer"),
])
def test_a_number_that_is_not_an_integer_is_refused(old: bytes, new: bytes,
                                                      words: str) -> None:
    data = _respelled(old, new)
    _rejected(data, "E_MANIFEST_INVALID")  # not canonical, and not format v1 either
    from oemkit._canonical import parse_json

    manifest = next(d for n, d in _members(data) if n == "oemkit-bundle.json")
    with pytest.raises(FormatError) as err:  # what install reads from a slot
        Manifest.from_dict(parse_json(manifest, what="manifest"))
    assert err.value.code == "E_MANIFEST_INVALID" and words in err.value.message


def test_a_member_size_written_as_true_is_refused() -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["members"]["sbom.cdx.json"]["size"] = True

    _rejected(Forge(KEYS).bundle(manifest_edit=edit), "E_MANIFEST_INVALID", "malformed")


# --------------------------------------------------------------------------- Windows names


@pytest.mark.parametrize(("path", "words"), [
    ("run.bat.", "ends with a dot or a space"),
    ("bin/run.bat ", "ends with a dot or a space"),
    ("CON", "reserved device name"),
    ("logs/nul.txt", "reserved device name"),
    ("Com1.log", "reserved device name"),
    ("LPT\u00b9", "reserved device name"),
    ("a.txt:secret", "not allowed in a Windows file name"),
    ("what?.txt", "not allowed in a Windows file name"),
    ('say"hi"', "not allowed in a Windows file name"),
])
def test_windows_look_alike_names_are_unsafe(path: str, words: str) -> None:
    problem = path_problem(path)
    assert problem is not None and words in problem


@pytest.mark.parametrize("path", ["console.txt", "lpt10", "con-fig/x", ".hidden", "a..b"])
def test_names_that_merely_resemble_windows_devices_are_fine(path: str) -> None:
    assert path_problem(path) is None


def test_trailing_dots_and_spaces_fold_into_one_collision_key() -> None:
    assert collision_key("Run.Bat.") == collision_key("run.bat ") == collision_key("run.bat")


def test_a_windows_look_alike_in_the_manifest_is_refused_at_verify() -> None:
    files = [*FILES, ("bin/run.", b"#!/bin/sh\necho evil\n", 0o755)]
    files.sort(key=lambda f: f[0].encode())
    _rejected(Forge(KEYS).bundle(files=files), "E_MANIFEST_INVALID", "ends with a dot")


def test_a_windows_look_alike_is_refused_at_build(tmp_path: Path) -> None:
    from oemkit.release.spec import load_spec

    (tmp_path / "model.onnx").write_bytes(b"model")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "run.bat").write_text("echo a\n")
    (tmp_path / "extra" / "run.bat.").write_text("echo b\n")
    (tmp_path / "bundle.yaml").write_text("apiVersion: oemkit/v1\nname: w\nversion: '1'\n"
                                          "model: model.onnx\nfiles: [extra]\n")
    with pytest.raises(InputError) as err:
        load_spec(tmp_path / "bundle.yaml")
    assert err.value.code == "E_SPEC_PATH" and "ends with a dot" in err.value.message


# --------------------------------------------------------------------------- config section


def test_check_config_section_names_the_field() -> None:
    from oemkit.models.manifest import SectionProblem

    with pytest.raises(SectionProblem) as err:
        check_config_section({**CONFIG, "history": [{"version": True, "schema": "a"}]})
    assert err.value.where == "config.history[0].version"
    assert isinstance(err.value, Exception) and not isinstance(err.value, OemkitError)


# --------------------------------------------------------------------------- migrations

from oemkit.models.migration import (  # noqa: E402
    MAX_MIGRATIONS,
    Step,
    apply_steps,
    chain,
    parse_migrations,
)


def _migrations(*steps: Any) -> dict[str, Any]:
    return {"migrations": [{"from": 1, "to": 2, "steps": list(steps)}]}


@pytest.mark.parametrize(("doc", "words"), [
    ({"migrations": [{"from": 1, "to": 2, "steps": 5}]}, "steps must be a list"),
    ({"migrations": [{"from": True, "to": 2, "steps": []}]}, "consecutive integers"),
    ({"migrations": [{"from": 0, "to": 1, "steps": []}]}, "consecutive integers >= 1"),
    (_migrations({"convert": {"path": "a", "type": ["int"]}}), "convert type must be"),
    (_migrations({"convert": {"path": "a", "type": "int", "from_type": {}}}),
     "convert from_type must be"),
    (_migrations({"split": {"path": "a", "into": ["h", "p"], "separator": ""}}),
     "separator must be non-empty"),
    (_migrations({"split": {"path": "a", "into": "hp", "separator": ":"}}),
     "into must be a list"),
    (_migrations({"merge": {"paths": ["a", 7], "into": "b", "separator": ":"}}),
     "paths[1] must be a dotted field path"),
    (_migrations({"scale": {"path": "a", "factor": float("inf")}}), "finite non-zero"),
    (_migrations({"scale": {"path": "a", "factor": True}}), "finite non-zero"),
    (_migrations({"scale": {"path": "a", "factor": 1e-320}}), "finite non-zero"),
    (_migrations({"rename": {"from": "a", "to": ["b"]}}), "to must be a dotted field path"),
    (_migrations({"delete": {"path": "a..b"}}), "empty component"),
    (_migrations({"set_default": {"path": ".".join(["a"] * 5000), "value": 1}}),
     "5000 levels"),
    ({"migrations": [{"from": v, "to": v + 1, "steps": []}
                     for v in range(1, MAX_MIGRATIONS + 2)]}, "at most 1000"),
    ({"migrations": [{"from": 1, "to": 2, "steps": [{"delete": {"path": "a"}}] * 10_001}]},
     "more than 10000 steps"),
])
def test_a_malformed_migration_is_a_coded_error(doc: Any, words: str) -> None:
    with pytest.raises(InputError) as err:
        parse_migrations(doc, "migrations.yaml")
    assert err.value.code == "E_MIGRATION_INVALID"
    assert words in err.value.message, err.value.message


def test_a_chain_longer_than_the_bound_is_refused() -> None:
    migrations = parse_migrations({"migrations": [
        {"from": v, "to": v + 1, "steps": []} for v in range(1, 1001)]}, "m")
    assert chain(migrations, 1, 1001) == []
    with pytest.raises(InputError) as err:
        chain(migrations, 1, 1002)
    assert err.value.code == "E_MIGRATION_CHAIN" and "1001 hops" in err.value.message


def test_moves_that_nest_a_config_too_deeply_are_refused() -> None:
    path = ".".join(["a"] * 32)
    steps = [Step("move", {"from": "x", "to": f"{path}.x"})] + [
        Step("move", {"from": "a", "to": f"{path}.a"})] * 3
    with pytest.raises(InputError) as err:
        apply_steps({"x": 1}, steps)
    assert err.value.code == "E_MIGRATION_APPLY" and "deeper than 64" in err.value.message
    assert apply_steps({"x": 1}, steps[:1]).config["a"]["a"]  # one move is fine


@pytest.mark.parametrize(("config", "step", "words"), [
    ({"n": 1e308}, Step("scale", {"path": "n", "factor": 10}), "out of range"),
    ({"n": 10**400}, Step("scale", {"path": "n", "factor": 1.5}), "out of range"),
    ({"n": "1e400"}, Step("convert", {"path": "n", "type": "float"}), "cannot convert"),
    ({"n": float("inf")}, Step("convert", {"path": "n", "type": "int"}), "cannot convert"),
    ({"n": {"a": 1}}, Step("convert", {"path": "n", "type": "int"}), "cannot convert"),
])
def test_values_a_step_cannot_handle_are_coded_errors(config: Any, step: Step,
                                                       words: str) -> None:
    with pytest.raises(InputError) as err:
        apply_steps(config, [step])
    assert err.value.code == "E_MIGRATION_APPLY" and words in err.value.message


# --------------------------------------------------------------------------- schemas


def test_a_schema_ref_is_never_fetched_nor_read_from_the_host(tmp_path: Path) -> None:
    from oemkit.schema import compile_schema

    host = tmp_path / "host.schema.json"
    host.write_text('{"type": "string"}')
    for ref in (host.as_uri(), "http://198.51.100.7/s.json", "https://example.invalid/s"):
        with pytest.raises(InputError) as err:
            compile_schema({"$ref": ref}, "config schema", "E_CONFIG_SCHEMA", "hint")
        assert err.value.code == "E_CONFIG_SCHEMA" and "not a usable JSON Schema" in (
            err.value.message)
    local = compile_schema({"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s"},
                           "config schema", "E_CONFIG_SCHEMA", "hint")
    assert local.is_valid("x") and not local.is_valid(1)


@pytest.mark.parametrize(("schema", "words"), [
    ([1], "not a JSON Schema"),
    ("string", "not a JSON Schema"),
    ({"type": 5}, "not a usable JSON Schema"),
    ({"pattern": "("}, "not a usable JSON Schema"),
])
def test_a_schema_that_is_not_one_is_a_coded_error(schema: Any, words: str) -> None:
    from oemkit.schema import compile_schema

    with pytest.raises(InputError) as err:
        compile_schema(schema, "config schema", "E_CONFIG_SCHEMA", "hint")
    assert err.value.code == "E_CONFIG_SCHEMA" and words in err.value.message


def _deep(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    node = doc
    for _ in range(levels):
        node["a"] = {}
        node = node["a"]
    return doc


def test_nesting_beyond_the_bound_never_reaches_the_schema_library() -> None:
    from oemkit.schema import MAX_SCHEMA_DEPTH, compile_schema, first_error, too_deep

    assert not too_deep(_deep(MAX_SCHEMA_DEPTH)) and too_deep(_deep(MAX_SCHEMA_DEPTH + 1))
    schema: Any = {"type": "object"}
    for _ in range(200):  # jsonschema-rs: "Recursion limit reached" (ValueError)
        schema = {"properties": {"a": schema}}
    with pytest.raises(InputError) as err:
        compile_schema(schema, "config schema", "E_CONFIG_SCHEMA", "hint")
    assert "nested deeper than 64" in err.value.message
    validator = compile_schema({"properties": {"a": {"type": "string"}}}, "s", "E_X", "h")
    with pytest.raises(InputError) as err:
        first_error(validator, _deep(5000), "config", "E_CONFIG_INVALID", "hint")
    assert err.value.code == "E_CONFIG_INVALID" and "nested deeper" in err.value.message
    with pytest.raises(InputError) as err:
        first_error(validator, {1: 2}, "config", "E_CONFIG_INVALID", "hint")
    assert err.value.code == "E_CONFIG_INVALID" and "cannot be validated" in err.value.message


# --------------------------------------------------------------------------- config loading

from hostile.review_runtime import (  # noqa: E402
    HOST_CONFIG,
    SECTION,
    config_bundle,
    config_files,
)
from oemkit.host.migrate import apply_file, bundle_configs  # noqa: E402
from oemkit.models.config import load_configs, plan  # noqa: E402


def _files() -> dict[str, bytes]:
    return {p: d for p, d, _ in config_files()}


@pytest.mark.parametrize(("section", "words"), [
    ({"file": "config/config.json", "schema": "config/schema.json"},
     "runtime.config: required field 'version'"),
    ({**SECTION, "version": "2"}, "config.version: must be an integer"),
    ({**SECTION, "history": [{"version": 1, "schema": 5}]},
     "config.history[0].schema: must be a payload path"),
])
def test_load_configs_names_the_malformed_field(section: Any, words: str) -> None:
    with pytest.raises(InputError) as err:
        load_configs(_files(), section, verified=True)
    assert err.value.code == "E_CONFIG_INVALID"
    assert words.split(": ", 1)[1] in err.value.message and "config" in err.value.message


def test_load_configs_names_a_file_the_bundle_lacks() -> None:
    files = _files()
    del files["config/v1.json"]  # absent, or left out for being over 4 MiB
    with pytest.raises(InputError) as err:
        load_configs(files, SECTION, verified=True)
    assert err.value.code == "E_CONFIG_INVALID"
    assert "config/v1.json, named by the bundle's config section, is not in the bundle" in (
        err.value.message)


def _write(tmp_path: Path, data: bytes, name: str = "b.oemb") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_unverified_configs_come_through_the_verifiers_reader(tmp_path: Path) -> None:
    configs = bundle_configs(_write(tmp_path, config_bundle(Forge(KEYS))))
    assert not configs.verified and configs.version == 2 and sorted(configs.schemas) == [1, 2]
    result = plan(json.loads(HOST_CONFIG), configs, "config.json")
    assert result.outcome.config == {"schema_version": 2, "port": 80}
    verified = bundle_configs(_write(tmp_path, config_bundle(Forge(KEYS)), "v.oemb"),
                              CORPUS / TRUST)
    assert verified.verified and verified.schemas == configs.schemas


def test_unverified_reading_checks_digests_and_stops_after_the_last_config_file(
        tmp_path: Path) -> None:
    from helpers import entry, regular, tar_bytes
    from hostile.make_corpus import zstd

    files = config_files()
    entries = [entry(p, d, m) for p, d, m in files]
    # model/model.onnx (after every config/ file) differs from its manifest digest
    inner = tar_bytes([regular(p, d if p != "model/model.onnx" else b"ONNX MODEL BYTES\n", m)
                       for p, d, m in files])
    data = config_bundle(Forge(KEYS), entries=entries, payload=zstd(inner))
    assert bundle_configs(_write(tmp_path, data)).version == 2  # never read that far
    assert _verify(data).error.code == "E_PAYLOAD_DIGEST"  # verify reads it all
    # a config file that differs from its digest is never used
    inner = tar_bytes([regular(p, d if p != "config/v1.json" else b"{}", m)
                       for p, d, m in files])
    data = config_bundle(Forge(KEYS), entries=entries, payload=zstd(inner))
    with pytest.raises(VerificationError) as err:
        bundle_configs(_write(tmp_path, data, "c.oemb"))
    assert err.value.code in ("E_PAYLOAD_SIZE", "E_PAYLOAD_DIGEST")


def test_a_damaged_kept_aside_sidecar_is_a_coded_error_and_nothing_is_written(
        tmp_path: Path) -> None:
    configs = bundle_configs(_write(tmp_path, config_bundle(Forge(KEYS))))
    config = tmp_path / "config.json"
    config.write_text(HOST_CONFIG)
    for damage in ("[1, 2]", "{not json", "{\"a\": 1e400}"):
        (tmp_path / "config.json.kept.json").write_text(damage)
        with pytest.raises(InputError) as err:
            apply_file(config, configs)
        assert err.value.code == "E_CONFIG_INVALID", damage
        assert config.read_text() == HOST_CONFIG
        assert not (tmp_path / "config.json.v1.bak").exists()


def test_migrate_commands_take_the_reader_limit_flags(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from oemkit.cli import app

    bundle = _write(tmp_path, config_bundle(Forge(KEYS)))
    (tmp_path / "config.json").write_text(HOST_CONFIG)
    runner = CliRunner()
    for argv in (["migrate", "test", str(bundle)],
                 ["migrate", "plan", "--config", str(tmp_path / "config.json"), "--to",
                  str(bundle)],
                 ["migrate", "test", str(bundle), "--trust", str(CORPUS / TRUST)]):
        ok = runner.invoke(app, [*argv, "--json"])
        assert ok.exit_code == 0, ok.output
        limited = runner.invoke(app, [*argv, "--json", "--max-files", "2"])
        assert limited.exit_code == 1, limited.output
        assert json.loads(limited.stdout)["error"]["code"] == "E_LIMIT_FILES"
