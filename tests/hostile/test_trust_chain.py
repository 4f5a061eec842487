"""Trust root chain attacks: rollback, skipped versions, successors lacking the previous
version's root signatures, hostile sizes, tampered pins; and the rotation that must work."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from helpers import read_members, write_members
from hostile._support import (
    assert_cli_verify_rejects,
    assert_rejected,
    build_example,
    cli,
    fresh_key,
    resign,
    root_document,
)
from oemkit.errors import InputError, VerificationError
from oemkit.models.trust import MAX_KEYS, TrustKey
from oemkit.release.trust import add_key, init_root
from oemkit.verify.bundle import verify_bundle
from oemkit.verify.trust import check_successor, parse_root, walk_chain

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def trust_key(info, usage=("root",), name="new-root") -> TrustKey:
    from oemkit.crypto.keys import public_pem

    return TrustKey(keyid=info.keyid, name=name, algorithm="ed25519",
                    public_key=public_pem(info.public), usage=tuple(usage))


@pytest.fixture
def trust_v3(trust_v2, keys) -> bytes:
    """v3: adds the example license key."""
    return add_key(parse_root(trust_v2), keys["license"].public, ["license"], [keys["root"]],
                   name="license")


@pytest.fixture
def other_v2(trust_v1, keys) -> bytes:
    """A different, properly chained version 2 (adds the crl key instead)."""
    return add_key(parse_root(trust_v1), keys["crl"].public, ["crl"], [keys["root"]],
                   name="crl")


def takeover_v2(trust_v1, attacker, *, sign_with):
    """v2 that adds the attacker as root and bundle key, signed by ``sign_with``."""
    v1 = parse_root(trust_v1).root
    root = v1.next_version(T0, keys=(*v1.keys, trust_key(attacker, ("root", "bundle"))))
    return root_document(root, sign_with)


# --------------------------------------------------------------------------- pure: rollback


def test_successor_with_lower_version_is_a_rollback(trust_v1, trust_v2):
    with pytest.raises(VerificationError) as err:
        check_successor(parse_root(trust_v2).root, parse_root(trust_v1), "trust/root-1.json")
    assert err.value.code == "E_TRUST_ROLLBACK"
    assert "not newer than the trusted version 2" in err.value.message
    assert (err.value.expected, err.value.actual) == ("3", "1")


def test_successor_with_equal_version_is_a_rollback(trust_v2, other_v2):
    with pytest.raises(VerificationError) as err:
        check_successor(parse_root(trust_v2).root, parse_root(other_v2), "trust/root-2.json")
    assert err.value.code == "E_TRUST_ROLLBACK"
    assert "version 2" in err.value.message


def test_carried_older_root_never_downgrades_the_pinned_one(trust_v1, trust_v3):
    pinned = parse_root(trust_v3).root
    root, walked = walk_chain(pinned, [("trust/root-1.json", trust_v1)])
    assert root is pinned and root.version == 3 and walked == []


def test_two_carried_roots_claiming_the_same_version(trust_v1, trust_v2, other_v2):
    with pytest.raises(VerificationError) as err:
        walk_chain(parse_root(trust_v1).root,
                   [("trust/root-2.json", trust_v2), ("trust/root-2.json", other_v2)])
    assert err.value.code == "E_TRUST_ROLLBACK"
    assert err.value.member == "trust/root-2.json"


def test_carried_root_named_otherwise_than_its_version(trust_v1, trust_v2):
    """Carried roots are ordered by their names (no document is read to sort them), so
    a name must be trust/root-N.json and N the document's version."""
    for name in ("trust/root-2b.json", "trust/root-02.json", "trust/two.json"):
        with pytest.raises(VerificationError) as err:
            walk_chain(parse_root(trust_v1).root, [(name, trust_v2)])
        assert (err.value.code, err.value.member) == ("E_TRUST_INVALID", name)
        assert "trust/root-N.json" in err.value.message
    with pytest.raises(VerificationError) as err:
        walk_chain(parse_root(trust_v1).root, [("trust/root-2.json", trust_v1)])
    assert err.value.code == "E_TRUST_INVALID"
    assert "holds trust root version 1, not 2" in err.value.message


# --------------------------------------------------------------------------- pure: skip


def test_skipped_version(trust_v1, trust_v3):
    with pytest.raises(VerificationError) as err:
        walk_chain(parse_root(trust_v1).root, [("trust/root-3.json", trust_v3)])
    assert err.value.code == "E_TRUST_SKIP"
    assert "version 3" in err.value.message and "must be 2" in err.value.message
    assert err.value.member == "trust/root-3.json"


def test_full_chain_walks_in_order_whatever_the_carried_order(trust_v1, trust_v2, trust_v3):
    root, walked = walk_chain(parse_root(trust_v1).root,
                              [("trust/root-3.json", trust_v3), ("trust/root-2.json", trust_v2)])
    assert root.version == 3 and walked == [2, 3]


