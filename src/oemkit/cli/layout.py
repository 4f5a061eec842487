"""`oemkit layout init`: a thin command over oemkit.release.links (docs/INTOTO.md).

Register with ``app.add_typer(layout_app, name="layout")``. ``oemkit verify --layout``
calls :func:`oemkit.verify.layout.verify_layout` (see that module's docstring).
"""

from __future__ import annotations

from pathlib import Path

import typer

from oemkit.cli._keys import KEY_HELP, PinFile, Pkcs11Module
from oemkit.cli._options import JsonOut
from oemkit.cli._output import emit_json, err, guard, int_option, safe

layout_app = typer.Typer(
    rich_markup_mode=None,
    help="in-toto layouts: write a starter layout a customer's security team can adapt.",
    no_args_is_help=True)


@layout_app.command("init")
def layout_init(
    functionary: list[Path] = typer.Option(
        ..., "--functionary", help="Public key (PEM) allowed to sign the build link: the "
        "release key's .pub (repeat for several)."),
    owner_key: str = typer.Option(..., "--owner-key", metavar="KEY", help="Private key of the "
                                  "layout's owner; signs the layout." + KEY_HELP),
    out: Path = typer.Option(Path("root.layout"), "--out", help="Layout file to write."),
    days: int = typer.Option(365, "--days", help="Valid for this many days from now.",
                             parser=int_option("--days", 1)),
    expires: str | None = typer.Option(None, "--expires", help="Expiry (RFC 3339 UTC), "
                                       "instead of --days."),
    threshold: int = typer.Option(1, "--threshold", help="How many functionaries must sign "
                                  "the build link.", parser=int_option("--threshold", 1)),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    pin_file: PinFile = None,
    pkcs11_module: Pkcs11Module = None,
    json_out: JsonOut = False,
) -> None:
    """Write a starter in-toto layout: one step `build` signed by the given release key(s),
    one inspection comparing the unpacked bundle with the signed link's products, signed by
    the owner key as DSSE. `in-toto-verify` and `oemkit verify --layout` read it.

    Example: oemkit layout init --functionary keys/bundle.pub --owner-key owner.key
    """
    with guard(json_out):
        from oemkit._time import parse_time
        from oemkit.cli._keys import load_key
        from oemkit.crypto.keys import load_public_file
        from oemkit.release.links import init_layout, write_layout

        publics = [load_public_file(p) for p in functionary]
        owner = load_key(owner_key, pin_file, pkcs11_module)
        when = parse_time(expires, "--expires") if expires is not None else None
        result = init_layout(publics, owner, days=days, expires=when, threshold=threshold)
        path = write_layout(out, result, force=force)
        if json_out:
            emit_json({"ok": True, "layout": str(path), **result.to_dict()})
        err.print(f"Wrote {safe(path)}: step build signed by "
                  f"{', '.join(safe(k[:16]) + '…' for k in result.functionaries)}; "
                  f"expires {safe(result.expires)}; owner key {safe(result.owner[:16])}…")
        err.print(f"Check a bundle: oemkit verify BUNDLE --layout {safe(path)} --layout-key "
                  "OWNER.pub (docs/INTOTO.md)", markup=False)
