"""File-system edges: atomic writes, streaming hashing, and the strict outer-tar codec.

The outer bundle archive is a plain POSIX ustar file that oemkit writes itself, so the
reader can be strict: exact checksums, regular files only, zero padding, nothing after
the end-of-archive marker. Anything else is a coded failure, never a best-effort parse.
The tar wire format itself (fields, numbers, checksums, PAX records) is ``_tar``'s; this
module adds the files, the member rules and the codes.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from oemkit._tar import (
    BLOCK,
    CHKSUM,
    MAGIC,
    MAX_USTAR_SIZE,
    PAX_HEADER_NAME,
    PAX_TYPE,
    PREFIX,
    SIZE,
    USTAR_MAGIC,
    ZERO_BLOCK,
    Header,
    TarFormatError,
    checksum,
    file_header,
    iter_pax_records,
    pad_size,
    padding,
    parse_header,
    pax_decimal,
)
from oemkit._tar import END_OF_ARCHIVE as END_OF_ARCHIVE
from oemkit.errors import EnvironmentProblem, InputError, VerificationError

if TYPE_CHECKING:
    import queue

# queue, threading and tempfile (which brings shutil, bz2 and lzma) are imported where they
# are used: the license check an OEM runtime makes at start-up reads its inputs through
# this module and needs none of them (tests/test_slot_license.py).

CHUNK = 1 << 20
#: One kernel-side copy step (copy_file_range): large enough to cost nothing per call, small
#: enough for a progress bar to move.
COPY_STEP = 16 << 20
#: Chunks a background reader may hold ahead of its consumer (memory: QUEUE_DEPTH x CHUNK).
QUEUE_DEPTH = 8
#: At most this many zero bytes may follow the end-of-archive marker (one tar record).
MAX_TRAILING_ZEROS = 20 * BLOCK
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")

ProgressFn = Callable[[int], None]


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary sibling that is renamed into place on success.

    On any exception (or a kill) the destination is untouched; the temporary file is
    removed when Python gets the chance.
    """
    path = Path(path)
    parent = path.parent
    try:
        import tempfile

        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise EnvironmentProblem(
            "E_WRITE", f"cannot write in {parent}: {exc.strerror}",
            hint="check that the directory exists and is writable",
        ) from exc
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
        _fsync_dir(parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically with the given file mode."""
    with atomic_output(path, mode) as handle:
        handle.write(data)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- hashing


def hash_file(path: Path, progress: ProgressFn | None = None) -> tuple[str, int]:
    """Stream ``path`` through SHA-256; return (hex digest, size)."""
    with open(path, "rb") as handle:
        return hash_fd(handle.fileno(), 0, None, progress)


def hash_fd(fd: int, offset: int, size: int | None,
            progress: ProgressFn | None = None) -> tuple[str, int]:
    """SHA-256 of ``size`` bytes of ``fd`` from ``offset`` (to the end when None), read with
    ``pread`` into one reused buffer; return (hex digest, bytes hashed). Fewer bytes than
    asked means the file ended early. Leaves the descriptor's position alone."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    done = 0
    while size is None or done < size:
        want = CHUNK if size is None else min(CHUNK, size - done)
        n = os.preadv(fd, [view[:want]], offset + done)
        if not n:
            break
        digest.update(view[:n])
        done += n
        if progress:
            progress(n)
    return digest.hexdigest(), done


class HashingWriter:
    """A write-only sink that hashes and counts everything passed to the file below it."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        self._sink.flush()

    def fileno(self) -> int:
        """The file below's descriptor (the payload packer starts write-back with it)."""
        return self._sink.fileno()

    def tell(self) -> int:
        return self._sink.tell()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# --------------------------------------------------------------------------- outer tar


def ustar_header(name: str, size: int, mode: int = 0o644) -> bytes:
    """A deterministic POSIX ustar header for an outer member: mtime 0, uid/gid 0, no user
    names, an ASCII name. ustar's size field ends at 8 GiB - 1; beyond it a POSIX PAX ``x``
    header carries the size (``_tar.file_header``, ``tarfile``'s bytes)."""
    return file_header(name, size, mode, pax=size > MAX_USTAR_SIZE, encoding="ascii",
                       errors="strict")


def write_member(out: BinaryIO, name: str, data: bytes) -> None:
    """Append one small in-memory member to an outer archive."""
    out.write(ustar_header(name, len(data)))
    out.write(data)
    out.write(padding(len(data)))


def copy_member(
    out: BinaryIO, name: str, src: BinaryIO, size: int, progress: ProgressFn | None = None
) -> str:
    """Append a member streamed from ``src``; return the SHA-256 of the copied bytes.

    Between two real files the bytes are copied inside the kernel (``copy_file_range``)
    while a second thread hashes the same source range, so a multi-gigabyte payload costs
    one hashing pass and no user-space copy; anything else is copied chunk by chunk.
    """
    out.write(ustar_header(name, size))
    fds = _fds(src, out)
    if fds is None:
        digest = _copy_slow(out, name, src, size, progress)
    else:
        digest = _copy_fast(out, name, src, size, fds, progress)
    out.write(padding(size))
    return digest


def _fds(src: Any, out: Any) -> tuple[int, int] | None:
    try:
        if src.seekable() and out.seekable():
            return src.fileno(), out.fileno()
    except (AttributeError, OSError, ValueError):  # BytesIO and friends
        pass
    return None


def _copy_slow(out: BinaryIO, name: str, src: BinaryIO, size: int,
               progress: ProgressFn | None) -> str:
    digest = hashlib.sha256()
    remaining = size
    while remaining:
        chunk = src.read(min(CHUNK, remaining))
        if not chunk:
            raise _truncated_copy(name, remaining)
        digest.update(chunk)
        out.write(chunk)
        remaining -= len(chunk)
        if progress:
            progress(len(chunk))
    return digest.hexdigest()


def _copy_fast(out: BinaryIO, name: str, src: BinaryIO, size: int, fds: tuple[int, int],
               progress: ProgressFn | None) -> str:
    src_fd = fds[0]
    src_offset = src.tell()
    hasher = Background(hash_fd, src_fd, src_offset, size)
    try:
        copied = copy_into(out, src_fd, src_offset, size, progress)
    finally:
        digest, hashed = hasher.result()
    src.seek(src_offset + size)
    if copied != size or hashed != size:
        raise _truncated_copy(name, size - min(copied, hashed))
    return str(digest)


def _truncated_copy(name: str, remaining: int) -> VerificationError:
    return VerificationError(
        "E_TRUNCATED", f"{name} ended {remaining} bytes early while copying",
        member=name, hint="the input changed or is truncated; rebuild it",
    )


WRITEBACK_STEP = 32 << 20
_sync_file_range: Any = None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes of ``fd`` from ``offset`` to disk now
    (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``; it does not wait), so that the fsync
    which makes a large output durable before its rename finds little left to write: the
    disk works while the CPU compresses and hashes. Best effort; a no-op elsewhere."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = False
        with contextlib.suppress(Exception):
            import ctypes

            func = ctypes.CDLL(None, use_errno=True).sync_file_range
            func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            func.restype = ctypes.c_int
            _sync_file_range = func
    if _sync_file_range and length > 0:
        _sync_file_range(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE


def copy_range(src_fd: int, src_offset: int, dst_fd: int, dst_offset: int, size: int,
               progress: ProgressFn | None = None) -> int:
    """Copy ``size`` bytes between two descriptors at explicit offsets, inside the kernel
    (``copy_file_range``), falling back to ``pread``/``pwrite`` where the kernel or the file
    system cannot. Returns the bytes copied: fewer only when the source ends early.
    Write errors (``ENOSPC``, ``EIO``) propagate as ``OSError``. Leaves both descriptors'
    positions alone."""
    done = 0
    kernel = hasattr(os, "copy_file_range")
    while done < size:
        step = min(COPY_STEP, size - done)
        if kernel:
            try:
                n = os.copy_file_range(src_fd, dst_fd, step, src_offset + done,
                                       dst_offset + done)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                     errno.EPERM, errno.EBADF):
                    raise
                kernel = False
                continue
        else:
            data = os.pread(src_fd, min(step, CHUNK), src_offset + done)
            n = len(data)
            view = memoryview(data)
            while view:
                view = view[os.pwrite(dst_fd, view, dst_offset + done + n - len(view)):]
        if not n:
            break
        start_writeback(dst_fd, dst_offset + done, n)
        done += n
        if progress:
            progress(n)
    return done


def copy_into(out: BinaryIO, src_fd: int, src_offset: int, size: int,
              progress: ProgressFn | None = None) -> int:
    """Append ``size`` bytes of ``src_fd`` (from ``src_offset``) to the buffered file ``out``
    with :func:`copy_range`; ``out`` is flushed first and positioned after the copy."""
    out.flush()
    position = out.tell()
    copied = copy_range(src_fd, src_offset, out.fileno(), position, size, progress)
    out.seek(position + copied)
    return copied


class Background:
    """Run ``fn(*args)`` in a daemon thread; :meth:`result` joins it and returns its value or
    raises its exception. For C-level work that releases the GIL (hashing, I/O, zstd)."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn(*args)
            except BaseException as exc:  # handed to the caller in result()
                self._error = exc

        import threading

        self._thread = threading.Thread(target=run, name=f"oemkit-{fn.__name__}", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class _Chunks(abc.ABC):
    """Iteration and draining for readers that hand out chunks via ``next_chunk``."""

    @abc.abstractmethod
    def next_chunk(self) -> bytes | None:
        """The next chunk, or None at the end."""

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self.next_chunk()) is not None:
            yield chunk

    def drain(self) -> None:
        """Read (and hash) the rest; the chunks are dropped."""
        while self.next_chunk() is not None:
            pass


class RangeReader(_Chunks):
    """Read ``size`` bytes of ``fd`` from ``offset`` in a background thread that also hashes
    them (SHA-256, after ``hash_prefix``), handing the chunks over in order through a
    bounded queue.

    The consumer iterates the chunks while the reader thread reads and hashes the next
    ones: reading, hashing and the consumer's own work (decompressing, hashing files,
    writing) overlap on two cores. Memory is at most ``depth`` chunks. If the file ends
    early, iteration raises ``short(bytes_missing)``; an ``OSError`` from reading is raised
    in the consumer as it is. :meth:`close` (or leaving the ``with`` block) stops the thread.
    """

    _END = object()

    def __init__(self, fd: int, offset: int, size: int, *,
                 short: Callable[[int], BaseException], chunk: int = CHUNK,
                 depth: int = QUEUE_DEPTH, hash_prefix: bytes = b"") -> None:
        self._fd, self._offset, self._size, self._chunk = fd, offset, size, chunk
        import queue
        import threading

        self._short = short
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._hash = hashlib.sha256(hash_prefix)
        self._finished = False
        self.delivered = 0
        self._thread = threading.Thread(target=self._run, name="oemkit-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        done = 0
        try:
            while done < self._size and not self._stop.is_set():
                data = os.pread(self._fd, min(self._chunk, self._size - done),
                                self._offset + done)
                if not data:
                    self._put(self._short(self._size - done))
                    return
                self._hash.update(data)
                done += len(data)
                if not self._put(data):
                    return
            self._put(self._END)
        except BaseException as exc:  # re-raised in the consumer
            self._put(exc)

    def next_chunk(self) -> bytes | None:
        """The next chunk, or None after the last one."""
        if self._finished:
            return None
        item = self._queue.get()
        if item is self._END:
            self._finished = True
            return None
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        self.delivered += len(item)
        return item  # type: ignore[no-any-return]

    def hexdigest(self) -> str:
        """SHA-256 of every byte read; meaningful once iteration or :meth:`drain` ended."""
        self._thread.join()
        return self._hash.hexdigest()

    def close(self) -> None:
        import queue

        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class OuterMember:
    """One member of the outer archive: its name and where its data lies in the file."""

    name: str
    offset: int
    size: int


def _fail(code: str, message: str, member: str | None = None, hint: str = "") -> VerificationError:
    return VerificationError(
        code, message, member=member, check="archive structure",
        hint=hint or "the bundle is damaged or was tampered with; obtain a fresh copy",
    )


def _octal(header: Header, where: slice, what: str, offset: int) -> int:
    try:
        return header.octal(where)
    except TarFormatError:
        raise _fail("E_TAR_HEADER", f"tar header at byte {offset} has a malformed {what} "
                    "field") from None


def scan_outer(
    handle: BinaryIO, *, max_members: int, max_member_size: Callable[[str], int]
) -> list[OuterMember]:
    """Read every header of the outer archive, seeking over member data.

    Checks header checksums, member types and names, zero padding, the end-of-archive
    marker and that nothing but zero padding follows it. Data is not read here.
    """
    members: list[OuterMember] = []
    offset = 0
    handle.seek(0, os.SEEK_END)
    total = handle.tell()
    handle.seek(0)
    if total == 0:
        raise _fail("E_NOT_A_BUNDLE", "the file is empty", hint="obtain a complete copy")
    while True:
        block = handle.read(BLOCK)
        if len(block) < BLOCK:
            if offset == 0 and block[MAGIC] != USTAR_MAGIC:
                raise _fail("E_NOT_A_BUNDLE", f"the file is not an oemkit bundle (only "
                            f"{len(block)} bytes, no tar header)",
                            hint="pass a .oemb file written by oemkit build; if this is a copy "
                                 "of one, it is truncated")
            raise _fail("E_TRUNCATED", f"the archive ends inside a header at byte {offset}",
                        hint="the copy is truncated; obtain a complete copy")
        if block == ZERO_BLOCK:
            second = handle.read(BLOCK)
            if len(second) < BLOCK and not any(second):
                raise _fail("E_TRUNCATED", f"the archive ends inside its end-of-archive marker "
                            f"at byte {offset}", hint="the copy is truncated; obtain a complete "
                            "copy")
            if second != ZERO_BLOCK:
                raise _fail("E_TAR_END", f"incomplete end-of-archive marker at byte {offset}")
            rest = total - offset - 2 * BLOCK
            if rest > MAX_TRAILING_ZEROS or any(handle.read(MAX_TRAILING_ZEROS + 1)):
                raise _fail("E_TAR_TRAILING",
                            f"{rest} bytes of data follow the end-of-archive marker at byte "
                            f"{offset}", hint="the file carries data outside the archive; "
                            "obtain a fresh copy")
            return members
        header = _check_header(block, offset)
        pax_size: int | None = None
        if header.typeflag == PAX_TYPE:
            pax_size = _pax_size(handle, header, offset, total)
            offset = handle.tell()
            block = handle.read(BLOCK)
            if len(block) < BLOCK or block == ZERO_BLOCK:
                raise _fail("E_TRUNCATED", f"the archive ends after a pax header at byte {offset}")
            header = _check_header(block, offset)
        raw_name = header.name
        if block[PREFIX].strip(b"\0"):
            raise _fail("E_MEMBER_NAME", f"member at byte {offset} uses a name prefix")
        try:
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            raise _fail("E_MEMBER_NAME", f"member at byte {offset} has a non-ASCII name") from None
        if not _MEMBER_NAME.fullmatch(name) or ".." in name:  # fullmatch: no "\n" at the end
            raise _fail("E_MEMBER_NAME", f"member name {name!r} at byte {offset} is not allowed",
                        member=name)
        typeflag = header.typeflag
        if typeflag not in (b"0", b"\0"):
            raise _fail("E_MEMBER_TYPE",
                        f"member {name} is not a regular file (tar type {typeflag!r})",
                        member=name)
        size = _octal(header, SIZE, "size", offset)
        if pax_size is not None:
            if size != 0:
                raise _fail("E_TAR_HEADER", f"member {name} has both a pax size and a ustar size",
                            member=name)
            size = pax_size
        limit = max_member_size(name)
        if size > limit:
            raise _fail("E_MEMBER_SIZE", f"member {name} declares {size} bytes, over the limit "
                        f"of {limit}", member=name,
                        hint="if this bundle is legitimate, raise the limit with "
                             "--max-member-size (metadata) or --max-payload-bytes")
        data_offset = offset + BLOCK
        end = data_offset + size
        pad = pad_size(size)
        if end + pad > total:
            raise _fail("E_TRUNCATED", f"member {name} is truncated: it needs {size} bytes "
                        f"but the file ends {total - data_offset} bytes after its header",
                        member=name, hint="the copy is truncated; obtain a complete copy")
        members.append(OuterMember(name, data_offset, size))
        if len(members) > max_members:
            raise _fail("E_TOO_MANY_MEMBERS", f"the archive has more than {max_members} members")
        handle.seek(end)
        if pad and any(handle.read(pad)):
            raise _fail("E_TAR_PADDING", f"non-zero padding after member {name}", member=name)
        offset = end + pad


def _check_header(block: bytes, offset: int) -> Header:
    """The parsed header: POSIX ustar magic and a correct checksum, or a coded failure."""
    header = parse_header(block)
    if not block.startswith(b"\0") and header.magic != USTAR_MAGIC:
        if offset == 0:
            raise _fail("E_NOT_A_BUNDLE", "the file is not an oemkit bundle (no tar header)",
                        hint="pass a .oemb file written by oemkit build")
        raise _fail("E_TAR_HEADER", f"tar header at byte {offset} is not POSIX ustar")
    stored = _octal(header, CHKSUM, "checksum", offset)
    if stored != checksum(block):
        what = "the file is not an oemkit bundle" if offset == 0 else "a damaged tar header"
        raise _fail("E_TAR_CHECKSUM" if offset else "E_NOT_A_BUNDLE",
                    f"{what}: header checksum mismatch at byte {offset}")
    return header


def _pax_size(handle: BinaryIO, header: Header, offset: int, total: int) -> int:
    """The one record oemkit writes in a pax header: the size of a member over 8 GiB."""
    length = _octal(header, SIZE, "size", offset)
    if header.name != PAX_HEADER_NAME.encode() or length > BLOCK:
        raise _fail("E_TAR_HEADER", f"unexpected pax header at byte {offset}")
    data = handle.read(length)
    pad = handle.read(pad_size(length))
    if len(data) != length or offset + BLOCK + length > total:
        raise _fail("E_TRUNCATED", f"the archive ends inside a pax header at byte {offset}")
    if any(pad):
        raise _fail("E_TAR_PADDING", f"non-zero padding after the pax header at byte {offset}")
    try:  # exactly one record, spanning the data: "LENGTH size=DIGITS\n"
        (record,) = iter_pax_records(data)
        if record.key != b"size" or record.end != length:
            raise TarFormatError("not one size record")
        size = pax_decimal(record.value)  # at most 20 digits
        if size <= MAX_USTAR_SIZE:
            raise TarFormatError("a size that fits the ustar field")
    except (TarFormatError, ValueError):  # ValueError: no record, or more than one
        raise _fail("E_TAR_HEADER", f"pax header at byte {offset} must hold exactly one size "
                    "record for a member over 8 GiB") from None
    return size


def read_member(handle: BinaryIO, member: OuterMember) -> bytes:
    """Read one (small) member's bytes."""
    handle.seek(member.offset)
    data = handle.read(member.size)
    if len(data) != member.size:
        raise _fail("E_TRUNCATED", f"member {member.name} is truncated", member=member.name)
    return data


