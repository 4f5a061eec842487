"""`oemkit migrate ...`, `install`, `upgrade`, `rollback`, `status`, `wheelhouse fetch`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from oemkit.cli._keys import KEY_HELP, PinFile, Pkcs11Module, attestation_key
from oemkit.cli._options import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_MEMBER,
    DEFAULT_MAX_PAYLOAD,
    JsonOut,
    MaxFiles,
    MaxMember,
    MaxPayload,
    TrustFirst,
    TrustPinned,
)
from oemkit.cli._output import (
    check_table,
    emit_json,
    err,
    file_size,
    guard,
    limits,
    progress,
    safe,
)

if TYPE_CHECKING:
    from oemkit.host.install import InstallOptions, InstallReport
    from oemkit.host.service import ServiceOptions
    from oemkit.models.config import BundleConfigs
    from oemkit.verify.bundle import Limits

migrate_app = typer.Typer(
    rich_markup_mode=None,
    help="Plan, apply and test config migrations.", no_args_is_help=True)
wheelhouse_app = typer.Typer(
    rich_markup_mode=None,
    help="Prepare an offline wheelhouse (on a connected machine).",
                             no_args_is_help=True)
# Options shared by install and upgrade.
PREFIX_OPT = typer.Option(..., "--prefix", help="Install root (slots live here).")
LICENSE_OPT = typer.Option(None, "--license", help="License to check.")
PROFILE_OPT = typer.Option(None, "--profile", help="Smoke-test profile.")
SKIP_SMOKE_OPT = typer.Option(False, "--skip-smoke", help="Do not smoke-test (unsafe).")
SYSTEM_SITE_OPT = typer.Option(False, "--system-site-packages",
                               help="Let the slot's venv import the packages of the Python "
                                    "running oemkit.")
STATE_OPT = typer.Option(None, "--state", help="License state file (default: the host's; "
                         "with --service systemd /var/lib/oemkit/license-state.json).")
# The service and the readiness gate (install, upgrade, rollback).
SERVICE_OPT = typer.Option(None, "--service", help="systemd: write a hardened unit for the "
                           "prefix, restart it, keep the switch only once ready; none: no "
                           "service (default: systemd where systemd runs, else none).")
READY_CHECK_OPT = typer.Option(None, "--ready-check/--no-ready-check",
                               help="With --service none: serve the new release on a free "
                               "port first and switch only once it is ready (default for "
                               "install/upgrade: on where the serving stack is installed, off "
                               "with --skip-smoke; rollback: off).")
READY_TIMEOUT_OPT = typer.Option(60.0, "--ready-timeout", min=0.1, max=3600.0,
                                 help="Seconds the release has to answer /v2/health/ready.")
SERVICE_NAME_OPT = typer.Option(None, "--service-name",
                                help="The systemd unit (default: oemkit-BUNDLE).")
SERVICE_USER_OPT = typer.Option(None, "--service-user", help="Run the unit as this user "
                                "(default: DynamicUser=yes).")
UNIT_DIR_OPT = typer.Option(None, "--unit-dir", help="Where the unit file goes (default: "
                            "$OEMKIT_SYSTEMD_DIR, else /etc/systemd/system).")
HOST_OPT = typer.Option(None, "--host", help="Address the service binds (default: the "
                        "installed unit's, else 127.0.0.1).")
PORT_OPT = typer.Option(None, "--port", min=1, max=65535, help="Port the service listens on "
                        "(default: the installed unit's, else 8000).")


def _configs(bundle: Path, trust: Path | None,
             reader_limits: tuple[int, int, int]) -> BundleConfigs:
    from oemkit.host.migrate import bundle_configs

    configs = bundle_configs(bundle, trust, limits=limits(*reader_limits))
    if not configs.verified:
        err.print("[bold yellow]UNVERIFIED[/]: the bundle's migrations were read without "
                  "verification; pass --trust ROOT")
    return configs


@migrate_app.command("plan")
def migrate_plan(
    config: Path = typer.Option(..., "--config", help="The config file to migrate."),
    to: Path = typer.Option(..., "--to", help="The bundle to migrate to."),
    trust: TrustFirst = None,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Show the steps from the config's version to the bundle's and the resulting diff.
    Nothing is written.

    Example: oemkit migrate plan --config /etc/app/config.json --to example-0.2.0.oemb
    """
    with guard(json_out):
        from oemkit.host.migrate import read_config
        from oemkit.models.config import plan

        result = plan(read_config(config),
                      _configs(to, trust, (max_files, max_member, max_payload)), str(config))
        if json_out:
            emit_json({"ok": True, "dry_run": True, **result.to_dict()})
        err.print(f"{safe(config)}: version {result.source} -> {result.target}, "
                  f"{len(result.steps)} step(s) (dry run)")
        for step in result.steps:
            err.print(f"  - {safe(step.describe(), markup=False)}", markup=False)
        for line in result.changes:
            err.print(f"  {safe(line, markup=False)}", markup=False)


