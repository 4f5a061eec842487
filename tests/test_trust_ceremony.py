"""A trust-root change signed by root-key holders on their own machines (docs/TRUST.md,
"A ceremony across machines"): `--propose`, `trust sign`, `trust merge`, `trust status`.

Each holder's "machine" is a separate copy of the proposal that only that holder's key
touches; a proposal is refused by every verifier until its thresholds are met, and is then
an ordinary trust root."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import KEYS, PASSPHRASE
from oemkit.cli import app
from oemkit.crypto.dsse import sign
from oemkit.crypto.keys import (
    generate,
    key_id,
    load_private_file,
    load_public_file,
    private_pem,
    public_pem,
)
from oemkit.verify.trust import parse_root

ENV = {"OEMKIT_KEY_PASSPHRASE": PASSPHRASE.decode()}


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


def ok(*args: object) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fails(*args: object, exit_code: int) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)["error"]


@pytest.fixture
def holders(tmp_path) -> dict[str, tuple[Path, Path]]:
    """Three root-key holders (a, b, c), each with a key file and its public key."""
    out = {}
    for name, algorithm in (("a", "ed25519"), ("b", "ecdsa-p256"), ("c", "ed25519")):
        private = generate(algorithm)  # type: ignore[arg-type]
        key, pub = tmp_path / f"root-{name}.key", tmp_path / f"root-{name}.pub"
        key.write_bytes(private_pem(private, None))
        pub.write_text(public_pem(private.public_key()))
        out[name] = (key, pub)
    return out


def _v1(holders, tmp_path) -> Path:
    """Version 1 made across machines: proposed from the public keys, signed on two copies,
    merged."""
    proposal = tmp_path / "v1.proposal.json"
    doc = ok("trust", "init", "--root-pub", holders["a"][1], "--root-pub", holders["b"][1],
             "--threshold", "2", "--propose", "--out", proposal)
    assert doc["proposal"]["complete"] is False
    assert doc["proposal"]["own"] == {"of": "v1", "need": 2, "signed": [],
                                      "missing": ["root-a", "root-b"], "met": False}
    copies = []
    for name in ("a", "b"):  # each holder signs the copy handed to them
        copy = tmp_path / f"v1-{name}.json"
        shutil.copyfile(proposal, copy)
        signed = ok("trust", "sign", copy, "--key", holders[name][0])
        assert signed["signed"] == [key_id(load_public_file(holders[name][1]))]
        assert signed["proposal"]["own"]["signed"] == [f"root-{name}"]
        assert len(parse_root(copy.read_bytes(), proposal=True).envelope.signatures) == 1
        copies.append(copy)
    root = tmp_path / "trust-root.json"
    merged = ok("trust", "merge", *copies, "--out", root)
    assert merged["proposal"]["complete"] is True and merged["dropped_signatures"] == 0
    return root


def test_version_1_from_two_machines_is_an_ordinary_trust_root(holders, tmp_path):
    root = _v1(holders, tmp_path)
    shown = ok("trust", "show", root)["trust_root"]
    assert shown["version"] == 1 and shown["thresholds"]["root"] == 2
    assert sorted(k["name"] for k in shown["keys"]) == ["root-a", "root-b"]
    assert ok("trust", "status", root)["proposal"]["complete"] is True


def test_an_unfinished_proposal_is_refused_by_verifiers_and_says_who_is_missing(
        holders, tmp_path):
    proposal = tmp_path / "v1.json"
    ok("trust", "init", "--root-pub", holders["a"][1], "--root-pub", holders["b"][1],
       "--threshold", "2", "--propose", "--out", proposal)
    ok("trust", "sign", proposal, "--key", holders["a"][0])
    error = fails("trust", "status", proposal, exit_code=1)
    assert error["code"] == "E_TRUST_THRESHOLD"
    assert error["message"] == (f"the proposal {proposal} (v1) has 1 of the 2 signature(s) it "
                                "needs from v1's root keys")
    assert error["hint"] == ("1 more of: root-b (each holder runs 'oemkit trust sign PROPOSAL "
                             "--key THEIR-KEY', or 'oemkit trust merge' joins the copies they "
                             "signed)")
    # a verifier pinning it refuses it, as any under-signed root
    error = fails("trust", "show", proposal, exit_code=1)
    assert error["code"] == "E_TRUST_THRESHOLD"


def test_a_change_proposed_then_signed_serially_by_the_other_holder(holders, tmp_path,
                                                                    signed_bundle):
    root = _v1(holders, tmp_path)
    before = root.read_bytes()
    proposal = tmp_path / "v2.proposal.json"
    doc = ok("trust", "add-key", root, "--pub", KEYS / "bundle.pub", "--usage", "bundle",
             "--name", "bundle", "--sign-with", holders["a"][0], "--propose", "--out", proposal)
    assert doc["proposal"]["chain"]["signed"] == ["root-a"]
    assert root.read_bytes() == before  # the root in force is never touched by a proposal
    error = fails("trust", "status", proposal, "--current", root, exit_code=1)
    assert error["message"] == (f"the proposal {proposal} (v2) has 1 of the 2 signature(s) it "
                                "needs from v1's root keys")
    result = run("trust", "sign", proposal, "--current", root, "--key", holders["b"][0])
    assert result.exit_code == 0, result.output
    assert "v2 adds bundle (" in result.stderr and ") for bundle" in result.stderr
    assert f"Complete: {proposal} is trust root v2 as it is" in result.stderr
    # the signed proposal is the next version: a host moves to it, and the bundle verifies
    result = run("verify", signed_bundle, "--trust", proposal)
    assert result.exit_code == 0, result.output
    nxt = ok("trust", "add-key", proposal, "--pub", KEYS / "license.pub", "--usage", "license",
             "--sign-with", holders["a"][0], "--sign-with", holders["b"][0], "--out",
             tmp_path / "v3.json")
    assert nxt["trust_root"]["version"] == 3


def test_a_new_root_key_counts_for_the_new_version_only(holders, tmp_path):
    root = _v1(holders, tmp_path)
    proposal = tmp_path / "v2.json"
    ok("trust", "add-key", root, "--pub", holders["c"][1], "--usage", "root", "--propose",
       "--out", proposal)
    doc = ok("trust", "sign", proposal, "--current", root, "--key", holders["c"][0],
             "--key", holders["a"][0])["proposal"]
    assert doc["own"]["signed"] == ["root-a", "root-c"]
    assert doc["own"]["met"] is True
    assert doc["chain"] == {"of": "v1", "need": 2, "signed": ["root-a"],
                            "missing": ["root-b"], "met": False}
    assert doc["complete"] is False


def test_signing_twice_adds_nothing_and_a_foreign_key_is_refused(holders, tmp_path):
    root = _v1(holders, tmp_path)
    proposal = tmp_path / "v2.json"
    ok("trust", "set-threshold", root, "root", "1", "--sign-with", holders["a"][0],
       "--propose", "--out", proposal)
    once = proposal.read_bytes()
    again = ok("trust", "sign", proposal, "--current", root, "--key", holders["a"][0])
    assert again["signed"] == [] and len(again["already_signed"]) == 1
    assert proposal.read_bytes() == once
    error = fails("trust", "sign", proposal, "--current", root, "--key", KEYS / "bundle.key",
                  exit_code=3)
    assert error["code"] == "E_TRUST_KEY_UNKNOWN"
    assert error["message"].startswith(f"{KEYS / 'bundle.key'} (key ")
    assert error["message"].endswith("is not an active root key of v2 or v1: its signature "
                                     "would not count")
    assert error["hint"] == "sign with one of: root-a, root-b"
    assert proposal.read_bytes() == once


def test_merge_drops_foreign_signatures_and_refuses_another_proposal(holders, tmp_path):
    root = _v1(holders, tmp_path)
    proposal = tmp_path / "v2.json"
    ok("trust", "set-threshold", root, "root", "1", "--propose", "--out", proposal)
    obj = json.loads(proposal.read_text())
    payload = base64.b64decode(obj["payload"])
    intruder = load_private_file(KEYS / "bundle.key", PASSPHRASE)
    obj["signatures"].append({"keyid": "x", "sig": base64.b64encode(
        sign(intruder, obj["payloadType"], payload)).decode()})
    tampered = tmp_path / "with-foreign.json"
    tampered.write_text(json.dumps(obj))
    signed = tmp_path / "signed-b.json"
    ok("trust", "sign", proposal, "--current", root, "--key", holders["b"][0], "--out", signed)
    merged = ok("trust", "merge", tampered, signed, "--current", root, "--out",
                tmp_path / "merged.json")
    assert merged["dropped_signatures"] == 1
    assert merged["proposal"]["chain"]["signed"] == ["root-b"]
    other = tmp_path / "other.json"
    ok("trust", "add-key", root, "--pub", KEYS / "bundle.pub", "--usage", "bundle", "--propose",
       "--out", other)
    error = fails("trust", "merge", proposal, other, "--current", root, "--out",
                  tmp_path / "no.json", exit_code=3)
    assert error["code"] == "E_TRUST_MISMATCH"
    assert error["message"].startswith(f"{other} (v2, payload ")
    assert f"is not the proposal {proposal} is (v2, payload " in error["message"]
    assert not (tmp_path / "no.json").exists()


def test_a_stale_proposal_is_refused_before_any_key_is_used(holders, tmp_path):
    root = _v1(holders, tmp_path)
    proposal = tmp_path / "v2.json"
    ok("trust", "set-threshold", root, "root", "1", "--propose", "--out", proposal)
    v2 = tmp_path / "v2-elsewhere.json"
    ok("trust", "add-key", root, "--pub", KEYS / "bundle.pub", "--usage", "bundle",
       "--sign-with", holders["a"][0],
       "--sign-with", holders["b"][0], "--out", v2)
    error = fails("trust", "sign", proposal, "--current", v2, "--key", "pkcs11:token=none;"
                  "object=none", exit_code=1)
    assert error["code"] == "E_TRUST_ROLLBACK"
    assert error["message"] == ("the proposed trust root v2 is version 2, not newer than the "
                                "trusted version 2")


def test_usage_errors_write_nothing(holders, tmp_path):
    root = _v1(holders, tmp_path)
    before = root.read_bytes()
    error = fails("trust", "add-key", root, "--pub", KEYS / "bundle.pub", "--usage", "bundle",
                  exit_code=2)
    assert (error["code"], error["message"]) == ("E_USAGE", "Missing option '--sign-with'")
    assert "--propose" in error["hint"]
    error = fails("trust", "add-key", root, "--pub", KEYS / "bundle.pub", "--usage", "bundle",
                  "--propose", exit_code=2)
    assert error["message"] == ("--propose needs --out: a proposal is not a trust root until "
                                "its holders have signed it, so it never replaces ROOT")
    assert error["hint"] == "add --out trust-root-v2.proposal.json"
    assert root.read_bytes() == before
    error = fails("trust", "init", "--root-pub", holders["a"][1], "--out", tmp_path / "x.json",
                  exit_code=2)
    assert error["message"] == "--root-pub names a root key that is not here to sign"
    assert not (tmp_path / "x.json").exists()
    error = fails("trust", "status", tmp_path / "v1.proposal.json.missing", exit_code=3)
    assert error["code"] == "E_NOT_FOUND"
    error = fails("trust", "status", tmp_path / "v1-a.json", "--current", root, exit_code=1)
    assert error["code"] == "E_TRUST_ROLLBACK"


def test_names_from_a_proposal_are_printed_inert(holders, tmp_path):
    """A proposal comes on removable media: its key names may carry terminal escapes or
    markup, which trust sign prints neutralised."""
    from oemkit.release.trust import add_key

    root = _v1(holders, tmp_path)
    proposal = tmp_path / "v2.json"
    proposal.write_bytes(add_key(parse_root(root.read_bytes()),
                                 load_public_file(KEYS / "bundle.pub"), ["bundle"], [],
                                 name="\x1b]0;owned\x07[red]evil[/red]", propose=True))
    result = run("trust", "sign", proposal, "--current", root, "--key", holders["a"][0])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "evil" in result.stderr and "[red]" in result.stderr  # shown, not interpreted


def test_a_damaged_proposal_is_a_coded_refusal_never_a_crash(holders, tmp_path):
    """Flipped or cut bytes anywhere in a proposal: parsing, judging, signing and merging
    it raise an oemkit error or give a document whose every signature is a root key's."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from oemkit.errors import OemkitError
    from oemkit.release.trust import merge_proposals, sign_proposal
    from oemkit.verify.trust import proposal_status

    root = _v1(holders, tmp_path)
    current = parse_root(root.read_bytes())
    proposal = tmp_path / "v2.json"
    ok("trust", "set-threshold", root, "root", "1", "--sign-with", holders["a"][0],
       "--propose", "--out", proposal)
    good = proposal.read_bytes()
    signer = load_private_file(holders["b"][0], None)

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(0, len(good) - 1), st.integers(1, 255), st.booleans())
    def damaged(at: int, xor: int, cut: bool) -> None:
        data = good[:at] if cut else good[:at] + bytes([good[at] ^ xor]) + good[at + 1:]
        try:
            copy = parse_root(data, "p", proposal=True)
            status = proposal_status(copy, current.root)
            doc, _, _ = sign_proposal(copy, [signer], current.root)
            merged, _ = merge_proposals([("a", copy), ("b", parse_root(doc, proposal=True))],
                                        current.root)
        except OemkitError:
            return
        out = parse_root(merged, proposal=True)
        after = proposal_status(out, current.root)
        assert after.unknown == 0 and status.version == after.version

    damaged()


