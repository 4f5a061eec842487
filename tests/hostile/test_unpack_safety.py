"""Unpacking: a hostile bundle never writes outside DEST, never leaves DEST or a staging
directory behind, never replaces an existing DEST; a good one gives exactly its files."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile

import pytest

from helpers import entry, forge_bundle, regular, tar_bytes
from hostile._support import assert_rejected, cli, flip_byte, member_offsets
from oemkit.errors import InputError
from oemkit.host.unpack import unpack_bundle
from oemkit.verify.bundle import inspect_bundle

A, B = b"first file\n", b"#!/bin/sh\necho hi\n"


def listing(path):
    return sorted(os.listdir(path))


def tree(root):
    """Every entry under ``root``: relative path -> (kind, mode, sha256)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            info = os.lstat(full)
            if stat.S_ISREG(info.st_mode):
                with open(full, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                out[rel] = ("file", stat.S_IMODE(info.st_mode), digest)
            else:
                out[rel] = ("dir" if stat.S_ISDIR(info.st_mode) else "other", None, None)
    return out


@pytest.fixture
def site(tmp_path):
    """An install site: DEST goes in site/, and site/outside/ must stay untouched."""
    (tmp_path / "site" / "outside").mkdir(parents=True)
    return tmp_path / "site"


def hostile_entries(site):
    """name -> (inner tar entries, manifest entries, expected code). The first entry is
    always a good file, so the staging directory has content when the attack lands."""
    good = regular("a.txt", A)
    manifest = [entry("a.txt", A), entry("b.txt", A)]
    outside = str(site / "outside" / "pwned")

    def link(name, kind, target):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        return info, None

    return {
        "dotdot": ([good, regular("../outside/pwned", b"x")], manifest, "E_PAYLOAD_UNSAFE"),
        "deep-dotdot": ([good, regular("a/../../../outside/pwned", b"x")], manifest,
                        "E_PAYLOAD_UNSAFE"),
        "absolute": ([good, regular(outside, b"x")], manifest, "E_PAYLOAD_UNSAFE"),
        "symlink-then-write-through-it": (
            [good, link("b.txt", tarfile.SYMTYPE, str(site / "outside")),
             regular("b.txt/pwned", b"x")], manifest, "E_PAYLOAD_UNSAFE"),
        "hardlink-to-outside": ([good, link("b.txt", tarfile.LNKTYPE, outside)], manifest,
                                "E_PAYLOAD_UNSAFE"),
        "changed-content": ([good, regular("b.txt", b"X" * len(A))], manifest,
                            "E_PAYLOAD_DIGEST"),
        "extra-file": ([good, regular("b.txt", A), regular("c.sh", B)], manifest,
                       "E_PAYLOAD_EXTRA"),
        "missing-file": ([good], manifest, "E_PAYLOAD_MISSING"),
        "file-used-as-directory": (
            [regular("a", A), regular("a/b.txt", A)], [entry("a", A), entry("a/b.txt", A)],
            "E_PAYLOAD_UNSAFE"),
    }


CASES = ["dotdot", "deep-dotdot", "absolute", "symlink-then-write-through-it",
         "hardlink-to-outside", "changed-content", "extra-file", "missing-file",
         "file-used-as-directory"]


@pytest.mark.parametrize("case", CASES)
def test_hostile_payload_writes_nothing(site, tmp_path, keys, trust_file, case):
    tar_entries, manifest, code = hostile_entries(site)[case]
    bundle = forge_bundle(tmp_path / "hostile.oemb", tar_bytes(tar_entries), manifest,
                          [keys["bundle"]])
    before = listing(site)
    dest = site / "app"
    report = unpack_bundle(bundle, dest, trust_file)
    assert_rejected(report, code)
    assert not dest.exists()
    assert listing(site) == before  # no staging directory left behind
    assert listing(site / "outside") == []
    assert not (tmp_path / "outside").exists()
    assert "unpack" not in [c.name for c in report.checks]


@pytest.mark.parametrize("case", ["dotdot", "symlink-then-write-through-it"])
def test_hostile_payload_writes_nothing_cli(site, tmp_path, keys, trust_file, case):
    tar_entries, manifest, code = hostile_entries(site)[case]
    bundle = forge_bundle(tmp_path / "hostile.oemb", tar_bytes(tar_entries), manifest,
                          [keys["bundle"]])
    before = listing(site)
    dest = site / "app"
    result = cli("unpack", bundle, dest, "--trust", trust_file, "--json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["error"]["code"] == code
    assert not dest.exists() and listing(site) == before
    assert listing(site / "outside") == []


def test_tampered_bundle_never_replaces_an_existing_dest_even_with_force(
        site, signed_bundle, trust_file):
    dest = site / "app"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"the installed version")
    before = tree(dest)
    _, data_offset, size = member_offsets(signed_bundle)["payload.tar.zst"]
    flip_byte(signed_bundle, data_offset + size // 2)
    report = unpack_bundle(signed_bundle, dest, trust_file, force=True)
    assert_rejected(report, "E_PAYLOAD_DIGEST", member="payload.tar.zst")
    assert tree(dest) == before
    assert listing(site) == ["app", "outside"]
    result = cli("unpack", signed_bundle, dest, "--trust", trust_file, "--force")
    assert result.exit_code == 1 and "E_PAYLOAD_DIGEST" in result.output
    assert tree(dest) == before and listing(site) == ["app", "outside"]


def test_unsigned_bundle_is_not_unpacked(site, signed_bundle, trust_v1, tmp_path):
    """Signed by a key the pinned root does not know: nothing is written."""
    pinned = tmp_path / "v1.json"
    pinned.write_bytes(trust_v1)
    report = unpack_bundle(signed_bundle, site / "app", pinned)
    assert_rejected(report, "E_SIGNATURE_UNTRUSTED")
    assert listing(site) == ["outside"]


# --------------------------------------------------------------------------- DEST rules


def test_non_empty_dest_is_refused(site, signed_bundle, trust_file):
    dest = site / "app"
    dest.mkdir()
    (dest / "config.json").write_bytes(b"local edits")
    with pytest.raises(InputError) as err:
        unpack_bundle(signed_bundle, dest, trust_file)
    assert err.value.code == "E_DEST_NOT_EMPTY" and err.value.exit_code == 3
    assert str(dest) in err.value.message
    result = cli("unpack", signed_bundle, dest, "--trust", trust_file)
    assert result.exit_code == 3, result.output
    assert "E_DEST_NOT_EMPTY" in result.output and "--force" in result.output
    as_json = cli("unpack", signed_bundle, dest, "--trust", trust_file, "--json")
    assert as_json.exit_code == 3
    assert json.loads(as_json.stdout)["error"]["code"] == "E_DEST_NOT_EMPTY"
    assert listing(dest) == ["config.json"]
    assert (dest / "config.json").read_bytes() == b"local edits"
    assert listing(site) == ["app", "outside"]


def test_non_empty_dest_is_replaced_with_force(site, signed_bundle, trust_file):
    dest = site / "app"
    dest.mkdir()
    (dest / "stale.txt").write_bytes(b"old")
    result = cli("unpack", signed_bundle, dest, "--trust", trust_file, "--force")
    assert result.exit_code == 0, result.output
    manifest = inspect_bundle(signed_bundle).to_dict()["manifest"]
    files = {f["path"] for f in manifest["files"]}
    assert {p for p, v in tree(dest).items() if v[0] == "file"} == files
    assert not (dest / "stale.txt").exists()
    assert listing(site) == ["app", "outside"]  # the old copy was cleaned up


def test_dest_that_is_a_file_is_refused(site, signed_bundle, trust_file):
    dest = site / "app"
    dest.write_bytes(b"not a directory")
    result = cli("unpack", signed_bundle, dest, "--trust", trust_file)
    assert result.exit_code == 3 and "E_DEST_NOT_DIR" in result.output
    assert dest.read_bytes() == b"not a directory"


# --------------------------------------------------------------------------- good bundles


def test_good_bundle_unpacks_to_exactly_its_files_and_modes(site, tmp_path, keys, trust_file):
    files = [("bin/run", B, 0o755), ("data/a.txt", A, 0o644), ("data/deep/b.bin", bytes(300),
                                                                 0o644)]
    manifest = [entry(*f) for f in files]
    inner = tar_bytes([regular(p, d, m) for p, d, m in files])
    bundle = forge_bundle(tmp_path / "good.oemb", inner, manifest, [keys["bundle"]])
    dest = site / "app"
    report = unpack_bundle(bundle, dest, trust_file)
    assert report.ok, report.to_dict()
    assert report.checks[-1].name == "unpack"
    got = tree(dest)
    assert {p: v for p, v in got.items() if v[0] != "dir"} == {
        p: ("file", m, hashlib.sha256(d).hexdigest()) for p, d, m in files}
    assert {p for p, v in got.items() if v[0] == "dir"} == {"bin", "data", "data/deep"}
    assert listing(site) == ["app", "outside"]


def test_example_bundle_unpacks_via_cli(site, signed_bundle, trust_file):
    dest = site / "example"
    result = cli("unpack", signed_bundle, dest, "--trust", trust_file, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    manifest = inspect_bundle(signed_bundle).to_dict()["manifest"]
    assert {p: (v[1], v[2]) for p, v in tree(dest).items() if v[0] == "file"} == {
        f["path"]: (f["mode"], f["sha256"]) for f in manifest["files"]}
    assert listing(site) == ["example", "outside"]
