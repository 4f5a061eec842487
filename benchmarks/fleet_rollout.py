"""The fleet rollout's oemkit overhead per host (issue 16: at most 1 s per host).

A rolling upgrade 0.1.0 -> 0.2.0 of the example over ``--hosts`` hosts on this machine
(``ansible_connection: local``, each its own prefix and state file), run by ansible-playbook
with the oemkit.airgap collection's ``rolling_upgrade`` playbook (built offline and installed
from its tarball, as a site would). A small callback times every task of every host and each
host's span (its first task's start to its last task's end).

The overhead is everything but the unpack and the smoke test: per host, its span minus the
time the upgrade spends verifying and unpacking the bundle and smoke-testing the slot. Those
two are measured separately: the same upgrade of a twin fleet (same bundles, same state)
through oemkit's library in this process, with timers around ``host.unpack.unpack_bundle``
and ``measure.smoke.run_unpacked``. The readiness gate (one ``oemkit serve`` start of the
new slot) is shown on its own: it is part of the upgrade, not of the smoke test, so it
counts as overhead; the last column says what the rest costs.

Ansible's own floor is measured in the same run: the same playbook shape over the same
inventory (``serial: 1``; the same folder and copy tasks, doing the same work into a folder
of their own; ``ansible.builtin.ping`` where the playbook runs an oemkit module; the same
two ``debug`` tasks), so that "oemkit's share" (span less unpack, smoke and the floor of
the same host) separates what oemkit costs from what any collection's tasks cost.

    python benchmarks/fleet_rollout.py [--hosts 12] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
PASSPHRASE = b"oemkit-example-insecure"
TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=12)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args.keep, args.hosts)
    else:
        with tempfile.TemporaryDirectory(prefix="fleet-rollout-") as tmp:
            run(Path(tmp), args.hosts)


def ansible_env(root: Path) -> dict[str, str]:
    (root / "home").mkdir(parents=True, exist_ok=True)
    (root / "ansible.cfg").write_text("[defaults]\n")
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_HOME": str(root / "home"), "ANSIBLE_LOCAL_TEMP": str(root / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(root / "rtmp"), "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_COLLECTIONS_PATH": str(root / "collections"),
        "OEMKIT_STATE": str(root / "controller-state.json"),
    })
    return env


def releases(root: Path) -> tuple[Path, Path, Path]:
    """The two signed example releases and a trust root listing the example bundle key."""
    from oemkit.crypto.keys import load_private_file
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.trust import parse_root

    keys = {n: load_private_file(REPO / "keys-example" / f"{n}.key", PASSPHRASE)
            for n in ("root", "bundle")}
    out = root / "dist"
    made = []
    for name in ("example-v1", "example"):
        path = build_bundle(REPO / "bundles" / name, out).path
        sign_bundle(path, [keys["bundle"]])
        made.append(path)
    v1 = init_root([keys["root"]], names=["root"])
    trust = out / "trust-root.json"
    trust.write_bytes(add_key(parse_root(v1), keys["bundle"].public, ["bundle"], [keys["root"]],
                              name="bundle"))
    return made[0], made[1], trust


def install_fleet(root: Path, hosts: list[str], v1: Path, trust: Path) -> dict[str, Path]:
    """Release 0.1.0 on every host (the library's install, no smoke: setup, not measured)."""
    from oemkit.host.install import install

    homes = {}
    for host in hosts:
        home = root / host
        (home / "incoming").mkdir(parents=True)
        report = install(v1, home / "opt", trust, skip_smoke=True,
                         state_path=home / "state.json")
        assert report.ok and report.switched, report
        homes[host] = home
    return homes


#: An Ansible callback that times every task of every host (the junit callback cannot: with
#: serial its task start is the first batch's) and each host's span, first task start to
#: last task end, written as JSON to $FLEET_TIMES at the end of the run.
CALLBACK = """
import json, os, time
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleet_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.started, self.tasks, self.span = {}, {}, {}

    def v2_runner_on_start(self, host, task):
        now = time.perf_counter()
        self.started[(host.name, task._uuid)] = now
        self.span.setdefault(host.name, [now, now])

    def _done(self, result):
        now = time.perf_counter()
        host, task = result._host.name, result._task
        began = self.started.pop((host, task._uuid), now)
        name = task.get_name()
        self.tasks.setdefault(host, {})[name] = self.tasks.get(host, {}).get(name, 0) + now - began
        self.span.setdefault(host, [began, now])[1] = now

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_skipped = _done

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["FLEET_TIMES"], "w") as out:
            json.dump({"tasks": self.tasks,
                       "span": {h: end - start for h, (start, end) in self.span.items()}}, out)
"""


def playbook_run(root: Path, homes: dict[str, Path], v2: Path, trust: Path
                 ) -> tuple[float, dict[str, dict[str, float]], dict[str, float]]:
    """The rolling upgrade by ansible-playbook: its wall time, every task's time by host and
    each host's span (first task start to last task end)."""
    env = ansible_env(root)
    subprocess.run(["bash", str(REPO / "ansible" / "build.sh"), str(root / "collection")],
                   env=env, check=True, capture_output=True)
    (tarball,) = (root / "collection").glob("oemkit-airgap-*.tar.gz")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p",
                    str(root / "collections")], env=env, check=True, capture_output=True)
    inventory = {"all": {"children": {"oemkit_fleet": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "oemkit_executable": str(BIN / "oemkit"), "oemkit_trust": str(trust),
                 "oemkit_service": "none"},
        "hosts": {h: {"oemkit_prefix": str(home / "opt"), "oemkit_state": str(home / "state.json"),
                      "oemkit_bundle": str(home / "incoming" / v2.name)}
                  for h, home in homes.items()}}}}}
    (root / "inventory.yml").write_text(json.dumps(inventory))
    (root / "callbacks").mkdir()
    (root / "callbacks" / "fleet_times.py").write_text(CALLBACK)
    env.update({"ANSIBLE_CALLBACK_PLUGINS": str(root / "callbacks"),
                "ANSIBLE_CALLBACKS_ENABLED": "fleet_times",
                "FLEET_TIMES": str(root / "times.json")})
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(root / "inventory.yml"),
                           "oemkit.airgap.rolling_upgrade", "-e", f"oemkit_bundle_src={v2}"],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the rolling upgrade failed:\n{done.stdout}\n{done.stderr}")
    times = json.loads((root / "times.json").read_text())
    return wall, times["tasks"], times["span"]


