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
from oemkit.crypto.armor import armor, dearmor, sign_document
from oemkit.crypto.keys import PrivateKeyInfo, algorithm_of, generate, key_id
from oemkit.errors import FormatError, InputError, VerificationError
from oemkit.host.license_state import fingerprint, load_state, verify_license
from oemkit.models.license import (
    CRL_PAYLOAD_TYPE,
    LICENSE_PAYLOAD_TYPE,
    BundleBinding,
    HardwareBinding,
    LicenseClaims,
)
from oemkit.release.licensing import issue_crl, issue_license
from oemkit.release.trust import add_key, init_root, retire_key, revoke_key
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

    from oemkit.crypto.keys import public_pem
    from oemkit.models.trust import TrustKey
    from oemkit.release.trust import _document

    weak = ed25519.Ed25519PublicKey.from_public_bytes(bytes(32))
    entry = TrustKey(key_id(weak), "weak", "ed25519", public_pem(weak), ("license",))
    doc = _document(root.next_version(T0, keys=(*root.keys, entry)), [keys["root"]])
    with pytest.raises(InputError) as err:
        parse_root(doc)
    assert err.value.code == "E_TRUST_WEAK_KEY" and "small-order" in err.value.message


def test_oversize_file_is_an_input_error_exit_3(root, keys):
    # One code, one exit status: E_TOO_LARGE is always an InputError (exit 3).
    with pytest.raises(InputError) as err:
        evaluate(b"A" * (65 << 10), root, T0, host={})
    assert err.value.code == "E_TOO_LARGE" and err.value.exit_code == 3
    assert "66560 bytes (limit 65536)" in err.value.message
    from oemkit.verify.license import read_crl

    with pytest.raises(InputError) as err:
        read_crl(b"A" * (65 << 10), root, "r.crl")
    assert err.value.code == "E_TOO_LARGE" and err.value.exit_code == 3


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


