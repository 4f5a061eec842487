"""Hostile payloads inside a correctly signed bundle.

Every bundle here is forged with the library's own writers and signed by the trusted
bundle key, so the only thing wrong with it is the payload under attack. The manifest
entries stay benign (the manifest model refuses unsafe paths itself); the hostile names
and types live only in the inner tar.
"""

from __future__ import annotations

import io
import random
import tarfile
import tracemalloc

import pytest
import zstandard

from helpers import entry, forge_bundle, regular, replace_member, tar_bytes, write_members
from hostile._support import assert_cli_verify_rejects, assert_rejected, copy_example_spec
from oemkit.release.bundle import build_bundle
from oemkit.release.sign import sign_bundle
from oemkit.verify.bundle import verify_bundle

A, B = b"first file\n", b"second file\n"


def files(*items):
    """Manifest entries from (path, data) or (path, data, mode)."""
    return [entry(*item) for item in items]


@pytest.fixture
def forge(bad, keys):
    """forge(inner_tar_entries, manifest_pairs, **kw) -> signed bundle path."""
    def make(tar_entries, manifest_pairs, **kw):
        return forge_bundle(bad, tar_bytes(tar_entries), files(*manifest_pairs),
                            [keys["bundle"]], **kw)
    return make


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


def test_forged_control_bundle_verifies(forge, trust_v2):
    """The forging path itself yields bundles that verify: each attack below is the only
    thing wrong with its bundle."""
    path = forge([regular("a.txt", A), regular("bin/run", B, 0o755)],
                 [("a.txt", A), ("bin/run", B, 0o755)])
    report = verify_bundle(path, trust_v2)
    assert report.ok, report.to_dict()
    assert report.files == 2 and report.payload_bytes == len(A) + len(B)


# --------------------------------------------------------------------------- unsafe entries


@pytest.mark.parametrize(("hostile", "words"), [
    (regular("/etc/cron.d/pwned", b"* * * * * root sh\n"), ("absolute path",)),
    (regular("../escape.txt", b"out"), ("'..'",)),
    (regular("a/../../escape.txt", b"out"), ("'..'",)),
    (regular("./b.txt", B), ("'.'",)),
    (regular("C:/Windows/evil.dll", b"MZ"), ("absolute path",)),
    (regular("b\\..\\..\\evil", b"x"), ("backslash",)),
    (regular("b\x1b[31m.txt", b"x"), ("control character",)),
    (special("b.txt", tarfile.SYMTYPE, "/etc/passwd"), ("symlink",)),
    (special("b.txt", tarfile.LNKTYPE, "a.txt"), ("hardlink",)),
    (special("b.txt", tarfile.CHRTYPE), ("device file",)),
    (special("b.txt", tarfile.BLKTYPE), ("device file",)),
    (special("b.txt", tarfile.FIFOTYPE), ("FIFO",)),
    (special("b.txt", tarfile.DIRTYPE), ("directory",)),
], ids=["absolute", "dotdot", "nested-dotdot", "dot", "drive-letter", "backslash", "control",
        "symlink", "hardlink", "char-device", "block-device", "fifo", "directory"])
def test_unsafe_payload_entry(forge, trust_v2, hostile, words):
    path = forge([regular("a.txt", A), hostile], [("a.txt", A), ("b.txt", B)])
    name = hostile[0].name
    report = verify_bundle(path, trust_v2)
    assert_rejected(report, "E_PAYLOAD_UNSAFE", *words, member=name)
    assert name in report.error.message or repr(name) in report.error.message


def test_symlink_payload_entry_cli(forge, trust_file):
    path = forge([special("a.txt", tarfile.SYMTYPE, "/etc/shadow")], [("a.txt", A)])
    assert_cli_verify_rejects(path, trust_file, "E_PAYLOAD_UNSAFE")


def test_duplicate_payload_entry(forge, trust_v2):
    path = forge([regular("a.txt", A), regular("a.txt", A)], [("a.txt", A)])
    assert_rejected(verify_bundle(path, trust_v2), "E_PAYLOAD_DUPLICATE", "a.txt",
                    "appears twice", member="a.txt")


def test_duplicate_payload_entry_overriding_content(forge, trust_v2):
    # tar extractors keep the last copy: the second a.txt would silently win
    path = forge([regular("a.txt", A), regular("a.txt", b"evil file\n"[:len(A)])],
                 [("a.txt", A)])
    assert_rejected(verify_bundle(path, trust_v2), "E_PAYLOAD_DUPLICATE", member="a.txt")