def iter_member(handle: BinaryIO, member: OuterMember, chunk: int = CHUNK) -> Iterator[bytes]:
    """Stream one member's bytes in chunks."""
    handle.seek(member.offset)
    remaining = member.size
    while remaining:
        data = handle.read(min(chunk, remaining))
        if not data:
            raise _fail("E_TRUNCATED", f"member {member.name} is truncated", member=member.name)
        remaining -= len(data)
        yield data


class InlineReader(_Chunks):
    """:class:`RangeReader`'s interface, reading in the caller's thread through the file
    object itself: for handles without a descriptor (``BytesIO``)."""

    def __init__(self, handle: BinaryIO, offset: int, size: int, *,
                 short: Callable[[int], BaseException]) -> None:
        self._handle, self._remaining, self._short = handle, size, short
        self._hash = hashlib.sha256()
        handle.seek(offset)

    def next_chunk(self) -> bytes | None:
        if not self._remaining:
            return None
        data = self._handle.read(min(CHUNK, self._remaining))
        if not data:
            raise self._short(self._remaining)
        self._remaining -= len(data)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        self._remaining = 0

    def __enter__(self) -> InlineReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_member_behind(handle: BinaryIO, member: OuterMember) -> RangeReader | InlineReader:
    """The member's bytes, read and hashed in a background thread (:class:`RangeReader`);
    in this thread for a handle without a file descriptor (:class:`InlineReader`)."""
    def short(missing: int) -> BaseException:
        return _fail("E_TRUNCATED", f"member {member.name} is truncated ({missing} bytes "
                     "missing)", member=member.name)

    try:
        fd = handle.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return InlineReader(handle, member.offset, member.size, short=short)
    return RangeReader(fd, member.offset, member.size, short=short)


