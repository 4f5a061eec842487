"""The smoke test's child process: a cold start measured from the inside.

Run as a plain script (``python _smoke_child.py REQUEST.json``), never imported, so that
the fresh interpreter loads only what a deployed runtime would: onnxruntime and numpy.
It times imports, session creation and the first inference, runs the golden inputs, a
short steady-state loop, and writes one JSON result file. Errors are reported in the
result with a code; the parent decides what they mean.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, NoReturn

START = time.monotonic()


def _tensor(spec: dict[str, Any], np: Any) -> Any:
    dtype = np.dtype(spec["dtype"])
    data = np.asarray(spec["data"], dtype=dtype)
    return data.reshape(spec["shape"])


def _plain(value: Any) -> Any:
    """A sequence item as JSON: maps with string keys, tensors as nested lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _output(value: Any, np: Any) -> dict[str, Any]:
    """A tensor output as a golden tensor; a non-tensor one (a ``seq(map(...))`` from
    skl2onnx's ZipMap, a sequence of tensors, a map) as ``{"seq": [item, ...]}``, a map
    being a sequence of one item, as the server serves it (docs/SMOKE.md)."""
    if isinstance(value, np.ndarray):
        return {"dtype": str(value.dtype), "shape": list(value.shape),
                "data": value.ravel().tolist()}
    items = value if isinstance(value, (list, tuple)) else [value]
    return {"seq": [_plain(v) for v in items]}


def _fail(result: dict[str, Any], out: str, code: str, message: str,
          hint: str | None = None) -> NoReturn:
    result["ok"] = False
    result["error"] = {"code": code, "message": message}
    if hint:
        result["error"]["hint"] = hint
    _write(result, out)
    sys.exit(0)


#: The .pth file ``install --system-site-packages`` writes into a slot's venv.
HOST_PTH = "_oemkit_host.pth"
#: The two fixes for a slot's venv that lacks the runtime's packages.
SLOT_FIXES = ("Ship the wheels in the bundle (wheelhouse: in the spec, filled by 'oemkit "
              "wheelhouse fetch bundle.yaml --dest wheels'; 'oemkit build --strict' refuses "
              "a wheelhouse that lacks a requirement) or install with "
              "--system-site-packages (the slot's venv then imports this host's packages)")


def _wheel_projects(bundle: Path) -> list[str]:
    """The projects of the wheels a slot's bundle carries (from their file names)."""
    names = set()
    for wheel in bundle.rglob("*.whl"):
        parts = wheel.name[:-4].split("-")
        if len(parts) in (5, 6):
            names.add(parts[0].replace("_", "-").replace(".", "-").lower())
    return sorted(names)


def import_failure(exc: ImportError, prefix: str, base_prefix: str,
                   executable: str) -> tuple[str, str]:
    """The E_NO_ONNXRUNTIME message and hint for the situation this interpreter is in: a
    slot's venv (``PREFIX/slots/S/venv`` beside ``bundle/``: built from the bundle's
    wheelhouse alone, so installing onnxruntime on the host does not help), the same with
    --system-site-packages (then the host's Python lacks them too), or a bare host (oemkit's
    own Python, or another one)."""
    import importlib.util
    from pathlib import Path

    absent = [m for m in ("numpy", "onnxruntime") if importlib.util.find_spec(m) is None]
    missing = " and ".join(absent) or exc.name or "onnxruntime/numpy"
    venv = Path(prefix)
    slot = venv.parent if venv.name == "venv" and (venv.parent / "bundle").is_dir() else None
    if slot is None or prefix == base_prefix:
        return (f"cannot import onnxruntime/numpy with {executable}: {exc}",
                f"install onnxruntime and numpy for {executable}")
    pth = next(iter(venv.glob(f"lib/python*/site-packages/{HOST_PTH}")), None)
    if pth is not None:
        seen = ", ".join(line.strip() for line in pth.read_text().splitlines() if line.strip())
        return (f"cannot import onnxruntime/numpy: neither the slot's venv ({venv}), built "
                f"from the bundle's wheelhouse, nor this host's packages it sees through "
                f"--system-site-packages ({seen}) have {missing} ({exc})",
                f"install onnxruntime and numpy for the Python that runs oemkit on this "
                f"host (its packages are in {seen}), or ship their wheels in the bundle "
                "(wheelhouse: in the spec, 'oemkit wheelhouse fetch')")
    carried = _wheel_projects(slot / "bundle")
    shown = ", ".join(carried[:8]) + (f" and {len(carried) - 8} more" if len(carried) > 8
                                      else "")
    return (f"cannot import onnxruntime/numpy: the slot's venv ({venv}), built from the "
            f"bundle's wheelhouse, has no {missing} ({exc}); the wheelhouse carries "
            f"{len(carried)} project(s){': ' + shown if carried else ''}, and the venv does "
            "not see this host's packages, so onnxruntime installed on the host does not "
            "help: ship the wheels in the bundle or install with --system-site-packages",
            SLOT_FIXES)