@migrate_app.command("apply")
def migrate_apply(
    config: Path = typer.Option(..., "--config", help="The config file to migrate."),
    to: Path = typer.Option(..., "--to", help="The bundle to migrate to."),
    trust: TrustFirst = None,
    out: Path | None = typer.Option(None, "--out", help="Write here instead of in place."),
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Migrate a config file: validate, apply the chain, validate, back up, write atomically.

    Example: oemkit migrate apply --config /etc/app/config.json --to
    example-0.2.0.oemb --trust trust-root.json
    """
    with guard(json_out):
        from oemkit.host.migrate import apply_file

        result = apply_file(config, _configs(to, trust, (max_files, max_member, max_payload)),
                            out=out)
        if json_out:
            emit_json({"ok": True, **result.to_dict()})
        err.print(f"Migrated {safe(config)} from version {result.source} to {result.target} "
                  f"({len(result.steps)} steps); backup {safe(config.name)}.v{result.source}"
                  ".bak")


@migrate_app.command("test")
def migrate_test(
    bundle: Path = typer.Argument(..., help="The bundle whose upgrade path to test."),
    trust: TrustFirst = None,
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here."),
    attest_key: str | None = typer.Option(None, "--attest-key", metavar="KEY",
                                          help="Sign a test-result attestation (needs "
                                               "--trust and --out)." + KEY_HELP),
    out: Path | None = typer.Option(None, "--out", help="Where to write the attestation."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """The release job's upgrade-path test: every shipped sample of an older config version
    migrates to the current one and validates; reversible chains round-trip exactly.

    Example: oemkit migrate test dist/example-0.2.0.oemb --junit migrate.xml
    Example: oemkit migrate test dist/example-0.2.0.oemb --trust trust-root.json
    --attest-key keys/ci.key --out migrate.intoto.json
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit.errors import UsageError
        from oemkit.models.config import upgrade_path_test
        from oemkit.report.junit import junit_xml

        if attest_key is not None and out is not None and trust is None:
            raise UsageError("E_USAGE", "--attest-key needs --trust: an attestation is about "
                             "the verified bundle", hint="add --trust trust-root.json")
        signing_key = attestation_key(
            attest_key, out, pin_file, pkcs11_module,
            example="oemkit migrate test B --trust R --attest-key K --out migrate.intoto.json")
        configs = _configs(bundle, trust, (max_files, max_member, max_payload))
        checks = upgrade_path_test(configs)
        if junit is not None:
            atomic_write_bytes(junit, junit_xml(f"oemkit migrate test {bundle.name}", checks,
                                                classname="migrate"))
        ok = all(c.status != "fail" for c in checks)
        doc: dict[str, object] = {"ok": ok, "checks": [c.to_dict() for c in checks]}
        if signing_key is not None and out is not None:
            from oemkit._time import format_time, now
            from oemkit.release.attest import migration_statement, sign_attestation

            statement = migration_statement(configs, checks, format_time(now()))
            atomic_write_bytes(out, sign_attestation(statement, signing_key))
            doc["attestation"] = str(out)
        if json_out:
            emit_json(doc)
        check_table(checks)
        if not ok:
            raise typer.Exit(1)


def _print_install(report: InstallReport, json_out: bool) -> None:
    if json_out:
        emit_json(report.to_dict())
    check_table(report.checks)
    if report.ok and report.switched:
        err.print(f"[bold green]OK[/] {report.action}: current -> {safe(report.slot)}")
    elif report.ok:
        err.print(f"[bold green]OK[/] {report.action}: nothing changed")
    else:
        err.print(f"[bold red]FAILED[/] {report.action}: current is unchanged")
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _service(mode: str | None, ready_check: bool | None, skip_smoke: bool,
             ready_timeout: float, name: str | None, user: str | None, unit_dir: Path | None,
             host: str | None, port: int | None, profile: str | None) -> ServiceOptions:
    """The --service options: systemd where systemd runs, else none; the readiness check
    on where the serving stack is installed (explicitly asked for: required)."""
    from oemkit._extras import require_serve
    from oemkit.errors import EnvironmentProblem, UsageError
    from oemkit.host.service import ServiceOptions, default_mode

    chosen = mode or default_mode()
    if chosen not in ("systemd", "none"):
        raise UsageError("E_USAGE", f"--service must be systemd or none, not {chosen!r}",
                         hint="pass --service systemd or --service none")
    if ready_check:
        require_serve("--ready-check")
    elif ready_check is None:
        try:
            require_serve("--ready-check")
            ready_check = not skip_smoke
        except EnvironmentProblem:
            ready_check = False
    if profile is not None and Path(profile).is_file():
        profile = str(Path(profile).resolve())
    return ServiceOptions(mode=chosen, ready_check=ready_check,  # type: ignore[arg-type]
                          ready_timeout_s=ready_timeout, name=name, user=user,
                          unit_dir=unit_dir, host=host, port=port, profile=profile)


def _state(state: Path | None, service: ServiceOptions) -> Path:
    """--state, else $OEMKIT_STATE, else the host default (a system path for a service)."""
    import os

    from oemkit.host.license_state import default_state_path
    from oemkit.host.service import SERVICE_STATE

    if state is not None:
        return state
    if service.mode == "systemd" and not os.environ.get("OEMKIT_STATE"):
        return SERVICE_STATE
    return default_state_path()


def _run_install(bundle: Path, prefix: Path, trust: Path, json_out: bool,
                 reader_limits: tuple[int, int, int], state: Path | None,
                 options: InstallOptions) -> None:
    """install/upgrade: the run with a progress bar over verify + unpack, then the table."""
    from dataclasses import replace

    from oemkit.host.install import install as run
    from oemkit.host.service import ServiceOptions

    service = options.service or ServiceOptions()
    with progress("verifying and unpacking", file_size(bundle)) as cb:
        report = run(bundle, prefix, trust, replace(
            options, state_path=_state(state, service), progress=cb,
            limits=limits(*reader_limits)))
    _print_install(report, json_out)


def install(
    *,
    bundle: Path = typer.Argument(..., help="Bundle to install."),
    prefix: Path = PREFIX_OPT,
    trust: TrustPinned,
    license: Path | None = LICENSE_OPT,
    config: Path | None = typer.Option(None, "--config", help="Initial config (default: "
                                       "the bundle's)."),
    profile: str | None = PROFILE_OPT,
    skip_smoke: bool = SKIP_SMOKE_OPT,
    system_site_packages: bool = SYSTEM_SITE_OPT,
    state: Path | None = STATE_OPT,
    service: str | None = SERVICE_OPT,
    ready_check: bool | None = READY_CHECK_OPT,
    ready_timeout: float = READY_TIMEOUT_OPT,
    service_name: str | None = SERVICE_NAME_OPT,
    service_user: str | None = SERVICE_USER_OPT,
    unit_dir: Path | None = UNIT_DIR_OPT,
    host: str | None = HOST_OPT,
    port: int | None = PORT_OPT,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Verify, unpack into a new slot, install wheels offline, write the config, smoke-test,
    check that the release becomes ready, then point PREFIX/current at the slot (with
    --service systemd: start the unit and keep the switch only once it is ready).

    Example: oemkit install example-0.1.0.oemb --prefix /opt/example --trust
    trust-root.json
    """
    with guard(json_out):
        from oemkit.host.install import InstallOptions

        svc = _service(service, ready_check, skip_smoke, ready_timeout, service_name,
                       service_user, unit_dir, host, port, profile)
        _run_install(bundle, prefix, trust, json_out, (max_files, max_member, max_payload),
                     state, InstallOptions(
                         config=config, license_file=license, profile=profile,
                         skip_smoke=skip_smoke, system_site_packages=system_site_packages,
                         service=svc))


def upgrade(
    *,
    bundle: Path | None = typer.Argument(None, help="Bundle to upgrade to (or --delta)."),
    delta: Path | None = typer.Option(None, "--delta", help="Upgrade with a delta (oemkit "
                                      "delta) against the current release instead."),
    prefix: Path = PREFIX_OPT,
    trust: TrustPinned,
    license: Path | None = LICENSE_OPT,
    profile: str | None = PROFILE_OPT,
    allow_downgrade: bool = typer.Option(False, "--allow-downgrade",
                                         help="Accept an older release."),
    skip_smoke: bool = SKIP_SMOKE_OPT,
    system_site_packages: bool = SYSTEM_SITE_OPT,
    state: Path | None = STATE_OPT,
    service: str | None = SERVICE_OPT,
    ready_check: bool | None = READY_CHECK_OPT,
    ready_timeout: float = READY_TIMEOUT_OPT,
    service_name: str | None = SERVICE_NAME_OPT,
    service_user: str | None = SERVICE_USER_OPT,
    unit_dir: Path | None = UNIT_DIR_OPT,
    host: str | None = HOST_OPT,
    port: int | None = PORT_OPT,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Install a new release beside the current one, migrating its config; switch only when
    verification, migration, the smoke test and the readiness check all pass (with
    --service systemd: switch back and restart the previous release when the new one
    never becomes ready).

    With --delta, NEW is first rebuilt byte for byte from the current slot and the delta
    (docs/DELTA.md), then installed as any bundle is.

    Example: oemkit upgrade example-0.2.0.oemb --prefix /opt/example --trust
    trust-root.json
    """
    with guard(json_out):
        from dataclasses import replace

        from oemkit.errors import UsageError
        from oemkit.host.install import InstallOptions

        if (bundle is None) == (delta is None):
            raise UsageError("E_USAGE", "oemkit upgrade takes a bundle or --delta "
                             f"({'both were given' if bundle else 'neither was given'})",
                             hint="oemkit upgrade NEW.oemb --prefix P --trust ROOT, or "
                                  "oemkit upgrade --delta NEW.oemd --prefix P --trust ROOT")
        svc = _service(service, ready_check, skip_smoke, ready_timeout, service_name,
                       service_user, unit_dir, host, port, profile)
        reader_limits = (max_files, max_member, max_payload)
        options = InstallOptions(
            upgrade=True, license_file=license, profile=profile, skip_smoke=skip_smoke,
            allow_downgrade=allow_downgrade, system_site_packages=system_site_packages,
            service=svc)
        if delta is None:
            assert bundle is not None
            _run_install(bundle, prefix, trust, json_out, reader_limits, state, options)
            return
        with _delta_upgrade(delta, prefix, trust, limits(*reader_limits)) as rebuilt:
            err.print(f"Rebuilt {safe(rebuilt.name)} from {safe(delta)} and the current slot")
            _run_install(rebuilt, prefix, trust, json_out, reader_limits, state, replace(
                options, bundle_file=f"{delta.resolve()} (oemkit upgrade --delta)"))


def rollback(
    prefix: Path = PREFIX_OPT,
    state: Path | None = STATE_OPT,
    service: str | None = SERVICE_OPT,
    ready_check: bool | None = READY_CHECK_OPT,
    ready_timeout: float = READY_TIMEOUT_OPT,
    service_name: str | None = SERVICE_NAME_OPT,
    service_user: str | None = SERVICE_USER_OPT,
    unit_dir: Path | None = UNIT_DIR_OPT,
    host: str | None = HOST_OPT,
    port: int | None = PORT_OPT,
    profile: str | None = typer.Option(None, "--profile", help="The service's profile "
                                       "(default: the bundle's first)."),
    json_out: JsonOut = False,
) -> None:
    """Point current back at the previous slot (its config as it was before the upgrade);
    with --service systemd restart the unit and switch back again if it never becomes ready.

    Example: oemkit rollback --prefix /opt/example
    """
    with guard(json_out):
        from oemkit.host.install import rollback as run

        # The release rolled back to ran before: checked only when asked (--ready-check).
        svc = _service(service, bool(ready_check), True, ready_timeout, service_name,
                       service_user, unit_dir, host, port, profile)
        # A unit keeps the state file it was written with unless --state says otherwise.
        keep = svc.mode == "systemd" and state is None
        _print_install(run(prefix, svc, None if keep else _state(state, svc)), json_out)


def status(
    prefix: Path = PREFIX_OPT,
    json_out: JsonOut = False,
) -> None:
    """Show the slots: versions, bundle digests, when and by which oemkit installed.

    Example: oemkit status --prefix /opt/example
    """
    with guard(json_out):  # the body is shared with the typer-free path (cli/_hot.py)
        from oemkit.cli._hot import status_body

        status_body(prefix=prefix, json_out=json_out)


@wheelhouse_app.command("fetch")
def wheelhouse_fetch(
    requirements: Path = typer.Argument(..., help="requirements.txt (pinned, with hashes), "
                                        "or a bundle spec: its requirements: list."),
    dest: Path = typer.Option(..., "--dest", help="The wheelhouse directory."),
    platform: list[str] = typer.Option([], "--platform", help="A wheel platform tag, e.g. "
                                       "manylinux_2_28_x86_64; repeat for several (default: "
                                       "the target profile's architecture)."),
    profile: str | None = typer.Option(None, "--profile", help="The target profile (a "
                                       "shipped name or a YAML file) whose cpu.arch picks "
                                       "the platform tags (default: the spec's first)."),
    python_version: str | None = typer.Option(None, "--python-version", help="e.g. 3.11."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the pip command only."),
    json_out: JsonOut = False,
) -> None:
    """Fill a wheelhouse on a connected machine with `pip download` (binary wheels only).

    Example: oemkit wheelhouse fetch bundle.yaml --dest wheels --python-version 3.11
    """
    with guard(json_out):
        import shlex

        from oemkit.host.wheelhouse import default_platforms, pip_download_command, run_pip

        chosen = None if platform else default_platforms(requirements, profile)
        cmd = pip_download_command(requirements, dest, platforms=platform,
                                   python_version=python_version, profile=profile)
        if chosen is not None:
            err.print(f"platform tags from {chosen.source}: {' '.join(chosen.tags)}",
                      markup=False)
        err.print(shlex.join(cmd), markup=False)  # pasteable: 'onnxruntime>=1.17' quoted
        if not dry_run:
            run_pip(cmd)
        if json_out:
            emit_json({"ok": True, "command": cmd, "dry_run": dry_run,
                       "platforms": list(chosen.tags) if chosen else list(platform),
                       "profile": chosen.profile if chosen else None,
                       "arch": chosen.arch if chosen else None})


@contextlib.contextmanager
def _delta_upgrade(delta_path: Path, prefix: Path, trust: Path,
                   reader_limits: Limits) -> Iterator[Path]:
    """``oemkit upgrade --delta``: NEW rebuilt from the prefix's current slot and the delta
    into a temporary folder beside the prefix (else the system's), yielded for the install
    (which verifies it); removed afterwards.

    Raises:
        InputError: ``E_NOT_INSTALLED`` (no current release to patch).
        VerificationError: ``E_DELTA_*``, as ``release.patch.patch_bundle``.
    """
    import shutil
    import tempfile

    from oemkit.errors import InputError
    from oemkit.host.install import prefix_status
    from oemkit.host.prefix import SLOTS
    from oemkit.release.patch import open_delta, patch_bundle

    status = prefix_status(prefix)
    if status.current is None or not status.consistent:
        raise InputError("E_NOT_INSTALLED", f"{prefix} has no current release to apply the "
                         "delta to", hint="install the release the delta was made from "
                         "first, or upgrade with the full bundle")
    slot = prefix / SLOTS / status.current
    try:
        work = Path(tempfile.mkdtemp(prefix=".oemkit-delta-", dir=prefix.resolve().parent))
    except OSError:
        work = Path(tempfile.mkdtemp(prefix="oemkit-delta-"))
    try:
        with open_delta(Path(delta_path)) as delta:
            new = delta.preamble
        out = work / f"{new.new_name}-{new.new_version}.oemb"
        patch_bundle(None, delta_path, out, trust, slot=slot, limits=reader_limits,
                     verify=False)
        yield out
    finally:
        shutil.rmtree(work, ignore_errors=True)