def test_state_written_atomically_0600_seqs_only_after_a_verdict(keys, root, tmp_path):
    path = tmp_path / "state" / "license.json"
    bad = issue_license(keys["license"], claims(expires=T0 + DAY, grace_seconds=0))
    with pytest.raises(LicenseError):
        verify_license(bad, root, now=T0 + 30 * DAY, state_path=path, host={})
    # a rejection records the clock it observed (issue 13), never a re-issue number
    state, problem = load_state(path)
    assert problem is None and state.last_seen == T0 + 30 * DAY and state.seqs == {}
    good = issue_license(keys["license"], claims())
    check = verify_license(good, root, now=T0 + 30 * DAY, state_path=path, host={})
    assert check.verdict.warnings == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    state, problem = load_state(path)
    assert problem is None and state.last_seen == T0 + 30 * DAY
    assert state.seqs == {"acme-vision": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["license.json",
                                                             "license.json.lock"]


def _refused(data: bytes, root, code: str, **kwargs) -> None:
    """verify_license (state file and all) must refuse with ``code``."""
    with pytest.raises(VerificationError) as err:
        verify_license(data, root, **kwargs)
    assert err.value.code == code, err.value


def _vendor() -> tuple[dict[str, PrivateKeyInfo], object]:
    """A second vendor: its own root, license and crl keys."""
    own = {"root": fresh_key(), "license": fresh_key(), "crl": fresh_key()}
    doc = init_root([own["root"]], issued=T0 - 30 * DAY)
    for name in ("license", "crl"):
        doc = add_key(parse_root(doc), own[name].public, [name], [own["root"]], name=name,
                      issued=T0 - 30 * DAY)
    return own, parse_root(doc).root


def test_two_vendors_on_one_host_keep_their_own_crl_and_reissue_numbers(keys, root, tmp_path):
    """One state file, two trust roots: each vendor's CRL sequence and license re-issue
    numbers are remembered apart (one shared counter refused the vendor with the lower CRL
    sequence as a rollback), while the host's clock reading stays shared."""
    path = tmp_path / "state.json"
    other, other_root = _vendor()
    ours = issue_crl(keys["crl"], 7, issued_at=T0)
    verify_license(issue_license(keys["license"], claims(seq=3)), root, now=T0 + DAY,
                   state_path=path, host={}, crls=[("ours.crl", ours, True)])
    theirs = issue_crl(other["crl"], 2, issued_at=T0)
    # the same license id, re-issue 1, under the other vendor's root
    check = verify_license(issue_license(other["license"], claims(seq=1)), other_root,
                           now=T0 + 2 * DAY, state_path=path, host={},
                           crls=[("theirs.crl", theirs, True)])
    assert check.verdict.status == "valid" and check.verdict.crl_seq == 2
    ours_state, _ = load_state(path, root)
    theirs_state, _ = load_state(path, other_root)
    assert (ours_state.crl_seq, ours_state.seqs) == (7, {"acme-vision": 3})
    assert (theirs_state.crl_seq, theirs_state.seqs) == (2, {"acme-vision": 1})
    assert ours_state.last_seen == theirs_state.last_seen == T0 + 2 * DAY
    # protection still holds within each vendor
    older = issue_crl(other["crl"], 1, issued_at=T0)
    _refused(issue_license(other["license"], claims(seq=1)), other_root, "E_CRL_ROLLBACK",
             now=T0 + 3 * DAY, state_path=path, host={}, crls=[("old.crl", older, True)])
    _refused(issue_license(keys["license"], claims(seq=2)), root, "E_LICENSE_SUPERSEDED",
             now=T0 + 3 * DAY, state_path=path, host={})
    doc = json.loads(path.read_text())
    assert doc["type"] == "oemkit-license-state/v2" and len(doc["issuers"]) == 2


def test_a_rotated_root_keeps_its_vendors_state(keys, root_doc, tmp_path):
    """A newer version of the same trust root (a root key added, the old one retired)
    shares a root key with the old one: the same vendor, the same remembered CRL."""
    path = tmp_path / "state.json"
    old_root = parse_root(root_doc).root
    verify_license(issue_license(keys["license"], claims()), old_root, now=T0 + DAY,
                   state_path=path, host={},
                   crls=[("r.crl", issue_crl(keys["crl"], 5, issued_at=T0), True)])
    new_key = fresh_key()
    doc = add_key(parse_root(root_doc), new_key.public, ["root"], [keys["root"]],
                  name="root-2", issued=T0 - 29 * DAY)
    doc = retire_key(parse_root(doc), keys["root"].keyid, [keys["root"], new_key],
                     issued=T0 - 28 * DAY)
    rotated = parse_root(doc).root
    assert load_state(path, rotated)[0].crl_seq == 5
    _refused(issue_license(keys["license"], claims()), rotated, "E_CRL_ROLLBACK",
             now=T0 + 2 * DAY, state_path=path, host={},
             crls=[("old.crl", issue_crl(keys["crl"], 4, issued_at=T0), True)])


def test_a_v1_state_file_is_adopted_by_the_first_trust_root_that_uses_it(keys, root, tmp_path):
    """A host upgraded from the single-vendor state keeps its protection: the v1 file's CRL
    sequence and re-issue numbers go to the first root that verifies with it."""
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"type": "oemkit-license-state/v1",
                                "last_seen": "2026-06-02T00:00:00Z", "crl": None,
                                "crl_seq": 6, "seqs": {"acme-vision": 2}}))
    _refused(issue_license(keys["license"], claims(seq=1)), root, "E_LICENSE_SUPERSEDED",
             now=T0 + 3 * DAY, state_path=path, host={})
    check = verify_license(issue_license(keys["license"], claims(seq=2)), root,
                           now=T0 + 3 * DAY, state_path=path, host={})
    assert check.verdict.warnings == [] or "state" not in check.verdict.warnings[0]
    doc = json.loads(path.read_text())
    [issuer] = doc["issuers"]
    assert issuer["crl_seq"] == 6 and issuer["seqs"] == {"acme-vision": 2}
    assert keys["root"].keyid in issuer["root_keys"]
    _, other_root = _vendor()
    assert load_state(path, other_root)[0].crl_seq == 0  # adopted: not the next vendor's


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
    assert check.verdict.warnings == []  # the rejection above made a clean state
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
               "acme-vision@all", "--out", crl).exit_code == 0
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
    # the host remembers the CRL (seen with the rejection above, and again here)
    assert run("license", "verify", other, "--trust", tmp_path / "root.json", "--crl",
               crl).exit_code == 0
    # so the attached, revoked acme-vision license is rejected without passing the CRL again
    bad = run("verify", signed_bundle, "--trust", tmp_path / "root.json", "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["error"]["code"] == "E_REVOKED"
    assert stat.S_IMODE(os.stat(tmp_path / "state.json").st_mode) == 0o600


# --------------------------------------------------------------------------- hardening


def _signed_crl(key, payload: bytes) -> bytes:
    return armor("OEMKIT CRL", sign_document(key, CRL_PAYLOAD_TYPE, payload))


def _crl_doc(**changes) -> dict:
    doc = {"type": "oemkit-crl/v1", "seq": 1, "issued_at": "2026-06-01T00:00:00Z",
           "revoked_licenses": [{"license_id": "acme-vision"}], "revoked_keys": []}
    doc.update(changes)
    return doc


def crl_rejected(keys, root, payload: bytes, code: str, *words: str):
    from oemkit.verify.license import read_crl

    with pytest.raises(VerificationError) as err:
        read_crl(_signed_crl(keys["crl"], payload), root, "r.crl")
    assert err.value.code == code, err.value
    for word in words:
        assert word in err.value.message, err.value.message
    return err.value


# 1. times in signed documents: only the written form


@pytest.mark.parametrize("field", ["issued_at", "not_before", "expires", "updates_until"])
@pytest.mark.parametrize("when", ["2027-06-30", "20270630", "2027-06-30 00:00:00",
                                  "2027-06-30T00:00:00", "2027-06-30T00:00:00.5Z",
                                  "2027-06-30T00:00:00+00:00", "2027-06-30T02:00:00+02:00",
                                  "2027-06-30T00:00:00Z\n", 1782777600])
def test_claims_times_must_be_exactly_the_written_form(keys, root, field, when):
    doc = claims().to_dict()
    if field == "updates_until":
        doc["bindings"] = {"bundle": {"updates_until": when}}
    else:
        doc[field] = when
    err = rejected(_signed_payload(keys["license"], canonical_json(doc)), root,
                   "E_CLAIMS_INVALID", field, "YYYY-MM-DDTHH:MM:SSZ")
    assert err.message.startswith("license claims: ")


def test_written_time_form_still_verifies_and_cli_input_stays_lenient(keys, root):
    from oemkit._time import parse_time
    from oemkit.models.license import parse_signed_time

    assert parse_signed_time("2027-06-30T00:00:00Z") == parse_time("2027-06-30", "t")
    with pytest.raises(ValueError):
        parse_signed_time("2027-06-30")
    doc = claims().to_dict()
    doc["expires"] = "2027-06-30T00:00:00Z"
    data = _signed_payload(keys["license"], canonical_json(doc))
    assert evaluate(data, root, T0 + DAY, host={}).claims.expires == parse_time("2027-06-30", "")


@pytest.mark.parametrize("when", ["2026-06-01", "2026-06-01T00:00:00+00:00",
                                  "2026-06-01T00:00:00.000Z"])
def test_crl_issued_at_must_be_exactly_the_written_form(keys, root, when):
    err = crl_rejected(keys, root, canonical_json(_crl_doc(issued_at=when)), "E_CRL_INVALID",
                       "revocation list", "issued_at", "YYYY-MM-DDTHH:MM:SSZ")
    assert err.check == "revocation list"


# 2. identifiers are matched in full (a trailing newline is not ignored)


@pytest.mark.parametrize("field, words", [
    ("license_id", "license_id must be"), ("salt", "salt must be 64 hex"),
    ("hash", "each hardware component"), ("digest", "digests must be sha256"),
])
def test_trailing_newline_in_identifiers_is_rejected(keys, root, field, words):
    fp = fingerprint(HOST, salt="11" * 32)
    doc = _hw_claims(1).to_dict()
    if field == "license_id":
        doc["license_id"] = "acme-vision\n"
    elif field == "salt":
        doc["bindings"]["hardware"]["salt"] = fp["salt"] + "\n"
    elif field == "hash":
        doc["bindings"]["hardware"]["components"][0]["hash"] += "\n"
    else:
        doc["bindings"]["bundle"] = {"digests": ["sha256:" + "ab" * 32 + "\n"]}
    rejected(_signed_payload(keys["license"], canonical_json(doc)), root, "E_CLAIMS_INVALID",
             words, host=HOST)


def test_attach_refuses_a_license_id_with_a_trailing_newline(keys):
    from oemkit.release.licensing import license_id_of

    doc = claims().to_dict()
    doc["license_id"] = "acme-vision\n"
    with pytest.raises(InputError) as err:
        license_id_of(_signed_payload(keys["license"], canonical_json(doc)))
    assert err.value.code == "E_CLAIMS_INVALID" and "no valid license_id" in err.value.message


def _manifest_dict() -> dict:
    return {"format": "oemkit-bundle/v1", "name": "vision", "version": "1.2.0",
            "description": "", "channel": "stable", "build_time": "2026-06-01T00:00:00Z",
            "builder": {}, "runtime": {"model": "model.onnx", "entrypoint": None,
                                       "profiles": [], "config": None, "golden": None,
                                       "migrations": []},
            "files": [{"path": "model.onnx", "size": 1, "sha256": "ab" * 32, "mode": 0o644}],
            "members": {"sbom.cdx.json": {"sha256": "cd" * 32, "size": 1},
                        "payload.tar.zst": {"sha256": "ef" * 32, "size": 1}}}


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.update(name="vision\n"), "invalid name"),
    (lambda d: d.update(version="1.2.0\n"), "invalid version"),
    (lambda d: d.update(channel="stable\n"), "invalid channel"),
    (lambda d: d["files"][0].update(sha256="ab" * 32 + "\n"), "sha256 must be 64"),
    (lambda d: d["members"]["sbom.cdx.json"].update(sha256="cd" * 32 + "\n"),
     "member digest for 'sbom.cdx.json' is malformed"),
])
def test_manifest_identifiers_are_matched_in_full(mutate, words):
    from oemkit.models.manifest import Manifest

    assert Manifest.from_dict(_manifest_dict()).name == "vision"
    doc = _manifest_dict()
    mutate(doc)
    with pytest.raises(FormatError) as err:
        Manifest.from_dict(doc)
    assert err.value.code == "E_MANIFEST_INVALID" and words in err.value.message


