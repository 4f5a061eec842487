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
              environment: str | None = None, python: str = sys.executable) -> SmokeResult:
    """Run the whole smoke test; raises only for bad input (profile, paths): exit 2/3."""
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
        run_unpacked(result, report.manifest, root_dir, profile, work, python)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_unpacked(result: SmokeResult, manifest: Any, root_dir: Path, profile: Profile,
                 work: Path, python: str) -> None:
    """The runtime part of a smoke test, on an already verified and unpacked bundle.

    ``install``/``upgrade`` call this on a new slot; ``work`` holds scratch files.
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
    _run_child(result, manifest, root_dir, profile, work, python)
    if manifest.runtime.entrypoint and result.ok:
        _run_entrypoint(result, manifest, root_dir, profile, work, python)


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
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        result.add(what, "fail", f"the runtime process exited with status {proc.returncode}: "
                   + " | ".join(tail), code="E_RUNTIME_CRASH",
                   hint="run it with --debug, or check the model on a development host")
        return False
    return True


def _run_child(result: SmokeResult, manifest: Any, root: Path, profile: Profile, work: Path,
               python: str) -> None:
    out = work / "child-result.json"
    request = _child_request(manifest, root, profile, out)
    req_path = work / "child-request.json"
    req_path.write_text(json.dumps(request))
    request["t0"] = time.monotonic()
    req_path.write_text(json.dumps(request))
    if not _spawn(result, [python, str(CHILD), str(req_path)], profile.timeout_s, "run"):
        return
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
            hint = "install onnxruntime on this host"
            if python == sys.executable:  # oemkit's own interpreter: its onnx extra
                from oemkit._extras import ONNX_HINT

                hint += f": {ONNX_HINT}"
        result.add("run", "fail", message, code=code, hint=hint)
        return
    _providers_check(result, profile)
    golden = manifest.runtime.golden
    _compare(result, "golden", data["outputs"], root / golden["outputs"],
             float(golden.get("atol", 1e-5)), float(golden.get("rtol", 1e-4)))
    result.steady = data["steady"]
    _budgets(result, profile)


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
        expected = _load_golden(expected_path)
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
        if list(got["shape"]) != list(want["shape"]):
            result.add(check, "fail", f"output {out_name} has shape {got['shape']}, the golden "
                       f"output {want['shape']}", code="E_GOLDEN_MISMATCH",
                       expected=str(want["shape"]), actual=str(got["shape"]))
            continue
        worst = (-1.0, 0, 0.0, 0.0)
        for i, (a, e) in enumerate(zip(got["data"], want["data"], strict=True)):
            if a is None or (isinstance(a, float) and not math.isfinite(a)) or not math.isfinite(e):
                if a != e:  # NaN never matches; infinities must match exactly
                    worst = (math.inf, i, e, float("nan") if a is None else a)
                    break
                continue
            excess = abs(a - e) - (atol + rtol * abs(e))
            if excess > worst[0]:
                worst = (excess, i, e, a)
        excess, index, e, a = worst
        if excess > 0:
            what = "NaN" if isinstance(a, float) and math.isnan(a) else f"{a!r}"
            result.add(check, "fail", f"output {out_name} differs from the golden output at "
                       f"flat index {index}: expected {e!r}, got {what} (allowed |diff| <= "
                       f"{atol + rtol * abs(e):.3g})", code="E_GOLDEN_MISMATCH",
                       expected=repr(e), actual=what,
                       hint="the model, runtime or hardware computes different results")
        else:
            result.add(check, "pass", f"{len(want['data'])} values within atol {atol:g} + "
                       f"rtol {rtol:g}")


def _golden_problem(want: Any) -> str | None:
    if not isinstance(want, dict) or not {"shape", "data"} <= set(want):
        return "each output needs shape and data"
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
