"""Install, upgrade, rollback on a real temporary prefix, including kills mid-upgrade."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import REPO
from oemkit.cli import app
from oemkit.errors import EnvironmentProblem, InputError
from oemkit.host.install import install, prefix_lock, rollback, status

# 'oemkit install/upgrade' check that the new release becomes ready (oemkit serve on a
# loopback port) by default where the serve extra is installed.
pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]
runner = CliRunner()
PROFILE = """\
name: test
accelerator: none
providers: [{name: CPUExecutionProvider}]
budgets: {cold_start_ms: 60000, p95_ms: 1000}
steady_state: {iterations: 5, warmup: 1}
"""


def cli(*args, env=None):
    result = runner.invoke(app, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, keys):
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle

    out = tmp_path_factory.mktemp("bundles")
    made = {}
    for name in ("example-v1", "example"):
        path = build_bundle(REPO / "bundles" / name, out).path
        sign_bundle(path, [keys["bundle"]])
        made[name] = path
    return made["example-v1"], made["example"]


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE)
    return str(path)


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("OEMKIT_STATE", str(tmp_path / "license-state.json"))


def _live_config(prefix: Path) -> dict:
    return json.loads((prefix / "current" / "config.json").read_text())


def test_install_upgrade_status_rollback(bundles, trust_file, tmp_path, profile):
    v1, v2 = bundles
    prefix = tmp_path / "opt"
    report = install(v1, prefix, trust_file, profile=profile)
    assert report.ok and report.switched, report.to_dict()
    assert _live_config(prefix)["schema_version"] == 1
    first = status(prefix)
    assert first["consistent"] and first["current"].startswith("example-0.1.0-")
    assert [s["version"] for s in first["slots"]] == ["0.1.0"]
    assert first["slots"][0]["oemkit_version"] and first["slots"][0]["installed_at"]

    up = cli("upgrade", v2, "--prefix", prefix, "--trust", trust_file, "--profile", profile,
             "--json")
    assert up.exit_code == 0, up.output
    doc = json.loads(up.stdout)
    assert any(c["name"] == "config" and "migrated v1 -> v2" in c["detail"]
               for c in doc["checks"])
    assert _live_config(prefix) == {"labels": ["a", "b", "c"], "max_batch": 8,
                                    "schema_version": 2, "score_threshold": 0.5, "threads": 1}
    second = json.loads(cli("status", "--prefix", prefix, "--json").stdout)
    assert second["current"].startswith("example-0.2.0-")
    assert second["previous"].startswith("example-0.1.0-")
    assert {s["manifest_sha256"][:12] for s in second["slots"]} == {
        second["current"][-12:], second["previous"][-12:]}

    back = rollback(prefix)
    assert back.ok and _live_config(prefix)["schema_version"] == 1  # as it was before
    assert status(prefix)["current"].startswith("example-0.1.0-")


def test_install_twice_and_upgrade_without_install_are_refused(bundles, trust_file, tmp_path,
                                                              profile):
    v1, v2 = bundles
    with pytest.raises(InputError) as err:
        install(v2, tmp_path / "p", trust_file, upgrade=True, profile=profile)
    assert err.value.code == "E_NOT_INSTALLED"
    install(v1, tmp_path / "p", trust_file, profile=profile)
    with pytest.raises(InputError) as err:
        install(v2, tmp_path / "p", trust_file, profile=profile)
    assert err.value.code == "E_ALREADY_INSTALLED" and "oemkit upgrade" in err.value.hint


def test_downgrade_needs_allow_downgrade_and_restores_kept_values(bundles, trust_file,
                                                                  tmp_path, profile):
    v1, v2 = bundles
    prefix = tmp_path / "p"
    install(v2, prefix, trust_file, profile=profile)
    live = prefix / "current" / "config.json"
    tuned = dict(json.loads(live.read_text()), max_batch=32)
    live.write_text(json.dumps(tuned))
    refused = cli("upgrade", v1, "--prefix", prefix, "--trust", trust_file, "--profile",
                  profile, "--json")
    assert refused.exit_code == 1
    check = next(c for c in json.loads(refused.stdout)["checks"] if c["status"] == "fail")
    assert check["code"] == "E_DOWNGRADE" and "0.1.0 is older than the installed 0.2.0" in (
        check["detail"])
    assert status(prefix)["current"].startswith("example-0.2.0-")
    down = install(v1, prefix, trust_file, upgrade=True, allow_downgrade=True,
                   profile=profile)
    assert down.ok, down.to_dict()
    assert _live_config(prefix)["schema_version"] == 1 and "max_batch" not in _live_config(
        prefix)
    again = install(v2, prefix, trust_file, upgrade=True, profile=profile)
    assert again.ok and _live_config(prefix) == tuned  # the kept-aside value came back


def test_failed_smoke_keeps_current_on_the_old_slot(bundles, trust_file, tmp_path, profile):
    v1, v2 = bundles
    prefix = tmp_path / "p"
    install(v1, prefix, trust_file, profile=profile)
    strict = tmp_path / "strict.yaml"
    strict.write_text(PROFILE.replace("cold_start_ms: 60000", "cold_start_ms: 1"))
    report = install(v2, prefix, trust_file, upgrade=True, profile=str(strict))
    assert not report.ok and report.exit_code == 1 and not report.switched
    failed = next(c for c in report.checks if c.status == "fail")
    assert failed.name == "smoke" and "cold start" in failed.detail
    assert status(prefix)["current"].startswith("example-0.1.0-")
    assert [p.name.startswith("example-0.1.0") for p in (prefix / "slots").iterdir()] == [True]


def test_tampered_bundle_is_not_installed(bundles, trust_file, tmp_path, profile):
    v1, v2 = bundles
    prefix = tmp_path / "p"
    install(v1, prefix, trust_file, profile=profile)
    bad = tmp_path / "bad.oemb"
    data = bytearray(v2.read_bytes())
    data[len(data) // 2] ^= 0x55
    bad.write_bytes(bytes(data))
    report = install(bad, prefix, trust_file, upgrade=True, profile=profile)
    assert not report.ok and report.checks[-1].name == "verify"
    assert len(list((prefix / "slots").iterdir())) == 1


def test_disk_full_during_unpack_leaves_the_old_slot(bundles, trust_file, tmp_path, profile,
                                                     monkeypatch):
    v1, v2 = bundles
    prefix = tmp_path / "p"
    install(v1, prefix, trust_file, profile=profile)
    before = status(prefix)
    import oemkit.host.unpack as unpack

    real_open = unpack.os.fdopen

    def full_disk(fd, *args, **kwargs):
        handle = real_open(fd, *args, **kwargs)

        class Full:
            def write(self, data):
                raise OSError(28, "No space left on device")

            def close(self):
                handle.close()

        return Full()

    monkeypatch.setattr(unpack.os, "fdopen", full_disk)
    report = install(v2, prefix, trust_file, upgrade=True, profile=profile)
    assert report.exit_code == 4
    assert report.checks[-1].code == "E_WRITE" and "No space left" in report.checks[-1].detail
    assert status(prefix) == before
    assert sorted(p.name for p in (prefix / "slots").iterdir()) == [before["current"]]


def test_unknown_future_config_is_refused_before_anything_is_written(bundles, trust_file,
                                                                     tmp_path, profile):
    v1, _ = bundles
    config = tmp_path / "future.json"
    config.write_text('{"schema_version": 9}')
    report = install(v1, tmp_path / "p", trust_file, config=config, profile=profile)
    assert not report.ok and report.checks[-1].code == "E_CONFIG_VERSION"
    assert status(tmp_path / "p")["current"] is None
    assert list((tmp_path / "p" / "slots").iterdir()) == []


def test_concurrent_operation_is_refused(bundles, trust_file, tmp_path, profile):
    v1, _ = bundles
    with prefix_lock(tmp_path / "p"), pytest.raises(EnvironmentProblem) as err:
        install(v1, tmp_path / "p", trust_file, profile=profile)
    assert err.value.code == "E_LOCKED"


KILLER = """
import os, signal, sys
import oemkit.host.install as inst
point = sys.argv[5]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
if point == "unpack":
    import oemkit.host.unpack as u
    real = u.verify_open_bundle
    def dying(*a, **kw):
        sink = kw["sink"]
        def s(entry):
            f = sink(entry); f.write(b"partial"); f.flush(); die()
        kw["sink"] = s
        return real(*a, **kw)
    u.verify_open_bundle = dying