# 3. values without an RFC 8785 form are coded errors, not crashes


def test_canonical_json_raises_a_coded_error():
    for value, words in ((2**53, "integers must lie within"), (-(2**53), "within"),
                         ("\ud800", "unpaired surrogate"), ({"\udfff": 1}, "unpaired surrogate")):
        with pytest.raises(InputError) as err:
            canonical_json(value)
        assert err.value.code == "E_CANONICAL" and words in err.value.message
    assert canonical_json([2**53 - 1, -(2**53 - 1)]) == b"[9007199254740991,-9007199254740991]"


@pytest.mark.parametrize("old, new, words", [
    (b'"seq":1', b'"seq":9007199254740993', "integers must lie within"),
    (b'"extensions":{}', b'"extensions":{"n":-9007199254740992}', "integers must lie within"),
    (b'"product":"vision"', b'"product":"\\ud800"', "unpaired surrogate"),
    (b'"extensions":{}', b'"extensions":{"\\udfff":1}', "unpaired surrogate"),
])
def test_signed_values_without_a_canonical_form(keys, root, old, new, words):
    payload = canonical_json(claims().to_dict()).replace(old, new)
    assert new in payload
    err = rejected(_signed_payload(keys["license"], payload), root, "E_CLAIMS_INVALID",
                   "no canonical JSON form", words)
    assert isinstance(err, LicenseError)
    crl_payload = canonical_json(_crl_doc()).replace(b'"seq":1', new.replace(
        b'"product":', b'"seq":0,"x":') if b"product" in new else b'"seq":9007199254740993')
    crl_rejected(keys, root, crl_payload, "E_CRL_INVALID", "revocation list",
                 "no canonical JSON form")


