"""An install prefix's layout, and the journal of what oemkit itself creates in it.

oemkit deletes only what it made. Before it creates a temporary name in a prefix (a
staging slot, a slot being prepared, a symlink being switched, a slot being pruned) it
records the name in ``PREFIX/.journal`` (written atomically, mode 0600); when the name is
finished with, the record is dropped. The next install/upgrade/rollback removes exactly
the names still recorded (a run that was killed), never following a symbolic link, and
never a slot that ``current`` or ``previous`` names. A prefix without a journal (laid out
by an older oemkit, or new) has nothing to clean.

Everything else in the prefix must be what oemkit makes, of the type it makes:
:func:`check_layout` (pure: it judges a listing) refuses anything else with
``E_PREFIX_LAYOUT`` naming each entry, before anything is created, locked or removed.
:func:`scan` produces the listing with ``lstat`` only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from oemkit.errors import EnvironmentProblem, InputError

SLOTS = "slots"
LOCK = ".lock"
JOURNAL = ".journal"
JOURNAL_TMP = ".journal.tmp"
TMP_PREFIX = ".tmp-"
LINKS = ("current", "previous")
#: The site's own licenses for every release (``oemkit serve PREFIX`` reads ``*.lic`` there
#: besides the slot's); oemkit never writes or removes it.
LICENSES = "licenses"
#: The last install/upgrade/rollback reports (their ``--json`` documents), kept for
#: ``oemkit support collect``: ``reports/NNNNNN-ACTION.json``, the newest KEEP_REPORTS.
REPORTS = "reports"
KEEP_REPORTS = 20
#: The journal is a few names; anything larger is not oemkit's.
MAX_JOURNAL = 64 << 10
MAX_JOURNAL_ENTRIES = 64
JOURNAL_FORMAT = "oemkit-prefix-journal/v1"

Kind = Literal["dir", "file", "link", "other"]

#: A slot directory name: NAME-VERSION-DIGEST12[-N] as install makes it, or a staging one.
_SLOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,254}")
_STAGING = re.compile(r"\.tmp-[A-Za-z0-9_]{1,64}")
#: A symlink being switched: ``.current.TOKEN.tmp`` (older releases used the PID as TOKEN).
_SWITCHING = re.compile(r"\.(current|previous)\.[A-Za-z0-9_]{1,64}\.tmp")


def _layout_error(prefix: Path, problems: Sequence[str]) -> InputError:
    shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more"
                                       if len(problems) > 8 else "")
    return InputError(
        "E_PREFIX_LAYOUT", f"{prefix} is not laid out as an oemkit prefix: {shown}",
        hint="oemkit only works in a new or empty directory or in one it laid out itself, "
             "and never follows or removes what it did not make: move these entries away "
             "(or choose another --prefix), then run this again")


# --------------------------------------------------------------------------- the listing


@dataclass(frozen=True)
class Entry:
    """One directory entry as ``lstat`` sees it (``target``: a symlink's text)."""

    name: str
    kind: Kind
    target: str | None = None


@dataclass(frozen=True)
class Layout:
    """A prefix that passed :func:`check_layout`."""

    #: Slot directories under ``slots/`` (real directories, sorted).
    slots: tuple[str, ...] = ()
    #: The slot names ``current`` and ``previous`` point at (None: absent or dangling).
    current: str | None = None
    previous: str | None = None
    exists: bool = False
    has_slots: bool = False

    @property
    def live(self) -> frozenset[str]:
        return frozenset(n for n in (self.current, self.previous) if n)


def _kind(mode: int) -> Kind:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


_WORDS = {"dir": "a directory", "file": "a file", "link": "a symbolic link",
          "other": "a special file"}


def check_layout(prefix: Path, top: Sequence[Entry] | None,
                 slots: Sequence[Entry] | None) -> Layout:
    """Judge a prefix's listing: ``top`` its entries (None: the prefix does not exist),
    ``slots`` the entries of ``slots/`` (None: no such directory). Raises
    ``E_PREFIX_LAYOUT`` listing every entry oemkit does not make, or makes with another
    type; returns the :class:`Layout` otherwise."""
    if top is None:
        return Layout()
    problems: list[str] = []
    names = {e.name: e for e in top}
    slot_dirs = tuple(sorted(e.name for e in slots or () if e.kind == "dir"))
    for e in sorted(slots or (), key=lambda x: x.name):
        if e.kind != "dir":
            problems.append(f"{SLOTS}/{e.name} is {_WORDS[e.kind]} (slots are directories)")
        elif not (_SLOT_NAME.fullmatch(e.name) or _STAGING.fullmatch(e.name)):
            problems.append(f"{SLOTS}/{e.name} is not a slot name oemkit makes")
    wanted: dict[str, Kind] = {SLOTS: "dir", LOCK: "file", JOURNAL: "file",
                               JOURNAL_TMP: "file", "current": "link", "previous": "link",
                               LICENSES: "dir", REPORTS: "dir"}
    for e in sorted(top, key=lambda x: x.name):
        kind = "link" if _SWITCHING.fullmatch(e.name) else wanted.get(e.name)
        if kind is None:
            problems.append(f"{e.name} ({_WORDS[e.kind]}) is not something oemkit makes")
        elif e.kind != kind:
            problems.append(f"{e.name} is {_WORDS[e.kind]}, not {_WORDS[kind]}")
    targets: dict[str, str | None] = {}
    for link in LINKS:
        found = names.get(link)
        if found is None or found.kind != "link":
            targets[link] = None
            continue
        text = found.target or ""
        parts = text.split("/")
        if len(parts) != 2 or parts[0] != SLOTS or not _SLOT_NAME.fullmatch(parts[1]):
            problems.append(f"{link} points at {text!r}, not at a slot (slots/NAME)")
            targets[link] = None
        else:
            targets[link] = parts[1] if parts[1] in slot_dirs else None
    if problems:
        raise _layout_error(prefix, problems)
    return Layout(slots=slot_dirs, current=targets["current"], previous=targets["previous"],
                  exists=True, has_slots=slots is not None)


def _listing(path: Path) -> list[Entry] | None:
    try:
        with os.scandir(path) as it:
            found = list(it)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise _layout_error(path, [f"{path} is not a directory"]) from None
    except OSError as exc:
        raise EnvironmentProblem("E_PERMISSION", f"cannot list {path}: {exc.strerror}",
                                 hint="check the prefix's permissions") from exc
    out = []
    for d in found:
        try:
            kind = _kind(d.stat(follow_symlinks=False).st_mode)
        except FileNotFoundError:  # removed while listing
            continue
        out.append(Entry(d.name, kind, os.readlink(d.path) if kind == "link" else None))
    return out


def scan(prefix: Path) -> Layout:
    """:func:`check_layout` of the prefix as it is on disk: ``lstat`` of every entry (no
    link in the prefix is followed), nothing created. The prefix itself is the path the
    user named, followed if it is a link (as ``install`` resolves it)."""
    try:
        mode = os.stat(prefix).st_mode
    except FileNotFoundError:
        return Layout()
    except OSError as exc:
        raise EnvironmentProblem("E_PERMISSION", f"cannot read {prefix}: {exc.strerror}",
                                 hint="check the prefix's permissions") from exc
    if not stat.S_ISDIR(mode):
        raise _layout_error(prefix, [f"it is {_WORDS[_kind(mode)]}, not a directory"])
    top = _listing(prefix)
    slots = None
    if top is not None and any(e.name == SLOTS and e.kind == "dir" for e in top):
        slots = _listing(prefix / SLOTS)
    return check_layout(prefix, top, slots)


# --------------------------------------------------------------------------- the journal


def _journal_name_ok(name: str) -> bool:
    if _SWITCHING.fullmatch(name):
        return True
    head, _, tail = name.partition("/")
    return head == SLOTS and bool(_STAGING.fullmatch(tail) or _SLOT_NAME.fullmatch(tail))


def parse_journal(data: bytes, where: str) -> list[str]:
    """The names a journal records (pure); ``E_PREFIX_JOURNAL`` if it is not one oemkit
    wrote: not the format, or a name oemkit never makes (``../x``, ``db``)."""
    def bad(why: str) -> InputError:
        return InputError("E_PREFIX_JOURNAL", f"{where} is not an oemkit journal: {why}",
                          hint="oemkit removes only the names its journal records; check "
                               "no oemkit command is running, remove leftovers listed in it "
                               "by hand if you trust them, delete the journal, then run "
                               "this again")

    if len(data) > MAX_JOURNAL:
        raise bad(f"{len(data)} bytes (at most {MAX_JOURNAL})")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise bad("not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != JOURNAL_FORMAT or set(doc) != {
            "format", "pending"}:
        raise bad(f"not an object {{'format': {JOURNAL_FORMAT!r}, 'pending': [...]}}")
    pending = doc["pending"]
    if not isinstance(pending, list) or len(pending) > MAX_JOURNAL_ENTRIES:
        raise bad(f"'pending' must be a list of at most {MAX_JOURNAL_ENTRIES} names")
    for name in pending:
        if not isinstance(name, str) or not _journal_name_ok(name):
            raise bad(f"{name!r} is not a name oemkit makes in a prefix")
    return list(dict.fromkeys(pending))


def journal_bytes(names: Iterable[str]) -> bytes:
    return (json.dumps({"format": JOURNAL_FORMAT, "pending": list(names)}, indent=2)
            + "\n").encode()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_regular(path: Path, limit: int) -> bytes | None:
    """A regular file's first ``limit + 1`` bytes, never through a link; None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _layout_error(path.parent, [f"{path.name} is a symbolic link"]) from None
        raise EnvironmentProblem("E_PERMISSION", f"cannot read {path}: {exc.strerror}",
                                 hint="check the prefix's permissions") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _layout_error(path.parent, [f"{path.name} is not a regular file"])
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@dataclass
class Journal:
    """The names oemkit has created (or is about to) and not yet finished with."""

    prefix: Path
    pending: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, prefix: Path) -> Journal:
        data = read_regular(prefix / JOURNAL, MAX_JOURNAL)
        names = [] if data is None else parse_journal(data, str(prefix / JOURNAL))
        return cls(prefix, names)

    def _write(self) -> None:
        tmp, path = self.prefix / JOURNAL_TMP, self.prefix / JOURNAL
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, 0o600)
            except FileExistsError:  # a write that was killed: our own reserved name
                st = os.lstat(tmp)
                if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                    raise _layout_error(self.prefix, [f"{JOURNAL_TMP} is not a plain file "
                                                      "oemkit wrote"]) from None
                os.unlink(tmp)
                fd = os.open(tmp, flags, 0o600)
            try:
                os.write(fd, journal_bytes(self.pending))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(self.prefix)
        except OSError as exc:
            raise EnvironmentProblem("E_WRITE", f"cannot write {path}: {exc.strerror or exc}",
                                     hint="check free space and permissions; nothing was "
                                          "changed") from exc

    def add(self, name: str) -> None:
        """Record ``name`` (before it is created)."""
        assert _journal_name_ok(name), name
        if name not in self.pending:
            self.pending.append(name)
            self._write()

    def drop(self, *names: str) -> None:
        """Forget ``names`` (they are finished with: renamed, published or removed)."""
        kept = [n for n in self.pending if n not in names]
        if kept != self.pending:
            self.pending = kept
            self._write()

    def make_staging(self) -> Path:
        """A new, empty, journaled ``slots/.tmp-*`` directory (mode 0700)."""
        for _ in range(100):
            name = f"{SLOTS}/{TMP_PREFIX}{secrets.token_hex(6)}"
            self.add(name)
            try:
                os.mkdir(self.prefix / name, 0o700)
            except FileExistsError:  # not ours: leave it, forget the name
                self.drop(name)
                continue
            return self.prefix / name
        raise EnvironmentProblem("E_WRITE", f"cannot create a staging slot under "
                                 f"{self.prefix / SLOTS}", hint="check the prefix")

    def point(self, name: str, slot: str) -> None:
        """Atomically make ``PREFIX/name`` the symlink ``slots/SLOT`` (a journaled
        temporary symlink renamed over it), then fsync the prefix."""
        assert name in LINKS
        for _ in range(100):
            tmp = f".{name}.{secrets.token_hex(6)}.tmp"
            self.add(tmp)
            try:
                os.symlink(f"{SLOTS}/{slot}", self.prefix / tmp)
            except FileExistsError:
                self.drop(tmp)
                continue
            os.replace(self.prefix / tmp, self.prefix / name)
            _fsync_dir(self.prefix)
            self.drop(tmp)
            return
        raise EnvironmentProblem("E_WRITE", f"cannot switch {self.prefix / name}",
                                 hint="check the prefix")

    def remove(self, name: str, live: Iterable[str] = ()) -> bool:
        """Remove the journaled ``name`` without following a link (a directory with
        ``shutil.rmtree``, which never follows one either) and forget it; True if
        something was removed. A slot ``current``/``previous`` names is only forgotten."""
        assert name in self.pending, name
        path = self.prefix / name
        removed = False
        if not (name.startswith(f"{SLOTS}/") and name.split("/", 1)[1] in set(live)):
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                mode = None
            try:
                if mode is not None and stat.S_ISDIR(mode):
                    shutil.rmtree(path)
                    removed = True
                elif mode is not None:
                    os.unlink(path)
                    removed = True
            except OSError as exc:
                raise EnvironmentProblem(
                    "E_WRITE", f"cannot remove {path}, left by an interrupted run: "
                    f"{exc.strerror or exc}", hint="check the permissions under the prefix; "
                    "nothing was changed") from exc
        self.drop(name)
        return removed

    def discard(self, name: str) -> None:
        """Best effort :meth:`remove` on a failure path (the error being raised wins)."""
        with contextlib.suppress(OSError, EnvironmentProblem):
            self.remove(name)

    def clean(self, live: Iterable[str]) -> list[str]:
        """Remove every recorded name (an interrupted run's leftovers); what was removed."""
        live = set(live)
        return [n for n in list(self.pending) if self.remove(n, live)]
