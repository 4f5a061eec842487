"""What every hostile verdict costs, in time and in memory, checked against the promise
of docs/SECURITY.md: each verdict within a second, in under 100 MB (issues 9 and 13).

Runs each case of tests/hostile/corpus/INDEX.json through the CLI in this process, as
tests/hostile/test_corpus.py does (that test checks the verdicts and neither time nor
memory), checks the verdict again, and adds the attacks too big for a corpus file
(``tests/hostile/review_reader.big_cases``: a stranger's 4 MiB provenance, 32 signature
members of 64 signatures each, 64 licenses at their limit, ...), built in a temporary
directory. For each case it records

- time: the best of --repeat runs (the first run of a kind also pays for imports, which a
  fresh `oemkit` process pays anyway; best-of removes that one-off);
- heap: the peak of Python allocations during one run (tracemalloc), above what was
  allocated before it;
- RSS: one child process judges every corpus case in turn and reads its own peak RSS
  (VmHWM) after each; the peak only grows, so the case that raised it is named. Each big
  case runs in a fresh child of its own (as one `oemkit verify` would). This is the
  figure the promise is about: interpreter, imports and the verdict together.

Baseline, measured the same way: verifying the valid control bundle, i.e. what a good
bundle costs. Exit status 1 when a verdict is wrong or a case breaks the promise.

    python benchmarks/hostile_corpus.py [--repeat 3] [--json-out FILE]
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
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from hostile import make_corpus, review_reader  # noqa: E402
from hostile import test_corpus as tc  # noqa: E402

#: The promise (docs/SECURITY.md): every hostile verdict within a second, under 100 MB.
TIME_LIMIT_S = 1.0
RSS_LIMIT = 100 << 20


def big_cases(folder: Path) -> list[dict[str, Any]]:
    """INDEX-style entries for the attacks too big for the corpus, written to ``folder``."""
    keys = make_corpus.load_keys()
    forge = make_corpus.Forge(keys)
    trust = str(make_corpus.CORPUS / make_corpus.TRUST)
    out = []
    for name, tries, build, code, args in review_reader.big_cases():
        path = folder / f"big-{name}.oemb"
        path.write_bytes(build(forge, keys))
        out.append({"file": path.name, "kind": "bundle (big)", "tries": tries,
                    "command": ["verify", str(path), "--trust", trust, "--json", *args],
                    "code": code, "exit": 0 if code is None else 1,
                    "size": path.stat().st_size})
    return out


def run_case(case: dict[str, Any], tmp: Path, trace: bool = False) -> tuple[float, int, bool]:
    """Seconds for one verdict, its heap peak (bytes, when ``trace``), and whether it was
    the expected one."""
    tc._prepare(case, tmp)
    argv = tc._expand(case, tmp)
    if trace:
        tracemalloc.start()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    result = tc.runner.invoke(tc.app, argv, env=case.get("env"))
    elapsed = time.perf_counter() - start
    heap = 0
    if trace:
        heap = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
    try:
        tc._check_output(case, result.exit_code, result.stdout, result.output)
    except (AssertionError, ValueError):
        return elapsed, heap, False
    return elapsed, heap, True


_RSS_CHILD = r"""
import json, sys
from typer.testing import CliRunner
from oemkit.cli import app

def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

runner = CliRunner()
out = []
for argv, env in json.loads(open(sys.argv[1]).read()):
    result = runner.invoke(app, argv, env=env)
    out.append({"exit": result.exit_code, "rss": peak() * 1024})
