"""in-toto links in signed bundles, starter layouts, and verification by in-toto itself
(the library's ``in_toto_verify`` and the real ``in-toto-verify`` command): docs/INTOTO.md."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import EXAMPLE, KEYS, PASSPHRASE, read_members, write_members
from oemkit._canonical import sha256_hex
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.errors import VerificationError
from oemkit.release.bundle import build_bundle
from oemkit.release.links import init_layout, link_member
from oemkit.release.sign import sign_bundle
from oemkit.verify.bundle import verify_bundle
from oemkit.verify.layout import (
    extract_for_layout,
    intoto_key,
    intoto_keyid,
    verify_layout,
    verify_unpacked,
)

IN_TOTO_VERIFY = Path(sys.executable).parent / "in-toto-verify"
OWNER_PUB = KEYS / "root.pub"
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def _link(bundle: Path, public) -> tuple[str, bytes]:
    name = link_member(public)
    return name, dict(read_members(bundle))[name]


@pytest.fixture
def layout(tmp_path, keys) -> Path:
    """A starter layout: the example bundle key signs builds, the root key owns it."""
    made = init_layout([keys["bundle"].public], keys["root"])
    path = tmp_path / "root.layout"
    path.write_bytes(made.data)
    return path


def test_sign_carries_one_in_toto_link_per_key_that_in_toto_reads(signed_bundle, keys):
    from in_toto.models.link import Link
    from in_toto.models.metadata import Envelope, Metadata

    keyid = intoto_keyid(keys["bundle"].public)
    name, data = _link(signed_bundle, keys["bundle"].public)
    assert name == f"links/build.{keyid[:8]}.link"
    members = dict(read_members(signed_bundle))
    assert [n for n in members if n.startswith("links/")] == [name]
    # after the payload, before the signatures
    names = list(members)
    assert names.index(name) == names.index("payload.tar.zst") + 1
    assert names[names.index(name) + 1].startswith("signatures/")
    envelope = Metadata.from_dict(json.loads(data))
    assert isinstance(envelope, Envelope)
    assert envelope.payload_type == "application/vnd.in-toto+json"
    envelope.verify_signature(intoto_key(keys["bundle"].public))
    link = envelope.get_payload()
    assert isinstance(link, Link) and link.name == "build"
    assert link.command == ["oemkit", "build"]
    manifest = json.loads(members["oemkit-bundle.json"])
    files = {f["path"]: {"sha256": f["sha256"]} for f in manifest["files"]}
    assert link.products == {**files, "oemkit-bundle.json": {
        "sha256": sha256_hex(members["oemkit-bundle.json"])}}
    spec = (EXAMPLE / "bundle.yaml").read_bytes()
    assert link.materials == {**files, "bundle.yaml": {"sha256": sha256_hex(spec)}}
    from in_toto.exceptions import SignatureVerificationError

    with pytest.raises(SignatureVerificationError):  # another key does not verify it
        envelope.verify_signature(intoto_key(keys["license"].public))


def test_signing_again_keeps_the_link_and_bundles_with_links_verify(signed_bundle, keys,
                                                                    trust_file):
    before = signed_bundle.read_bytes()
    result = sign_bundle(signed_bundle, [keys["bundle"]])
    assert result.added == () and result.links == ()
    assert signed_bundle.read_bytes() == before
    assert verify_bundle(signed_bundle, trust_file).ok


def test_a_bundle_signed_without_links_gets_them_when_signed_again(signed_bundle, keys,
                                                                   trust_file):
    members = [(n, d) for n, d in read_members(signed_bundle) if not n.startswith("links/")]
    write_members(signed_bundle, members)
    assert verify_bundle(signed_bundle, trust_file).ok  # as before links existed
    result = sign_bundle(signed_bundle, [keys["bundle"]])
    assert result.added == () and result.links == (link_member(keys["bundle"].public),)
    assert verify_bundle(signed_bundle, trust_file).ok


def _ecdsa_key():
    from oemkit.crypto.keys import generate, key_id

    private = generate("ecdsa-p256")
    return PrivateKeyInfo(private, private.public_key(), "ecdsa-p256",
                          key_id(private.public_key()), "test")


def test_the_in_toto_key_id_is_securesystemslib_s(keys):
    from securesystemslib.signer import SSlibKey

    for public in (keys["bundle"].public, keys["root"].public, _ecdsa_key().public):
        assert intoto_keyid(public) == SSlibKey.from_crypto(public).keyid
        assert intoto_key(public)["keyid"] == intoto_keyid(public)


def test_an_ecdsa_link_is_low_s_and_verifies(tmp_path, keys, trust_v1):
    from oemkit.release.trust import add_key
    from oemkit.verify.trust import parse_root

    key = _ecdsa_key()
    trust = add_key(parse_root(trust_v1), key.public, ["bundle"], [keys["root"]], name="p256")
    bundle = build_bundle(EXAMPLE / "bundle.yaml", tmp_path / "out").path
    for _ in range(4):  # ECDSA signatures differ each time: each must be low-S
        members = [(n, d) for n, d in read_members(bundle) if not n.startswith("links/")]
        write_members(bundle, members)
        assert sign_bundle(bundle, [key]).links == (link_member(key.public),)
        assert verify_bundle(bundle, trust).ok


def test_verify_rejects_any_change_to_a_link(signed_bundle, keys, trust_file, tmp_path):
    """No byte of a link member can change unnoticed (as none of a signed member can)."""
    name, data = _link(signed_bundle, keys["bundle"].public)
    members = read_members(signed_bundle)
    doc = json.loads(data)
    changed = {
        "E_LINK_INVALID": [data + b" ", data.replace(b'"payloadType": ', b'"payloadType":'),
                           json.dumps({**doc, "extra": 1}, sort_keys=True).encode()],
        "E_LINK_SIGNATURE": [json.dumps({**doc, "payload": doc["payload"][:-4] + "AAAA"},
                                        sort_keys=True).encode()],
    }
    bad = tmp_path / "bad.oemb"
    for code, variants in changed.items():
        for variant in variants:
            write_members(bad, [(n, variant if n == name else d) for n, d in members])
            report = verify_bundle(bad, trust_file)
            assert not report.ok and report.error.code == code, (code, variant[:80])
    stranger = _ecdsa_key()
    forged = [(link_member(stranger.public), _link_for(signed_bundle, stranger))
              if n == name else (n, d) for n, d in members]
    write_members(bad, forged)
    report = verify_bundle(bad, trust_file)
    assert report.error.code == "E_LINK_SIGNATURE"
    assert report.error.message == (
        f"{link_member(stranger.public)} is signed by key {intoto_keyid(stranger.public)[:16]}…"
        ", which did not sign this bundle")


def _link_for(bundle: Path, key) -> bytes:
    """The build link of ``bundle`` signed by ``key`` (as sign would write it)."""
    from oemkit.release.links import link_payload, sign_link
    from oemkit.verify.bundle import _statement, parse_manifest

    members = dict(read_members(bundle))
    manifest = members["oemkit-bundle.json"]
    payload = link_payload(_statement(members["provenance.intoto.json"]),
                           parse_manifest(manifest), manifest)
    return sign_link(payload, key)


def test_the_link_payload_is_what_in_toto_from_signable_writes(signed_bundle):
    """link_payload serialises the Link without attr.asdict's deep copy (memory on a bundle
    of many files): the bytes must stay in-toto's own."""
    from in_toto.models.link import Link
    from in_toto.models.metadata import Envelope

    from oemkit.release.links import COMMAND, STEP, build_artifacts, link_payload
    from oemkit.verify.bundle import _statement, parse_manifest

    members = dict(read_members(signed_bundle))
    manifest = members["oemkit-bundle.json"]
    statement = _statement(members["provenance.intoto.json"])
    materials, products = build_artifacts(statement, parse_manifest(manifest), manifest)
    theirs = Envelope.from_signable(Link(name=STEP, materials=materials, products=products,
                                         byproducts={}, command=list(COMMAND),
                                         environment={})).payload
    assert link_payload(statement, parse_manifest(manifest), manifest) == theirs
    assert len(products) > 5


