"""`oemkit evidence BUNDLE ...` and `oemkit evidence verify PACK`: thin commands over
oemkit.report.evidence (docs/EVIDENCE.md). Like `oemkit sizing`, the group's first word is
its subcommand (`verify`) or the bundle of the command that makes a pack."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from oemkit.cli._keys import KEY_HELP, PinFile, Pkcs11Module
from oemkit.cli._options import JsonOut, TrustPinned
from oemkit.cli._output import (
    DefaultCommandGroup,
    check_table,
    emit_json,
    err,
    guard,
    safe,
)


class EvidenceGroup(DefaultCommandGroup):
    """``oemkit evidence``: ``verify`` by its name; anything else goes, whole, to the
    command that makes a pack."""

    @property
    def default_command(self) -> Any:
        return _make_command()


def make(
    *,
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="The deployed bundle.")],
    trust: TrustPinned,
    key: Annotated[str, typer.Option("--key", metavar="KEY", help="Signs the pack (its public "
                                     "half goes into the pack; pin it with verify --signer)."
                                     + KEY_HELP)],
    out: Annotated[Path, typer.Option("--out", help="The pack to write (.oeme).")],
    smoke: Annotated[Path | None, typer.Option(
        "--smoke", help="The smoke test's attestation (oemkit smoke --attest-key K --out F).")
    ] = None,
    smoke_key: Annotated[Path | None, typer.Option(
        "--smoke-key", help="Public key of the attestation, when not in the trust root.")
    ] = None,
    sizing: Annotated[Path | None, typer.Option("--sizing", help="sizing.json.")] = None,
    migrate_junit: Annotated[Path | None, typer.Option(
        "--migrate-junit", help="JUnit XML of oemkit migrate test.")] = None,
    migrate: Annotated[Path | None, typer.Option(
        "--migrate", help="The migration test's attestation (oemkit migrate test "
        "--attest-key K --out F).")] = None,
    migrate_key: Annotated[Path | None, typer.Option(
        "--migrate-key", help="Public key of that attestation, when not in the trust root.")
    ] = None,
    license: Annotated[list[Path] | None, typer.Option(
        "--license", help="A license to judge against the bundle (repeat).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write this self-contained "
                                              "page.")] = None,
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Write a signed evidence pack for an auditor: what is deployed and how we know.

    Every claim names its check or test, the artifact and its digest, and the config it
    holds under; the artifacts are inside, so `oemkit evidence verify` re-checks it
    offline, years later.

    Example: oemkit evidence dist/example-0.2.0.oemb --trust trust-root.json --key site.key
    --smoke smoke.intoto.json --out example.oeme --html example.html
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit.cli._keys import load_key
        from oemkit.report.evidence import PackInputs, make_pack

        signing = load_key(key, pin_file, pkcs11_module)
        data, doc = make_pack(bundle, trust, signing, PackInputs(
            smoke=smoke, smoke_key=smoke_key, sizing=sizing, migrate_junit=migrate_junit,
            licenses=tuple(license or ()), migrate=migrate, migrate_key=migrate_key))
        atomic_write_bytes(out, data)
        if html is not None:
            from oemkit.report.evidence_html import to_html

            atomic_write_bytes(html, to_html(doc).encode("utf-8"))
        if json_out:
            emit_json({"ok": True, "pack": str(out), "html": str(html) if html else None,
                       "bundle": doc["bundle"], "claims": doc["claims"]})
        err.print(f"Wrote {safe(out)}: {len(doc['claims'])} claims, "
                  f"{len(doc['artifacts'])} artifacts, signed by key {safe(signing.keyid[:16])}"
                  + (f"; {safe(html)}" if html else ""))


evidence_app = typer.Typer(cls=EvidenceGroup, rich_markup_mode=None, help=make.__doc__,
                           add_completion=False)


@functools.cache
def _make_command() -> Any:
    """:func:`make` as a click command (built once, on first use)."""
    one = typer.Typer(rich_markup_mode=None, add_completion=False)
    one.command()(make)
    return typer.main.get_command(one)


@evidence_app.command("verify")
def verify(
    *,
    pack: Annotated[Path, typer.Argument(metavar="PACK", help="The evidence pack (.oeme).")],
    trust: TrustPinned,
    signer: Annotated[Path | None, typer.Option("--signer", help="Public key the pack must be "
                                                "signed by.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the page with a 'still "
                                              "holds' column.")] = None,
    json_out: JsonOut = False,
) -> None:
    """Re-check every claim of an evidence pack offline; exit 1 naming the first claim whose
    evidence no longer holds.

    Example: oemkit evidence verify example.oeme --trust trust-root.json --signer site.pub
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit.errors import VerificationError
        from oemkit.models.report import Check
        from oemkit.report.evidence import verify_pack

        report = verify_pack(pack, trust, signer=signer)
        doc = report.to_dict()
        if html is not None:
            from oemkit._fs import read_input
            from oemkit.report.evidence import read_pack
            from oemkit.report.evidence_html import to_html

            _, parsed, _, _ = read_pack(read_input(pack, "evidence pack", 256 << 20), str(pack))
            atomic_write_bytes(html, to_html(parsed.doc, doc["claims"]).encode("utf-8"))
        check_table([Check(r.claim.id, "pass" if r.holds else "fail",
                           f"{r.claim.claim}: {r.detail}") for r in report.results]
                    + [Check("pack signature", "pass" if report.signature_ok else "fail",
                             report.signature_detail)])
        failure = report.first_failure
        if failure is not None:
            raise VerificationError(
                "E_EVIDENCE_CLAIM", f"claim {failure.claim.id} ({failure.claim.claim}) no "
                f"longer holds: {failure.detail}", check="evidence",
                member=failure.claim.artifact,
                hint="the evidence was changed, or the trust root no longer accepts it; the "
                     "table lists every claim")
        if not report.signature_ok:
            raise VerificationError("E_EVIDENCE_SIGNATURE", f"every claim holds, but the pack's "
                                    f"signature does not: {report.signature_detail}",
                                    check="evidence", hint="obtain the original pack")
        if json_out:
            emit_json(doc)
        err.print(f"[bold green]OK[/] every claim of {safe(pack)} holds "
                  f"({len(report.results)} claims; {safe(report.signature_detail)})")