print(json.dumps(out))
"""


def rss_per_case(cases: list[dict[str, Any]], tmp: Path) -> list[int]:
    """Peak RSS of one child process after each case (non-decreasing)."""
    base = Path(tempfile.mkdtemp(dir=tmp))
    jobs = []
    for i, case in enumerate(cases):
        folder = base / f"rss-{i}"
        folder.mkdir()
        tc._prepare(case, folder)
        jobs.append((tc._expand(case, folder), case.get("env")))
    spec = base / "jobs.json"
    spec.write_text(json.dumps(jobs))
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(spec)], capture_output=True,
                          text=True, check=True, env={**os.environ, "COLUMNS": "200"})
    return [int(r["rss"]) for r in json.loads(proc.stdout)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json-out", type=Path, help="write every case's figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        big = big_cases(Path(scratch))
        cases = list(tc.CASES) + big
        print(f"machine: {platform.machine()}, {platform.system()} {platform.release()}, "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}; {len(tc.CASES)} "
              f"corpus cases + {len(big)} big ones, best of {args.repeat}")
        times: dict[str, float] = {}
        heaps: dict[str, int] = {}
        wrong: set[str] = set()
        for run in range(args.repeat + 1):
            for case in cases:
                with tempfile.TemporaryDirectory() as tmp:
                    elapsed, heap, ok = run_case(case, Path(tmp), trace=run == args.repeat)
                if not ok:
                    wrong.add(case["file"])
                if run == args.repeat:  # the traced run: memory only (tracing slows it)
                    heaps[case["file"]] = heap
                else:
                    times[case["file"]] = min(elapsed, times.get(case["file"], elapsed))
        with tempfile.TemporaryDirectory() as tmp:
            rss = rss_per_case(list(tc.CASES), Path(tmp))
            fresh = [rss_per_case([case], Path(tmp))[0] for case in big]
    control = times["control-bundle-valid.oemb"]
    by_file = {c["file"]: c for c in cases}
    kinds: dict[str, list[str]] = {}
    for case in cases:
        kinds.setdefault(case["kind"], []).append(case["file"])
    print(f"baseline: verify the valid control bundle {control * 1000:.1f} ms, heap "
          f"{heaps['control-bundle-valid.oemb'] / 2**20:.1f} MiB")
    for kind, files in sorted(kinds.items()):
        values = [times[f] for f in files]
        heap_top = max(heaps[f] for f in files)
        print(f"  {kind:13s} {len(files):3d} cases  median {statistics.median(values) * 1000:7.1f}"
              f" ms  max {max(values) * 1000:7.1f} ms  (max / baseline "
              f"{max(values) / control:5.1f}x)  max heap {heap_top / 2**20:6.1f} MiB")
    print("slowest:")
    for name, value in sorted(times.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {value * 1000:7.1f} ms  {name}")
    print("most heap (Python allocations during the verdict):")
    for name, value in sorted(heaps.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {value / 2**20:7.1f} MiB  {name}")
    print("big cases (not in the corpus):")
    for case in big:
        name = case["file"]
        print(f"  {name:42s} {case['size'] / 2**20:6.1f} MiB file  {times[name] * 1000:7.1f} ms"
              f"  heap {heaps[name] / 2**20:6.1f} MiB  -> {case['code'] or 'passes'}")
    raised = [(cases[i]["file"], r) for i, r in enumerate(rss) if i == 0 or r > rss[i - 1]]
    print(f"corpus child peak RSS after the first case {rss[0] / 2**20:.1f} MiB (interpreter, "
          f"imports), after all {rss[-1] / 2**20:.1f} MiB; raised last by {raised[-1][0]}")
    for case, value in zip(big, fresh, strict=True):
        print(f"  fresh child peak RSS {value / 2**20:6.1f} MiB  {case['file']}")
    rss += fresh
    over_time = sorted(n for n, v in times.items() if v >= TIME_LIMIT_S)
    over_rss = [(c["file"], r) for c, r in zip(cases, rss, strict=True) if r >= RSS_LIMIT]
    first_over = over_rss[0][0] if over_rss else None
    print(f"promise: time max {max(times.values()):.3f} s of {TIME_LIMIT_S:.0f} s "
          f"({max(times.values()) / TIME_LIMIT_S:.0%}); RSS max {max(rss) / 2**20:.1f} MiB of "
          f"{RSS_LIMIT >> 20} MiB ({max(rss) / RSS_LIMIT:.0%})")
    print(f"cases at or over 1 s: {len(over_time)} {over_time if over_time else ''}; RSS at or "
          f"over 100 MiB from: {first_over}; wrong verdicts: {len(wrong)}"
          + (f" {sorted(wrong)}" if wrong else ""))
    summary = {"cases": len(cases), "big": len(big), "over_1s": len(over_time),
               "over_rss_from": first_over, "wrong": len(wrong),
               "max_s": round(max(times.values()), 3), "baseline_s": round(control, 4),
               "max_heap_mib": round(max(heaps.values()) / 2**20, 1),
               "peak_rss_mib": round(max(rss) / 2**20, 1)}
    print(json.dumps(summary))
    if args.json_out:
        args.json_out.write_text(json.dumps({"summary": summary, "cases": [
            {"file": f, "kind": by_file[f]["kind"], "s": round(times[f], 4),
             "heap_bytes": heaps[f], "rss_after": r}
            for f, r in zip((c["file"] for c in cases), rss, strict=True)]}, indent=1) + "\n")
    return 1 if wrong or over_time or over_rss else 0


if __name__ == "__main__":
    sys.exit(main())