def test_layout_init_writes_a_signed_starter_layout(keys):
    from in_toto.models.layout import Layout
    from in_toto.models.metadata import Envelope, Metadata

    made = init_layout([keys["bundle"].public], keys["root"], now=NOW)
    assert made.expires == "2031-01-01T00:00:00Z"
    envelope = Metadata.from_dict(json.loads(made.data))
    assert isinstance(envelope, Envelope)
    envelope.verify_signature(intoto_key(keys["root"].public))
    layout = envelope.get_payload()
    assert isinstance(layout, Layout)
    keyid = intoto_keyid(keys["bundle"].public)
    assert [s.name for s in layout.steps] == ["build"]
    assert layout.steps[0].pubkeys == [keyid] and list(layout.keys) == [keyid]
    assert [i.name for i in layout.inspect] == ["check-bundle"]
    assert made.links == (f"build.{keyid[:8]}.link",)
    assert made.owner == intoto_keyid(keys["root"].public)


def test_layout_verification_passes(signed_bundle, layout, keys):
    report = verify_layout(signed_bundle, layout, [OWNER_PUB])
    keyid = intoto_keyid(keys["bundle"].public)
    assert report.ok and report.functionaries == (keyid,)
    assert report.links == (f"build.{keyid[:8]}.link",)
    assert report.steps == ("build",) and report.inspections == ("check-bundle",)
    assert report.layout_keys == (intoto_keyid(keys["root"].public),)
    assert report.files == 9
    assert report.to_dict()["ok"] is True


