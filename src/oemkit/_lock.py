"""An exclusive, non-blocking lock file: one oemkit operation at a time on a resource.

The lock file is opened without following a symbolic link (``O_NOFOLLOW``), without
blocking on a FIFO (``O_NONBLOCK``), and must be a regular file: a planted link or
device is refused with a coded error instead of being opened, created or truncated
through. The file is created 0600, never written, and stays after the lock is released.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from oemkit.errors import EnvironmentProblem, InputError

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _unsafe(lock: Path, what: str) -> InputError:
    return InputError("E_LOCK_UNSAFE", f"the lock {lock} is {what}, not a regular file; "
                      "oemkit does not open it", hint=f"oemkit never makes {lock.name} "
                      "anything but an empty file: find out who put this there, move it "
                      "away, then run this again")


def open_lock(lock: Path) -> int:
    """A descriptor of the regular file ``lock`` (created 0600 if absent), never of what a
    symbolic link points at."""
    try:
        fd = os.open(lock, _FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _unsafe(lock, "a symbolic link") from None
        if exc.errno == errno.EISDIR:
            raise _unsafe(lock, "a directory") from None
        raise EnvironmentProblem("E_WRITE", f"cannot create lock {lock}: {exc.strerror}",
                                 hint="check that the directory is writable") from exc
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        raise _unsafe(lock, "a directory" if stat.S_ISDIR(kind) else "a special file")
    return fd


@contextlib.contextmanager
def exclusive_lock(lock: Path, what: str) -> Iterator[None]:
    """Hold ``lock`` (created if needed) for the duration; E_LOCKED if someone else does."""
    fd = open_lock(Path(lock))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EnvironmentProblem("E_LOCKED", f"another oemkit operation holds {what} "
                                     f"({lock})", hint="wait for it to finish, then run this "
                                     "again") from None
        yield
    finally:
        os.close(fd)
