"""Cold-start smoke test of a verified bundle on this host, against a hardware profile.

Flow: load the profile; verify and unpack the bundle into a temporary directory (nothing
runs from an unverified bundle); judge the license (given or attached); check required
providers; run the model in a fresh Python process (``_smoke_child.py``) that times
process start, imports, session creation and the first inference, runs the golden inputs
and a steady-state loop; compare outputs with the golden outputs and every figure with
the profile's budgets; run the bundle's own entrypoint on the golden inputs when it has
one. The temporary directory is removed whatever happens.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oemkit.errors import (
    EXIT_ENV,
    EXIT_FAILED,
    EXIT_OK,
    EnvironmentProblem,
    InputError,
    OemkitError,
)
from oemkit.host.profiles import HostInfo, Profile, detect_host, load_profile
from oemkit.models.report import Check

CHILD = Path(__file__).with_name("_smoke_child.py")


@dataclass
class SmokeResult:
    """Everything a smoke run established; ``exit_code`` follows DESIGN.md."""

    bundle: str
    profile: Profile | None = None
    host: HostInfo | None = None
    checks: list[Check] = field(default_factory=list)
    manifest_sha256: str | None = None
    bundle_name: str | None = None
    bundle_version: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    steady: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    providers: dict[str, list[str]] = field(default_factory=dict)
    environment_error: bool = False
    #: The whole stderr of a process that failed, by check name (``--debug`` prints it).
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        if self.environment_error:
            return EXIT_ENV
        return EXIT_OK if self.ok else EXIT_FAILED

    @property
    def result(self) -> str:
        if not self.ok:
            return "FAILED"
        return "WARNED" if any(c.status == "warn" for c in self.checks) else "PASSED"

    def add(self, name: str, status: str, detail: str, **extra: Any) -> None:
        self.checks.append(Check(name, status, detail, **extra))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle, "name": self.bundle_name, "version": self.bundle_version,
            "manifest_sha256": self.manifest_sha256, "result": self.result, "ok": self.ok,
            "exit_code": self.exit_code,
            "profile": self.profile.to_dict() if self.profile else None,
            "host": self.host.to_dict() if self.host else None,
            "timings_ms": self.timings_ms, "steady_state_ms": self.steady,
            "peak_rss_mb": self.peak_rss_mb, "providers": self.providers,
            "checks": [c.to_dict() for c in self.checks],
        }


def _fail_check(result: SmokeResult, name: str, exc: OemkitError) -> SmokeResult:
    result.add(name, "fail", exc.message, code=exc.code, member=exc.member,
               expected=exc.expected, actual=exc.actual, hint=exc.hint or None)
    return result


def run_smoke(bundle: Path, profile_name: str, trust: Path | bytes, *,
              license_file: Path | None = None, state_path: Path | None = None,
              environment: str | None = None, python: str = sys.executable,
              served: bool = True) -> SmokeResult:
    """Run the whole smoke test; raises only for bad input (profile, paths): exit 2/3.

    ``served``: also run the served phase (``oemkit serve`` on the bundle file with the
    same trust root, license and state file); False: the model-only phase alone.
    """
    from oemkit.host.unpack import unpack_bundle

    result = SmokeResult(bundle=str(bundle))
    # A profile file is checked before anything runs; a name is looked up after unpacking,
    # so that the bundle's own profiles/NAME.yaml takes precedence over a shipped one.
    early = (load_profile(profile_name)
             if profile_name.endswith((".yaml", ".yml")) or "/" in profile_name else None)
    work = Path(tempfile.mkdtemp(prefix="oemkit-smoke-"))
    try:
        report = unpack_bundle(bundle, work / "bundle", trust)
        result.manifest_sha256 = report.manifest_sha256
        result.bundle_name, result.bundle_version = report.name, report.version
        if not report.ok:
            assert report.error is not None
            return _fail_check(result, "verify", report.error)
        result.add("verify", "pass", f"{report.name} {report.version} verified against trust "
                   f"root v{report.trust_root_version}; {report.files} files unpacked")
        root_dir = work / "bundle"
        result.profile = profile = early or load_profile(profile_name, root_dir)
        if not _license(result, report, license_file, state_path, environment):
            return result
        serve_args = None
        if served:
            serve_args = [str(Path(bundle).resolve()), "--trust", str(_trust_file(trust, work)),
                          "--state", str(state_path or work / "served-state.json")]
            if license_file is not None:
                serve_args += ["--license", str(Path(license_file).resolve())]
        run_unpacked(result, report.manifest, root_dir, profile, work, python,
                     served=serve_args, environment=environment)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _trust_file(trust: Path | bytes, work: Path) -> Path:
    if isinstance(trust, bytes):
        path = work / "trust-root.json"
        path.write_bytes(trust)
        return path
    return Path(trust).resolve()


def run_unpacked(result: SmokeResult, manifest: Any, root_dir: Path, profile: Profile,
                 work: Path, python: str, *, served: list[str] | None = None,
                 environment: str | None = None) -> None:
    """The runtime part of a smoke test, on an already verified and unpacked bundle.

    ``install``/``upgrade`` call this on a new slot; ``work`` holds scratch files.
    ``served``: the ``oemkit serve`` target arguments for the served phase (e.g. the
    bundle file and ``--trust ROOT``, or an install prefix); None: model-only.
    """
    root_dir, work = root_dir.resolve(), work.resolve()
    from oemkit.host.profiles import unmet

    result.profile = profile
    result.host = result.host or detect_host()
    reasons = [r for r in unmet(profile, result.host) if "provider" not in r]
    if reasons:
        result.environment_error = True
        result.add("host", "fail", f"this host does not satisfy profile {profile.name}: "
                   + "; ".join(reasons), code="E_PROFILE_UNMET",
                   hint="run on a host that matches the profile, or choose another --profile")
        return
    missing = [p.name for p in profile.providers if p.require and p.name not in
               result.host.providers]
    if missing:
        result.environment_error = True
        result.add("providers", "fail", f"required provider {missing[0]} is not available "
                   f"on this host (available: {', '.join(result.host.providers) or 'none'})",
                   code="E_PROVIDER_MISSING", hint="install the onnxruntime build for this "
                   "accelerator (e.g. onnxruntime-gpu) or choose another --profile")
        return
    ran = _run_child(result, manifest, root_dir, profile, work, python)
    if manifest.runtime.entrypoint and result.ok:
        _run_entrypoint(result, manifest, root_dir, profile, work, python)
    if served is not None and ran and not result.environment_error:
        run_served(result, manifest, root_dir, profile, work, python, served,
                   environment=environment)


def _license(result: SmokeResult, report: Any, license_file: Path | None,
             state_path: Path | None, environment: str | None) -> bool:
    from oemkit._fs import read_input
    from oemkit.host.license_state import bundle_facts, verify_license

    licenses = ([(str(license_file), read_input(license_file, "license", 1 << 20))]
                if license_file else report.licenses)
    crls = [("revocations.crl", report.crl, False)] if report.crl else []
    for name, data in licenses:
        try:
            verdict = verify_license(data, report.root, state_path=state_path, crls=crls,
                                     bundle=bundle_facts(report), environment=environment,
                                     what=name).verdict
        except OemkitError as exc:
            _fail_check(result, "license", exc)
            return False
        status = "warn" if verdict.status == "grace" else "pass"
        result.add("license", status, f"{verdict.claims.license_id}: {verdict.status} until "
                   f"{verdict.claims.expires:%Y-%m-%d}")
    return True


def _child_request(manifest: Any, root: Path, profile: Profile, out: Path) -> dict[str, Any]:
    golden = manifest.runtime.golden or {}
    if not golden:
        raise InputError("E_NO_GOLDEN", "the bundle has no golden inputs to run",
                         hint="add a 'golden:' section to the bundle spec and rebuild")
    return {
        "model": str(root / manifest.runtime.model), "inputs": str(root / golden["inputs"]),
        "providers": [{"name": p.name, "options": p.options} for p in profile.providers],
        "intra_op": profile.intra_op, "inter_op": profile.inter_op, "batch": profile.batch,
        "iterations": profile.iterations, "warmup": profile.warmup,
        "max_seconds": profile.max_seconds, "out": str(out), "t0": time.monotonic(),
    }


def _spawn(result: SmokeResult, args: list[str], timeout: float, what: str) -> bool:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        result.add(what, "fail", f"the runtime did not finish within the profile's "
                   f"{timeout:g} s and was killed", code="E_SMOKE_TIMEOUT",
                   hint="the model hangs or is far too slow for this host")
        return False
    if proc.returncode != 0:
        result.logs[what] = proc.stderr or ""
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        result.add(what, "fail", f"the runtime process exited with status {proc.returncode}: "
                   + " | ".join(tail), code="E_RUNTIME_CRASH",
                   hint="run it with --debug, or check the model on a development host")
        return False
    return True


def _run_child(result: SmokeResult, manifest: Any, root: Path, profile: Profile, work: Path,
               python: str) -> bool:
    """The model-only phase; whether the model process ran to its end."""
    out = work / "child-result.json"
    request = _child_request(manifest, root, profile, out)
    req_path = work / "child-request.json"
    req_path.write_text(json.dumps(request))
    request["t0"] = time.monotonic()
    req_path.write_text(json.dumps(request))
    if not _spawn(result, [python, str(CHILD), str(req_path)], profile.timeout_s, "run"):
        return False
    data = json.loads(out.read_text())
    result.timings_ms = data.get("timings_ms", {})
    result.peak_rss_mb = data.get("peak_rss_mb")
    result.providers = {"requested": data.get("providers_requested", []),
                        "available": data.get("providers_available", []),
                        "used": data.get("providers_used", [])}
    if not data["ok"]:
        code, message = data["error"]["code"], data["error"]["message"]
        hint = "the bundle's model or golden data is broken; rebuild it"
        if code == "E_NO_ONNXRUNTIME":
            result.environment_error = True
            # the model process words its hint by where it runs (a slot venv built from
            # the bundle's wheelhouse, with or without the host's packages; a bare host)
            hint = data["error"].get("hint") or "install onnxruntime on this host"
            if python == sys.executable:  # oemkit's own interpreter: its onnx extra
                from oemkit._extras import ONNX_HINT

                hint = f"install onnxruntime on this host: {ONNX_HINT}"
        result.add("run", "fail", message, code=code, hint=hint)
        return False
    _providers_check(result, profile)
    golden = manifest.runtime.golden
    _compare(result, "golden", data["outputs"], root / golden["outputs"],
             float(golden.get("atol", 1e-5)), float(golden.get("rtol", 1e-4)))
    result.steady = data["steady"]
    _budgets(result, profile)
    return True


def _providers_check(result: SmokeResult, profile: Profile) -> None:
    requested, used = result.providers["requested"], result.providers["used"]
    first = requested[0]
    if used and used[0] == first:
        result.add("providers", "pass", f"running on {first}")
        return
    detail = (f"{first} is not available; fell back to {used[0] if used else 'nothing'} "
              f"(available: {', '.join(result.providers['available'])})")
    required = any(p.require and p.name == first for p in profile.providers)
    result.add("providers", "fail" if required else "warn", detail,
               code="E_PROVIDER_FALLBACK" if required else None,
               hint="install the onnxruntime build for this accelerator" if required else None)


def _compare(result: SmokeResult, name: str, outputs: dict[str, Any], expected_path: Path,
             atol: float, rtol: float) -> None:
    try:
        # keys starting with "_" are not outputs: the runner's own output file (its
        # _timings_ms and _providers) is a golden outputs file as it stands (docs/SPEC.md)
        expected = {k: v for k, v in _load_golden(expected_path).items()
                    if not k.startswith("_")}
    except EnvironmentProblem as exc:  # E_MISSING_EXTRA: numpy reads .npz golden outputs
        result.environment_error = True
        _fail_check(result, name, exc)
        return
    except (OSError, ValueError) as exc:
        result.add(name, "fail", f"golden outputs cannot be read: {exc}",
                   code="E_GOLDEN_INVALID", hint="rebuild the bundle with valid golden data")
        return
    for out_name in sorted(expected):
        want = expected[out_name]
        got = outputs.get(out_name)
        check = f"{name}:{out_name}"
        problem = _golden_problem(want)
        if problem:
            result.add(check, "fail", f"golden output {out_name} is malformed: {problem}",
                       code="E_GOLDEN_INVALID", hint="rebuild the bundle with valid golden data")
            continue
        if got is None:
            result.add(check, "fail", f"the model has no output {out_name!r}",
                       code="E_GOLDEN_MISMATCH", expected=out_name,
                       actual=", ".join(sorted(outputs)))
            continue
        want_seq, got_seq = _sequence(want), _sequence(got)
        if want_seq is not None and ("seq" in want or got_seq is not None):
            _compare_seq(result, check, out_name, want_seq, got_seq, atol, rtol)
            continue
        if "seq" in got or "shape" not in got:
            result.add(check, "fail", f"output {out_name} is a sequence, the golden output a "
                       f"tensor of shape {want['shape']}", code="E_GOLDEN_MISMATCH",
                       expected=f"tensor {want['shape']}", actual="sequence")
            continue
        if list(got["shape"]) != list(want["shape"]):
            result.add(check, "fail", f"output {out_name} has shape {got['shape']}, the golden "
                       f"output {want['shape']}", code="E_GOLDEN_MISMATCH",
                       expected=str(want["shape"]), actual=str(got["shape"]))
            continue
        pairs = [(f"flat index {i}", e, a)
                 for i, (a, e) in enumerate(zip(got["data"], want["data"], strict=True))]
        if _judge(result, check, out_name, pairs, atol, rtol):
            result.add(check, "pass", f"{len(want['data'])} values within atol {atol:g} + "
                       f"rtol {rtol:g}")


#: Non-finite numbers as the server writes them in JSON text (``str(float)``) and as JSON
#: writers spell them.
_NON_FINITE = {"nan": math.nan, "NaN": math.nan, "inf": math.inf, "Infinity": math.inf,
               "-inf": -math.inf, "-Infinity": -math.inf}


def _sequence(entry: Any) -> list[Any] | None:
    """The items of a non-tensor output: ``{"seq": [...]}`` (the model process's form), or
    a BYTES tensor whose elements are JSON texts, one per item (the server's form); None
    for anything else (a tensor)."""
    if not isinstance(entry, dict):
        return None
    if "seq" in entry:
        return entry["seq"] if isinstance(entry["seq"], list) else None
    data = entry.get("data")
    if (entry.get("datatype") != "BYTES" and entry.get("dtype") not in ("object", "bytes",
                                                                         "BYTES")) \
            or not isinstance(data, list):
        return None
    try:
        return [json.loads(item) for item in data]
    except (TypeError, ValueError):
        return None


def _walk(want: Any, got: Any, path: str, leaves: list[tuple[str, Any, Any]]) -> str | None:
    """Collect the (path, expected, actual) leaves of two JSON values; the first place
    where their structure differs (map keys, list lengths), if any."""
    where = path or "the top level"
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"at {where}: expected a map, got {type(got).__name__}"
        if set(want) != set(got):
            return (f"at {where}: keys {sorted(got)}, the golden output has "
                    f"{sorted(want)}")
        for key in sorted(want):
            problem = _walk(want[key], got[key], f"{path}[{key!r}]", leaves)
            if problem:
                return problem
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return f"at {where}: expected {len(want)} items, got {type(got).__name__}"
        if len(got) != len(want):
            return f"at {where}: {len(got)} items, the golden output has {len(want)}"
        for index, (w, g) in enumerate(zip(want, got, strict=True)):
            problem = _walk(w, g, f"{path}[{index}]", leaves)
            if problem:
                return problem
        return None
    leaves.append((where, want, got))
    return None


def _compare_seq(result: SmokeResult, check: str, out_name: str, want: list[Any],
                 got: list[Any] | None, atol: float, rtol: float) -> None:
    if got is None:
        result.add(check, "fail", f"output {out_name} is a tensor, the golden output a "
                   f"sequence of {len(want)} items", code="E_GOLDEN_MISMATCH",
                   expected="sequence", actual="tensor")
        return
    leaves: list[tuple[str, Any, Any]] = []
    problem = _walk(want, got, "", leaves)
    if problem:
        result.add(check, "fail", f"output {out_name} differs from the golden output {problem}",
                   code="E_GOLDEN_MISMATCH",
                   hint="the model, runtime or hardware computes different results")
        return
    if _judge(result, check, out_name, leaves, atol, rtol):
        result.add(check, "pass", f"{len(want)} items ({len(leaves)} values) within atol "
                   f"{atol:g} + rtol {rtol:g}")


def _number(value: Any) -> Any:
    return _NON_FINITE.get(value, value) if isinstance(value, str) else value


def _judge(result: SmokeResult, check: str, out_name: str,
           pairs: list[tuple[str, Any, Any]], atol: float, rtol: float) -> bool:
    """Compare (where, expected, actual) values; add the failure naming the worst one and
    return False, or return True. Numbers: |actual - expected| <= atol + rtol * |expected|,
    a NaN never matches and infinities must match exactly; anything else must be equal."""
    worst: tuple[float, str, Any, Any] = (-1.0, "", 0.0, 0.0)
    for where, e, a in pairs:
        e, a = _number(e), _number(a)
        numeric = isinstance(e, (int, float)) and isinstance(a, (int, float))
        if not numeric or not math.isfinite(e) or not math.isfinite(a):
            if not (a == e and (not numeric or not math.isnan(a))):
                worst = (math.inf, where, e, float("nan") if a is None else a)
                break
            continue
        excess = abs(a - e) - (atol + rtol * abs(e))
        if excess > worst[0]:
            worst = (excess, where, e, a)
    excess, where, e, a = worst
    if excess <= 0:
        return True
    what = "NaN" if isinstance(a, float) and math.isnan(a) else f"{a!r}"
    allowed = (f" (allowed |diff| <= {atol + rtol * abs(e):.3g})"
               if isinstance(e, (int, float)) and math.isfinite(e) else "")
    result.add(check, "fail", f"output {out_name} differs from the golden output at {where}: "
               f"expected {e!r}, got {what}{allowed}", code="E_GOLDEN_MISMATCH",
               expected=repr(e), actual=what,
               hint="the model, runtime or hardware computes different results")
    return False


def _golden_problem(want: Any) -> str | None:
    if isinstance(want, dict) and "seq" in want:
        return None if isinstance(want["seq"], list) else "seq must be a list"
    if not isinstance(want, dict) or not {"shape", "data"} <= set(want):
        return "each output needs shape and data (or seq)"
    if not isinstance(want["data"], list) or not isinstance(want["shape"], list):
        return "shape and data must be lists"
    if math.prod(int(d) for d in want["shape"]) != len(want["data"]):
        return f"shape {want['shape']} does not hold {len(want['data'])} values"
    return None


def _load_golden(path: Path) -> dict[str, Any]:
    """Golden tensors from JSON ({name: {dtype, shape, data}}) or a NumPy .npz archive."""
    if path.suffix == ".npz":
        try:
            import numpy as np
        except ImportError as exc:
            from oemkit._extras import missing_onnx

            raise missing_onnx("reading .npz golden outputs", ["numpy"]) from exc

        with np.load(path, allow_pickle=False) as archive:
            return {k: {"dtype": str(archive[k].dtype), "shape": list(archive[k].shape),
                        "data": archive[k].ravel().tolist()} for k in archive.files}
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _budgets(result: SmokeResult, profile: Profile) -> None:
    t = result.timings_ms
    cold = t.get("process_start", 0) + t.get("imports", 0) + t.get("session", 0)
    result.timings_ms["cold_start"] = cold
    figures = [
        ("cold start", cold, profile.budgets.get("cold_start_ms"), "ms"),
        ("first inference", t.get("first_inference", 0.0),
         profile.budgets.get("first_inference_ms"), "ms"),
        (f"p95 latency (batch {profile.batch})", result.steady.get("p95", 0.0),
         profile.budgets.get("p95_ms"), "ms"),
        ("peak RSS", result.peak_rss_mb or 0.0, profile.budgets.get("peak_rss_mb"), "MB"),
    ]
    for label, value, budget, unit in figures:
        if budget is None:
            result.add(label, "info", f"{value:.3g} {unit} (no budget)")
        elif value <= budget:
            result.add(label, "pass", f"{value:.3g} {unit} <= {budget:g} {unit}")
        else:
            result.add(label, "fail", f"{value:.3g} {unit} exceeds the budget of {budget:g} "
                       f"{unit}", code="E_BUDGET", expected=f"<= {budget:g} {unit}",
                       actual=f"{value:.3g} {unit}",
                       hint=f"this host is slower than profile {profile.name} promises")


def _run_entrypoint(result: SmokeResult, manifest: Any, root: Path, profile: Profile,
                    work: Path, python: str) -> None:
    golden = manifest.runtime.golden
    out = work / "entrypoint-out.json"
    args = [python, str(root / manifest.runtime.entrypoint), "--model",
            str(root / manifest.runtime.model), "--inputs", str(root / golden["inputs"]),
            "--providers", ",".join(p.name for p in profile.providers), "--out", str(out)]
    if not _spawn(result, args, profile.timeout_s, "entrypoint"):
        return
    try:
        outputs = {k: v for k, v in json.loads(out.read_text()).items()
                   if not k.startswith("_")}
    except (OSError, ValueError) as exc:
        result.add("entrypoint", "fail", f"the entrypoint wrote no readable output: {exc}",
                   code="E_RUNTIME_CRASH", hint="check the bundle's entrypoint")
        return
    _compare(result, "entrypoint", outputs, root / golden["outputs"],
             float(golden.get("atol", 1e-5)), float(golden.get("rtol", 1e-4)))


# --------------------------------------------------------------------------- served phase

#: Allowances over the model-only budgets when a profile has no served budget of its own
#: (docs/SMOKE.md "Budgets of the served phase"): the server's cold start also pays for
#: the interpreter and oemkit's start, verifying and unpacking the bundle file, binding,
#: the license check and the HTTP stack; its first inference for HTTP and JSON.
SERVE_READY_ALLOWANCE_MS = 3000.0
SERVE_FIRST_INFERENCE_ALLOWANCE_MS = 100.0
#: SIGTERM to exit when the profile has no ``serve_shutdown_ms``.
SERVE_SHUTDOWN_MS = 5000.0


@dataclass
class _Server:
    """The ``oemkit serve`` process of the served phase."""

    proc: subprocess.Popen[bytes]
    log: Path
    t0: float
    port: int = 0

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        rows = []
        for line in text.strip().splitlines()[-lines:]:
            try:
                doc = json.loads(line)
                rows.append(str(doc.get("msg", line)) if isinstance(doc, dict) else line)
            except ValueError:
                rows.append(line)
        return " | ".join(rows)

    def logged(self, msg: str) -> dict[str, Any]:
        """The server's JSON log line with this message (the first), or {}."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return {}
        for line in text.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("msg") == msg:
                return doc
        return {}

    def http(self, method: str, path: str, body: bytes | None = None,
             timeout: float = 10.0) -> tuple[int, bytes]:
        """One request on a fresh connection: status and body.

        Raises:
            OSError: no connection, a timeout, or no well-formed HTTP answer.
        """
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body, headers)
            res = conn.getresponse()
            return res.status, res.read()
        except http.client.HTTPException as exc:  # a malformed or cut-off answer
            raise OSError(f"no well-formed HTTP answer: {exc!r}") from None
        finally:
            conn.close()


def _served_budget(profile: Profile, key: str) -> tuple[float, str]:
    """The budget for a served figure and where it comes from."""
    b = profile.budgets
    if key in b:
        return float(b[key]), f"profile {key}"
    if key == "serve_ready_ms" and "cold_start_ms" in b:
        return (float(b["cold_start_ms"]) + SERVE_READY_ALLOWANCE_MS,
                f"cold_start_ms + {SERVE_READY_ALLOWANCE_MS:g} ms")
    if key == "serve_first_inference_ms" and "first_inference_ms" in b:
        return (float(b["first_inference_ms"]) + SERVE_FIRST_INFERENCE_ALLOWANCE_MS,
                f"first_inference_ms + {SERVE_FIRST_INFERENCE_ALLOWANCE_MS:g} ms")
    if key == "serve_shutdown_ms":
        return SERVE_SHUTDOWN_MS, "default"
    return math.inf, "no budget"


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _budget_check(result: SmokeResult, check: str, label: str, value: float,
                  profile: Profile, key: str) -> None:
    budget, origin = _served_budget(profile, key)
    if budget == math.inf:
        result.add(check, "info", f"{label} {_ms(value)} ms (no budget)")
    elif value <= budget:
        result.add(check, "pass", f"{label} {_ms(value)} ms <= {budget:g} ms ({origin})")
    else:
        result.add(check, "fail", f"{label} {_ms(value)} ms exceeds the budget of {budget:g} ms "
                   f"({origin})", code="E_BUDGET", expected=f"<= {budget:g} ms",
                   actual=f"{_ms(value)} ms",
                   hint=f"this host is slower than profile {profile.name} promises")


def _served_crash(result: SmokeResult, server: _Server, check: str) -> None:
    """The server process exited early: its own error code when it printed one."""
    import re

    code = server.proc.returncode
    log = server.log.read_text(errors="replace") if server.log.exists() else ""
    result.logs[check] = log
    found = re.search(r"\berror (E_[A-Z0-9_]+):", log)
    if code == 4:
        result.environment_error = True
    result.add(check, "fail", f"the server process exited with status {code} before it was "
               f"ready: {server.tail()}", code=found.group(1) if found else "E_RUNTIME_CRASH",
               hint="run 'oemkit serve' on the bundle by hand (or smoke with --debug for its "
                    "whole log); 'oemkit smoke --model-only' skips the served phase")


def _golden_request(path: Path) -> bytes:
    """The golden inputs as an Open Inference Protocol JSON request body.

    Raises:
        ValueError: an input whose dtype the protocol has no datatype for.
        EnvironmentProblem: E_MISSING_EXTRA (numpy, for .npz inputs).
    """
    from oemkit.serve.tensors import DATATYPES

    by_dtype = {v: k for k, v in DATATYPES.items() if k != "BYTES"}
    inputs = []
    for name, spec in sorted(_load_golden(path).items()):
        dtype = str(spec.get("dtype", "float32"))
        if dtype not in by_dtype:
            raise ValueError(f"golden input {name} has dtype {dtype}, which cannot be sent")
        inputs.append({"name": name, "datatype": by_dtype[dtype], "shape": spec["shape"],
                       "data": spec["data"]})
    return json.dumps({"inputs": inputs}).encode()


def run_served(result: SmokeResult, manifest: Any, root_dir: Path, profile: Profile,
               work: Path, python: str, served: list[str], *,
               environment: str | None = None) -> None:
    """The served phase: start ``oemkit serve`` (``served`` are its target arguments, e.g.
    ``[BUNDLE, "--trust", ROOT]``) in a fresh process on a free loopback port, time it to
    listening, ready and the first inference over HTTP, compare the golden outputs, read
    ``/metrics``, stop it with SIGTERM. Checks are named ``served:...``; the process never
    outlives this call."""
    import os

    log = work / "served.log"
    port_file = work / "served.port"
    drain = _served_budget(profile, "serve_shutdown_ms")[0] / 1000.0
    args = [python, "-m", "oemkit", "serve", *served, "--profile",
            profile.source if Path(profile.source).is_file() else profile.name,
            "--workers", "1", "--host", "127.0.0.1", "--port", "0",
            "--port-file", str(port_file), "--drain", f"{min(drain, 3600.0):g}"]
    env = dict(os.environ)
    if environment is not None:
        env["OEMKIT_ENV"] = environment
    with log.open("wb") as handle:
        t0 = time.monotonic()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=handle, env=env)
    server = _Server(proc, log, t0)
    try:
        if _served_start(result, server, port_file, profile) and \
                _served_ready(result, server, profile):
            _served_requests(result, server, manifest, root_dir, profile)
        _served_stop(result, server, profile)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _served_start(result: SmokeResult, server: _Server, port_file: Path,
                  profile: Profile) -> bool:
    from oemkit.host.service import wait_for_port

    port = wait_for_port(server.proc, port_file, server.t0 + profile.timeout_s, poll_s=0.005)
    if port is None:
        if server.proc.poll() is not None:
            _served_crash(result, server, "served:start")
        elif port_file.exists():  # written atomically: only a foreign file gets here
            result.add("served:start", "fail", f"{port_file} holds no port",
                       code="E_RUNTIME_CRASH", hint="check the server's log")
        else:
            result.add("served:start", "fail", f"the server was not listening within the "
                       f"profile's {profile.timeout_s:g} s", code="E_SMOKE_TIMEOUT",
                       hint="the server hangs or is far too slow for this host")
        return False
    listening = (time.monotonic() - server.t0) * 1000.0
    result.timings_ms["serve_start"] = listening
    server.port = port
    result.add("served:start", "pass", f"oemkit serve listening on 127.0.0.1:{server.port} "
               f"after {listening:.0f} ms")
    return True