def test_payload_entry_not_in_manifest(forge, trust_v2):
    path = forge([regular("a.txt", A), regular("z-backdoor.py", b"import os")],
                 [("a.txt", A)])
    assert_rejected(verify_bundle(path, trust_v2), "E_PAYLOAD_EXTRA", "z-backdoor.py",
                    "not in the manifest", member="z-backdoor.py")


@pytest.mark.parametrize(("tar_names", "missing"), [
    (["a.txt"], "b.txt"),        # last one missing
    (["b.txt"], "a.txt"),        # first one missing
    ([], "a.txt"),               # empty tar
])
def test_manifest_file_missing_from_payload(forge, trust_v2, tar_names, missing):
    data = {"a.txt": A, "b.txt": B}
    path = forge([regular(n, data[n]) for n in tar_names], [("a.txt", A), ("b.txt", B)])
    assert_rejected(verify_bundle(path, trust_v2), "E_PAYLOAD_MISSING", missing, "missing",
                    member=missing)


@pytest.mark.parametrize("names", [
    ("README.txt", "readme.txt"),
    ("Model/x.onnx", "model/x.onnx"),
    ("file.txt", "\ufb01le.txt"),           # 'ﬁ' ligature folds to 'fi' (NFKC)
], ids=["case", "case-in-directory", "compatibility-ligature"])
def test_case_colliding_payload_names(forge, trust_v2, names):
    pairs = sorted(((n, n.encode()) for n in names), key=lambda p: p[0].encode())
    path = forge([regular(n, d) for n, d in pairs], pairs)
    second = pairs[1][0]
    assert_rejected(verify_bundle(path, trust_v2), "E_PAYLOAD_UNSAFE", "collide",
                    "case-insensitive", member=second)


@pytest.mark.parametrize(("names", "blamed", "words"), [
    (("lib", "lib/evil.so"), "lib/evil.so", ("which is a file",)),
    (("Lib/evil.so", "lib"), "lib", ("is a directory",)),
], ids=["file-then-child", "case-folded-dir-then-file"])
def test_payload_file_also_used_as_directory(forge, trust_v2, names, blamed, words):
    pairs = [(n, n.encode()) for n in names]
    path = forge([regular(n, d) for n, d in pairs], pairs)
    assert_rejected(verify_bundle(path, trust_v2), "E_PAYLOAD_UNSAFE", *words, member=blamed)


# --------------------------------------------------------------------------- changed files


def test_payload_file_content_changed(forge, trust_v2):
    evil = b"EVIL file\n"[:len(A)].ljust(len(A), b"!")
    assert evil != A and len(evil) == len(A)
    path = forge([regular("a.txt", evil), regular("b.txt", B)], [("a.txt", A), ("b.txt", B)])
    assert_rejected(verify_bundle(path, trust_v2), "E_PAYLOAD_DIGEST", "a.txt",
                    "does not match its manifest digest", member="a.txt")


def test_payload_file_content_changed_cli(forge, trust_file):
    path = forge([regular("a.txt", A), regular("b.txt", B.upper())],
                 [("a.txt", A), ("b.txt", B)])
    assert_cli_verify_rejects(path, trust_file, "E_PAYLOAD_DIGEST")


def test_payload_file_size_changed(forge, trust_v2):
    path = forge([regular("a.txt", A + b"more")], [("a.txt", A)])
    assert_rejected(verify_bundle(path, trust_v2), "E_PAYLOAD_SIZE", "a.txt", member="a.txt")


def test_payload_file_made_executable(forge, trust_v2):
    path = forge([regular("a.txt", A, mode=0o755)], [("a.txt", A)])
    assert_rejected(verify_bundle(path, trust_v2), "E_PAYLOAD_MODE", "755", "644",
                    member="a.txt")


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o1644, 0o666])
def test_payload_file_with_special_mode_bits(forge, trust_v2, mode):
    path = forge([regular("a.txt", A, mode=mode)], [("a.txt", A)])
    assert_rejected(verify_bundle(path, trust_v2), "E_PAYLOAD_MODE", f"{mode:o}",
                    member="a.txt")


def test_payload_entries_reordered(forge, trust_v2):
    path = forge([regular("b.txt", B), regular("a.txt", A)], [("a.txt", A), ("b.txt", B)])
    report = verify_bundle(path, trust_v2)
    # b.txt arrives where a.txt belongs: a.txt is reported missing (it is not seen yet)
    assert_rejected(report, "E_PAYLOAD_MISSING", "a.txt", member="a.txt")


# --------------------------------------------------------------------------- compression