def test_an_unsigned_proposal_given_as_a_trust_root_says_what_it_is(holders, tmp_path):
    proposal = tmp_path / "v1.json"
    ok("trust", "init", "--root-pub", holders["a"][1], "--propose", "--out", proposal)
    error = fails("trust", "show", proposal, exit_code=3)
    assert (error["code"], error["message"]) == ("E_ENVELOPE", f"{proposal}: no signatures")
    assert error["hint"] == ("an unsigned trust-root proposal? its holders sign it with "
                             "'oemkit trust sign'; 'oemkit trust status' says who is missing")


def test_on_a_terminal_trust_sign_asks_first(holders, tmp_path, monkeypatch):
    import oemkit.cli.ceremony as ceremony

    root = _v1(holders, tmp_path)
    proposal = tmp_path / "v2.json"
    ok("trust", "set-threshold", root, "root", "1", "--propose", "--out", proposal)
    before = proposal.read_bytes()
    monkeypatch.setattr(ceremony, "_interactive", lambda: True)
    result = CliRunner().invoke(app, ["trust", "sign", str(proposal), "--current", str(root),
                                      "--key", str(holders["a"][0])], input="n\n", env=ENV)
    assert result.exit_code == 2, result.output
    assert "v2 sets the root threshold 2 -> 1" in result.stderr
    assert f"{proposal} was not signed: not confirmed" in result.stderr
    assert proposal.read_bytes() == before
    result = CliRunner().invoke(app, ["trust", "sign", str(proposal), "--current", str(root),
                                      "--key", str(holders["a"][0])], input="y\n", env=ENV)
    assert result.exit_code == 0, result.output
    assert proposal.read_bytes() != before
    result = CliRunner().invoke(app, ["trust", "sign", str(proposal), "--current", str(root),
                                      "--key", str(holders["b"][0]), "--yes"], env=ENV)
    assert result.exit_code == 0 and "Complete:" in result.stderr


def test_a_trust_root_that_is_no_envelope_is_named_as_a_trust_root(tmp_path):
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    for args in (("trust", "show", junk), ("trust", "status", junk)):
        error = fails(*args, exit_code=3)
        assert (error["code"], error["message"]) == ("E_ENVELOPE",
                                                     f"{junk}: missing payloadType")
        assert error["hint"] == ("the trust root is damaged or was not written by 'oemkit "
                                 "trust'; get it again from the vendor")
