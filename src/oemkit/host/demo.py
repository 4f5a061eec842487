"""`oemkit demo`: the whole release path on the built-in example, with the example keys.

Builds ``bundles/example``, creates a trust root from ``keys-example`` (root key, plus the
bundle key for bundle signing), signs, verifies, and leaves the bundle and
``trust-root.json`` in the output directory. Then it serves the bundle as a customer would
(``oemkit serve BUNDLE --trust ROOT`` in a child process, on 127.0.0.1 and a free port),
makes one inference over HTTP (Open Inference Protocol v2) with the golden input, and stops
the server with SIGTERM. The child is a separate process so that this one imports none of
the serving stack; the HTTP client is the standard library's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oemkit._fs import atomic_write_bytes
from oemkit.errors import EnvironmentProblem, VerificationError

EXAMPLE_PASSPHRASE = b"oemkit-example-insecure"
#: Seconds the server may take to listen and load the model, and to drain on SIGTERM.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
#: Golden dtypes (NumPy names) as Open Inference Protocol datatypes.
OIP_DATATYPES = {
    "float32": "FP32", "float64": "FP64", "float16": "FP16", "int8": "INT8", "int16": "INT16",
    "int32": "INT32", "int64": "INT64", "uint8": "UINT8", "uint16": "UINT16",
    "uint32": "UINT32", "uint64": "UINT64", "bool": "BOOL"}


@dataclass
class Served:
    """What the served demo did: the port, the answer and how long each step took."""

    port: int
    model: str
    outputs: dict[str, dict[str, Any]]
    top: list[tuple[int, str, float]]  # per row of the first output: (index, label, score)
    timings_ms: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    log: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The served demo as JSON (``oemkit demo --json``)."""
        return {"port": self.port, "model": self.model, "outputs": self.outputs,
                "top": [{"index": i, "label": label, "score": score}
                        for i, label, score in self.top],
                "timings_ms": self.timings_ms, "exit_code": self.exit_code,
                "log": str(self.log) if self.log else None}


def example_paths(name: str = "example") -> tuple[Path, Path]:
    """(example spec directory, example keys directory) from a checkout or the wheel:
    ``example`` (0.2.0) or ``example-v1`` (0.1.0, the release it upgrades)."""
    here = Path(__file__).resolve()
    candidates = [here.parents[3], here.parents[1] / "_examples"]
    for base in candidates:
        spec, keys = base / "bundles" / name, base / "keys-example"
        if (spec / "bundle.yaml").is_file() and (keys / "bundle.key").is_file():
            return spec, keys
    raise EnvironmentProblem(
        "E_NO_EXAMPLE", "the built-in example bundle is not installed",
        hint="the example ships in the oemkit wheel (oemkit/_examples) and in a source "
             "checkout; this installation lacks it: reinstall oemkit "
             "(pip install --force-reinstall oemkit, or pip install -e . in a checkout)")


def run_demo(out: Path, *, serve: bool = True, releases: int = 1) -> dict[str, Any]:
    """Build, sign and verify the example; with ``serve`` (and a verified bundle) serve it
    and make one inference (``result["served"]``, a :class:`Served`). With ``releases=2``
    the release before it (``example-v1``, 0.1.0) is built, signed and verified too
    (``result["previous"]``, ``result["previous_report"]``), for the upgrade walkthrough.

    Raises:
        EnvironmentProblem: E_NO_EXAMPLE; E_DEMO_SERVE when the server does not start,
            answer or stop cleanly (its log is named).
        VerificationError: E_DEMO_SERVE when the answer is not the golden output.
    """
    from oemkit.crypto.keys import load_private_file
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.bundle import verify_bundle
    from oemkit.verify.trust import parse_root

    spec, keys_dir = example_paths()
    root_key = load_private_file(keys_dir / "root.key", EXAMPLE_PASSPHRASE)
    bundle_key = load_private_file(keys_dir / "bundle.key", EXAMPLE_PASSPHRASE)
    result = build_bundle(spec / "bundle.yaml", out)
    v1 = init_root([root_key], names=["example-root"])
    v2 = add_key(parse_root(v1), bundle_key.public, ["bundle"], [root_key], name="example-bundle")
    trust_path = Path(out) / "trust-root.json"
    atomic_write_bytes(trust_path, v2)
    sign_bundle(result.path, [bundle_key])
    report = verify_bundle(result.path, trust_path)
    done: dict[str, Any] = {"bundle": result.path, "trust_root": trust_path,
                            "report": report, "served": None, "previous": None,
                            "previous_report": None}
    if releases >= 2:
        older = build_bundle(example_paths("example-v1")[0] / "bundle.yaml", out)
        sign_bundle(older.path, [bundle_key])
        done["previous"] = older.path
        done["previous_report"] = verify_bundle(older.path, trust_path)
    if serve and report.ok:
        done["served"] = serve_once(result.path, trust_path, spec, Path(out), result.name)
    return done


