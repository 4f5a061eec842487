"""What an OEM runtime pays at start-up for its license check (issue 21 item 3): the cold
``import oemkit.license``, the first ``verify()`` call (which imports the rest of the
verification path), and a warm call, each in a fresh process, with a bare interpreter
start measured in the same run as the baseline.

    python benchmarks/license_startup.py [--runs 15] [--python SLOT/venv/bin/python]

``--python`` measures another interpreter, e.g. an installed slot's venv (``oemkit install``
copies the license API into it). The license is the hostile corpus's control license, with
its CRL and a state file (made by one warm-up run, as a runtime's is after its first
start); the trust root is read from its file, as the README's snippet does. Each figure is
the median over ``--runs`` fresh processes (min and max beside it); the modules the first
call imports are listed, so a heavy one that creeps back on the path shows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "hostile" / "corpus"

CHILD = """
import sys, time
t0 = time.perf_counter()
import oemkit.license
t1 = time.perf_counter()
before = set(sys.modules)
lic, trust, crl, state = sys.argv[1:5]
v = oemkit.license.verify(lic, trust=trust, crl=[crl], state=state)
t2 = time.perf_counter()
warm = []
for _ in range(20):
    s = time.perf_counter()
    oemkit.license.verify(lic, trust=trust, crl=[crl], state=state)
    warm.append(time.perf_counter() - s)
warm.sort()
import json
print(json.dumps({"status": v.status, "import": t1 - t0, "first": t2 - t1,
                  "warm": warm[len(warm) // 2], "file": oemkit.__file__,
                  "first_imported": sorted(set(sys.modules) - before)}))
"""


def _ms(values: list[float]) -> str:
    return (f"{1000 * statistics.median(values):6.1f} ms  (min {1000 * min(values):.1f}, "
            f"max {1000 * max(values):.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    python = args.python
    with tempfile.TemporaryDirectory() as tmp:
        argv = [str(CORPUS / "control-license-valid.lic"), str(CORPUS / "trust-root.json"),
                str(CORPUS / "control-crl-valid.crl"), str(Path(tmp) / "state.json")]
        child = [python, "-I", "-c", CHILD, *argv]

        def run() -> dict:
            out = subprocess.run(child, capture_output=True, text=True, check=True, cwd=tmp)
            return json.loads(out.stdout)

        first = run()  # the warm-up: writes the state file, fills the bytecode caches
        bare, docs = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([python, "-I", "-c", "pass"], check=True, cwd=tmp)
            bare.append(time.perf_counter() - start)
            docs.append(run())
    print(f"python: {python} ({sys.version.split()[0]} here); oemkit from {first['file']}")
    print(f"verdict: {first['status']}; {args.runs} fresh processes each")
    print(f"bare interpreter (python -I -c pass): {_ms(bare)}")
    print(f"import oemkit.license:                {_ms([d['import'] for d in docs])}")
    print(f"first verify() call:                  {_ms([d['first'] for d in docs])}")
    print(f"warm verify() call (median of 20):    {_ms([d['warm'] for d in docs])}")
    print(f"cold start (import + first call):     "
          f"{_ms([d['import'] + d['first'] for d in docs])}")
    tops = sorted({m.partition('.')[0] for m in first["first_imported"]})
    print(f"the first call imports ({len(first['first_imported'])} modules): {', '.join(tops)}")


if __name__ == "__main__":
    main()
