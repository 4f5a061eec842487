"""Issuing licenses and revocation lists: canonical claims, one signature, armor."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from oemkit._canonical import canonical_json
from oemkit.crypto.armor import armor, sign_document
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.errors import FormatError, VerificationError, restate
from oemkit.models.license import (
    CRL_PAYLOAD_TYPE,
    LICENSE_LABEL,
    LicenseClaims,
    RevocationList,
    is_license_id,
    seal_license,
)
from oemkit.verify.license import CRL_LABEL


def issue_license(key: PrivateKeyInfo, claims: LicenseClaims) -> bytes:
    """The armored license (``models.license.seal_license``: the claims canonicalised,
    re-validated, signed once).

    Raises:
        VerificationError: E_CLAIMS_INVALID (claims verify would refuse: not signed).
        InputError: E_CANONICAL.
    """
    try:
        return seal_license(key, claims)
    except FormatError as exc:  # claims oemkit would refuse to verify: refuse to sign them
        raise restate(exc, VerificationError) from exc


def issue_crl(key: PrivateKeyInfo, seq: int, *, revoke: Sequence[tuple[str, int | None]] = (),
              revoke_keys: Sequence[str] = (), issued_at: dt.datetime) -> bytes:
    """The armored revocation list with sequence ``seq``."""
    crl = RevocationList(seq, issued_at, dict(revoke), tuple(revoke_keys))
    try:
        RevocationList.from_dict(crl.to_dict())
    except FormatError as exc:  # a CRL oemkit would refuse to verify: refuse to sign it
        raise restate(exc, VerificationError) from exc
    return armor(CRL_LABEL, sign_document(key, CRL_PAYLOAD_TYPE, canonical_json(crl.to_dict())))


def license_id_of(data: bytes, what: str = "license") -> str:
    """The license id a (not yet verified) license claims: for naming only."""
    return _id_and_seq(data, what)[0]


def _id_and_seq(data: bytes, what: str) -> tuple[str, int]:
    """(license id, re-issue sequence) a (not yet verified) license claims."""
    from oemkit._canonical import parse_json
    from oemkit.crypto.armor import dearmor, parse_document
    from oemkit.errors import InputError

    doc = parse_document(dearmor(data, LICENSE_LABEL, what), what)
    claims = parse_json(doc.payload, what=f"{what} claims")
    license_id = claims.get("license_id") if isinstance(claims, dict) else None
    if not is_license_id(license_id):
        raise InputError("E_CLAIMS_INVALID", f"{what} has no valid license_id",
                         hint="attach a license written by 'oemkit license issue'")
    assert isinstance(license_id, str)
    seq = claims.get("seq")
    return license_id, seq if isinstance(seq, int) and not isinstance(seq, bool) else 0


def attach_license(bundle: Path, data: bytes) -> str:
    """Carry ``data`` in the bundle as ``licenses/<id>.lic`` (replacing one with that id).

    Licenses sit outside the bundle signature (a license may bind to this very manifest),
    so attaching one never invalidates the bundle's signatures. Atomic rewrite.
    """
    from oemkit._fs import (
        END_OF_ARCHIVE,
        atomic_output,
        copy_member,
        open_input,
        read_member,
        write_member,
    )
    from oemkit.errors import InputError
    from oemkit.models.manifest import LICENSE_DIR
    from oemkit.verify.bundle import Limits, scan_bundle

    license_id, seq = _id_and_seq(data, "license")
    name = f"{LICENSE_DIR}{license_id}.lic"
    with open_input(bundle, "bundle") as handle:
        members = scan_bundle(handle, Limits())
        licenses = {m.name: m for m in members if m.name.startswith(LICENSE_DIR)}
        if name in licenses:
            attached = _id_and_seq(read_member(handle, licenses[name]), name)[1]
            if seq < attached:
                raise InputError(
                    "E_LICENSE_SUPERSEDED", f"{bundle} already carries re-issue {attached} of "
                    f"license {license_id}; this file is re-issue {seq}",
                    hint="attach the newest license file the vendor sent")
        with atomic_output(bundle, mode=bundle.stat().st_mode & 0o777) as out:
            for member in members:
                if member.name.startswith(LICENSE_DIR):
                    continue
                handle.seek(member.offset)
                copy_member(out, member.name, handle, member.size)
            texts = {n: None for n in licenses} | {name: data}
            for member_name in sorted(texts):
                if texts[member_name] is None:
                    handle.seek(licenses[member_name].offset)
                    copy_member(out, member_name, handle, licenses[member_name].size)
                else:
                    write_member(out, member_name, data)
            out.write(END_OF_ARCHIVE)
    return name
