"""oemkit._tar, the tar wire format, against outside implementations.

Python's ``tarfile`` and GNU tar are independent of ``_tar``: headers written here must be
what ``tarfile`` writes and what both read back, and headers they write must parse here.
Numbers (octal, base-256, their bounds), checksums, PAX records (the self-counting length,
strict framing) and padding are checked on their own.
"""

from __future__ import annotations

import io
import random
import shutil
import stat
import string
import subprocess
import sys
import tarfile

import pytest

from oemkit import _tar
from oemkit._tar import (
    BLOCK,
    END_OF_ARCHIVE,
    MAX_USTAR_SIZE,
    RECORD,
    TarFormatError,
    decode_base256,
    decode_number,
    decode_octal,
    encode_base256,
    encode_number,
    encode_octal,
    file_header,
    iter_pax_records,
    max_octal,
    pad_size,
    padded,
    padding,
    parse_header,
    pax_decimal,
    pax_record,
    pax_records,
)

GIB = 1 << 30


def _tarfile_header(name: str, size: int, mode: int, fmt: int = tarfile.PAX_FORMAT,
                    encoding: str = "utf-8", errors: str = "surrogateescape") -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid = size, mode, 0, 0, 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(fmt, encoding, errors)


def _archive(members: list[tuple[str, bytes, int]]) -> bytes:
    """An archive written with _tar alone: headers, data, padding, end blocks, record."""
    out = b"".join(file_header(name, len(data), mode) + data + padding(len(data))
                   for name, data, mode in members) + END_OF_ARCHIVE
    return out + _tar.record_padding(len(out))


LONG = "deep/" * 25 + "file.bin"  # 133 characters: a PAX path record
NAMES = ["a.txt", "x" * 100, "x" * 101, "model/model.onnx", "caf\u00e9.txt", "a b/c", LONG,
         "\u4e2d\u6587/\u6587\u4ef6.json"]


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("width", [8, 12])
def test_octal_round_trips_up_to_the_field_bound(width):
    for value in (0, 1, 7, 8, 0o644, max_octal(width) - 1, max_octal(width)):
        field = encode_octal(value, width)
        assert len(field) == width and field.endswith(b"\0")
        assert field == tarfile.itn(value, width, tarfile.USTAR_FORMAT)
        assert decode_number(field) == decode_octal(field) == value
        assert tarfile.nti(field) == value
    assert max_octal(12) == MAX_USTAR_SIZE == 8**11 - 1
    for value in (-1, max_octal(width) + 1):
        with pytest.raises(TarFormatError, match="overflow in number field"):
            encode_octal(value, width)


@pytest.mark.parametrize("width", [8, 12])
def test_base256_round_trips_signed_up_to_its_bounds(width):
    bound = 256 ** (width - 1)
    for value in (0, 1, max_octal(width) + 1, bound - 1, -1, -bound, 10**12 % bound):
        field = encode_base256(value, width)
        assert len(field) == width and field[0] in (0x80, 0xFF)
        assert decode_base256(field) == value
        assert tarfile.nti(field) == value  # GNU's reading of it
        if value >= 0:
            assert decode_number(field) == value
        if not 0 <= value <= max_octal(width):  # where tarfile (GNU_FORMAT) writes base-256
            assert field == tarfile.itn(value, width, tarfile.GNU_FORMAT)
    for value in (bound, -bound - 1):
        with pytest.raises(TarFormatError, match="overflow"):
            encode_base256(value, width)
    with pytest.raises(TarFormatError):
        decode_base256(b"0000000\0")


def test_encode_number_is_tarfiles_itn():
    for value in (0, 0o7777777, 0o7777777 + 1, 256**7 - 1, -5):
        assert encode_number(value, 8, base256=True) == tarfile.itn(value, 8, tarfile.GNU_FORMAT)
    assert encode_number(MAX_USTAR_SIZE, 12) == b"77777777777\0"
    with pytest.raises(TarFormatError):
        encode_number(MAX_USTAR_SIZE + 1, 12)
    with pytest.raises(TarFormatError):
        encode_number(256**11, 12, base256=True)


@pytest.mark.parametrize(("field", "value"), [
    (b"0000644\0", 0o644), (b"    644 ", 0o644), (b"644\0junk", 0o644), (b"\0" * 8, 0),
    (b" " * 8, 0), (b"\x80" + bytes(6) + b"\x07", 7)])
def test_decode_number_reads_what_tarfile_reads(field, value):
    assert decode_number(field) == value == tarfile.nti(field)


