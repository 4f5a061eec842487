"""The ``oemkit`` command line: a thin typer layer over the library.

Only this package imports typer and rich. Library modules are imported inside command
bodies so that ``oemkit --help`` stays fast and loads no heavy dependency.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from oemkit import __version__
from oemkit.cli._keys import KEY_HELP, PinFile, Pkcs11Module, Propose, SignWith
from oemkit.cli._lazy import install_fast_coercion
from oemkit.cli._options import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_MEMBER,
    DEFAULT_MAX_PAYLOAD,
    JsonOut,
    MaxFiles,
    MaxMember,
    MaxPayload,
    OutDir,
    OutInstead,
    TrustCarried,
    TrustFirst,
    TrustListed,
    TrustPinned,
    TrustSignCheck,
)
from oemkit.cli._output import (
    STATE,
    OemkitGroup,
    _leave_paths_to_oemkit,
    check_table,
    emit_json,
    err,
    file_size,
    guard,
    int_option,
    limits,
    progress,
    safe,
)

if TYPE_CHECKING:
    from oemkit.crypto.keys import PrivateKeyInfo
    from oemkit.models.trust import Usage
    from oemkit.verify.trust import SignedRoot

install_fast_coercion()  # no pydantic for oemkit's parameter types (cli/_lazy.py)

app = typer.Typer(
    name="oemkit",
    help="Offline-first bundles: build, sign, verify, license, smoke-test and size.\n\n"
         "Exit codes: 0 ok, 1 verification/test failed, 2 usage, 3 bad input, 4 environment, "
         "70 internal error.",
    cls=OemkitGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
keys_app = typer.Typer(
    rich_markup_mode=None,
    help="Generate signing keys.", no_args_is_help=True)
trust_app = typer.Typer(
    rich_markup_mode=None,
    help="Create and change trust roots (each change is a new signed "
                        "version).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(trust_app, name="trust")


def _register_license_commands() -> None:
    from oemkit.cli.license import crl_app, license_app

    app.add_typer(license_app, name="license")
    app.add_typer(crl_app, name="crl")


def _register_profile_commands() -> None:
    from oemkit.cli.profile import profile_app

    app.add_typer(profile_app, name="profile")


def _register_smoke_commands() -> None:
    from oemkit.cli.smoke import smoke

    app.command()(smoke)


def _register_install_commands() -> None:
    from oemkit.cli import install as inst

    app.add_typer(inst.migrate_app, name="migrate")
    app.add_typer(inst.wheelhouse_app, name="wheelhouse")
    for command in (inst.install, inst.upgrade, inst.rollback, inst.status):
        app.command()(command)


def _register_sizing_commands() -> None:
    from oemkit.cli.sizing import sizing_app

    app.add_typer(sizing_app, name="sizing")


def _register_serve_commands() -> None:
    from oemkit.cli.serve import serve

    app.command()(serve)


def _register_media_commands() -> None:
    from oemkit.cli.media import join, split

    app.command()(split)
    app.command()(join)


def _register_oci_commands() -> None:
    from oemkit.cli.oci import oci_app

    app.add_typer(oci_app, name="oci")


def _register_layout_commands() -> None:
    from oemkit.cli.layout import layout_app

    app.add_typer(layout_app, name="layout")


def _register_delta_commands() -> None:
    from oemkit.cli.delta import delta, patch

    app.command()(delta)
    app.command()(patch)


def _register_evidence_commands() -> None:
    from oemkit.cli.evidence import evidence_app

    app.add_typer(evidence_app, name="evidence")


def _register_support_commands() -> None:
    from oemkit.cli.support import support_app

    app.add_typer(support_app, name="support")


def _register_ceremony_commands() -> None:
    from oemkit.cli.ceremony import trust_merge, trust_sign, trust_status

    trust_app.command("sign")(trust_sign)
    trust_app.command("merge")(trust_merge)
    trust_app.command("status")(trust_status)


def _register_usage_commands() -> None:
    from oemkit.cli.usage import usage_app

    app.add_typer(usage_app, name="usage")


def _register_deploy_commands() -> None:
    from oemkit.cli.deploy import deploy_app, image

    app.add_typer(deploy_app, name="deploy")
    app.command()(image)


for _register in (_register_license_commands, _register_profile_commands,
                  _register_smoke_commands, _register_install_commands, _register_sizing_commands,
                  _register_media_commands, _register_serve_commands, _register_oci_commands,
                  _register_deploy_commands, _register_layout_commands,
                  _register_delta_commands, _register_evidence_commands,
                  _register_support_commands, _register_usage_commands):
    _register()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"oemkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    STATE["debug"] = debug


def _root_keys(refs: list[str], pin_file: Path | None, module: str | None,
               current: SignedRoot | None = None) -> list[PrivateKeyInfo]:
    """The root keys a trust command signs with: a token key recorded for another usage is
    refused, and so is a key the current root lists without usage root."""
    from oemkit.cli._keys import load_keys
    from oemkit.errors import VerificationError

    keys = load_keys(refs, pin_file, module, usage="root", command="a trust-root change")
    for key in keys:
        entry = current.root.key(key.keyid) if current is not None else None
        if entry is not None and "root" not in entry.usage:
            raise VerificationError(
                "E_KEY_USAGE", f"{key.source} is a {'/'.join(entry.usage)} key in the trust "
                "root; a new trust-root version is signed by root keys",
                hint="pass the current root keys with --sign-with")
    return keys


# --------------------------------------------------------------------------- init / keys


@app.command()
def init(
    name: str = typer.Argument(..., help="Bundle name (lowercase, digits, . _ -)."),
    dir: Path | None = typer.Option(None, "--dir", help="Where to create it (default ./NAME)."),
    model: Path | None = typer.Option(None, "--model", help="Scaffold around this ONNX model: "
                                      "golden inputs from its input metadata, expected "
                                      "outputs by running it."),
    inputs: Path | None = typer.Option(None, "--inputs", help="With --model: golden inputs "
                                       "(JSON {NAME: {dtype, shape, data}} or .npz) instead "
                                       "of seeded random ones."),
    json_out: JsonOut = False,
) -> None:
    """Scaffold a bundle spec with a tiny ONNX model (or yours, --model), config, schema,
    golden data, runner, server requirements and a commented license policy.

    Example: oemkit init my-model && oemkit build my-model/bundle.yaml
    Example: oemkit init my-model --model model.onnx --inputs sample.json
    """
    with guard(json_out):
        from oemkit.release.scaffold import scaffold_bundle

        dest = dir or Path(name)
        files = scaffold_bundle(name, dest, model=model, inputs=inputs)
        if json_out:
            emit_json({"ok": True, "dir": str(dest), "files": [str(f) for f in files]})
        err.print(f"Created {safe(dest)} with {len(files)} files. Next: oemkit build "
                  f"{safe(dest / 'bundle.yaml')}")


@keys_app.command("generate")
def keys_generate(
    name: str | None = typer.Argument(None, help="File stem: writes NAME.key and NAME.pub "
                                      "(with --pkcs11: the key's label in the token)."),
    usage: str = typer.Option(..., "--usage", help="bundle, license, crl or root."),
    algorithm: str = typer.Option("ed25519", "--algorithm", help="ed25519 or ecdsa-p256."),
    out_dir: Path = typer.Option(Path("."), "--out-dir", help="Directory for the key files "
                                 "(with --pkcs11: for NAME.pub)."),
    no_passphrase: bool = typer.Option(False, "--no-passphrase",
                                       help="Write the private key unencrypted (unsafe)."),
    pkcs11: str | None = typer.Option(None, "--pkcs11", metavar="TOKEN-URI",
                                      help="Generate inside this PKCS#11 token "
                                           "(pkcs11:token=LABEL): the private key never "
                                           "leaves it."),
    label: str | None = typer.Option(None, "--label", help="With --pkcs11: the key's label "
                                     "(CKA_LABEL; or give NAME)."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Generate a key pair: PKCS#8 private key (0600, encrypted) and public key (0644), or
    a key pair inside a PKCS#11 token (--pkcs11) and its NAME.pub.

    The passphrase comes from OEMKIT_KEY_PASSPHRASE or a prompt.
    Example: oemkit keys generate release-2027 --usage bundle --out-dir keys/
    Example: oemkit keys generate --pkcs11 pkcs11:token=release-a --label root-a --usage root
    """
    with guard(json_out):
        from oemkit.errors import UsageError

        if pkcs11 is not None:
            if name is not None and label is not None and name != label:
                raise UsageError("E_USAGE", f"NAME {name!r} and --label {label!r} differ",
                                 hint="give the key's label once")
            _keys_generate_token(pkcs11, label or name, usage, algorithm, out_dir,
                                 pin_file, pkcs11_module, json_out)
            return
        if name is None:
            raise UsageError("E_USAGE", "keys generate needs NAME (or --pkcs11 with --label)",
                             hint="e.g. oemkit keys generate release-2027 --usage bundle")
        if label is not None:
            raise UsageError("E_USAGE", "--label names a key in a token; it needs --pkcs11",
                             hint="for a key file, NAME is the file stem")
        from oemkit.release.keygen import generate_key_files

        passphrase = None
        if not no_passphrase:
            passphrase = _new_passphrase()
        else:
            err.print("[bold yellow]WARNING[/]: the private key is written UNENCRYPTED; anyone "
                      "who can read the file can sign as you.")
        result = generate_key_files(name, usage, algorithm, out_dir, passphrase)
        if json_out:
            emit_json({"ok": True, **result})
        err.print(f"Key id {safe(result['keyid'])} ({safe(algorithm)}, usage {safe(usage)})\n"
                  f"  private: {safe(result['private'])} (0600)\n"
                  f"  public:  {safe(result['public'])}")
        if not json_out:
            sys.stdout.write(result["keyid"] + "\n")