def test_a_tampered_payload_file_fails_its_layout_rule(signed_bundle, layout, tmp_path):
    directory, links = tmp_path / "bundle", tmp_path / "links"
    directory.mkdir()
    links.mkdir()
    extract_for_layout(signed_bundle, directory, links)
    assert verify_unpacked(directory, links, layout, [OWNER_PUB]).ok
    target = directory / "config" / "config.json"
    recorded = sha256_hex(target.read_bytes())
    target.write_bytes(target.read_bytes() + b"\n")
    with pytest.raises(VerificationError) as err:
        verify_unpacked(directory, links, layout, [OWNER_PUB])
    actual = sha256_hex(target.read_bytes())
    assert err.value.code == "E_LAYOUT_RULE"
    assert err.value.message == (
        "in-toto rule 'DISALLOW *' in the expected_materials of 'check-bundle' failed for "
        f"config/config.json; config/config.json has SHA-256 {actual}, the signed build link "
        f"records {recorded}")
    assert (err.value.member, err.value.expected, err.value.actual) == (
        "config/config.json", recorded, actual)


def test_a_bundle_whose_payload_differs_from_its_link_fails(signed_bundle, layout, keys,
                                                            tmp_path):
    source = tmp_path / "example"
    shutil.copytree(EXAMPLE, source)
    main = source / "runtime" / "main.py"
    main.write_bytes(main.read_bytes() + b"# another build\n")
    other = build_bundle(source / "bundle.yaml", tmp_path / "other").path
    sign_bundle(other, [keys["bundle"]])
    name, old_link = _link(signed_bundle, keys["bundle"].public)
    write_members(other, [(n, old_link if n == name else d) for n, d in read_members(other)])
    with pytest.raises(VerificationError) as err:
        verify_layout(other, layout, [OWNER_PUB])
    manifest = dict(read_members(other))["oemkit-bundle.json"]
    recorded = sha256_hex(dict(read_members(signed_bundle))["oemkit-bundle.json"])
    assert err.value.code == "E_LAYOUT_RULE"
    assert err.value.message == (
        "in-toto rule 'DISALLOW *' in the expected_materials of 'check-bundle' failed for "
        f"oemkit-bundle.json, runtime/main.py; oemkit-bundle.json has SHA-256 "
        f"{sha256_hex(manifest)}, the signed build link records {recorded}")


def test_a_link_signed_by_a_key_the_layout_does_not_name_fails(tmp_path, keys, layout):
    bundle = build_bundle(EXAMPLE / "bundle.yaml", tmp_path / "out").path
    sign_bundle(bundle, [keys["license"]])
    stranger = intoto_keyid(keys["license"].public)
    allowed = intoto_keyid(keys["bundle"].public)
    with pytest.raises(VerificationError) as err:
        verify_layout(bundle, layout, [OWNER_PUB])
    assert err.value.code == "E_LINK_UNAUTHORIZED"
    assert err.value.message == (
        f"the in-toto link(s) for step 'build' (build.{stranger[:8]}.link) are signed by "
        f"key(s) {stranger[:16]}…, which the layout does not name for that step (it names: "
        f"{allowed[:16]}…)")
    assert err.value.member == f"links/build.{stranger[:8]}.link"


def test_a_link_renamed_to_an_allowed_key_fails_its_signature(tmp_path, keys, layout):
    bundle = build_bundle(EXAMPLE / "bundle.yaml", tmp_path / "out").path
    sign_bundle(bundle, [keys["license"]])
    allowed = intoto_keyid(keys["bundle"].public)
    write_members(bundle, [(f"links/build.{allowed[:8]}.link" if n.startswith("links/") else n,
                            d) for n, d in read_members(bundle)])
    with pytest.raises(VerificationError) as err:
        verify_layout(bundle, layout, [OWNER_PUB])
    assert err.value.code == "E_LINK_SIGNATURE"
    assert err.value.message == (
        f"the in-toto link(s) for step 'build' (build.{allowed[:8]}.link) are named for keys "
        "the layout allows but not validly signed by them (the layout needs 1)")


