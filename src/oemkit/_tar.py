"""The POSIX tar wire format, in one place: blocks, fields, numbers, checksums, PAX records.

oemkit writes and reads tar in three places: the outer bundle archive (``_fs``: plain
ustar, a PAX size record only for members of 8 GiB and more), the deterministic payload
tar inside ``payload.tar.zst`` (``release.bundle``: PAX) and the payload's strict
streaming reader (``verify.payload``). The format's details (field offsets, octal and
base-256 numbers and their bounds, the header checksum, the self-counting length of a PAX
record, block padding) live here once, so that the writers and the readers cannot drift
apart and each detail is tested once (tests/test_tar.py, against Python's ``tarfile`` and
GNU tar).

Pure functions, bytes in and values or bytes out; nothing here reads a file. Malformed
input raises :class:`TarFormatError` (a ``ValueError``) with a short reason; the callers
restate it with their own code and message, which stay what they were. The headers
written are byte for byte what ``tarfile`` writes (``TarInfo.tobuf``) for a regular file
with owner 0:0, no user or group names and mtime 0, whatever the Python version.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

BLOCK = 512
#: tarfile's record: the end-of-archive marker is padded to a multiple of it.
RECORD = 20 * BLOCK
ZERO_BLOCK = bytes(BLOCK)
END_OF_ARCHIVE = bytes(2 * BLOCK)

# Header fields (POSIX.1-1988 ustar), as slices of a header block.
NAME = slice(0, 100)
MODE = slice(100, 108)
UID = slice(108, 116)
GID = slice(116, 124)
SIZE = slice(124, 136)
MTIME = slice(136, 148)
CHKSUM = slice(148, 156)
TYPEFLAG = slice(156, 157)
LINKNAME = slice(157, 257)
MAGIC = slice(257, 263)
VERSION = slice(263, 265)
UNAME = slice(265, 297)
GNAME = slice(297, 329)
DEVMAJOR = slice(329, 337)
DEVMINOR = slice(337, 345)
PREFIX = slice(345, 500)

USTAR_MAGIC = b"ustar\0"
USTAR_VERSION = b"00"
REGTYPE = b"0"
PAX_TYPE = b"x"
#: The name tarfile (and star) give a PAX extended header.
PAX_HEADER_NAME = "././@PaxHeader"
#: The largest size an 11-digit octal size field holds: 8 GiB - 1.
MAX_USTAR_SIZE = 0o77777777777
#: Decimal numbers in PAX records have at most this many digits (10^20 > 2^64): Python
#: refuses to parse more than 4300 and nothing larger is a size.
MAX_DIGITS = 20

_OCTAL = re.compile(rb"[0-7]+")


class TarFormatError(ValueError):
    """Malformed tar bytes, or a value a field cannot hold; ``str()`` is the reason."""


# --------------------------------------------------------------------------- padding


def pad_size(size: int) -> int:
    """Zero bytes that round ``size`` up to a whole block."""
    return -size % BLOCK


def padding(size: int) -> bytes:
    """The zero bytes that round ``size`` up to a whole block."""
    return bytes(-size % BLOCK)


def padded(size: int) -> int:
    """``size`` rounded up to a whole block: what a member's data occupies."""
    return size + (-size % BLOCK)


def record_padding(offset: int) -> bytes:
    """Zero bytes that round ``offset`` up to a whole record (after the end blocks)."""
    return bytes(-offset % RECORD)


# --------------------------------------------------------------------------- numbers


def max_octal(width: int) -> int:
    """The largest number an octal field of ``width`` bytes holds (one byte is the NUL)."""
    return (1 << 3 * (width - 1)) - 1


def encode_octal(value: int, width: int) -> bytes:
    """``value`` as ``width - 1`` zero-padded octal digits and a NUL, as tarfile writes it.

    Raises:
        TarFormatError: ``value`` is negative or over :func:`max_octal`.
    """
    if not 0 <= value <= max_octal(width):
        raise TarFormatError("overflow in number field")
    return b"%0*o\0" % (width - 1, value)