def _keys_generate_token(uri: str, label: str | None, usage: str, algorithm: str,
                         out_dir: Path, pin_file: Path | None, module: str | None,
                         json_out: bool) -> None:
    from oemkit._fs import atomic_write_bytes
    from oemkit.cli._keys import token_access
    from oemkit.crypto import pkcs11
    from oemkit.crypto.keys import ALGORITHMS, key_id, public_pem
    from oemkit.errors import InputError, UsageError
    from oemkit.models.trust import USAGES

    if label is None:
        raise UsageError("E_USAGE", "--pkcs11 needs --label NAME (the key's label in the token)",
                         hint="e.g. --label root-a")
    if usage not in USAGES:
        raise UsageError("E_USAGE", f"unknown --usage {usage!r}",
                         hint=f"choose from {', '.join(USAGES)}")
    if algorithm not in ALGORITHMS:
        raise UsageError("E_USAGE", f"unknown --algorithm {algorithm!r}",
                         hint=f"choose from {', '.join(ALGORITHMS)}")
    if not label or "/" in label or label.startswith("."):
        raise UsageError("E_USAGE", f"invalid key label {label!r}",
                         hint="use a plain name such as root-a")
    pub_path = out_dir / f"{label}.pub"
    if pub_path.exists():
        raise InputError("E_KEY_EXISTS", f"{pub_path} already exists",
                         hint="choose another --label or --out-dir; files are never overwritten")
    facts = pkcs11.generate_key(uri, label, usage, algorithm, token_access(pin_file, module))
    pem = public_pem(facts.public)
    atomic_write_bytes(pub_path, pem.encode("ascii"), mode=0o644)
    _report_token_key(facts, key_id(facts.public), pem, json_out, public=str(pub_path))


def _report_token_key(facts: Any, keyid: str, pem: str, json_out: bool, *,
                      public: str | None) -> None:
    fields = {"keyid": keyid, "uri": facts.uri, "token": facts.token, "label": facts.label,
              "usage": facts.usage, "public_pem": pem, "extractable": facts.extractable,
              "sensitive": facts.sensitive}
    if public is not None:
        fields["public"] = public
    if json_out:
        emit_json({"ok": True, **fields})
    kept = ("not extractable, sensitive" if facts.extractable is False and facts.sensitive
            else f"extractable={facts.extractable}, sensitive={facts.sensitive}")
    where = (f"in the token: {safe(facts.uri)} ({kept})" if facts.token
             else f"from the key file {safe(facts.uri)}")
    err.print(f"Key id {safe(keyid)} (usage {safe(facts.usage or 'not recorded')}), {where}"
              + (f"\n  public:  {safe(public)}" if public else ""))
    if not json_out:
        if public:  # the key id alone on stdout (KEYID=$(...)), the PEM beside it on stderr
            err.print(pem.rstrip("\n"), markup=False, highlight=False)
        sys.stdout.write(keyid + "\n" if public else pem)