def _write(result: dict[str, Any], out: str) -> None:
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        req = json.load(handle)
    out = req["out"]
    result: dict[str, Any] = {"ok": True,
                              "timings_ms": {"process_start": (START - req["t0"]) * 1000.0}}
    t = time.monotonic()
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as exc:
        message, hint = import_failure(exc, sys.prefix, sys.base_prefix, sys.executable)
        _fail(result, out, "E_NO_ONNXRUNTIME", message, hint)
    result["timings_ms"]["imports"] = (time.monotonic() - t) * 1000.0
    result["onnxruntime"] = ort.__version__

    available = ort.get_available_providers()
    requested = [p["name"] for p in req["providers"]]
    chosen = [(p["name"], p.get("options", {})) for p in req["providers"]
              if p["name"] in available]
    if not any(name == "CPUExecutionProvider" for name, _ in chosen):
        chosen.append(("CPUExecutionProvider", {}))
    result.update(providers_requested=requested, providers_available=available)

    options = ort.SessionOptions()
    options.use_deterministic_compute = True
    options.intra_op_num_threads = req.get("intra_op", 0)
    options.inter_op_num_threads = req.get("inter_op", 0)
    options.log_severity_level = 3
    t = time.monotonic()
    try:
        session = ort.InferenceSession(
            req["model"], sess_options=options, providers=[n for n, _ in chosen],
            provider_options=[{k: str(v) for k, v in o.items()} for _, o in chosen])
    except Exception as exc:  # onnxruntime raises several unrelated types
        _fail(result, out, "E_MODEL_LOAD", f"onnxruntime could not load the model: {exc}")
    result["timings_ms"]["session"] = (time.monotonic() - t) * 1000.0
    result["providers_used"] = session.get_providers()

    try:
        if req["inputs"].endswith(".npz"):
            with np.load(req["inputs"], allow_pickle=False) as archive:
                golden = {k: archive[k] for k in archive.files}
        else:
            with open(req["inputs"], encoding="utf-8") as handle:
                golden = {k: _tensor(v, np) for k, v in json.load(handle).items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _fail(result, out, "E_GOLDEN_INVALID", f"golden inputs cannot be read: {exc}")
    declared = {i.name: i for i in session.get_inputs()}
    if set(golden) != set(declared):
        _fail(result, out, "E_GOLDEN_INVALID", f"golden inputs {sorted(golden)} do not match "
              f"the model's inputs {sorted(declared)}")
    for name, value in golden.items():
        shape = declared[name].shape
        if len(shape) != value.ndim or any(isinstance(d, int) and d != s
                                           for d, s in zip(shape, value.shape, strict=True)):
            _fail(result, out, "E_GOLDEN_INVALID", f"golden input {name} has shape "
                  f"{list(value.shape)}, the model expects {shape}")
    t = time.monotonic()
    try:
        outputs = session.run(None, golden)
    except Exception as exc:
        _fail(result, out, "E_INFERENCE", f"inference on the golden inputs failed: {exc}")
    result["timings_ms"]["first_inference"] = (time.monotonic() - t) * 1000.0
    names = [o.name for o in session.get_outputs()]
    result["outputs"] = {n: _output(v, np) for n, v in zip(names, outputs, strict=True)}

    batch = max(1, int(req.get("batch", 1)))
    feed = {}
    for name, value in golden.items():
        reps = -(-batch // max(1, value.shape[0])) if value.ndim else 1
        feed[name] = np.concatenate([value] * reps)[:batch] if value.ndim else value
    latencies = []
    deadline = time.monotonic() + float(req.get("max_seconds", 10.0))
    try:
        for _ in range(int(req.get("warmup", 0))):
            session.run(None, feed)
        for _ in range(int(req.get("iterations", 100))):
            t = time.perf_counter()
            session.run(None, feed)
            latencies.append((time.perf_counter() - t) * 1000.0)
            if time.monotonic() > deadline:
                break
    except Exception as exc:
        _fail(result, out, "E_INFERENCE", f"steady-state inference at batch {batch} failed "
              f"(does the model accept that batch size?): {exc}")
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, round(p / 100.0 * (len(latencies) - 1)))]

    result["steady"] = {"batch": batch, "iterations": len(latencies), "p50": pct(50),
                        "p90": pct(90), "p95": pct(95), "p99": pct(99), "min": latencies[0],
                        "max": latencies[-1], "mean": sum(latencies) / len(latencies)}
    _write(result, out)


if __name__ == "__main__":
    main()