# 4. base64: one spelling per byte string


@pytest.mark.parametrize("text, data", [
    ("QUJD", b"ABC"), ("QUI=", b"AB"), ("QUI", b"AB"), ("QQ==", b"A"), ("QQ", b"A"),
    ("QQ=", b"A"), ("-_8", b"\xfb\xff"), ("+/8=", b"\xfb\xff"), (" QUJD\n", b"ABC"), ("", b""),
])
def test_b64decode_accepts_both_alphabets_padded_or_not(text, data):
    from oemkit._canonical import b64decode

    assert b64decode(text, what="x") == data


@pytest.mark.parametrize("text, words", [
    ("QUJD=", "'=' after a complete 4-character group"),
    ("QUJD==", "'=' after a complete 4-character group"),
    ("QQ===", "at most two"),
    ("QR==", "non-zero unused bits"), ("QUJ", "non-zero unused bits"),
    ("QUK=", "non-zero unused bits"), ("-_-", "non-zero unused bits"),
    ("Q", "a single character"), ("QU JD", "outside the base64 alphabet"),
    ("QU=D", "outside the base64 alphabet"),
])
def test_b64decode_rejects_non_canonical_base64(text, words):
    from oemkit._canonical import b64decode

    with pytest.raises(InputError) as err:
        b64decode(text, what="payload")
    assert err.value.code == "E_BASE64" and words in err.value.message, err.value.message


@pytest.mark.parametrize("body, words", [
    (b"QUJD==", "'=' after a complete 4-character group"),
    (b"QUJD\n==", "'=' after a complete 4-character group"),
    (b"QR==", "non-zero unused bits"), (b"QUJDQUK=", "non-zero unused bits"),
])
def test_armor_base64_is_strict(root, body, words):
    text = b"-----BEGIN OEMKIT LICENSE-----\n" + body + b"\n-----END OEMKIT LICENSE-----\n"
    rejected(text, root, "E_ARMOR", "bad base64", words)


def test_envelope_payload_with_non_zero_unused_bits(keys, root):
    env = _envelope(issue_license(keys["license"], claims()))
    sig = env["signatures"][0]["sig"]  # 64 bytes: "...x==", 4 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(sig[-3])
    env["signatures"][0]["sig"] = sig[:-3] + alphabet[last | 1] + "=="
    rejected(_rearmor(env), root, "E_ENVELOPE", "non-zero unused bits")


# 5. a CRL must be signed inside its key's window


def test_crl_signed_by_a_retired_key_after_retirement_is_refused(keys, root_doc):
    from oemkit.verify.license import read_crl

    retired = parse_root(retire_key(parse_root(root_doc), keys["crl"].keyid, [keys["root"]],
                                    issued=T0 + 5 * DAY)).root
    before = issue_crl(keys["crl"], 1, revoke=[("acme-vision", None)], issued_at=T0 + DAY)
    assert read_crl(before, retired, "before.crl").seq == 1
    after = issue_crl(keys["crl"], 2, issued_at=T0 + 6 * DAY)  # empty: would un-revoke all
    with pytest.raises(LicenseError) as err:
        read_crl(after, retired, "after.crl")
    assert err.value.code == "E_KEY_WINDOW"
    assert "was issued at 2026-06-07T00:00:00Z" in err.value.message
    assert "retired or expired" in err.value.message
    other = issue_license(keys["license"], claims(license_id="other"))
    state = evaluate(other, retired, T0 + 7 * DAY, host={},
                     crls=[("before.crl", before, True)]).new_state
    lic = issue_license(keys["license"], claims())
    rejected(lic, retired, "E_KEY_WINDOW", "after.crl", now=T0 + 7 * DAY, state=state,
             crls=[("after.crl", after, True)])
    rejected(lic, retired, "E_KEY_WINDOW", now=T0 + 7 * DAY, state=state,
             crls=[("bundle:revocations.crl", after, False)])
    # the revoked license stays revoked
    rejected(lic, retired, "E_REVOKED", "revoked by CRL sequence 1", now=T0 + 7 * DAY,
             state=state)


