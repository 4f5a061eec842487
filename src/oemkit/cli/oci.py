"""`oemkit oci push|pull|export|import`: a bundle through the site's OCI registry or an
OCI image layout (docs/FLEET.md, the registry section).

Only typer and ``cli._output`` are imported at module level; ``oemkit.site.oci`` (and with
it requests and the oras SDK) is imported inside each command body, so ``oemkit --help``
stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from oemkit.cli._output import check_table, emit_json, err, file_size, guard, limits, progress, safe

if TYPE_CHECKING:
    from oemkit.site.oci import Connection, PullResult

oci_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True,
    help="Move bundles through the site's OCI registry (an OCI artifact, its signatures "
         "as referrers) or an OCI image layout on disk.")

PlainHttp = Annotated[bool, typer.Option(
    "--plain-http", help="Plain HTTP instead of HTTPS: only to a loopback registry "
    "(127.0.0.1, ::1, localhost).")]
CaFile = Annotated[Path | None, typer.Option(
    "--ca-file", help="PEM bundle of the CA that signed the registry's certificate.")]
Username = Annotated[str | None, typer.Option(
    "--username", help="Registry user (with --password-stdin); else the credentials of "
    "$REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json, "
    "~/.config/containers/auth.json or ~/.docker/config.json.")]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password (or token) from standard input.")]
AuthFile = Annotated[Path | None, typer.Option(
    "--authfile", help="Read credentials from this auth file only.")]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]


def _connection(plain_http: bool, ca_file: Path | None, username: str | None,
                password_stdin: bool, authfile: Path | None) -> Connection:
    from oemkit.errors import UsageError
    from oemkit.site.oci import Connection

    password = None
    if password_stdin:
        if username is None:
            raise UsageError("E_USAGE", "--password-stdin needs --username",
                             hint="printf '%s' \"$TOKEN\" | oemkit oci pull REF --username "
                                  "USER --password-stdin ...")
        password = sys.stdin.readline().rstrip("\r\n")
    elif username is not None:
        raise UsageError("E_USAGE", "--username needs --password-stdin (a password is never "
                         "an argument: it would show in the process list)",
                         hint="printf '%s' \"$TOKEN\" | oemkit oci push BUNDLE REF "
                              "--username USER --password-stdin")
    return Connection(plain_http=plain_http, ca_file=ca_file, username=username,
                      password=password, auth_file=authfile)


def push(
    bundle: Path = typer.Argument(..., help="Bundle to push."),
    ref: str = typer.Argument(..., help="HOST[:PORT]/REPOSITORY:TAG"),
    trust: TrustFirst = None,
    plain_http: PlainHttp = False,
    ca_file: CaFile = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    authfile: AuthFile = None,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Push a bundle as an OCI artifact, its signatures attached as referrers.

    With --trust nothing is pushed unless the bundle verifies. Blobs the registry already
    has are skipped; an interrupted push, run again, resumes
    its upload where the registry has it.
    Example: oemkit oci push dist/example-0.3.0.oemb registry.site:5000/oemkit/example:0.3.0
    --ca-file site-ca.pem
    """
    with guard(json_out):
        from oemkit.site.oci import push as do_push

        connection = _connection(plain_http, ca_file, username, password_stdin, authfile)
        with progress("pushing", file_size(bundle)) as cb:
            result = do_push(bundle, ref, connection, trust=trust,
                             limits=limits(max_files, max_member, max_payload), progress=cb)
        if json_out:
            emit_json({"ok": True, **result.to_dict()})
        skipped = sum(1 for how in result.blobs.values() if how == "present")
        err.print(f"[bold green]PUSHED[/] {safe(result.ref)}@{result.digest} "
                  f"({len(result.blobs)} blobs, {skipped} already there; {result.sent} bytes "
                  f"sent; {len(result.referrers)} signature referrer(s))")
        if result.report is None:
            err.print("  UNVERIFIED: pushed without checking its signatures; pass --trust ROOT "
                      "to refuse a bundle that does not verify")


