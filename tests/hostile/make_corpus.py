"""Regenerate the hostile-input corpus in ``tests/hostile/corpus/`` (deterministically).

    python tests/hostile/make_corpus.py            # rewrite tests/hostile/corpus/
    python tests/hostile/make_corpus.py --out DIR  # write somewhere else (the drift test)

One small file per attack, named after it, and ``INDEX.json`` saying for each file what it
tries, the ``oemkit`` command that judges it and the error code and exit status that
command must give. ``tests/hostile/test_corpus.py`` runs every entry; ``fuzz/`` seeds its
fuzzers from these files; ``docs/SECURITY.md`` tables them.

Everything here is a pure function of the example keys (``keys-example/``, Ed25519, so
signatures are deterministic) and fixed times: running this twice gives the same bytes.
``corpus/regressions/`` (inputs the fuzzers found) is kept as it is.

Bundles that attack something deeper than the signature are validly signed by the trusted
example bundle key, so the attack is the only thing wrong with them.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import io
import json
import shutil
import struct
import sys
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import zstandard  # noqa: E402

from helpers import (  # noqa: E402
    EXAMPLE,
    KEYS,
    PASSPHRASE,
    entry,
    forged_model,
    regular,
    sign_members,
    tar_bytes,
)
from oemkit._canonical import canonical_json, sha256_hex  # noqa: E402
from oemkit._fs import END_OF_ARCHIVE, write_member  # noqa: E402
from oemkit._time import UTC, from_epoch  # noqa: E402
from oemkit.crypto.armor import armor, sign_document  # noqa: E402
from oemkit.crypto.dsse import INTOTO_PAYLOAD_TYPE, make_envelope  # noqa: E402
from oemkit.crypto.keys import PrivateKeyInfo, key_id, load_private_file  # noqa: E402
from oemkit.models.license import (  # noqa: E402
    CRL_PAYLOAD_TYPE,
    LICENSE_PAYLOAD_TYPE,
    LicenseClaims,
)
from oemkit.models.manifest import FileEntry, Manifest, MemberDigest, Runtime  # noqa: E402
from oemkit.models.trust import TRUST_ROOT_PAYLOAD_TYPE  # noqa: E402
from oemkit.release.licensing import issue_crl, issue_license  # noqa: E402
from oemkit.release.provenance import make_statement  # noqa: E402
from oemkit.release.sbom import make_sbom  # noqa: E402
from oemkit.release.trust import add_key, init_root  # noqa: E402
from oemkit.verify.trust import parse_root  # noqa: E402

CORPUS = Path(__file__).resolve().parent / "corpus"
TRUST = "trust-root.json"
SPEC_MODEL = "spec-model.onnx"
ISSUED = dt.datetime(2024, 1, 1, tzinfo=UTC)
BLOCK = 512
GIB = 1 << 30
#: sha256 of 1 GiB of zero bytes (hashlib, checked by test_corpus.py).
SHA256_GIB_ZEROS = "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14"

# --------------------------------------------------------------------------- commands

VERIFY = ["verify", "{corpus}/{file}", "--trust", "{corpus}/" + TRUST,
          "--state", "{tmp}/state.json", "--json"]
PINNED = ["verify", "{corpus}/control-bundle-valid.oemb", "--trust", "{corpus}/{file}",
          "--state", "{tmp}/state.json", "--json"]
LICENSE = ["license", "verify", "{corpus}/{file}", "--trust", "{corpus}/" + TRUST,
           "--state", "{tmp}/state.json", "--json"]
CRL = ["license", "verify", "{corpus}/control-license-valid.lic", "--trust",
       "{corpus}/" + TRUST, "--crl", "{corpus}/{file}", "--state", "{tmp}/state.json",
       "--json"]
SPEC = ["build", "{work}/{file}", "--out", "{tmp}/out", "--json"]
PROFILE = ["profile", "show", "{corpus}/{file}", "--json"]
FINGERPRINT = ["license", "issue", "--key", "{repo}/keys-example/license.key",
               "--customer", "acme", "--customer-name", "ACME Corp", "--product", "vision",
               "--expires", "2099-01-01", "--hardware", "{corpus}/{file}",
               "--out", "{tmp}/issued.lic", "--json"]
COMMANDS = {"bundle": VERIFY, "trust-root": PINNED, "license": LICENSE, "crl": CRL,
            "spec": SPEC, "profile": PROFILE, "fingerprint": FINGERPRINT}
#: Kind ``cli``: any other command (inspect, sbom, migrate, join, install, ...), given whole
#: per case (``command=``); ``setup`` then prepares {work} as for spec cases.
PASSPHRASE_ENV = {"OEMKIT_KEY_PASSPHRASE": PASSPHRASE.decode()}


class Corpus:
    """Collects (file, bytes) and the INDEX entries describing them."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.index: list[dict[str, Any]] = []

    def add(self, file: str, kind: str, tries: str, data: bytes, code: str | None,
            exit_code: int, *, args: Sequence[str] = (), rss: bool = False,
            setup: dict[str, Any] | None = None, command: Sequence[str] | None = None) -> None:
        """One case. ``args``: extra options for the command (limits); ``rss``: also run
        in a child process and bound its peak memory; ``setup`` (spec cases): extra files
        and symlinks made next to the copied spec; ``command`` (kind ``cli``): the whole
        command, with the same placeholders. Cases that oemkit still gets wrong are
        listed, with the bug, in test_corpus.py's PENDING_FIXES."""
        assert file not in self.files and "/" not in file, file
        assert len(data) < 200_000, (file, len(data))
        assert (command is None) == (kind != "cli"), (file, kind)
        self.files[file] = data
        base = COMMANDS[kind] if command is None else command
        command = [part.replace("{file}", file) for part in base]
        command += list(args)
        item: dict[str, Any] = {"file": file, "kind": kind, "tries": tries,
                                "command": command, "code": code, "exit": exit_code}
        if kind == "fingerprint":
            item["env"] = PASSPHRASE_ENV
        if rss:
            item["rss"] = True
        if setup:
            item["setup"] = setup
        self.index.append(item)

    def aux(self, file: str, data: bytes) -> None:
        """A helper file that is not a case by itself (the trust root, the spec model)."""
        self.files[file] = data


# --------------------------------------------------------------------------- keys and roots


def load_keys() -> dict[str, PrivateKeyInfo]:
    return {n: load_private_file(KEYS / f"{n}.key", PASSPHRASE)
            for n in ("root", "bundle", "license", "crl")}


def seeded_key(seed: int, name: str) -> PrivateKeyInfo:
    """A deterministic Ed25519 key that no trust root lists."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(
        b"oemkit hostile corpus %d" % seed).digest())
    public = private.public_key()
    return PrivateKeyInfo(private, public, "ed25519", key_id(public), name)


def make_root(keys: dict[str, PrivateKeyInfo]) -> bytes:
    """The corpus trust root (v4): root key, then bundle, license and crl keys, each added
    as a new version, as tests/conftest.py does for v1 and v2."""
    doc = init_root([keys["root"]], names=["root"], issued=ISSUED)
    for usage in ("bundle", "license", "crl"):
        doc = add_key(parse_root(doc), keys[usage].public, [usage], [keys["root"]],  # type: ignore[list-item]
                      name=usage, issued=ISSUED)
    return doc


# --------------------------------------------------------------------------- tar builders


def ustar(name: bytes, size: int = 0, *, typeflag: bytes = b"0", linkname: bytes = b"",
          prefix: bytes = b"", size_field: bytes | None = None, magic: bytes = b"ustar\x00",
          mode: bytes = b"0000644\x00", checksum_delta: int = 0) -> bytes:
    """One raw 512-byte ustar header, field by field (checksum correct unless told)."""
    block = bytearray(BLOCK)
    block[0:len(name)] = name[:100]
    block[100:108] = mode
    block[108:116] = b"0000000\x00"
    block[116:124] = b"0000000\x00"
    assert size <= 0o77777777777, "ustar sizes end at 8 GiB - 1; use a pax header"
    block[124:136] = size_field if size_field is not None else b"%011o\x00" % size
    block[136:148] = b"00000000000\x00"
    block[156:157] = typeflag
    block[157:157 + len(linkname)] = linkname
    block[257:265] = magic + b"00" if len(magic) == 6 else magic
    block[345:345 + len(prefix)] = prefix
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % (sum(block) + checksum_delta)
    return bytes(block)


def pax_record(key: str, value: str) -> bytes:
    """One pax record ``"<len> key=value\\n"``, ``<len>`` counting the whole record."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def outer(members: Sequence[tuple[str, bytes]], trailing: bytes = b"") -> bytes:
    """An outer archive with oemkit's own member writer."""
    buf = io.BytesIO()
    for name, data in members:
        write_member(buf, name, data)
    buf.write(END_OF_ARCHIVE)
    buf.write(trailing)
    return buf.getvalue()


def outer_raw(members: Sequence[tuple[str, bytes]], replace: dict[str, bytes],
              trailing: bytes = b"", end: bytes = END_OF_ARCHIVE) -> bytes:
    """Members as usual, but each name in ``replace`` written as the given raw bytes."""
    buf = io.BytesIO()
    for name, data in members:
        if name in replace:
            buf.write(replace[name])
        else:
            write_member(buf, name, data)
    buf.write(end)
    buf.write(trailing)
    return buf.getvalue()


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


# --------------------------------------------------------------------------- zstd by hand


def zstd_frame(blocks: Sequence[bytes], window_log: int = 17) -> bytes:
    """A zstd frame around ready-made blocks (no content size, no checksum)."""
    exponent = window_log - 10
    return struct.pack("<IBB", 0xFD2FB528, 0x00, exponent << 3) + b"".join(blocks)


def raw_block(data: bytes, last: bool = False) -> bytes:
    assert len(data) <= 1 << 17
    header = int(last) | (0 << 1) | (len(data) << 3)
    return header.to_bytes(3, "little") + data


def rle_block(byte: int, count: int, last: bool = False) -> bytes:
    assert count <= 1 << 17
    header = int(last) | (1 << 1) | (count << 3)
    return header.to_bytes(3, "little") + bytes([byte])


