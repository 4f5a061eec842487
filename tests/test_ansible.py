"""The oemkit.airgap Ansible collection, run by ansible-core (ansible-playbook and ansible, in
subprocesses, offline) against a fleet of 12 hosts on this machine: each host is
``ansible_connection: local`` with its own prefix, license state file and bundle folder under
tmp_path. The collection is built from ansible/ with ansible/build.sh (ansible-galaxy
collection build) and installed from the tarball with ansible-galaxy collection install -p.

Which release each host ended on is read with ``oemkit status --json`` of its prefix, not
from Ansible's output.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, read_members, replace_member, write_members

BIN = Path(sys.executable).parent
OEMKIT = str(BIN / "oemkit")
HOSTS = [f"edge-{i:02d}" for i in range(1, 13)]
TAMPERED, SMOKE_FAILS = "edge-05", "edge-09"
#: A smaller box's profile: the example's peak RSS (about 90 MB) is over its budget, so the
#: post-install smoke test of an upgrade fails there (E_BUDGET) and nowhere else.
TINY_PROFILE = """\
name: edge-tiny
description: A box with a 16 MB budget for the runtime
cpu: {min_cores: 1}
memory_mb: 256
accelerator: none
providers:
  - name: CPUExecutionProvider
threads: {intra_op: 1, inter_op: 1}
budgets: {cold_start_ms: 30000, first_inference_ms: 5000, p95_ms: 500, batch: 1, peak_rss_mb: 16}
steady_state: {iterations: 5, warmup: 1}
"""


def ansible_env(root: Path, collections: Path | None = None) -> dict[str, str]:
    """An environment where ansible reads no config, home or collection of this machine."""
    (root / "home").mkdir(parents=True, exist_ok=True)
    cfg = root / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_HOME": str(root / "home"),
        "ANSIBLE_LOCAL_TEMP": str(root / "tmp"), "ANSIBLE_REMOTE_TEMP": str(root / "rtmp"),
        "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0", "ANSIBLE_LOCALHOST_WARNING": "0",
        "OEMKIT_STATE": str(root / "controller-state.json"),
    })
    if collections is not None:
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    return env


@pytest.fixture(scope="module")
def collections(tmp_path_factory) -> Path:
    """The collection, built offline to a tarball and installed from it."""
    root = tmp_path_factory.mktemp("ansible")
    env = ansible_env(root)
    subprocess.run(["bash", str(REPO / "ansible" / "build.sh"), str(root / "dist")], env=env,
                   check=True, capture_output=True, text=True)
    (tarball,) = (root / "dist").glob("oemkit-airgap-*.tar.gz")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p",
                    str(root / "collections")], env=env, check=True, capture_output=True,
                   text=True)
    assert (root / "collections" / "ansible_collections" / "oemkit" / "airgap"
            / "MANIFEST.json").is_file()
    return root / "collections"


@pytest.fixture(scope="module")
def site(tmp_path_factory, keys, trust_v2):
    """Two signed releases (0.1.0 from bundles/example-v1, 0.2.0 from bundles/example), a
    trust root that also lists the example license key, and a tampered copy of 0.2.0."""
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle
    from oemkit.release.trust import add_key
    from oemkit.verify.trust import parse_root

    out = tmp_path_factory.mktemp("site")
    made = {}
    for name in ("example-v1", "example"):
        path = build_bundle(REPO / "bundles" / name, out).path
        sign_bundle(path, [keys["bundle"]])
        made[name] = path
    trust = out / "trust-root.json"
    trust.write_bytes(add_key(parse_root(trust_v2), keys["license"].public, ["license"],
                              [keys["root"]], name="license"))
    members = read_members(made["example"])
    payload = dict(members)["payload.tar.zst"]
    tampered = out / "tampered" / made["example"].name
    tampered.parent.mkdir()
    write_members(tampered, replace_member(members, "payload.tar.zst",
                                           payload[:-1] + bytes([payload[-1] ^ 1])))
    profile = out / "edge-tiny.yaml"
    profile.write_text(TINY_PROFILE)
    return {"v1": made["example-v1"], "v2": made["example"], "trust": trust,
            "tampered": tampered, "tiny": profile}


def slot_of(bundle: Path) -> str:
    doc = oemkit_json("inspect", bundle)
    manifest = doc["manifest"]
    return f"{manifest['name']}-{manifest['version']}-{doc['manifest_sha256'][:12]}"


def oemkit_json(*args) -> dict:
    result = subprocess.run([OEMKIT, *map(str, args), "--json"], capture_output=True, text=True)
    return json.loads(result.stdout)


def status(prefix: Path) -> dict:
    doc = oemkit_json("status", "--prefix", prefix)
    assert doc["ok"], doc
    return doc


class Fleet:
    """An inventory of hosts on this machine, and ansible-playbook / ansible runs on it."""

    def __init__(self, root: Path, collections: Path, site: dict, hosts: list[str]):
        self.root, self.site, self.hosts = root, site, hosts
        self.env = ansible_env(root, collections)
        self.host_vars: dict[str, dict[str, str]] = {}
        #: More group variables (a host variable of the same name wins; an extra var, -e,
        #: would win over both).
        self.group_vars: dict[str, str] = {}
        for host in hosts:
            home = root / "hosts" / host
            (home / "incoming").mkdir(parents=True)
            self.host_vars[host] = {
                "oemkit_prefix": str(home / "opt"), "oemkit_state": str(home / "state.json"),
                "oemkit_bundle": str(home / "incoming" / "example.oemb")}
        self.write_inventory()

    def prefix(self, host: str) -> Path:
        return Path(self.host_vars[host]["oemkit_prefix"])

    def write_inventory(self) -> Path:
        group_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                      "oemkit_executable": OEMKIT, "oemkit_trust": str(self.site["trust"]),
                      "oemkit_service": "none", **self.group_vars}
        inventory = {"all": {"children": {"oemkit_fleet": {
            "vars": group_vars, "hosts": {h: self.host_vars[h] for h in self.hosts}}}}}
        path = self.root / "inventory.yml"
        path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
        return path

    def playbook(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(self.write_inventory()),
             f"oemkit.airgap.{name}", *args], env=self.env, capture_output=True, text=True)

    def module(self, host: str, module: str, args: dict, *flags: str) -> dict:
        """One module on one host (ad hoc); its result as ansible's tree callback saved it."""
        tree = self.root / "tree"
        shutil.rmtree(tree, ignore_errors=True)
        done = subprocess.run(
            [str(BIN / "ansible"), host, "-i", str(self.write_inventory()), "-m",
             f"oemkit.airgap.{module}", "-a", json.dumps(args), "-t", str(tree), *flags],
            env=self.env, capture_output=True, text=True)
        result = json.loads((tree / host).read_text())
        result["failed"] = done.returncode != 0  # the tree file leaves "failed" out
        result["_stdout"] = done.stdout
        return result


