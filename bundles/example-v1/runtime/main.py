"""Standalone runner for this bundle: load the ONNX model, run JSON or .npz inputs, write JSON.

Needs only numpy and onnxruntime (never oemkit), so it can run in a fresh process on the
target. Relative paths resolve against the bundle root (the parent of runtime/), not the
current directory. Tensor JSON: {"<name>": {"dtype": ..., "shape": [...], "data": [...]}}
with data flattened row-major; a non-tensor output as {"<name>": {"seq": [...]}}. Its
output file (with "_timings_ms" and "_providers") is also a golden outputs file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

BUNDLE_ROOT = Path(__file__).resolve().parent.parent


def _path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else BUNDLE_ROOT / path


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000.0, 3)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _output(value: Any, np: Any) -> dict[str, Any]:
    """A tensor as {dtype, shape, data}; a sequence or a map (e.g. skl2onnx's ZipMap
    seq(map)) as {"seq": [item, ...]}, maps with string keys."""
    if isinstance(value, np.ndarray):
        dtype = "str" if value.dtype.kind in "USO" else str(value.dtype)
        return {"dtype": dtype, "shape": list(value.shape), "data": value.ravel().tolist()}
    items = value if isinstance(value, (list, tuple)) else [value]
    return {"seq": [_plain(v) for v in items]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run this bundle's model on JSON inputs.")
    parser.add_argument("--model", default="model/model.onnx")
    parser.add_argument("--inputs", default="golden/inputs.json")
    parser.add_argument("--providers", default="CPUExecutionProvider",
                        help="comma-separated execution providers, highest priority first")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (0: default)")
    parser.add_argument("--out", required=True, help="output JSON file")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    import numpy as np
    import onnxruntime as ort
    imported = time.perf_counter()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.use_deterministic_compute = True
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    session = ort.InferenceSession(str(_path(args.model)), options, providers=providers)
    created = time.perf_counter()

    if args.inputs.endswith(".npz"):
        with np.load(_path(args.inputs), allow_pickle=False) as archive:
            feeds = {k: archive[k] for k in archive.files}
    else:
        spec: dict[str, Any] = json.loads(_path(args.inputs).read_text(encoding="utf-8"))
        feeds = {k: np.asarray(t["data"], dtype=t["dtype"]).reshape(t["shape"])
                 for k, t in spec.items()}
    missing = sorted({i.name for i in session.get_inputs()} - set(feeds))
    if missing:
        print(f"error: inputs file lacks model inputs {missing}", file=sys.stderr)
        return 2
    results = session.run(None, feeds)
    finished = time.perf_counter()

    names = [o.name for o in session.get_outputs()]
    out: dict[str, Any] = {names[i]: _output(r, np) for i, r in enumerate(results)}
    out["_timings_ms"] = {"import": _ms(start, imported), "session": _ms(imported, created),
                          "first_inference": _ms(created, finished)}
    out["_providers"] = session.get_providers()
    out_path = _path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
