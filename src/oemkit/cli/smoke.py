"""`oemkit smoke`: a thin command over oemkit.measure.smoke (table, ``--json``,
``--junit``, the signed test-result attestation)."""

from __future__ import annotations

from pathlib import Path

import typer

from oemkit.cli._keys import KEY_HELP, PinFile, Pkcs11Module, attestation_key
from oemkit.cli._options import JsonOut, TrustPinned
from oemkit.cli._output import check_table, emit_json, err, guard, safe


def smoke(
    *,
    bundle: Path = typer.Argument(..., help="Bundle to smoke-test."),
    profile: str = typer.Option(..., "--profile", help="Profile name or YAML file."),
    trust: TrustPinned,
    license: Path | None = typer.Option(None, "--license", help="License to check first "
                                        "(default: one attached to the bundle)."),
    state: Path | None = typer.Option(None, "--state", help="License state file."),
    env: str | None = typer.Option(None, "--env", help="This host's environment."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here."),
    attest_key: str | None = typer.Option(None, "--attest-key", metavar="KEY",
                                          help="Sign a test-result attestation." + KEY_HELP),
    out: Path | None = typer.Option(None, "--out", help="Where to write the attestation."),
    model_only: bool = typer.Option(False, "--model-only",
                                    help="Skip the served phase (oemkit serve over HTTP)."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Cold-start smoke test of a verified bundle on this host against a profile.

    Two phases: the model alone in a fresh process, then the served runtime (oemkit serve
    in a fresh process: ready, golden outputs over HTTP, /metrics, SIGTERM); its checks
    are named served:...

    Exit 0: everything passed; 1: a check or budget failed (or verification); 4: this host
    cannot run it (required provider or onnxruntime missing).
    Example: oemkit smoke dist/example-0.1.0.oemb --profile cpu-small --trust
    trust-root.json --junit smoke.xml
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit._time import format_time, now
        from oemkit.cli._output import STATE
        from oemkit.host.license_state import default_state_path
        from oemkit.measure.smoke import run_smoke
        from oemkit.report.junit import junit_xml

        signing_key = attestation_key(
            attest_key, out, pin_file, pkcs11_module,
            example="oemkit smoke B --profile P --trust R --attest-key K --out smoke.intoto.json")
        result = run_smoke(bundle, profile, trust, license_file=license,
                           state_path=state or default_state_path(), environment=env,
                           served=not model_only)
        doc = result.to_dict()
        if junit is not None:
            name = f"oemkit smoke {result.bundle_name or bundle.name}"
            props = {"profile": result.profile.name if result.profile else profile,
                     "manifest_sha256": result.manifest_sha256 or ""}
            atomic_write_bytes(junit, junit_xml(name, result.checks,
                                                classname=f"smoke.{props['profile']}",
                                                properties=props))
        if signing_key is not None and out is not None and result.manifest_sha256:
            from oemkit.release.attest import sign_attestation, test_result_statement

            statement = test_result_statement(result, format_time(now()))
            atomic_write_bytes(out, sign_attestation(statement, signing_key))
            doc["attestation"] = str(out)
        if json_out:
            emit_json(doc)
        check_table(result.checks)
        if STATE["debug"]:
            for name, text in result.logs.items():
                err.print(f"--- stderr of the process behind check {safe(name)} ---",
                          highlight=False)
                for line in text.rstrip().splitlines():
                    err.print(safe(line, markup=False), markup=False, highlight=False)
        t = result.timings_ms
        if "cold_start" in t:
            err.print(f"cold start {t.get('cold_start', 0):.0f} ms (process "
                      f"{t.get('process_start', 0):.0f} + imports {t.get('imports', 0):.0f} + "
                      f"session {t.get('session', 0):.0f}); first inference "
                      f"{t.get('first_inference', 0):.1f} ms")
        if "serve_ready" in t:
            err.print(f"served: listening {t.get('serve_start', 0):.0f} ms, ready "
                      f"{t['serve_ready']:.0f} ms (model load "
                      f"{t.get('serve_model_load', 0):.0f} ms), first inference over HTTP "
                      f"{t.get('serve_first_inference', 0):.1f} ms, SIGTERM to exit "
                      f"{t.get('serve_shutdown', 0):.0f} ms")
        verdict = {"PASSED": "[bold green]PASSED[/]", "WARNED": "[bold yellow]PASSED with "
                   "warnings[/]", "FAILED": "[bold red]FAILED[/]"}[result.result]
        err.print(f"{verdict} smoke test of {safe(bundle)} on profile {safe(profile)}")
        if result.exit_code:
            raise typer.Exit(result.exit_code)
