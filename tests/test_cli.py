"""The command line as users call it: exit codes, --json documents, messages, file modes."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import KEYS, PASSPHRASE
from oemkit.cli import app

runner = CliRunner()
ENV = {"OEMKIT_KEY_PASSPHRASE": PASSPHRASE.decode()}


def run(*args: str, env: dict[str, str] | None = None):
    result = runner.invoke(app, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    return result


HEAVY = ("onnxruntime", "cyclonedx", "in_toto", "jsonschema", "onnx", "numpy",
         "securesystemslib")


def test_help_imports_no_heavy_dependency():
    code = (
        "import sys\nfrom oemkit.cli import main\nsys.argv = ['oemkit', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_verify_without_licenses_imports_only_what_it_needs(signed_bundle, trust_file):
    """A field engineer's most common command starts in a fresh process every time: no
    license machinery for a bundle without licenses, and nothing heavy."""
    code = (
        "import sys\nfrom oemkit.cli import main\n"
        f"sys.argv = ['oemkit', 'verify', {str(signed_bundle)!r}, '--trust', "
        f"{str(trust_file)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc\n"
        "print(sorted({m for m in sys.modules if m.split('.')[0] in "
        f"{HEAVY!r} or m == 'oemkit.host.license_state'}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    # jsonschema_rs is the SBOM check's validator: needed; it is not the jsonschema package
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("command", [
    ["init"], ["keys", "generate"], ["trust", "init"], ["trust", "add-key"],
    ["trust", "retire-key"], ["trust", "set-threshold"], ["trust", "revoke-key"],
    ["trust", "show"], ["build"], ["sign"],
    ["verify"], ["inspect"], ["unpack"], ["demo"],
])
def test_every_command_help_shows_an_example(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])  # the demo serves the bundle on loopback
def test_demo_builds_signs_verifies_and_leaves_bundle_and_root(tmp_path):
    result = run("demo", "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["report"]["verdict"] == "verified"
    assert (tmp_path / "out" / "example-0.2.0.oemb").is_file()
    assert (tmp_path / "out" / "trust-root.json").is_file()
    assert "every check passed" in result.stderr
    again = run("verify", tmp_path / "out" / "example-0.2.0.oemb", "--trust",
                tmp_path / "out" / "trust-root.json")
    assert again.exit_code == 0 and "VERIFIED" in again.stderr


def test_verify_json_is_one_document_on_stdout(signed_bundle, trust_file):
    result = run("verify", signed_bundle, "--trust", trust_file, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["name"] == "example"
    assert {c["name"] for c in doc["checks"]} >= {"signatures", "payload", "sbom"}
    assert all(c["status"] == "pass" for c in doc["checks"])


def test_verify_missing_bundle_is_input_error(trust_file, tmp_path):
    result = run("verify", tmp_path / "nope.oemb", "--trust", trust_file)
    assert result.exit_code == 3
    assert "E_NOT_FOUND" in result.stderr and "nope.oemb does not exist" in result.stderr


def test_usage_error_exit_code_2(signed_bundle):
    result = run("verify", signed_bundle)  # --trust missing
    assert result.exit_code == 2


def test_inspect_is_marked_unverified_without_trust(signed_bundle, trust_file):
    result = run("inspect", signed_bundle, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["verified"] is False and "UNVERIFIED" in result.stderr
    assert doc["manifest"]["name"] == "example"
    result = run("inspect", signed_bundle, "--trust", trust_file, "--json")
    assert json.loads(result.stdout)["verified"] is True and "VERIFIED" in result.stderr


# --------------------------------------------------------------------------- keys


def test_keys_generate_writes_encrypted_key_0600_and_pub_0644(tmp_path):
    result = run("keys", "generate", "rel", "--usage", "bundle", "--out-dir", tmp_path, env=ENV)
    assert result.exit_code == 0, result.output
    key, pub = tmp_path / "rel.key", tmp_path / "rel.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    from oemkit.crypto.keys import load_private_file

    info = load_private_file(key, PASSPHRASE)
    assert result.stdout.strip() == info.keyid


def test_keys_generate_ecdsa(tmp_path):
    result = run("keys", "generate", "ec", "--usage", "license", "--algorithm", "ecdsa-p256",
                 "--out-dir", tmp_path, "--json", env=ENV)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["algorithm"] == "ecdsa-p256"


def test_keys_generate_without_passphrase_source_is_refused(tmp_path):
    result = run("keys", "generate", "x", "--usage", "bundle", "--out-dir", tmp_path,
                 env={"OEMKIT_KEY_PASSPHRASE": ""})
    assert result.exit_code == 3
    assert "E_KEY_PASSPHRASE_REQUIRED" in result.stderr
    assert not (tmp_path / "x.key").exists()


def test_keys_generate_no_passphrase_warns_loudly(tmp_path):
    result = run("keys", "generate", "x", "--usage", "bundle", "--out-dir", tmp_path,
                 "--no-passphrase")
    assert result.exit_code == 0
    assert "UNENCRYPTED" in result.stderr
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "x.key").read_bytes()


def test_keys_generate_refuses_to_overwrite(tmp_path):
    assert run("keys", "generate", "x", "--usage", "crl", "--out-dir", tmp_path,
               env=ENV).exit_code == 0
    result = run("keys", "generate", "x", "--usage", "crl", "--out-dir", tmp_path, env=ENV)
    assert result.exit_code == 3 and "E_KEY_EXISTS" in result.stderr


def test_keys_generate_bad_usage_is_usage_error(tmp_path):
    result = run("keys", "generate", "x", "--usage", "everything", "--out-dir", tmp_path,
                 env=ENV)
    assert result.exit_code == 2 and "unknown --usage 'everything'" in result.stderr


def test_wrong_passphrase_is_named(signed_bundle):
    result = run("sign", signed_bundle, "--key", KEYS / "bundle.key",
                 env={"OEMKIT_KEY_PASSPHRASE": "wrong"})
    assert result.exit_code == 3
    assert "E_KEY_PASSPHRASE" in result.stderr and "wrong passphrase" in result.stderr


def test_public_key_passed_as_signing_key(signed_bundle):
    result = run("sign", signed_bundle, "--key", KEYS / "bundle.pub", env=ENV)
    assert result.exit_code == 3 and "this is a public key" in result.stderr


# --------------------------------------------------------------------------- trust


def test_trust_lifecycle(tmp_path):
    root = tmp_path / "root.json"
    assert run("trust", "init", "--root-key", KEYS / "root.key", "--out", root,
               env=ENV).exit_code == 0
    result = run("trust", "add-key", root, "--pub", KEYS / "bundle.pub", "--usage", "bundle",
                 "--expires", "2030-01-01", "--sign-with", KEYS / "root.key", env=ENV)
    assert result.exit_code == 0, result.output
    shown = json.loads(run("trust", "show", root, "--json").stdout)["trust_root"]
    assert shown["version"] == 2
    bundle_key = next(k for k in shown["keys"] if k["usage"] == ["bundle"])
    assert bundle_key["expires"] == "2030-01-01T00:00:00Z"
    keyid = bundle_key["keyid"]
    assert run("trust", "retire-key", root, keyid[:12], "--sign-with", KEYS / "root.key",
               env=ENV).exit_code == 0
    shown = json.loads(run("trust", "show", root, "--json").stdout)["trust_root"]
    assert shown["version"] == 3
    assert [k["status"] for k in shown["keys"] if k["keyid"] == keyid] == ["retired"]
    assert run("trust", "revoke-key", root, keyid, "--sign-with", KEYS / "root.key",
               "--out", tmp_path / "v4.json", env=ENV).exit_code == 0
    shown = json.loads(run("trust", "show", tmp_path / "v4.json", "--json").stdout)["trust_root"]
    assert shown["version"] == 4
    assert [k["status"] for k in shown["keys"] if k["keyid"] == keyid] == ["compromised"]
    human = run("trust", "show", tmp_path / "v4.json")
    assert "compromised" in human.stderr and "Trust root v4" in human.stderr


def test_trust_change_signed_by_non_root_key_is_refused(tmp_path):
    root = tmp_path / "root.json"
    run("trust", "init", "--root-key", KEYS / "root.key", "--out", root, env=ENV)
    before = root.read_bytes()
    result = run("trust", "add-key", root, "--pub", KEYS / "bundle.pub", "--usage", "bundle",
                 "--sign-with", KEYS / "bundle.key", env=ENV)
    assert result.exit_code == 3
    assert "E_TRUST_THRESHOLD" in result.stderr and "--sign-with" in result.stderr
    assert root.read_bytes() == before


def test_trust_threshold_above_key_count_is_usage_error(tmp_path):
    result = run("trust", "init", "--root-key", KEYS / "root.key", "--threshold", "2",
                 "--out", tmp_path / "r.json", env=ENV)
    assert result.exit_code == 2 and "--threshold 2 is impossible" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_trust_add_existing_key_is_refused(tmp_path):
    root = tmp_path / "root.json"
    run("trust", "init", "--root-key", KEYS / "root.key", "--out", root, env=ENV)
    result = run("trust", "add-key", root, "--pub", KEYS / "root.pub", "--usage", "bundle",
                 "--sign-with", KEYS / "root.key", env=ENV)
    assert result.exit_code == 3 and "E_TRUST_KEY_EXISTS" in result.stderr


def test_tampered_pinned_trust_root_is_input_error(signed_bundle, trust_v2, tmp_path):
    doc = json.loads(trust_v2)
    import base64

    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["thresholds"]["bundle"] = 1
    payload["keys"][0]["name"] = "mallory"
    from oemkit._canonical import canonical_json

    doc["payload"] = base64.b64encode(canonical_json(payload)).decode()
    bad = tmp_path / "bad-root.json"
    bad.write_text(json.dumps(doc))
    result = run("verify", signed_bundle, "--trust", bad)
    assert result.exit_code == 3
    assert "E_TRUST_THRESHOLD" in result.stderr and "0 valid root signature" in result.stderr


# --------------------------------------------------------------------------- sign


def test_sign_is_idempotent_and_order_independent(signed_bundle, tmp_path, keys):
    import shutil

    before = signed_bundle.read_bytes()
    result = run("sign", signed_bundle, "--key", KEYS / "bundle.key", env=ENV)
    assert result.exit_code == 0 and "Already signed" in result.stderr
    assert signed_bundle.read_bytes() == before
    other = tmp_path / "other.oemb"
    shutil.copyfile(signed_bundle, other)
    run("sign", signed_bundle, "--key", KEYS / "license.key", "--key", KEYS / "crl.key", env=ENV)
    run("sign", other, "--key", KEYS / "crl.key", env=ENV)
    run("sign", other, "--key", KEYS / "license.key", env=ENV)
    assert signed_bundle.read_bytes() == other.read_bytes()
    names = [n for n, _ in __import__("helpers").read_members(other)]
    assert names[-3:] == sorted(names[-3:]) and all(n.startswith("signatures/")
                                                    for n in names[-3:])


def test_sign_json_names_the_in_toto_links_it_wrote(signed_bundle, keys):
    from oemkit.release.links import link_member

    result = run("sign", signed_bundle, "--key", KEYS / "license.key", "--json", env=ENV)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    name = link_member(keys["license"].public)
    assert doc["added"] == [keys["license"].keyid] and doc["links"] == [name]
    assert f"Wrote the in-toto build link {name}" in result.stderr
    again = json.loads(run("sign", signed_bundle, "--key", KEYS / "license.key", "--json",
                           env=ENV).stdout)
    assert again["added"] == [] and again["links"] == []  # nothing new: nothing written


def test_bundle_threshold_two_needs_two_signatures(signed_bundle, tmp_path):
    root = tmp_path / "root.json"
    run("trust", "init", "--root-key", KEYS / "root.key", "--out", root, env=ENV)
    for name in ("bundle", "license"):
        assert run("trust", "add-key", root, "--pub", KEYS / f"{name}.pub", "--usage", "bundle",
                   "--sign-with", KEYS / "root.key", env=ENV).exit_code == 0
    impossible = run("trust", "set-threshold", root, "bundle", "3", "--sign-with",
                     KEYS / "root.key", env=ENV)
    assert impossible.exit_code == 2 and "impossible with 2 active bundle key(s)" in (
        impossible.stderr)
    assert run("trust", "set-threshold", root, "bundle", "2", "--sign-with", KEYS / "root.key",
               env=ENV).exit_code == 0
    one = run("verify", signed_bundle, "--trust", root, "--json")
    assert one.exit_code == 1
    assert json.loads(one.stdout)["error"]["code"] == "E_SIGNATURE_THRESHOLD"
    run("sign", signed_bundle, "--key", KEYS / "license.key", env=ENV)
    assert run("verify", signed_bundle, "--trust", root).exit_code == 0


def test_init_then_build_then_verify_a_new_bundle(tmp_path, trust_file):
    assert run("init", "my-model", "--dir", tmp_path / "m").exit_code == 0
    built = run("build", tmp_path / "m", "--out", tmp_path / "dist", "--json")
    assert built.exit_code == 0, built.output
    bundle = Path(json.loads(built.stdout)["bundle"])
    assert bundle.name == "my-model-0.1.0.oemb"
    unsigned = run("verify", bundle, "--trust", trust_file, "--json")
    assert unsigned.exit_code == 1
    assert json.loads(unsigned.stdout)["error"]["code"] == "E_UNSIGNED"
    run("sign", bundle, "--key", KEYS / "bundle.key", env=ENV)
    assert run("verify", bundle, "--trust", trust_file).exit_code == 0
    again = run("init", "my-model", "--dir", tmp_path / "m")
    assert again.exit_code == 3 and "E_DEST_NOT_EMPTY" in again.stderr


def test_revocation_is_final_and_retiring_twice_is_refused(tmp_path):
    root = tmp_path / "root.json"
    run("trust", "init", "--root-key", KEYS / "root.key", "--out", root, env=ENV)
    run("trust", "add-key", root, "--pub", KEYS / "bundle.pub", "--usage", "bundle",
        "--sign-with", KEYS / "root.key", env=ENV)
    keyid = run("keys", "generate", "k", "--usage", "bundle", "--out-dir", tmp_path,
                "--no-passphrase").stdout.strip()
    run("trust", "add-key", root, "--pub", tmp_path / "k.pub", "--usage", "bundle",
        "--sign-with", KEYS / "root.key", env=ENV)
    assert run("trust", "retire-key", root, keyid, "--sign-with", KEYS / "root.key",
               env=ENV).exit_code == 0
    twice = run("trust", "retire-key", root, keyid, "--sign-with", KEYS / "root.key", env=ENV)
    assert twice.exit_code == 3 and "is already retired" in twice.stderr
    assert run("trust", "revoke-key", root, keyid, "--sign-with", KEYS / "root.key",
               env=ENV).exit_code == 0
    before = root.read_bytes()
    undo = run("trust", "retire-key", root, keyid, "--sign-with", KEYS / "root.key", env=ENV)
    assert undo.exit_code == 3
    assert "E_TRUST_KEY_STATUS" in undo.stderr and "that status is final" in undo.stderr
    assert root.read_bytes() == before


def test_error_messages_keep_square_brackets(tmp_path):
    spec = tmp_path / "s" / "bundle.yaml"
    run("init", "s", "--dir", tmp_path / "s")
    spec.write_text(spec.read_text().replace('name: "s"', 'name: "Bad Name"'))
    result = run("build", spec, "--out", tmp_path / "o")
    assert result.exit_code == 3
    assert "^[a-z0-9][a-z0-9._-]{0,63}$" in result.stderr


def test_sbom_and_provenance_commands(signed_bundle, trust_file, tmp_path):
    unverified = run("sbom", signed_bundle, "--json")
    assert unverified.exit_code == 0 and "UNVERIFIED" in unverified.stderr
    doc = json.loads(unverified.stdout)
    assert doc["verified"] is False
    assert {"type": "machine-learning-model", "name": "model/model.onnx"}.items() <= next(
        r for r in doc["components"] if r["type"] == "machine-learning-model").items()
    verified = run("sbom", signed_bundle, "--trust", trust_file, "--format", "json")
    assert verified.exit_code == 0 and "UNVERIFIED" not in verified.stderr
    assert json.loads(verified.stdout)["bomFormat"] == "CycloneDX"
    table = run("sbom", signed_bundle, "--trust", trust_file)
    assert "model/model.onnx" in table.stderr and "onnxruntime" in table.stderr
    prov = run("provenance", signed_bundle, "--trust", trust_file, "--json")
    assert prov.exit_code == 0
    assert json.loads(prov.stdout)["statement"]["predicateType"] == (
        "https://slsa.dev/provenance/v1")


def test_sbom_with_trust_refuses_a_tampered_bundle(signed_bundle, trust_file):
    from oemkit._fs import scan_outer

    with open(signed_bundle, "rb") as handle:
        sbom = next(m for m in scan_outer(handle, max_members=9, max_member_size=lambda n: 1 << 30)
                    if m.name == "sbom.cdx.json")
    data = bytearray(signed_bundle.read_bytes())
    data[sbom.offset + 100] ^= 1
    signed_bundle.write_bytes(bytes(data))
    result = run("sbom", signed_bundle, "--trust", trust_file, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "E_MEMBER_DIGEST"


def test_sbom_diff_names_added_removed_and_changed(tmp_path, trust_file):
    import shutil

    from helpers import EXAMPLE

    for name in ("old", "new"):
        shutil.copytree(EXAMPLE, tmp_path / name)
    new = tmp_path / "new"
    (new / "extra.txt").write_text("new file")
    inputs = json.loads((new / "golden" / "inputs.json").read_text())
    inputs["x"]["data"][0] += 1.0  # another valid golden input (build checks them)
    (new / "golden" / "inputs.json").write_text(json.dumps(inputs))
    spec = (new / "bundle.yaml").read_text()
    spec = spec.replace("files: []", "files: [extra.txt]").replace('"numpy>=1.24"',
                                                                   '"numpy==2.0.0"')
    spec = spec.replace('"onnxruntime>=1.17", ', "").replace("version: 0.2.0", "version: 0.3.0")
    (new / "bundle.yaml").write_text(spec)
    old_b = run("build", tmp_path / "old", "--out", tmp_path / "o")
    new_b = run("build", new, "--out", tmp_path / "n")
    assert old_b.exit_code == 0 and new_b.exit_code == 0, new_b.output
    result = run("sbom", "diff", tmp_path / "o" / "example-0.2.0.oemb",
                 tmp_path / "n" / "example-0.3.0.oemb", "--json")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)
    assert [c["name"] for c in diff["added"]] == ["extra.txt"]
    assert [c["name"] for c in diff["removed"]] == ["onnxruntime"]
    changed = {c["name"]: c for c in diff["changed"]}
    assert set(changed) == {"golden/inputs.json", "numpy"}
    assert changed["numpy"]["new"]["version"] == "2.0.0"
    bad = run("sbom", "diff", tmp_path / "o" / "example-0.2.0.oemb")
    assert bad.exit_code == 2 and "two bundles" in bad.stderr


# --------------------------------------------------------------------------- sign refusals


def _unencrypted_keys(directory: Path, count: int) -> list[Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    directory.mkdir()
    paths = []
    for i in range(count):
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        path = directory / f"k{i:02d}.key"
        path.write_bytes(pem)
        paths.append(path)
    return paths


def test_sign_refuses_more_signatures_than_verifiers_accept(signed_bundle, tmp_path):
    from oemkit.verify.bundle import Limits

    limit = Limits().max_signatures
    before = signed_bundle.read_bytes()
    keys = _unencrypted_keys(tmp_path / "many", limit)  # + the signature already present
    args = [a for k in keys for a in ("--key", k)]
    result = run("sign", signed_bundle, *args, "--json")
    assert result.exit_code == 3, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_TOO_MANY_SIGNATURES"
    assert f"{limit + 1} signature members" in error["message"]
    assert f"limit {limit}" in error["message"] and "not changed" in error["message"]
    assert signed_bundle.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([signed_bundle.name, "many"])
    # exactly at the limit is fine, and verifies structurally
    assert run("sign", signed_bundle, *args[:-2]).exit_code == 0


def _with_provenance(bundle: Path, provenance: bytes) -> bytes:
    from helpers import read_members, write_members

    members = [(n, provenance if n == "provenance.intoto.json" else d)
               for n, d in read_members(bundle) if not n.startswith("signatures/")]
    write_members(bundle, members)
    return bundle.read_bytes()


def _statement_of(bundle: Path) -> dict:
    from helpers import read_members

    return json.loads(dict(read_members(bundle))["provenance.intoto.json"])


@pytest.mark.parametrize(("change", "code", "words"), [
    (lambda s: [], "E_PROVENANCE_INVALID", "not an in-toto Statement v1"),
    (lambda s: {**s, "predicateType": "https://example.com/other"}, "E_PROVENANCE_INVALID",
     "SLSA Provenance v1"),
    (lambda s: {**s, "subject": [{"name": x["name"]} for x in s["subject"]]},
     "E_MANIFEST_DIGEST", "does not match the provenance"),
    (lambda s: {**s, "subject": "oemkit-bundle.json"}, "E_PROVENANCE_INVALID",
     "not an in-toto Statement v1"),
    (lambda s: {**s, "predicate": {**s["predicate"], "runDetails": {"metadata": {
        "finishedOn": "yesterday"}}}}, "E_TIME", "finishedOn"),
])
def test_sign_refuses_a_provenance_verify_would_reject(signed_bundle, change, code, words):
    statement = change(_statement_of(signed_bundle))
    before = _with_provenance(signed_bundle, json.dumps(statement).encode())
    result = run("sign", signed_bundle, "--key", KEYS / "bundle.key", env=ENV)
    assert result.exit_code in (1, 3), result.output
    assert code in result.stderr and words in result.stderr, result.stderr
    assert "refusing to sign" in result.stderr
    assert "internal error" not in result.output
    assert signed_bundle.read_bytes() == before


# --------------------------------------------------------------------------- trust thresholds


def test_retiring_or_revoking_the_only_root_key_is_refused_with_a_way_forward(tmp_path):
    root = tmp_path / "root.json"
    run("trust", "init", "--root-key", KEYS / "root.key", "--out", root, env=ENV)
    keyid = json.loads(run("trust", "show", root, "--json").stdout)["trust_root"]["keys"][0][
        "keyid"]
    before = root.read_bytes()
    for verb in ("retire", "revoke"):
        result = run("trust", f"{verb}-key", root, keyid, "--sign-with", KEYS / "root.key",
                     env=ENV)
        assert result.exit_code == 3, result.output
        assert "E_TRUST_BELOW_THRESHOLD" in result.stderr
        assert f"cannot {verb} key" in result.stderr
        assert "0 active root key(s), below the root threshold 1" in result.stderr
        assert "add another root key first" in result.stderr
        assert "--usage root" in result.stderr and f"then {verb} this one" in result.stderr
        assert "E_TRUST_INVALID" not in result.stderr and "damaged" not in result.stderr
        assert root.read_bytes() == before


def test_retiring_one_of_two_bundle_keys_at_threshold_two_is_refused_revoking_is_not(
        tmp_path):
    root = tmp_path / "root.json"
    run("trust", "init", "--root-key", KEYS / "root.key", "--out", root, env=ENV)
    for name in ("bundle", "license"):
        run("trust", "add-key", root, "--pub", KEYS / f"{name}.pub", "--usage", "bundle",
            "--sign-with", KEYS / "root.key", env=ENV)
    run("trust", "set-threshold", root, "bundle", "2", "--sign-with", KEYS / "root.key",
        env=ENV)
    keys = json.loads(run("trust", "show", root, "--json").stdout)["trust_root"]["keys"]
    keyid = next(k["keyid"] for k in keys if k["usage"] == ["bundle"])
    before = root.read_bytes()
    result = run("trust", "retire-key", root, keyid, "--sign-with", KEYS / "root.key",
                 "--json", env=ENV)
    assert result.exit_code == 3, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_TRUST_BELOW_THRESHOLD"
    assert "1 active bundle key(s), below the bundle threshold 2" in error["message"]
    assert "add another bundle key first" in error["hint"]
    assert "set-threshold ROOT bundle 1" in error["hint"]
    assert root.read_bytes() == before
    # An emergency revocation goes through: bundle signing then fails closed.
    revoked = run("trust", "revoke-key", root, keyid, "--sign-with", KEYS / "root.key",
                  env=ENV)
    assert revoked.exit_code == 0, revoked.output


# --------------------------------------------------------------------------- demo


def test_demo_without_the_example_names_an_accurate_remedy(tmp_path, monkeypatch):
    import oemkit.host.demo as demo

    monkeypatch.setattr(demo, "__file__", str(tmp_path / "a" / "oemkit" / "host" / "demo.py"))
    result = run("demo", "--out", tmp_path / "out")
    assert result.exit_code == 4, result.output
    assert "E_NO_EXAMPLE" in result.stderr and "not installed" in result.stderr
    assert "reinstall oemkit" in result.stderr and "wheel" in result.stderr
    assert "run the demo from a source checkout" not in result.stderr


def test_cli_reader_limit_defaults_are_default_limits():
    """cli._output writes the defaults out (``--help`` imports no verifier): they are
    verify.bundle.DEFAULT_LIMITS's, and the flags at their defaults ask for exactly it."""
    from oemkit.cli._options import DEFAULT_MAX_FILES, DEFAULT_MAX_MEMBER, DEFAULT_MAX_PAYLOAD
    from oemkit.cli._output import limits
    from oemkit.verify.bundle import DEFAULT_LIMITS

    assert DEFAULT_LIMITS.max_files == DEFAULT_MAX_FILES
    assert DEFAULT_LIMITS.max_metadata_bytes == DEFAULT_MAX_MEMBER
    assert DEFAULT_LIMITS.max_payload_bytes == DEFAULT_MAX_PAYLOAD
    assert limits(DEFAULT_MAX_FILES, DEFAULT_MAX_MEMBER, DEFAULT_MAX_PAYLOAD) == DEFAULT_LIMITS