def task_lines(stdout: str) -> dict[tuple[str, str], str]:
    """(task name, host) -> ok / changed / fatal / skipping, from the default callback."""
    seen: dict[tuple[str, str], str] = {}
    task = ""
    for line in stdout.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK ["):line.index("]")]
        match = re.match(r"^(ok|changed|fatal|skipping): \[([^\]]+)\]", line)
        if match:
            seen.setdefault((task, match.group(2)), match.group(1))
    return seen


def fatal(stdout: str, host: str) -> dict:
    """The first failed result of ``host`` (the default callback prints it as one line)."""
    for line in stdout.splitlines():
        match = re.match(rf"^fatal: \[{re.escape(host)}\]: FAILED! => (\{{.*\}})$", line)
        if match:
            return json.loads(match.group(1))
    raise AssertionError(f"no failure of {host} in:\n{stdout}")


def recap(stdout: str) -> dict[str, dict[str, int]]:
    out = {}
    for line in stdout.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if match:
            out[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)",
                                                                    match.group(2))}
    return out


@pytest.fixture
def fleet(tmp_path, collections, site) -> Fleet:
    """12 hosts, each with release 0.1.0 installed (the library's install, no smoke: setup)."""
    from oemkit.host.install import install

    fleet = Fleet(tmp_path, collections, site, HOSTS)
    for host in HOSTS:
        report = install(site["v1"], fleet.prefix(host), site["trust"], skip_smoke=True,
                         state_path=Path(fleet.host_vars[host]["oemkit_state"]))
        assert report.ok and report.switched, report
    return fleet


