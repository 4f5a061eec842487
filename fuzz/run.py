"""Run one atheris target for a fixed time: ``python fuzz/run.py TARGET SECONDS``.

TARGET is ``bundle``, ``license``, ``spec``, ``readers``, ``media`` or ``state``
(``fuzz_TARGET.py``). The target starts from the hostile corpus (``seeds()``, rewritten
into ``fuzz/.work/TARGET/seeds``) plus what earlier runs found (``fuzz/.work/TARGET/corpus``,
kept between runs). When libFuzzer stops on a crash, a timeout (10 s per input) or running
out of memory (2 GiB), the input is kept under ``fuzz/.work/TARGET/artifacts`` with its
traceback, and fuzzing resumes until the budget is spent. With ``--save-regressions`` every
finding is also copied to ``tests/hostile/corpus/regressions/TARGET-<sha1>.bin``
(tests/hostile/test_corpus.py replays those). Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import REGRESSIONS, describe, write_seeds  # noqa: E402

TARGETS = ("bundle", "license", "spec", "readers", "media", "state")


def replay(target: str, path: Path) -> str:
    """The exception a saved input raises now ('' when it is handled)."""
    module = importlib.import_module(f"fuzz_{target}")
    try:
        module.check(path.read_bytes())
    except Exception as exc:
        return describe(exc)
    return ""


def fuzz(target: str, seconds: int, save: bool, max_len: int) -> dict[str, object]:
    work = HERE / ".work" / target
    corpus, seeds, artifacts = work / "corpus", work / "seeds", work / "artifacts"
    for folder in (corpus, artifacts):
        folder.mkdir(parents=True, exist_ok=True)
    if seeds.exists():
        shutil.rmtree(seeds)
    module = importlib.import_module(f"fuzz_{target}")
    count = write_seeds(seeds, module.seeds())
    print(f"[{target}] {count} seeds, budget {seconds} s", flush=True)
    started = time.monotonic()
    runs = 0
    findings: list[dict[str, str]] = []
    seen = {p.name for p in artifacts.iterdir()}
    while (left := int(seconds - (time.monotonic() - started))) > 5:
        runs += 1
        cmd = [sys.executable, str(HERE / f"fuzz_{target}.py"), f"-max_total_time={left}",
               "-timeout=10", "-rss_limit_mb=2048", f"-max_len={max_len}",
               f"-artifact_prefix={artifacts}{os.sep}", "-print_final_stats=1",
               str(corpus), str(seeds)]
        log = work / f"run-{runs}.log"
        with open(log, "w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
        new = sorted(p for p in artifacts.iterdir() if p.name not in seen)
        seen.update(p.name for p in new)
        for path in new:
            if path.suffix in (".txt", ".bin"):
                continue
            digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
            why = replay(target, path) or f"{path.name.split('-')[0]} (not reproduced in-process)"
            (artifacts / f"{path.name}.txt").write_text(why + "\n")
            findings.append({"input": str(path), "why": why, "log": str(log)})
            print(f"[{target}] FOUND {path.name}: {why}", flush=True)
            if save:
                REGRESSIONS.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, REGRESSIONS / f"{target}-{digest}.bin")
        if proc.returncode == 0:
            break
        if not new:  # libFuzzer failed without an artifact: do not spin
            print(f"[{target}] libFuzzer exited {proc.returncode}; see {log}", flush=True)
            break
    elapsed = time.monotonic() - started
    execs = 0
    for log in sorted(work.glob("run-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("stat::number_of_executed_units:"):
                execs += int(line.split(":")[-1])
    summary = {"target": target, "seconds": round(elapsed), "restarts": runs - 1,
               "executions": execs, "corpus_files": len(list(corpus.iterdir())),
               "findings": findings}
    for log in work.glob("run-*.log"):
        log.rename(work / f"last-{log.name}")
    print(json.dumps(summary), flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("seconds", type=int, nargs="?", default=60)
    parser.add_argument("--save-regressions", action="store_true")
    parser.add_argument("--max-len", type=int, default=256 << 10)
    args = parser.parse_args(argv)
    for old in (HERE / ".work" / args.target).glob("last-run-*.log"):
        old.unlink()
    summary = fuzz(args.target, args.seconds, args.save_regressions, args.max_len)
    return 1 if summary["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