def pull(
    *,
    ref: str = typer.Argument(..., help="HOST[:PORT]/REPOSITORY:TAG or ...@sha256:DIGEST"),
    out: Path = typer.Option(..., "--out", help="Bundle file to write (only once it "
                             "verified)."),
    trust: TrustPinned,
    force: Force = False,
    plain_http: PlainHttp = False,
    ca_file: CaFile = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    authfile: AuthFile = None,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Pull a bundle, check its layer digest while streaming, verify it, then write it.

    Bytes go to a partial file beside --out; an interrupted pull, run again, continues it
    (an HTTP Range request). --out appears only once the bundle verified against --trust.
    Example: oemkit oci pull registry.site:5000/oemkit/example:0.3.0 --out example.oemb
    --trust trust-root.json --ca-file site-ca.pem
    """
    with guard(json_out):
        from oemkit.site.oci import pull as do_pull

        connection = _connection(plain_http, ca_file, username, password_stdin, authfile)
        with progress("pulling", None) as cb:
            result = do_pull(ref, out, trust, connection, force=force,
                             limits=limits(max_files, max_member, max_payload), progress=cb)
        _report(result, json_out, "pulled")


def export(
    bundle: Path = typer.Argument(..., help="Bundle to export."),
    layout: Path = typer.Argument(..., help="OCI image layout directory (created, or "
                                  "added to)."),
    tag: Annotated[str | None, typer.Option(
        "--tag", help="Tag in the layout (default: the bundle's version).")] = None,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Write a bundle's OCI artifact into an OCI image layout on disk.

    For a registry reached only through a jump host: carry the layout over and run
    skopeo copy oci:LAYOUT:TAG docker://HOST/REPOSITORY:TAG there.
    Example: oemkit oci export dist/example-0.3.0.oemb /media/usb/layout
    """
    with guard(json_out):
        from oemkit.site.oci import export as do_export

        with progress("exporting", file_size(bundle)) as cb:
            result = do_export(bundle, layout, tag=tag,
                               limits=limits(max_files, max_member, max_payload), progress=cb)
        if json_out:
            emit_json({"ok": True, **result.to_dict()})
        err.print(f"[bold green]EXPORTED[/] {safe(bundle)} to {safe(layout)} as tag "
                  f"{safe(result.tag)} ({result.digest}); copy it with: skopeo copy "
                  f"oci:{safe(layout)}:{safe(result.tag)} docker://HOST/REPOSITORY:"
                  f"{safe(result.tag)}")


def import_(
    *,
    layout: Path = typer.Argument(..., help="OCI image layout directory."),
    out: Path = typer.Option(..., "--out", help="Bundle file to write (only once it "
                             "verified)."),
    trust: TrustPinned,
    tag: Annotated[str | None, typer.Option(
        "--tag", help="The layout's tag (default: its only oemkit bundle).")] = None,
    force: Force = False,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Copy a bundle out of an OCI image layout: digests checked, verified, then written.

    Example: oemkit oci import /media/usb/layout --out example.oemb --trust trust-root.json
    """
    with guard(json_out):
        from oemkit.site.oci import import_layout

        with progress("importing", None) as cb:
            result = import_layout(layout, out, trust, tag=tag, force=force,
                                   limits=limits(max_files, max_member, max_payload),
                                   progress=cb)
        _report(result, json_out, "imported")


def _report(result: PullResult, json_out: bool, verb: str) -> None:
    report = result.report
    if json_out:
        doc = report.to_dict()
        emit_json({"ok": report.ok, **result.to_dict(), "error": doc["error"],
                   "report": doc})
    check_table(report.checks)
    if not report.ok:
        code = report.error.code if report.error is not None else "?"
        err.print(f"[bold red]REJECTED[/] {safe(result.ref)}: {code}; nothing was written")
        raise typer.Exit(1)
    resumed = (f", resumed from byte {result.resumed_from}" if result.resumed_from else "")
    err.print(f"[bold green]{verb.upper()}[/] {safe(result.path)}: {safe(report.name)} "
              f"{safe(report.version)} from {safe(result.ref)}, verified (trust root "
              f"v{report.trust_root_version}){resumed}")


oci_app.command()(push)
oci_app.command()(pull)
oci_app.command()(export)
oci_app.command(name="import")(import_)