def zero_bomb(prefix: bytes, zeros: int, window_log: int = 17) -> bytes:
    """zstd that inflates to ``prefix`` then ``zeros`` zero bytes, in RLE blocks (~4 bytes
    per 128 KiB): a ratio of about 32000:1, written without ever holding the zeros."""
    blocks = [raw_block(prefix[i:i + (1 << 17)]) for i in range(0, len(prefix), 1 << 17)]
    step = 1 << 17
    full, rest = divmod(zeros, step)
    blocks += [rle_block(0, step)] * full
    if rest:
        blocks.append(rle_block(0, rest))
    blocks[-1] = bytes([blocks[-1][0] | 1]) + blocks[-1][1:]  # last block
    return zstd_frame(blocks, window_log)


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)


# --------------------------------------------------------------------------- bundles

A, B, C = b"first file\n", b"#!/bin/sh\necho run\n", b"onnx model bytes\n"
FILES = [("a.txt", A, 0o644), ("bin/run", B, 0o755), ("model/model.onnx", C, 0o644)]


class Forge:
    """Signed bundles around arbitrary parts, built with oemkit's own writers."""

    def __init__(self, keys: dict[str, PrivateKeyInfo]) -> None:
        self.keys = keys
        self.when = from_epoch(0)

    def parts(self, files: Sequence[tuple[str, bytes, int]] = tuple(FILES), *,
              inner: bytes | None = None, payload: bytes | None = None,
              entries: Sequence[FileEntry] | None = None,
              manifest_edit: Callable[[dict[str, Any]], None] | None = None,
              manifest_bytes: bytes | None = None, sbom: bytes | None = None,
              provenance_edit: Callable[[dict[str, Any]], None] | None = None,
              provenance_bytes: bytes | None = None,
              extra: Sequence[tuple[str, bytes]] = (), tail: Sequence[tuple[str, bytes]] = (),
              signers: Sequence[PrivateKeyInfo] | None = None) -> list[tuple[str, bytes]]:
        """Members of a bundle signed by the trusted bundle key. ``extra``: listed members
        between provenance and payload (trust roots, CRL); ``tail``: after signatures."""
        if entries is None:
            entries = [entry(p, d, m) for p, d, m in files]
        if payload is None:
            if inner is None:
                inner = tar_bytes([regular(p, d, m) for p, d, m in files])
            payload = zstd(inner)
        if sbom is None:
            sbom = make_sbom("hostile", "1.0.0", "", list(entries), forged_model(entries),
                             self.when)
        members = {"sbom.cdx.json": MemberDigest(sha256_hex(sbom), len(sbom)),
                   "payload.tar.zst": MemberDigest(sha256_hex(payload), len(payload))}
        for name, data in extra:
            members[name] = MemberDigest(sha256_hex(data), len(data))
        manifest = Manifest(name="hostile", version="1.0.0", build_time="1970-01-01T00:00:00Z",
                            builder={"name": "oemkit", "version": "corpus"},
                            runtime=Runtime(model=forged_model(entries)), files=tuple(entries),
                            members=members)
        if manifest_bytes is None:
            doc = manifest.to_dict()
            if manifest_edit:
                manifest_edit(doc)
            manifest_bytes = canonical_json(doc)
        if provenance_bytes is None:
            provenance_bytes = make_statement(
                {"oemkit-bundle.json": sha256_hex(manifest_bytes),
                 "payload.tar.zst": sha256_hex(payload)},
                spec_name="bundle.yaml", spec_sha256="0" * 64, options={}, dependencies=[],
                build_time=self.when)
            if provenance_edit:
                statement = json.loads(provenance_bytes)
                provenance_edit(statement)
                provenance_bytes = canonical_json(statement)
        signers = [self.keys["bundle"]] if signers is None else signers
        return [("oemkit-bundle.json", manifest_bytes), ("sbom.cdx.json", sbom),
                ("provenance.intoto.json", provenance_bytes), *extra,
                ("payload.tar.zst", payload), *sign_members(provenance_bytes, signers), *tail]

    def bundle(self, **kw: Any) -> bytes:
        return outer(self.parts(**kw))


def member_offsets(data: bytes) -> list[tuple[str, int, int, int]]:
    """(name, header offset, data offset, size) for each member of an outer archive."""
    out = []
    offset = 0
    while data[offset:offset + BLOCK] != bytes(BLOCK):
        header = data[offset:offset + BLOCK]
        name = header[:100].split(b"\0", 1)[0].decode()
        size = int(header[124:136].rstrip(b"\0 "), 8)
        out.append((name, offset, offset + BLOCK, size))
        offset += BLOCK + size + (-size % BLOCK)
    return out


# --------------------------------------------------------------------------- JSON helpers


def nested_json(depth: int, inner: str = "0") -> str:
    return "[" * depth + inner + "]" * depth


def with_duplicate_key(doc: bytes, key: str, value: str) -> bytes:
    """Canonical JSON text with ``"key": value`` inserted again right after the opening
    brace (a duplicate key: last-wins parsers would take this value)."""
    assert doc.startswith(b"{")
    return b"{" + f'"{key}":{value},'.encode() + doc[1:]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- cases