FLOOR = """
- name: Ansible's floor for the rolling upgrade's shape (no oemkit)
  hosts: oemkit_fleet
  serial: 1
  max_fail_percentage: 0
  gather_facts: false
  tasks:
    - name: Make a folder
      ansible.builtin.file:
        path: "{{ oemkit_bundle | dirname }}-floor"
        state: directory
        mode: "0755"
    - name: Copy the bundle
      ansible.builtin.copy:
        src: "{{ oemkit_bundle_src }}"
        dest: "{{ oemkit_bundle | dirname }}-floor/{{ oemkit_bundle | basename }}"
        mode: "0644"
      register: oemkit_copy
    - name: Check mode
      ansible.builtin.debug:
        msg: check mode
      when: ansible_check_mode and oemkit_copy is changed
    - name: A module where the playbook verifies
      ansible.builtin.ping:
    - name: A module where the playbook upgrades
      ansible.builtin.ping:
    - name: A module where the playbook reads the status
      ansible.builtin.ping:
    - name: Report
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }}"
"""


def floor_run(root: Path, v2: Path) -> dict[str, float]:
    """Each host's span for :data:`FLOOR`, with the inventory and callback of
    :func:`playbook_run` (which must have run first)."""
    env = ansible_env(root)
    env.update({"ANSIBLE_CALLBACK_PLUGINS": str(root / "callbacks"),
                "ANSIBLE_CALLBACKS_ENABLED": "fleet_times",
                "FLEET_TIMES": str(root / "floor-times.json")})
    (root / "floor.yml").write_text(FLOOR)
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(root / "inventory.yml"),
                           str(root / "floor.yml"), "-e", f"oemkit_bundle_src={v2}"],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the floor playbook failed:\n{done.stdout}\n{done.stderr}")
    spans: dict[str, float] = json.loads((root / "floor-times.json").read_text())["span"]
    return spans


def library_run(root: Path, homes: dict[str, Path], v2: Path, trust: Path
                ) -> dict[str, dict[str, float]]:
    """The same upgrade through the library, timing unpack, smoke and the readiness gate."""
    import oemkit.host.install as inst
    import oemkit.host.unpack as unpack
    import oemkit.measure.smoke as smoke
    from oemkit.host.service import ServiceOptions

    spent: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
        return wrapper

    unpack.unpack_bundle = timed("unpack", unpack.unpack_bundle)
    smoke.run_unpacked = timed("smoke", smoke.run_unpacked)
    inst._ready_before = timed("ready", inst._ready_before)
    out = {}
    for host, home in homes.items():
        spent.clear()
        started = time.perf_counter()
        report = inst.install(v2, home / "opt", trust, upgrade=True,
                              state_path=home / "state.json",
                              service=ServiceOptions(mode="none", ready_check=True))
        total = time.perf_counter() - started
        assert report.ok and report.switched, report
        out[host] = {"total": total, **spent}
    return out