def open_input(path: Path, what: str) -> BinaryIO:
    """Open an input file for reading, turning OS errors into coded input errors."""
    try:
        if Path(path).is_dir():
            raise InputError("E_NOT_A_FILE", f"{what} {path} is a directory",
                             hint="pass the path of a file")
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError("E_NOT_FOUND", f"{what} {path} does not exist",
                         hint="check the path") from None
    except PermissionError:
        raise EnvironmentProblem("E_PERMISSION", f"cannot read {what} {path}: permission denied",
                                 hint="check the file's permissions") from None


def read_input(path: Path, what: str, limit: int = 16 << 20) -> bytes:
    """Read a small input file whole (bounded), with coded errors."""
    with open_input(path, what) as handle:
        # read(limit + 1) would allocate the whole limit first (16 MiB for a trust root):
        # read what the file holds, bounded
        try:
            size = os.fstat(handle.fileno()).st_size
        except (OSError, ValueError):
            size = limit
        data = handle.read(min(limit, size) + 1)
        if len(data) <= limit and len(data) > size:  # grew while read: read on, bounded
            data += handle.read(limit + 1 - len(data))
    if len(data) > limit:
        raise InputError("E_TOO_LARGE", f"{what} {path} is larger than {limit} bytes",
                         hint="this does not look like the right file")
    return data
