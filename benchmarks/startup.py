"""Whole-process start-up of the commands people and scripts run most (issue 17).

    python benchmarks/startup.py [--runs 15]

Each command line is a fresh process, timed from spawn to exit; the runs alternate between
the lines so that a noisy neighbour hits every line alike, and each figure is the median.
The baseline is ``python -c pass`` with the same interpreter, measured in the same rounds:
the targets are "over the bare interpreter start".

  --help           ``oemkit --help``                     target <= 60 ms over bare
  verify           ``oemkit verify`` of the example       target <= 150 ms over bare
  license verify   ``oemkit license verify`` of a license target <= 100 ms over bare

and, for information, ``python -c "import typer"`` (the floor of any command typer
answers, ``--help`` included: importing the chosen CLI layer, nothing of oemkit's), the
same with ``--json``, a typer command (``license inspect``) and ``verify --help`` (typer's
path). The fixture is built here: the example bundle built and
signed with the INSECURE example keys, a trust root with the bundle key, and the control
license of the hostile corpus with its trust root (a state file in the temporary folder).
oemkit's modules are compiled first (as an installed wheel is: this project's machines set
PYTHONDONTWRITEBYTECODE, under which a checkout would recompile them at every start).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS = REPO / "tests" / "hostile" / "corpus"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))


def fixture(tmp: Path) -> tuple[Path, Path]:
    """The signed example bundle and a trust root that trusts its key."""
    from helpers import EXAMPLE, KEYS, PASSPHRASE
    from oemkit.crypto.keys import load_private_file
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.trust import parse_root

    root_key = load_private_file(KEYS / "root.key", PASSPHRASE)
    bundle_key = load_private_file(KEYS / "bundle.key", PASSPHRASE)
    v1 = init_root([root_key], names=["root"])
    v2 = add_key(parse_root(v1), bundle_key.public, ["bundle"], [root_key], name="bundle")
    trust = tmp / "trust-root.json"
    trust.write_bytes(v2)
    bundle = build_bundle(EXAMPLE / "bundle.yaml", tmp).path
    sign_bundle(bundle, [bundle_key])
    return bundle, trust


def describe() -> str:
    from large_bundle import machine  # the machine line every benchmark here prints

    return (f"{machine()}; {platform.python_implementation()}, load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (each line once each)")
    args = parser.parse_args(argv)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "oemkit")],
                   check=True, stdout=subprocess.DEVNULL)
    tmp = Path(tempfile.mkdtemp(prefix="oemkit-startup-"))
    try:
        bundle, trust = fixture(tmp)
        py = sys.executable
        oemkit = [py, "-m", "oemkit"]
        lic = [str(CORPUS / "control-license-valid.lic"), "--trust",
               str(CORPUS / "trust-root.json"), "--state", str(tmp / "state.json")]
        lines: dict[str, list[str]] = {
            "bare": [py, "-c", "pass"],
            "import typer (floor)": [py, "-c", "import typer"],
            "--help": [*oemkit, "--help"],
            "verify": [*oemkit, "verify", str(bundle), "--trust", str(trust)],
            "license verify": [*oemkit, "license", "verify", *lic],
            "verify --json": [*oemkit, "verify", str(bundle), "--trust", str(trust),
                              "--json"],
            "license verify --json": [*oemkit, "license", "verify", *lic, "--json"],
            "license inspect (typer)": [*oemkit, "license", "inspect", lic[0]],
            "verify --help (typer)": [*oemkit, "verify", "--help"],
        }
        for cmd in lines.values():  # warm the page cache and check each line works
            subprocess.run(cmd, check=True, capture_output=True)
        times: dict[str, list[float]] = {name: [] for name in lines}
        for _ in range(args.runs):
            for name, cmd in lines.items():
                start = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bare = statistics.median(times["bare"]) * 1000
    targets = {"--help": 60.0, "verify": 150.0, "license verify": 100.0}
    print(describe())
    print(f"{args.runs} rounds; medians of whole-process wall time; bare = python -c pass\n")
    print(f"{'command':28} {'median':>9} {'over bare':>10} {'target':>10}  verdict")
    print(f"{'-' * 28} {'-' * 9} {'-' * 10} {'-' * 10}  -------")
    for name, samples in times.items():
        value = statistics.median(samples) * 1000
        over = value - bare
        target = targets.get(name)
        verdict = "info" if target is None else ("PASS" if over <= target else "MISS")
        shown = "" if target is None else f"<= {target:.0f} ms"
        print(f"{name:28} {value:6.1f} ms {over:7.1f} ms {shown:>10}  {verdict}")


if __name__ == "__main__":
    main(sys.argv[1:])
