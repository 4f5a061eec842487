"""Declarative config migrations: operations, inverses, kept-aside values, plan/apply/test."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from helpers import REPO
from oemkit.cli import app
from oemkit.errors import EnvironmentProblem, InputError
from oemkit.host.migrate import apply_file, bundle_configs, migration_lock
from oemkit.models.config import plan, upgrade_path_test
from oemkit.models.migration import Step, apply_steps, chain, parse_migrations

runner = CliRunner()


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def v2_bundle(tmp_path_factory, keys):
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle

    path = build_bundle(REPO / "bundles" / "example", tmp_path_factory.mktemp("v2")).path
    sign_bundle(path, [keys["bundle"]])
    return path


CONFIG = {"schema_version": 1, "server": {"host": "h", "port": 80}, "timeout": 2,
          "legacy": True, "endpoint": "a:1", "flag": "yes"}


@pytest.mark.parametrize("step", [
    Step("set_default", {"path": "server.tls", "value": False}),
    Step("rename", {"from": "timeout", "to": "timeout_s"}),
    Step("move", {"from": "server.port", "to": "port"}),
    Step("delete", {"path": "legacy"}),
    Step("convert", {"path": "timeout", "type": "str", "from_type": "int"}),
    Step("scale", {"path": "timeout", "factor": 1000}),
    Step("split", {"path": "endpoint", "into": ["ep_host", "ep_port"], "separator": ":"}),
    Step("merge", {"paths": ["server.host", "flag"], "into": "hp", "separator": "/"}),
])
def test_every_operation_has_an_exact_inverse(step):
    forward = apply_steps(CONFIG, [step])
    assert forward.config != CONFIG
    back = apply_steps(forward.config, [step.inverse()], forward.kept)
    assert back.config == CONFIG


def test_convert_without_from_type_is_irreversible():
    migrations = parse_migrations({"migrations": [{"from": 1, "to": 2, "steps": [
        {"convert": {"path": "flag", "type": "bool"}}]}]}, "m.yaml")
    assert apply_steps(CONFIG, chain(migrations, 1, 2)).config["flag"] is True
    with pytest.raises(InputError) as err:
        chain(migrations, 2, 1)
    assert err.value.code == "E_MIGRATION_IRREVERSIBLE"
    assert "convert flag to bool" in err.value.message


def test_a_gap_in_the_chain_is_named():
    migrations = parse_migrations({"migrations": [{"from": 1, "to": 2, "steps": []},
                                                  {"from": 3, "to": 4, "steps": []}]}, "m")
    with pytest.raises(InputError) as err:
        chain(migrations, 1, 4)
    assert err.value.code == "E_MIGRATION_GAP" and "from config version 2 to 3" in (
        err.value.message)


@pytest.mark.parametrize("doc, words", [
    ({"migrations": [{"from": 1, "to": 2, "steps": [{"renam": {"from": "a", "to": "b"}}]}]},
     "unknown operation 'renam' (did you mean 'rename'?)"),
    ({"migrations": [{"from": 1, "to": 3, "steps": []}]}, "consecutive"),
    ({"migrations": [{"from": 1, "to": 2, "steps": [{"scale": {"path": "a", "factor": 0}}]}]},
     "non-zero"),
    ({"migrations": [{"from": 1, "to": 2, "steps": [{"delete": {"paths": "a"}}]}]},
     "delete takes path"),
    ({"steps": []}, "one key 'migrations'"),
])
def test_bad_migration_files_are_named(doc, words):
    with pytest.raises(InputError) as err:
        parse_migrations(doc, "migrations.yaml")
    assert err.value.code == "E_MIGRATION_INVALID" and words in err.value.message


def test_example_plan_and_kept_aside_values_survive_a_round_trip(v2_bundle):
    configs = bundle_configs(v2_bundle)
    assert not configs.verified and configs.version == 2 and set(configs.schemas) == {1, 2}
    v1 = {"labels": ["a", "b", "c"], "schema_version": 1, "threads": 1, "threshold": 0.3}
    up = plan(v1, configs, "cfg")
    assert up.outcome.config == {"labels": ["a", "b", "c"], "max_batch": 8,
                                 "schema_version": 2, "score_threshold": 0.3, "threads": 1}
    assert [s.describe() for s in up.steps] == ["rename threshold -> score_threshold",
                                                "set default max_batch = 8"]
    assert "+ max_batch = 8" in up.changes and "- threshold (was 0.3)" in up.changes
    tuned = dict(up.outcome.config, max_batch=32)
    down = plan(tuned, configs, "cfg", target=1)
    assert down.outcome.config == v1 and down.outcome.kept == {"max_batch": 32}
    again = plan(down.outcome.config, configs, "cfg", kept=down.outcome.kept)
    assert again.outcome.config == tuned


def test_future_or_invalid_configs_are_refused(v2_bundle):
    configs = bundle_configs(v2_bundle)
    with pytest.raises(InputError) as err:
        plan({"schema_version": 7}, configs, "cfg.json")
    assert err.value.code == "E_CONFIG_VERSION"
    assert "config version 7; this bundle knows versions 1, 2" in err.value.message
    with pytest.raises(InputError) as err:
        plan({"schema_version": 1, "threshold": "high", "labels": ["a", "b", "c"],
              "threads": 1}, configs, "cfg.json")
    assert err.value.code == "E_CONFIG_INVALID" and "cfg.json (version 1): threshold" in (
        err.value.message)
    with pytest.raises(InputError) as err:
        plan({"threshold": 0.5}, configs, "cfg.json")
    assert err.value.code == "E_CONFIG_VERSION"


def test_apply_backs_up_writes_atomically_and_keeps_aside(v2_bundle, tmp_path):
    configs = bundle_configs(v2_bundle)
    path = tmp_path / "config.json"
    original = json.dumps({"labels": ["a", "b", "c"], "schema_version": 1, "threads": 1,
                           "threshold": 0.3})
    path.write_text(original)
    result = apply_file(path, configs)
    assert result.target == 2 and json.loads(path.read_text())["score_threshold"] == 0.3
    assert (tmp_path / "config.json.v1.bak").read_text() == original
    apply_file(path, configs, target=1)
    assert json.loads(path.read_text()) == json.loads(original)
    assert json.loads((tmp_path / "config.json.kept.json").read_text()) == {"max_batch": 8}


def test_apply_refuses_while_another_migration_runs(v2_bundle, tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"schema_version": 2}')
    with migration_lock(path), pytest.raises(EnvironmentProblem) as err:
        apply_file(path, bundle_configs(v2_bundle))
    assert err.value.code == "E_LOCKED" and err.value.exit_code == 4


def test_invalid_config_is_refused_before_anything_is_written(v2_bundle, tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"schema_version": 1, "threshold": 5, "labels": [], "threads": 1}')
    before = path.read_bytes()
    result = cli("migrate", "apply", "--config", path, "--to", v2_bundle)
    assert result.exit_code == 3 and "E_CONFIG_INVALID" in result.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "config.json.lock"]


def test_plan_is_a_dry_run_and_apply_writes(v2_bundle, tmp_path, trust_file):
    path = tmp_path / "config.json"
    path.write_text('{"schema_version": 1, "threshold": 0.5, "labels": ["a","b","c"], '
                    '"threads": 1}')
    before = path.read_bytes()
    planned = cli("migrate", "plan", "--config", path, "--to", v2_bundle, "--json")
    assert planned.exit_code == 0 and "UNVERIFIED" in planned.stderr
    assert json.loads(planned.stdout)["dry_run"] is True and path.read_bytes() == before
    applied = cli("migrate", "apply", "--config", path, "--to", v2_bundle, "--trust",
                  trust_file)
    assert applied.exit_code == 0 and "UNVERIFIED" not in applied.stderr
    assert json.loads(path.read_text())["schema_version"] == 2


def test_upgrade_path_test_with_junit(v2_bundle, tmp_path):
    checks = upgrade_path_test(bundle_configs(v2_bundle))
    assert [(c.name, c.status) for c in checks] == [
        ("config/samples/v1.json (v1 -> v2)", "pass"),
        ("config/samples/v1.json (v2 -> v1 round trip)", "pass")]
    result = cli("migrate", "test", v2_bundle, "--junit", tmp_path / "m.xml", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True
    assert ET.parse(tmp_path / "m.xml").getroot().get("tests") == "2"


def test_scale_round_trips_without_binary_noise_and_apply_keeps_the_file_mode(v2_bundle,
                                                                             tmp_path):
    step = Step("scale", {"path": "t", "factor": 0.1})
    up = apply_steps({"t": 8}, [step])
    assert up.config == {"t": 0.8}
    assert apply_steps(up.config, [step.inverse()]).config == {"t": 8}
    path = tmp_path / "config.json"
    path.write_text('{"schema_version": 1, "threshold": 0.5, "labels": ["a","b","c"], '
                    '"threads": 1}')
    path.chmod(0o600)
    apply_file(path, bundle_configs(v2_bundle))
    assert path.stat().st_mode & 0o777 == 0o600