# 6. a remembered CRL that no longer verifies does not block the host


def _with_second_crl_key(keys, root_doc, *, compromise_first: bool):
    new_crl = fresh_key()
    doc = add_key(parse_root(root_doc), new_crl.public, ["crl"], [keys["root"]], name="crl2",
                  issued=T0 + 2 * DAY)
    if compromise_first:
        doc = revoke_key(parse_root(doc), keys["crl"].keyid, [keys["root"]], issued=T0 + 3 * DAY)
    return new_crl, parse_root(doc).root


def test_remembered_crl_of_a_compromised_key_is_ignored_with_a_warning(keys, root, root_doc):
    crl3 = issue_crl(keys["crl"], 3, revoke=[("acme-vision", None)], issued_at=T0 + DAY)
    other = issue_license(keys["license"], claims(license_id="other"))
    state = evaluate(other, root, T0 + DAY, host={}, crls=[("c", crl3, True)]).new_state
    assert state.crl_seq == 3
    new_crl, rotated = _with_second_crl_key(keys, root_doc, compromise_first=True)
    lic = issue_license(keys["license"], claims())
    verdict = evaluate(lic, rotated, T0 + 4 * DAY, host={}, state=state)
    assert verdict.status == "valid"
    assert any("remembered CRL (sequence 3) is ignored: E_KEY_REVOKED" in w
               for w in verdict.warnings), verdict.warnings
    # the sequence number is kept: an older CRL is still a rollback
    old = issue_crl(new_crl, 2, issued_at=T0 + 4 * DAY)
    rejected(lic, rotated, "E_CRL_ROLLBACK", "older than sequence 3", now=T0 + 4 * DAY,
             state=state, crls=[("old.crl", old, True)])
    carried = evaluate(lic, rotated, T0 + 4 * DAY, host={}, state=state,
                       crls=[("bundle:revocations.crl", old, False)])
    assert carried.crl_seq == 2 and any("the remembered one is unusable, so this one is used"
                                        in w for w in carried.warnings), carried.warnings
    # and the CRL supplied now is used
    fresh = issue_crl(new_crl, 4, revoke=[("acme-vision", None)], issued_at=T0 + 4 * DAY)
    rejected(lic, rotated, "E_REVOKED", "CRL sequence 4", now=T0 + 4 * DAY, state=state,
             crls=[("fresh.crl", fresh, True)])


def test_remembered_crl_of_a_key_missing_from_the_trust_root_is_kept_but_unused(keys, root,
                                                                               root_doc):
    new_crl, rotated = _with_second_crl_key(keys, root_doc, compromise_first=False)
    crl5 = issue_crl(new_crl, 5, revoke=[("acme-vision", None)], issued_at=T0 + 3 * DAY)
    other = issue_license(keys["license"], claims(license_id="other"))
    state = evaluate(other, rotated, T0 + 3 * DAY, host={}, crls=[("c", crl5, True)]).new_state
    # the original root does not list the new CRL key
    verdict = evaluate(issue_license(keys["license"], claims()), root, T0 + 4 * DAY, host={},
                       state=state)
    assert any("remembered CRL (sequence 5) is ignored: E_KID_UNKNOWN" in w
               for w in verdict.warnings), verdict.warnings
    # it stays in the state (it may verify under another root), with its sequence number
    assert verdict.new_state.crl == crl5 and verdict.new_state.crl_seq == 5
    rejected(issue_license(keys["license"], claims()), rotated, "E_REVOKED", now=T0 + 4 * DAY,
             state=verdict.new_state)


# 7. a revocation is remembered even when the license it revokes is refused


def test_rejection_still_remembers_a_newer_crl(keys, root, tmp_path):
    path = tmp_path / "state.json"
    seen = verify_license(issue_license(keys["license"], claims(license_id="other", seq=2)),
                          root, now=T0 + DAY, state_path=path, host={})
    before, _ = load_state(path)
    assert before.seqs == {"other": 2} and before.last_seen == T0 + DAY
    assert seen.verdict.new_state is not None
    lic = issue_license(keys["license"], claims())
    crl = issue_crl(keys["crl"], 2, revoke=[("acme-vision", None)], issued_at=T0 + DAY)
    with pytest.raises(LicenseError) as err:
        verify_license(lic, root, now=T0 + 3 * DAY, state_path=path, host={},
                       crls=[("r.crl", crl, True)])
    assert err.value.code == "E_REVOKED"
    after, problem = load_state(path)
    assert problem is None and after.crl == crl and after.crl_seq == 2
    assert after.last_seen == T0 + 3 * DAY  # the clock it observed (issue 13)
    assert after.seqs == {"other": 2}  # unchanged
    with pytest.raises(LicenseError) as err:
        verify_license(lic, root, now=T0 + 3 * DAY, state_path=path, host={})
    assert err.value.code == "E_REVOKED" and "CRL sequence 2" in err.value.message


