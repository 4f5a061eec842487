"""Release keys that never leave hardware (issue 20): PKCS#11 tokens through SoftHSM2.

The tokens are real SoftHSM2 tokens, initialised here in a temporary folder
(``SOFTHSM2_CONF``); the module is loaded once per process, so one session-wide folder
holds every token these tests use. Signatures are checked with the public key alone
(cryptography over the DSSE PAE, and sigstore-js for the bundle), not only by oemkit.

Skipped as a whole only where Debian's ``softhsm2`` is not installed: ``.ci/run`` installs
it, and the rest of the suite does not need it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers import EXAMPLE, read_members
from oemkit.cli import app

SOFTHSM_UTIL = shutil.which("softhsm2-util")
MODULES = [m for m in ("/usr/lib/softhsm/libsofthsm2.so",
                       "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                       "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so") if os.path.exists(m)]
pytestmark = pytest.mark.skipif(
    SOFTHSM_UTIL is None or not MODULES,
    reason="Debian's softhsm2 is not installed (.ci/run installs it)")
PINS = {"release-a": "1111", "release-b": "2222", "spare": "3333"}
INTEROP = Path(__file__).parent / "interop"


@pytest.fixture(scope="session")
def hsm(tmp_path_factory) -> dict[str, Any]:
    """Three initialised tokens, a PIN file for each, and the module path."""
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pins = {}
    for label, pin in PINS.items():
        subprocess.run([SOFTHSM_UTIL, "--init-token", "--free", "--label", label, "--pin", pin,
                        "--so-pin", "99999999"], check=True, capture_output=True)
        pins[label] = base / f"{label}.pin"
        pins[label].write_text(pin + "\n")
    (base / "wrong.pin").write_text("0000\n")
    yield {"module": MODULES[0], "pins": pins, "wrong": base / "wrong.pin", "dir": base}
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(app, list(args), env=env)
    return result


def ok_json(*args: str) -> dict[str, Any]:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def failure(*args: str, exit_code: int) -> dict[str, Any]:
    result = run(*args, "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)["error"]


def uri(token: str, label: str, hsm: dict[str, Any], *, pin: bool = True) -> str:
    text = f"pkcs11:token={token};object={label}"
    return text + (f"?pin-source=file:{hsm['pins'][token]}" if pin else "")


@pytest.fixture(scope="session")
def token_keys(hsm, tmp_path_factory) -> dict[str, Any]:
    """Keys generated inside the tokens by `oemkit keys generate --pkcs11`."""
    out = tmp_path_factory.mktemp("pubs")
    made = {}
    for token, label, usage, algorithm in (
            ("release-a", "root-a", "root", "ed25519"),
            ("release-b", "root-b", "root", "ecdsa-p256"),
            ("release-a", "bundle-a", "bundle", "ecdsa-p256"),
            ("release-b", "license-b", "license", "ed25519"),
            ("release-b", "crl-b", "crl", "ecdsa-p256")):
        doc = ok_json("keys", "generate", "--pkcs11", f"pkcs11:token={token}", "--label", label,
                      "--usage", usage, "--algorithm", algorithm, "--out-dir", str(out),
                      "--pin-file", str(hsm["pins"][token]), "--pkcs11-module", hsm["module"])
        made[label] = doc
    return {"keys": made, "pubs": out}


# --------------------------------------------------------------------------- independent checks


def _public(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(pem)


def _pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def verifies(pub_pem: bytes, message: bytes, sig: bytes) -> bool:
    """The signature checked with cryptography and the public key alone."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    public = _public(pub_pem)
    try:
        if isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(sig, message)
        else:
            public.verify(sig, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def armored_envelope(data: bytes) -> dict[str, Any]:
    lines = data.decode("ascii").strip().splitlines()
    return json.loads(base64.b64decode("".join(lines[1:-1])))


# --------------------------------------------------------------------------- generate


def test_generate_keeps_the_private_key_in_the_token(hsm, token_keys):
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    doc = token_keys["keys"]["root-a"]
    assert doc["uri"] == "pkcs11:token=release-a;object=root-a"
    assert doc["usage"] == "root" and doc["extractable"] is False and doc["sensitive"] is True
    pub_file = token_keys["pubs"] / "root-a.pub"
    assert Path(doc["public"]) == pub_file and pub_file.read_text() == doc["public_pem"]
    from oemkit.crypto.keys import key_id, load_public_file

    assert doc["keyid"] == key_id(load_public_file(pub_file))
    # the token's own word on the private half, read with python-pkcs11 directly
    token = pkcs11.lib(hsm["module"]).get_token(token_label="release-a")
    with token.open(user_pin=PINS["release-a"]) as session:
        private = session.get_key(ObjectClass.PRIVATE_KEY, label="bundle-a")
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.SENSITIVE] is True
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            private[Attribute.VALUE]  # reading the secret must be refused


