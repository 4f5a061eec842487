"""Typed results for the two inspect commands and the one license sealer (issue 14, item 5).

``verify.bundle.inspect_bundle`` returns a :class:`BundleInfo`, ``oemkit.license.inspect``
a :class:`LicenseInfo`; each ``to_dict()`` is exactly the JSON the CLI printed before
(compared with the former inline dicts, rebuilt here). ``models.license.seal_license`` is
the one implementation behind ``release.licensing.issue_license`` and
``oemkit.license.issue``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from oemkit._canonical import parse_json, sha256_hex
from oemkit._fs import open_input, read_member
from oemkit.cli import app
from oemkit.errors import FormatError, VerificationError
from oemkit.models.license import LICENSE_LABEL, LicenseClaims, seal_license
from oemkit.models.manifest import MANIFEST, SIGNATURE_DIR, Manifest

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)


def _old_inspect_dict(bundle: Path) -> dict[str, Any]:
    """What inspect_bundle returned before it had a type (its code, inline)."""
    from oemkit.verify.bundle import Limits, parse_manifest, scan_bundle

    with open_input(bundle, "bundle") as handle:
        members = scan_bundle(handle, Limits())
        manifest_bytes = read_member(handle, {m.name: m for m in members}[MANIFEST])
    return {
        "bundle": str(bundle),
        "verified": False,
        "manifest_sha256": sha256_hex(manifest_bytes),
        "members": [{"name": m.name, "size": m.size} for m in members],
        "signatures": [m.name[len(SIGNATURE_DIR):-len(".sigstore.json")] for m in members
                       if m.name.startswith(SIGNATURE_DIR)],
        "manifest": parse_manifest(manifest_bytes).to_dict(),
    }


def test_bundle_info_fields_and_dict(signed_bundle: Path, keys: dict[str, Any]) -> None:
    from oemkit.verify.bundle import BundleInfo, MemberInfo, inspect_bundle

    info = inspect_bundle(signed_bundle)
    assert isinstance(info, BundleInfo) and info.verified is False
    assert info.bundle == str(signed_bundle)
    assert isinstance(info.manifest, Manifest) and info.manifest.name == "example"
    assert all(isinstance(m, MemberInfo) for m in info.members)
    assert info.members[0].name == "oemkit-bundle.json"
    assert info.signatures == (keys["bundle"].keyid,)
    assert info.to_dict() == _old_inspect_dict(signed_bundle)
    with pytest.raises(AttributeError):
        info.bundle = "x"  # type: ignore[misc]


def test_inspect_json_is_the_former_document(signed_bundle: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(signed_bundle), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, **_old_inspect_dict(signed_bundle)}


def _claims(**changes: Any) -> LicenseClaims:
    from dataclasses import replace

    base = LicenseClaims(
        license_id="acme-vision", seq=1, issuer="vendor", customer_id="acme",
        customer_name="ACME Corp", product="vision", issued_at=T0, not_before=T0,
        expires=T0 + 3650 * DAY, grace_seconds=0, features=("batch",), limits={"seats": 5})
    return replace(base, **changes)


@pytest.fixture(scope="module")
def root_doc(keys: dict[str, Any]) -> bytes:
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.trust import parse_root

    doc = init_root([keys["root"]], issued=T0 - 30 * DAY)
    for usage in ("license", "crl"):
        doc = add_key(parse_root(doc), keys[usage].public, [usage], [keys["root"]],
                      name=usage, issued=T0 - 30 * DAY)
    return doc


def _old_license_dict(data: bytes, verified: bool, crl_seq: int | None) -> dict[str, Any]:
    """What 'license inspect --json' printed before (its code, inline), less ``ok``."""
    from oemkit.crypto.armor import dearmor, parse_document

    doc = parse_document(dearmor(data, LICENSE_LABEL, "x"), "x")
    return {"verified": verified, "signer": doc.keyid, "crl_seq": crl_seq,
            "claims": parse_json(doc.payload, what="x")}


def test_license_info_unverified_and_verified(keys: dict[str, Any], root_doc: bytes,
                                             tmp_path: Path) -> None:
    import oemkit.license
    from oemkit.license import LicenseInfo
    from oemkit.release.licensing import issue_crl

    data = seal_license(keys["license"], _claims())
    lic = tmp_path / "a.lic"
    lic.write_bytes(data)
    info = oemkit.license.inspect(lic)
    assert isinstance(info, LicenseInfo)
    assert (info.verified, info.verified_claims, info.crl_seq) == (False, None, None)
    assert info.signer == keys["license"].keyid
    assert info.claims == _claims().to_dict()
    assert info.to_dict() == _old_license_dict(data, False, None)
    assert oemkit.license.inspect(data) == info  # bytes: the same answer

    crl = issue_crl(keys["crl"], 3, issued_at=T0 + DAY)
    checked = oemkit.license.inspect(data, root_doc, crl=[crl])
    assert checked.verified and checked.verified_claims == _claims() and checked.crl_seq == 3
    assert checked.to_dict() == _old_license_dict(data, True, 3)

    (tmp_path / "root.json").write_bytes(root_doc)
    (tmp_path / "r.crl").write_bytes(crl)
    runner = CliRunner()
    for args, want in (([], _old_license_dict(data, False, None)),
                       (["--trust", str(tmp_path / "root.json"), "--crl",
                         str(tmp_path / "r.crl")], _old_license_dict(data, True, 3))):
        result = runner.invoke(app, ["license", "inspect", str(lic), "--json", *args])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"ok": True, **want}


def test_license_inspect_refuses_a_crl_without_trust(keys: dict[str, Any]) -> None:
    import oemkit.license
    from oemkit.errors import UsageError

    with pytest.raises(UsageError) as info:
        oemkit.license.inspect(seal_license(keys["license"], _claims()), crl=[b"x"])
    assert info.value.code == "E_USAGE"


def test_seal_license_is_the_one_sealer(keys: dict[str, Any], root_doc: bytes) -> None:
    import oemkit.license
    from oemkit.release.licensing import issue_license
    from oemkit.verify import license as verify_license

    assert verify_license.LICENSE_LABEL is LICENSE_LABEL == "OEMKIT LICENSE"
    data = seal_license(keys["license"], _claims())
    assert data.startswith(b"-----BEGIN OEMKIT LICENSE-----")
    verdict = oemkit.license.verify(data, root_doc, state=None, host={},
                                    now=T0 + 10 * DAY)
    assert verdict.status == "valid" and verdict.claims == _claims()
    claims, keyid = oemkit.license.read_claims(data)
    assert claims == _claims() and keyid == keys["license"].keyid
    # Ed25519 signatures are deterministic: every caller writes the same bytes
    assert keys["license"].algorithm == "ed25519"
    assert issue_license(keys["license"], _claims()) == data
    assert oemkit.license.issue(
        key=keys["license"], issuer="vendor", customer="acme", customer_name="ACME Corp",
        product="vision", license_id="acme-vision", issued_at=T0, expires=T0 + 3650 * DAY,
        features=["batch"], limits={"seats": 5}) == data


def test_seal_license_refuses_claims_verify_would_refuse(keys: dict[str, Any]) -> None:
    from oemkit.release.licensing import issue_license

    bad = _claims(license_id="-not an id")
    with pytest.raises(FormatError) as sealed:
        seal_license(keys["license"], bad)
    with pytest.raises(VerificationError) as issued:
        issue_license(keys["license"], bad)
    assert sealed.value.code == issued.value.code == "E_CLAIMS_INVALID"
    assert issued.value.exit_code == 1 and issued.value.message == sealed.value.message