def _served_ready(result: SmokeResult, server: _Server, profile: Profile) -> bool:
    deadline = server.t0 + profile.timeout_s
    while True:
        if server.proc.poll() is not None:
            _served_crash(result, server, "served:ready")
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            result.add("served:ready", "fail", f"the server was not ready within the profile's "
                       f"{profile.timeout_s:g} s", code="E_SMOKE_TIMEOUT",
                       hint="the server hangs or is far too slow for this host")
            return False
        try:
            status, body = server.http("GET", "/v2/health/ready", timeout=min(remaining, 5.0))
        except OSError:
            time.sleep(0.005)
            continue
        if status == 200:
            break
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        doc = doc if isinstance(doc, dict) else {}
        result.add("served:ready", "fail", f"/v2/health/ready answered {status}: "
                   f"{doc.get('error', body[:200].decode(errors='replace'))}",
                   code=str(doc.get("code") or "E_NOT_READY"), hint=doc.get("hint") or None)
        return False
    ready = (time.monotonic() - server.t0) * 1000.0
    result.timings_ms["serve_ready"] = ready
    line = server.logged("ready")
    if isinstance(line.get("model_load_s"), (int, float)):
        result.timings_ms["serve_model_load"] = float(line["model_load_s"]) * 1000.0
    _budget_check(result, "served:ready", "process start to ready", ready, profile,
                  "serve_ready_ms")
    return True