def bundle_cases(c: Corpus, forge: Forge, keys: dict[str, PrivateKeyInfo]) -> None:
    good_parts = forge.parts()
    good = outer(good_parts)
    c.add("control-bundle-valid.oemb", "bundle", "control: a valid signed bundle (every "
          "bundle attack below differs from it only in the attack)", good, None, 0)
    byname = dict(good_parts)
    sig_name = next(n for n, _ in good_parts if n.startswith("signatures/"))
    payload = byname["payload.tar.zst"]

    def bundle(file: str, tries: str, data: bytes, code: str, *, rss: bool = False,
               args: Sequence[str] = ()) -> None:
        c.add(f"bundle-{file}.oemb", "bundle", tries, data, code, 1, rss=rss, args=args)

    # ---- outer archive: names, types, sizes
    bundle("outer-path-traversal", "outer member named ../oemkit-bundle.json (tar path "
           "traversal)", outer([*good_parts, ("../oemkit-bundle.json", b"{}")]), "E_MEMBER_NAME")
    bundle("outer-absolute-path", "outer member named /etc/cron.d/pwned (absolute path)",
           outer([*good_parts, ("/etc/cron.d/pwned", b"* * * * * root sh\n")]),
           "E_MEMBER_NAME")
    bundle("outer-name-in-prefix-field", "the ustar prefix field carries ../../ in front of "
           "a harmless name", outer_raw(good_parts, {"sbom.cdx.json": ustar(
               b"sbom.cdx.json", len(byname["sbom.cdx.json"]), prefix=b"../..")
               + pad(byname["sbom.cdx.json"])}), "E_MEMBER_NAME")
    bundle("outer-non-ascii-name", "outer member name in UTF-8 (licenses/caf\u00e9.lic)",
           outer_raw(good_parts, {}, end=ustar("licenses/caf\u00e9.lic".encode(), 2) + pad(b"{}")
                     + END_OF_ARCHIVE), "E_MEMBER_NAME")
    bundle("outer-overlong-utf8-name", "outer member name with an overlong UTF-8 '/..' "
           "(C0 AF 2E 2E)", outer_raw(good_parts, {}, end=ustar(
               b"licenses\xc0\xaf..\xc0\xafx.lic", 2) + pad(b"{}") + END_OF_ARCHIVE),
           "E_MEMBER_NAME")
    bundle("outer-lookalike-name", "a second manifest spelt with a Greek omicron "
           "(oemkit-bundle.js\u03bfn)", outer_raw(good_parts, {}, end=ustar(
               "oemkit-bundle.js\u03bfn".encode(), 2) + pad(b"{}") + END_OF_ARCHIVE),
           "E_MEMBER_NAME")
    for flag, label in ((b"2", "symlink"), (b"1", "hardlink"), (b"3", "char-device"),
                        (b"4", "block-device"), (b"6", "fifo"), (b"5", "directory")):
        link = b"/etc/passwd" if label in ("symlink", "hardlink") else b""
        bundle(f"outer-{label}", f"the SBOM member is a {label.replace('-', ' ')} "
               f"(tar typeflag {flag.decode()})", outer_raw(good_parts, {"sbom.cdx.json": ustar(
                   b"sbom.cdx.json", 0, typeflag=flag, linkname=link)}), "E_MEMBER_TYPE")
    bundle("outer-duplicate-manifest", "the manifest twice (tar readers keep the last copy)",
           outer([good_parts[0], *good_parts]), "E_MEMBER_DUPLICATE")
    bundle("outer-duplicate-signature", "the signature member twice",
           outer([*good_parts, (sig_name, byname[sig_name])]), "E_MEMBER_DUPLICATE")
    bundle("outer-duplicate-payload", "a second payload.tar.zst after the signatures",
           outer([*good_parts, ("payload.tar.zst", payload)]), "E_MEMBER_DUPLICATE")
    bundle("outer-unknown-member", "an extra member install.sh",
           outer([*good_parts[:4], ("install.sh", b"#!/bin/sh\n"), *good_parts[4:]]),
           "E_MEMBER_UNKNOWN")
    bundle("outer-members-reordered", "payload placed before the provenance",
           outer([good_parts[0], good_parts[1], good_parts[3], good_parts[2],
                  *good_parts[4:]]), "E_MEMBER_ORDER")
    bundle("outer-member-missing", "no provenance member",
           outer([p for p in good_parts if p[0] != "provenance.intoto.json"]),
           "E_MEMBER_MISSING")
    many = sorted((f"signatures/{i:064x}.sigstore.json", b"{}") for i in range(33))
    bundle("outer-too-many-signature-members", "33 signature members (limit 32)",
           outer([*good_parts[:-1], *many]), "E_TOO_MANY_SIGNATURES")
    bundle("outer-huge-declared-metadata-size", "the SBOM header declares 8 GiB - 1 "
           "(metadata limit 64 MiB)", outer_raw(good_parts, {"sbom.cdx.json": ustar(
               b"sbom.cdx.json", 0o77777777777) + pad(byname["sbom.cdx.json"])}),
           "E_MEMBER_SIZE", rss=True)
    bundle("outer-declared-size-past-eof", "the payload header declares 8 GiB - 1 (within "
           "the limit) in a small file", outer_raw(good_parts, {
               "payload.tar.zst": ustar(b"payload.tar.zst", 0o77777777777) + pad(payload)},
               end=b""), "E_TRUNCATED", rss=True)
    pax_data = pax_record("size", str((2 << 40) + 1))
    bundle("outer-huge-declared-payload-size", "a pax header sets the payload size to "
           "2 TiB + 1 (over the 1 TiB default limit) in a small file",
           outer_raw(good_parts, {"payload.tar.zst": ustar(
               b"././@PaxHeader", len(pax_data), typeflag=b"x", mode=b"0000000\x00")
               + pad(pax_data) + ustar(b"payload.tar.zst", 0) + pad(payload)}),
           "E_MEMBER_SIZE", rss=True)
    pax_path = pax_record("path", "../../evil.sh")
    bundle("outer-pax-path-record", "a pax header renames the payload to ../../evil.sh",
           outer_raw(good_parts, {"payload.tar.zst": ustar(
               b"././@PaxHeader", len(pax_path), typeflag=b"x", mode=b"0000000\x00")
               + pad(pax_path) + ustar(b"payload.tar.zst", len(payload)) + pad(payload)}),
           "E_TAR_HEADER")
    longname = b"../../../../etc/cron.d/pwned\0"
    bundle("outer-gnu-longname", "a GNU ././@LongLink header renames the next member",
           outer_raw(good_parts, {"payload.tar.zst": ustar(
               b"././@LongLink", len(longname), typeflag=b"L") + pad(longname)
               + ustar(b"payload.tar.zst", len(payload)) + pad(payload)}), "E_MEMBER_NAME")
    bundle("outer-base256-size", "the SBOM size written in GNU base-256 (0x80 prefix)",
           outer_raw(good_parts, {"sbom.cdx.json": ustar(
               b"sbom.cdx.json", size_field=b"\x80" + bytes(7) + struct.pack(
                   ">I", len(byname["sbom.cdx.json"]))) + pad(byname["sbom.cdx.json"])}),
           "E_TAR_HEADER")
    bundle("outer-bad-checksum", "the second header's checksum is off by one",
           outer_raw(good_parts, {"sbom.cdx.json": ustar(
               b"sbom.cdx.json", len(byname["sbom.cdx.json"]), checksum_delta=1)
               + pad(byname["sbom.cdx.json"])}), "E_TAR_CHECKSUM")
    bundle("outer-first-header-bad-checksum", "the first header's checksum is off by one",
           outer_raw(good_parts, {"oemkit-bundle.json": ustar(
               b"oemkit-bundle.json", len(byname["oemkit-bundle.json"]), checksum_delta=1)
               + pad(byname["oemkit-bundle.json"])}), "E_NOT_A_BUNDLE")
    bundle("outer-gnu-magic", "a later header with the GNU magic 'ustar  \\0' instead of "
           "POSIX ustar", outer_raw(good_parts, {"sbom.cdx.json": ustar(
               b"sbom.cdx.json", len(byname["sbom.cdx.json"]), magic=b"ustar ")
               + pad(byname["sbom.cdx.json"])}), "E_TAR_HEADER")

    # ---- framing: padding, end blocks, trailing data, polyglots
    manifest_len = len(byname["oemkit-bundle.json"])
    damaged = bytearray(good)
    damaged[BLOCK + manifest_len + (-manifest_len % BLOCK) - 1] = 0x41
    bundle("padding-nonzero", "a non-zero byte in the manifest's tar padding",
           bytes(damaged), "E_TAR_PADDING")
    payload_end = next(o + BLOCK + s for n, o, _, s in member_offsets(good)
                       if n == "payload.tar.zst")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(zipfile.ZipInfo("run.sh", date_time=(2024, 1, 1, 0, 0, 0)),
                         "#!/bin/sh\necho pwned\n")
    hidden = bytearray(good)
    room = -(payload_end - member_offsets(good)[3][2]) % BLOCK
    assert room >= 4, room
    hidden[payload_end:payload_end + min(room, 8)] = b"PK\x03\x04ZIP"[:min(room, 8)]
    bundle("padding-hides-zip-magic", "a ZIP signature smuggled into the payload's padding",
           bytes(hidden), "E_TAR_PADDING")
    end_first = bytearray(END_OF_ARCHIVE)
    end_first[200] = 0x01
    bundle("end-block-1-nonzero", "a non-zero byte inside the first end-of-archive block "
           "(read as a header with no checksum)", outer_raw(good_parts, {},
           end=bytes(end_first)), "E_TAR_HEADER")
    end_second = bytearray(END_OF_ARCHIVE)
    end_second[BLOCK + 200] = 0x01
    bundle("end-block-2-nonzero", "a non-zero byte inside the second end-of-archive block",
           outer_raw(good_parts, {}, end=bytes(end_second)), "E_TAR_END")
    zip_tail = zipped.getvalue()
    polyglot = outer(good_parts, trailing=zip_tail)
    assert zipfile.is_zipfile(io.BytesIO(polyglot))  # a tar that is also a ZIP
    bundle("trailing-zip-polyglot", "a ZIP archive appended after the end-of-archive "
           "marker: the file is a valid tar and a valid ZIP", polyglot, "E_TAR_TRAILING")
    bundle("trailing-shell-script", "a shell script appended after the end-of-archive "
           "marker", outer(good_parts, trailing=b"#!/bin/sh\necho pwned\n"), "E_TAR_TRAILING")
    bundle("trailing-zeros-too-many", "10 KiB + 1 zero bytes after the marker (more than "
           "one tar record)", outer(good_parts, trailing=bytes(20 * BLOCK + 1)),
           "E_TAR_TRAILING")
    bundle("trailing-zero-then-byte", "zero padding, then one non-zero byte",
           outer(good_parts, trailing=bytes(1000) + b"\x01"), "E_TAR_TRAILING")
    bundle("no-end-marker", "the archive stops after the last member (no end-of-archive "
           "blocks)", good[:-2 * BLOCK], "E_TRUNCATED")

    # ---- truncation at every structural boundary
    c.add("bundle-truncated-empty.oemb", "bundle", "an empty file", b"", "E_NOT_A_BUNDLE", 1)
    c.add("bundle-truncated-at-100.oemb", "bundle", "cut inside the first header before "
          "the magic", good[:100], "E_NOT_A_BUNDLE", 1)
    for name, header, data_at, size in member_offsets(good):
        short = name.split("/")[0].split(".")[0]
        points = {"header": header + 300, "data": data_at, "mid-data": data_at + size // 2,
                  "padding": data_at + size}
        if header:
            points["boundary"] = header
        if not size % BLOCK:
            del points["padding"]
        for where, cut in points.items():
            c.add(f"bundle-truncated-{short}-{where}.oemb", "bundle",
                  f"cut at the {where} of {name} (byte {cut})", good[:cut], "E_TRUNCATED", 1)
    end = len(good) - 2 * BLOCK
    for where, cut in (("end-marker", end), ("end-marker-half", end + BLOCK // 2),
                       ("end-marker-second-block", end + BLOCK),
                       ("end-marker-last-byte", len(good) - 1)):
        c.add(f"bundle-truncated-{where}.oemb", "bundle", f"cut inside the end-of-archive "
              f"marker (byte {cut})", good[:cut], "E_TRUNCATED", 1)

    # ---- signatures
    env = json.loads(byname[sig_name])
    env["dsseEnvelope"]["signatures"] = [{"sig": ""}] * 5000
    bundle("signature-5000-in-envelope", "one signature member whose DSSE envelope holds "
           "5000 signatures (limit 64)", outer([*good_parts[:-1], (sig_name, json.dumps(
               env, separators=(",", ":")).encode())]), "E_TOO_MANY_SIGNATURES")
    bundle("signature-none", "no signature member", outer(good_parts[:-1]), "E_UNSIGNED")
    bundle("signature-unknown-key", "signed by a key the trust root does not list",
           outer(forge.parts(signers=[seeded_key(1, "stranger")])), "E_SIGNATURE_UNTRUSTED")
    bundle("signature-license-key", "signed by the trusted license key (wrong usage)",
           outer(forge.parts(signers=[keys["license"]])), "E_KEY_USAGE")
    raw_sig = byname[sig_name]
    bundle("signature-duplicate-keys", "the Sigstore bundle JSON repeats dsseEnvelope",
           outer([*good_parts[:-1], (sig_name, with_duplicate_key(canonical_json(
               json.loads(raw_sig)), "dsseEnvelope", "{}"))]), "E_ENVELOPE")
    bundle("signature-deep-nesting", "the signature member is 50000 nested arrays",
           outer([*good_parts[:-1], (sig_name, nested_json(50000).encode())]), "E_ENVELOPE")
    bundle("signature-not-utf8", "the signature member is Latin-1, not UTF-8",
           outer([*good_parts[:-1], (sig_name, b'{"mediaType": "caf\xe9"}')]), "E_ENVELOPE")
    bundle("signature-bad-base64", "the signature is not base64",
           outer([*good_parts[:-1], (sig_name, json.dumps({
               "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
               "dsseEnvelope": {"payload": b64(byname["provenance.intoto.json"]),
                                "payloadType": INTOTO_PAYLOAD_TYPE,
                                "signatures": [{"sig": "!!not base64!!"}]}}).encode())]),
           "E_BASE64")

    # ---- provenance (validly signed)
    prov = byname["provenance.intoto.json"]
    bundle("provenance-duplicate-keys", "the signed provenance repeats predicateType",
           outer(forge.parts(provenance_bytes=with_duplicate_key(
               prov, "predicateType", '"https://slsa.dev/provenance/v1"'))),
           "E_PROVENANCE_INVALID")
    bundle("provenance-deep-nesting", "the signed provenance nests 20000 arrays",
           outer(forge.parts(provenance_bytes=nested_json(20000).encode())),
           "E_PROVENANCE_INVALID")
    bundle("provenance-nan", "the signed provenance holds NaN",
           outer(forge.parts(provenance_bytes=prov[:-1] + b',"x":NaN}')),
           "E_PROVENANCE_INVALID")

    def bad_time(statement: dict[str, Any]) -> None:
        statement["predicate"]["runDetails"]["metadata"]["finishedOn"] = "yesterday"

    bundle("provenance-bad-time", "the signed build time is not a time",
           outer(forge.parts(provenance_edit=bad_time)), "E_TIME")

    # ---- manifest (validly signed, bound by the provenance)
    manifest = byname["oemkit-bundle.json"]
    bundle("manifest-duplicate-keys", "the signed manifest repeats 'files' (a last-wins "
           "parser would see an empty payload)", outer(forge.parts(
               manifest_bytes=with_duplicate_key(manifest, "files", "[]"))),
           "E_MANIFEST_INVALID")
    bundle("manifest-deep-nesting", "runtime.config nested 50000 levels deep",
           outer(forge.parts(manifest_bytes=manifest.replace(
               b'"config":null', b'"config":' + nested_json(50000).encode()))),
           "E_MANIFEST_INVALID")
    bundle("manifest-not-utf8", "a Latin-1 byte in the signed manifest",
           outer(forge.parts(manifest_bytes=manifest.replace(b'"hostile"', b'"hostil\xe9"'))),
           "E_MANIFEST_INVALID")

    def edit_files(fn: Callable[[list[dict[str, Any]]], None]) -> Callable[
            [dict[str, Any]], None]:
        return lambda doc: fn(doc["files"])

    def set0(key: str, value: Any) -> Callable[[list[dict[str, Any]]], None]:
        def fn(files: list[dict[str, Any]]) -> None:
            files[0][key] = value
        return fn

    bundle("manifest-float-size", "a file size written as a float (11.5)",
           outer(forge.parts(manifest_edit=edit_files(set0("size", 11.5)))),
           "E_MANIFEST_INVALID")
    bundle("manifest-path-traversal", "a manifest file path ../../etc/passwd",
           outer(forge.parts(manifest_edit=edit_files(set0("path", "../../etc/passwd")))),
           "E_MANIFEST_INVALID")
    bundle("manifest-nul-in-path", "a manifest file path with a NUL byte",
           outer(forge.parts(manifest_edit=edit_files(set0("path", "a.txt\x00.sh")))),
           "E_MANIFEST_INVALID")
    bundle("manifest-huge-declared-size", "the manifest declares a 2^53-1 byte file the "
           "payload does not hold", outer(forge.parts(manifest_edit=edit_files(
               set0("size", 2**53 - 1)))), "E_PAYLOAD_SIZE", rss=True)

    def profiles_int(doc: dict[str, Any]) -> None:
        doc["runtime"]["profiles"] = 7

    bundle("manifest-profiles-not-a-list", "runtime.profiles is the number 7",
           outer(forge.parts(manifest_edit=profiles_int)), "E_MANIFEST_INVALID")

    # ---- SBOM (bound by the signed manifest)
    bundle("sbom-deep-nesting", "the SBOM nests 50000 arrays",
           outer(forge.parts(sbom=nested_json(50000).encode())), "E_SBOM_INVALID")
    sbom = byname["sbom.cdx.json"]
    bundle("sbom-duplicate-keys", "the SBOM repeats 'components' (empty)",
           outer(forge.parts(sbom=with_duplicate_key(canonical_json(json.loads(sbom)),
                                                     "components", "[]"))), "E_SBOM_INVALID")

    # ---- payload: unsafe entries inside a validly signed bundle
    def payload_case(file: str, tries: str, tar_entries: list[Any], code: str,
                     files: Sequence[tuple[str, bytes, int]] = tuple(FILES),
                     fmt: int = tarfile.PAX_FORMAT, **kw: Any) -> None:
        inner = tar_bytes(tar_entries, fmt=fmt)
        bundle(f"payload-{file}", tries, outer(forge.parts(files, inner=inner)), code, **kw)

    ok = [regular(p, d, m) for p, d, m in FILES]
    payload_case("path-traversal", "payload entry ../escape.txt",
                 [*ok[:1], regular("../escape.txt", A), *ok[1:]], "E_PAYLOAD_UNSAFE")
    payload_case("absolute-path", "payload entry /etc/cron.d/pwned",
                 [regular("/etc/cron.d/pwned", b"* * * * * root sh\n"), *ok],
                 "E_PAYLOAD_UNSAFE")
    payload_case("symlink-escape", "payload entry bin/run is a symlink to /etc/passwd",
                 [ok[0], special("bin/run", tarfile.SYMTYPE, "/etc/passwd"), ok[2]],
                 "E_PAYLOAD_UNSAFE")
    payload_case("symlink-dir-then-write", "payload entry bin is a symlink to /tmp, then "
                 "bin/run is written through it", [ok[0], special("bin", tarfile.SYMTYPE,
                                                                 "/tmp"), *ok[1:]],
                 "E_PAYLOAD_UNSAFE")
    payload_case("hardlink-escape", "payload entry bin/run is a hardlink to ../../etc/shadow",
                 [ok[0], special("bin/run", tarfile.LNKTYPE, "../../etc/shadow"), ok[2]],
                 "E_PAYLOAD_UNSAFE")
    for flag, label in ((tarfile.CHRTYPE, "char-device"), (tarfile.BLKTYPE, "block-device"),
                        (tarfile.FIFOTYPE, "fifo"), (tarfile.DIRTYPE, "directory")):
        payload_case(label, f"payload entry bin/run is a {label.replace('-', ' ')}",
                     [ok[0], special("bin/run", flag), ok[2]], "E_PAYLOAD_UNSAFE")
    payload_case("duplicate-entry", "a.txt twice: extractors keep the second copy",
                 [ok[0], regular("a.txt", b"EVIL file\n!"), *ok[1:]], "E_PAYLOAD_DUPLICATE")
    case_files = [("README.txt", A, 0o644), ("readme.txt", B, 0o644)]
    payload_case("case-collision", "README.txt and readme.txt (one overwrites the other on "
                 "Windows and macOS)", [regular(p, d, m) for p, d, m in case_files],
                 "E_PAYLOAD_UNSAFE", files=case_files)
    liga_files = [("file.txt", A, 0o644), ("\ufb01le.txt", B, 0o644)]
    payload_case("unicode-ligature-collision", "file.txt and \ufb01le.txt (the fi ligature "
                 "folds to fi)", [regular(p, d, m) for p, d, m in liga_files],
                 "E_PAYLOAD_UNSAFE", files=liga_files)
    payload_case("unicode-lookalike", "model/m\u043edel.onnx (Cyrillic o) in place of "
                 "model/model.onnx", [*ok[:2], regular("model/m\u043edel.onnx", C)],
                 "E_PAYLOAD_EXTRA")
    payload_case("nfd-name", "a decomposed (NFD) name: two spellings of caf\u00e9.txt",
                 [regular("cafe\u0301.txt", A)], "E_PAYLOAD_UNSAFE", files=[("caf\u00e9.txt",
                                                                              A, 0o644)])
    nul = regular("a.txt", A)
    nul[0].pax_headers = {"path": "a.txt\x00../../etc/passwd"}
    payload_case("nul-in-path", "a pax path record a.txt\\0../../etc/passwd (C tools stop "
                 "at the NUL)", [nul, *ok[1:]], "E_PAYLOAD_UNSAFE")
    payload_case("non-utf8-name", "a ustar name with the Latin-1 byte E9",
                 [ok[0], regular("caf\udce9.txt", A), *ok[1:]], "E_PAYLOAD_UNSAFE",
                 fmt=tarfile.USTAR_FORMAT)
    payload_case("overlong-utf8-name", "a name with overlong UTF-8 for '..' (C0 AE C0 AE)",
                 [regular("\udcc0\udcae\udcc0\udcae/escape.txt", A), *ok],
                 "E_PAYLOAD_UNSAFE", fmt=tarfile.GNU_FORMAT)
    payload_case("path-too-long", "a 4097-byte path", [regular(
        "/".join(["d" * 200] * 20) + "/" + "x" * 77, A), *ok], "E_PAYLOAD_UNSAFE")
    payload_case("component-too-long", "a 256-byte file name", [
        regular("x" * 256, A), *ok], "E_PAYLOAD_UNSAFE")
    payload_case("backslash", "bin\\..\\..\\evil (a Windows path traversal)",
                 [regular("bin\\..\\..\\evil", A), *ok], "E_PAYLOAD_UNSAFE")
    clash = [("lib", A, 0o644), ("lib/evil.so", B, 0o644)]
    payload_case("file-dir-clash", "lib is a file, then lib/evil.so needs it as a directory",
                 [regular(p, d, m) for p, d, m in clash], "E_PAYLOAD_UNSAFE", files=clash)
    payload_case("setuid", "bin/run with mode 4755", [ok[0], regular("bin/run", B, 0o4755),
                                                      ok[2]], "E_PAYLOAD_MODE")
    payload_case("extra-entry", "a file the manifest does not list",
                 [*ok, regular("z-backdoor.py", b"import os\n")], "E_PAYLOAD_EXTRA")

    # ---- payload: sizes and decompression bombs
    def tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
        info = tarfile.TarInfo(name)
        info.size = size
        info.type = kind
        return info.tobuf(format=tarfile.USTAR_FORMAT)

    first = tar_header("a.txt", len(A)) + pad(A)
    bundle("payload-zstd-bomb-ratio", "a.txt (11 bytes) followed by 1 GiB of zeros in 33 KiB "
           "of zstd (ratio 32000:1)", outer(forge.parts(payload=zero_bomb(first, GIB))),
           "E_PAYLOAD_BOMB", rss=True)
    huge = tar_header("a.txt", GIB)
    bundle("payload-zstd-bomb-absolute", "an honestly declared 1 GiB file (right size and "
           "digest, 33 KiB of zstd), refused by a 16 MiB payload limit",
           outer(forge.parts(payload=zero_bomb(huge, GIB + 2 * BLOCK),
                             entries=[FileEntry("a.txt", GIB, SHA256_GIB_ZEROS, 0o644)])),
           "E_PAYLOAD_BOMB", rss=True, args=["--max-payload-bytes", str(16 << 20)])
    c.add("control-bundle-1gib-file.oemb", "bundle", "control: the same honest 1 GiB file "
          "with the default limits (a legitimate giant passes, in bounded memory)",
          outer(forge.parts(payload=zero_bomb(huge, GIB + 2 * BLOCK),
                            entries=[FileEntry("a.txt", GIB, SHA256_GIB_ZEROS, 0o644)])),
          None, 0, rss=True)
    bundle("payload-pax-header-bomb", "a pax extended header that claims 1 GiB (tarfile "
           "would read it whole)", outer(forge.parts(payload=zero_bomb(tar_header(
               "a.txt", GIB, tarfile.XHDTYPE), GIB))), "E_PAYLOAD_BOMB", rss=True)
    bundle("payload-gnu-longname-bomb", "a GNU long-name header that claims 1 GiB",
           outer(forge.parts(payload=zero_bomb(tar_header(
               "././@LongLink", GIB, tarfile.GNUTYPE_LONGNAME), GIB))), "E_PAYLOAD_BOMB",
           rss=True)
    bundle("payload-huge-declared-entry", "a payload entry header declares 8 GiB - 1 for "
           "an 11-byte file", outer(forge.parts(payload=zstd(tar_header(
               "a.txt", (1 << 33) - 1) + pad(A)))), "E_PAYLOAD_SIZE", rss=True)
    bundle("payload-zstd-window-too-large", "a zstd frame asking for a 2 GiB window "
           "(decoder limit 128 MiB)", outer(forge.parts(payload=zstd_frame(
               [raw_block(first), rle_block(0, 1024, last=True)], window_log=31))),
           "E_PAYLOAD_CORRUPT", rss=True)
    head = zstd(tar_header("a.txt", len(A)) + pad(A))
    blocks = (len(payload) - len(head) - 6 - 8) // 4
    bomb = head + zero_bomb(b"", blocks << 17)
    gap = len(payload) - len(bomb) - 8
    assert blocks >= 8 and gap >= 0, (blocks, gap)
    skippable = b"\x50\x2a\x4d\x18" + gap.to_bytes(4, "little") + bytes(gap)
    swapped = [(n, bomb + skippable if n == "payload.tar.zst" else d) for n, d in good_parts]
    bundle("payload-bomb-swapped-in", f"an unsigned {blocks // 8} MiB bomb of exactly the "
           "signed payload's size swapped into the genuine bundle", outer(swapped),
           "E_PAYLOAD_DIGEST", rss=True)
    bundle("payload-not-zstd", "the payload is not zstd",
           outer(forge.parts(payload=b"this is not zstd at all\n" * 40)), "E_PAYLOAD_CORRUPT")
    bundle("payload-zstd-trailing-garbage", "valid zstd followed by garbage",
           outer(forge.parts(payload=zstd(tar_bytes(ok)) + b"trailing junk")),
           "E_PAYLOAD_CORRUPT")
    bundle("payload-tar-truncated", "the inner tar stops inside a.txt's data",
           outer(forge.parts(inner=tar_bytes(ok)[:700])), "E_PAYLOAD_CORRUPT")
    bundle("payload-zstd-not-tar", "the payload decompresses to plain text",
           outer(forge.parts(inner=b"plain text, not a tar\n" * 100)), "E_PAYLOAD_CORRUPT")
    sparse = gnu_sparse("a.txt", A, 1 << 40)
    bundle("payload-gnu-sparse", "a GNU sparse entry (type S): 11 stored bytes declared as "
           "1 TiB, which tarfile would expand from holes past --max-payload-bytes (CPU and, on "
           "unpack, disk)",
           outer(forge.parts(payload=zstd(sparse + bytes(2 * BLOCK)),
                             entries=[FileEntry("a.txt", 1 << 40, "0" * 64, 0o644)])),
           "E_PAYLOAD_UNSAFE", args=["--max-payload-bytes", str(16 << 20)])

    # ---- limits lowered by their flags
    bundle("limit-max-files-flag", "the control bundle (3 files) with the file limit lowered to 2",
           good, "E_LIMIT_FILES", args=["--max-files", "2"])
    bundle("limit-max-member-size-flag", "the control bundle with the metadata member limit "
           "lowered below its SBOM's size", good, "E_MEMBER_SIZE",
           args=["--max-member-size", "1024"])
    bundle("limit-max-payload-bytes-flag", "the control bundle with the payload limit set to "
           "its compressed payload size (the tar inside is larger)", good,
           "E_PAYLOAD_BOMB", args=["--max-payload-bytes", str(len(payload))])

    # ---- carried trust roots, CRL and licenses
    bundle("carried-root-5000-keys", "a carried trust/root-5.json listing 5000 keys",
           outer(forge.parts(extra=[("trust/root-5.json", too_many_keys_root(5))])),
           "E_TRUST_TOO_MANY_KEYS")
    bundle("carried-root-unknown-key-algorithm", "a carried trust/root-5.json whose key is "
           "SPKI with the unassigned OID 1.3.101.101 (found by fuzz_bundle)",
           outer(forge.parts(extra=[("trust/root-5.json", unknown_algorithm_root(keys, 5))])),
           "E_KEY_ALGORITHM")
    bundle("carried-root-garbage", "a carried trust/root-5.json that is not JSON",
           outer(forge.parts(extra=[("trust/root-5.json", b"\x00\xffnot json")])),
           "E_TRUST_INVALID")
    bundle("carried-crl-bad-armor", "a carried revocations.crl that is not armored",
           outer(forge.parts(extra=[("revocations.crl", b"not a CRL\n")])), "E_ARMOR")
    bundle("attached-license-garbage", "an attached licenses/acme.lic that is not armored",
           outer([*good_parts, ("licenses/acme.lic", b"\xff\xfe garbage")]), "E_ARMOR")


def gnu_sparse(name: str, data: bytes, real_size: int) -> bytes:
    """An old-style GNU sparse member (typeflag S): ``data`` stored at offset 0, the rest
    of ``real_size`` a hole."""
    block = bytearray(BLOCK)
    block[0:len(name)] = name.encode()
    block[100:108] = b"0000644\x00"
    block[108:116] = b"0000000\x00"
    block[116:124] = b"0000000\x00"
    block[124:136] = b"%011o\x00" % len(data)
    block[136:148] = b"00000000000\x00"
    block[156:157] = b"S"
    block[257:265] = b"ustar  \x00"
    block[386:398] = b"%011o\x00" % 0            # sparse[0].offset
    block[398:410] = b"%011o\x00" % len(data)    # sparse[0].numbytes
    block[482:483] = b"\x00"                     # isextended
    block[483:495] = b"%011o\x00" % real_size if real_size < 8**11 else (
        b"\x80" + real_size.to_bytes(11, "big"))
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block) + pad(data)


