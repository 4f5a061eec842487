"""Tampering with the outer archive: changed bytes, missing, extra, duplicated or reordered
members, truncation, things that are not bundles, trailing data, dirty padding, odd types."""

from __future__ import annotations

import base64
import io
import json
import random
import tarfile
import zipfile

import pytest

from helpers import replace_member, write_members
from hostile._support import (
    SIG,
    assert_cli_verify_rejects,
    assert_rejected,
    flip_byte,
    member_offsets,
)
from oemkit._fs import BLOCK, END_OF_ARCHIVE, padding, write_member
from oemkit.verify.bundle import verify_bundle

MANIFEST, SBOM, PROVENANCE, PAYLOAD = (
    "oemkit-bundle.json", "sbom.cdx.json", "provenance.intoto.json", "payload.tar.zst")


def sig_name(members) -> str:
    [name] = [n for n, _ in members if n.startswith(SIG)]
    return name


# --------------------------------------------------------------------------- one byte changed


@pytest.mark.parametrize(("member", "where", "code", "words"), [
    (MANIFEST, "middle", "E_MANIFEST_DIGEST", ("does not match", "signed provenance")),
    (SBOM, "middle", "E_MEMBER_DIGEST", ("sbom.cdx.json", "does not match its manifest digest")),
    (PAYLOAD, "first", "E_PAYLOAD_DIGEST", ("payload.tar.zst", "does not match")),
    (PAYLOAD, "frame header", "E_PAYLOAD_DIGEST", ("payload.tar.zst", "does not match")),
    (PAYLOAD, "middle", "E_PAYLOAD_DIGEST", ("payload.tar.zst", "does not match")),
    (PAYLOAD, "last", "E_PAYLOAD_DIGEST", ("payload.tar.zst", "does not match")),
])
def test_one_byte_changed_in_member(signed_bundle, trust_v2, member, where, code, words):
    _, data_offset, size = member_offsets(signed_bundle)[member]
    at = {"first": 0, "frame header": 4, "middle": size // 2, "last": size - 1}[where]
    flip_byte(signed_bundle, data_offset + at)
    assert_rejected(verify_bundle(signed_bundle, trust_v2), code, *words, member=member)


def test_one_byte_changed_in_provenance_breaks_every_signature(signed_bundle, trust_v2,
                                                               members):
    _, data_offset, size = member_offsets(signed_bundle)[PROVENANCE]
    flip_byte(signed_bundle, data_offset + size // 2)
    assert_rejected(verify_bundle(signed_bundle, trust_v2), "E_SIGNATURE_PAYLOAD",
                    "signs a different statement", PROVENANCE, member=sig_name(members))


def test_one_byte_changed_in_signature(signed_bundle, trust_v2, members, bad):
    name = sig_name(members)
    doc = dict(members)[name]
    sig = json.loads(doc)["dsseEnvelope"]["signatures"][0]["sig"]
    raw = bytearray(base64.b64decode(sig))
    raw[len(raw) // 2] ^= 0x01
    forged_sig = base64.b64encode(bytes(raw)).decode()
    # the same length of text, one signature byte different: still valid base64 and JSON
    assert len(forged_sig) == len(sig)
    write_members(bad, replace_member(members, name, doc.replace(sig.encode(),
                                                                  forged_sig.encode())))
    assert_rejected(verify_bundle(bad, trust_v2), "E_SIGNATURE_UNTRUSTED",
                    "no signature verifies")


def test_one_byte_changed_in_manifest_cli(signed_bundle, trust_file):
    _, data_offset, size = member_offsets(signed_bundle)[MANIFEST]
    flip_byte(signed_bundle, data_offset + size // 2)
    assert_cli_verify_rejects(signed_bundle, trust_file, "E_MANIFEST_DIGEST")


# --------------------------------------------------------------------------- members


@pytest.mark.parametrize("name", [MANIFEST, SBOM, PROVENANCE, PAYLOAD])
def test_required_member_removed(members, trust_v2, bad, name):
    write_members(bad, [(n, d) for n, d in members if n != name])
    assert_rejected(verify_bundle(bad, trust_v2), "E_MEMBER_MISSING", "required member",
                    name, "missing", member=name)


def test_signature_removed(members, trust_v2, bad, trust_file):
    write_members(bad, [(n, d) for n, d in members if not n.startswith(SIG)])
    assert_rejected(verify_bundle(bad, trust_v2), "E_UNSIGNED", "no signature")
    assert_cli_verify_rejects(bad, trust_file, "E_UNSIGNED")


@pytest.mark.parametrize("position", [0, 3, -1])
def test_unknown_member_added(members, trust_v2, bad, position):
    extra = ("install.sh", b"#!/bin/sh\nrm -rf /\n")
    out = list(members)
    out.insert(position if position >= 0 else len(out), extra)
    write_members(bad, out)
    assert_rejected(verify_bundle(bad, trust_v2), "E_MEMBER_UNKNOWN", "unexpected member",
                    "install.sh", member="install.sh")


@pytest.mark.parametrize("name", [MANIFEST, SBOM, PAYLOAD, "signature"])
def test_member_duplicated(members, trust_v2, bad, name):
    name = sig_name(members) if name == "signature" else name
    out = []
    for n, d in members:
        out.append((n, d))
        if n == name:
            out.append((n, d))
    write_members(bad, out)
    assert_rejected(verify_bundle(bad, trust_v2), "E_MEMBER_DUPLICATE", "appears twice",
                    member=name)


@pytest.mark.parametrize(("swap", "blamed"), [
    ((0, 1), MANIFEST),     # sbom first
    ((1, 2), SBOM),         # provenance before sbom
    ((3, 4), PAYLOAD),      # signature before payload
])
def test_members_reordered(members, trust_v2, bad, swap, blamed):
    out = list(members)
    i, j = swap
    out[i], out[j] = out[j], out[i]
    write_members(bad, out)
    assert_rejected(verify_bundle(bad, trust_v2), "E_MEMBER_ORDER", "out of order",
                    member=blamed)


def test_members_reordered_cli(members, trust_file, bad):
    write_members(bad, [members[1], members[0], *members[2:]])
    assert_cli_verify_rejects(bad, trust_file, "E_MEMBER_ORDER")


def test_too_many_members(members, trust_v2, bad):
    licenses = [(f"licenses/l{i:04d}.lic", b"x") for i in range(600)]
    write_members(bad, [*members, *licenses])
    assert_rejected(verify_bundle(bad, trust_v2), "E_TOO_MANY_MEMBERS", "more than 512")


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("where", [
    "inside the first header (magic visible)",
    "inside the manifest data",
    "inside the second header",
    "inside the payload data",
    "inside the payload padding",
    "between members",
    "inside the signature data",
    "inside the end-of-archive marker",
    "before the end-of-archive marker",
])
def test_truncated_bundle(signed_bundle, trust_v2, members, where):
    offsets = member_offsets(signed_bundle)
    total = signed_bundle.stat().st_size
    sig = sig_name(members)
    _, pay_data, pay_size = offsets[PAYLOAD]
    cut = {
        "inside the first header (magic visible)": 300,
        "inside the manifest data": offsets[MANIFEST][1] + 10,
        "inside the second header": offsets[SBOM][0] + 100,
        "inside the payload data": pay_data + pay_size // 2,
        "inside the payload padding": pay_data + pay_size + 1,
        "between members": offsets[sig][0],
        "inside the signature data": offsets[sig][1] + 5,
        "inside the end-of-archive marker": total - BLOCK // 2,
        "before the end-of-archive marker": total - 2 * BLOCK,
    }[where]
    assert pay_size % BLOCK != 0  # there is padding to cut into
    with open(signed_bundle, "r+b") as handle:
        handle.truncate(cut)
    report = verify_bundle(signed_bundle, trust_v2)
    assert_rejected(report, "E_TRUNCATED")
    assert "truncated" in report.error.message or "ends inside" in report.error.message


def test_truncated_bundle_cli(signed_bundle, trust_file):
    with open(signed_bundle, "r+b") as handle:
        handle.truncate(signed_bundle.stat().st_size // 2)
    assert_cli_verify_rejects(signed_bundle, trust_file, "E_TRUNCATED")


# --------------------------------------------------------------------------- not a bundle


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("oemkit-bundle.json", "{}")
    return buf.getvalue()


@pytest.mark.parametrize("kind", [
    "empty", "random bytes", "short random bytes", "zip archive", "zip padded to 4 KiB",
    "json file", "trust root passed as the bundle", "gzip header",
])
def test_not_a_bundle(tmp_path, trust_v2, kind):
    data = {
        "empty": b"",
        "random bytes": random.Random(7).randbytes(8192),
        "short random bytes": random.Random(8).randbytes(100),
        "zip archive": _zip_bytes(),
        "zip padded to 4 KiB": _zip_bytes().ljust(4096, b"\0"),
        "json file": b'{"name": "example", "version": "0.1.0"}\n',
        "trust root passed as the bundle": trust_v2,
        "gzip header": b"\x1f\x8b\x08\x00" + bytes(2000),
    }[kind]
    path = tmp_path / "not-a-bundle.oemb"
    path.write_bytes(data)
    report = verify_bundle(path, trust_v2)
    assert_rejected(report, "E_NOT_A_BUNDLE")
    assert "empty" in report.error.message if kind == "empty" else (
        "not an oemkit bundle" in report.error.message)


def test_not_a_bundle_cli(tmp_path, trust_file):
    path = tmp_path / "model.zip"
    path.write_bytes(_zip_bytes())
    assert_cli_verify_rejects(path, trust_file, "E_NOT_A_BUNDLE")


# --------------------------------------------------------------------------- archive framing


@pytest.mark.parametrize("trailing", [
    b"x", b"#!/bin/sh\necho pwned\n", bytes(100) + b"\x01", bytes(20 * BLOCK + 1)])
def test_data_after_end_of_archive(members, trust_v2, bad, trailing):
    write_members(bad, members, trailing=trailing)
    assert_rejected(verify_bundle(bad, trust_v2), "E_TAR_TRAILING",
                    "follow the end-of-archive marker")


def test_zero_record_padding_after_end_of_archive_is_accepted(members, trust_v2, bad):
    # GNU tar pads the archive to a 10 KiB record; that much zero padding is not an attack.
    write_members(bad, members, trailing=bytes(20 * BLOCK - 2 * BLOCK))
    assert verify_bundle(bad, trust_v2).ok


def test_data_after_end_of_archive_cli(members, trust_file, bad):
    write_members(bad, members, trailing=b"PK\x03\x04 smuggled")
    assert_cli_verify_rejects(bad, trust_file, "E_TAR_TRAILING")


@pytest.mark.parametrize("member", [MANIFEST, PAYLOAD])
def test_nonzero_bytes_in_padding(signed_bundle, trust_v2, member):
    _, data_offset, size = member_offsets(signed_bundle)[member]
    assert len(padding(size)) > 0
    flip_byte(signed_bundle, data_offset + size + len(padding(size)) - 1)
    assert_rejected(verify_bundle(signed_bundle, trust_v2), "E_TAR_PADDING",
                    "non-zero padding", member=member)


def _raw_header(info: tarfile.TarInfo) -> bytes:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _write_raw(path, members, replace: str, raw: bytes) -> None:
    """Members as usual, but ``replace``'s header+data+padding swapped for ``raw``."""
    buf = io.BytesIO()
    for name, data in members:
        if name == replace:
            buf.write(raw)
        else:
            write_member(buf, name, data)
    buf.write(END_OF_ARCHIVE)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize(("typeflag", "label"), [
    (tarfile.SYMTYPE, "symlink"), (tarfile.LNKTYPE, "hardlink"), (tarfile.DIRTYPE, "directory"),
    (tarfile.CHRTYPE, "character device"), (tarfile.FIFOTYPE, "fifo"),
])
def test_non_regular_outer_member(members, trust_v2, bad, typeflag, label):
    info = tarfile.TarInfo(SBOM)
    info.type = typeflag
    info.linkname = "/etc/passwd" if typeflag in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    header = _raw_header(info)
    if typeflag == tarfile.DIRTYPE:  # tarfile appends '/', which the name check would catch
        header = _fix_name(header, SBOM)
    _write_raw(bad, members, SBOM, header)
    assert_rejected(verify_bundle(bad, trust_v2), "E_MEMBER_TYPE", "not a regular file",
                    member=SBOM)


def _fix_name(header: bytes, name: str) -> bytes:
    """Rewrite the name field of a ustar header and recompute its checksum."""
    block = bytearray(header)
    block[0:100] = name.encode().ljust(100, b"\0")
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def test_symlink_outer_member_cli(members, trust_file, bad):
    info = tarfile.TarInfo(SBOM)
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/shadow"
    _write_raw(bad, members, SBOM, _raw_header(info))
    assert_cli_verify_rejects(bad, trust_file, "E_MEMBER_TYPE")


@pytest.mark.parametrize("name", ["../oemkit-bundle.json", "/etc/passwd", "signatures/../x",
                                  "trust/a/b.json", ".hidden"])
def test_outer_member_with_unsafe_name(members, trust_v2, bad, name):
    write_members(bad, [*members, (name, b"{}")])
    assert_rejected(verify_bundle(bad, trust_v2), "E_MEMBER_NAME", "not allowed")


def test_damaged_header_checksum(signed_bundle, trust_v2):
    header, _, _ = member_offsets(signed_bundle)[SBOM]
    flip_byte(signed_bundle, header + 150)  # inside the stored checksum
    assert_rejected(verify_bundle(signed_bundle, trust_v2), "E_TAR_CHECKSUM",
                    "checksum mismatch")


# --------------------------------------------------------------------------- random damage


def test_random_byte_changes_are_always_a_coded_rejection(signed_bundle, trust_v2, bad):
    """Seeded random damage anywhere in the file: never a crash, never accepted, except in
    the signature wrapper's unauthenticated hint (ignored by design)."""
    original = signed_bundle.read_bytes()
    offsets = member_offsets(signed_bundle)
    sig_start, sig_end = next((d, d + s) for n, (_, d, s) in offsets.items()
                              if n.startswith(SIG))
    rng = random.Random(20240601)
    for _ in range(250):
        data = bytearray(original)
        pos = rng.randrange(len(data))
        data[pos] = (data[pos] + rng.randrange(1, 256)) % 256
        bad.write_bytes(bytes(data))
        report = verify_bundle(bad, trust_v2)
        if report.ok:
            assert sig_start <= pos < sig_end, pos
            assert b'"publicKey"' in original[sig_start:sig_end]
            continue
        assert report.error.code.startswith("E_") and report.error.message, pos
        assert report.error.code != "E_INTERNAL"
