"""The payload stream parser: the inner tar in zstd of ``payload.tar.zst``, bounded.

Bytes in (the payload member, read and hashed in a background thread), entries and
coded errors out: the decompression is pulled in bounded steps, the tar headers
(ustar and PAX) are parsed strictly, and each entry is checked against the verified
manifest (safe path, regular file, listed, in order, size, mode, digest). Called by
``verify.bundle`` once the manifest is trusted, and by ``host.migrate`` for the config
files of an unverified bundle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from oemkit._fs import CHUNK, InlineReader, OuterMember, RangeReader, read_member_behind
from oemkit._tar import (
    BLOCK,
    PAX_TYPE,
    RECORD,
    ZERO_BLOCK,
    TarFormatError,
    pad_size,
    padded,
    parse_header,
    pax_decimal,
)
from oemkit._tar import pax_records as _pax_records  # a module global: tests patch it
from oemkit.errors import OemkitError, VerificationError
from oemkit.models.manifest import PAYLOAD, FileEntry, Manifest, collision_key, path_problem

if TYPE_CHECKING:
    from oemkit.verify.bundle import Limits

ProgressFn = Callable[[int], None]
#: Opens a writable file for a payload entry during verification (used by unpack).
Sink = Callable[[FileEntry], BinaryIO]


def _fail(code: str, message: str, *, check: str, member: str | None = None,
          expected: str | None = None, actual: str | None = None,
          hint: str = "the bundle was altered after signing; obtain a fresh copy from the "
                      "vendor") -> VerificationError:
    """A verification failure pinned to a check (verify.bundle raises through it too)."""
    return VerificationError(code, message, check=check, member=member, expected=expected,
                             actual=actual, hint=hint)


#: Decompressed payload bytes are looked at through a window of this size (headers, and
#: file data in slices of at most this); PAX extended headers larger than MAX_PAX are refused.
WINDOW = CHUNK
MAX_PAX = 64 << 10


class _Source:
    """Compressed payload bytes for the decompressor, taken from a :class:`RangeReader`
    (which reads and hashes them in a background thread)."""

    def __init__(self, raw: RangeReader | InlineReader, progress: ProgressFn | None) -> None:
        self._raw = raw
        self._progress = progress
        self._rest = memoryview(b"")

    def read(self, size: int = -1) -> bytes | memoryview:
        if not self._rest:
            chunk = self._raw.next_chunk()
            if chunk is None:
                return b""
            if self._progress:
                self._progress(len(chunk))
            self._rest = memoryview(chunk)
        if size is None or size < 0 or size >= len(self._rest):
            data, self._rest = self._rest, memoryview(b"")
        else:
            data, self._rest = self._rest[:size], self._rest[size:]
        return data


class _Inflater:
    """The decompressed payload, seen through one reused window buffer.

    Decompression is pulled in bounded steps (never more than the window, and never more
    than one byte past ``limit``), so a small frame that expands to gigabytes costs no more
    memory than a well-behaved one. Views handed out are valid until the next call.
    """

    def __init__(self, source: _Source, limit: int) -> None:
        import zstandard

        dctx = zstandard.ZstdDecompressor(max_window_size=1 << 27)
        self._zst = dctx.stream_reader(
            source, read_size=CHUNK, read_across_frames=True,  # type: ignore[arg-type]
            closefd=False)
        self._error = zstandard.ZstdError
        self._buf = bytearray(WINDOW)
        self._view = memoryview(self._buf)
        self._pos = self._end = 0
        self._limit = limit
        self.produced = 0
        self.eof = False

    def _fill(self) -> int:
        """Decompress more bytes behind the unread ones; 0 at the end of the stream."""
        if self._pos == self._end:
            self._pos = self._end = 0
        elif self._end == WINDOW:
            left = self._end - self._pos
            self._view[:left] = self._view[self._pos:self._end]
            self._pos, self._end = 0, left
        want = min(WINDOW - self._end, self._limit + 1 - self.produced)
        try:
            got: int = self._zst.readinto(self._view[self._end:self._end + want])
        except self._error as exc:
            raise _fail("E_PAYLOAD_CORRUPT", f"{PAYLOAD} is not valid zstd ({exc})",
                        check="payload", member=PAYLOAD) from exc
        if not got:
            self.eof = True
            return 0
        self.produced += got
        if self.produced > self._limit:
            raise _fail("E_PAYLOAD_BOMB", f"{PAYLOAD} decompresses past its declared size "
                        f"({self._limit} bytes)", check="payload", member=PAYLOAD,
                        expected=f"<= {self._limit} bytes", actual=f"> {self._limit} bytes",
                        hint="a bundle that is legitimate but larger than the payload bound "
                             "can raise it with --max-payload-bytes; otherwise the bundle is "
                             "hostile or damaged: obtain a fresh copy from the vendor")
        self._end += got
        return got

    def exact(self, n: int) -> bytes | None:
        """The next ``n`` (<= WINDOW) bytes, or None when the stream ends before them."""
        while self._end - self._pos < n:
            if not self._fill():
                return None
        data = bytes(self._view[self._pos:self._pos + n])
        self._pos += n
        return data

    def chunks(self, n: int) -> Iterator[memoryview]:
        """The next ``n`` bytes as views into the window (each valid until the next)."""
        while n:
            if self._pos == self._end and not self._fill():
                raise TarFormatError("ends unexpectedly")
            take = min(n, self._end - self._pos)
            view = self._view[self._pos:self._pos + take]
            self._pos += take
            n -= take
            yield view

    def skip(self, n: int) -> None:
        for _ in self.chunks(n):
            pass

    def drain(self) -> None:
        """Decompress to the end (bounded like everything else), discarding the bytes."""
        while not self.eof:
            self._pos = self._end
            self._fill()

    def drain_zeros(self) -> None:
        """Decompress to the end (bounded), requiring every byte left to be zero."""
        while True:
            if self._buf.count(0, self._pos, self._end) != self._end - self._pos:
                raise TarFormatError("data after the end-of-archive marker")
            self._pos = self._end
            if self.eof or not self._fill():
                return


def _kind(typeflag: bytes) -> str:
    return {b"2": "symlink", b"1": "hardlink", b"3": "device file", b"4": "device file",
            b"6": "FIFO", b"5": "directory"}.get(typeflag, f"type {typeflag!r}")


_REGULAR = (b"0", b"\0", b"7")


def _tar_entries(inflater: _Inflater) -> Iterator[tuple[str, bytes, int, int]]:
    """(name, typeflag, size, mode) of each entry; the caller consumes each regular file's
    data (``size`` bytes) before asking for the next. The end: a zero block.

    Reads what ``tarfile`` writes in PAX_FORMAT (and plain ustar): a PAX ``x`` header may
    set the next entry's ``path`` and ``size``; other extension types are reported as
    entries of that type (not regular files). Each header's checksum (unsigned, or signed
    as old writers made it) and its mode and size fields are checked; a malformed header is
    an error (``tarfile`` would take it for the end of the archive). The other fields are
    not used: the digests fix the content. The wire format is ``_tar``'s; its
    ``TarFormatError`` is this reader's ``E_PAYLOAD_CORRUPT``.
    """
    pax: dict[str, bytes] | None = None
    offset = 0
    while True:
        block = inflater.exact(BLOCK)
        if block is None:
            raise TarFormatError("empty file" if offset == 0 else "ends unexpectedly")
        if block == ZERO_BLOCK:
            if pax is not None:
                raise TarFormatError("missing header after a PAX header")
            return
        header = parse_header(block)
        if not header.checksum_ok:  # the stored checksum first: not a number is an error
            raise TarFormatError(f"bad header checksum at byte {offset}")
        typeflag = header.typeflag
        mode = header.mode
        size = header.size
        offset += BLOCK
        if typeflag == PAX_TYPE:
            if pax is not None:
                raise TarFormatError(f"two PAX headers in a row at byte {offset - BLOCK}")
            if size > MAX_PAX:
                inflater.skip(padded(size))  # past the bound: E_PAYLOAD_BOMB
                raise TarFormatError(f"a {size}-byte PAX header")
            data = inflater.exact(size)
            if data is None:
                raise TarFormatError("ends unexpectedly")
            inflater.skip(pad_size(size))
            offset += padded(size)
            pax = _pax_records(data)
            continue
        name = header.name.decode("utf-8", "surrogateescape")
        prefix = header.prefix.decode("utf-8", "surrogateescape")
        if prefix:
            name = prefix + "/" + name
        if pax is not None:
            if "path" in pax:
                name = pax["path"].decode("utf-8", "surrogateescape")
            if "size" in pax:
                try:
                    size = pax_decimal(pax["size"])
                except TarFormatError:
                    raise TarFormatError("invalid size in a PAX header") from None
            pax = None
        if typeflag == b"\0" and name.endswith("/"):
            typeflag = b"5"
        if typeflag == b"5":
            name = name.rstrip("/")
        yield name, typeflag, size, mode
        if typeflag in _REGULAR:
            offset += padded(size)
            inflater.skip(pad_size(size))


def _tar_overhead(entry: FileEntry) -> int:
    """Most tar bytes around one file: header, PAX header and records, data padding."""
    return 2048 + 2 * len(entry.path.encode("utf-8"))


def stream_payload(handle: BinaryIO, member: OuterMember, manifest: Manifest, limits: Limits,
                   progress: ProgressFn | None, sink: Sink | None) -> None:
    """Stream the payload member of an open bundle against its (verified) manifest.

    The member's size must be the manifest's, the file count within ``limits``; the
    compressed bytes are read and hashed in a background thread while this one
    decompresses them (bounded by the manifest's sizes plus the tar overhead, and by
    ``max_payload_bytes``), walks the inner tar and hashes each file, handing it to
    ``sink`` (unpack) when one is given. When reading fails, the whole member's digest
    is still compared: bytes that are not the signed ones are ``E_PAYLOAD_DIGEST``.

    Raises:
        VerificationError: ``E_PAYLOAD_DIGEST`` (the member's size or digest is not the
            manifest's), ``E_LIMIT_FILES`` (over ``max_files``), ``E_PAYLOAD_CORRUPT``
            (not valid zstd, not a valid tar stream, anything after the end-of-archive
            marker but zeros, any other reader exception), ``E_PAYLOAD_BOMB``
            (decompresses past its bound), ``E_PAYLOAD_UNSAFE``,
            ``E_PAYLOAD_DUPLICATE``, ``E_PAYLOAD_EXTRA``, ``E_PAYLOAD_MISSING``,
            ``E_PAYLOAD_ORDER``, ``E_PAYLOAD_SIZE``, ``E_PAYLOAD_MODE`` (an entry against
            the manifest); ``E_TRUNCATED`` (the member, from the outer reader).
        OSError: reading ``handle`` fails; writing to ``sink`` fails (unpack).
        OemkitError: whatever ``sink`` raises, unchanged.
    """
    expected = manifest.members[PAYLOAD]
    if member.size != expected.size:
        raise _fail("E_PAYLOAD_DIGEST", f"{PAYLOAD} is {member.size} bytes, the manifest says "
                    f"{expected.size}", check="payload", member=PAYLOAD,
                    expected=str(expected.size), actual=str(member.size))
    if len(manifest.files) > limits.max_files:
        raise _fail("E_LIMIT_FILES", f"the manifest lists {len(manifest.files)} files (limit "
                    f"{limits.max_files})", check="payload",
                    hint="if this bundle is legitimate, raise the limit with --max-files")
    # Tar overhead: a header (plus a PAX header and its records for long or non-ASCII
    # paths) and padding per file, then the end blocks padded to a 10 KiB record.
    limit = manifest.payload_size + sum(_tar_overhead(f) for f in manifest.files) + RECORD
    limit = min(limit, limits.max_payload_bytes)

    # One thread reads and hashes the compressed bytes while this one decompresses, walks
    # the tar and hashes each file: the two SHA-256 passes run on two cores.
    with read_member_behind(handle, member) as raw:
        inflater = _Inflater(_Source(raw, progress), limit)
        try:
            _check_tar(inflater, manifest, sink)
            inflater.drain()
            raw.drain()
        except VerificationError as exc:
            # If these are not the signed bytes, that is the finding, not how they broke.
            try:
                raw.drain()
                actual: str | None = raw.hexdigest()
            except VerificationError:
                actual = None
            if actual is not None and actual != expected.sha256:
                raise _fail("E_PAYLOAD_DIGEST", f"{PAYLOAD} does not match its manifest "
                            f"digest (reading it failed with {exc.code})", check="payload",
                            member=PAYLOAD, expected=expected.sha256, actual=actual) from exc
            raise
        digest = raw.hexdigest()
    if digest != expected.sha256:
        raise _fail("E_PAYLOAD_DIGEST", f"{PAYLOAD} does not match its manifest digest",
                    check="payload", member=PAYLOAD, expected=expected.sha256, actual=digest)


def _check_tar(inflater: _Inflater, manifest: Manifest, sink: Sink | None) -> None:
    """Walk the inner tar: every entry safe, listed, in order, with its size, mode, digest."""
    seen: set[str] = set()
    seen_fold: dict[str, str] = {}
    dirs_fold: dict[str, str] = {}
    checked_dirs: set[str] = set()
    index = 0
    files = manifest.files
    try:
        for name, typeflag, size, mode in _tar_entries(inflater):
            problem = path_problem(name)
            if problem:
                raise _fail("E_PAYLOAD_UNSAFE", f"payload member {name!r}: {problem}",
                            check="payload", member=name,
                            hint="the bundle is hostile or damaged; do not use it")
            if typeflag not in _REGULAR:
                raise _fail("E_PAYLOAD_UNSAFE", f"payload member {name} is a "
                            f"{_kind(typeflag)}; only "
                            "regular files are allowed", check="payload", member=name,
                            hint="the bundle is hostile or damaged; do not use it")
            if name in seen:
                raise _fail("E_PAYLOAD_DUPLICATE", f"payload member {name} appears twice",
                            check="payload", member=name)
            key = collision_key(name)
            fold = seen_fold.setdefault(key, name)
            if fold != name:
                raise _fail("E_PAYLOAD_UNSAFE", f"payload members {fold!r} and {name!r} collide "
                            "on case-insensitive file systems", check="payload", member=name)
            parent, _, _ = name.rpartition("/")
            # Each directory is checked once: a file that later takes its folded name is
            # caught below, from the file's side.
            while parent and parent not in checked_dirs:
                checked_dirs.add(parent)
                parent_key = collision_key(parent)
                clash = seen_fold.get(parent_key)
                if clash is not None:
                    raise _fail("E_PAYLOAD_UNSAFE", f"payload member {name!r} lies under "
                                f"{clash!r}, which is a file", check="payload", member=name,
                                hint="the bundle is hostile or damaged; do not use it")
                dirs_fold.setdefault(parent_key, parent)
                parent, _, _ = parent.rpartition("/")
            if key in dirs_fold:
                raise _fail("E_PAYLOAD_UNSAFE", f"payload member {name!r} is a file but "
                            f"{dirs_fold[key]!r} is a directory",
                            check="payload", member=name,
                            hint="the bundle is hostile or damaged; do not use it")
            seen.add(name)
            entry = manifest.entry(name)
            if entry is None:
                raise _fail("E_PAYLOAD_EXTRA", f"payload member {name} is not in the manifest",
                            check="payload", member=name)
            if index < len(files) and files[index].path != name:
                missing = files[index].path
                if missing not in seen and name > missing:
                    raise _fail("E_PAYLOAD_MISSING", f"payload file {missing} is missing",
                                check="payload", member=missing)
                raise _fail("E_PAYLOAD_ORDER", f"payload member {name} is out of order",
                            check="payload", member=name, expected=files[index].path,
                            actual=name)
            index += 1
            if size != entry.size:
                raise _fail("E_PAYLOAD_SIZE", f"payload file {name} is {size} bytes, the "
                            f"manifest says {entry.size}", check="payload", member=name,
                            expected=str(entry.size), actual=str(size))
            if mode & 0o7777 != entry.mode:
                raise _fail("E_PAYLOAD_MODE", f"payload file {name} has mode "
                            f"{mode & 0o7777:o}, the manifest says {entry.mode:o}",
                            check="payload", member=name, expected=f"{entry.mode:o}",
                            actual=f"{mode & 0o7777:o}")
            out = sink(entry) if sink else None
            digest = hashlib.sha256()
            try:
                for view in inflater.chunks(size):
                    digest.update(view)
                    if out is not None:
                        out.write(view)
            finally:
                if out is not None:
                    out.close()
            if digest.hexdigest() != entry.sha256:
                raise _fail("E_PAYLOAD_DIGEST", f"payload file {name} does not match its "
                            "manifest digest", check="payload", member=name,
                            expected=entry.sha256, actual=digest.hexdigest())
        inflater.drain_zeros()  # only zero padding may follow the end-of-archive marker
    except TarFormatError as exc:
        if str(exc) == "ends unexpectedly":
            raise _fail("E_PAYLOAD_CORRUPT", f"{PAYLOAD} ends unexpectedly", check="payload",
                        member=PAYLOAD) from exc
        raise _fail("E_PAYLOAD_CORRUPT", f"{PAYLOAD} is not a valid tar stream ({exc})",
                    check="payload", member=PAYLOAD) from exc
    except (OSError, OemkitError):
        raise  # writing a file (unpack), or a coded finding
    except Exception as exc:  # anything else the reader meets is a malformed stream,
        # never an internal error: the caller then checks the digest of the whole member
        raise _fail("E_PAYLOAD_CORRUPT", f"{PAYLOAD} is not a valid tar stream "
                    f"({type(exc).__name__})", check="payload", member=PAYLOAD) from exc
    if index < len(files):
        missing = files[index].path
        raise _fail("E_PAYLOAD_MISSING", f"payload file {missing} is missing", check="payload",
                    member=missing)
