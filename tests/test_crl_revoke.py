"""`crl issue --revoke ID@SEQ | ID@all` and where the license state lives (issue 21 item 4).

A vendor that withdraws a license and issues its replacement means "revoke this copy",
not "revoke the id for good": ``ID@SEQ`` revokes re-issues 1..SEQ and leaves SEQ+1 valid;
``ID@all`` is the explicit "for good". A bare ID is refused. The state file remembers a
CRL once verified; ``OEMKIT_STATE`` keeps a test's or a demo's memory apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import KEYS, PASSPHRASE
from oemkit.cli import app
from oemkit.crypto.keys import load_private_file
from oemkit.release.trust import add_key, init_root
from oemkit.verify.trust import parse_root


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A trust root with the example license and crl keys, licenses acme-vision re-issues
    1, 2 and 3, and a state file of the test's own."""
    monkeypatch.setenv("OEMKIT_KEY_PASSPHRASE", PASSPHRASE.decode())
    monkeypatch.setenv("OEMKIT_STATE", str(tmp_path / "state.json"))
    root_key = load_private_file(KEYS / "root.key", PASSPHRASE)
    doc = init_root([root_key], names=["root"])
    for name in ("license", "crl"):
        doc = add_key(parse_root(doc), load_private_file(KEYS / f"{name}.key", PASSPHRASE).public,
                      [name], [root_key], name=name)
    (tmp_path / "root.json").write_bytes(doc)
    for seq in (1, 2, 3):
        assert run("license", "issue", "--key", KEYS / "license.key", "--customer", "acme",
                   "--customer-name", "ACME", "--product", "vision", "--expires", "2099-01-01",
                   "--seq", seq, "--out", tmp_path / f"acme-{seq}.lic").exit_code == 0
    return tmp_path


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def verdicts(site: Path, crl: Path) -> dict[int, str]:
    """Each re-issue judged with ``crl``, each with a fresh state (no memory between)."""
    found = {}
    for seq in (1, 2, 3):
        result = run("license", "verify", site / f"acme-{seq}.lic", "--trust", site / "root.json",
                     "--crl", crl, "--state", site / f"fresh-{crl.stem}-{seq}.json", "--json")
        doc = json.loads(result.stdout)
        found[seq] = doc["verdict"] if result.exit_code == 0 else doc["error"]["code"]
    return found


def test_revoke_up_to_a_reissue_leaves_the_replacement_valid(site):
    result = run("crl", "issue", "--key", KEYS / "crl.key", "--seq", "1", "--revoke",
                 "acme-vision@2", "--out", site / "r.crl", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["revoked"] == [{"license_id": "acme-vision",
                                                     "up_to_seq": 2}]
    assert "acme-vision: re-issues 1 to 2; re-issue 3 and later stay valid" in result.stderr
    assert verdicts(site, site / "r.crl") == {1: "E_REVOKED", 2: "E_REVOKED", 3: "valid"}


def test_revoke_all_is_for_good(site):
    result = run("crl", "issue", "--key", KEYS / "crl.key", "--seq", "1", "--revoke",
                 "acme-vision@all", "--out", site / "all.crl", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["revoked"] == [{"license_id": "acme-vision",
                                                     "up_to_seq": None}]
    assert "acme-vision: every re-issue, for good" in result.stderr
    assert verdicts(site, site / "all.crl") == {1: "E_REVOKED", 2: "E_REVOKED", 3: "E_REVOKED"}


@pytest.mark.parametrize(("value", "message", "hint"), [
    ("acme-vision", "--revoke 'acme-vision' does not say which re-issues",
     "write ID@SEQ (re-issues 1..SEQ; a later re-issue stays valid) or ID@all (every "
     "re-issue, for good)"),
    ("acme-vision:3", "--revoke 'acme-vision:3': the ID:N form is gone",
     "'acme-vision:3' meant re-issues below 3: write --revoke acme-vision@2"),
    ("@2", "--revoke '@2' names no license",
     "write ID@SEQ (re-issues 1..SEQ; a later re-issue stays valid) or ID@all (every "
     "re-issue, for good)"),
    ("acme-vision@0", "--revoke acme-vision@SEQ: 0 is out of range: it must be greater than "
     "or equal to 1", None),
    ("acme-vision@two", "--revoke acme-vision@SEQ: 'two' is not an integer", None),
])
def test_a_revocation_must_say_which_reissues(site, value, message, hint):
    result = run("crl", "issue", "--key", KEYS / "crl.key", "--seq", "1", "--revoke", value,
                 "--out", site / "x.crl", "--json")
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_USAGE"
    assert error["message"] == message
    if hint is not None:
        assert error["hint"] == hint
    assert not (site / "x.crl").exists()


def test_a_remembered_crl_stays_in_its_own_state(site, monkeypatch):
    assert run("crl", "issue", "--key", KEYS / "crl.key", "--seq", "1", "--revoke",
               "acme-vision@all", "--out", site / "r.crl").exit_code == 0
    lic, root = site / "acme-3.lic", site / "root.json"
    first = run("license", "verify", lic, "--trust", root, "--crl", site / "r.crl", "--json")
    assert first.exit_code == 1 and json.loads(first.stdout)["error"]["code"] == "E_REVOKED"
    # the same state, no --crl: still revoked (deleting the CRL file does not un-revoke)
    again = run("license", "verify", lic, "--trust", root, "--json")
    assert again.exit_code == 1 and json.loads(again.stdout)["error"]["code"] == "E_REVOKED"
    # another OEMKIT_STATE (a demo's, a test's) has no such memory
    monkeypatch.setenv("OEMKIT_STATE", str(site / "other-state.json"))
    other = run("license", "verify", lic, "--trust", root, "--json")
    assert other.exit_code == 0 and json.loads(other.stdout)["verdict"] == "valid"
