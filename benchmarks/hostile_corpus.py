"""How fast every hostile-corpus case gets its verdict (issue 9: "within a second").

Runs each case of tests/hostile/corpus/INDEX.json through the CLI in this process, as
tests/hostile/test_corpus.py does (that test checks the verdicts and no time), checks the
verdict again, and prints per-kind and overall timings, the slowest cases and how many
took a second or more. Baseline, measured in the same run the same way: verifying the
valid control bundle (`control-bundle-valid.oemb`), i.e. what a good bundle costs.

    python benchmarks/hostile_corpus.py [--repeat 3]

Each case's time is its best of --repeat runs (the first run of a kind also pays for
imports, which a fresh `oemkit` process pays anyway; best-of removes that one-off).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from hostile import test_corpus as tc  # noqa: E402


def run_case(case: dict, tmp: Path) -> tuple[float, bool]:
    """Seconds for one verdict, and whether it was the expected one."""
    tc._prepare(case, tmp)
    start = time.perf_counter()
    result = tc.runner.invoke(tc.app, tc._expand(case, tmp), env=case.get("env"))
    elapsed = time.perf_counter() - start
    try:
        tc._check_output(case, result.exit_code, result.stdout, result.output)
    except (AssertionError, ValueError):
        return elapsed, False
    return elapsed, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"machine: {platform.machine()}, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}; {len(tc.CASES)} cases, best of {args.repeat}")
    times: dict[str, float] = {}
    wrong: list[str] = []
    for _ in range(args.repeat):
        for case in tc.CASES:
            with tempfile.TemporaryDirectory() as tmp:
                elapsed, ok = run_case(case, Path(tmp))
            if not ok:
                wrong.append(case["file"])
            times[case["file"]] = min(elapsed, times.get(case["file"], elapsed))
    control = times["control-bundle-valid.oemb"]
    kinds: dict[str, list[float]] = {}
    for case in tc.CASES:
        kinds.setdefault(case["kind"], []).append(times[case["file"]])
    print(f"baseline: verify the valid control bundle {control * 1000:.1f} ms")
    for kind, values in sorted(kinds.items()):
        median, top = statistics.median(values), max(values)
        print(f"  {kind:12s} {len(values):3d} cases  median {median * 1000:7.1f} ms  max "
              f"{top * 1000:7.1f} ms  (max / baseline {top / control:.1f}x)")
    slowest = sorted(times.items(), key=lambda kv: -kv[1])[:8]
    print("slowest:")
    for name, value in slowest:
        print(f"  {value * 1000:7.1f} ms  {name}")
    over = [name for name, value in times.items() if value >= 1.0]
    print(f"cases at or over 1 s: {len(over)} of {len(times)}; wrong verdicts: "
          f"{len(set(wrong))}" + (f" {sorted(set(wrong))}" if wrong else ""))
    print(json.dumps({"cases": len(times), "over_1s": len(over), "wrong": len(set(wrong)),
                      "max_s": round(max(times.values()), 3), "baseline_s": round(control, 4)}))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