def _fail(message: str, log: Path) -> EnvironmentProblem:
    tail = ""
    with contextlib.suppress(OSError):
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        tail = f"; last log line: {lines[-1]}" if lines else ""
    return EnvironmentProblem("E_DEMO_SERVE", f"{message} (log: {log}){tail}",
                              hint="run the server yourself to see why: oemkit serve BUNDLE "
                                   "--trust ROOT")


def _request(port: int, method: str, path: str, body: bytes | None = None,
             timeout: float = 10.0) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body, headers)
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def _wait_ready(proc: subprocess.Popen[bytes], port_file: Path, log: Path,
                deadline: float) -> int:
    """The port once the server listens and /v2/health/ready answers 200."""
    from oemkit.host.service import wait_for_port

    port = wait_for_port(proc, port_file, deadline)
    if port is None:
        if proc.poll() is not None:
            raise _fail(f"the server exited with status {proc.returncode} before listening",
                        log)
        raise _fail(f"the server did not listen within {START_TIMEOUT_S:g} s", log)
    status, body = 0, b""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _fail(f"the server exited with status {proc.returncode}", log)
        try:
            status, body = _request(port, "GET", "/v2/health/ready", timeout=2.0)
        except OSError:
            status = 0
        if status == 200:
            return port
        time.sleep(0.02)
    said = body.decode("utf-8", "replace")[:200]
    raise _fail(f"the server was not ready within {START_TIMEOUT_S:g} s (last answer "
                f"{status}: {said})", log)


def _infer_body(inputs: dict[str, Any]) -> bytes:
    tensors = []
    for name, tensor in sorted(inputs.items()):
        tensors.append({"name": name, "datatype": OIP_DATATYPES.get(str(tensor["dtype"]),
                                                                     "FP32"),
                        "shape": tensor["shape"], "data": tensor["data"]})
    return json.dumps({"inputs": tensors}).encode("utf-8")


def _top(output: dict[str, Any], labels: list[str]) -> list[tuple[int, str, float]]:
    """Per row of a [rows, classes] score tensor: the best class, its label and score."""
    shape, data = output.get("shape") or [], output.get("data") or []
    if len(shape) != 2 or not shape[1] or len(data) != shape[0] * shape[1]:
        return []
    rows = []
    for r in range(shape[0]):
        row = [float(v) for v in data[r * shape[1]:(r + 1) * shape[1]]]
        best = max(range(len(row)), key=row.__getitem__)
        rows.append((best, labels[best] if best < len(labels) else str(best), row[best]))
    return rows


