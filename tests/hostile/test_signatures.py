"""Signature attacks: unknown, misused, compromised, expired, retired and too few keys;
envelopes that are huge or sign something else."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from helpers import read_members, replace_member, sign_members, write_members
from hostile._support import (
    SIG,
    assert_cli_verify_rejects,
    assert_rejected,
    build_example,
    fresh_key,
    resign,
    unsigned,
)
from oemkit.crypto.dsse import INTOTO_PAYLOAD_TYPE, make_envelope, sigstore_bundle
from oemkit.release.trust import add_key, retire_key, revoke_key, set_threshold
from oemkit.verify.bundle import verify_bundle
from oemkit.verify.trust import parse_root

UTC = dt.timezone.utc
T2024 = dt.datetime(2024, 1, 1, tzinfo=UTC)
DAY = 86400


def epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def write_trust(tmp_path, doc: bytes, name: str = "trust.json"):
    path = tmp_path / name
    path.write_bytes(doc)
    return path


@pytest.fixture
def stranger():
    return fresh_key()


def test_signed_by_unknown_key(signed_bundle, bad, trust_v2, stranger):
    resign(bad, signed_bundle, [stranger])
    assert_rejected(verify_bundle(bad, trust_v2), "E_SIGNATURE_UNTRUSTED",
                    "no signature verifies", "trust root v2")


def test_signed_by_unknown_key_cli(signed_bundle, bad, trust_file, stranger):
    resign(bad, signed_bundle, [stranger])
    assert_cli_verify_rejects(bad, trust_file, "E_SIGNATURE_UNTRUSTED")


def test_unknown_key_signature_named_after_trusted_keyid(signed_bundle, bad, trust_v2,
                                                         keys, stranger):
    """Key ids in member names and envelopes are hints, never trusted in-band."""
    members = unsigned(read_members(signed_bundle))
    [(_, doc)] = sign_members(dict(members)["provenance.intoto.json"], [stranger])
    obj = json.loads(doc)
    obj["dsseEnvelope"]["signatures"][0]["keyid"] = keys["bundle"].keyid
    write_members(bad, [*members, (f"{SIG}{keys['bundle'].keyid}.sigstore.json",
                                   json.dumps(obj).encode())])
    assert_rejected(verify_bundle(bad, trust_v2), "E_SIGNATURE_UNTRUSTED")


def test_signed_by_trusted_key_with_wrong_usage(signed_bundle, bad, trust_v2, keys):
    trust = add_key(parse_root(trust_v2), keys["license"].public, ["license"], [keys["root"]],
                    name="license")
    resign(bad, signed_bundle, [keys["license"]])
    report = verify_bundle(bad, trust)
    assert_rejected(report, "E_KEY_USAGE", "license", "not bundle signing")
    assert report.error.actual == "license"


def test_signed_by_root_key_is_not_a_bundle_signature(signed_bundle, bad, trust_v2, keys):
    resign(bad, signed_bundle, [keys["root"]])
    assert_rejected(verify_bundle(bad, trust_v2), "E_KEY_USAGE", "root", "not bundle signing")


def test_signed_by_compromised_key(signed_bundle, trust_v2, keys, tmp_path):
    trust = revoke_key(parse_root(trust_v2), keys["bundle"].keyid, [keys["root"]])
    member = f"{SIG}{keys['bundle'].keyid}.sigstore.json"
    assert_rejected(verify_bundle(signed_bundle, trust), "E_KEY_COMPROMISED", "compromised",
                    "trust root v3", member=member)
    assert_cli_verify_rejects(signed_bundle, write_trust(tmp_path, trust), "E_KEY_COMPROMISED")


def test_compromised_key_taints_a_bundle_also_signed_by_a_good_key(signed_bundle, bad,
                                                                  trust_v2, keys):
    second = fresh_key("bundle-2")
    v3 = add_key(parse_root(trust_v2), second.public, ["bundle"], [keys["root"]])
    v4 = revoke_key(parse_root(v3), keys["bundle"].keyid, [keys["root"]])
    resign(bad, signed_bundle, [keys["bundle"], second])
    assert verify_bundle(bad, v3).ok  # fine before the revocation
    assert_rejected(verify_bundle(bad, v4), "E_KEY_COMPROMISED", "compromised")


def test_key_not_yet_valid_when_bundle_was_built(tmp_path, trust_v1, keys):
    trust = add_key(parse_root(trust_v1), keys["bundle"].public, ["bundle"], [keys["root"]],
                    not_before=T2024)
    bundle = build_example(tmp_path, epoch=epoch(T2024) - DAY, keys=[keys["bundle"]])
    report = verify_bundle(bundle, trust)
    assert_rejected(report, "E_KEY_WINDOW", "2023-12-31T00:00:00Z",
                    "outside its validity window")
    assert report.error.actual == "2023-12-31T00:00:00Z"
    assert report.error.expected.startswith("2024-01-01")


def test_key_expired_before_bundle_was_built(tmp_path, trust_v1, keys):
    trust = add_key(parse_root(trust_v1), keys["bundle"].public, ["bundle"], [keys["root"]],
                    expires=T2024)
    bundle = build_example(tmp_path, epoch=epoch(T2024) + DAY, keys=[keys["bundle"]])
    assert_rejected(verify_bundle(bundle, trust), "E_KEY_WINDOW", "2024-01-02T00:00:00Z",
                    "outside its validity window")
    assert_cli_verify_rejects(bundle, write_trust(tmp_path, trust), "E_KEY_WINDOW")


def test_key_used_inside_its_window_verifies(tmp_path, trust_v1, keys):
    trust = add_key(parse_root(trust_v1), keys["bundle"].public, ["bundle"], [keys["root"]],
                    not_before=T2024, expires=T2024 + dt.timedelta(days=365))
    bundle = build_example(tmp_path, epoch=epoch(T2024) + DAY, keys=[keys["bundle"]])
    assert verify_bundle(bundle, trust).ok


@pytest.fixture
def retired_trust(trust_v2, keys) -> bytes:
    """v3: the bundle key retired on 2024-01-01."""
    return retire_key(parse_root(trust_v2), keys["bundle"].keyid, [keys["root"]],
                      issued=T2024)


def test_retired_key_still_verifies_what_it_signed_before_retirement(tmp_path, keys,
                                                                    retired_trust):
    bundle = build_example(tmp_path, epoch=epoch(T2024) - DAY, keys=[keys["bundle"]])
    report = verify_bundle(bundle, retired_trust)
    assert report.ok, report.to_dict()
    assert report.signers == [keys["bundle"].keyid]


def test_retired_key_rejected_for_bundles_built_after_retirement(tmp_path, keys,
                                                                retired_trust):
    bundle = build_example(tmp_path, epoch=epoch(T2024) + DAY, keys=[keys["bundle"]])
    report = verify_bundle(bundle, retired_trust)
    assert_rejected(report, "E_KEY_WINDOW", "outside its validity window")
    assert "2024-01-01" in report.error.expected


@pytest.fixture
def threshold_two(trust_v2, keys):
    """v4: two bundle keys, and bundles need both."""
    second = fresh_key("bundle-2")
    v3 = add_key(parse_root(trust_v2), second.public, ["bundle"], [keys["root"]])
    return second, set_threshold(parse_root(v3), "bundle", 2, [keys["root"]])


def test_fewer_signatures_than_the_threshold(signed_bundle, trust_v2, threshold_two):
    _, trust = threshold_two
    report = verify_bundle(signed_bundle, trust)
    assert_rejected(report, "E_SIGNATURE_THRESHOLD", "1 valid bundle signature",
                    "requires 2")
    assert (report.error.expected, report.error.actual) == (">= 2", "1")


def test_threshold_met_by_two_distinct_keys(signed_bundle, bad, keys, threshold_two):
    second, trust = threshold_two
    resign(bad, signed_bundle, [keys["bundle"], second])
    report = verify_bundle(bad, trust)
    assert report.ok, report.to_dict()
    assert sorted(report.signers) == sorted([keys["bundle"].keyid, second.keyid])


def test_one_key_signing_twice_does_not_meet_a_threshold_of_two(signed_bundle, bad, keys,
                                                                threshold_two, tmp_path):
    _, trust = threshold_two
    members = unsigned(read_members(signed_bundle))
    provenance = dict(members)["provenance.intoto.json"]
    env = make_envelope([keys["bundle"], keys["bundle"]], INTOTO_PAYLOAD_TYPE, provenance)
    assert len(env.signatures) == 2
    doc = json.dumps(sigstore_bundle(env, keys["bundle"].public)).encode()
    [(name, single)] = sign_members(provenance, [keys["bundle"]])
    # the same key twice in one envelope, and again under a second member name
    write_members(bad, [*members, (name, doc), (f"{SIG}copy.sigstore.json", single)])
    assert_rejected(verify_bundle(bad, trust), "E_SIGNATURE_THRESHOLD", "requires 2")
    assert_cli_verify_rejects(bad, write_trust(tmp_path, trust), "E_SIGNATURE_THRESHOLD")


def test_envelope_with_thousands_of_signatures(signed_bundle, members, bad, trust_v2):
    [name] = [n for n, _ in members if n.startswith(SIG)]
    obj = json.loads(dict(members)[name])
    sigs = obj["dsseEnvelope"]["signatures"]
    obj["dsseEnvelope"]["signatures"] = sigs * 5000
    write_members(bad, replace_member(members, name, json.dumps(obj).encode()))
    assert_rejected(verify_bundle(bad, trust_v2), "E_TOO_MANY_SIGNATURES",
                    "5000 signatures", member=name)


def test_envelope_with_thousands_of_signatures_cli(signed_bundle, members, bad, trust_file):
    [name] = [n for n, _ in members if n.startswith(SIG)]
    obj = json.loads(dict(members)[name])
    obj["dsseEnvelope"]["signatures"] *= 3000
    write_members(bad, replace_member(members, name, json.dumps(obj).encode()))
    assert_cli_verify_rejects(bad, trust_file, "E_TOO_MANY_SIGNATURES")


def test_signature_over_a_different_statement(tmp_path, signed_bundle, bad, trust_v2, keys):
    """A genuine signature by the trusted key, lifted from another bundle."""
    other = build_example(tmp_path, epoch=1_234_567, keys=[keys["bundle"]])
    [stolen] = [m for m in read_members(other) if m[0].startswith(SIG)]
    write_members(bad, [*unsigned(read_members(signed_bundle)), stolen])
    report = verify_bundle(bad, trust_v2)
    assert_rejected(report, "E_SIGNATURE_PAYLOAD", "signs a different statement",
                    "provenance.intoto.json", member=stolen[0])


def test_signature_with_a_different_payload_type(signed_bundle, bad, trust_v2, keys):
    members = unsigned(read_members(signed_bundle))
    provenance = dict(members)["provenance.intoto.json"]
    env = make_envelope([keys["bundle"]], "application/json", provenance)
    name = f"{SIG}{keys['bundle'].keyid}.sigstore.json"
    doc = json.dumps(sigstore_bundle(env, keys["bundle"].public)).encode()
    write_members(bad, [*members, (name, doc)])
    assert_rejected(verify_bundle(bad, trust_v2), "E_SIGNATURE_PAYLOAD", "application/json",
                    member=name)


@pytest.mark.parametrize(("doc", "code"), [
    (b"not json", "E_ENVELOPE"),
    (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}', "E_ENVELOPE"),
    (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "dsseEnvelope": '
     b'{"payload": "!!", "payloadType": "x", "signatures": [{"sig": "AA=="}]}}', "E_BASE64"),
], ids=["not-json", "no-envelope", "bad-base64"])
def test_malformed_signature_member(signed_bundle, members, bad, trust_v2, doc, code):
    [name] = [n for n, _ in members if n.startswith(SIG)]
    write_members(bad, replace_member(members, name, doc))
    assert_rejected(verify_bundle(bad, trust_v2), code, member=name)


def test_statement_with_another_predicate_type_is_rejected(tmp_path, keys, trust_v2):
    import json as _json

    from helpers import EXAMPLE, read_members, replace_member, sign_members, write_members
    from oemkit._canonical import canonical_json
    from oemkit.release.bundle import build_bundle
    from oemkit.verify.bundle import verify_bundle

    built = build_bundle(EXAMPLE, tmp_path / "b").path
    members = read_members(built)
    statement = _json.loads(dict(members)["provenance.intoto.json"])
    statement["predicateType"] = "https://example.com/not-slsa"
    provenance = canonical_json(statement)
    members = replace_member(members, "provenance.intoto.json", provenance)
    forged = write_members(tmp_path / "forged.oemb",
                           members + sign_members(provenance, [keys["bundle"]]))
    report = verify_bundle(forged, trust_v2)
    assert report.error is not None and report.error.code == "E_PROVENANCE_INVALID"
    assert "SLSA Provenance v1 predicate" in report.error.message
