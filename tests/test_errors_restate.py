"""One format error from every model parser; callers choose the family (issue 14, item 3).

``oemkit.errors.restate`` copies every field of a caught error into another family; each
``oemkit.models`` parser raises ``FormatError`` (an InputError, exit 3) on a bad document;
a verifier given the same document restates it as a VerificationError (exit 1) with the
same code and message; the error registry's scanner sees ``restate`` as a re-raise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oemkit import codes
from oemkit._canonical import canonical_json
from oemkit.errors import (
    EXIT_FAILED,
    EXIT_INPUT,
    FormatError,
    InputError,
    OemkitError,
    UsageError,
    VerificationError,
    restate,
)

FIELDS = {"member": "m.json", "check": "schema", "field": "a.b", "expected": "1",
          "actual": "2"}


def _source() -> FormatError:
    return FormatError("E_MANIFEST_INVALID", "manifest: bad", hint="rebuild it", **FIELDS)


def test_format_error_is_input_error_exit_3() -> None:
    exc = _source()
    assert isinstance(exc, InputError) and isinstance(exc, OemkitError)
    assert exc.exit_code == EXIT_INPUT == 3
    assert exc.to_dict()["exit_code"] == 3


def test_restate_copies_every_field() -> None:
    exc = _source()
    out = restate(exc, VerificationError)
    assert type(out) is VerificationError and out.exit_code == EXIT_FAILED
    assert (out.code, out.message, out.hint) == ("E_MANIFEST_INVALID", "manifest: bad",
                                                 "rebuild it")
    assert {name: getattr(out, name) for name in FIELDS} == FIELDS
    assert out.to_dict() == {**exc.to_dict(), "exit_code": 1}


def test_restate_overrides_and_clears() -> None:
    out = restate(_source(), UsageError, message="other", hint="do this", member="x",
                  check=None, expected="3")
    assert type(out) is UsageError and out.exit_code == 2
    assert (out.code, out.message, out.hint) == ("E_MANIFEST_INVALID", "other", "do this")
    assert (out.member, out.check, out.field, out.expected, out.actual) == (
        "x", None, "a.b", "3", "2")
    assert restate(_source(), InputError, hint="").hint == ""


def test_restate_refuses_an_unknown_field() -> None:
    with pytest.raises(TypeError, match="nonsense"):
        restate(_source(), VerificationError, nonsense="x")  # type: ignore[arg-type]


def _trust() -> None:
    from oemkit.models.trust import TrustRoot

    TrustRoot.from_dict({"type": "something else"})


def _trust_key() -> None:
    from oemkit.models.trust import TrustKey

    TrustKey.from_dict({"keyid": "zz", "public_key": "x"})


def _claims() -> None:
    from oemkit.models.license import LicenseClaims

    LicenseClaims.from_dict({"type": "not a license"})


def _crl() -> None:
    from oemkit.models.license import RevocationList

    RevocationList.from_dict({"type": "not a crl"})


def _manifest() -> None:
    from oemkit.models.manifest import Manifest

    Manifest.from_dict({"format": "oemkit-bundle/0"})


def _config() -> None:
    from oemkit.models.config import parse_config

    parse_config(b"{not json", "config.json")


def _config_schema() -> None:
    from oemkit.models.config import validate_config

    validate_config({"port": "x"}, {"properties": {"port": {"type": "integer"}}}, "config")


def _config_version() -> None:
    from oemkit.models.config import config_version

    config_version({}, "config.json")


def _migration() -> None:
    from oemkit.models.migration import parse_migrations

    parse_migrations({"migrations": "no"}, "migrations.yaml")


@pytest.mark.parametrize(("parse", "code"), [
    (_trust, "E_TRUST_INVALID"),
    (_trust_key, "E_TRUST_INVALID"),
    (_claims, "E_CLAIMS_INVALID"),
    (_crl, "E_CRL_INVALID"),
    (_manifest, "E_MANIFEST_INVALID"),
    (_config, "E_CONFIG_INVALID"),
    (_config_schema, "E_CONFIG_INVALID"),
    (_config_version, "E_CONFIG_VERSION"),
    (_migration, "E_MIGRATION_INVALID"),
], ids=lambda v: getattr(v, "__name__", v))
def test_each_model_parser_raises_format_error(parse: Callable[[], None], code: str) -> None:
    with pytest.raises(FormatError) as info:
        parse()
    assert info.value.code == code and info.value.exit_code == 3


def _error_of(fn: Callable[[], Any]) -> OemkitError:
    with pytest.raises(OemkitError) as info:
        fn()
    return info.value


def test_verify_restates_a_bad_manifest_with_its_code_and_member() -> None:
    from oemkit.models.manifest import MANIFEST, Manifest
    from oemkit.verify.bundle import parse_manifest

    doc = {"format": "oemkit-bundle/0"}
    model = _error_of(lambda: Manifest.from_dict(doc))
    verdict = _error_of(lambda: parse_manifest(canonical_json(doc)))
    assert isinstance(model, FormatError) and type(verdict) is VerificationError
    assert verdict.exit_code == 1 and verdict.member == MANIFEST
    assert verdict.to_dict() == {**model.to_dict(), "exit_code": 1}


def _crl_doc(keys: dict[str, Any], payload: dict[str, Any]) -> bytes:
    from oemkit.crypto.armor import armor, sign_document
    from oemkit.models.license import CRL_PAYLOAD_TYPE
    from oemkit.verify.license import CRL_LABEL

    return armor(CRL_LABEL, sign_document(keys["crl"], CRL_PAYLOAD_TYPE,
                                          canonical_json(payload)))


def test_verify_restates_a_bad_signed_crl(keys: dict[str, Any], trust_v1: bytes) -> None:
    from oemkit.models.license import RevocationList
    from oemkit.release.trust import add_key
    from oemkit.verify.license import read_crl
    from oemkit.verify.trust import parse_root

    root = parse_root(add_key(parse_root(trust_v1), keys["crl"].public, ["crl"],
                              [keys["root"]], name="crl")).root
    payload = {"type": "not a crl"}
    model = _error_of(lambda: RevocationList.from_dict(payload))
    verdict = _error_of(lambda: read_crl(_crl_doc(keys, payload), root, "x.crl"))
    assert isinstance(model, FormatError) and type(verdict) is VerificationError
    assert verdict.to_dict() == {**model.to_dict(), "exit_code": 1}


def test_reading_bad_claims_is_the_no_verify_gives(keys: dict[str, Any]) -> None:
    from oemkit.crypto.armor import armor, sign_document
    from oemkit.license import read_claims
    from oemkit.models.license import LICENSE_PAYLOAD_TYPE, LicenseClaims
    from oemkit.verify.license import LICENSE_LABEL

    payload = {"type": "not a license"}
    data = armor(LICENSE_LABEL, sign_document(keys["license"], LICENSE_PAYLOAD_TYPE,
                                              canonical_json(payload)))
    model = _error_of(lambda: LicenseClaims.from_dict(payload))
    verdict = _error_of(lambda: read_claims(data))
    assert isinstance(model, FormatError) and type(verdict) is VerificationError
    assert verdict.to_dict() == {**model.to_dict(), "exit_code": 1}


def test_the_scanner_sees_restate_as_a_rewrap(tmp_path: Path) -> None:
    """``restate(exc, Family)`` is a re-raise the registry declares (REWRAPS), with the
    caught family from the handler (FormatError counted as InputError)."""
    import shutil

    src = Path(codes.__file__).resolve().parent
    tree = tmp_path / "oemkit"
    shutil.copytree(src, tree, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "verify" / "zz_probe.py").write_text(
        "from oemkit.errors import FormatError, VerificationError, restate\n\n\n"
        "def probe() -> None:\n"
        "    try:\n"
        "        raise FormatError(\"E_MANIFEST_INVALID\", \"x\")\n"
        "    except FormatError as exc:\n"
        "        raise restate(exc, VerificationError, member=\"m\") from exc\n",
        encoding="utf-8")
    result = codes.scan(tree)
    probes = [r for r in result.rewraps if r.module == "oemkit.verify.zz_probe"]
    assert [(r.function, r.caught, r.raised) for r in probes] == [
        ("probe", "InputError", "VerificationError")]
    assert ("probe", "InputError", "VerificationError") not in codes.REWRAPS
    sites = [s for s in result.sites if s.module == "oemkit.verify.zz_probe"]
    assert [(s.code, s.kind, s.family) for s in sites] == [
        ("E_MANIFEST_INVALID", "raise", "InputError")]