elif point == "before-switch":
    real_point = inst._point
    inst._point = lambda *a: die()
elif point == "between-links":
    real_point = inst._point
    def half(prefix, name, slot):
        if name == "current":
            die()
        real_point(prefix, name, slot)
    inst._point = half
inst.install(sys.argv[1], sys.argv[2], sys.argv[3], upgrade=True, profile=sys.argv[4])
"""


@pytest.mark.parametrize("point", ["unpack", "before-switch", "between-links"])
def test_killed_mid_upgrade_leaves_a_consistent_host_and_rerun_finishes(
        bundles, trust_file, tmp_path, profile, point):
    v1, v2 = bundles
    prefix = tmp_path / "p"
    install(v1, prefix, trust_file, profile=profile)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(v2), str(prefix), str(trust_file),
                           profile, point], capture_output=True, text=True,
                          env={**os.environ})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    after = status(prefix)
    assert after["consistent"]
    assert after["current"].startswith("example-0.1.0-")  # never a half-written slot
    assert json.loads((prefix / "current" / "config.json").read_text())["schema_version"] == 1
    rerun = install(v2, prefix, trust_file, upgrade=True, profile=profile)
    assert rerun.ok, rerun.to_dict()
    final = status(prefix)
    assert final["current"].startswith("example-0.2.0-") and final["consistent"]
    assert not any(s.get("incomplete") for s in final["slots"])
    assert not [p for p in prefix.iterdir() if p.name.endswith(".tmp")]


def _wheel(path: Path, name: str) -> None:
    dist = f"{name}-1.0.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    record = "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for n, text in files.items():
            zf.writestr(n, text)
        zf.writestr(f"{dist}/RECORD", record)


def test_wheelhouse_is_installed_offline_into_the_slot_venv(tmp_path, keys, trust_file,
                                                            profile):
    import shutil

    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle

    spec = tmp_path / "spec"
    shutil.copytree(REPO / "bundles" / "example-v1", spec)
    (spec / "wheels").mkdir()
    _wheel(spec / "wheels" / "oemkit_probe-1.0-py3-none-any.whl", "oemkit_probe")
    (spec / "bundle.yaml").write_text((spec / "bundle.yaml").read_text()
                                      + "wheelhouse: wheels\n")
    bundle = build_bundle(spec, tmp_path / "dist").path
    sign_bundle(bundle, [keys["bundle"]])
    prefix = tmp_path / "p"
    report = install(bundle, prefix, trust_file, profile=profile, system_site_packages=True)
    assert report.ok, report.to_dict()
    python = prefix / "current" / "venv" / "bin" / "python"
    out = subprocess.run([str(python), "-c", "import oemkit_probe; print(oemkit_probe.VALUE)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "42"
    recorded = Path(json.loads((prefix / "current" / "slot.json").read_text())["python"])
    assert recorded.is_file() and ".tmp-" not in str(recorded)
    pip = subprocess.run([str(prefix / "current" / "venv" / "bin" / "pip"), "--version"],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr  # the venv's scripts point at its final path
    assert any(c.name == "dependencies" and "1 wheel(s) installed offline" in c.detail
               for c in report.checks)


def test_wheelhouse_fetch_dry_run_builds_the_pip_command(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("numpy==2.0.0\n")
    result = cli("wheelhouse", "fetch", req, "--dest", tmp_path / "w", "--platform",
                 "manylinux2014_x86_64", "--python-version", "3.11", "--dry-run", "--json")
    assert result.exit_code == 0
    cmd = json.loads(result.stdout)["command"]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--only-binary=:all:" in cmd
    assert cmd[-4:] == ["--platform", "manylinux2014_x86_64", "--python-version", "3.11"]


def test_failed_reupgrade_keeps_the_rollback_target(bundles, trust_file, tmp_path, profile):
    v1, v2 = bundles
    prefix = tmp_path / "p"
    install(v1, prefix, trust_file, profile=profile)
    install(v2, prefix, trust_file, upgrade=True, profile=profile)
    rollback(prefix)  # current 0.1.0, previous 0.2.0
    strict = tmp_path / "strict.yaml"
    strict.write_text(PROFILE.replace("cold_start_ms: 60000", "cold_start_ms: 1"))
    failed = install(v2, prefix, trust_file, upgrade=True, profile=str(strict))
    assert not failed.ok
    after = status(prefix)
    assert after["current"].startswith("example-0.1.0-")
    assert after["previous"].startswith("example-0.2.0-")
    assert rollback(prefix).ok


def test_slots_are_pruned_to_current_and_previous(bundles, trust_file, tmp_path, profile):
    v1, v2 = bundles
    prefix = tmp_path / "p"
    install(v1, prefix, trust_file, profile=profile)
    install(v2, prefix, trust_file, upgrade=True, profile=profile)
    install(v1, prefix, trust_file, upgrade=True, allow_downgrade=True, profile=profile)
    report = install(v2, prefix, trust_file, upgrade=True, profile=profile)
    assert report.ok
    names = sorted(p.name for p in (prefix / "slots").iterdir())
    assert len(names) == 2 and {status(prefix)["current"], status(prefix)["previous"]} == set(
        names)
    import stat as st

    assert all(st.S_IMODE((prefix / "slots" / n).stat().st_mode) & 0o055 for n in names)


def test_another_product_is_refused(bundles, trust_file, tmp_path, keys, profile):
    import shutil

    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle

    v1, _ = bundles
    spec = tmp_path / "other"
    shutil.copytree(REPO / "bundles" / "example", spec)
    text = (spec / "bundle.yaml").read_text().replace('name: "example"', 'name: "other"')
    (spec / "bundle.yaml").write_text(text)
    other = build_bundle(spec, tmp_path / "d").path
    sign_bundle(other, [keys["bundle"]])
    install(v1, tmp_path / "p", trust_file, profile=profile)
    report = install(other, tmp_path / "p", trust_file, upgrade=True, profile=profile)
    assert report.checks[-1].code == "E_PRODUCT_MISMATCH"
    assert "runs example; this bundle is other" in report.checks[-1].detail


def test_release_candidates_order_before_the_release():
    from oemkit.host.install import version_key

    assert version_key("1.0.0rc1") < version_key("1.0.0") < version_key("1.0.1")
    assert version_key("1.0-rc1") < version_key("1.0")
    assert version_key("2024.05-build7") < version_key("2024.06")  # not PEP 440: parts


def test_missing_bundle_is_bad_input(trust_file, tmp_path, profile):
    result = cli("install", tmp_path / "nope.oemb", "--prefix", tmp_path / "p", "--trust",
                 trust_file, "--profile", profile)
    assert result.exit_code == 3 and "E_NOT_FOUND" in result.stderr


def test_install_reports_progress_while_it_verifies_and_unpacks(bundles, trust_file, tmp_path,
                                                                profile):
    """The CLI's bar for install/upgrade is fed by this callback: it must see the payload
    go by (every compressed byte, in order), not stay silent through the long step."""
    from helpers import read_members

    v1, _ = bundles
    seen: list[int] = []
    report = install(v1, tmp_path / "p", trust_file, profile=profile, progress=seen.append)
    assert report.ok, report.to_dict()
    payload = dict(read_members(v1))["payload.tar.zst"]
    assert seen and all(n > 0 for n in seen)
    assert sum(seen) == len(payload)


def test_install_options_defaults_are_the_keyword_defaults():
    import inspect
    from dataclasses import fields

    from oemkit.host.install import InstallOptions

    params = inspect.signature(install).parameters
    assert [f.name for f in fields(InstallOptions)] == [
        n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
    for f in fields(InstallOptions):
        assert params[f.name].default == f.default, f.name
    with pytest.raises(Exception) as err:
        InstallOptions().skip_smoke = True  # type: ignore[misc]
    assert type(err.value).__name__ == "FrozenInstanceError"


def test_install_takes_options_or_keywords_not_both(bundles, trust_file, tmp_path, profile):
    from oemkit.host.install import InstallOptions

    v1, v2 = bundles
    prefix = tmp_path / "opt"
    with pytest.raises(TypeError, match=r"not both.*profile"):
        install(v1, prefix, trust_file, InstallOptions(), profile=profile)
    assert not prefix.exists()
    seen: list[int] = []
    report = install(v1, prefix, trust_file, InstallOptions(profile=profile,
                                                            progress=seen.append))
    assert report.ok and report.switched and report.action == "install", report.to_dict()
    assert seen
    again = install(v2, prefix, trust_file, InstallOptions(upgrade=True, skip_smoke=True))
    assert again.ok and again.switched and again.action == "upgrade", again.to_dict()
    assert [c.status for c in again.checks if c.name == "smoke"] == ["warn"]
    down = install(v1, prefix, trust_file, InstallOptions(upgrade=True, profile=profile))
    assert not down.ok and down.checks[-1].code == "E_DOWNGRADE"


@pytest.mark.parametrize("extra", [
    [], ["--platform", "manylinux2014_x86_64"],
    ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
     "--python-version", "3.11"],
    ["--python-version", "3.12"],
])
def test_wheelhouse_command_is_the_library_s(tmp_path, extra):
    from oemkit.host.wheelhouse import pip_download_command

    req = tmp_path / "requirements.txt"
    req.write_text("numpy==2.0.0\n")
    result = cli("wheelhouse", "fetch", req, "--dest", tmp_path / "w", *extra, "--dry-run",
                 "--json")
    assert result.exit_code == 0, result.output
    platforms = [extra[i + 1] for i, a in enumerate(extra) if a == "--platform"]
    version = extra[extra.index("--python-version") + 1] if "--python-version" in extra \
        else None
    cmd = pip_download_command(req, tmp_path / "w", platforms=platforms,
                               python_version=version)
    assert json.loads(result.stdout)["command"] == cmd and cmd[0] == sys.executable
    assert " ".join(cmd) in result.stderr.replace("\n", "")


def test_wheelhouse_errors_are_the_library_s(tmp_path):
    from oemkit.host.wheelhouse import pip_download_command, run_pip

    missing = tmp_path / "missing.txt"
    res = cli("wheelhouse", "fetch", missing, "--dest", tmp_path / "w", "--json")
    with pytest.raises(InputError) as err:
        pip_download_command(missing, tmp_path / "w")
    assert err.value.code == json.loads(res.stdout)["error"]["code"] == "E_NOT_FOUND"
    assert res.exit_code == err.value.exit_code == 3
    run_pip([sys.executable, "-c", "pass"])
    with pytest.raises(EnvironmentProblem) as failed:
        run_pip([sys.executable, "-c", "raise SystemExit(3)"])
    assert failed.value.code == "E_PIP" and failed.value.exit_code == 4


def _status_before_the_dataclasses(prefix: Path) -> dict:
    """install.status as it was written before PrefixStatus (the dict built inline)."""
    from oemkit.host.install import SLOTS, TMP_PREFIX, read_slot
    from oemkit.host.prefix import Journal, scan

    layout = scan(prefix)
    pending = set(Journal.load(prefix).pending) if layout.exists else set()
    slots, records = [], {}
    for name in layout.slots:
        try:
            record = read_slot(prefix / SLOTS / name)
        except InputError as exc:
            doc = {"name": name, "incomplete": True, "problem": exc.message}
        else:
            records[name] = record
            doc = record.to_dict()
            if name.startswith(TMP_PREFIX) or f"{SLOTS}/{name}" in pending:
                doc["incomplete"] = True
        doc["current"] = name == layout.current
        doc["previous"] = name == layout.previous
        slots.append(doc)
    consistent = layout.current is None or layout.current in records
    return {"prefix": str(prefix), "current": layout.current, "previous": layout.previous,
            "consistent": consistent, "slots": slots}


def test_status_json_is_byte_identical_to_the_dict_it_was(bundles, trust_file, tmp_path):
    from oemkit.host.install import PrefixStatus, prefix_status

    v1, v2 = bundles
    prefix = tmp_path / "opt"

    def same() -> PrefixStatus:
        found = prefix_status(prefix)
        old = _status_before_the_dataclasses(prefix)
        assert status(prefix) == found.to_dict() == old
        res = cli("status", "--prefix", prefix, "--json")
        assert res.exit_code == 0, res.output
        assert res.stdout == json.dumps({"ok": True, **old}, indent=2, sort_keys=True,
                                        default=str) + "\n"
        return found

    assert same().slots == ()
    assert install(v1, prefix, trust_file, skip_smoke=True).ok
    assert install(v2, prefix, trust_file, upgrade=True, skip_smoke=True).ok
    found = same()
    assert [(s.current, s.previous, s.incomplete) for s in found.slots] == [
        (False, True, False), (True, False, False)]
    assert found.slots[1].record is not None and found.slots[1].record.version == "0.2.0"
    # a damaged previous slot: listed with its problem, current still consistent
    previous = prefix / "previous"
    (previous.resolve() / "slot.json").write_text("{}")
    found = same()
    damaged = next(s for s in found.slots if s.previous)
    assert damaged.record is None and damaged.incomplete and "damaged" in str(damaged.problem)
    human = cli("status", "--prefix", prefix)
    assert human.exit_code == 0 and damaged.name in human.stderr
    assert "previous" in human.stderr and "is damaged" in human.stderr
    # the current slot damaged: inconsistent, in JSON and in words
    (prefix / "current").resolve().joinpath("slot.json").write_text("[]")
    found = same()
    assert not found.consistent
    assert "INCONSISTENT" in cli("status", "--prefix", prefix).stderr


def test_a_first_install_that_changes_nothing_leaves_no_prefix_behind(bundles, trust_file,
                                                                      tmp_path, profile):
    """A refused first install removes the lock, journal and slots/ it made: a new prefix
    is gone again, an existing folder keeps only what it held; a failed smoke test (a slot
    was prepared, its report kept) leaves the prefix for support to read."""
    v1, _ = bundles
    bad = tmp_path / "bad.oemb"
    data = bytearray(v1.read_bytes())
    data[len(data) // 2] ^= 0x55
    bad.write_bytes(bytes(data))
    new = tmp_path / "new" / "opt"
    report = install(bad, new, trust_file, profile=profile)
    assert not report.ok and report.checks[-1].name == "verify"
    assert not new.exists() and new.parent.exists()
    result = CliRunner().invoke(app, ["install", str(bad), "--prefix", str(new), "--trust",
                                      str(trust_file), "--service", "none", "--json"])
    assert result.exit_code == 1 and not new.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the operator's own file\n")
    with pytest.raises(InputError):  # not a trust root: refused before a slot is made
        install(v1, mine, tmp_path / "notes-not-a-root.json", profile=profile)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    strict = tmp_path / "strict.yaml"
    strict.write_text(PROFILE.replace("cold_start_ms: 60000", "cold_start_ms: 1"))
    kept = tmp_path / "kept"
    report = install(v1, kept, trust_file, profile=str(strict))
    assert not report.ok and not report.switched
    assert (kept / "reports").is_dir()  # the failed run's report stays, and the prefix