def _golden(spec: Path) -> tuple[dict[str, Any], dict[str, Any], float, float, list[str]]:
    """The example's golden inputs and outputs, tolerances and config labels."""
    from oemkit.schema import load_yaml

    raw, _ = load_yaml((spec / "bundle.yaml").read_bytes(), "bundle.yaml")
    golden = raw["golden"]
    inputs = json.loads((spec / golden["inputs"]).read_text(encoding="utf-8"))
    expected = {k: v for k, v in json.loads(
        (spec / golden["outputs"]).read_text(encoding="utf-8")).items()
        if not k.startswith("_")}
    labels: list[str] = []
    if "config" in raw:
        config = json.loads((spec / raw["config"]["file"]).read_text(encoding="utf-8"))
        labels = [str(label) for label in config.get("labels", [])]
    return (inputs, expected, float(golden.get("atol", 1e-5)), float(golden.get("rtol", 1e-4)),
            labels)


def _check_answer(outputs: dict[str, dict[str, Any]], expected: dict[str, Any], atol: float,
                  rtol: float) -> str | None:
    """Why the served outputs are not the golden ones, or None."""
    for name, want in expected.items():
        got = outputs.get(name)
        if got is None:
            return f"the answer has no output {name!r}"
        if list(got.get("shape", [])) != list(want["shape"]):
            return f"output {name!r} has shape {got.get('shape')}, expected {want['shape']}"
        for i, (a, e) in enumerate(zip(got["data"], want["data"], strict=True)):
            if abs(float(a) - float(e)) > atol + rtol * abs(float(e)):
                return f"output {name!r}[{i}] is {a}, expected {e}"
    return None


def serve_once(bundle: Path, trust: Path, spec: Path, out: Path, model: str) -> Served:
    """``oemkit serve BUNDLE --trust ROOT --port 0 --workers 1`` in a child process: wait
    until ready, one inference with the golden inputs over HTTP, SIGTERM, clean exit.

    Raises:
        EnvironmentProblem: E_DEMO_SERVE (no start, no answer, no clean stop).
        VerificationError: E_DEMO_SERVE (an answer other than the golden output).
    """
    inputs, expected, atol, rtol, labels = _golden(spec)
    port_file, log = out / "serve.port", out / "serve.log"
    with contextlib.suppress(FileNotFoundError):
        port_file.unlink()
    timings: dict[str, float] = {}
    start = time.monotonic()
    cmd = [sys.executable, "-m", "oemkit", "serve", str(bundle), "--trust", str(trust),
           "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
           "--workers", "1", "--state", str(out / "license-state.json"), "--drain", "5"]
    env = {**os.environ, "OEMKIT_STATE": str(out / "license-state.json")}
    with open(log, "wb") as log_handle:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log_handle, env=env)
        try:
            port = _wait_ready(proc, port_file, log, start + START_TIMEOUT_S)
            timings["start_to_ready"] = (time.monotonic() - start) * 1000.0
            sent = time.monotonic()
            try:
                status, body = _request(port, "POST", f"/v2/models/{model}/infer",
                                        _infer_body(inputs))
            except OSError as exc:
                raise _fail(f"the inference request failed: {exc}", log) from exc
            timings["inference"] = (time.monotonic() - sent) * 1000.0
            if status != 200:
                raise _fail(f"the inference answered {status}: "
                            f"{body.decode('utf-8', 'replace')[:200]}", log)
            answer = json.loads(body)
            outputs = {o["name"]: {"datatype": o.get("datatype"), "shape": o.get("shape"),
                                   "data": o.get("data")} for o in answer.get("outputs", [])}
        finally:
            stopping = time.monotonic()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise _fail(f"the server did not stop within {STOP_TIMEOUT_S:g} s of "
                            "SIGTERM", log) from None
            timings["stop"] = (time.monotonic() - stopping) * 1000.0
            with contextlib.suppress(OSError):
                port_file.unlink()
    if code != 0:
        raise _fail(f"the server exited with status {code} after SIGTERM", log)
    problem = _check_answer(outputs, expected, atol, rtol)
    if problem:
        raise VerificationError("E_DEMO_SERVE", f"the served answer is not the golden "
                                f"output: {problem}", hint="the model or runtime computes "
                                "different results on this host: run oemkit smoke")
    first = next(iter(expected), None)
    top = _top(outputs[first], labels) if first else []
    return Served(port, model, outputs, top, timings, code, log)