@pytest.mark.parametrize(("field", "reason"), [
    (b"0000899\0", "invalid header"), (b"12x4567\0", "invalid header"),
    (b"\xe9\xe9\0" + bytes(5), "invalid header"),
    (b"\xff" + b"\xff" * 7, "negative number in a header")])
def test_decode_number_refuses_what_is_not_a_number(field, reason):
    with pytest.raises(TarFormatError, match=reason):
        decode_number(field)


@pytest.mark.parametrize("field", [b"\0" * 8, b" " * 8, b"644\0junk", b"\x80" + bytes(7),
                                   b"0000899\0", b"+000644\0", b"0_644\0\0\0", b"6 4 4\0\0\0"])
def test_decode_octal_is_strict(field):
    with pytest.raises(TarFormatError, match="malformed"):
        decode_octal(field)
    assert decode_octal(b"  0644 \0") == 0o644


# --------------------------------------------------------------------------- checksum


def test_checksums_are_tarfiles_unsigned_and_signed():
    rng = random.Random(14)
    for _ in range(200):
        block = bytes(rng.randrange(256) for _ in range(BLOCK))
        assert _tar.checksums(block) == tarfile.calc_chksums(block)
    header = file_header("a.txt", 3)
    assert int(header[148:154], 8) == _tar.checksum(header)


def test_a_checksum_mismatch_is_seen_and_a_signed_one_is_accepted():
    header = parse_header(file_header("a.txt", 3))
    assert header.checksum_ok
    damaged = bytearray(header.block)
    damaged[0] ^= 1
    assert not parse_header(bytes(damaged)).checksum_ok
    # an old writer's signed checksum over a name with bytes over 127
    high = bytearray(file_header("caf\u00e9", 3, pax=False))  # UTF-8 name: two high bytes
    high[148:156] = b"%06o\0 " % tarfile.calc_chksums(bytes(high))[1]
    parsed = parse_header(bytes(high))
    assert parsed.checksum_ok and parsed.chksum == _tar.signed_checksum(high)
    assert parsed.chksum != _tar.checksum(high)
    garbage = bytearray(header.block)
    garbage[148:156] = b"notoctal"
    with pytest.raises(TarFormatError, match="invalid header"):
        _ = parse_header(bytes(garbage)).checksum_ok


def test_parse_header_wants_one_block():
    with pytest.raises(TarFormatError, match="512 bytes"):
        parse_header(bytes(511))


# --------------------------------------------------------------------------- PAX records


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 90, 91, 92, 93, 94, 95, 96, 990, 995, 996,
                                  997, 998, 999, 1000, 9990, 9994, 9995, 9996])
def test_pax_record_length_counts_itself(size):
    value = b"v" * size
    record = pax_record(b"k", value)
    length, _, rest = record.partition(b" ")
    assert int(length) == len(record) and rest == b"k=" + value + b"\n"
    assert not length.startswith(b"0")
    assert list(iter_pax_records(record)) == [_tar.PaxRecord(b"k", value, len(record))]
    # tarfile computes the same length (its generic header's records)
    info = tarfile.TarInfo("x")
    info.pax_headers = {"k": "v" * size}
    assert record in info.tobuf(tarfile.PAX_FORMAT)


def test_pax_records_parse_strictly_and_keep_raw_values():
    data = (pax_record(b"path", "caf\u00e9/\udcff".encode("utf-8", "surrogateescape"))
            + pax_record(b"size", b"8589934592") + pax_record(b"k\xff", b"v"))
    records = pax_records(data + bytes(BLOCK - len(data) % BLOCK))  # NUL padding ends them
    assert records == {"path": "caf\u00e9/\udcff".encode("utf-8", "surrogateescape"),
                       "size": b"8589934592", "k\udcff": b"v"}
    assert pax_records(pax_record(b"a", b"1") + pax_record(b"a", b"2")) == {"a": b"2"}
    assert pax_records(b"") == {} == pax_records(bytes(BLOCK))
    assert pax_records(pax_record(b"comment", b"a=b\nc")) == {"comment": b"a=b\nc"}


@pytest.mark.parametrize("data", [
    b"x9 size=1\n", b" 9 size=1\n", b"9size=1\n\n", b"1" * 21 + b" k=v\n",
    b"4 k=\n", b"30 size=1\n", b"10 size=12", b"11 size=123", b"10 size=1\n\n",
    b"9 nokey\n", b"6 =v\n", b"9 size=1\n" + b"junk", b"\xd9 size=1\n"])