def _served_requests(result: SmokeResult, server: _Server, manifest: Any, root: Path,
                     profile: Profile) -> None:
    golden = manifest.runtime.golden
    try:
        body = _golden_request(root / golden["inputs"])
    except EnvironmentProblem as exc:
        result.environment_error = True
        _fail_check(result, "served:golden", exc)
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result.add("served:golden", "fail", f"golden inputs cannot be sent: {exc}",
                   code="E_GOLDEN_INVALID", hint="rebuild the bundle with valid golden data")
        return
    path = f"/v2/models/{manifest.name}/infer"
    t = time.monotonic()
    try:
        status, reply = server.http("POST", path, body, timeout=profile.timeout_s)
    except OSError as exc:
        result.add("served:golden", "fail", f"POST {path} failed: {exc}", code="E_INFERENCE",
                   hint="check the server's log (smoke with --debug shows it)")
        result.logs["served:golden"] = server.log.read_text(errors="replace")
        return
    first = (time.monotonic() - t) * 1000.0
    result.timings_ms["serve_first_inference"] = first
    try:
        doc = json.loads(reply)
    except ValueError:
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    if status != 200 or not isinstance(doc.get("outputs"), list):
        result.add("served:golden", "fail", f"POST {path} answered {status}: "
                   f"{doc.get('error', reply[:200].decode(errors='replace'))}",
                   code=str(doc.get("code") or "E_INFERENCE"),
                   hint=doc.get("hint") or "the server fails on the golden inputs")
        return
    _budget_check(result, "served:first inference", "first inference over HTTP", first,
                  profile, "serve_first_inference_ms")
    outputs = {o["name"]: o for o in doc["outputs"] if isinstance(o, dict) and "name" in o}
    _compare(result, "served:golden", outputs, root / golden["outputs"],
             float(golden.get("atol", 1e-5)), float(golden.get("rtol", 1e-4)))
    _served_metrics(result, server, manifest.name, successes=1)


