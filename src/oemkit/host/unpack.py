"""Unpacking a verified bundle: extract while verifying, publish only when all passed.

Files are written under a temporary sibling of the destination with ``O_EXCL`` and
``O_NOFOLLOW``; payload paths are validated by the verifier before any byte is written,
so nothing lands outside it. The directory is renamed into place only after every check
passed; on failure it is removed, with every parent directory this call created.

DEST itself must not be a symbolic link (``E_DEST_SYMLINK``): the staging directory is
made beside DEST, and a link would put it (and DEST's contents) wherever the link points.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from oemkit._fs import open_input, read_input
from oemkit.errors import EnvironmentProblem, InputError
from oemkit.models.manifest import FileEntry
from oemkit.models.report import VerifyReport
from oemkit.verify.bundle import Limits, ProgressFn, verify_open_bundle


def unpack_bundle(bundle: Path | str, dest: Path | str, trust: Path | str | bytes, *,
                  force: bool = False, limits: Limits | None = None,
                  progress: ProgressFn | None = None) -> VerifyReport:
    """Verify ``bundle`` and extract its payload to ``dest``; return the verify report.

    ``dest`` must be absent or empty unless ``force`` (then it is replaced whole).
    """
    dest = Path(dest)
    try:
        mode: int | None = os.lstat(dest).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise EnvironmentProblem("E_PERMISSION", f"cannot look at {dest}: {exc.strerror}",
                                 hint="choose a destination you can read and write") from exc
    if mode is not None and stat.S_ISLNK(mode):
        raise InputError("E_DEST_SYMLINK", f"{dest} is a symbolic link (to "
                         f"{os.readlink(dest)!r}); oemkit does not unpack through links",
                         hint="pass the directory the link points at, or remove the link")
    if mode is not None and not stat.S_ISDIR(mode):
        raise InputError("E_DEST_NOT_DIR", f"{dest} exists and is not a directory",
                         hint="choose another destination")
    if mode is not None and any(dest.iterdir()) and not force:
        raise InputError("E_DEST_NOT_EMPTY", f"{dest} is not empty",
                         hint="choose an empty destination or pass --force to replace it")
    pinned = trust if isinstance(trust, bytes) else read_input(Path(trust), "trust root")
    parent = dest.parent  # as the kernel resolves it when DEST is renamed into place
    made: list[Path] = []
    try:
        _make_parents(parent, made)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=parent))
    except OSError as exc:
        _remove_made(made)
        raise EnvironmentProblem("E_WRITE", f"cannot write in {parent}: {exc.strerror}",
                                 hint="choose a writable destination") from exc

    def sink(entry: FileEntry) -> BinaryIO:
        parts = entry.path.split("/")
        directory = staging
        for part in parts[:-1]:  # one level at a time: each gets 0755 minus the umask
            directory = directory / part
            directory.mkdir(mode=0o755, exist_ok=True)
        target = directory / parts[-1]
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, entry.mode)
        os.fchmod(fd, entry.mode)
        return os.fdopen(fd, "wb")

    try:
        with open_input(Path(bundle), "bundle") as handle:
            report = verify_open_bundle(handle, pinned, name=str(bundle), limits=limits,
                                        progress=progress, sink=sink)
        if not report.ok:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_made(made)
            return report
        os.chmod(staging, 0o755 & ~_umask())
        if mode is not None:
            _replace(dest, staging, parent)
        else:
            os.rename(staging, dest)
        report.passed("unpack", f"{report.files} files extracted to {dest}")
        return report
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_made(made)
        raise EnvironmentProblem("E_WRITE", f"cannot write under {dest}: {exc.strerror or exc}",
                                 hint="check free space and permissions, then run it again; "
                                      "the destination was left as it was") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        _remove_made(made)
        raise


def _make_parents(parent: Path, made: list[Path]) -> None:
    """Create ``parent`` and its missing ancestors, recording each one made (outermost
    first) so that a failure can remove exactly those."""
    missing = []
    here = parent
    while not os.path.lexists(here):
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for directory in reversed(missing):
        os.mkdir(directory)
        made.append(directory)
    if not parent.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(parent))


def _remove_made(made: list[Path]) -> None:
    """Remove the (empty) directories :func:`_make_parents` created, innermost first."""
    for directory in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    made.clear()


def _replace(dest: Path, staging: Path, parent: Path) -> None:
    """Swap ``staging`` in for ``dest``; if that fails, put the old ``dest`` back."""
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=parent))
    try:
        os.rename(dest, old / "d")
        try:
            os.rename(staging, dest)
        except OSError:
            try:
                os.rename(old / "d", dest)
            except OSError as exc:
                raise EnvironmentProblem(
                    "E_WRITE", f"cannot replace {dest}, nor put its previous contents back "
                    f"({exc.strerror or exc}); they are kept in {old / 'd'}",
                    hint=f"move {old / 'd'} back to {dest} by hand") from exc
            raise
    finally:
        with contextlib.suppress(OSError):
            old.rmdir()  # empty unless the old contents are still in it
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