def test_generate_prints_the_key_id_and_the_public_key(hsm, token_keys, tmp_path):
    result = run("keys", "generate", "--pkcs11", "pkcs11:token=spare", "--label", "printed",
                 "--usage", "bundle", "--out-dir", str(tmp_path), "--pin-file",
                 str(hsm["pins"]["spare"]), "--pkcs11-module", hsm["module"])
    assert result.exit_code == 0, result.output
    pem = (tmp_path / "printed.pub").read_text()
    from oemkit.crypto.keys import key_id, load_public

    assert result.stdout == key_id(load_public(pem, "printed.pub")) + "\n"
    assert pem.strip() in result.stderr


def test_export_pub_reads_the_public_half_back(hsm, token_keys):
    result = run("keys", "export-pub", uri("release-b", "root-b", hsm),
                 "--pkcs11-module", hsm["module"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (token_keys["pubs"] / "root-b.pub").read_text()
    assert token_keys["keys"]["root-b"]["keyid"] in result.stderr
    # securesystemslib's HSMSigner URI names the same key (its id is CKA_ID)
    # (root-b was the first key made on release-b: CKA_ID 1)
    doc = ok_json("keys", "export-pub", "hsm:1?label=release-b", "--pkcs11-module",
                  hsm["module"], "--pin-file", str(hsm["pins"]["release-b"]))
    assert doc["label"] == "root-b" and doc["keyid"] == token_keys["keys"]["root-b"]["keyid"]


def test_generate_refuses_an_existing_label(hsm, token_keys, tmp_path):
    error = failure("keys", "generate", "--pkcs11", "pkcs11:token=release-a", "--label", "root-a",
                    "--usage", "root", "--out-dir", str(tmp_path), "--pin-file",
                    str(hsm["pins"]["release-a"]), "--pkcs11-module", hsm["module"],
                    exit_code=3)
    assert error["code"] == "E_KEY_EXISTS"
    assert error["message"] == "token 'release-a' already has an object labelled 'root-a'"
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- the ceremony


@pytest.fixture(scope="session")
def ceremony(hsm, token_keys, tmp_path_factory) -> dict[str, Any]:
    """A trust root with root keys on two tokens and threshold 2, every change signed by
    both; then the bundle, license and crl keys (also in the tokens) added."""
    work = tmp_path_factory.mktemp("ceremony")
    root = work / "trust-root.json"
    mod = ("--pkcs11-module", hsm["module"])
    both = ("--sign-with", uri("release-a", "root-a", hsm),
            "--sign-with", uri("release-b", "root-b", hsm))
    ok_json("trust", "init", "--root-key", uri("release-a", "root-a", hsm),
            "--root-key", uri("release-b", "root-b", hsm), "--threshold", "2",
            "--out", str(root), *mod)
    for label, usage in (("bundle-a", "bundle"), ("license-b", "license"), ("crl-b", "crl")):
        ok_json("trust", "add-key", str(root), "--pub", str(token_keys["pubs"] / f"{label}.pub"),
                "--usage", usage, *both, *mod)
    return {"root": root, "work": work, "mod": mod}


def test_two_token_trust_root_with_threshold_two(hsm, token_keys, ceremony):
    shown = ok_json("trust", "show", str(ceremony["root"]))["trust_root"]
    assert shown["version"] == 4 and shown["thresholds"]["root"] == 2
    ids = {k["keyid"]: k for k in shown["keys"]}
    for label in ("root-a", "root-b", "bundle-a", "license-b", "crl-b"):
        assert token_keys["keys"][label]["keyid"] in ids
    assert {k["name"] for k in shown["keys"] if "root" in k["usage"]} == {"root-a", "root-b"}
    # each of the two signatures verifies under one of the two root public keys alone
    doc = json.loads(ceremony["root"].read_bytes())
    message = _pae(doc["payloadType"], base64.b64decode(doc["payload"]))
    pubs = [(token_keys["pubs"] / f"{n}.pub").read_bytes() for n in ("root-a", "root-b")]
    sigs = [base64.b64decode(s["sig"]) for s in doc["signatures"]]
    assert len(sigs) == 2
    assert all(any(verifies(p, message, s) for p in pubs) for s in sigs)
    assert verifies(pubs[0], message, sigs[0]) != verifies(pubs[0], message, sigs[1])


def test_one_token_alone_cannot_change_the_root(hsm, token_keys, ceremony, tmp_path):
    error = failure("trust", "set-threshold", str(ceremony["root"]), "bundle", "1",
                    "--sign-with", uri("release-a", "root-a", hsm), "--out",
                    str(tmp_path / "next.json"), *ceremony["mod"], exit_code=3)
    assert error["code"] == "E_TRUST_THRESHOLD"
    assert error["message"] == ("trust root v5 (v5) has 1 valid signature(s) from v4's root "
                                "keys, needs 2")
    assert not (tmp_path / "next.json").exists()


def test_a_change_signed_by_each_token_on_its_own_machine(hsm, token_keys, ceremony, tmp_path):
    """The two officers are not in one room: a proposal goes to each, each signs the copy
    handed to them with their own token (and nothing else), the copies are merged."""
    import shutil

    proposal = tmp_path / "v5.proposal.json"
    ok_json("trust", "set-threshold", str(ceremony["root"]), "bundle", "1", "--propose",
            "--out", str(proposal))
    copies = []
    for token, label in (("release-a", "root-a"), ("release-b", "root-b")):
        copy = tmp_path / f"{label}.json"
        shutil.copyfile(proposal, copy)
        signed = ok_json("trust", "sign", str(copy), "--current", str(ceremony["root"]),
                         "--key", uri(token, label, hsm), *ceremony["mod"])
        assert signed["signed"] == [token_keys["keys"][label]["keyid"]]
        assert signed["proposal"]["complete"] is False
        copies.append(str(copy))
    final = tmp_path / "trust-root-v5.json"
    merged = ok_json("trust", "merge", *copies, "--current", str(ceremony["root"]), "--out",
                     str(final))
    assert merged["proposal"]["complete"] is True
    assert merged["proposal"]["chain"]["signed"] == ["root-a", "root-b"]
    shown = ok_json("trust", "show", str(final))["trust_root"]
    assert shown["version"] == 5
    doc = json.loads(final.read_bytes())
    message = _pae(doc["payloadType"], base64.b64decode(doc["payload"]))
    pubs = [(token_keys["pubs"] / f"{n}.pub").read_bytes() for n in ("root-a", "root-b")]
    sigs = [base64.b64decode(s["sig"]) for s in doc["signatures"]]
    assert sorted(any(verifies(p, message, s) for s in sigs) for p in pubs) == [True, True]


@pytest.fixture(scope="session")
def token_signed_bundle(hsm, ceremony) -> Path:
    from oemkit.release.bundle import build_bundle

    bundle = build_bundle(EXAMPLE / "bundle.yaml", ceremony["work"] / "dist").path
    ok_json("sign", str(bundle), "--key", uri("release-a", "bundle-a", hsm), "--trust",
            str(ceremony["root"]), *ceremony["mod"])
    return bundle


def test_bundle_signed_in_the_token_verifies(hsm, token_keys, ceremony, token_signed_bundle):
    report = ok_json("verify", str(token_signed_bundle), "--trust", str(ceremony["root"]))
    assert report["ok"] is True
    keyid = token_keys["keys"]["bundle-a"]["keyid"]
    sig = json.loads(dict(read_members(token_signed_bundle))[
        f"signatures/{keyid}.sigstore.json"])["dsseEnvelope"]
    message = _pae(sig["payloadType"], base64.b64decode(sig["payload"]))
    assert verifies((token_keys["pubs"] / "bundle-a.pub").read_bytes(), message,
                    base64.b64decode(sig["signatures"][0]["sig"]))


def _node_ready() -> bool:
    return shutil.which("node") is not None and (INTEROP / "node_modules" / "@sigstore").is_dir()


# Not a hidden feature gap: sigstore-js is an outside tool (tests/test_interop.py's rule).
@pytest.mark.skipif(not _node_ready(), reason="Node.js or tests/interop/node_modules missing")
def test_sigstore_js_verifies_the_token_signature(token_keys, token_signed_bundle, tmp_path):
    keyid = token_keys["keys"]["bundle-a"]["keyid"]
    (tmp_path / "sig.json").write_bytes(dict(read_members(token_signed_bundle))[
        f"signatures/{keyid}.sigstore.json"])
    done = subprocess.run(["node", str(INTEROP / "sigstore-verify.js"), str(tmp_path / "sig.json"),
                           str(token_keys["pubs"] / "bundle-a.pub")], capture_output=True,
                          text=True)
    assert done.returncode == 0 and "VERIFIED" in done.stdout, done.stdout + done.stderr


def test_license_and_crl_signed_in_the_token(hsm, token_keys, ceremony, token_signed_bundle):
    work = ceremony["work"]
    lic, crl = work / "acme.lic", work / "revocations.crl"
    ok_json("license", "issue", "--key", uri("release-b", "license-b", hsm), "--customer",
            "acme", "--customer-name", "ACME", "--product", "vision", "--expires", "2099-01-01",
            "--out", str(lic), *ceremony["mod"])
    ok_json("crl", "issue", "--key", uri("release-b", "crl-b", hsm), "--seq", "1", "--revoke",
            "someone-else@all", "--out", str(crl), *ceremony["mod"])
    state = work / "state.json"
    verdict = ok_json("license", "verify", str(lic), "--trust", str(ceremony["root"]),
                      "--crl", str(crl), "--state", str(state))
    assert verdict["verdict"] == "valid" and verdict["crl_seq"] == 1, verdict
    info = ok_json("license", "inspect", str(lic), "--trust", str(ceremony["root"]))
    assert info["claims"]["issuer"] == "license-b"
    assert info["signer"] == token_keys["keys"]["license-b"]["keyid"]
    for path, label in ((lic, "license-b"), (crl, "crl-b")):
        env = armored_envelope(path.read_bytes())
        message = _pae(env["payloadType"], base64.b64decode(env["payload"]))
        assert verifies((token_keys["pubs"] / f"{label}.pub").read_bytes(), message,
                        base64.b64decode(env["signatures"][0]["sig"]))


# --------------------------------------------------------------------------- failures


def test_wrong_pin_is_tried_once_and_named(hsm, token_keys, signed_bundle):
    import pkcs11

    error = failure("sign", str(signed_bundle), "--key", uri("spare", "x", hsm, pin=False),
                    "--pin-file", str(hsm["wrong"]), "--pkcs11-module", hsm["module"],
                    exit_code=3)
    assert error["code"] == "E_PKCS11_PIN"
    assert error["message"] == "wrong PIN for token 'spare'"
    assert "tried it once" in error["hint"]
    flags = pkcs11.lib(hsm["module"]).get_token(token_label="spare").flags
    assert flags & pkcs11.TokenFlag.USER_PIN_COUNT_LOW
    assert not flags & (pkcs11.TokenFlag.USER_PIN_FINAL_TRY | pkcs11.TokenFlag.USER_PIN_LOCKED)
    # the right PIN still works (and resets the counter)
    error = failure("sign", str(signed_bundle), "--key", uri("spare", "x", hsm),
                    "--pkcs11-module", hsm["module"], exit_code=3)
    assert error["code"] == "E_PKCS11_OBJECT"
    assert error["message"].startswith("no private key matches token 'spare', object 'x' "
                                       "(keys there: ")
    flags = pkcs11.lib(hsm["module"]).get_token(token_label="spare").flags
    assert not flags & pkcs11.TokenFlag.USER_PIN_COUNT_LOW


def test_missing_token_names_the_tokens_present(hsm, token_keys, signed_bundle):
    error = failure("sign", str(signed_bundle), "--key", "pkcs11:token=absent;object=bundle-a",
                    "--pin-file", str(hsm["wrong"]), "--pkcs11-module", hsm["module"],
                    exit_code=4)
    assert error["code"] == "E_PKCS11_TOKEN"
    assert error["message"].startswith(
        f"no token matches token 'absent', object 'bundle-a' in {hsm['module']} (tokens present: ")
    assert "'release-a'" in error["message"] and "insert the token" in error["hint"]


def test_missing_object_lists_the_keys_there(hsm, token_keys, signed_bundle):
    error = failure("sign", str(signed_bundle), "--key", uri("release-a", "bundle-z", hsm),
                    "--pkcs11-module", hsm["module"], exit_code=3)
    assert error["code"] == "E_PKCS11_OBJECT"
    assert error["message"] == ("no private key matches token 'release-a', object 'bundle-z' "
                                "(keys there: bundle-a, root-a)")


def test_no_module_anywhere(hsm, signed_bundle, monkeypatch):
    monkeypatch.delenv("OEMKIT_PKCS11_MODULE", raising=False)
    error = failure("sign", str(signed_bundle), "--key", uri("release-a", "bundle-a", hsm),
                    exit_code=2)
    assert error["code"] == "E_PKCS11_NO_MODULE"
    assert error["message"] == "no PKCS#11 module for token 'release-a', object 'bundle-a'"
    assert "--pkcs11-module" in error["hint"]


def test_module_from_the_environment(hsm, token_keys, monkeypatch):
    monkeypatch.setenv("OEMKIT_PKCS11_MODULE", hsm["module"])
    monkeypatch.setenv("OEMKIT_PKCS11_PIN", PINS["release-a"])
    doc = ok_json("keys", "export-pub", "pkcs11:token=release-a;object=bundle-a")
    assert doc["keyid"] == token_keys["keys"]["bundle-a"]["keyid"]


def test_a_key_oemkit_does_not_sign_with(hsm, signed_bundle):
    import pkcs11
    from pkcs11 import Attribute, KeyType

    token = pkcs11.lib(hsm["module"]).get_token(token_label="spare")
    with token.open(user_pin=PINS["spare"], rw=True) as session:
        session.generate_keypair(KeyType.RSA, 2048, label="rsa-key", store=True,
                                 public_template={Attribute.LABEL: "rsa-key"},
                                 private_template={Attribute.LABEL: "rsa-key"})
    error = failure("sign", str(signed_bundle), "--key", uri("spare", "rsa-key", hsm),
                    "--pkcs11-module", hsm["module"], exit_code=3)
    assert error["code"] == "E_KEY_ALGORITHM"
    assert error["message"] == ("pkcs11:token=spare;object=rsa-key is a RSA key; oemkit signs "
                                "with Ed25519 or ECDSA P-256")


def test_a_token_key_of_another_usage_is_refused(hsm, token_keys, signed_bundle):
    error = failure("sign", str(signed_bundle), "--key", uri("release-b", "license-b", hsm),
                    "--pkcs11-module", hsm["module"], exit_code=1)
    assert error["code"] == "E_KEY_USAGE"
    assert error["message"] == ("pkcs11:token=release-b;object=license-b is a license key; "
                                "oemkit sign signs with a bundle key")


def test_bad_uris_are_usage_errors(signed_bundle):
    error = failure("sign", str(signed_bundle), "--key", "pkcs11:token=a;objet=b", exit_code=2)
    assert error["code"] == "E_KEY_URI"
    assert error["message"] == ("'pkcs11:token=a;objet=b' is not a usable PKCS#11 URI: unknown "
                                "attribute 'objet'")
    error = failure("sign", str(signed_bundle), "--key", "gcpkms:projects/p/keys/k",
                    exit_code=2)
    assert error["code"] == "E_KEY_URI"
    assert error["message"] == ("'gcpkms:projects/p/keys/k' names a gcpkms key, which needs a "
                                "network service; oemkit signs offline")


# --------------------------------------------------------------------------- the PIN counter


class _FakeToken:
    """A token that counts login attempts and says how many tries are left."""

    def __init__(self, flags: int) -> None:
        self.label = "counted"
        self.flags = flags
        self.logins = 0

    def open(self, user_pin: str, rw: bool = False) -> Any:
        import pkcs11

        self.logins += 1
        raise pkcs11.exceptions.PinIncorrect()


def _fake(monkeypatch, flags: int) -> _FakeToken:
    from oemkit.crypto import pkcs11 as ours

    token = _FakeToken(flags)
    monkeypatch.setattr(ours, "find_token", lambda uri, access: token)
    return token


def test_two_keys_on_one_token_log_in_once_with_a_wrong_pin(monkeypatch, tmp_path, hsm):
    token = _fake(monkeypatch, 0)
    error = failure("trust", "init", "--root-key", "pkcs11:token=counted;object=a",
                    "--root-key", "pkcs11:token=counted;object=b", "--out",
                    str(tmp_path / "root.json"), "--pin-file", str(hsm["wrong"]),
                    "--pkcs11-module", hsm["module"], exit_code=3)
    assert error["code"] == "E_PKCS11_PIN" and token.logins == 1
    assert not (tmp_path / "root.json").exists()


def test_the_last_try_is_not_spent_without_a_person(monkeypatch, tmp_path, hsm):
    import pkcs11

    token = _fake(monkeypatch, int(pkcs11.TokenFlag.USER_PIN_FINAL_TRY))
    error = failure("trust", "init", "--root-key", "pkcs11:token=counted;object=a", "--out",
                    str(tmp_path / "root.json"), "--pin-file", str(hsm["wrong"]),
                    "--pkcs11-module", hsm["module"], exit_code=4)
    assert error["code"] == "E_PKCS11_PIN_LOCKED"
    assert error["message"] == ("token 'counted' has one PIN try left; oemkit will not spend it "
                                "with a PIN it did not see typed")
    assert token.logins == 0


def test_rfc7512_parsing():
    from oemkit.crypto.pkcs11 import from_hsm_uri, parse_uri

    parsed = parse_uri("pkcs11:token=My%20Token;object=root-1;id=%01%02"
                       "?pin-source=file:/run/pin&module-path=/usr/lib/x.so")
    assert parsed.token == "My Token" and parsed.object == "root-1"
    assert parsed.id == b"\x01\x02"
    assert parsed.query == {"pin-source": "file:/run/pin", "module-path": "/usr/lib/x.so"}
    assert from_hsm_uri("hsm:2?label=release-a") == "pkcs11:id=%02;token=release-a"
    assert from_hsm_uri("hsm:") == "pkcs11:id=%02"
    for bad, why in (("pkcs11:token=a;token=b", "'token' is given twice"),
                     ("pkcs11:token", "'token' has no '='"),
                     ("pkcs11:object=a?pin-value=1&pin-source=f",
                      "it gives both pin-source and pin-value")):
        from oemkit.errors import UsageError

        with pytest.raises(UsageError) as caught:
            parse_uri(bad)
        assert caught.value.code == "E_KEY_URI" and caught.value.message.endswith(why)


def test_a_person_at_the_prompt_may_spend_the_last_try(capsys):
    from oemkit.crypto.pkcs11 import TokenAccess, parse_uri

    asked = []
    access = TokenAccess(prompt=lambda text: asked.append(text) or "typed")
    uri = parse_uri("pkcs11:token=t;object=k")
    assert access.pin_for(uri, "t", final_try=True) == "typed"
    assert asked == ["PIN for token 't': "]
    assert "token 't' has ONE PIN try left; a wrong PIN locks it." in capsys.readouterr().err
    assert access.pin_for(uri, "t", final_try=True) == "typed" and len(asked) == 1  # once


def test_keys_list_shows_each_key_and_its_role_in_the_trust_root(hsm, token_keys, ceremony):
    doc = ok_json("keys", "list", "--pkcs11", "pkcs11:token=release-b", "--trust",
                  str(ceremony["root"]), "--pin-file", str(hsm["pins"]["release-b"]),
                  *ceremony["mod"])
    assert doc["token"] == "release-b"
    rows = {r["label"]: r for r in doc["keys"]}
    for label, usage, algorithm in (("root-b", "root", "ecdsa-p256"),
                                    ("license-b", "license", "ed25519"),
                                    ("crl-b", "crl", "ecdsa-p256")):
        row = rows[label]
        assert row["keyid"] == token_keys["keys"][label]["keyid"]
        assert (row["algorithm"], row["usage"]) == (algorithm, usage)
        assert (row["extractable"], row["sensitive"]) == (False, True)
        assert row["uri"] == f"pkcs11:token=release-b;object={label}"
        assert row["trust_root"] == {"usage": [usage], "status": "active", "name": label}
        assert row["problem"] is None


def test_keys_list_names_a_key_oemkit_cannot_use(hsm):
    import pkcs11
    from pkcs11 import Attribute, KeyType

    token = pkcs11.lib(hsm["module"]).get_token(token_label="spare")
    with token.open(user_pin=PINS["spare"], rw=True) as session:
        session.generate_keypair(KeyType.RSA, 2048, label="rsa-listed", store=True,
                                 public_template={Attribute.LABEL: "rsa-listed"},
                                 private_template={Attribute.LABEL: "rsa-listed"})
    result = run("keys", "list", "--pkcs11", "pkcs11:token=spare", "--pin-file",
                 str(hsm["pins"]["spare"]), "--pkcs11-module", hsm["module"], "--json")
    assert result.exit_code == 0, result.output
    rows = {r["label"]: r for r in json.loads(result.stdout)["keys"]}
    assert rows["rsa-listed"]["problem"] == ("pkcs11:token=spare;object=rsa-listed is a RSA "
                                             "key; oemkit signs with Ed25519 or ECDSA P-256")
    assert "keyid" not in rows["rsa-listed"]
    assert "rsa-listed: pkcs11:token=spare;object=rsa-listed is a RSA key" in " ".join(
        result.stderr.split())


def test_keys_list_needs_a_pkcs11_uri_and_the_right_pin(hsm):
    error = failure("keys", "list", "--pkcs11", "keys/root.key", exit_code=2)
    assert (error["code"], error["message"]) == (
        "E_KEY_URI", "--pkcs11 'keys/root.key' is not a PKCS#11 URI")
    error = failure("keys", "list", "--pkcs11", "pkcs11:token=release-a", "--pin-file",
                    str(hsm["wrong"]), "--pkcs11-module", hsm["module"], exit_code=3)
    assert (error["code"], error["message"]) == ("E_PKCS11_PIN",
                                                 "wrong PIN for token 'release-a'")


def test_keys_list_says_unknown_when_the_token_does_not_report_the_flags(monkeypatch):
    """A token that does not report CKA_EXTRACTABLE/CKA_SENSITIVE is shown as unknown,
    never as a key kept inside (no token needed: the lookup is replaced)."""
    from oemkit.crypto import pkcs11
    from oemkit.crypto.keys import generate

    public = generate("ed25519").public_key()
    facts = pkcs11.KeyFacts(uri="pkcs11:token=t;object=k", token="t", label="k",
                            public=public, usage="bundle", extractable=None, sensitive=None)
    monkeypatch.setattr(pkcs11, "list_keys", lambda uri, access: (
        "t", [pkcs11.TokenEntry("k", b"\x01", facts, None)]))
    result = run("keys", "list", "--pkcs11", "pkcs11:token=t")
    assert result.exit_code == 0, result.output
    assert "unknown (the token does not say)" in " ".join(result.stderr.split())
    assert " yes " not in result.stderr