def cli_start(prefix: Path, runs: int = 7) -> float:
    """Median wall time of one `oemkit status --json`: the fixed cost of a CLI call."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(BIN / "oemkit"), "status", "--prefix", str(prefix), "--json"],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(root: Path, count: int) -> None:
    hosts = [f"edge-{i:02d}" for i in range(1, count + 1)]
    v1, v2, trust = releases(root)
    fleet = install_fleet(root / "fleet", hosts, v1, trust)
    twins = install_fleet(root / "twins", hosts, v1, trust)
    wall, tasks, span = playbook_run(root / "ansible", fleet, v2, trust)
    floor = floor_run(root / "ansible", v2)
    parts = library_run(root, twins, v2, trust)
    cli = cli_start(fleet[hosts[0]] / "opt")

    print(f"machine: {machine()}")
    print(f"rolling upgrade 0.1.0 -> 0.2.0 over {count} hosts (serial 1): "
          f"ansible-playbook wall {wall:.1f} s, {wall / count:.2f} s per host")
    print(f"one oemkit CLI call (oemkit status --json, median of 7): {cli * 1000:.0f} ms")
    print(f"{'host':8} {'span':>6} {'unpack':>7} {'smoke':>6} {'ready':>6} "
          f"{'overhead':>9} {'w/o ready':>9} {'floor':>6} {'oemkit':>7}")
    overheads, without_ready, shares = [], [], []
    for host in hosts:
        p = parts[host]
        over = span[host] - p.get("unpack", 0.0) - p.get("smoke", 0.0)
        share = over - floor[host]
        overheads.append(over)
        without_ready.append(over - p.get("ready", 0.0))
        shares.append(share)
        print(f"{host:8} {span[host]:6.2f} {p.get('unpack', 0):7.2f} {p.get('smoke', 0):6.2f} "
              f"{p.get('ready', 0):6.2f} {over:9.2f} {over - p.get('ready', 0):9.2f} "
              f"{floor[host]:6.2f} {share:7.2f}")
    per_task: dict[str, list[float]] = {}
    for host in hosts:
        for task, seconds in tasks[host].items():
            per_task.setdefault(task, []).append(seconds)
    print("median per task (start to result, by the callback):")
    for task, values in per_task.items():
        print(f"  {statistics.median(values):6.2f} s  {task}")
    print(f"  {statistics.median(span[h] - sum(tasks[h].values()) for h in hosts):6.2f} s  "
          "between the tasks (Ansible's own scheduling)")
    lib = statistics.median(p["total"] for p in parts.values())
    print(f"the library's upgrade alone (no Ansible, no CLI): median {lib:.2f} s "
          f"(unpack {statistics.median(p.get('unpack', 0) for p in parts.values()):.2f}, "
          f"smoke {statistics.median(p.get('smoke', 0) for p in parts.values()):.2f}, "
          f"ready {statistics.median(p.get('ready', 0) for p in parts.values()):.2f})")
    median = statistics.median(overheads)
    print(f"overhead per host (all but unpack and smoke): median {median:.2f} s, "
          f"max {max(overheads):.2f} s; without the readiness gate: median "
          f"{statistics.median(without_ready):.2f} s")
    print(f"Ansible's floor for the same playbook shape (no oemkit): median "
          f"{statistics.median(floor.values()):.2f} s per host")
    share = statistics.median(shares)
    print(f"oemkit's share (overhead less Ansible's floor, readiness gate included): median "
          f"{share:.2f} s, max {max(shares):.2f} s; target {TARGET_S:.1f} s: "
          f"{'met' if share <= TARGET_S else 'NOT met'}")


def machine() -> str:
    import onnxruntime

    try:
        import ansible.release as ar
        ansible_version = ar.__version__
    except ImportError:  # pragma: no cover
        ansible_version = "?"
    load = os.getloadavg()
    return (f"{os.cpu_count()} vCPU {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, ansible-core {ansible_version}, onnxruntime "
            f"{onnxruntime.__version__}, load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}")


if __name__ == "__main__":
    main()