def unknown_algorithm_root(keys: dict[str, PrivateKeyInfo], version: int) -> bytes:
    """A trust root (signed by the root key) whose last key is an SPKI PEM with the OID
    1.3.101.101, which no library implements (cryptography raises UnsupportedAlgorithm)."""
    der = bytes.fromhex("302a300506032b6565032100") + bytes(range(32))
    pem = ("-----BEGIN PUBLIC KEY-----\n" + b64(der) + "\n-----END PUBLIC KEY-----\n")
    payload = json.loads(base64.b64decode(json.loads(make_root(keys))["payload"]))
    payload["version"] = version
    payload["keys"][-1] = {**payload["keys"][-1], "public_key": pem,
                           "keyid": hashlib.sha256(der).hexdigest()}
    env = make_envelope([keys["root"]], TRUST_ROOT_PAYLOAD_TYPE, canonical_json(payload))
    return json.dumps(env.to_dict(), indent=2, sort_keys=True).encode()


def too_many_keys_root(version: int) -> bytes:
    payload = {"type": "oemkit-trust-root", "spec_version": 1, "version": version,
               "issued": "2024-01-01T00:00:00Z",
               "thresholds": {"root": 1, "bundle": 1, "license": 1, "crl": 1},
               "keys": [{}] * 5000}
    env = {"payloadType": TRUST_ROOT_PAYLOAD_TYPE, "payload": b64(canonical_json(payload)),
           "signatures": [{"keyid": "", "sig": b64(bytes(64))}]}
    return json.dumps(env, separators=(",", ":")).encode()