# --------------------------------------------------------------------------- pure: threshold


def test_successor_signed_only_by_a_new_root_key(trust_v1):
    attacker = fresh_key("attacker")
    forged = takeover_v2(trust_v1, attacker, sign_with=[attacker])
    with pytest.raises(VerificationError) as err:
        walk_chain(parse_root(trust_v1).root, [("trust/root-2.json", forged)])
    assert err.value.code == "E_TRUST_THRESHOLD"
    assert "v1's root keys" in err.value.message and "needs 1" in err.value.message
    assert err.value.member == "trust/root-2.json"


def test_successor_signed_by_old_root_but_not_by_its_own_threshold(trust_v1, keys):
    """v2 replaces the root key; the old key signs, the new one does not."""
    new_root = fresh_key("new-root")
    v1 = parse_root(trust_v1).root
    root = v1.next_version(T0, keys=(trust_key(new_root),))
    doc = root_document(root, [keys["root"]])
    with pytest.raises(VerificationError) as err:
        check_successor(v1, parse_root(doc), "trust/root-2.json")
    assert err.value.code == "E_TRUST_THRESHOLD"
    assert "v2 has 0 valid root signature" in err.value.message


def test_successor_below_a_root_threshold_of_two(keys):
    second = fresh_key("root-2")
    v1_doc = init_root([keys["root"], second], threshold=2)
    v1 = parse_root(v1_doc).root
    v2 = v1.next_version(T0, keys=(*v1.keys, trust_key(keys["bundle"], ("bundle",))))
    with pytest.raises(VerificationError) as err:
        check_successor(v1, parse_root(root_document(v2, [keys["root"]])), "v2")
    assert err.value.code == "E_TRUST_THRESHOLD"
    assert (err.value.expected, err.value.actual) == (">= 2", "1")
    check_successor(v1, parse_root(root_document(v2, [keys["root"], second])), "v2")


def test_successor_signed_twice_by_one_key_counts_once(keys):
    second = fresh_key("root-2")
    v1 = parse_root(init_root([keys["root"], second], threshold=2)).root
    v2 = v1.next_version(T0)
    with pytest.raises(VerificationError) as err:
        check_successor(v1, parse_root(root_document(v2, [keys["root"], keys["root"]])), "v2")
    assert err.value.code == "E_TRUST_THRESHOLD"


# --------------------------------------------------------------------------- sizes


def _too_many_keys_doc(version: int = 2) -> bytes:
    payload = {"type": "oemkit-trust-root", "spec_version": 1, "version": version,
               "issued": "2024-01-01T00:00:00Z",
               "thresholds": {"root": 1, "bundle": 1, "license": 1, "crl": 1},
               "keys": [{"keyid": f"{i:064x}", "public_key": "x", "usage": ["root"]}
                        for i in range(5000)]}
    env = {"payloadType": "application/vnd.oemkit.trust-root+json",
           "payload": base64.b64encode(json.dumps(payload).encode()).decode(),
           "signatures": [{"keyid": "", "sig": base64.b64encode(bytes(64)).decode()}]}
    return json.dumps(env).encode()


def test_trust_root_with_thousands_of_keys():
    with pytest.raises(InputError) as err:
        parse_root(_too_many_keys_doc())
    assert err.value.code == "E_TRUST_TOO_MANY_KEYS"
    assert "5000 keys" in err.value.message and str(MAX_KEYS) in err.value.message


def test_carried_trust_root_with_thousands_of_keys(members, bad, trust_v1):
    carried = ("trust/root-2.json", _too_many_keys_doc())
    write_members(bad, [*members[:3], carried, *members[3:]])
    assert_rejected(verify_bundle(bad, trust_v1), "E_TRUST_TOO_MANY_KEYS", "5000 keys",
                    member="trust/root-2.json")


def test_pinned_trust_root_with_thousands_of_keys_cli(signed_bundle, tmp_path):
    pinned = tmp_path / "huge-root.json"
    pinned.write_bytes(_too_many_keys_doc(1))
    result = cli("verify", signed_bundle, "--trust", pinned, "--json")
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["error"]["code"] == "E_TRUST_TOO_MANY_KEYS"


# --------------------------------------------------------------------------- tampered pin


def _tamper_payload(doc: bytes) -> bytes:
    """Give the bundle key root usage, keeping the payload canonical and the signature."""
    from oemkit._canonical import canonical_json

    env = json.loads(doc)
    payload = json.loads(base64.b64decode(env["payload"]))
    for key in payload["keys"]:
        key["usage"] = sorted(set(key["usage"]) | {"root"})
    env["payload"] = base64.b64encode(canonical_json(payload)).decode()
    return json.dumps(env).encode()