def encode_base256(value: int, width: int) -> bytes:
    """``value`` in GNU base-256: 0x80 (0xFF when negative) and ``width - 1`` big-endian
    bytes, two's complement.

    Raises:
        TarFormatError: ``value`` does not fit in ``width - 1`` bytes.
    """
    bound = 1 << 8 * (width - 1)
    if not -bound <= value < bound:
        raise TarFormatError("overflow in number field")
    lead = b"\x80" if value >= 0 else b"\xff"
    return lead + (value % bound).to_bytes(width - 1, "big")


def encode_number(value: int, width: int, *, base256: bool = False) -> bytes:
    """Octal when ``value`` fits, else GNU base-256 when allowed (tarfile's ``itn``).

    Raises:
        TarFormatError: it fits neither.
    """
    if 0 <= value <= max_octal(width) or not base256:
        return encode_octal(value, width)
    return encode_base256(value, width)


def decode_base256(data: bytes) -> int:
    """A GNU base-256 field (0x80 or 0xFF, then big-endian two's complement bytes).

    Raises:
        TarFormatError: the field does not start with 0x80 or 0xFF.
    """
    if data[:1] not in (b"\x80", b"\xff"):
        raise TarFormatError("not a base-256 number")
    value = int.from_bytes(data[1:], "big")
    return value - (1 << 8 * (len(data) - 1)) if data[0] == 0xFF else value


def decode_number(data: bytes) -> int:
    """A numeric field read as ``tarfile`` reads it: GNU base-256 (non-negative only), or
    octal text up to the first NUL, surrounding whitespace ignored, empty meaning 0.

    Raises:
        TarFormatError: ``negative number in a header`` (base-256 with 0xFF);
            ``invalid header`` (not a number).
    """
    if data[:1] in (b"\x80", b"\xff"):
        if data[0] == 0xFF:
            raise TarFormatError("negative number in a header")
        return int.from_bytes(data[1:], "big")
    text = data.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError("invalid header") from None


def decode_octal(data: bytes) -> int:
    """A numeric field read strictly, as the outer archive's reader does: octal digits
    only, after leading spaces, before trailing NULs and spaces; at least one digit.

    Raises:
        TarFormatError: ``malformed`` (anything else, base-256 included).
    """
    text = data.rstrip(b"\0 ").lstrip(b" ")
    if not text or not _OCTAL.fullmatch(text):
        raise TarFormatError("malformed")
    return int(text, 8)


# --------------------------------------------------------------------------- checksum


def checksum(block: bytes | bytearray) -> int:
    """The header checksum of ``block`` as POSIX defines it: the unsigned sum of its bytes,
    the checksum field counted as eight spaces."""
    return 256 + sum(block[:148]) + sum(block[156:BLOCK])


_LOW = bytes(range(128))


def signed_checksum(block: bytes | bytearray) -> int:
    """The checksum as some old writers computed it, over signed bytes."""
    high = len(bytes(block[:148]).translate(None, _LOW)) + len(
        bytes(block[156:BLOCK]).translate(None, _LOW))
    return checksum(block) - 256 * high


def checksums(block: bytes | bytearray) -> tuple[int, int]:
    """(unsigned, signed) header checksums of ``block``, as ``tarfile.calc_chksums``."""
    return checksum(block), signed_checksum(block)


def with_checksum(block: bytes | bytearray) -> bytes:
    """``block`` with its checksum field filled in (six octal digits, NUL, space)."""
    block = bytes(block)
    return block[:148] + b"%06o\0 " % checksum(block) + block[156:]


# --------------------------------------------------------------------------- PAX records


def pax_record(key: bytes, value: bytes) -> bytes:
    """One ``LENGTH KEY=VALUE\\n`` record; LENGTH counts the whole record, its own digits
    included (the smallest length that is consistent, as tarfile and GNU tar write it)."""
    rest = len(key) + len(value) + 3  # " ", "=", "\n"
    length = 0
    while True:
        total = rest + len(str(length))
        if total == length:
            break
        length = total
    return b"%d %s=%s\n" % (length, key, value)


