"""`oemkit license ...` and `oemkit crl ...`: thin commands over oemkit.release.licensing,
oemkit.verify.license and oemkit.host.license_state."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from oemkit.cli._keys import KEY_HELP, PinFile, Pkcs11Module
from oemkit.cli._options import JsonOut, TrustFirst, TrustPinned
from oemkit.cli._output import emit_json, err, guard, int_option, parse_int, passphrase_for, safe

if TYPE_CHECKING:
    from oemkit.crypto.keys import PrivateKeyInfo

license_app = typer.Typer(
    rich_markup_mode=None,
    help="Issue, verify, inspect and attach offline licenses.",
                          no_args_is_help=True)
crl_app = typer.Typer(
    rich_markup_mode=None,
    help="Issue signed revocation lists.", no_args_is_help=True)


def _key(ref: str, pin_file: Path | None, module: str | None, usage: str,
         command: str) -> PrivateKeyInfo:
    from oemkit.cli._keys import load_key

    return load_key(ref, pin_file, module, usage=usage, command=command)


def revocation(item: str) -> tuple[str, int | None]:
    """``--revoke ID@SEQ`` (re-issues 1..SEQ: the CRL's ``below_seq`` SEQ + 1) or
    ``ID@all`` (every re-issue: no ``below_seq``).

    A bare ID is refused: "revoke this license" must say whether its re-issue is revoked
    too. The old ``ID:N`` ("below N") is refused with its new spelling.

    Raises:
        UsageError: E_USAGE naming the value and both spellings.
    """
    from oemkit.errors import UsageError

    both = "write ID@SEQ (re-issues 1..SEQ; a later re-issue stays valid) or ID@all " \
           "(every re-issue, for good)"
    lid, at, scope = item.rpartition("@") if "@" in item else (item, "", "")
    if ":" in lid and not at:
        old_id, _, below = lid.rpartition(":")
        hint = both
        if below.isascii() and below.isdigit() and int(below) > 1:
            hint = f"'{old_id}:{below}' meant re-issues below {below}: write " \
                   f"--revoke {old_id}@{int(below) - 1}"
        raise UsageError("E_USAGE", f"--revoke {item[:40]!r}: the ID:N form is gone",
                         hint=hint)
    if not at:
        raise UsageError("E_USAGE", f"--revoke {item[:40]!r} does not say which re-issues",
                         hint=both)
    if not lid:
        raise UsageError("E_USAGE", f"--revoke {item[:40]!r} names no license", hint=both)
    if scope == "all":
        return lid, None
    return lid, parse_int(scope, f"--revoke {lid}@SEQ:", minimum=1, maximum=(1 << 53) - 2) + 1


@license_app.command("issue")
def issue(
    key: str = typer.Option(..., "--key", metavar="KEY",
                            help="License signing key (usage license)." + KEY_HELP),
    customer: str = typer.Option(..., "--customer", help="Customer id."),
    customer_name: str = typer.Option(..., "--customer-name", help="Customer name."),
    product: str = typer.Option(..., "--product", help="Product the license is for."),
    expires: str = typer.Option(..., "--expires", help="ISO 8601 date or time (UTC)."),
    not_before: str | None = typer.Option(None, "--not-before", help="ISO 8601 (UTC)."),
    grace: str = typer.Option("0", "--grace", help="Grace period after expiry: 14d, 36h."),
    features: str = typer.Option("", "--features", help="Comma-separated features."),
    limit: list[str] = typer.Option([], "--limit", help="NAME=INTEGER (repeat)."),
    bundle_digest: list[str] = typer.Option([], "--bundle-digest",
                                            help="sha256:<manifest digest> (repeat)."),
    channel: str | None = typer.Option(None, "--channel", help="Bind to a release channel."),
    updates_until: str | None = typer.Option(None, "--updates-until",
                                             help="Bind to bundles built until this date."),
    hardware: Path | None = typer.Option(None, "--hardware",
                                         help="Fingerprint file from the customer host."),
    match: int | None = typer.Option(None, "--match", parser=int_option("--match", 1),
                                     help="Components that must match (default: all)."),
    env: str | None = typer.Option(None, "--env", help="Bind to an environment name."),
    seq: int = typer.Option(1, "--seq", parser=int_option("--seq", 1),
                            help="Re-issue sequence number."),
    license_id: str | None = typer.Option(None, "--license-id",
                                          help="Default: CUSTOMER-PRODUCT."),
    min_crl_seq: int | None = typer.Option(None, "--min-crl-seq",
                                           parser=int_option("--min-crl-seq", 0),
                                           help="Require a CRL at least this new."),
    metering: bool = typer.Option(False, "--metering",
                                  help="The runtime counts inferences for billing "
                                       "(oemkit usage report)."),
    issued_at: str | None = typer.Option(None, "--issued-at", hidden=True),
    out: Path = typer.Option(..., "--out", help="Where to write FILE.lic."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Issue a signed offline license.

    Example: oemkit license issue --key license.key --customer acme --customer-name
    "ACME Corp" --product vision --expires 2027-06-30 --grace 14d --features batch
    --limit seats=50 --hardware acme.fp --match 2 --out acme.lic
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit.license import issue as issue_license
        from oemkit.license import read_claims

        data = issue_license(
            # a key file is loaded by issue() after it has judged the claims (a bad option
            # is E_USAGE before any passphrase is asked); a token key is opened here
            key=_key(key, pin_file, pkcs11_module, "license", "license issue")
            if ":" in key and not Path(key).exists() else Path(key),
            customer=customer, customer_name=customer_name, product=product,
            expires=expires, not_before=not_before, grace=grace, features=features,
            limits=limit, bundle_digests=bundle_digest, channel=channel,
            updates_until=updates_until, hardware=hardware, match=match, environment=env,
            seq=seq, license_id=license_id, min_crl_seq=min_crl_seq, issued_at=issued_at,
            passphrase=passphrase_for, metering=metering)
        claims, keyid = read_claims(data)
        atomic_write_bytes(out, data)
        if json_out:
            emit_json({"ok": True, "license": str(out), "claims": claims.to_dict()})
        err.print(f"Issued {safe(out)}: license {safe(claims.license_id)} (re-issue {seq}) "
                  f"for {safe(customer_name)}, {safe(product)}, expires "
                  f"{claims.expires:%Y-%m-%d}, signed by {safe(keyid[:16])}…")


@license_app.command("verify")
def verify(
    *,
    file: Path = typer.Argument(..., help="The license (.lic)."),
    trust: TrustPinned,
    bundle: Path | None = typer.Option(None, "--bundle", help="Bundle it must cover."),
    crl: list[Path] = typer.Option([], "--crl", help="Revocation list (repeat)."),
    state: Path | None = typer.Option(None, "--state", help="State file (default: "
                                      "$OEMKIT_STATE or ~/.local/state/oemkit/...)."),
    env: str | None = typer.Option(None, "--env", help="This host's environment."),
    require_feature: list[str] = typer.Option([], "--require-feature", help="Repeat."),
    require_limit: list[str] = typer.Option([], "--require-limit", help="NAME=VALUE."),
    json_out: JsonOut = False,
) -> None:
    """Verify a license offline: valid, grace (with days left), or rejected with a code.

    Example: oemkit license verify acme.lic --trust trust-root.json --bundle
    vision-2.1.oemb
    """
    with guard(json_out):  # the body is shared with the typer-free path (cli/_hot.py)
        from oemkit.cli._hot import license_verify_body

        license_verify_body(file=file, trust=trust, bundle=bundle, crl=crl, state=state,
                            env=env, require_feature=require_feature,
                            require_limit=require_limit, json_out=json_out)


@license_app.command("inspect")
def inspect(
    file: Path = typer.Argument(..., help="The license (.lic)."),
    trust: TrustFirst = None,
    crl: list[Path] = typer.Option([], "--crl", help="With --trust: revocation list "
                                   "(repeat)."),
    json_out: JsonOut = False,
) -> None:
    """Show a license's claims (marked UNVERIFIED unless --trust is given).

    With --trust the signature, the claims, the signing key's status and window, and any
    --crl are checked (not the dates, bindings or host state: 'license verify' judges those).
    Example: oemkit license inspect acme.lic
    """
    with guard(json_out):
        from oemkit.license import inspect as inspect_license

        info = inspect_license(file, trust, crl=crl)
        if json_out:
            emit_json({"ok": True, **info.to_dict()})
        if not info.verified:
            err.print("[bold yellow]UNVERIFIED[/]: signature not checked; pass --trust ROOT")
        else:
            revocation = (f"not revoked by CRL sequence {info.crl_seq}"
                          if info.crl_seq is not None else "no CRL given")
            err.print(f"[bold green]SIGNATURE VERIFIED[/] (key {safe(info.signer[:16])}…, not "
                      f"compromised, valid when it signed; {revocation}); dates, bindings and "
                      "this host's state are judged by 'oemkit license verify'")
        if not json_out:
            import json

            # ensure_ascii: every control and bidi character is a visible \\uXXXX escape
            err.print(json.dumps(info.claims, indent=2, sort_keys=True, ensure_ascii=True),
                      markup=False)


@license_app.command("fingerprint")
def fingerprint(
    out: Path | None = typer.Option(None, "--out", help="Write the fingerprint here."),
    json_out: JsonOut = False,
) -> None:
    """This host's hardware components as keyed hashes, for the vendor to bind a license to.

    Raw ids never leave the host: the file holds a fresh salt and HMACs only.
    Example: oemkit license fingerprint --out acme-host.fp
    """
    with guard(json_out):
        import json

        from oemkit._fs import atomic_write_bytes
        from oemkit.errors import EnvironmentProblem
        from oemkit.host.license_state import collect_host
        from oemkit.host.license_state import fingerprint as make_fp

        host = collect_host()
        if not host:
            raise EnvironmentProblem("E_NO_HARDWARE_IDS", "found no hardware ids on this host",
                                     hint="run on the target host (machine-id, DMI, disks, "
                                          "NICs are read from /etc and /sys)")
        doc = make_fp(host)
        text = json.dumps(doc, indent=2) + "\n"
        if out is not None:
            atomic_write_bytes(out, text.encode())
        if json_out or out is None:
            emit_json(doc)
        kinds = ", ".join(f"{k} x{len(v)}" for k, v in sorted(host.items()))
        err.print(f"{len(doc['components'])} components ({safe(kinds)})"
                  + (f" written to {safe(out)}" if out else ""))


@license_app.command("attach")
def attach(
    bundle: Path = typer.Argument(..., help="Bundle to carry the license."),
    file: Path = typer.Argument(..., help="The license (.lic)."),
    json_out: JsonOut = False,
) -> None:
    """Carry a customer's license inside a bundle (outside the bundle signature).

    Example: oemkit license attach vision-2.1.oemb acme.lic
    """
    with guard(json_out):
        from oemkit.crypto.armor import read_armored
        from oemkit.release.licensing import attach_license

        name = attach_license(bundle, read_armored(file, "license"))
        if json_out:
            emit_json({"ok": True, "bundle": str(bundle), "member": name})
        err.print(f"Attached {safe(file)} to {safe(bundle)} as {safe(name)}")


@crl_app.command("issue")
def crl_issue(
    key: str = typer.Option(..., "--key", metavar="KEY",
                            help="CRL signing key (usage crl)." + KEY_HELP),
    seq: int = typer.Option(..., "--seq", parser=int_option("--seq", 1),
                            help="Sequence number (monotonic)."),
    revoke: list[str] = typer.Option([], "--revoke", metavar="ID@SEQ|ID@all",
                                     help="Revoke license ID's re-issues 1..SEQ (a later "
                                          "re-issue stays valid), or ID@all: every re-issue, "
                                          "for good (repeat)."),
    revoke_key: list[str] = typer.Option([], "--revoke-key", help="Key id (repeat)."),
    issued_at: str | None = typer.Option(None, "--issued-at", hidden=True),
    out: Path = typer.Option(..., "--out", help="Where to write FILE.crl."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Issue a signed revocation list.

    Example: oemkit crl issue --key crl.key --seq 7 --revoke acme-vision@2 --out revocations.crl
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit._time import now, parse_time
        from oemkit.release.licensing import issue_crl

        entries = [revocation(item) for item in revoke]
        when = parse_time(issued_at, "--issued-at") if issued_at else now()
        data = issue_crl(_key(key, pin_file, pkcs11_module, "crl", "crl issue"), seq,
                         revoke=entries, revoke_keys=revoke_key, issued_at=when)
        atomic_write_bytes(out, data)
        if json_out:
            emit_json({"ok": True, "crl": str(out), "seq": seq, "revoked": [
                {"license_id": lid, "up_to_seq": None if below is None else below - 1}
                for lid, below in entries], "revoked_keys": list(revoke_key)})
        err.print(f"Issued {safe(out)}: CRL sequence {seq}, {len(entries)} license(s) and "
                  f"{len(revoke_key)} key(s) revoked")
        for lid, below in entries:
            err.print(f"  {safe(lid)}: " + ("every re-issue, for good" if below is None else
                                            f"re-issues 1 to {below - 1}; re-issue {below} "
                                            "and later stay valid"))