def trust_cases(c: Corpus, keys: dict[str, PrivateKeyInfo], root_doc: bytes) -> None:
    env = json.loads(root_doc)
    payload = json.loads(base64.b64decode(env["payload"]))

    def doc(obj: Any) -> bytes:
        return json.dumps(obj, indent=2, sort_keys=True).encode()

    def signed(payload_bytes: bytes) -> bytes:
        e = make_envelope([keys["root"]], TRUST_ROOT_PAYLOAD_TYPE, payload_bytes).to_dict()
        return doc(e)

    def root(file: str, tries: str, data: bytes, code: str, exit_code: int = 3) -> None:
        c.add(f"trust-root-{file}.json", "trust-root", tries, data, code, exit_code)

    root("5000-keys", "a pinned trust root listing 5000 keys (limit 256)",
         too_many_keys_root(4), "E_TRUST_TOO_MANY_KEYS")
    many = dict(env)
    many["signatures"] = [{"keyid": "", "sig": ""}] * 5000
    root("5000-signatures", "a pinned trust root envelope with 5000 signatures (limit 16)",
         canonical_json(many), "E_TOO_MANY_SIGNATURES")
    root("duplicate-keys-envelope", "the envelope repeats 'payload' (a last-wins parser "
         "would read the second)", with_duplicate_key(canonical_json(env), "payload", '"e30="'),
         "E_TRUST_INVALID")
    root("duplicate-keys-payload", "the signed payload repeats 'thresholds'",
         signed(with_duplicate_key(canonical_json(payload), "thresholds",
                                   '{"bundle":1,"crl":1,"license":1,"root":1}')),
         "E_TRUST_INVALID")
    root("deep-nesting", "the document is 50000 nested arrays",
         nested_json(50000).encode(), "E_TRUST_INVALID")
    root("deep-nesting-payload", "the signed payload nests 50000 arrays",
         signed(nested_json(50000).encode()), "E_TRUST_INVALID")
    root("not-utf8", "a Latin-1 byte in the document", root_doc.replace(b'"payloadType"',
                                                                    b'"payl\xe9adType"'),
         "E_TRUST_INVALID")
    root("overlong-utf8", "an overlong UTF-8 sequence (C0 A2 for '\"') in the document",
         root_doc.replace(b'"payloadType"', b'"payload\xc0\xa2Type"'), "E_TRUST_INVALID")
    root("bom", "a UTF-8 byte order mark before the JSON", b"\xef\xbb\xbf" + root_doc,
         "E_TRUST_INVALID")
    root("nan", "NaN in the envelope", root_doc.replace(b"{", b'{"x": NaN, ', 1),
         "E_TRUST_INVALID")
    floaty = dict(payload)
    floaty["version"] = 4.0
    root("float-version", "the signed payload's version is 4.0",
         signed(json.dumps(floaty, sort_keys=True, separators=(",", ":")).encode()),
         "E_TRUST_INVALID")
    bigint = dict(payload)
    bigint["version"] = 2**64
    root("huge-integer", "the signed payload's version is 2^64 (beyond 2^53-1: no "
         "canonical JSON form)", signed(json.dumps(bigint, sort_keys=True,
                                                   separators=(",", ":")).encode()),
         "E_TRUST_INVALID")
    root("non-canonical-payload", "the signed payload has whitespace (not RFC 8785)",
         signed(json.dumps(payload, sort_keys=True, indent=1).encode()), "E_TRUST_INVALID")
    root("wrong-payload-type", "a valid envelope of another payload type",
         doc(make_envelope([keys["root"]], INTOTO_PAYLOAD_TYPE,
                           canonical_json(payload)).to_dict()), "E_TRUST_INVALID")
    flipped = json.loads(root_doc)
    sig = bytearray(base64.b64decode(flipped["signatures"][0]["sig"]))
    sig[0] ^= 1
    flipped["signatures"][0]["sig"] = b64(bytes(sig))
    root("signature-flipped", "one bit of the root signature flipped", doc(flipped),
         "E_TRUST_THRESHOLD")
    weak = dict(payload)
    weak["keys"] = [dict(k) for k in payload["keys"]]
    weak_pem, weak_id = small_order_key()
    weak["keys"].append({**weak["keys"][1], "keyid": weak_id, "public_key": weak_pem,
                         "name": "weak"})
    weak["keys"].sort(key=lambda k: k["keyid"])
    root("weak-key", "an Ed25519 small-order public key (accepts forged signatures)",
         signed(canonical_json(weak)), "E_TRUST_WEAK_KEY")
    mismatch = dict(payload)
    mismatch["keys"] = [dict(k) for k in payload["keys"]]
    mismatch["keys"][0]["keyid"] = "0" * 64
    root("unknown-key-algorithm", "a key that is SPKI with the unassigned OID 1.3.101.101 "
         "(found by fuzz_bundle)", unknown_algorithm_root(keys, 4), "E_KEY_ALGORITHM")
    root("keyid-mismatch", "a key id that is not the SHA-256 of its public key",
         signed(canonical_json(mismatch)), "E_TRUST_INVALID")
    root("truncated-half", "the document cut in half", root_doc[:len(root_doc) // 2],
         "E_TRUST_INVALID")
    root("truncated-payload", "the document cut inside the base64 payload",
         root_doc[:root_doc.index(b'"payload"') + 40], "E_TRUST_INVALID")
    root("empty", "an empty file", b"", "E_TRUST_INVALID")
    root("license-as-root", "a license file passed as the trust root",
         valid_license(keys), "E_TRUST_INVALID")


def small_order_key() -> tuple[str, str]:
    """PEM and key id of the Ed25519 point of order 1 (y = 1)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from oemkit.crypto.keys import public_pem

    public = ed25519.Ed25519PublicKey.from_public_bytes(bytes([1]) + bytes(31))
    return public_pem(public), key_id(public)


def license_claims(**over: Any) -> dict[str, Any]:
    claims = LicenseClaims(
        license_id="acme-vision", seq=1, issuer="license", customer_id="acme",
        customer_name="ACME Corp", product="vision", issued_at=ISSUED, not_before=ISSUED,
        expires=dt.datetime(2099, 12, 31, tzinfo=UTC), grace_seconds=0,
        features=("batch",), limits={"seats": 50})
    doc = claims.to_dict()
    doc.update(over)
    return doc


def valid_license(keys: dict[str, PrivateKeyInfo]) -> bytes:
    return issue_license(keys["license"], LicenseClaims.from_dict(license_claims()))


def license_cases(c: Corpus, keys: dict[str, PrivateKeyInfo]) -> None:
    good = valid_license(keys)
    c.add("control-license-valid.lic", "license", "control: a valid license signed by the "
          "trusted license key (issued 2024, expires 2099)", good, None, 0)
    label = "OEMKIT LICENSE"
    body = good.decode().splitlines()[1:-1]

    def lic(file: str, tries: str, data: bytes, code: str, exit_code: int = 1) -> None:
        c.add(f"license-{file}.lic", "license", tries, data, code, exit_code)

    def armored_env(obj: Any) -> bytes:
        return armor(label, obj if isinstance(obj, bytes) else json.dumps(
            obj, separators=(",", ":")).encode())

    def signed_claims(payload: bytes, key: str = "license",
                      payload_type: str = LICENSE_PAYLOAD_TYPE) -> bytes:
        return armor(label, sign_document(keys[key], payload_type, payload))

    # armor
    lic("armor-missing", "the envelope JSON without armor", base64.b64decode("".join(body)),
        "E_ARMOR")
    lic("armor-wrong-label", "armored as OEMKIT CRL", good.replace(b"LICENSE", b"CRL"),
        "E_ARMOR")
    lic("armor-bad-base64-char", "a '*' inside the base64", good.replace(
        body[1][:4].encode(), b"*" + body[1][1:4].encode(), 1), "E_ARMOR")
    lic("armor-non-canonical-padding", "base64 with an extra '=' at the end", good.replace(
        f"\n-----END {label}-----".encode(), f"=\n-----END {label}-----".encode()), "E_ARMOR")
    lic("armor-two-blocks", "two license blocks in one file", good + good, "E_ARMOR")
    lic("armor-no-end", "no END line", good[:good.index(b"-----END")], "E_ARMOR")
    lic("armor-not-ascii", "a UTF-8 BOM before the armor", b"\xef\xbb\xbf" + good, "E_ARMOR")
    lic("armor-nul", "a NUL byte inside the armor", good.replace(b"\n", b"\n\x00", 1),
        "E_ARMOR")
    lines = good.decode().splitlines()
    lic("truncated-mid-base64", "cut in the middle of the base64 (END line kept)",
        ("\n".join([lines[0], *body[:len(body) // 2], lines[-1]]) + "\n").encode(),
        "E_ENVELOPE")
    lic("truncated-mid-line", "cut in the middle of a base64 line", good[:len(good) // 2],
        "E_ARMOR")
    lic("truncated-after-begin", "only the BEGIN line", (lines[0] + "\n").encode(), "E_ARMOR")
    lic("oversize", "65537 bytes (limit 65536)", good + b" " * (65537 - len(good)),
        "E_TOO_LARGE", 3)
    # envelope
    env = json.loads(base64.b64decode("".join(body)))
    lic("envelope-not-json", "armored bytes that are not JSON", armored_env(b"\x00\x01\x02"),
        "E_ENVELOPE")
    lic("envelope-duplicate-keys", "the envelope repeats 'payload'", armored_env(
        with_duplicate_key(canonical_json(env), "payload", '"e30="')), "E_ENVELOPE")
    lic("envelope-deep-nesting", "the envelope is 10000 nested arrays",
        armored_env(nested_json(10000).encode()), "E_ENVELOPE")
    lic("envelope-5000-signatures", "5000 signatures (one is allowed)",
        armored_env({**env, "signatures": [{}] * 5000}), "E_ENVELOPE")
    lic("envelope-nan", "NaN in the envelope", armored_env(
        canonical_json(env)[:-1] + b',"x":NaN}'), "E_ENVELOPE")
    lic("envelope-not-utf8", "a Latin-1 byte in the envelope", armored_env(
        canonical_json(env).replace(b"payloadType", b"payl\xe9adType")), "E_ENVELOPE")
    # claims, validly signed by the trusted license key
    claims = license_claims()
    lic("claims-float", "seq written as 1.0 (floats have no canonical form)",
        signed_claims(canonical_json(claims).replace(b'"seq":1', b'"seq":1.5')),
        "E_CLAIMS_INVALID")
    lic("claims-duplicate-keys", "the claims repeat 'expires' (a last-wins parser would "
        "extend the license)", signed_claims(with_duplicate_key(
            canonical_json(claims), "expires", '"9999-12-31T00:00:00Z"')), "E_CLAIMS_INVALID")
    lic("claims-deep-nesting", "claims nested 5000 arrays deep",
        signed_claims(nested_json(5000).encode()), "E_CLAIMS_INVALID")
    lic("claims-non-canonical", "claims with whitespace (not RFC 8785)",
        signed_claims(json.dumps(claims, indent=1, sort_keys=True).encode()),
        "E_CLAIMS_INVALID")
    lic("claims-huge-integer", "seq = 2^64", signed_claims(canonical_json(claims).replace(
        b'"seq":1', b'"seq":18446744073709551616')), "E_CLAIMS_INVALID")
    lic("claims-lone-surrogate", "a customer name with a lone surrogate \\ud800",
        signed_claims(canonical_json(claims).replace(b'"ACME Corp"', b'"ACME \\ud800"')),
        "E_CLAIMS_INVALID")
    lic("claims-not-utf8", "a Latin-1 byte in the claims", signed_claims(
        canonical_json(claims).replace(b'"ACME Corp"', b'"ACME \xe9"')), "E_CLAIMS_INVALID")
    lic("claims-nan", "NaN in the claims", signed_claims(
        canonical_json(claims)[:-1] + b',"z":NaN}'), "E_CLAIMS_INVALID")
    lic("claims-unknown-critical", "a critical extension this oemkit does not know",
        signed_claims(canonical_json({**claims, "critical": ["time-travel"]})),
        "E_CRIT_UNKNOWN")
    # signature and key
    lic("crl-as-license", "a revocation list passed as the license",
        valid_crl(keys).replace(b"OEMKIT CRL", b"OEMKIT LICENSE"), "E_PAYLOAD_TYPE")
    lic("unknown-key", "signed by a key the trust root does not list",
        armor(label, sign_document(seeded_key(3, "stranger"), LICENSE_PAYLOAD_TYPE,
                                   canonical_json(claims))), "E_KID_UNKNOWN")
    lic("bundle-key", "signed by the trusted bundle key (wrong usage)",
        signed_claims(canonical_json(claims), key="bundle"), "E_KEY_USAGE")
    wrong_alg = dict(env)
    wrong_alg["signatures"] = [{**env["signatures"][0], "alg": "ecdsa-p256"}]
    lic("alg-mismatch", "the signature claims ecdsa-p256 for an Ed25519 key",
        armored_env(wrong_alg), "E_ALG_MISMATCH")
    flipped = dict(env)
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[10] ^= 1
    flipped["signatures"] = [{**env["signatures"][0], "sig": b64(bytes(sig))}]
    lic("signature-flipped", "one bit of the signature flipped", armored_env(flipped),
        "E_SIG_INVALID")
    lic("expired", "expired in 2025 (no grace)", signed_claims(canonical_json(license_claims(
        expires="2025-01-01T00:00:00Z"))), "E_EXPIRED")


def valid_crl(keys: dict[str, PrivateKeyInfo], seq: int = 1) -> bytes:
    return issue_crl(keys["crl"], seq, revoke=[("someone-else", None)], issued_at=ISSUED)


def crl_cases(c: Corpus, keys: dict[str, PrivateKeyInfo]) -> None:
    good = valid_crl(keys)
    c.add("control-crl-valid.crl", "crl", "control: a valid CRL signed by the trusted crl "
          "key (revokes another license)", good, None, 0)
    label = "OEMKIT CRL"
    payload = json.loads(base64.b64decode(json.loads(base64.b64decode("".join(
        good.decode().splitlines()[1:-1])))["payload"]))

    def crl(file: str, tries: str, data: bytes, code: str, exit_code: int = 1) -> None:
        c.add(f"crl-{file}.crl", "crl", tries, data, code, exit_code)

    def signed(data: bytes, key: str = "crl") -> bytes:
        return armor(label, sign_document(keys[key], CRL_PAYLOAD_TYPE, data))

    crl("armor-missing", "not armored", b'{"seq": 1}\n', "E_ARMOR")
    crl("license-as-crl", "a license passed as the CRL", valid_license(keys), "E_ARMOR")
    crl("armor-bad-base64", "a non-base64 character inside the armor",
        good.replace(b"\n", b"\n%", 1), "E_ARMOR")
    crl("oversize", "65537 bytes (limit 65536)", good + b"\n" * (65537 - len(good)),
        "E_TOO_LARGE", 3)
    crl("float", "seq written as 1.5", signed(canonical_json(payload).replace(
        b'"seq":1', b'"seq":1.5')), "E_CRL_INVALID")
    crl("duplicate-keys", "the CRL repeats 'revoked_licenses' (empty: a last-wins parser "
        "would un-revoke everything)", signed(with_duplicate_key(
            canonical_json(payload), "revoked_licenses", "[]")), "E_CRL_INVALID")
    crl("deep-nesting", "5000 nested arrays", signed(nested_json(5000).encode()),
        "E_CRL_INVALID")
    crl("non-canonical", "whitespace in the signed CRL",
        signed(json.dumps(payload, indent=1, sort_keys=True).encode()), "E_CRL_INVALID")
    crl("huge-integer", "seq = 2^64", signed(canonical_json(payload).replace(
        b'"seq":1', b'"seq":18446744073709551616')), "E_CRL_INVALID")
    crl("license-key", "signed by the trusted license key (wrong usage)",
        signed(canonical_json(payload), key="license"), "E_KEY_USAGE")
    env = json.loads(base64.b64decode("".join(good.decode().splitlines()[1:-1])))
    crl("envelope-5000-signatures", "5000 signatures on one CRL", armor(label, json.dumps(
        {**env, "signatures": [{}] * 5000},
        separators=(",", ":")).encode()), "E_ENVELOPE")


# --------------------------------------------------------------------------- YAML


SPEC_BASE = ("apiVersion: oemkit/v1\nname: hostile\nversion: \"1.0\"\n"
             f"model: {SPEC_MODEL}\n")


def laughs(depth: int = 9) -> str:
    lines = ['lol0: &lol0 "lol"']
    for i in range(1, depth + 1):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def spec_cases(c: Corpus) -> None:
    c.aux(SPEC_MODEL, (EXAMPLE / "model" / "model.onnx").read_bytes())

    def spec(file: str, tries: str, text: str | bytes, code: str | None,
             exit_code: int = 3, setup: dict[str, Any] | None = None,
             args: Sequence[str] = ()) -> None:
        data = text if isinstance(text, bytes) else text.encode()
        c.add(f"spec-{file}.yaml", "spec", tries, data, code, exit_code, setup=setup,
              args=args)

    spec("control-valid", "control: a minimal valid spec (built from a scratch copy of "
         "the spec's directory)", SPEC_BASE, None, 0)
    spec("billion-laughs", "YAML billion laughs: 9 levels of 9 aliases (10^9 strings)",
         SPEC_BASE + laughs(), "E_SPEC_YAML")
    spec("deep-nesting-flow", "50000 nested flow sequences",
         SPEC_BASE + "files: " + "[" * 50000 + "]" * 50000 + "\n", "E_SPEC_DEPTH")
    spec("deep-nesting-block", "200 nested block mappings",
         SPEC_BASE + "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "x\n",
         "E_SPEC_DEPTH")
    spec("duplicate-key", "model given twice (the second would win)",
         SPEC_BASE + "model: ../../etc/passwd\n", "E_SPEC_DUPLICATE_KEY")
    spec("not-utf8", "a Latin-1 byte in a value", SPEC_BASE.encode() + b"description: caf\xe9\n",
         "E_SPEC_YAML")
    spec("overlong-utf8-path", "a files entry with overlong UTF-8 for '../'",
         SPEC_BASE.encode() + b"files: [\"\xc0\xae\xc0\xae/etc/passwd\"]\n", "E_SPEC_YAML")
    spec("nul-in-path", "a files entry with a NUL byte (C tools stop at it)",
         SPEC_BASE + 'files: ["spec-model.onnx\\0/../../etc/passwd"]\n', "E_SPEC_PATH")
    spec("path-traversal", "files: [../../../etc/passwd]",
         SPEC_BASE + "files: [../../../etc/passwd]\n", "E_SPEC_PATH")
    spec("absolute-path", "files: [/etc/passwd]", SPEC_BASE + "files: [/etc/passwd]\n",
         "E_SPEC_PATH")
    spec("backslash-path", "files: ['..\\\\..\\\\secret']",
         SPEC_BASE + "files: ['..\\..\\secret']\n", "E_SPEC_PATH")
    spec("control-character-path", "a path with an escape sequence",
         SPEC_BASE + 'files: ["a\\x1b[31m.txt"]\n', "E_SPEC_PATH")
    spec("symlink-outside", "files: [leak], leak being a symlink to /etc/passwd",
         SPEC_BASE + "files: [leak]\n", "E_SPEC_PATH",
         setup={"symlinks": {"leak": "/etc/passwd"}})
    spec("symlink-dir-outside", "files: [etc], etc being a symlink to /etc",
         SPEC_BASE + "files: [etc]\n", "E_SPEC_PATH", setup={"symlinks": {"etc": "/etc"}})
    spec("trust-root-outside", "trust_roots: [../root.json]",
         SPEC_BASE + "trust_roots: [../root.json]\n", "E_SPEC_PATH")
    spec("crl-outside", "crl: /etc/passwd", SPEC_BASE + "crl: /etc/passwd\n", "E_SPEC_PATH")
    spec("wheelhouse-parent", "wheelhouse: .. (the spec directory's parent)",
         SPEC_BASE + "wheelhouse: ..\n", "E_SPEC_PATH")
    spec("includes-itself", "files names the spec file itself",
         SPEC_BASE + "files: [spec-includes-itself.yaml]\n", "E_SPEC_PATH")
    spec("model-is-itself", "the model is the spec file itself",
         SPEC_BASE.replace(f"model: {SPEC_MODEL}", "model: spec-model-is-itself.yaml"),
         "E_SPEC_PATH")
    spec("symlink-loop", "files: [loop], loop being a symlink to '.' (the spec's own "
         "directory, which holds the spec)", SPEC_BASE + "files: [loop]\n", "E_SPEC_PATH",
         setup={"symlinks": {"loop": "."}})
    spec("symlink-cycle", "files: [a], a -> b -> a", SPEC_BASE + "files: [a]\n",
         "E_SPEC_PATH", setup={"symlinks": {"a": "b", "b": "a"}})
    spec("dangling-symlink", "files: [gone], a symlink to nothing",
         SPEC_BASE + "files: [gone]\n", "E_SPEC_MISSING_FILE",
         setup={"symlinks": {"gone": "does-not-exist"}})
    spec("glob-explosion", "files: ['**/**/**/**/**/**/**/**/**/**/x'] over two symlinks "
         "to '.' (Python's glob takes exponential time; oemkit's walker does not enter a "
         "directory's own ancestors, answers at once)",
         SPEC_BASE + "files: ['" + "/".join(["**"] * 10) + "/x']\n", "E_SPEC_MISSING_FILE",
         setup={"symlinks": {"l1": ".", "l2": "."}})
    spec("glob-star-chain", "files: ['*/*/*/.../x'] (40 levels) over two symlinks to '.'",
         SPEC_BASE + "files: ['" + "/".join(["*"] * 40) + "/x']\n", "E_SPEC_PATH",
         setup={"symlinks": {"l1": ".", "l2": "."}})
    spec("unicode-ligature-collision", "files: [file.txt, \ufb01le.txt] (the fi ligature "
         "folds to fi)", SPEC_BASE + "files: [file.txt, \ufb01le.txt]\n",
         "E_SPEC_PATH_COLLISION",
         setup={"files": {"file.txt": "a\n", "\ufb01le.txt": "b\n"}})
    spec("fullwidth-case-collision", "files: [readme.txt, \uff32\uff25\uff21\uff24\uff2d"
         "\uff25.txt] (fullwidth capitals fold to readme)",
         SPEC_BASE + "files: [readme.txt, \uff32\uff25\uff21\uff24\uff2d\uff25.txt]\n",
         "E_SPEC_PATH_COLLISION",
         setup={"files": {"readme.txt": "a\n", "\uff32\uff25\uff21\uff24\uff2d\uff25.txt": "b\n"}})
    spec("nfd-path", "a decomposed (NFD) file name", SPEC_BASE + "files: [cafe\u0301.txt]\n",
         "E_SPEC_PATH", setup={"files": {"cafe\u0301.txt": "x\n"}})
    spec("timestamp-value", "version: 2024-01-01 (a YAML date, not a string)",
         SPEC_BASE.replace('version: "1.0"', "version: 2024-01-01"), "E_SPEC_YAML")
    spec("binary-value", "description: !!binary (bytes, not a string)",
         SPEC_BASE + "description: !!binary aGVsbG8=\n", "E_SPEC_YAML")
    spec("python-tag", "a !!python/object/apply tag", SPEC_BASE
         + "description: !!python/object/apply:os.system ['true']\n", "E_SPEC_YAML")
    spec("huge-integer", "source_date_epoch with 5000 digits (past Python's int limit)",
         SPEC_BASE + "source_date_epoch: " + "9" * 5000 + "\n", "E_SPEC_YAML")
    spec("nan", "golden.atol: .nan", SPEC_BASE + "golden: {inputs: a, outputs: b, atol: .nan}\n",
         "E_SPEC_YAML")
    spec("lone-surrogate", "a string with a lone surrogate escape \\ud800",
         SPEC_BASE + 'description: "\\ud800"\n', "E_SPEC_YAML")
    spec("too-many-values", "a files list of 60000 entries (PyYAML would spend about 3 s and "
         "50 MB on it; a 1 MiB spec of this shape, 20 s and 400 MB)",
         SPEC_BASE + "files: [" + "a," * 59999 + "a]\n", "E_SPEC_YAML")
    spec("two-documents", "a second YAML document", SPEC_BASE + "---\nname: other\n",
         "E_SPEC_YAML")
    spec("source-date-epoch-overflow", "source_date_epoch: 99999999999999 (year 3170843)",
         SPEC_BASE + "source_date_epoch: 99999999999999\n", "E_SPEC_INVALID")
    spec("source-date-epoch-flag-overflow", "--source-date-epoch 99999999999999 on a valid "
         "spec", SPEC_BASE, "E_SOURCE_DATE_EPOCH", args=["--source-date-epoch",
                                                       "99999999999999"])
    spec("not-a-mapping", "the document is a list", "- a\n- b\n", "E_SPEC_INVALID")


PROFILE_BASE = ("name: hostile\naccelerator: none\nproviders: [{name: CPUExecutionProvider}]\n"
                "budgets: {p95_ms: 50}\n")


def profile_cases(c: Corpus) -> None:
    def profile(file: str, tries: str, text: str | bytes, code: str | None,
                exit_code: int = 3) -> None:
        data = text if isinstance(text, bytes) else text.encode()
        c.add(f"profile-{file}.yaml", "profile", tries, data, code, exit_code)

    profile("control-valid", "control: a minimal valid profile", PROFILE_BASE, None, 0)
    profile("billion-laughs", "YAML billion laughs", PROFILE_BASE + laughs(), "E_SPEC_YAML")
    profile("deep-nesting", "20000 nested flow mappings",
            PROFILE_BASE + "x: " + "{a: " * 20000 + "1" + "}" * 20000 + "\n",
            "E_SPEC_DEPTH")
    profile("duplicate-key", "budgets given twice", PROFILE_BASE + "budgets: {}\n",
            "E_SPEC_DUPLICATE_KEY")
    profile("not-utf8", "UTF-16 text", PROFILE_BASE.encode("utf-16"), "E_SPEC_YAML")
    profile("timestamp", "a date where a number belongs", PROFILE_BASE + "memory_mb: 2024-01-01\n",
            "E_SPEC_YAML")
    profile("infinite-budget", "p95_ms: .inf", PROFILE_BASE.replace("50", ".inf"),
            "E_SPEC_YAML")
    profile("huge-integer", "memory_mb with 5000 digits",
            PROFILE_BASE + "memory_mb: " + "9" * 5000 + "\n", "E_SPEC_YAML")
    profile("too-many-values", "a budgets mapping of 15000 keys",
            PROFILE_BASE.replace("budgets: {p95_ms: 50}", "budgets: {" + ", ".join(
                f"b{i}: 1" for i in range(15000)) + "}"), "E_SPEC_YAML")
    profile("schema-violation", "providers is a string", PROFILE_BASE.replace(
        "[{name: CPUExecutionProvider}]", "CPUExecutionProvider"), "E_PROFILE_INVALID")
    profile("set-tag", "a !!set where a mapping belongs",
            PROFILE_BASE.replace("budgets: {p95_ms: 50}", "budgets: !!set {p95_ms}"),
            "E_SPEC_YAML")


def fingerprint_cases(c: Corpus) -> None:
    good = {"type": "oemkit-fingerprint/v1", "salt": "ab" * 32,
            "created": "2024-01-01T00:00:00Z",
            "components": [{"kind": "machine-id", "hash": "cd" * 32}]}

    def fp(file: str, tries: str, data: bytes, code: str | None, exit_code: int = 3) -> None:
        c.add(f"fingerprint-{file}.fp", "fingerprint", tries, data, code, exit_code)

    fp("control-valid", "control: a valid fingerprint (license issue succeeds)",
       json.dumps(good, indent=2).encode(), None, 0)
    fp("duplicate-keys", "the fingerprint repeats 'components' (empty)",
       with_duplicate_key(canonical_json(good), "components", "[]"), "E_FINGERPRINT")
    fp("deep-nesting", "50000 nested arrays", nested_json(50000).encode(), "E_FINGERPRINT")
    fp("not-utf8", "a Latin-1 byte", canonical_json(good).replace(b"machine-id",
                                                                   b"machine-\xe9d"),
       "E_FINGERPRINT")
    fp("nan", "NaN in the document", canonical_json(good)[:-1] + b',"x":NaN}',
       "E_FINGERPRINT")
    fp("salt-not-hex", "a salt that is not 64 lower-case hex digits",
       canonical_json({**good, "salt": "Z" * 64}), "E_FINGERPRINT")
    fp("component-extra-field", "a component with an extra field",
       canonical_json({**good, "components": [{"kind": "x", "hash": "cd" * 32, "raw": "id"}]}),
       "E_FINGERPRINT")
    fp("no-components", "an empty component list", canonical_json({**good, "components": []}),
       "E_FINGERPRINT")


# --------------------------------------------------------------------------- main


def generate() -> Corpus:
    keys = load_keys()
    c = Corpus()
    root_doc = make_root(keys)
    c.aux(TRUST, root_doc)
    bundle_cases(c, Forge(keys), keys)
    trust_cases(c, keys, root_doc)
    license_cases(c, keys)
    crl_cases(c, keys)
    spec_cases(c)
    profile_cases(c)
    fingerprint_cases(c)
    from hostile import review_cases  # the outside review's classes (issue 13)

    for add in review_cases.GENERATORS:
        add(c, Forge(keys), keys)
    return c


def index_bytes(c: Corpus) -> bytes:
    doc = {"about": "Hostile inputs for oemkit, written by tests/hostile/make_corpus.py; run by "
                    "tests/hostile/test_corpus.py. Placeholders in commands: {corpus} this "
                    "directory, {work} a scratch copy of the spec's directory (spec cases: the "
                    "spec, spec-model.onnx and the setup files/symlinks), {tmp} a scratch "
                    "directory, {repo} the repository root. 'code' null and 'exit' 0: a "
                    "control that must pass.",
           "cases": sorted(c.index, key=lambda item: item["file"])}
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def write(out: Path) -> Corpus:
    c = generate()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.name == "regressions":
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    for name, data in sorted(c.files.items()):
        (out / name).write_bytes(data)
    (out / "INDEX.json").write_bytes(index_bytes(c))
    return c


KIND_TITLES = {"bundle": "Bundles", "trust-root": "Trust roots (pinned with --trust)",
               "license": "Licenses", "crl": "Revocation lists", "spec": "Bundle specs",
               "profile": "Hardware profiles", "fingerprint": "Host fingerprints",
               "cli": "Other commands (unverified readers, join, install, state file)"}


def table(c: Corpus) -> str:
    """The Markdown tables of docs/SECURITY.md, one per kind (``--table``)."""
    from hostile.test_corpus import PENDING_FIXES

    lines = []
    for kind, title in KIND_TITLES.items():
        cases = sorted((x for x in c.index if x["kind"] == kind), key=lambda x: x["file"])
        base = COMMANDS.get(kind, [])
        shown = ("command: `oemkit " + " ".join(base).replace("{file}", "FILE") + "`"
                 if base else "command: as given for each case")
        lines += [f"### {title} ({len(cases)})", "", shown, "",
                  "| file | what it tries | must get | exit |", "|---|---|---|---|"]
        for x in cases:
            extra = x["command"][len(base):] if base else x["command"]
            tries = x["tries"].replace("|", "\\|")
            if extra:
                tries += f" (`{' '.join(extra)}`)"
            code = f"`{x['code']}`" if x["code"] else "passes"
            if x["file"] in PENDING_FIXES:
                code += " (pending fix)"
            lines.append(f"| `{x['file']}` | {tries} | {code} | {x['exit']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CORPUS)
    parser.add_argument("--table", action="store_true",
                        help="print the Markdown tables for docs/SECURITY.md; write nothing")
    args = parser.parse_args(argv)
    if args.table:
        print(table(generate()))
        return 0
    c = write(args.out)
    total = sum(len(d) for d in c.files.values())
    print(f"wrote {len(c.index)} cases ({len(c.files)} files, {total} bytes) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
