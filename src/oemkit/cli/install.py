"""`oemkit migrate ...`, `install`, `upgrade`, `rollback`, `status`, `wheelhouse fetch`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

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
    from oemkit.models.config import BundleConfigs

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
STATE_OPT = typer.Option(None, "--state", help="License state file.")


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
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """The release job's upgrade-path test: every shipped sample of an older config version
    migrates to the current one and validates; reversible chains round-trip exactly.

    Example: oemkit migrate test dist/example-0.2.0.oemb --junit migrate.xml
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit.models.config import upgrade_path_test
        from oemkit.report.junit import junit_xml

        checks = upgrade_path_test(_configs(bundle, trust,
                                            (max_files, max_member, max_payload)))
        if junit is not None:
            atomic_write_bytes(junit, junit_xml(f"oemkit migrate test {bundle.name}", checks,
                                                classname="migrate"))
        ok = all(c.status != "fail" for c in checks)
        if json_out:
            emit_json({"ok": ok, "checks": [c.to_dict() for c in checks]})
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


def _run_install(bundle: Path, prefix: Path, trust: Path, json_out: bool,
                 reader_limits: tuple[int, int, int], state: Path | None,
                 options: InstallOptions) -> None:
    """install/upgrade: the run with a progress bar over verify + unpack, then the table."""
    from dataclasses import replace

    from oemkit.host.install import install as run
    from oemkit.host.license_state import default_state_path

    with progress("verifying and unpacking", file_size(bundle)) as cb:
        report = run(bundle, prefix, trust, replace(
            options, state_path=state or default_state_path(), progress=cb,
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
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Verify, unpack into a new slot, install wheels offline, write the config, smoke-test,
    then point PREFIX/current at the slot.

    Example: oemkit install example-0.1.0.oemb --prefix /opt/example --trust
    trust-root.json
    """
    with guard(json_out):
        from oemkit.host.install import InstallOptions

        _run_install(bundle, prefix, trust, json_out, (max_files, max_member, max_payload),
                     state, InstallOptions(
                         config=config, license_file=license, profile=profile,
                         skip_smoke=skip_smoke, system_site_packages=system_site_packages))


def upgrade(
    *,
    bundle: Path = typer.Argument(..., help="Bundle to upgrade to."),
    prefix: Path = PREFIX_OPT,
    trust: TrustPinned,
    license: Path | None = LICENSE_OPT,
    profile: str | None = PROFILE_OPT,
    allow_downgrade: bool = typer.Option(False, "--allow-downgrade",
                                         help="Accept an older release."),
    skip_smoke: bool = SKIP_SMOKE_OPT,
    system_site_packages: bool = SYSTEM_SITE_OPT,
    state: Path | None = STATE_OPT,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Install a new release beside the current one, migrating its config; switch only when
    verification, migration and the smoke test all pass.

    Example: oemkit upgrade example-0.2.0.oemb --prefix /opt/example --trust
    trust-root.json
    """
    with guard(json_out):
        from oemkit.host.install import InstallOptions

        _run_install(bundle, prefix, trust, json_out, (max_files, max_member, max_payload),
                     state, InstallOptions(
                         upgrade=True, license_file=license, profile=profile,
                         skip_smoke=skip_smoke, allow_downgrade=allow_downgrade,
                         system_site_packages=system_site_packages))


def rollback(
    prefix: Path = PREFIX_OPT,
    json_out: JsonOut = False,
) -> None:
    """Point current back at the previous slot (its config as it was before the upgrade).

    Example: oemkit rollback --prefix /opt/example
    """
    with guard(json_out):
        from oemkit.host.install import rollback as run

        _print_install(run(prefix), json_out)


def status(
    prefix: Path = PREFIX_OPT,
    json_out: JsonOut = False,
) -> None:
    """Show the slots: versions, bundle digests, when and by which oemkit installed.

    Example: oemkit status --prefix /opt/example
    """
    with guard(json_out):
        from oemkit.host.install import prefix_status

        found = prefix_status(prefix)
        if json_out:
            emit_json({"ok": True, **found.to_dict()})
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        for col in ("", "slot", "version", "manifest", "installed", "oemkit", "config v"):
            table.add_column(col)
        for s in found.slots:
            mark = "current" if s.current else "previous" if s.previous else (
                "incomplete" if s.incomplete else "")
            r = s.record
            table.add_row(*(safe(v) for v in (
                mark, s.name, r.version if r else "-", (r.manifest_sha256 if r else "-")[:12],
                r.installed_at if r else "-", r.oemkit_version if r else "-",
                r.config_version if r else "-")))
        err.print(table)
        for s in found.slots:
            if s.problem:
                err.print(f"  {safe(s.name)}: {safe(s.problem)}")
        err.print(f"current: {safe(found.current or 'none')}; previous: "
                  f"{safe(found.previous or 'none')}"
                  + ("" if found.consistent else "; INCONSISTENT: roll back or reinstall "
                     "(oemkit rollback, or oemkit install the last good bundle)"))


@wheelhouse_app.command("fetch")
def wheelhouse_fetch(
    requirements: Path = typer.Argument(..., help="requirements.txt (pinned, with hashes)."),
    dest: Path = typer.Option(..., "--dest", help="The wheelhouse directory."),
    platform: list[str] = typer.Option([], "--platform", help="e.g. manylinux2014_x86_64."),
    python_version: str | None = typer.Option(None, "--python-version", help="e.g. 3.11."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the pip command only."),
    json_out: JsonOut = False,
) -> None:
    """Fill a wheelhouse on a connected machine with `pip download` (binary wheels only).

    Example: oemkit wheelhouse fetch requirements.txt --dest wheels --platform
    manylinux2014_x86_64 --python-version 3.11
    """
    with guard(json_out):
        from oemkit.host.wheelhouse import pip_download_command, run_pip

        cmd = pip_download_command(requirements, dest, platforms=platform,
                                   python_version=python_version)
        if json_out:
            emit_json({"ok": True, "command": cmd, "dry_run": dry_run})
        err.print(" ".join(cmd), markup=False)
        if dry_run:
            return
        run_pip(cmd)
