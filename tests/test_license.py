"""Offline licenses: every rule of issue 4 as a named test asserting the code and message."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import subprocess
import sys
from dataclasses import replace

import pytest

from oemkit._canonical import canonical_json
from oemkit.build.license import issue_crl, issue_license
from oemkit.build.trust import add_key, init_root, retire_key, revoke_key
from oemkit.crypto.armor import armor, dearmor, sign_document
from oemkit.crypto.keys import PrivateKeyInfo, algorithm_of, generate, key_id
from oemkit.errors import InputError, VerificationError
from oemkit.models.license import (
    CRL_PAYLOAD_TYPE,
    LICENSE_PAYLOAD_TYPE,
    BundleBinding,
    HardwareBinding,
    LicenseClaims,
)
from oemkit.runners.license import fingerprint, load_state, verify_license
from oemkit.verify.license import (
    BundleFacts,
    LicenseError,
    LicenseState,
    component_hash,
    evaluate,
)
from oemkit.verify.trust import parse_root

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 6, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)


def fresh_key(algorithm: str = "ed25519") -> PrivateKeyInfo:
    private = generate(algorithm)  # type: ignore[arg-type]
    public = private.public_key()
    return PrivateKeyInfo(private, public, algorithm_of(public), key_id(public), "fresh")


@pytest.fixture(scope="module")
def ec_license_key() -> PrivateKeyInfo:
    return fresh_key("ecdsa-p256")


@pytest.fixture(scope="module")
def root_doc(keys, ec_license_key) -> bytes:
    doc = init_root([keys["root"]], issued=T0 - 30 * DAY)
    for name, usage in (("bundle", "bundle"), ("license", "license"), ("crl", "crl")):
        doc = add_key(parse_root(doc), keys[name].public, [usage], [keys["root"]], name=name,
                      issued=T0 - 30 * DAY)
    return add_key(parse_root(doc), ec_license_key.public, ["license"], [keys["root"]],
                   name="ec-license", issued=T0 - 30 * DAY)


@pytest.fixture(scope="module")
def root(root_doc):
    return parse_root(root_doc).root


def claims(**changes) -> LicenseClaims:
    base = LicenseClaims(
        license_id="acme-vision", seq=1, issuer="vendor", customer_id="acme",
        customer_name="ACME Corp", product="vision", issued_at=T0, not_before=T0,
        expires=T0 + 365 * DAY, grace_seconds=14 * 86400, features=("batch",),
        limits={"seats": 50})
    return replace(base, **changes)


def rejected(data, root, code, *words, now=T0 + 10 * DAY, **kwargs) -> LicenseError:
    with pytest.raises(VerificationError) as err:
        evaluate(data, root, now, host=kwargs.pop("host", {}), **kwargs)
    assert err.value.code == code, err.value
    for word in words:
        assert word in err.value.message, err.value.message
    assert err.value.hint
    return err.value


def _envelope(data: bytes) -> dict:
    return json.loads(dearmor(data, "OEMKIT LICENSE", "t"))


def _rearmor(env: dict, label: str = "OEMKIT LICENSE") -> bytes:
    return armor(label, json.dumps(env).encode())


# --------------------------------------------------------------------------- format, signature


def test_valid_license_gives_valid_verdict(keys, root):
    verdict = evaluate(issue_license(keys["license"], claims()), root, T0 + 10 * DAY, host={})
    assert verdict.status == "valid" and verdict.claims.limits == {"seats": 50}
    assert verdict.effective_time == T0 + 10 * DAY


def test_payload_edited_after_signing(keys, root):
    env = _envelope(issue_license(keys["license"], claims()))
    forged = claims(limits={"seats": 5000}).to_dict()
    env["payload"] = base64.b64encode(canonical_json(forged)).decode()
    rejected(_rearmor(env), root, "E_SIG_INVALID", "signature does not verify")


@pytest.mark.parametrize("alg", ["none", "ecdsa-p256", "hs256"])
def test_algorithm_field_downgraded_or_mismatching_the_key(keys, root, alg):
    env = _envelope(issue_license(keys["license"], claims()))
    env["signatures"][0]["alg"] = alg
    err = rejected(_rearmor(env), root, "E_ALG_MISMATCH", f"claims algorithm {alg!r}")
    assert err.expected == "ed25519" and err.field == "signatures[0].alg"


def test_signed_by_an_unknown_key(root):
    rejected(issue_license(fresh_key(), claims()), root, "E_KID_UNKNOWN",
             "does not list")


def test_crl_passed_off_as_a_license(keys, root):
    crl = issue_crl(keys["crl"], 1, issued_at=T0)
    env = json.loads(dearmor(crl, "OEMKIT CRL", "t"))
    err = rejected(_rearmor(env), root, "E_PAYLOAD_TYPE", "not a license")
    assert err.actual == CRL_PAYLOAD_TYPE


def test_bundle_signature_passed_off_as_a_license(keys, root, signed_bundle):
    from helpers import read_members

    sig = json.loads(next(d for n, d in read_members(signed_bundle)
                          if n.startswith("signatures/")))["dsseEnvelope"]
    sig["signatures"][0].update(keyid=keys["bundle"].keyid, alg="ed25519")
    rejected(_rearmor(sig), root, "E_PAYLOAD_TYPE", "application/vnd.in-toto+json")


def test_key_of_the_wrong_usage(keys, root):
    err = rejected(issue_license(keys["bundle"], claims()), root, "E_KEY_USAGE",
                   "trusted for bundle, not license")
    assert err.expected == "license"


def test_malleated_ecdsa_signature_high_s(ec_license_key, root):
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    data = issue_license(ec_license_key, claims())
    assert evaluate(data, root, T0 + DAY, host={}).status == "valid"
    env = _envelope(data)
    r, s = decode_dss_signature(base64.b64decode(env["signatures"][0]["sig"]))
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    env["signatures"][0]["sig"] = base64.b64encode(encode_dss_signature(r, n - s)).decode()
    rejected(_rearmor(env), root, "E_SIG_INVALID")


@pytest.mark.parametrize("cut", [1, 32, 63])
def test_truncated_signature(keys, root, cut):
    env = _envelope(issue_license(keys["license"], claims()))
    sig = base64.b64decode(env["signatures"][0]["sig"])
    env["signatures"][0]["sig"] = base64.b64encode(sig[:-cut]).decode()
    rejected(_rearmor(env), root, "E_SIG_INVALID")


def _signed_payload(key, payload: bytes) -> bytes:
    return armor("OEMKIT LICENSE", sign_document(key, LICENSE_PAYLOAD_TYPE, payload))


@pytest.mark.parametrize("mutate, words", [
    (lambda t: t.replace(b'"seq":1', b'"seq":1,"seq":2'), "duplicate key 'seq'"),
    (lambda t: t.replace(b'"seq":1', b'"seq":1.0'), "seq is a floating-point number"),
    (lambda t: t.replace(b'"grace_seconds":1209600', b'"grace_seconds":1.5e6'),
     "grace_seconds is a floating-point number"),
    (lambda t: t.replace(b'"seq":1', b'"seq":1e0'), "floating-point"),
    (lambda t: t.replace(b'"product":"vision"', b'"product":"vis\\u0069on"'),
     "not in canonical form"),
    (lambda t: b"\xef\xbb\xbf" + t, "BOM"),
    (lambda t: t.replace(b'{"bindings"', b'{ "bindings"'), "not in canonical form"),
    (lambda t: t.replace(b'"issuer":"vendor"', b'"issuer":"vendor","x":0.5'),
     "floating-point"),
])
def test_signed_but_malformed_claims(keys, root, mutate, words):
    payload = mutate(canonical_json(claims().to_dict()))
    rejected(_signed_payload(keys["license"], payload), root, "E_CLAIMS_INVALID", words)


def test_float_in_claims_is_rejected_even_in_canonical_form(keys, root):
    doc = claims().to_dict()
    doc["extensions"] = {"ratio": 0.5}
    rejected(_signed_payload(keys["license"], canonical_json(doc)), root, "E_CLAIMS_INVALID",
             "floating-point")


def test_weak_small_order_key_rejected_when_the_root_is_loaded(keys, root):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from oemkit.build.trust import _document
    from oemkit.crypto.keys import public_pem
    from oemkit.models.trust import TrustKey

    weak = ed25519.Ed25519PublicKey.from_public_bytes(bytes(32))
    entry = TrustKey(key_id(weak), "weak", "ed25519", public_pem(weak), ("license",))
    doc = _document(root.next_version(T0, keys=(*root.keys, entry)), [keys["root"]])
    with pytest.raises(InputError) as err:
        parse_root(doc)
    assert err.value.code == "E_TRUST_WEAK_KEY" and "small-order" in err.value.message


def test_oversize_file(root):
    rejected(b"A" * (65 << 10), root, "E_TOO_LARGE", "limit")


@pytest.mark.parametrize("text, words", [
    (b"", "no '-----BEGIN OEMKIT LICENSE-----' block"),
    (b"-----BEGIN OEMKIT LICENSE-----\nQUJD\n", "missing END line"),
    (b"-----BEGIN OEMKIT CRL-----\nQUJD\n-----END OEMKIT CRL-----\n", "armored as 'OEMKIT CRL'"),
    (b"-----BEGIN OEMKIT LICENSE-----\nQU*D\n-----END OEMKIT LICENSE-----\n", "not base64"),
    (b"-----BEGIN OEMKIT LICENSE-----\nQUJ\n-----END OEMKIT LICENSE-----\n", "bad base64"),
    ("-----BEGIN OEMKIT LICENSE-----\nQUJD\u00e9\n-----END".encode(), "not ASCII"),
])
def test_bad_armor(root, text, words):
    rejected(text, root, "E_ARMOR", words)


# --------------------------------------------------------------------------- time


def test_expired_beyond_grace(keys, root):
    data = issue_license(keys["license"], claims())
    err = rejected(data, root, "E_EXPIRED", "expired at 2027-06-01", "grace ended",
                   now=T0 + 380 * DAY)
    assert err.field == "expires"


def test_inside_grace_is_a_grace_verdict_with_days_left(keys, root):
    data = issue_license(keys["license"], claims())
    verdict = evaluate(data, root, T0 + 370 * DAY, host={})
    assert verdict.status == "grace" and verdict.grace_days_left == 9
    assert any("grace period ends" in w for w in verdict.warnings)


def test_not_yet_valid(keys, root):
    data = issue_license(keys["license"], claims(not_before=T0 + 30 * DAY))
    rejected(data, root, "E_NOT_YET_VALID", "valid from 2026-07-01")


def test_host_clock_behind_a_signed_issue_time(keys, root):
    data = issue_license(keys["license"], claims())
    rejected(data, root, "E_CLOCK_BEHIND", "behind a signed issue time", now=T0 - 2 * DAY)
    # within the tolerance of one hour it is accepted (clocks drift)
    assert evaluate(data, root, T0 - dt.timedelta(minutes=50), host={}).status == "valid"


def test_clock_turned_back_after_a_later_verify(keys, root):
    data = issue_license(keys["license"], claims())
    state = LicenseState(last_seen=T0 + 100 * DAY)
    rejected(data, root, "E_CLOCK_ROLLBACK", "clock was turned back", now=T0 + 10 * DAY,
             state=state)
    ok = evaluate(data, root, T0 + 100 * DAY - dt.timedelta(minutes=59), host={}, state=state)
    assert ok.status == "valid"


def test_expiry_is_judged_at_the_latest_of_now_last_seen_and_signed_times(keys, root):
    data = issue_license(keys["license"], claims(expires=T0 + 10 * DAY, grace_seconds=0))
    now = T0 + 10 * DAY - dt.timedelta(minutes=30)
    assert evaluate(data, root, now, host={}).status == "valid"
    state = LicenseState(last_seen=now + dt.timedelta(minutes=59))
    rejected(data, root, "E_EXPIRED", "judged at", now=now, state=state)
    crl = issue_crl(keys["crl"], 1, issued_at=now + dt.timedelta(minutes=45))
    rejected(data, root, "E_EXPIRED", now=now, crls=[("r.crl", crl, True)])


# --------------------------------------------------------------------------- replay, revocation


def test_older_reissue_after_a_newer_one_was_seen(keys, root):
    v2 = evaluate(issue_license(keys["license"], claims(seq=2)), root, T0 + DAY, host={})
    rejected(issue_license(keys["license"], claims(seq=1)), root, "E_LICENSE_SUPERSEDED",
             "re-issue 1 is older than re-issue 2", state=v2.new_state)


def test_revoked_license_and_below_seq(keys, root):
    crl = issue_crl(keys["crl"], 1, revoke=[("acme-vision", 3)], issued_at=T0)
    for seq in (1, 2):
        rejected(issue_license(keys["license"], claims(seq=seq)), root, "E_REVOKED",
                 f"re-issue {seq}) is revoked by CRL sequence 1", crls=[("c", crl, True)])
    ok = evaluate(issue_license(keys["license"], claims(seq=3)), root, T0 + DAY, host={},
                  crls=[("c", crl, True)])
    assert ok.status == "valid" and ok.crl_seq == 1


def test_revocation_is_remembered_without_the_crl(keys, root):
    crl = issue_crl(keys["crl"], 4, revoke=[("acme-vision", None)], issued_at=T0)
    other = issue_license(keys["license"], claims(license_id="other"))
    seen = evaluate(other, root, T0 + DAY, host={}, crls=[("c", crl, True)])
    assert seen.new_state.crl_seq == 4
    rejected(issue_license(keys["license"], claims()), root, "E_REVOKED",
             state=seen.new_state)


def test_older_crl_after_a_newer_one(keys, root):
    newer = issue_crl(keys["crl"], 5, issued_at=T0)
    older = issue_crl(keys["crl"], 2, issued_at=T0)
    data = issue_license(keys["license"], claims())
    state = evaluate(data, root, T0 + DAY, host={}, crls=[("n", newer, True)]).new_state
    rejected(data, root, "E_CRL_ROLLBACK", "sequence 2, older than sequence 5", state=state,
             crls=[("old.crl", older, True)])
    # an older CRL carried inside an older bundle is only a warning
    verdict = evaluate(data, root, T0 + DAY, host={}, state=state,
                       crls=[("bundle:revocations.crl", older, False)])
    assert any("older than the remembered CRL" in w for w in verdict.warnings)


def test_missing_or_stale_crl_when_the_license_demands_one(keys, root):
    data = issue_license(keys["license"], claims(min_crl_seq=3))
    rejected(data, root, "E_CRL_STALE", "no revocation list")
    old = issue_crl(keys["crl"], 2, issued_at=T0)
    rejected(data, root, "E_CRL_STALE", "CRL sequence 2", crls=[("c", old, True)])
    new = issue_crl(keys["crl"], 3, issued_at=T0)
    assert evaluate(data, root, T0 + DAY, host={}, crls=[("c", new, True)]).status == "valid"


def test_revoked_signing_key(keys, root, root_doc):
    data = issue_license(keys["license"], claims())
    crl = issue_crl(keys["crl"], 1, revoke_keys=[keys["license"].keyid], issued_at=T0)
    rejected(data, root, "E_KEY_REVOKED", "is revoked", crls=[("c", crl, True)])
    compromised = parse_root(revoke_key(parse_root(root_doc), keys["license"].keyid,
                                        [keys["root"]], issued=T0 + DAY)).root
    rejected(data, compromised, "E_KEY_REVOKED")


def test_crl_signed_by_a_non_crl_key_is_refused(keys, root):
    crl = issue_crl(keys["license"], 1, issued_at=T0)
    rejected(issue_license(keys["license"], claims()), root, "E_KEY_USAGE",
             "not crl", crls=[("c", crl, True)])


# --------------------------------------------------------------------------- bindings


HOST = {"machine-id": ["m-1"], "mac": ["aa:01", "aa:02", "aa:03"]}


def _hw_claims(match: int) -> LicenseClaims:
    fp = fingerprint(HOST, salt="11" * 32)
    comps = tuple((c["kind"], c["hash"]) for c in fp["components"])
    return claims(hardware=HardwareBinding(fp["salt"], match, comps))


def test_hardware_k_of_n(keys, root):
    data = issue_license(keys["license"], _hw_claims(3))
    assert evaluate(data, root, T0 + DAY, host=HOST).status == "valid"
    one_nic_changed = {"machine-id": ["m-1"], "mac": ["aa:01", "aa:02", "bb:99"]}
    assert evaluate(data, root, T0 + DAY, host=one_nic_changed).status == "valid"
    two_changed = {"machine-id": ["m-1"], "mac": ["aa:01", "bb:98", "bb:99"]}
    err = rejected(data, root, "E_HW_MISMATCH", "2 of 4 licensed hardware components match",
                   host=two_changed)
    assert err.expected == ">= 3" and err.actual == "2"


def test_raw_hardware_ids_never_land_in_a_license(keys):
    data = issue_license(keys["license"], _hw_claims(2))
    text = base64.b64decode(_envelope(data)["payload"]).decode()
    assert "aa:01" not in text and "m-1" not in text
    assert component_hash("11" * 32, "mac", "aa:01") in text


def test_bundle_binding_digest_channel_and_update_window(keys, root):
    facts = BundleFacts("ab" * 32, "vision", T0, channel="stable")
    other = BundleFacts("cd" * 32, "vision", T0 + 40 * DAY, channel="beta")
    for binding in (BundleBinding(digests=("sha256:" + "ab" * 32,)),
                    BundleBinding(channel="stable"),
                    BundleBinding(updates_until=T0 + 30 * DAY)):
        data = issue_license(keys["license"], claims(bundle=binding))
        assert evaluate(data, root, T0 + DAY, host={}, bundle=facts).status == "valid"
        rejected(data, root, "E_BUNDLE_MISMATCH", "vision", bundle=other)


def test_unlicensed_feature_and_over_a_limit(keys, root):
    verdict = evaluate(issue_license(keys["license"], claims()), root, T0 + DAY, host={})
    verdict.require_feature("batch")
    verdict.require_limit("seats", 50)
    with pytest.raises(LicenseError) as err:
        verdict.require_feature("video")
    assert err.value.code == "E_ENTITLEMENT" and "'video' is not licensed" in err.value.message
    with pytest.raises(LicenseError) as err:
        verdict.require_limit("seats", 51)
    assert err.value.code == "E_LIMIT" and "seats = 51 exceeds" in err.value.message
    with pytest.raises(LicenseError) as err:
        verdict.require_limit("gpus", 1)
    assert err.value.code == "E_LIMIT"


def test_unknown_critical_extension(keys, root):
    data = issue_license(keys["license"], claims(critical=("quantum-seal",),
                                                 extensions={"quantum-seal": "on"}))
    rejected(data, root, "E_CRIT_UNKNOWN", "'quantum-seal'")
    ignorable = issue_license(keys["license"], claims(extensions={"note": "hi"}))
    assert evaluate(ignorable, root, T0 + DAY, host={}).status == "valid"


def test_environment_binding(keys, root):
    data = issue_license(keys["license"], claims(environment="prod"))
    assert evaluate(data, root, T0 + DAY, host={}, environment="prod").status == "valid"
    rejected(data, root, "E_ENV_MISMATCH", "'prod'", environment="staging")
    rejected(data, root, "E_ENV_MISMATCH", "'none'")


# --------------------------------------------------------------------------- key rotation


def test_retired_key_inside_its_window_verifies_compromised_does_not(keys, root_doc):
    retired = parse_root(retire_key(parse_root(root_doc), keys["license"].keyid,
                                    [keys["root"]], issued=T0 + 5 * DAY)).root
    before = issue_license(keys["license"], claims(issued_at=T0 + DAY, not_before=T0 + DAY))
    assert evaluate(before, retired, T0 + 20 * DAY, host={}).status == "valid"
    after = issue_license(keys["license"], claims(issued_at=T0 + 6 * DAY,
                                                  not_before=T0 + 6 * DAY))
    rejected(after, retired, "E_KEY_WINDOW", "was not valid at the license's issue time",
             now=T0 + 20 * DAY)
    revoked = parse_root(revoke_key(parse_root(root_doc), keys["license"].keyid,
                                    [keys["root"]], issued=T0 + 5 * DAY)).root
    rejected(before, revoked, "E_KEY_REVOKED", now=T0 + 20 * DAY)


# --------------------------------------------------------------------------- state file


def test_state_written_atomically_0600_only_after_a_verdict(keys, root, tmp_path):
    path = tmp_path / "state" / "license.json"
    bad = issue_license(keys["license"], claims(expires=T0 + DAY, grace_seconds=0))
    with pytest.raises(LicenseError):
        verify_license(bad, root, now=T0 + 30 * DAY, state_path=path, host={})
    assert not path.exists()
    good = issue_license(keys["license"], claims())
    check = verify_license(good, root, now=T0 + 30 * DAY, state_path=path, host={})
    assert "no license state" in check.verdict.warnings[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    state, problem = load_state(path)
    assert problem is None and state.last_seen == T0 + 30 * DAY
    assert state.seqs == {"acme-vision": 1}
    assert [p.name for p in path.parent.iterdir()] == ["license.json"]


def test_corrupt_state_is_reported_and_never_means_anything_goes(keys, root, tmp_path):
    path = tmp_path / "license.json"
    path.write_text("{not json")
    data = issue_license(keys["license"], claims())
    # The fallback is the newest signed issue time: a clock behind it is still caught.
    with pytest.raises(LicenseError) as err:
        verify_license(data, root, now=T0 - 10 * DAY, state_path=path, host={})
    assert err.value.code == "E_CLOCK_BEHIND"
    assert (tmp_path / "license.json.corrupt").read_text() == "{not json"
    check = verify_license(data, root, now=T0 + DAY, state_path=path, host={})
    assert check.verdict.warnings[0].startswith(f"no license state at {path}")
    path.write_text('{"type": "oemkit-license-state/v1", "last_seen": "garbage"}')
    check = verify_license(data, root, now=T0 + 2 * DAY, state_path=path, host={})
    assert "is corrupt" in check.verdict.warnings[0]
    assert check.verdict.effective_time == T0 + 2 * DAY


# --------------------------------------------------------------------------- API and CLI


def test_public_api_and_its_imports(keys, root_doc, tmp_path):
    import oemkit.license

    lic = tmp_path / "a.lic"
    lic.write_bytes(issue_license(keys["license"], claims(expires=dt.datetime(2099, 1, 1,
                                                                              tzinfo=UTC))))
    (tmp_path / "root.json").write_bytes(root_doc)
    verdict = oemkit.license.verify(lic, tmp_path / "root.json", state=None, host={})
    assert verdict.status == "valid"
    verdict.require_feature("batch")
    code = ("import sys, oemkit.license; heavy = {'onnxruntime', 'cyclonedx', 'jsonschema', "
            "'jsonschema_rs', 'securesystemslib', 'in_toto', 'numpy', 'typer', 'rich', "
            "'zstandard', 'yaml'}; print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_cli_issue_verify_inspect_crl_attach(keys, root_doc, tmp_path, signed_bundle,
                                            monkeypatch):
    from typer.testing import CliRunner

    from helpers import KEYS, PASSPHRASE
    from oemkit.cli import app

    monkeypatch.setenv("OEMKIT_KEY_PASSPHRASE", PASSPHRASE.decode())
    monkeypatch.setenv("OEMKIT_STATE", str(tmp_path / "state.json"))
    runner = CliRunner()
    (tmp_path / "root.json").write_bytes(root_doc)

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert "Traceback" not in result.output, result.output
        return result

    lic = tmp_path / "acme.lic"
    res = run("license", "issue", "--key", KEYS / "license.key", "--customer", "acme",
              "--customer-name", "ACME Corp", "--product", "vision", "--expires", "2099-01-01",
              "--grace", "14d", "--features", "batch,gpu", "--limit", "seats=50",
              "--out", lic)
    assert res.exit_code == 0, res.output
    ok = run("license", "verify", lic, "--trust", tmp_path / "root.json", "--json",
             "--require-feature", "gpu", "--require-limit", "seats=10")
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["verdict"] == "valid" and doc["entitlements"]["limits"] == {"seats": 50}
    over = run("license", "verify", lic, "--trust", tmp_path / "root.json",
               "--require-limit", "seats=51", "--json")
    assert over.exit_code == 1 and json.loads(over.stdout)["error"]["code"] == "E_LIMIT"
    ins = run("license", "inspect", lic)
    assert ins.exit_code == 0 and "UNVERIFIED" in ins.stderr and "ACME Corp" in ins.stderr
    crl = tmp_path / "r.crl"
    assert run("crl", "issue", "--key", KEYS / "crl.key", "--seq", "2", "--revoke",
               "acme-vision", "--out", crl).exit_code == 0
    revoked = run("license", "verify", lic, "--trust", tmp_path / "root.json", "--crl", crl)
    assert revoked.exit_code == 1 and "E_REVOKED" in revoked.stderr
    # attach to a bundle: verify reports both verdicts; signatures stay valid
    other = tmp_path / "other.lic"
    run("license", "issue", "--key", KEYS / "license.key", "--customer", "beta",
        "--customer-name", "Beta", "--product", "vision", "--expires", "2099-01-01",
        "--out", other)
    assert run("license", "attach", signed_bundle, other).exit_code == 0
    both = run("verify", signed_bundle, "--trust", tmp_path / "root.json", "--json")
    assert both.exit_code == 0, both.output
    report = json.loads(both.stdout)
    assert report["license"][0]["verdict"] == "valid"
    assert report["license"][0]["license_id"] == "beta-vision"
    assert run("license", "attach", signed_bundle, lic).exit_code == 0
    # the host sees the CRL while verifying another license: it is remembered in the state
    assert run("license", "verify", other, "--trust", tmp_path / "root.json", "--crl",
               crl).exit_code == 0
    # so the attached, revoked acme-vision license is rejected without passing the CRL again
    bad = run("verify", signed_bundle, "--trust", tmp_path / "root.json", "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["error"]["code"] == "E_REVOKED"
    assert stat.S_IMODE(os.stat(tmp_path / "state.json").st_mode) == 0o600