def test_rejection_remembers_a_crl_that_revokes_the_signing_key(keys, root, tmp_path):
    path = tmp_path / "state.json"
    lic = issue_license(keys["license"], claims())
    crl = issue_crl(keys["crl"], 1, revoke_keys=[keys["license"].keyid], issued_at=T0)
    for crls in ([("r.crl", crl, True)], []):
        with pytest.raises(LicenseError) as err:
            verify_license(lic, root, now=T0 + DAY, state_path=path, host={}, crls=crls)
        assert err.value.code == "E_KEY_REVOKED" and "listed in CRL sequence 1" in \
            err.value.message
    state, _ = load_state(path)
    assert state.crl_seq == 1 and state.last_seen == T0 + DAY and state.seqs == {}


def test_rejection_remembers_a_good_crl_read_before_a_bad_one(keys, root, tmp_path):
    path = tmp_path / "state.json"
    good = issue_crl(keys["crl"], 3, revoke=[("acme-vision", None)], issued_at=T0)
    bad = issue_crl(keys["license"], 4, issued_at=T0)  # wrong key usage
    with pytest.raises(LicenseError) as err:
        verify_license(issue_license(keys["license"], claims()), root, now=T0 + DAY,
                       state_path=path, host={},
                       crls=[("good.crl", good, True), ("bad.crl", bad, True)])
    assert err.value.code == "E_KEY_USAGE"
    assert load_state(path)[0].crl_seq == 3


def test_rejection_before_any_crl_is_read_records_no_crl(keys, root, tmp_path):
    path = tmp_path / "state.json"
    crl = issue_crl(keys["crl"], 1, issued_at=T0)
    with pytest.raises(LicenseError) as err:
        verify_license(issue_license(fresh_key(), claims()), root, now=T0 + DAY,
                       state_path=path, host={}, crls=[("r.crl", crl, True)])
    assert err.value.code == "E_KID_UNKNOWN"
    state, problem = load_state(path)  # only the clock it observed (issue 13)
    assert problem is None and state.crl is None and state.crl_seq == 0
    assert state.last_seen == T0 + DAY and state.seqs == {}


# 8. CRL document errors are CRL errors


@pytest.mark.parametrize("change, words", [
    ({"revoked_licenses": 5}, "revoked_licenses must be a list"),
    ({"revoked_licenses": None}, "revoked_licenses must be a list"),
    ({"revoked_licenses": "acme-vision"}, "revoked_licenses must be a list"),
    ({"revoked_licenses": [5]}, "revoked_licenses[0] must be"),
    ({"revoked_licenses": [{"license_id": 1}]}, "revoked_licenses[0] must be"),
    ({"revoked_licenses": [{"license_id": "a", "x": 1}]}, "revoked_licenses[0] must be"),
    ({"revoked_licenses": [{"license_id": "a", "below_seq": None}]},
     "revoked_licenses[0].below_seq must be an integer"),
    ({"revoked_keys": None}, "revoked_keys must be a list"),
    ({"seq": 0}, "seq must be a positive integer"),
    ({"extra": 1}, "unknown field(s) ['extra']"),
])
def test_malformed_crl_documents(keys, root, change, words):
    err = crl_rejected(keys, root, canonical_json(_crl_doc(**change)), "E_CRL_INVALID",
                       "revocation list: ", words)
    assert err.hint == "the CRL is damaged; get a fresh one from the vendor"


@pytest.mark.parametrize("mutate, words", [
    (lambda t: t.replace(b'"seq":1', b'"seq":1.0'), "seq is a floating-point number"),
    (lambda t: t.replace(b'"seq":1', b'"seq":1e0'), "floating-point"),
    (lambda t: t.replace(b'{"issued_at"', b'{ "issued_at"'), "not in canonical form"),
    (lambda t: t.replace(b'"seq":1', b'"seq":1,"seq":1'), "duplicate key 'seq'"),
    (lambda t: b"\xef\xbb\xbf" + t, "BOM"),
])
def test_crl_payload_errors_are_reported_as_revocation_list_errors(keys, root, mutate, words):
    err = crl_rejected(keys, root, mutate(canonical_json(_crl_doc())), "E_CRL_INVALID",
                       "revocation list", words)
    assert "license claims" not in err.message and err.check == "revocation list"
    lic = issue_license(keys["license"], claims())
    rejected(lic, root, "E_CRL_INVALID", "revocation list", words,
             crls=[("r.crl", _signed_crl(keys["crl"], mutate(canonical_json(_crl_doc()))),
                    True)])


# 12. no nulls for optional fields, no binding that binds nothing