def _served_metrics(result: SmokeResult, server: _Server, model: str, successes: int) -> None:
    check = "served:metrics"
    try:
        status, body = server.http("GET", "/metrics")
        from prometheus_client.parser import text_string_to_metric_families

        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    except ImportError:
        result.add(check, "warn", "prometheus_client is not installed here: /metrics not read")
        return
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        result.add(check, "fail", f"/metrics cannot be read or parsed: {exc}",
                   code="E_SERVE_METRICS", hint="check the server's /metrics by hand")
        return
    if status != 200:
        result.add(check, "fail", f"/metrics answered {status}", code="E_SERVE_METRICS",
                   hint="check the server's /metrics by hand")
        return
    requests = families.get("oemkit_requests")
    counted = sum(s.value for s in (requests.samples if requests else [])
                  if s.name == "oemkit_requests_total" and s.labels.get("model") == model
                  and s.labels.get("outcome") == "success")
    license_family = families.get("oemkit_license_state")
    states = [s.labels.get("state") for s in (license_family.samples if license_family else [])
              if s.value == 1]
    judged = next((c.status for c in result.checks if c.name == "license"), "")
    expected_state = {"pass": "valid", "warn": "grace"}.get(judged)
    problems = []
    if counted < successes:
        problems.append(f"oemkit_requests_total{{outcome=\"success\"}} is {counted:g}, "
                        f"{successes} inference request(s) succeeded")
    if len(states) != 1:
        problems.append(f"oemkit_license_state is 1 for {states or 'no state'}, not one state")
    elif expected_state is not None and states[0] != expected_state:
        problems.append(f"the server's license state is {states[0]}, the smoke test's "
                        f"license check found {expected_state}")
    if problems:
        result.add(check, "fail", "; ".join(problems), code="E_SERVE_METRICS",
                   hint="the server's metrics do not show what it did")
        return
    result.add(check, "pass", f"{len(families)} metric families parse; {counted:g} "
               f"successful request(s); license state {states[0]}")


def _served_stop(result: SmokeResult, server: _Server, profile: Profile) -> None:
    import signal

    if server.proc.poll() is not None:
        if not any(c.name.startswith("served:") and c.status == "fail" for c in result.checks):
            _served_crash(result, server, "served:shutdown")
        return
    budget, _ = _served_budget(profile, "serve_shutdown_ms")
    t = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(timeout=max(budget / 1000.0, profile.timeout_s))
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        result.add("served:shutdown", "fail", f"the server did not exit within "
                   f"{max(budget / 1000.0, profile.timeout_s):g} s of SIGTERM and was killed",
                   code="E_SMOKE_TIMEOUT", hint="the server does not drain; check its log")
        return
    took = (time.monotonic() - t) * 1000.0
    result.timings_ms["serve_shutdown"] = took
    if code != 0:
        result.logs["served:shutdown"] = server.log.read_text(errors="replace")
        result.add("served:shutdown", "fail", f"the server exited with status {code} after "
                   f"SIGTERM: {server.tail()}", code="E_RUNTIME_CRASH",
                   hint="a drained server exits 0; check its log (smoke with --debug)")
        return
    _budget_check(result, "served:shutdown", "SIGTERM to exit 0", took, profile,
                  "serve_shutdown_ms")
