"""`oemkit sign --trust ROOT` checks the signing keys first (issue 21 item 5): a key the
root lists without usage bundle is refused (verify would reject its signature), one it does
not list is warned about; without --trust, a key whose name says root is warned about."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from helpers import KEYS, PASSPHRASE
from oemkit.cli import app
from oemkit.crypto.keys import load_private_file
from oemkit.release.trust import init_root


@pytest.fixture
def env():
    return {"OEMKIT_KEY_PASSPHRASE": PASSPHRASE.decode()}


def run(*args, env):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_a_root_key_listed_in_the_trust_root_is_refused(signed_bundle, tmp_path, env):
    before = signed_bundle.read_bytes()
    root = tmp_path / "root.json"
    root.write_bytes(init_root([load_private_file(KEYS / "root.key", PASSPHRASE)],
                               names=["root"]))
    result = run("sign", signed_bundle, "--key", KEYS / "root.key", "--trust", root, "--json",
                 env=env)
    assert result.exit_code == 1, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_KEY_USAGE"
    assert error["message"] == (f"{KEYS / 'root.key'} is a root key in {root}, not a bundle key: "
                                "verify would reject this signature")
    assert error["hint"] == "sign with a bundle key (trust add-key --usage bundle)"
    assert signed_bundle.read_bytes() == before


def test_a_key_the_trust_root_does_not_list_is_warned_about(signed_bundle, tmp_path, env):
    root = tmp_path / "root.json"
    root.write_bytes(init_root([load_private_file(KEYS / "root.key", PASSPHRASE)],
                               names=["root"]))
    result = run("sign", signed_bundle, "--key", KEYS / "license.key", "--trust", root, env=env)
    assert result.exit_code == 0, result.output
    assert f"{KEYS / 'license.key'} (key " in result.stderr
    assert (f"is not in {root}: hosts that pin it will not accept this signature until the key "
            "is added with usage bundle") in " ".join(result.stderr.split())


def test_a_bundle_key_in_the_trust_root_signs_quietly(signed_bundle, trust_file, env, keys):
    result = run("sign", signed_bundle, "--key", KEYS / "bundle.key", "--trust", trust_file,
                 env=env)
    assert result.exit_code == 0, result.output
    assert "WARNING" not in result.stderr


def test_without_trust_a_key_named_root_is_warned_about(signed_bundle, env):
    result = run("sign", signed_bundle, "--key", KEYS / "root.key", env=env)
    assert result.exit_code == 0, result.output
    assert "root.key's name says root: root keys sign trust roots" in \
        " ".join(result.stderr.split())


def test_export_pub_of_a_key_file(env):
    result = run("keys", "export-pub", KEYS / "bundle.key", env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == (KEYS / "bundle.pub").read_text()
    assert f"from the key file {KEYS / 'bundle.key'}" in " ".join(result.stderr.split())