def test_rolling_upgrade_stops_at_the_first_host_that_fails(fleet, site):
    v1, v2 = slot_of(site["v1"]), slot_of(site["v2"])

    # (a) edge-05's copy of the bundle is tampered: its verify fails, the play stops there.
    fleet.group_vars["oemkit_bundle_src"] = str(site["v2"])
    fleet.host_vars[TAMPERED]["oemkit_bundle_src"] = str(site["tampered"])
    run = fleet.playbook("rolling_upgrade")
    assert run.returncode != 0, run.stdout
    failure = fatal(run.stdout, TAMPERED)
    assert (failure["code"], failure["check"], failure["exit_code"]) == (
        "E_PAYLOAD_DIGEST", "payload", 1), failure
    assert failure["hint"]
    direct = oemkit_json("verify", site["tampered"], "--trust", site["trust"])
    assert failure["msg"] == direct["error"]["message"].replace(
        str(site["tampered"]), fleet.host_vars[TAMPERED]["oemkit_bundle"])
    seen = recap(run.stdout)
    assert seen[TAMPERED]["failed"] == 1
    assert not set(seen) & set(HOSTS[5:]), "hosts after the failed one were touched"
    for i, host in enumerate(HOSTS):
        st = status(fleet.prefix(host))
        if i < 4:
            assert (st["current"], st["previous"]) == (v2, v1), host
        else:
            assert (st["current"], st["previous"]) == (v1, None), host
    assert not Path(fleet.host_vars[HOSTS[5]]["oemkit_bundle"]).exists()

    # (b) edge-05 gets a good copy; edge-09's profile is a box the new release's peak RSS
    # does not fit: its post-install smoke test fails, the play stops there, and edge-09
    # is left on the release it ran.
    del fleet.host_vars[TAMPERED]["oemkit_bundle_src"]
    fleet.host_vars[SMOKE_FAILS]["oemkit_profile"] = str(site["tiny"])
    run = fleet.playbook("rolling_upgrade", "--diff")
    assert run.returncode != 0, run.stdout
    failure = fatal(run.stdout, SMOKE_FAILS)
    assert (failure["code"], failure["check"], failure["exit_code"]) == ("E_BUDGET", "smoke", 1)
    assert "peak RSS" in failure["msg"] and failure["hint"]
    assert failure["current_before"] == v1 and failure["oemkit"]["switched"] is False
    lines = task_lines(run.stdout)
    upgrade = "Upgrade; current switches only once the new slot passes smoke and readiness"
    for host in HOSTS[:4]:  # already on 0.2.0: nothing to do, not changed
        assert lines[(upgrade, host)] == "ok", (host, run.stdout)
    for host in HOSTS[4:8]:
        assert lines[(upgrade, host)] == "changed", (host, run.stdout)
    assert lines[("Stop the rollout at this host", SMOKE_FAILS)] == "fatal"
    assert f"{SMOKE_FAILS} stays on {v1}: E_BUDGET" in run.stdout
    assert "-current: example-0.1.0" in run.stdout and "+current: example-0.2.0" in run.stdout
    assert not set(recap(run.stdout)) & set(HOSTS[9:])
    for i, host in enumerate(HOSTS):
        st = status(fleet.prefix(host))
        if i < 8:
            assert (st["current"], st["previous"]) == (v2, v1), host
        else:
            assert (st["current"], st["previous"]) == (v1, None), host
    failed = status(fleet.prefix(SMOKE_FAILS))
    assert [s["name"] for s in failed["slots"]] == [v1], "the failed slot was left behind"
    assert failed["consistent"]

    # The rollback module, idempotent when told where to go; check mode changes nothing.
    checked = fleet.module(HOSTS[0], "bundle_rollback",
                           {"prefix": str(fleet.prefix(HOSTS[0])), "slot": v1,
                            "executable": OEMKIT}, "--check", "--diff")
    assert checked["changed"] and checked["current"] == v1, checked
    assert status(fleet.prefix(HOSTS[0]))["current"] == v2
    for changed in (True, False):
        back = fleet.module(HOSTS[0], "bundle_rollback",
                            {"prefix": str(fleet.prefix(HOSTS[0])), "slot": v1,
                             "executable": OEMKIT})
        assert back["changed"] is changed and back["current"] == v1, back
    assert (status(fleet.prefix(HOSTS[0]))["current"]) == v1
    refused = fleet.module(HOSTS[10], "bundle_rollback",
                           {"prefix": str(fleet.prefix(HOSTS[10])), "executable": OEMKIT})
    assert refused["failed"] and refused["code"] == "E_NO_PREVIOUS", refused
    assert refused["exit_code"] == 3 and refused["hint"]


