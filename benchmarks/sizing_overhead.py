"""The sizing measurement loop's overhead against a bare `session.run` loop (issue 7:
at most 2 %).

Both loops run in this process on the same session and feed, alternately, best of
`--rounds`: the bare loop calls `session.run` N times and divides the wall time; the
oemkit loop is the child's own stream loop (timestamps around every call, a list append,
block bookkeeping). Prints both per-call times and the overhead in percent.

    python benchmarks/sizing_overhead.py [--model M] [--inputs I] [--calls 20000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = HERE.parent / "src" / "oemkit" / "measure" / "_sizing_child.py"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(HERE.parent / "bundles/example/model/model.onnx"))
    parser.add_argument("--inputs", default=str(HERE.parent / "bundles/example/golden/inputs.json"))
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=1024,
                        help="width of the second, larger model (an MLP made here)")
    args = parser.parse_args()
    import tempfile

    clock_ns = _clock_cost_ns()
    print(f"reading the clock costs {clock_ns:.0f} ns on this host")
    measure(args.model, args.inputs, args.calls, args.rounds, "example model")
    with tempfile.TemporaryDirectory() as tmp:
        model, inputs = _bigger_model(Path(tmp), args.hidden)
        measure(str(model), str(inputs), max(2000, args.calls // 20), args.rounds,
                f"MLP 4x{args.hidden}x{args.hidden}x3")


def _clock_cost_ns(n: int = 200000) -> float:
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(n):
        clock()
    return (clock() - start) / n


def _bigger_model(folder: Path, hidden: int) -> tuple[Path, Path]:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, hidden), dtype=np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, hidden), dtype=np.float32), "w2")
    w3 = numpy_helper.from_array(rng.standard_normal((hidden, 3), dtype=np.float32), "w3")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h1"]), helper.make_node("Relu", ["h1"], ["a1"]),
         helper.make_node("MatMul", ["a1", "w2"], ["h2"]), helper.make_node("Relu", ["h2"], ["a2"]),
         helper.make_node("MatMul", ["a2", "w3"], ["y"])], "bigger",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w1, w2, w3])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "m.onnx")
    (folder / "in.json").write_text(json.dumps(
        {"x": {"dtype": "float32", "shape": [1, 4], "data": [0.1, 0.2, 0.3, 0.4]}}))
    return folder / "m.onnx", folder / "in.json"


def measure(model_path: str, inputs_path: str, calls: int, rounds: int, label: str) -> None:
    import numpy as np
    import onnxruntime as ort

    spec = importlib.util.spec_from_file_location("sizing_child", CHILD)
    assert spec is not None and spec.loader is not None
    child = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(child)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    golden = {k: np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"])
              for k, v in json.loads(Path(inputs_path).read_text()).items()}
    feed = child._feed(session, golden, 1, np)
    run = session.run
    for _ in range(500):
        run(None, feed)
    bare, ours = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            run(None, feed)
        bare.append((time.perf_counter() - start) / calls * 1000)
        result = {}
        req = {"duration_s": 1e9, "min_samples": calls, "ci_rel": 1e9}
        start = time.perf_counter()
        child._stream(req, result, run, feed, 1)
        wall = time.perf_counter() - start
        ours.append(wall / result["stream"]["samples"] * 1000)
    b, o = min(bare), min(ours)
    print(f"{label}: bare session.run loop {b * 1000:.2f} us per call, oemkit sizing loop "
          f"{o * 1000:.2f} us per call (best of {rounds}): overhead {(o / b - 1) * 100:+.1f} % "
          "(target <= 2 %)")


if __name__ == "__main__":
    main()
