"""oemkit's own overhead on a cold start (issue 5): must stay under 50 ms.

Runs, on the same model and golden inputs, alternately and best of N each:
  - baseline: a bare `python -c` that imports onnxruntime and numpy, creates the session
    and runs once;
  - oemkit: the smoke test's child process (measure/_smoke_child.py) doing the same plus
    its measurements, with a minimal steady state (1 iteration, no warm-up).
Verification and unpacking are excluded (they happen before the cold start). Prints both
wall times and the difference.

    python benchmarks/cold_start.py [--runs 7] [--model bundles/example/model/model.onnx]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = HERE.parent / "src" / "oemkit" / "measure" / "_smoke_child.py"

BARE = """
import json, sys
import numpy as np, onnxruntime as ort
spec = json.load(open(sys.argv[2]))["x"]
x = np.asarray(spec["data"], dtype=spec["dtype"]).reshape(spec["shape"])
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
s.run(None, {"x": x})
"""


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--model", default=str(HERE.parent / "bundles/example/model/model.onnx"))
    parser.add_argument("--inputs",
                        default=str(HERE.parent / "bundles/example/golden/inputs.json"))
    args = parser.parse_args()
    bare, ours, reported = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "req.json"
        out = Path(tmp) / "out.json"
        for _ in range(args.runs):
            bare.append(wall([sys.executable, "-c", BARE, args.model, args.inputs]))
            req.write_text(json.dumps({
                "model": args.model, "inputs": args.inputs, "out": str(out),
                "providers": [{"name": "CPUExecutionProvider"}], "intra_op": 1,
                "inter_op": 1, "batch": 1, "iterations": 1, "warmup": 0, "max_seconds": 1,
                "t0": time.monotonic()}))
            ours.append(wall([sys.executable, str(CHILD), str(req)]))
            reported.append(json.loads(out.read_text())["timings_ms"])
    b, o = min(bare), min(ours)
    best = min(reported, key=lambda t: t["process_start"] + t["imports"] + t["session"])
    print(f"python {sys.version.split()[0]}, model {Path(args.model).name}, best of {args.runs}")
    print(f"baseline (bare python -c: import, session, one run): {b:.0f} ms wall")
    print(f"oemkit smoke child (same work + measurements):       {o:.0f} ms wall")
    print(f"oemkit overhead: {o - b:+.0f} ms (target < 50 ms)")
    print("child's own report: process start {process_start:.0f} ms, imports {imports:.0f} "
          "ms, session {session:.1f} ms, first inference {first_inference:.2f} ms".format(**best))


if __name__ == "__main__":
    main()