def test_modules_are_idempotent_support_check_mode_and_fail_with_oemkit_errors(
        tmp_path, collections, site, keys):
    import oemkit.license

    fleet = Fleet(tmp_path, collections, site, ["edge-new"])
    host, prefix = "edge-new", tmp_path / "hosts" / "edge-new" / "opt"
    v1, v2 = slot_of(site["v1"]), slot_of(site["v2"])
    common = {"executable": OEMKIT, "prefix": str(prefix), "trust": str(site["trust"]),
              "state_file": str(tmp_path / "hosts" / host / "state.json"), "service": "none"}

    # Check mode: the install would happen; nothing is written (no prefix, no state file).
    # (In check mode the copy task copies nothing, so here the bundle is already on the host.)
    incoming = fleet.host_vars[host]["oemkit_bundle"]
    fleet.host_vars[host]["oemkit_bundle"] = str(site["v1"])
    run = fleet.playbook("install", "--check", "--diff")
    fleet.host_vars[host]["oemkit_bundle"] = incoming
    assert run.returncode == 0, run.stdout + run.stderr
    assert recap(run.stdout)[host]["changed"] == 1
    assert f"+current: {v1}" in run.stdout
    assert not prefix.exists() and not Path(common["state_file"]).exists()
    assert status(prefix)["current"] is None

    # The install, then the same again: changed, then not.
    run = fleet.playbook("install", "-e", f"oemkit_bundle_src={site['v1']}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert recap(run.stdout)[host]["changed"] == 2
    assert status(prefix)["current"] == v1
    run = fleet.playbook("install", "-e", f"oemkit_bundle_src={site['v1']}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert recap(run.stdout)[host]["changed"] == 0
    again = fleet.module(host, "bundle_install", {**common, "bundle": str(site["v1"])})
    assert again["changed"] is False and again["oemkit"] is None and again["current"] == v1
    other = fleet.module(host, "bundle_install", {**common, "bundle": str(site["v2"])})
    assert other["failed"] and other["code"] == "E_ALREADY_INSTALLED", other
    assert other["exit_code"] == 3 and other["hint"] and other["msg"].endswith(
        f"already has {v1} installed")

    # Upgrade in check mode with a diff: reported, not done.
    checked = fleet.module(host, "bundle_upgrade", {**common, "bundle": str(site["v2"])},
                           "--check", "--diff")
    assert checked["changed"] and (checked["current"], checked["previous"]) == (v2, v1)
    for line in (f"-current: {v1}", "-previous: none", f"+current: {v2}", f"+previous: {v1}"):
        assert line in checked["_stdout"], checked["_stdout"]  # the tree file has no diff
    assert status(prefix)["current"] == v1

    # A failure carries oemkit's code, message and hint: the tampered bundle.
    bad = fleet.module(host, "bundle_upgrade", {**common, "bundle": str(site["tampered"])})
    direct = oemkit_json("verify", site["tampered"], "--trust", site["trust"])["error"]
    assert bad["failed"] and bad["changed"] is False
    assert (bad["msg"], bad["code"], bad["hint"]) == (
        direct["message"], direct["code"], direct["hint"]), bad
    assert bad["exit_code"] == 1 and bad["check"] == "verify" and bad["oemkit"]["ok"] is False
    assert status(prefix)["current"] == v1

    # The real upgrade, then again: changed, then not.
    up = fleet.module(host, "bundle_upgrade", {**common, "bundle": str(site["v2"])}, "--diff")
    assert up["changed"] and up["switched"] and (up["current"], up["previous"]) == (v2, v1), up
    assert f"+current: {v2}" in up["_stdout"]
    up = fleet.module(host, "bundle_upgrade", {**common, "bundle": str(site["v2"])})
    assert up["changed"] is False and up["current"] == v2, up

    # Status: oemkit's document as facts.
    st = fleet.module(host, "bundle_status", {"prefix": str(prefix), "executable": OEMKIT})
    assert st["changed"] is False and st["current_version"] == "0.2.0"
    assert st["ansible_facts"]["oemkit_status"] == status(prefix)

    # Verify and smoke: read only; their failures are oemkit's.
    ver = fleet.module(host, "bundle_verify", {"bundle": str(site["v2"]),
                                               "trust": str(site["trust"]),
                                               "executable": OEMKIT})
    assert ver["changed"] is False and ver["version"] == "0.2.0" and ver["verdict"] == "verified"
    smoke = fleet.module(host, "smoke", {"prefix": str(prefix), "trust": str(site["trust"]),
                                         "executable": OEMKIT, "model_only": True})
    assert smoke["changed"] is False and smoke["result"] == "PASSED", smoke
    tiny = fleet.module(host, "smoke", {"bundle": str(site["v2"]), "trust": str(site["trust"]),
                                        "profile": str(site["tiny"]), "executable": OEMKIT,
                                        "model_only": True})
    assert tiny["failed"] and tiny["code"] == "E_BUDGET" and tiny["exit_code"] == 1, tiny

    # Licenses: verified against the current slot's trust root, then placed in
    # PREFIX/licenses/; again is no change; check mode writes nothing; an expired one fails.
    lic = tmp_path / "acme.lic"
    lic.write_bytes(oemkit.license.issue(
        key=keys["license"], customer="acme", customer_name="ACME", product="example",
        expires=dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)))
    largs = {"src": str(lic), "prefix": str(prefix), "executable": OEMKIT,
             "state_file": common["state_file"]}
    checked = fleet.module(host, "license_install", largs, "--check", "--diff")
    assert checked["changed"] and not (prefix / "licenses").exists(), checked
    placed = fleet.module(host, "license_install", largs, "--diff")
    assert placed["changed"] and placed["verdict"] == "valid", placed
    assert (prefix / "licenses" / "acme.lic").read_bytes() == lic.read_bytes()
    assert "-(no license)" in placed["_stdout"] and "+license_id: acme-example" in placed["_stdout"]
    assert fleet.module(host, "license_install", largs)["changed"] is False
    assert status(prefix)["current"] == v2  # oemkit accepts PREFIX/licenses/
    old = tmp_path / "old.lic"
    old.write_bytes(oemkit.license.issue(
        key=keys["license"], customer="acme", customer_name="ACME", product="example",
        issued_at=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
        expires=dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)))
    expired = fleet.module(host, "license_install", {**largs, "src": str(old)})
    assert expired["failed"] and expired["code"] == "E_EXPIRED" and expired["hint"], expired
    assert not (prefix / "licenses" / "old.lic").exists()

    # No oemkit on the host: a failure that says so.
    missing = fleet.module(host, "bundle_status", {"prefix": str(prefix),
                                                   "executable": str(tmp_path / "no-oemkit")})
    assert missing["failed"] and missing["code"] == "E_NOT_FOUND" and missing["hint"]


