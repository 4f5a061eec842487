"""An exclusive, non-blocking lock file: one oemkit operation at a time on a resource."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from oemkit.errors import EnvironmentProblem


@contextlib.contextmanager
def exclusive_lock(lock: Path, what: str) -> Iterator[None]:
    """Hold ``lock`` (created if needed) for the duration; E_LOCKED if someone else does."""
    try:
        handle = open(lock, "a+b")  # noqa: SIM115 - closed in finally
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot create lock {lock}: {exc.strerror}",
                                 hint="check that the directory is writable") from exc
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EnvironmentProblem("E_LOCKED", f"another oemkit operation holds {what} "
                                     f"({lock})", hint="wait for it to finish, then run this "
                                     "again") from None
        yield
    finally:
        handle.close()