def test_an_expired_layout_fails(signed_bundle, keys, tmp_path):
    made = init_layout([keys["bundle"].public], keys["root"],
                       now=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc), days=1)
    path = tmp_path / "old.layout"
    path.write_bytes(made.data)
    with pytest.raises(VerificationError) as err:
        verify_layout(signed_bundle, path, [OWNER_PUB])
    assert err.value.code == "E_LAYOUT_EXPIRED"
    assert err.value.message == f"{path} expired at 2000-01-02T00:00:00Z"


def test_a_layout_not_signed_by_the_given_key_fails(signed_bundle, layout, keys):
    with pytest.raises(VerificationError) as err:
        verify_layout(signed_bundle, layout, [KEYS / "bundle.pub"])
    assert err.value.code == "E_LAYOUT_SIGNATURE"
    keyid = intoto_keyid(keys["bundle"].public)
    assert err.value.message == (f"{layout} is not signed by every layout key given "
                                 f"({keyid[:16]}…)")


def test_a_bundle_without_links_fails_with_link_missing(signed_bundle, layout, keys):
    write_members(signed_bundle, [(n, d) for n, d in read_members(signed_bundle)
                                  if not n.startswith("links/")])
    with pytest.raises(VerificationError) as err:
        verify_layout(signed_bundle, layout, [OWNER_PUB])
    assert err.value.code == "E_LINK_MISSING"
    assert err.value.message == (
        "the bundle carries no in-toto link for step 'build' (links/build.KEYID8.link); the "
        f"layout needs 1 signed by: {intoto_keyid(keys['bundle'].public)[:16]}…")


def test_a_file_that_is_not_a_layout_is_layout_invalid(signed_bundle):
    from oemkit.errors import InputError

    with pytest.raises(InputError) as err:
        verify_layout(signed_bundle, OWNER_PUB, [OWNER_PUB])
    assert err.value.code == "E_LAYOUT_INVALID" and err.value.exit_code == 3
    assert err.value.message.startswith(f"{OWNER_PUB} is not a signed in-toto layout (")


def test_layout_init_rejects_a_past_expiry_and_no_keys(keys):
    from oemkit.errors import UsageError

    with pytest.raises(UsageError) as err:
        init_layout([keys["bundle"].public], keys["root"], now=NOW,
                    expires=dt.datetime(2029, 1, 1, tzinfo=dt.timezone.utc))
    assert err.value.message == ("the layout would expire at 2029-01-01T00:00:00Z, not after "
                                 "now (2030-01-01T00:00:00Z)")
    with pytest.raises(UsageError) as err:
        init_layout([], keys["root"])
    assert err.value.code == "E_USAGE"