def _zeros_bomb(name: str, declared: int, zeros: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    """zstd of a tar whose one entry declares ``declared`` bytes and is followed by
    ``zeros`` zero bytes, compressed as a stream so the test never holds them in memory."""
    info = tarfile.TarInfo(name)
    info.size = declared
    info.mode = 0o644
    info.type = kind
    cctx = zstandard.ZstdCompressor(level=1)
    out = io.BytesIO()
    with cctx.stream_writer(out, closefd=False) as writer:
        writer.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        if kind == tarfile.REGTYPE and declared <= 512:
            writer.write(b"0123456789"[:declared].ljust(declared, b"0"))
            writer.write(bytes(-declared % 512))
        block = bytes(1 << 20)
        for _ in range(zeros >> 20):
            writer.write(block)
        writer.write(bytes(zeros & ((1 << 20) - 1)))
    return out.getvalue()


def _peak_during(fn):
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_zstd_bomb_is_stopped_in_bounded_memory(bad, keys, trust_v2):
    ten = b"0123456789"
    compressed = _zeros_bomb("a.txt", 10, 1 << 30)    # 1 GiB of zeros in ~32 KiB
    assert len(compressed) < 64 << 10
    forge_bundle(bad, b"", files(("a.txt", ten)), [keys["bundle"]], compressed=compressed)
    report, peak = _peak_during(lambda: verify_bundle(bad, trust_v2))
    assert_rejected(report, "E_PAYLOAD_BOMB", "decompresses past its declared size",
                    member="payload.tar.zst")
    assert peak < 32 << 20, f"peak {peak} bytes while refusing a bomb"


def test_pax_header_bomb_is_stopped_in_bounded_memory(bad, keys, trust_v2):
    """A PAX extended header claiming 1 GiB: tarfile would read it whole into memory."""
    compressed = _zeros_bomb("a.txt", 1 << 30, 1 << 30, kind=tarfile.XHDTYPE)
    forge_bundle(bad, b"", files(("a.txt", b"0123456789")), [keys["bundle"]],
                 compressed=compressed)
    report, peak = _peak_during(lambda: verify_bundle(bad, trust_v2))
    assert_rejected(report, "E_PAYLOAD_BOMB", "decompresses past its declared size",
                    member="payload.tar.zst")
    assert peak < 32 << 20, f"peak {peak} bytes while refusing a bomb"


def test_payload_entry_header_claiming_a_huge_size(bad, keys, trust_v2):
    forge_bundle(bad, b"", files(("a.txt", b"0123456789")), [keys["bundle"]],
                 compressed=_zeros_bomb("a.txt", (1 << 33) - 1, 0))
    assert_rejected(verify_bundle(bad, trust_v2), "E_PAYLOAD_SIZE", "a.txt",
                    str((1 << 33) - 1), member="a.txt")


def test_zstd_bomb_swapped_into_a_genuine_bundle(signed_bundle, members, bad, trust_v2):
    """An unsigned bomb of exactly the genuine payload's size: rejected as not the signed
    payload, without ever inflating it."""
    genuine = dict(members)["payload.tar.zst"]
    bomb = _zeros_bomb("config/config.json", 107, 64 << 20)
    gap = len(genuine) - len(bomb) - 8
    assert gap >= 0
    skippable = b"\x50\x2a\x4d\x18" + gap.to_bytes(4, "little") + bytes(gap)
    write_members(bad, replace_member(members, "payload.tar.zst", bomb + skippable))
    report, peak = _peak_during(lambda: verify_bundle(bad, trust_v2))
    assert_rejected(report, "E_PAYLOAD_DIGEST", "payload.tar.zst", "does not match",
                    member="payload.tar.zst")
    assert peak < 32 << 20, f"peak {peak} bytes while refusing a bomb"


def test_zstd_bomb_cli(bad, keys, trust_file):
    forge_bundle(bad, b"", files(("a.txt", b"0123456789")), [keys["bundle"]],
                 compressed=_zeros_bomb("a.txt", 10, 64 << 20))
    assert_cli_verify_rejects(bad, trust_file, "E_PAYLOAD_BOMB")


def test_zstd_bomb_hint_names_the_bound_a_legitimate_bundle_can_raise(bad, keys, trust_file):
    import json

    from hostile._support import cli

    forge_bundle(bad, b"", files(("a.txt", b"0123456789")), [keys["bundle"]],
                 compressed=_zeros_bomb("a.txt", 10, 64 << 20))
    result = cli("verify", bad, "--trust", trust_file, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_PAYLOAD_BOMB"
    assert "decompresses past its declared size" in error["message"]
    assert "legitimate" in error["hint"] and "--max-payload-bytes" in error["hint"]
    assert "obtain a fresh copy" in error["hint"]


@pytest.mark.parametrize(("compressed", "words"), [
    (b"this is not zstd at all" * 40, ("not valid zstd", "Unknown frame descriptor")),
    (b"\x28\xb5\x2f\xfd" + b"\xff" * 200, ("not valid zstd",)),
    (zstandard.ZstdCompressor().compress(tar_bytes([regular("a.txt", A)])) + b"trailing junk",
     ("not valid zstd",)),
], ids=["garbage", "magic-then-garbage", "trailing-garbage"])
def test_payload_is_not_valid_zstd(bad, keys, trust_v2, compressed, words):
    forge_bundle(bad, b"", files(("a.txt", A)), [keys["bundle"]], compressed=compressed)
    assert_rejected(verify_bundle(bad, trust_v2), "E_PAYLOAD_CORRUPT", *words,
                    member="payload.tar.zst")


def test_payload_is_zstd_but_not_a_tar(bad, keys, trust_v2):
    compressed = zstandard.ZstdCompressor().compress(b"plain text, not a tar\n" * 100)
    forge_bundle(bad, b"", files(("a.txt", A)), [keys["bundle"]], compressed=compressed)
    assert_rejected(verify_bundle(bad, trust_v2), "E_PAYLOAD_CORRUPT", "not a valid tar",
                    member="payload.tar.zst")


def test_payload_tar_cut_short(bad, keys, trust_v2):
    inner = tar_bytes([regular("a.txt", A * 100)])
    forge_bundle(bad, inner[:700], files(("a.txt", A * 100)), [keys["bundle"]])
    assert_rejected(verify_bundle(bad, trust_v2), "E_PAYLOAD_CORRUPT",
                    member="payload.tar.zst")


def test_garbage_payload_cli(bad, keys, trust_file):
    forge_bundle(bad, b"", files(("a.txt", A)), [keys["bundle"]], compressed=b"garbage" * 50)
    assert_cli_verify_rejects(bad, trust_file, "E_PAYLOAD_CORRUPT")


def test_long_paths_are_not_mistaken_for_a_bomb(tmp_path, keys, trust_v2):
    """Long names cost PAX headers in the tar; a genuine bundle full of them must verify."""
    spec = copy_example_spec(tmp_path)
    deep = spec.joinpath(*["d" * 200] * 9)
    deep.mkdir(parents=True)
    for i in range(60):
        (deep / f"f{i:03d}").write_bytes(b"x")
    yaml = (spec / "bundle.yaml").read_text().replace("files: []", f"files: ['{'d' * 200}']")
    (spec / "bundle.yaml").write_text(yaml)
    result = build_bundle(spec / "bundle.yaml", tmp_path / "out", source_date_epoch_override=0)
    sign_bundle(result.path, [keys["bundle"]])
    report = verify_bundle(result.path, trust_v2)
    assert report.ok, report.to_dict()
    assert report.files == 69


def test_random_damage_to_a_signed_inner_tar_is_never_a_crash(bad, keys, trust_v2):
    """Seeded random damage to the tar inside a validly signed bundle: every outcome is a
    report, and every rejection a payload code (acceptance means each file still hashed to
    its manifest digest, e.g. damage in a PAX record nobody reads)."""
    names = ["a.txt", "b/" + "c" * 150, "d\u00e9.txt"]  # plain, PAX long name, PAX UTF-8
    pairs = sorted(((n, n.encode() * 20) for n in names), key=lambda p: p[0].encode())
    inner = tar_bytes([regular(n, d) for n, d in pairs])
    rng = random.Random(7)
    outcomes = set()
    for _ in range(150):
        damaged = bytearray(inner)
        for _ in range(rng.choice([1, 2, 4])):
            pos = min(rng.randrange(3 * 1024), len(damaged) - 1)
            damaged[pos] = rng.choice([0, 0xFF, ord("0"), ord("7"), ord(" "), rng.randrange(256)])
        forge_bundle(bad, b"", files(*pairs), [keys["bundle"]],
                     compressed=zstandard.ZstdCompressor().compress(bytes(damaged)))
        report = verify_bundle(bad, trust_v2)
        outcomes.add(report.error.code if report.error else "ok")
        if not report.ok:
            assert report.error.code.startswith("E_PAYLOAD_"), report.to_dict()
    assert {"E_PAYLOAD_CORRUPT", "E_PAYLOAD_DIGEST"} <= outcomes