def test_malformed_pax_records_are_refused(data):
    with pytest.raises(TarFormatError, match="invalid PAX header"):
        pax_records(data)


def test_pax_decimals_are_bounded():
    assert pax_decimal(b"0") == 0 and pax_decimal(b"9" * 20) == 10**20 - 1
    for value in (b"", b"9" * 21, b"-1", b"+1", b" 1", b"1_000", b"\xd9"):
        with pytest.raises(TarFormatError):
            pax_decimal(value)


# --------------------------------------------------------------------------- padding


def test_padding_arithmetic():
    for size, pad in [(0, 0), (1, 511), (511, 1), (512, 0), (513, 511), (10**9, 0)]:
        assert pad_size(size) == pad and padding(size) == bytes(pad)
        assert padded(size) == size + pad and padded(size) % BLOCK == 0
    assert _tar.record_padding(2 * BLOCK) == bytes(RECORD - 2 * BLOCK)
    assert _tar.record_padding(RECORD) == b""
    assert bytes(2 * BLOCK) == END_OF_ARCHIVE


# --------------------------------------------------------------------------- writing


def test_file_headers_are_what_tarfile_writes():
    rng = random.Random(8)
    names = [*NAMES, "\udcff\udc80x", "a\0b", "y" * 99 + "\u00e9", "e/" * 80 + "f", "x" * 200,
             "c" * 155 + "/" + "d" * 100, "c" * 156 + "/" + "d"]
    names += ["".join(rng.choice(string.ascii_letters + "/._- 0123456789\u00e9")
                      for _ in range(rng.randint(1, 160))) for _ in range(100)]
    fs = sys.getfilesystemencoding()

    def outcome(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UnicodeEncodeError:
            return "UnicodeEncodeError"
        except ValueError:  # tarfile's, and TarFormatError
            return "ValueError"

    for name in names:
        for size in (0, 1, 512, MAX_USTAR_SIZE, MAX_USTAR_SIZE + 1, 10**20):
            for mode in (0o644, 0o755, 0o100644):
                assert file_header(name, size, mode, encoding=fs) == _tarfile_header(
                    name, size, mode, encoding=fs), (name, size, mode)
                for enc, err in (("ascii", "strict"), ("utf-8", "surrogateescape")):
                    assert outcome(file_header, name, size, mode, pax=False, encoding=enc,
                                   errors=err) == outcome(_tarfile_header, name, size, mode,
                                                          tarfile.USTAR_FORMAT, enc, err)


def test_an_archive_written_here_is_read_by_tarfile():
    members = [(name, name.encode("utf-8") * 3, 0o755 if i % 2 else 0o644)
               for i, name in enumerate(NAMES)]
    data = _archive(members)
    assert len(data) % RECORD == 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        got = [(m.name, archive.extractfile(m).read(), m.mode, m.uid, m.gid, m.mtime, m.uname,
                m.isreg()) for m in archive.getmembers()]
    assert got == [(n, d, mode, 0, 0, 0, "", True) for n, d, mode in members]


def test_ustar_names_over_100_bytes_go_into_the_prefix():
    header = file_header(LONG, 5, pax=False)
    parsed = parse_header(header)
    assert parsed.prefix and parsed.path.decode() == LONG and len(header) == BLOCK
    assert tarfile.TarInfo.frombuf(header, "utf-8", "strict").name == LONG
    with pytest.raises(TarFormatError, match="name is too long"):
        file_header("x" * 101, 5, pax=False)
    with pytest.raises(TarFormatError, match="overflow"):
        file_header("big", MAX_USTAR_SIZE + 1, pax=False)


def test_a_size_over_8_gib_goes_into_a_pax_record():
    header = file_header("payload.tar.zst", 9 * GIB)
    assert len(header) == 3 * BLOCK
    pax = parse_header(header[:BLOCK])
    assert pax.typeflag == b"x" and pax.name == b"././@PaxHeader" and pax.checksum_ok
    assert pax_records(header[BLOCK:2 * BLOCK]) == {"size": str(9 * GIB).encode()}
    assert parse_header(header[2 * BLOCK:]).size == 0
    with tarfile.open(fileobj=io.BytesIO(header + bytes(BLOCK)), mode="r:") as archive:
        member = archive.next()
        assert member is not None and member.size == 9 * GIB


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_headers_tarfile_writes_parse_here(fmt):
    info = tarfile.TarInfo("dir/link")
    info.type, info.linkname = tarfile.SYMTYPE, "../target"
    info.mode, info.uid, info.gid, info.mtime = 0o777, 1000, 100, 1_700_000_000
    info.uname, info.gname = "builder", "staff"
    header = parse_header(info.tobuf(fmt, "utf-8", "surrogateescape"))
    assert header.checksum_ok
    assert (header.name, header.typeflag, header.linkname, header.uname, header.gname) == (
        b"dir/link", b"2", b"../target", b"builder", b"staff")
    assert (header.mode, header.uid, header.gid, header.mtime, header.size) == (
        0o777, 1000, 100, 1_700_000_000, 0)
    magic = (b"ustar ", b" \0") if fmt == tarfile.GNU_FORMAT else (b"ustar\0", b"00")
    assert (header.magic, header.version) == magic


def test_a_gnu_base256_size_parses_here_but_not_in_the_strict_octal():
    info = tarfile.TarInfo("big")
    info.size = 9 * GIB
    block = info.tobuf(tarfile.GNU_FORMAT)
    header = parse_header(block)
    assert header.size == 9 * GIB and block[124] == 0x80
    with pytest.raises(TarFormatError):
        header.octal(_tar.SIZE)


def test_a_malformed_field_is_an_error_only_when_it_is_read():
    block = bytearray(file_header("a.txt", 3))
    block[_tar.UID] = b"nonsense"
    header = parse_header(_tar.with_checksum(block))
    assert header.checksum_ok and header.size == 3 and header.mode == 0o644
    with pytest.raises(TarFormatError, match="invalid header"):
        _ = header.uid


# --------------------------------------------------------------------------- GNU tar

# An outside implementation to cross-check against where the host has one (Debian's base
# image does); the same round trips are checked against Python's tarfile unconditionally.
GNU_TAR = shutil.which("tar")
needs_tar = pytest.mark.skipif(GNU_TAR is None, reason="no tar program on PATH to cross-check")


@needs_tar
def test_gnu_tar_lists_an_archive_written_here(tmp_path):
    members = [(name, b"x" * (i * 300), 0o755 if i % 2 else 0o644)
               for i, name in enumerate(NAMES)]
    path = tmp_path / "t.tar"
    path.write_bytes(_archive(members))
    env = {"LC_ALL": "C.UTF-8", "TZ": "UTC", "PATH": "/usr/bin:/bin"}
    listing = subprocess.run([GNU_TAR, "-tvf", str(path)], capture_output=True, env=env,
                             check=True).stdout.decode("utf-8").splitlines()
    assert len(listing) == len(members)
    for line, (name, data, mode) in zip(listing, members, strict=True):
        fields = line.split(maxsplit=5)
        assert fields[0] == stat.filemode(0o100000 | mode)
        assert fields[1] == "0/0" and int(fields[2]) == len(data)
        assert fields[3] == "1970-01-01" and fields[5] == name
    names = subprocess.run([GNU_TAR, "-tf", str(path)], capture_output=True, env=env,
                           check=True).stdout.decode("utf-8").splitlines()
    assert names == [name for name, _, _ in members]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run([GNU_TAR, "-xf", str(path), "-C", str(out)], env=env, check=True)
    for name, data, _ in members:
        assert (out / name).read_bytes() == data


@needs_tar
@pytest.mark.parametrize("fmt", ["ustar", "pax", "gnu"])
def test_an_archive_gnu_tar_writes_parses_here(tmp_path, fmt):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_bytes(b"hello")
    (src / "b.bin").write_bytes(b"\1" * 1000)
    path = tmp_path / "t.tar"
    subprocess.run([GNU_TAR, f"--format={fmt}", "--owner=0", "--group=0", "--numeric-owner",
                    "--mtime=@0", "--sort=name", "-cf", str(path), "-C", str(src), "."],
                   check=True, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    data = path.read_bytes()
    seen = {}
    offset = 0
    while data[offset:offset + BLOCK] != bytes(BLOCK):
        header = parse_header(data[offset:offset + BLOCK])
        assert header.checksum_ok
        size = header.size
        if header.typeflag == b"x":
            pax_records(data[offset + BLOCK:offset + BLOCK + size])  # well framed
        else:
            seen[header.path.decode()] = (header.typeflag, size, header.uid, header.mtime)
        offset += BLOCK + padded(size)
    assert seen["./sub/a.txt"] == (b"0", 5, 0, 0)
    assert seen["./b.bin"] == (b"0", 1000, 0, 0)
    assert seen["./sub/"][0] == b"5"