def test_the_layout_init_command(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from oemkit.cli.layout import layout_app

    app = typer.Typer()
    app.add_typer(layout_app, name="layout")
    out = tmp_path / "root.layout"
    result = CliRunner().invoke(app, ["layout", "init", "--functionary",
                                      str(KEYS / "bundle.pub"), "--owner-key",
                                      str(KEYS / "root.key"), "--out", str(out), "--json"],
                                env={"OEMKIT_KEY_PASSPHRASE": PASSPHRASE.decode()})
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["layout"] == str(out) and out.exists()
    again = CliRunner().invoke(app, ["layout", "init", "--functionary",
                                     str(KEYS / "bundle.pub"), "--owner-key",
                                     str(KEYS / "root.key"), "--out", str(out), "--json"],
                               env={"OEMKIT_KEY_PASSPHRASE": PASSPHRASE.decode()})
    assert again.exit_code == 3 and json.loads(again.stdout)["error"]["code"] == \
        "E_OUTPUT_EXISTS"


def test_the_layout_module_imports_no_in_toto():
    code = ("import sys, oemkit.verify.layout, oemkit.release.links, oemkit.cli.layout\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'in_toto', 'securesystemslib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- in-toto-verify


def _unpack_as_documented(bundle: Path, trust: Path, tmp_path: Path) -> tuple[Path, Path]:
    """docs/INTOTO.md's commands: oemkit unpack, then GNU tar for the manifest and links."""
    from oemkit.host.unpack import unpack_bundle

    directory, links = tmp_path / "unpacked", tmp_path / "links"
    assert unpack_bundle(bundle, directory, trust).ok
    subprocess.run(["tar", "-xf", str(bundle), "-C", str(directory), "oemkit-bundle.json"],
                   check=True)
    links.mkdir()
    subprocess.run(["tar", "-xf", str(bundle), "-C", str(links), "--strip-components=1",
                    "--wildcards", "links/*"], check=True)
    return directory, links


def _in_toto_verify(directory: Path, layout: Path, links: Path):
    return subprocess.run([str(IN_TOTO_VERIFY), "--layout", str(layout),
                           "--verification-keys", str(OWNER_PUB), "--link-dir", str(links)],
                          cwd=directory, capture_output=True, text=True)


def test_in_toto_verify_accepts_the_unpacked_bundle(signed_bundle, layout, trust_file,
                                                    tmp_path):
    directory, links = _unpack_as_documented(signed_bundle, trust_file, tmp_path)
    result = _in_toto_verify(directory, layout, links)
    assert result.returncode == 0, result.stderr


def test_in_toto_verify_rejects_a_tampered_product(signed_bundle, layout, trust_file,
                                                   tmp_path):
    directory, links = _unpack_as_documented(signed_bundle, trust_file, tmp_path)
    target = directory / "model" / "model.onnx"
    target.write_bytes(target.read_bytes() + b"\0")
    result = _in_toto_verify(directory, layout, links)
    assert result.returncode == 1
    assert ("RuleVerificationError: 'DISALLOW *' matched the following artifacts: "
            "['model/model.onnx']") in result.stderr


def test_in_toto_verify_rejects_a_link_by_an_unnamed_key(signed_bundle, keys, trust_file,
                                                        tmp_path):
    """The layout names the license key; the bundle's only link is the bundle key's."""
    other = tmp_path / "other.layout"
    other.write_bytes(init_layout([keys["license"].public], keys["root"]).data)
    directory, links = _unpack_as_documented(signed_bundle, trust_file, tmp_path)
    result = _in_toto_verify(directory, other, links)
    assert result.returncode == 1
    assert ("LinkNotFoundError: Step 'build' requires '1' link metadata file(s), found '0'"
            in result.stderr)


# --------------------------------------------------------------------------- the CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``oemkit`` as the console script runs it (a plain verify line takes cli/_hot.py)."""
    code = "import sys; from oemkit._entry import main; sys.argv[0] = 'oemkit'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True)


def test_oemkit_layout_init_then_verify_layout_end_to_end(signed_bundle, trust_file, tmp_path):
    layout = tmp_path / "root.layout"
    env_key = {"OEMKIT_KEY_PASSPHRASE": PASSPHRASE.decode()}
    made = subprocess.run(
        [sys.executable, "-m", "oemkit", "layout", "init", "--functionary",
         str(KEYS / "bundle.pub"), "--owner-key", str(KEYS / "root.key"), "--out",
         str(layout), "--json"], capture_output=True, text=True,
        env={**__import__("os").environ, **env_key})
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["layout"] == str(layout)
    ok = _cli("verify", str(signed_bundle), "--trust", str(trust_file), "--layout", str(layout),
              "--layout-key", str(OWNER_PUB), "--json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["ok"] is True and doc["layout"]["ok"] is True
    assert doc["layout"]["steps"] == ["build"] and doc["layout"]["files"] > 5
    assert "LAYOUT OK in-toto layout" in ok.stderr and "VERIFIED example" in ok.stderr
    # the owner key the layout does not carry: in-toto refuses the layout's signature
    wrong = _cli("verify", str(signed_bundle), "--trust", str(trust_file), "--layout",
                 str(layout), "--layout-key", str(KEYS / "license.pub"), "--json")
    assert wrong.returncode == 1
    error = json.loads(wrong.stdout)["error"]
    assert error["code"] == "E_LAYOUT_SIGNATURE"
    assert "payload" in wrong.stderr  # the checks that passed are shown before the failure
    # a key without a layout is a usage error, from both paths alike
    for runner in (_cli, lambda *a: subprocess.run(
            [sys.executable, "-c", "import sys; from oemkit.cli.root import main; "
             "sys.argv[0] = 'oemkit'; main()", *a], capture_output=True, text=True)):
        bad = runner("verify", str(signed_bundle), "--trust", str(trust_file), "--layout-key",
                     str(OWNER_PUB))
        assert bad.returncode == 2
        assert "error E_USAGE: --layout-key needs --layout (the layout it signed)" in bad.stderr