@pytest.mark.parametrize("change, words", [
    ({"min_crl_seq": None}, "min_crl_seq must be an integer"),
    ({"bindings": {"environment": None}}, "bindings.environment must be a non-empty string"),
    ({"bindings": {"bundle": {"channel": None}}}, "bindings.bundle.channel must be a non-empty"),
    ({"bindings": {"bundle": {"updates_until": None}}}, "bindings.bundle.updates_until must be"),
    ({"bindings": {"bundle": {"digests": []}}}, "digests is empty: a binding must bind"),
    ({"bindings": None}, "bindings must be an object"),
    ({"entitlements": None}, "entitlements must be an object"),
    ({"grace_seconds": 2**53 - 1}, "expires + grace_seconds is after 9999-12-31T23:59:59Z"),
])
def test_null_optional_fields_and_empty_bindings_are_invalid(keys, root, change, words):
    doc = claims().to_dict()
    doc.update(change)
    rejected(_signed_payload(keys["license"], canonical_json(doc)), root, "E_CLAIMS_INVALID",
             words)


# --------------------------------------------------------------------------- CLI hardening


@pytest.fixture
def cli(tmp_path, monkeypatch, root_doc):
    from typer.testing import CliRunner

    from helpers import PASSPHRASE
    from oemkit.cli import app

    monkeypatch.setenv("OEMKIT_KEY_PASSPHRASE", PASSPHRASE.decode())
    monkeypatch.setenv("OEMKIT_STATE", str(tmp_path / "state.json"))
    (tmp_path / "root.json").write_bytes(root_doc)
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert "Traceback" not in result.output, result.output
        assert "internal error" not in result.output, result.output
        return result

    return run


def _issue_args(tmp_path, *extra):
    from helpers import KEYS

    return ("license", "issue", "--key", KEYS / "license.key", "--customer", "acme",
            "--customer-name", "ACME Corp", "--product", "vision", "--expires", "2099-01-01",
            "--out", tmp_path / "acme.lic", *extra)


def _error(result) -> dict:
    return json.loads(result.stdout)["error"]


def test_cli_revocation_is_remembered_after_the_rejection(cli, tmp_path):
    from helpers import KEYS

    assert cli(*_issue_args(tmp_path)).exit_code == 0
    assert cli("crl", "issue", "--key", KEYS / "crl.key", "--seq", "1", "--revoke",
               "acme-vision@all", "--out", tmp_path / "r.crl").exit_code == 0
    lic, trust = tmp_path / "acme.lic", tmp_path / "root.json"
    first = cli("license", "verify", lic, "--trust", trust, "--crl", tmp_path / "r.crl",
                "--json")
    assert first.exit_code == 1 and _error(first)["code"] == "E_REVOKED"
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["type"] == "oemkit-license-state/v2" and state["last_seen"] is not None
    [issuer] = state["issuers"]
    assert issuer["crl_seq"] == 1 and issuer["seqs"] == {} and issuer["root_keys"]
    second = cli("license", "verify", lic, "--trust", trust, "--json")
    assert second.exit_code == 1 and _error(second)["code"] == "E_REVOKED"
    assert "revoked by CRL sequence 1" in _error(second)["message"]


def test_cli_too_large_is_exit_3_whatever_the_size(cli, tmp_path):
    assert cli(*_issue_args(tmp_path)).exit_code == 0
    trust = tmp_path / "root.json"
    for size in (70 << 10, 2 << 20):
        big = tmp_path / f"big-{size}.lic"
        big.write_bytes(b"A" * size)
        for args in (("license", "verify", big, "--trust", trust),
                     ("license", "inspect", big),
                     ("license", "verify", tmp_path / "acme.lic", "--trust", trust,
                      "--crl", big)):
            res = cli(*args, "--json")
            assert res.exit_code == 3, res.output
            error = _error(res)
            assert error["code"] == "E_TOO_LARGE" and error["exit_code"] == 3
            assert f"is {size} bytes (limit 65536)" in error["message"]


def test_cli_issue_expires_not_after_the_start_is_a_usage_error(cli, tmp_path):
    res = cli(*_issue_args(tmp_path)[:-4], "--expires", "2020-01-01", "--out",
              tmp_path / "acme.lic", "--json")
    assert res.exit_code == 2, res.output
    error = _error(res)
    assert error["code"] == "E_USAGE" and "--expires 2020-01-01T00:00:00Z is not after" in \
        error["message"]
    assert "--expires" in error["hint"] and "compatible oemkit" not in error["hint"]
    res = cli(*_issue_args(tmp_path), "--not-before", "2099-01-01", "--json")
    assert res.exit_code == 2 and "(--not-before)" in _error(res)["message"]
    assert not (tmp_path / "acme.lic").exists()


def test_cli_issue_invalid_requested_claims_are_usage_errors(cli, tmp_path):
    res = cli(*_issue_args(tmp_path), "--license-id", "bad id!", "--json")
    assert res.exit_code == 2
    error = _error(res)
    assert error["code"] == "E_USAGE" and "cannot issue this license" in error["message"]
    assert "license_id" in error["message"] and "--license-id" in error["hint"]