@keys_app.command("list")
def keys_list(
    pkcs11_uri: str = typer.Option(..., "--pkcs11", metavar="TOKEN-URI",
                                   help="The token to list (pkcs11:token=LABEL)."),
    trust: TrustListed = None,
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """List the private keys in a PKCS#11 token: label, key id, algorithm, recorded usage,
    whether the private half can leave it, and (with --trust) its role in a trust root.

    Example: oemkit keys list --pkcs11 pkcs11:token=release-a --trust trust-root.json
    """
    with guard(json_out):
        from oemkit.cli._keys import token_access
        from oemkit.crypto import pkcs11
        from oemkit.crypto.keys import algorithm_of, key_id

        if not pkcs11.is_uri(pkcs11_uri):
            from oemkit.errors import UsageError

            raise UsageError("E_KEY_URI", f"--pkcs11 {pkcs11_uri[:120]!r} is not a PKCS#11 URI",
                             hint="write it as pkcs11:token=LABEL")
        root = _current_root(trust).root if trust is not None else None
        token, entries = pkcs11.list_keys(pkcs11_uri, token_access(pin_file, pkcs11_module))
        rows = []
        for e in entries:
            row: dict[str, object] = {"label": e.label, "id": e.object_id.hex(),
                                      "problem": e.problem}
            if e.facts is not None:
                kid = key_id(e.facts.public)
                listed = root.key(kid) if root is not None else None
                row.update(keyid=kid, uri=e.facts.uri, algorithm=algorithm_of(e.facts.public),
                           usage=e.facts.usage, extractable=e.facts.extractable,
                           sensitive=e.facts.sensitive)
                if root is not None:
                    row["trust_root"] = ({"usage": list(listed.usage), "status": listed.status,
                                          "name": listed.name} if listed else None)
            rows.append(row)
        if json_out:
            emit_json({"ok": True, "token": token, "keys": rows})
        from rich.table import Table

        err.print(f"Token {safe(token)}: {len(rows)} private key(s)")
        table = Table(box=None, header_style="bold")
        for col in ("label", "keyid", "algorithm", "usage", "kept inside",
                    *(("in the trust root",) if root is not None else ())):
            table.add_column(col)
        for row in rows:
            if row["problem"]:
                table.add_row(safe(row["label"]), "-", "-", "-", "-",
                              *(("-",) if root is not None else ()))
                continue
            inside = ("yes" if row["extractable"] is False and row["sensitive"] else
                      "unknown (the token does not say)"
                      if None in (row["extractable"], row["sensitive"]) else
                      f"NO (extractable={row['extractable']}, sensitive={row['sensitive']})")
            cells = [safe(row["label"]), safe(str(row["keyid"])[:16]) + "…",
                     safe(row["algorithm"]), safe(row["usage"] or "not recorded"), inside]
            if root is not None:
                entry = row["trust_root"]
                cells.append("not listed" if entry is None else safe(
                    f"{','.join(entry['usage'])} ({entry['status']})"))  # type: ignore[index]
            table.add_row(*cells)
        err.print(table)
        for row in rows:
            if row["problem"]:
                err.print(f"  {safe(row['label'])}: {safe(row['problem'])}")


@keys_app.command("export-pub")
def keys_export_pub(
    key: str = typer.Argument(..., metavar="KEY", help="A token key URI (pkcs11:… or "
                              "hsm:…), or a private key file."),
    out: Path | None = typer.Option(None, "--out", help="Write the PEM here (else stdout)."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Print a key's public half (PEM) and key id: read from the token for a URI.

    Example: oemkit keys export-pub "pkcs11:token=release-a;object=root-a" --out root-a.pub
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit.cli._keys import load_key, token_access
        from oemkit.crypto import pkcs11
        from oemkit.crypto.keys import key_id, public_pem

        if pkcs11.is_uri(key) or key.startswith("hsm:"):
            access = token_access(pin_file, pkcs11_module)
            text = pkcs11.from_hsm_uri(key) if key.startswith("hsm:") else key
            facts = pkcs11.export_public(text, access)
        else:
            loaded = load_key(key)
            facts = pkcs11.KeyFacts(uri=key, token="", label=loaded.name,
                                    public=loaded.public, usage=None, extractable=None,
                                    sensitive=None)
        pem = public_pem(facts.public)
        if out is not None:
            atomic_write_bytes(out, pem.encode("ascii"), mode=0o644)
        _report_token_key(facts, key_id(facts.public), pem, json_out,
                          public=str(out) if out is not None else None)


def _new_passphrase() -> bytes:
    import os

    from oemkit.errors import InputError

    env = os.environ.get("OEMKIT_KEY_PASSPHRASE")
    if env:
        return env.encode("utf-8")
    if not sys.stdin.isatty():
        raise InputError("E_KEY_PASSPHRASE_REQUIRED", "no passphrase for the new key",
                         hint="set OEMKIT_KEY_PASSPHRASE, run in a terminal, or pass "
                              "--no-passphrase (unsafe)")
    import getpass

    first = getpass.getpass("New key passphrase: ")
    if not first or first != getpass.getpass("Repeat passphrase: "):
        raise InputError("E_KEY_PASSPHRASE", "passphrases were empty or did not match",
                         hint="run the command again")
    return first.encode("utf-8")


# --------------------------------------------------------------------------- trust


@trust_app.command("init")
def trust_init(
    root_key: list[str] = typer.Option([], "--root-key", metavar="KEY",
                                       help="Root private key (repeat)." + KEY_HELP),
    root_pub: list[Path] = typer.Option([], "--root-pub", help="With --propose: the public "
                                        "key of a root key held elsewhere (repeat)."),
    threshold: int = typer.Option(1, "--threshold", help="Root signatures needed per change.",
                                  parser=int_option("--threshold", 1)),
    out: Path = typer.Option(..., "--out", help="Where to write the trust root."),
    propose: Propose = False,
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Create version 1 of a trust root, signed by its root keys (or, with --propose, a
    proposal its holders sign on their own machines: trust sign, trust status).

    Example: oemkit trust init --root-key root.key --out trust-root.json
    Example: oemkit trust init --root-pub a.pub --root-pub b.pub --threshold 2 --propose
    --out trust-root.proposal.json
    """
    with guard(json_out):
        from oemkit._fs import atomic_write_bytes
        from oemkit.crypto.keys import load_public_file
        from oemkit.release.trust import init_root

        keys = _root_keys(root_key, pin_file, pkcs11_module) if root_key else []
        publics = [(load_public_file(p), p.stem) for p in root_pub]
        doc = init_root(keys, threshold, names=[k.name for k in keys], publics=publics,
                        propose=propose)
        atomic_write_bytes(out, doc)
        _report_root(out, json_out, proposal=propose)


def _report_root(path: Path, json_out: bool, *, proposal: bool = False,
                 current: SignedRoot | None = None) -> None:
    from oemkit._fs import read_input
    from oemkit.verify.trust import parse_root, proposal_status

    signed = parse_root(read_input(path, "trust root"), proposal=proposal)
    root = signed.root
    if not proposal:
        if json_out:
            emit_json({"ok": True, "path": str(path), "trust_root": root.to_dict()})
        err.print(f"Wrote {safe(path)}: trust root v{root.version} with {len(root.keys)} "
                  "key(s)")
        return
    from oemkit.cli.ceremony import print_status, status_doc

    status = proposal_status(signed, current.root if current is not None else None)
    if json_out:
        emit_json({"ok": True, "path": str(path), "proposal": status_doc(status),
                   "trust_root": root.to_dict()})
    err.print(f"Wrote {safe(path)}: proposed trust root v{root.version} with "
              f"{len(root.keys)} key(s)")
    print_status(status, path)


def _current_root(path: Path) -> SignedRoot:
    from oemkit._fs import read_input
    from oemkit.verify.trust import check_self_signed, parse_root

    signed = parse_root(read_input(path, "trust root"), str(path))
    check_self_signed(signed, str(path))
    return signed


def _change_signers(refs: list[str], propose: bool, out: Path | None, root: Path,
                    pin_file: Path | None, module: str | None,
                    current: SignedRoot) -> list[PrivateKeyInfo]:
    """The --sign-with keys of a trust-root change: at least one, unless it is a proposal
    (which goes to --out, never over the root in force)."""
    from oemkit.errors import UsageError

    if propose and out is None:
        raise UsageError("E_USAGE", "--propose needs --out: a proposal is not a trust root "
                         "until its holders have signed it, so it never replaces ROOT",
                         hint=f"add --out {root.stem}-v{current.root.version + 1}"
                              ".proposal.json")
    if not refs and not propose:
        raise UsageError("E_USAGE", "Missing option '--sign-with'",
                         hint="pass the current root keys with --sign-with, or --propose to "
                              "write a proposal the root-key holders sign with 'oemkit trust "
                              "sign' (docs/TRUST.md)")
    return _root_keys(refs, pin_file, module, current) if refs else []


def _write_change(root: Path, out: Path | None, doc: bytes, propose: bool,
                  current: SignedRoot, json_out: bool) -> None:
    """Write a change over ROOT, or to --out (where a proposal always goes)."""
    from oemkit._fs import atomic_write_bytes

    atomic_write_bytes(out or root, doc)
    _report_root(out or root, json_out, proposal=propose, current=current)


@trust_app.command("add-key")
def trust_add_key(
    root: Path = typer.Argument(..., help="Current trust root."),
    pub: Path = typer.Option(..., "--pub", help="Public key to add."),
    usage: list[str] = typer.Option(..., "--usage", help="bundle, license, crl or root."),
    expires: str | None = typer.Option(None, "--expires", help="ISO 8601 date."),
    not_before: str | None = typer.Option(None, "--not-before", help="ISO 8601 date."),
    name: str = typer.Option("", "--name", help="Label for the key."),
    sign_with: SignWith = [],  # noqa: B006 (typer reads the default, never mutated)
    out: OutInstead = None,
    propose: Propose = False,
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Write the next trust-root version with a key added (with --propose: a proposal
    for the root-key holders to sign).

    Example: oemkit trust add-key trust-root.json --pub bundle.pub --usage bundle
    --sign-with root.key
    """
    with guard(json_out):
        from oemkit._time import parse_time
        from oemkit.crypto.keys import load_public_file
        from oemkit.release.trust import add_key

        usages = _usages(usage)
        current = _current_root(root)
        doc = add_key(
            current, load_public_file(pub), usages,
            _change_signers(sign_with, propose, out, root, pin_file, pkcs11_module, current),
            name=name or pub.stem,
            expires=parse_time(expires, "--expires") if expires else None,
            not_before=parse_time(not_before, "--not-before") if not_before else None,
            propose=propose)
        _write_change(root, out, doc, propose, current, json_out)


def _usages(values: list[str]) -> list[Usage]:
    from oemkit.errors import UsageError
    from oemkit.models.trust import USAGES

    bad = [u for u in values if u not in USAGES]
    if bad:
        raise UsageError("E_USAGE", f"unknown --usage {bad[0]!r}",
                         hint=f"choose from {', '.join(USAGES)}")
    return [u for v in values for u in USAGES if u == v]  # each value, as a Usage


def _status_command(action: str) -> Callable[..., None]:
    def command(
        root: Path = typer.Argument(..., help="Current trust root."),
        keyid: str = typer.Argument(..., help="Key id (or a unique prefix)."),
        sign_with: SignWith = [],  # noqa: B006 (typer reads the default, never mutated)
        out: OutInstead = None,
        propose: Propose = False,
        pin_file: PinFile = None,
        pkcs11_module: Pkcs11Module = None,
        json_out: JsonOut = False,
    ) -> None:
        with guard(json_out):
            from oemkit.release import trust

            fn = trust.retire_key if action == "retire" else trust.revoke_key
            current = _current_root(root)
            doc = fn(current, keyid,
                     _change_signers(sign_with, propose, out, root, pin_file, pkcs11_module,
                                     current),
                     propose=propose)
            _write_change(root, out, doc, propose, current, json_out)
    return command


trust_app.command(
    "retire-key",
    help="Write the next version with a key retired: what it signed before stays valid.\n\n"
         "Example: oemkit trust retire-key trust-root.json 1a2b3c --sign-with root.key",
)(_status_command("retire"))
trust_app.command(
    "revoke-key",
    help="Write the next version with a key marked compromised: everything it signed is "
         "rejected.\n\nExample: oemkit trust revoke-key trust-root.json 1a2b3c "
         "--sign-with root.key",
)(_status_command("revoke"))


@trust_app.command("set-threshold")
def trust_set_threshold(
    root: Path = typer.Argument(..., help="Current trust root."),
    usage: str = typer.Argument(..., help="root, bundle, license or crl."),
    threshold: int = typer.Argument(..., help="Valid signatures required.",
                                    parser=int_option("THRESHOLD", 1)),
    sign_with: SignWith = [],  # noqa: B006 (typer reads the default, never mutated)
    out: OutInstead = None,
    propose: Propose = False,
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Write the next version requiring THRESHOLD signatures for USAGE.

    Example: oemkit trust set-threshold trust-root.json bundle 2 --sign-with root.key
    """
    with guard(json_out):
        from oemkit.release.trust import set_threshold

        # set_threshold refuses a USAGE that is not one (E_USAGE): its message, as before
        current = _current_root(root)
        doc = set_threshold(current, cast("Usage", usage), threshold,
                            _change_signers(sign_with, propose, out, root, pin_file,
                                            pkcs11_module, current), propose=propose)
        _write_change(root, out, doc, propose, current, json_out)


@trust_app.command("show")
def trust_show(
    root: Path = typer.Argument(..., help="Trust root file."),
    json_out: JsonOut = False,
) -> None:
    """Show a trust root's version, thresholds and keys (after checking its signatures).

    Example: oemkit trust show trust-root.json
    """
    with guard(json_out):
        signed = _current_root(root)
        r = signed.root
        if json_out:
            emit_json({"ok": True, "trust_root": r.to_dict()})
            return
        from rich.table import Table

        err.print(f"Trust root v{r.version}, issued {r.issued:%Y-%m-%d %H:%M:%SZ}; thresholds: "
                  + ", ".join(f"{safe(u)}={n}" for u, n in r.thresholds.items()))
        table = Table(box=None, header_style="bold")
        for col in ("keyid", "name", "usage", "status", "not before", "expires/retired"):
            table.add_column(col)
        for k in r.keys:
            end = k.window_end()
            table.add_row(safe(k.keyid[:16]) + "…", safe(k.name), safe(",".join(k.usage)),
                          safe(k.status),
                          f"{k.not_before:%Y-%m-%d}" if k.not_before else "-",
                          f"{end:%Y-%m-%d}" if end else "-")
        err.print(table)


_register_ceremony_commands()  # after the trust commands above: listed after them


# --------------------------------------------------------------------------- build / sign


@app.command()
def build(
    spec: Path = typer.Argument(..., help="bundle.yaml (or its directory)."),
    out: OutDir = Path("dist"),
    source_date_epoch: int | None = typer.Option(
        None, "--source-date-epoch", help="Build time in seconds (default $SOURCE_DATE_EPOCH).",
        parser=int_option("--source-date-epoch", 0)),  # the year range: build judges it
    trust: TrustCarried = None,
    strict: bool = typer.Option(False, "--strict", help="Refuse a spec whose wheelhouse "
                                "lacks a project its requirements name (default: warn)."),
    json_out: JsonOut = False,
) -> None:
    """Build NAME-VERSION.oemb from a spec, byte-reproducibly.

    Example: oemkit build bundles/example/bundle.yaml --out dist/
    """
    with guard(json_out):
        from oemkit.release.bundle import build_bundle
        from oemkit.release.spec import load_spec

        loaded = load_spec(spec) if err.is_terminal else None  # the bar needs a total
        total = sum(f.source.stat().st_size for f in loaded.files) if loaded else None
        with progress("packing", total) as cb:
            result = build_bundle(loaded or spec, out, trust=trust,
                                  source_date_epoch_override=source_date_epoch, progress=cb,
                                  strict=strict)
        if json_out:
            emit_json({"ok": True, "bundle": str(result.path), "name": result.name,
                       "version": result.version, "manifest_sha256": result.manifest_sha256,
                       "payload_sha256": result.payload_sha256, "files": result.files,
                       "payload_bytes": result.payload_bytes,
                       "verify_flags": list(result.verify_flags),
                       "warnings": [w.to_dict() for w in result.warnings]})
        for warning in result.warnings:
            err.print(f"[yellow]WARNING[/] {safe(warning.code)}: {safe(warning.message)}\n"
                      f"  hint: {safe(warning.hint)}")
        err.print(f"Built {safe(result.path)} ({result.files} files, {result.payload_bytes} "
                  f"bytes; manifest sha256 {safe(result.manifest_sha256)})")
        if result.verify_flags:
            flags = safe(" ".join(result.verify_flags))
            err.print(f"[yellow]NOTE[/]: this bundle exceeds the default reader limits; sign, "
                      f"verify, unpack, install, upgrade, split and join it with {flags}")


@app.command()
def sign(
    bundle: Path = typer.Argument(..., help="Bundle to sign (rewritten atomically)."),
    key: list[str] = typer.Option(..., "--key", metavar="KEY",
                                  help="Bundle key (repeat for several)." + KEY_HELP),
    trust: TrustSignCheck = None,
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Append one signature per key; signing again with the same key changes nothing.

    Example: oemkit sign dist/example-0.1.0.oemb --key keys/bundle.key
    """
    with guard(json_out):
        from oemkit.cli._keys import load_keys
        from oemkit.release.sign import sign_bundle

        keys = load_keys(key, pin_file, pkcs11_module, usage="bundle", command="oemkit sign")
        if trust is not None:
            _check_bundle_keys(keys, trust)
        else:
            for k in keys:
                if "root" in k.name.lower():
                    err.print(f"[bold yellow]WARNING[/]: {safe(k.source)}'s name says root: "
                              "root keys sign trust roots, and verify rejects a bundle "
                              "signed only by one; pass --trust ROOT to check the key")
        with progress("signing", file_size(bundle)) as cb:
            result = sign_bundle(bundle, keys, progress=cb,
                                 limits=limits(max_files, max_member, max_payload))
        if json_out:
            emit_json({"ok": True, "bundle": str(bundle), "added": list(result.added),
                       "already_signed": list(result.kept), "links": list(result.links)})
        for keyid in result.added:
            err.print(f"Signed {safe(bundle)} with key {safe(keyid)}")
        for keyid in result.kept:
            err.print(f"Already signed by key {safe(keyid)}; unchanged")
        for name in result.links:
            err.print(f"Wrote the in-toto build link {safe(name)} (docs/INTOTO.md)")


def _check_bundle_keys(keys: list[PrivateKeyInfo], trust: Path) -> None:
    """Refuse a key the trust root lists without usage bundle (verify would reject the
    signature); warn about a key it does not list (it may be added later)."""
    from oemkit._fs import read_input
    from oemkit.errors import VerificationError
    from oemkit.verify.trust import parse_root

    root = parse_root(read_input(trust, "trust root"), str(trust)).root
    for key in keys:
        entry = root.key(key.keyid)
        if entry is None:
            err.print(f"[bold yellow]WARNING[/]: {safe(key.source)} (key {safe(key.keyid[:16])}…) "
                      f"is not in {safe(trust)}: hosts that pin it will not accept this "
                      "signature until the key is added with usage bundle")
        elif "bundle" not in entry.usage:
            raise VerificationError(
                "E_KEY_USAGE", f"{key.source} is a {'/'.join(entry.usage)} key in {trust}, "
                "not a bundle key: verify would reject this signature",
                hint="sign with a bundle key (trust add-key --usage bundle)")


# --------------------------------------------------------------------------- verify & co


@app.command()
def verify(
    *,
    bundle: Path = typer.Argument(..., help="Bundle to verify."),
    trust: TrustPinned,
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
    state: Path | None = typer.Option(None, "--state", help="License state file (for an "
                                      "attached license)."),
    env: str | None = typer.Option(None, "--env", help="This host's environment (licenses)."),
    layout: Path | None = typer.Option(None, "--layout", help="Then check it against this "
                                       "in-toto layout, with in-toto (docs/INTOTO.md)."),
    layout_key: list[Path] = typer.Option([], "--layout-key", help="Public key of the "
                                          "layout's owner (repeat)."),
) -> None:
    """Verify a bundle offline: structure, trust chain, signatures, manifest, SBOM, payload.

    An attached license (oemkit license attach) is judged too and reported beside it.
    With --layout, a bundle the trust root accepts is then verified by in-toto against
    the customer's layout and the in-toto links the bundle carries.

    Example: oemkit verify dist/example-0.1.0.oemb --trust trust-root.json
    """
    with guard(json_out):  # the body is shared with the typer-free path (cli/_hot.py)
        from oemkit.cli._hot import verify_body

        code = verify_body(bundle=bundle, trust=trust, json_out=json_out, max_files=max_files,
                           max_member=max_member, max_payload=max_payload, state=state,
                           env=env, layout=layout, layout_key=layout_key)
        if code:
            raise typer.Exit(code)


@app.command()
def inspect(
    bundle: Path = typer.Argument(..., help="Bundle to inspect."),
    trust: TrustFirst = None,
    json_out: JsonOut = False,
) -> None:
    """Show what is inside a bundle (marked UNVERIFIED unless --trust is given).

    Example: oemkit inspect dist/example-0.1.0.oemb
    """
    with guard(json_out):
        from oemkit.verify.bundle import inspect_bundle, verify_bundle

        info = {"ok": True, **inspect_bundle(bundle).to_dict()}
        if trust is not None:
            report = verify_bundle(bundle, trust)
            info["verified"] = info["ok"] = report.ok
            info["verification"] = report.to_dict()
            if report.error is not None:
                info["error"] = report.error.to_dict()
        if json_out:
            emit_json(info)
        _print_inspect(info, trust is not None)
        if trust is not None and not info["verified"]:
            raise typer.Exit(1)


def _at(doc: object, *path: str) -> object:
    """``doc[path[0]][path[1]]...`` or None: rendering never trusts an unverified shape."""
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _print_inspect(info: dict[str, Any], checked: bool) -> None:
    """What ``inspect`` found, every bundle-supplied string through :func:`safe`."""
    from rich.table import Table

    m = info.get("manifest")
    status = ("[bold green]VERIFIED[/]" if info.get("verified") is True else
              "[bold yellow]UNVERIFIED[/]" if not checked else "[bold red]REJECTED[/]")
    err.print(f"{status} {safe(_at(m, 'name'))} {safe(_at(m, 'version'))} — "
              f"{safe(_at(m, 'description'))}")
    err.print(f"  built {safe(_at(m, 'build_time'))} by oemkit "
              f"{safe(_at(m, 'builder', 'version'))}; manifest sha256 "
              f"{safe(info.get('manifest_sha256'))}")
    profiles = ", ".join(safe(p) for p in _list(_at(m, "runtime", "profiles")))
    err.print(f"  model {safe(_at(m, 'runtime', 'model'))}, entrypoint "
              f"{safe(_at(m, 'runtime', 'entrypoint'))}, profiles {profiles or '-'}")
    signers = ", ".join(safe(str(k)[:16]) + "…" for k in _list(info.get("signatures")))
    err.print(f"  signatures: {signers or 'none'}")
    table = Table(box=None, header_style="bold")
    for col in ("path", "size", "mode", "sha256"):
        table.add_column(col)
    for f in _list(_at(m, "files")):
        mode = _at(f, "mode")
        table.add_row(safe(_at(f, "path")), safe(_at(f, "size")),
                      f"{mode:o}" if isinstance(mode, int) else safe(mode),
                      safe(str(_at(f, "sha256"))[:16]) + "…")
    err.print(table)


@app.command()
def unpack(
    *,
    bundle: Path = typer.Argument(..., help="Bundle to unpack."),
    dest: Path = typer.Argument(..., help="Destination directory (absent or empty)."),
    trust: TrustPinned,
    force: bool = typer.Option(False, "--force", help="Replace a non-empty DEST."),
    json_out: JsonOut = False,
    max_files: MaxFiles = DEFAULT_MAX_FILES,
    max_member: MaxMember = DEFAULT_MAX_MEMBER,
    max_payload: MaxPayload = DEFAULT_MAX_PAYLOAD,
) -> None:
    """Verify, then extract the payload into DEST atomically (never outside it).

    Example: oemkit unpack dist/example-0.1.0.oemb /opt/example --trust trust-root.json
    """
    with guard(json_out):
        from oemkit.host.unpack import unpack_bundle

        with progress("unpacking", file_size(bundle)) as cb:
            report = unpack_bundle(bundle, dest, trust, force=force, progress=cb,
                                   limits=limits(max_files, max_member, max_payload))
        from oemkit.cli._hot import print_report

        print_report(report, json_out)
        if not report.ok:
            raise typer.Exit(1)


@app.command()
def sbom(
    args: list[str] = typer.Argument(..., metavar="BUNDLE | diff OLD NEW",
                                     help="A bundle, or 'diff' and two bundles."),
    format: str = typer.Option(
        "table", "--format", help="table (on stderr), or cyclonedx: the SBOM itself, as "
        "the bundle carries it, on stdout (json: deprecated, the same)."),
    trust: TrustFirst = None,
    json_out: JsonOut = False,
) -> None:
    """Show a bundle's CycloneDX SBOM, or what changed between two bundles' SBOMs.

    --json prints oemkit's JSON document (the components, whether they were verified), as
    every command's --json does; --format cyclonedx prints the CycloneDX SBOM itself.
    Without --trust the output is marked UNVERIFIED.
    Example: oemkit sbom dist/example-0.1.0.oemb --trust trust-root.json
    Example: oemkit sbom dist/example-0.1.0.oemb --trust trust-root.json --format cyclonedx
    Example: oemkit sbom diff old.oemb new.oemb
    """
    with guard(json_out):
        from oemkit.errors import UsageError
        from oemkit.report.sbom import component_rows, read_member_json, sbom_diff

        if format not in ("table", "cyclonedx", "json"):
            raise UsageError("E_USAGE", f"unknown --format {format!r}",
                             hint="table or cyclonedx (--json: oemkit's JSON document)")
        diffing = args[0] == "diff"
        if format == "json":  # what it meant: the SBOM for one bundle, --json for a diff
            err.print("[yellow]note[/]: --format json is deprecated: say "
                      + ("--json (the diff as oemkit's JSON document)" if diffing else
                         "--format cyclonedx (the SBOM itself; --json is oemkit's JSON "
                         "document)"))
            format, json_out = ("table", True) if diffing else ("cyclonedx", json_out)
        if format == "cyclonedx" and json_out:
            raise UsageError("E_USAGE", "--format cyclonedx and --json both print a document "
                             "on stdout", hint="--format cyclonedx for the SBOM itself, or "
                             "--json for oemkit's JSON document (components, verified)")
        if diffing:
            if format == "cyclonedx":
                raise UsageError("E_USAGE", "sbom diff has no SBOM to print (--format "
                                 "cyclonedx is for one bundle)",
                                 hint="oemkit sbom diff OLD.oemb NEW.oemb --json")
            if len(args) != 3:
                raise UsageError("E_USAGE", "sbom diff takes two bundles",
                                 hint="oemkit sbom diff OLD.oemb NEW.oemb")
            old = read_member_json(Path(args[1]), "sbom.cdx.json", trust)
            new = read_member_json(Path(args[2]), "sbom.cdx.json", trust)
            diff = sbom_diff(old.doc, new.doc)
            if json_out:
                emit_json({"ok": True, "verified": old.verified, "old": old.bundle,
                           "new": new.bundle, **diff})
            _unverified_note(old.verified)
            _print_diff(diff)
            return
        if len(args) != 1:
            raise UsageError("E_USAGE", "sbom takes one bundle (or 'diff OLD NEW')",
                             hint="oemkit sbom BUNDLE")
        doc = read_member_json(Path(args[0]), "sbom.cdx.json", trust)
        rows = component_rows(doc.doc)
        if format == "cyclonedx":
            emit_json(doc.doc)
        elif json_out:
            emit_json({"ok": True, "verified": doc.verified, "bundle": doc.bundle,
                       "components": rows})
        _unverified_note(doc.verified)
        err.print(f"SBOM of {safe(_at(doc.doc, 'metadata', 'component', 'name'))} "
                  f"{safe(_at(doc.doc, 'metadata', 'component', 'version'))}: {len(rows)} "
                  f"components, serial {safe(_at(doc.doc, 'serialNumber'))}")
        if format == "table":
            from rich.table import Table

            table = Table(box=None, header_style="bold")
            for col in ("type", "name", "version", "sha256"):
                table.add_column(col, overflow="fold")
            for r in rows:
                table.add_row(safe(r["type"]), safe(r["name"]), safe(r["version"] or "-"),
                              safe(str(r["sha256"] or "-")[:16]))
            err.print(table)


def _unverified_note(verified: bool) -> None:
    if not verified:
        err.print("[bold yellow]UNVERIFIED[/]: nothing was checked; pass --trust ROOT to verify "
                  "the bundle first")


def _print_diff(diff: dict[str, Any]) -> None:
    for kind, mark in (("added", "[green]+[/]"), ("removed", "[red]-[/]")):
        for c in diff[kind]:
            err.print(f"{mark} {safe(c['type'])} {safe(c['name'])} "
                      f"{safe(c['version'] or '')}".rstrip())
    for c in diff["changed"]:
        old, new = c["old"], c["new"]
        what = (f"{safe(old['version'])} -> {safe(new['version'])}"
                if old["version"] != new["version"] else
                f"sha256 {safe(str(old['sha256'])[:12])} -> {safe(str(new['sha256'])[:12])}")
        err.print(f"[yellow]~[/] {safe(c['type'])} {safe(c['name'])}: {what}")
    if not any(diff.values()):
        err.print("no component changed")


@app.command()
def provenance(
    bundle: Path = typer.Argument(..., help="Bundle."),
    trust: TrustFirst = None,
    json_out: JsonOut = False,
) -> None:
    """Print the bundle's in-toto / SLSA provenance statement (UNVERIFIED without --trust).

    Example: oemkit provenance dist/example-0.1.0.oemb --trust trust-root.json
    """
    with guard(json_out):
        from oemkit.report.sbom import read_member_json

        doc = read_member_json(bundle, "provenance.intoto.json", trust)
        statement = doc.doc
        emit_json({"ok": True, "verified": doc.verified, "statement": statement}
                  if json_out else statement)
        _unverified_note(doc.verified)
        build = _at(statement, "predicate", "buildDefinition")
        run_details = _at(statement, "predicate", "runDetails")
        err.print(f"buildType {safe(_at(build, 'buildType'))}; builder "
                  f"{safe(_at(run_details, 'builder', 'id'))}")
        for subject in _list(_at(statement, "subject")):
            err.print(f"  subject {safe(_at(subject, 'name'))} sha256:"
                      f"{safe(_at(subject, 'digest', 'sha256'))}")
        err.print(f"  {len(_list(_at(build, 'resolvedDependencies')))} resolved dependencies; "
                  f"finished {safe(_at(run_details, 'metadata', 'finishedOn'))}")


@app.command()
def demo(
    out: Path = typer.Option(Path("dist"), "--out", help="Where to leave the bundle and root."),
    serve: bool = typer.Option(True, "--serve/--no-serve",
                               help="Serve the bundle and make one inference over HTTP "
                                    "(127.0.0.1, a free port)."),
    releases: int = typer.Option(1, "--releases", parser=int_option("--releases", 1, 2),
                                 help="2: also build and sign the release before it "
                                      "(example 0.1.0), to try upgrade and rollback."),
    json_out: JsonOut = False,
) -> None:
    """Build the example bundle, sign it with the INSECURE example keys, verify it, serve
    it (oemkit serve in a child process), make one inference over HTTP with the golden
    input, print the answer and stop the server.

    Example: oemkit demo --out /tmp/demo
    Example: oemkit demo --releases 2 --out dist
    """
    with guard(json_out):
        from oemkit.host.demo import run_demo

        result = run_demo(out, serve=serve, releases=releases)
        report = result["report"]
        previous = result["previous_report"]
        served = result["served"]
        ok = report.ok and (previous is None or previous.ok)
        if json_out:
            emit_json({"ok": ok, "bundle": str(result["bundle"]),
                       "trust_root": str(result["trust_root"]), "report": report.to_dict(),
                       "previous": str(result["previous"]) if previous else None,
                       "previous_report": previous.to_dict() if previous else None,
                       "served": served.to_dict() if served else None})
        if previous is not None:
            err.print(f"Built   {safe(result['previous'])} (the release before; signed and "
                      f"{'verified' if previous.ok else 'NOT verified'})")
            if not previous.ok:
                check_table(previous.checks)
                err.print("[bold red]demo failed[/]")
                raise typer.Exit(1)
        err.print(f"Built   {safe(result['bundle'])}")
        err.print(f"Signed  with keys-example/bundle.key (key {safe(report.signers[0][:16])}…)"
                  if report.signers else "Signed  (no trusted signer)")
        err.print(f"Trust   {safe(result['trust_root'])} (v{report.trust_root_version}; example "
                  "keys, INSECURE)")
        check_table(report.checks)
        if not report.ok:
            err.print("[bold red]demo failed[/]")
            raise typer.Exit(1)
        if served is not None:
            _print_served(served, result)
        err.print(f"[bold green]OK[/] every check passed. Try: oemkit verify "
                  f"{safe(result['bundle'])} --trust {safe(result['trust_root'])}")


def _print_served(served: Any, result: dict[str, Any]) -> None:
    t = served.timings_ms
    err.print(f"Served  oemkit serve {safe(result['bundle'])} --trust "
              f"{safe(result['trust_root'])} --port 0: ready on 127.0.0.1:{served.port} in "
              f"{t.get('start_to_ready', 0):.0f} ms")
    err.print(f"Infer   POST /v2/models/{safe(served.model)}/infer with the golden input: "
              f"answered in {t.get('inference', 0):.1f} ms")
    for name, tensor in served.outputs.items():
        shape = tensor.get("shape") or []
        data = [round(float(v), 4) for v in tensor.get("data") or []]
        width = shape[-1] if len(shape) == 2 and shape[-1] else len(data) or 1
        rows = [data[i:i + width] for i in range(0, len(data), width)]
        err.print(f"  {safe(name, markup=False)} {safe(tensor.get('datatype'), markup=False)} "
                  f"{safe(shape, markup=False)}:", markup=False)
        for row in rows:
            err.print(f"    {row}", markup=False)
    if served.top:
        err.print("  top class: " + ", ".join(
            f"row {i}: {safe(label, markup=False)} ({score:.3f})"
            for i, (_, label, score) in enumerate(served.top)), markup=False)
    err.print(f"Stopped SIGTERM: drained and exited {served.exit_code} in "
              f"{t.get('stop', 0):.0f} ms (log: {safe(served.log)})")


def main() -> None:
    """Console-script entry point: the root group with each command built on demand
    (:mod:`oemkit.cli._lazy`), the same commands ``app()`` would build."""
    import os

    from oemkit.cli._lazy import root_group

    if os.environ.get("_OEMKIT_COMPLETE"):  # shell completion (docs/CLI.md "Completion")
        from typer._completion_classes import completion_init

        completion_init()  # typer's bash, zsh, fish and PowerShell completion classes
    root_group(app, _leave_paths_to_oemkit).main()