@dataclass(frozen=True)
class PaxRecord:
    """One parsed PAX record and where it ends in the extended header's data."""

    key: bytes
    value: bytes
    end: int


def iter_pax_records(data: bytes) -> Iterator[PaxRecord]:
    """The records of a PAX extended header's data, strictly framed, up to its end or a
    NUL where a record would start.

    Raises:
        TarFormatError: ``invalid PAX header``: a length that is not 1 to 20 ASCII digits
            and a space, shorter than 5 or running past the data, a record not ending in
            a newline, a record without a key or an ``=``.
    """
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos, pos + MAX_DIGITS + 1)
        if space <= pos or not data[pos:space].isdigit():
            raise TarFormatError("invalid PAX header")
        length = int(data[pos:space])  # at most 20 digits (the find above)
        end = pos + length
        if length < 5 or end > len(data) or data[end - 1] != 0x0A:
            raise TarFormatError("invalid PAX header")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not key or not eq:
            raise TarFormatError("invalid PAX header")
        yield PaxRecord(key, value, end)
        pos = end


def pax_records(data: bytes) -> dict[str, bytes]:
    """The ``LEN KEY=VALUE\\n`` records of a PAX extended header (strictly framed), keys
    decoded (UTF-8, undecodable bytes kept as surrogates); a later record wins.

    Raises:
        TarFormatError: see :func:`iter_pax_records`.
    """
    return {r.key.decode("utf-8", "surrogateescape"): r.value for r in iter_pax_records(data)}


def pax_decimal(value: bytes) -> int:
    """A PAX record's decimal value (a size): ASCII digits, at most :data:`MAX_DIGITS`.

    Raises:
        TarFormatError: anything else.
    """
    if not value.isdigit() or len(value) > MAX_DIGITS:
        raise TarFormatError("invalid decimal number")
    return int(value)


# --------------------------------------------------------------------------- writing


def _block(name: bytes, mode: int, size: int, typeflag: bytes, prefix: bytes = b"") -> bytes:
    """One ustar header block: owner 0:0, no user names, mtime 0, no link, no device."""
    return with_checksum(b"".join((
        name[:100].ljust(100, b"\0"), encode_octal(mode, 8), _ZERO_ID, _ZERO_ID,
        encode_octal(size, 12), _ZERO_TIME, b" " * 8, typeflag, bytes(100),
        USTAR_MAGIC, USTAR_VERSION, bytes(80), prefix[:155].ljust(155, b"\0"), bytes(12))))


_ZERO_ID = encode_octal(0, 8)
_ZERO_TIME = encode_octal(0, 12)


def pax_header(records: bytes) -> bytes:
    """A PAX extended header (type ``x``, mode 0) carrying ``records``, padded."""
    return (_block(PAX_HEADER_NAME.encode("ascii"), 0, len(records), PAX_TYPE)
            + records + padding(len(records)))


def _split_name(name: str, encoding: str, errors: str) -> tuple[bytes, bytes]:
    """A ustar (prefix, name) split at a slash, the prefix as short as fits (tarfile's)."""
    parts = name.split("/")
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i]).encode(encoding, errors)
        rest = "/".join(parts[i:]).encode(encoding, errors)
        if len(prefix) <= 155 and len(rest) <= 100:
            return prefix, rest
    raise TarFormatError("name is too long")