def _options_named(command, name, path=()):
    """(command path, option) for every option ``name`` under ``command``."""
    from oemkit.cli.sizing import SizingGroup

    for param in getattr(command, "params", []):
        if name in getattr(param, "opts", ()):
            yield " ".join(path), param
    subs = dict(getattr(command, "commands", {}))
    if isinstance(command, SizingGroup):
        subs[""] = command.default_command
    for sub_name, sub in subs.items():
        yield from _options_named(sub, name, (*path, sub_name) if sub_name else path)


def test_shared_options_have_one_help_text_per_meaning():
    """--trust, --json and the reader limits come from cli._options: the same words for
    the same meaning on every command."""
    import typer.main

    from oemkit.cli import _options

    root = typer.main.get_command(app)
    trust = {p: o for p, o in _options_named(root, "--trust")}
    variants = {_options.TrustPinned: True, _options.TrustPinnedChecked: False,
                _options.TrustFirst: False, _options.TrustCarried: False,
                _options.TrustServe: False, _options.TrustSignCheck: False,
                _options.TrustListed: False}
    helps = {t.__metadata__[0].help for t in variants}
    assert len(trust) == 26 and {o.help for o in trust.values()} == helps
    pinned = {p for p, o in trust.items() if o.required}
    assert pinned == {"verify", "unpack", "license verify", "smoke", "install", "upgrade",
                      "join", "oci pull", "oci import", "deploy kubernetes", "image", "patch",
                      "evidence verify"}
    assert trust["build"].help == _options.TrustCarried.__metadata__[0].help
    assert trust["sizing"].help == _options.TrustPinned.__metadata__[0].help
    json_helps = {o.help for _, o in _options_named(root, "--json")}
    assert json_helps == {"Print one JSON document on stdout."}
    for flag, default in (("--max-files", _options.DEFAULT_MAX_FILES),
                          ("--max-member-size", _options.DEFAULT_MAX_MEMBER),
                          ("--max-payload-bytes", _options.DEFAULT_MAX_PAYLOAD)):
        found = list(_options_named(root, flag))
        assert len(found) == 16 and {o.default for _, o in found} == {default}