def test_cli_issue_match_must_be_at_least_one(cli, tmp_path):
    fp = tmp_path / "host.fp"
    fp.write_text(json.dumps(fingerprint(HOST, salt="11" * 32)))
    res = cli(*_issue_args(tmp_path), "--hardware", fp, "--match", "0")
    assert res.exit_code == 2 and "--match" in res.output
    assert "greater than or equal to 1" in res.output
    res = cli(*_issue_args(tmp_path), "--hardware", fp, "--match", "5", "--json")
    assert res.exit_code == 2 and "match 5 exceeds 4 components" in _error(res)["message"]
    assert cli(*_issue_args(tmp_path), "--hardware", fp, "--match", "2").exit_code == 0


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["components"][0].pop("kind"), "components[0] must be exactly {kind, hash}"),
    (lambda d: d["components"][1].pop("hash"), "components[1] must be exactly {kind, hash}"),
    (lambda d: d["components"][0].update(kind=""), "components[0].kind must be a non-empty"),
    (lambda d: d["components"][0].update(kind=7), "components[0].kind must be a non-empty"),
    (lambda d: d["components"][0].update(hash="zz" * 32), "components[0].hash must be 64"),
    (lambda d: d["components"].__setitem__(0, "mac"), "components[0] must be exactly"),
    (lambda d: d.update(salt="zz" * 32), "salt must be 64 lower-case hex"),
    (lambda d: d.update(salt="AB" * 32), "salt must be 64 lower-case hex"),
    (lambda d: d.update(salt="ab" * 32 + "\n"), "salt must be 64 lower-case hex"),
    (lambda d: d.update(components=[]), "components must be a non-empty list"),
    (lambda d: d.update(components={"kind": "mac"}), "components must be a non-empty list"),
    (lambda d: d.update(type="other"), "type is not oemkit-fingerprint/v1"),
])
def test_fingerprint_file_is_validated_in_full(cli, tmp_path, mutate, words):
    from oemkit.host.license_state import read_fingerprint

    doc = fingerprint(HOST, salt="11" * 32)
    mutate(doc)
    fp = tmp_path / "host.fp"
    fp.write_text(json.dumps(doc))
    with pytest.raises(InputError) as err:
        read_fingerprint(fp)
    assert err.value.code == "E_FINGERPRINT" and words in err.value.message
    res = cli(*_issue_args(tmp_path), "--hardware", fp, "--json")
    assert res.exit_code == 3 and _error(res)["code"] == "E_FINGERPRINT"
    assert words in _error(res)["message"]


def test_cli_inspect_trust_refuses_a_revoked_signing_key(cli, tmp_path, keys, root_doc):
    from helpers import KEYS

    assert cli(*_issue_args(tmp_path)).exit_code == 0
    lic, trust = tmp_path / "acme.lic", tmp_path / "root.json"
    ok = cli("license", "inspect", lic, "--trust", trust)
    assert ok.exit_code == 0 and "SIGNATURE VERIFIED" in ok.stderr
    compromised = tmp_path / "compromised.json"
    compromised.write_bytes(revoke_key(parse_root(root_doc), keys["license"].keyid,
                                       [keys["root"]]))
    res = cli("license", "inspect", lic, "--trust", compromised)
    assert res.exit_code == 1 and "SIGNATURE VERIFIED" not in res.output
    assert "E_KEY_REVOKED" in res.stderr and "marked compromised" in res.stderr
    assert cli("crl", "issue", "--key", KEYS / "crl.key", "--seq", "1", "--revoke-key",
               keys["license"].keyid, "--out", tmp_path / "k.crl").exit_code == 0
    res = cli("license", "inspect", lic, "--trust", trust, "--crl", tmp_path / "k.crl",
              "--json")
    assert res.exit_code == 1 and "SIGNATURE VERIFIED" not in res.output
    assert _error(res)["code"] == "E_KEY_REVOKED"
    assert "listed in CRL sequence 1" in _error(res)["message"]
    res = cli("license", "inspect", lic, "--crl", tmp_path / "k.crl")
    assert res.exit_code == 2 and "--crl needs --trust" in res.stderr


def test_cli_inspect_trust_refuses_a_key_outside_its_window(cli, tmp_path, keys, root_doc):
    retired = tmp_path / "retired.json"
    retired.write_bytes(retire_key(parse_root(root_doc), keys["license"].keyid, [keys["root"]],
                                   issued=T0))
    assert cli(*_issue_args(tmp_path)).exit_code == 0  # issued now, after T0
    res = cli("license", "inspect", tmp_path / "acme.lic", "--trust", retired, "--json")
    assert res.exit_code == 1 and _error(res)["code"] == "E_KEY_WINDOW"


def test_attach_refuses_to_replace_a_newer_reissue(keys, signed_bundle):
    from oemkit.release.licensing import attach_license

    attach_license(signed_bundle, issue_license(keys["license"], claims(seq=3)))
    before = signed_bundle.read_bytes()
    with pytest.raises(InputError) as err:
        attach_license(signed_bundle, issue_license(keys["license"], claims(seq=2)))
    assert err.value.code == "E_LICENSE_SUPERSEDED"
    assert "already carries re-issue 3 of license acme-vision" in err.value.message
    assert signed_bundle.read_bytes() == before
    assert attach_license(signed_bundle, issue_license(keys["license"], claims(seq=4))) == (
        "licenses/acme-vision.lic")