MODULES = ("bundle_verify", "bundle_install", "bundle_upgrade", "bundle_rollback",
           "bundle_status", "license_install", "smoke")


def test_ansible_doc_renders_every_module(tmp_path, collections):
    env = ansible_env(tmp_path, collections)
    listed = subprocess.run([str(BIN / "ansible-doc"), "-l", "oemkit.airgap"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert sorted(re.findall(r"oemkit\.airgap\.(\w+)", listed)) == sorted(MODULES)
    docs = json.loads(subprocess.run(
        [str(BIN / "ansible-doc", ), "--json", *(f"oemkit.airgap.{m}" for m in MODULES)],
        env=env, capture_output=True, text=True, check=True).stdout)
    import yaml

    for name in MODULES:
        entry = docs[f"oemkit.airgap.{name}"]
        doc = entry["doc"]
        assert doc["short_description"] and doc["description"], name
        assert "executable" in doc["options"], name  # from the doc fragment
        assert doc["attributes"]["check_mode"]["support"] == "full", name
        assert {"oemkit", "oemkit_calls", "code", "hint", "exit_code"} <= set(entry["return"])
        tasks = yaml.safe_load(entry["examples"])
        assert tasks and all(any(k == f"oemkit.airgap.{name}" for k in t) or
                             any(k.startswith("ansible.builtin.") for k in t)
                             for t in tasks), name
        text = subprocess.run([str(BIN / "ansible-doc"), f"oemkit.airgap.{name}"], env=env,
                              capture_output=True, text=True)
        assert text.returncode == 0 and "RETURN VALUES" in text.stdout, text.stderr