def file_header(name: str, size: int, mode: int = 0o644, *, pax: bool = True,
                encoding: str = "utf-8", errors: str = "surrogateescape") -> bytes:
    """The header of a regular file with owner 0:0, no user names and mtime 0: what
    ``tarfile`` writes for it (``TarInfo.tobuf``). Only the permission bits of ``mode``
    are kept.

    ``pax=False`` is ustar (``USTAR_FORMAT``): a name over 100 bytes is split into the
    prefix field, sizes must fit 11 octal digits. ``pax=True`` is ``PAX_FORMAT``: a PAX
    extended header first carries a path that is not ASCII or over 100 characters and a
    size of 8 GiB or more (``hdrcharset=BINARY`` and the bytes in ``encoding`` for a path
    with undecodable bytes); the ustar block then holds the name in ASCII with ``?`` for
    other characters, cut to 100 bytes, and size 0 if the size went into the PAX header.

    Raises:
        TarFormatError: ustar only: the size does not fit, the name cannot be split.
        UnicodeEncodeError: the name cannot be encoded with ``encoding`` and ``errors``.
    """
    mode &= 0o7777
    if not pax:
        raw = name.encode(encoding, errors)
        prefix = b""
        if len(raw) > 100:
            prefix, raw = _split_name(name, encoding, errors)
        return _block(raw, mode, size, REGTYPE, prefix)
    fields: list[tuple[bytes, str]] = []
    if not name.isascii() or len(name) > 100:
        fields.append((b"path", name))
    if not 0 <= size <= MAX_USTAR_SIZE:
        fields.append((b"size", str(size)))
        size = 0
    header = _block(name.encode("ascii", "replace"), mode, size, REGTYPE)
    if not fields:
        return header
    binary = False
    for _, value in fields:
        try:
            value.encode("utf-8", "strict")
        except UnicodeEncodeError:
            binary = True
    records = b"21 hdrcharset=BINARY\n" if binary else b""
    for key, value in fields:
        data = value.encode(encoding, "surrogateescape") if binary else value.encode("utf-8")
        records += pax_record(key, data)
    return pax_header(records) + header


# --------------------------------------------------------------------------- reading


def _text(data: bytes) -> bytes:
    return data.split(b"\0", 1)[0]


@dataclass(frozen=True)
class Header:
    """One header block, parsed. The text fields are cut at their first NUL; the numeric
    fields are decoded when read (``tarfile``'s rules, :func:`decode_number`) and raise
    :class:`TarFormatError` when malformed, so that a reader judges the fields it uses,
    in its own order, and a field it ignores is no error. :meth:`octal` reads one strictly.
    """

    block: bytes = field(repr=False)
    name: bytes
    prefix: bytes
    typeflag: bytes
    linkname: bytes
    magic: bytes
    version: bytes
    uname: bytes
    gname: bytes

    def number(self, where: slice) -> int:
        """The numeric field at ``where`` (tarfile's rules). Raises :class:`TarFormatError`."""
        return decode_number(self.block[where])

    def octal(self, where: slice) -> int:
        """The numeric field at ``where``, strictly octal. Raises :class:`TarFormatError`."""
        return decode_octal(self.block[where])

    @property
    def mode(self) -> int:
        """The permission (and type) bits."""
        return self.number(MODE)

    @property
    def uid(self) -> int:
        """The owner's user id."""
        return self.number(UID)

    @property
    def gid(self) -> int:
        """The owner's group id."""
        return self.number(GID)

    @property
    def size(self) -> int:
        """The member's size (PAX may override it)."""
        return self.number(SIZE)

    @property
    def mtime(self) -> int:
        """The modification time, seconds since the epoch."""
        return self.number(MTIME)

    @property
    def chksum(self) -> int:
        """The stored checksum."""
        return self.number(CHKSUM)

    @property
    def checksum_ok(self) -> bool:
        """The stored checksum is the computed one, unsigned or signed (as tarfile accepts).
        Raises :class:`TarFormatError` when the field is not a number."""
        stored = self.chksum
        return stored == checksum(self.block) or stored == signed_checksum(self.block)

    @property
    def path(self) -> bytes:
        """``prefix/name`` when there is a prefix, else the name."""
        return self.prefix + b"/" + self.name if self.prefix else self.name


def parse_header(block: bytes) -> Header:
    """Parse one 512-byte header block; nothing is judged yet (see :class:`Header`).

    Raises:
        TarFormatError: ``block`` is not 512 bytes.
    """
    if len(block) != BLOCK:
        raise TarFormatError(f"a header is {BLOCK} bytes, not {len(block)}")
    return Header(block, _text(block[NAME]), _text(block[PREFIX]), block[TYPEFLAG],
                  _text(block[LINKNAME]), block[MAGIC], block[VERSION], _text(block[UNAME]),
                  _text(block[GNAME]))