def _flip_signature(doc: bytes) -> bytes:
    env = json.loads(doc)
    raw = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    raw[0] ^= 1
    env["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(env).encode()


@pytest.mark.parametrize(("tamper", "code"), [
    (_tamper_payload, "E_TRUST_THRESHOLD"),
    (_flip_signature, "E_TRUST_THRESHOLD"),
    (lambda d: d.replace(b'"payload"', b'"payl0ad"'), "E_ENVELOPE"),
    (lambda d: d[: len(d) // 2], "E_TRUST_INVALID"),
], ids=["payload-edited", "signature-flipped", "field-renamed", "cut-in-half"])
def test_tampered_pinned_trust_root(signed_bundle, trust_v2, tmp_path, tamper, code):
    pinned = tmp_path / "trust-root.json"
    pinned.write_bytes(tamper(trust_v2))
    with pytest.raises(InputError) as err:
        verify_bundle(signed_bundle, pinned)
    assert err.value.code == code
    text = cli("verify", signed_bundle, "--trust", pinned)
    assert text.exit_code == 3 and code in text.output, text.output
    as_json = cli("verify", signed_bundle, "--trust", pinned, "--json")
    assert as_json.exit_code == 3
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["error"]["code"] == code
    assert doc["error"]["exit_code"] == 3


# --------------------------------------------------------------------------- end to end


def test_rotation_reaches_a_host_pinned_to_v1(tmp_path, trust_v1, trust_v2, keys):
    """Pinned v1 (root key only); the bundle carries v2, which adds the bundle key."""
    bundle = build_example(tmp_path, trust_roots=[trust_v2], keys=[keys["bundle"]])
    assert "trust/root-2.json" in [n for n, _ in read_members(bundle)]
    report = verify_bundle(bundle, trust_v1)
    assert report.ok, report.to_dict()
    assert report.trust_root_version == 2
    assert report.signers == [keys["bundle"].keyid]
    pinned = tmp_path / "v1.json"
    pinned.write_bytes(trust_v1)
    result = cli("verify", bundle, "--trust", pinned, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trust_root_version"] == 2


def test_bundle_signed_by_a_key_only_a_newer_root_knows_needs_that_root(tmp_path, trust_v1,
                                                                        keys):
    bundle = build_example(tmp_path, keys=[keys["bundle"]])  # carries nothing
    assert_rejected(verify_bundle(bundle, trust_v1), "E_SIGNATURE_UNTRUSTED")


def test_carried_root_skipping_a_version(tmp_path, trust_v1, trust_v3, keys):
    bundle = build_example(tmp_path, trust_roots=[trust_v3], keys=[keys["bundle"]])
    assert_rejected(verify_bundle(bundle, trust_v1), "E_TRUST_SKIP", "must be 2",
                    member="trust/root-3.json")
    pinned = tmp_path / "v1.json"
    pinned.write_bytes(trust_v1)
    assert_cli_verify_rejects(bundle, pinned, "E_TRUST_SKIP")


def test_carried_root_forged_by_an_attacker(tmp_path, signed_bundle, trust_v1):
    """The attacker carries a v2 naming its own key, signed by itself, and signs with it."""
    attacker = fresh_key("attacker")
    forged = takeover_v2(trust_v1, attacker, sign_with=[attacker])
    members = read_members(signed_bundle)
    write_members(tmp_path / "x.oemb", [*members[:3], ("trust/root-2.json", forged),
                                        *members[3:]])
    resign(tmp_path / "forged.oemb", tmp_path / "x.oemb", [attacker])
    report = verify_bundle(tmp_path / "forged.oemb", trust_v1)
    assert_rejected(report, "E_TRUST_THRESHOLD", "v1's root keys",
                    member="trust/root-2.json")
    assert report.trust_root_version is None


def test_older_carried_root_is_ignored_end_to_end(tmp_path, trust_v1, trust_v2, keys):
    bundle = build_example(tmp_path, trust_roots=[trust_v1], keys=[keys["bundle"]])
    report = verify_bundle(bundle, trust_v2)
    assert report.ok, report.to_dict()
    assert report.trust_root_version == 2


def test_successor_that_unrevokes_a_compromised_key_is_rejected(keys, trust_v2):
    from dataclasses import replace

    from oemkit.release.trust import _document, revoke_key
    from oemkit.verify.trust import check_successor, parse_root

    v3 = parse_root(revoke_key(parse_root(trust_v2), keys["bundle"].keyid, [keys["root"]]))
    forged_keys = tuple(replace(k, status="active") if k.keyid == keys["bundle"].keyid else k
                        for k in v3.root.keys)
    forged = parse_root(_document(v3.root.next_version(v3.root.issued, keys=forged_keys),
                                  [keys["root"]]))
    with pytest.raises(VerificationError) as err:
        check_successor(v3.root, forged, "root-4.json")
    assert err.value.code == "E_TRUST_UNREVOKED"
    assert "un-revokes key" in err.value.message and err.value.actual == "active"
