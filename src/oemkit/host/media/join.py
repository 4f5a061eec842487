"""``plan_join``, ``JoinPlan`` and ``join_parts``: parts checked against the index, copied
into a resumable work area, verified and published (docs/MEDIA.md)."""


from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit._fs import (
    RangeReader,
    atomic_write_bytes,
    open_input,
    read_input,
    start_writeback,
)
from oemkit.errors import EnvironmentProblem, InputError, UsageError, VerificationError
from oemkit.host.media.index import (
    _PART_NAME,
    _SHOWN_PROBLEMS,
    HEADER_SIZE,
    INDEX_SUFFIX,
    MAX_PARTS,
    PART_MAGIC,
    LoadedIndex,
    MediaIndex,
    PartEntry,
    PartHeader,
    ProgressFn,
    _index_too_large,
    bundle_file_name,
    index_byte_limit,
    read_index,
)
from oemkit.models.report import VerifyReport

if TYPE_CHECKING:
    from oemkit.verify.bundle import Limits

# --------------------------------------------------------------------------- join


@dataclass(frozen=True)
class Problem:
    """What is wrong with one part (or one missing part)."""

    code: str
    number: int | None
    file: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "part": self.number, "file": self.file,
                "detail": self.detail}


class PartsError(VerificationError):
    """One or more parts cannot be joined; ``problems`` names every one of them (the
    message names the first few)."""

    def __init__(self, problems: list[Problem], *, progress_note: str = "") -> None:
        first = problems[0]
        lines = [f"{p.file}: {p.detail}" for p in problems[:_SHOWN_PROBLEMS]]
        if len(problems) > _SHOWN_PROBLEMS:
            lines.append(f"… and {len(problems) - _SHOWN_PROBLEMS} more (--json: "
                         "error.problems lists all)")
        message = (f"{len(problems)} part problem(s): " + "; ".join(lines)
                   if len(problems) > 1 else lines[0])
        hints = {
            "E_PART_MISSING": "bring the missing part(s) and run join again; the parts "
                              "already checked are kept",
            "E_PART_TRUNCATED": "the part was cut short (an interrupted copy?): copy it "
                                "again from the original medium",
            "E_PART_CORRUPT": "copy that part again (or use another copy of the medium); "
                              "the other parts are kept",
            "E_PART_FOREIGN": "that file belongs to another bundle or another split: take "
                              "the part with the right name from this bundle's media",
            "E_PART_ORDER": "the file's name says another part number than its contents: "
                            "a mislabelled or swapped part; pass the right files",
            "E_PART_DUPLICATE": "pass each part once",
        }
        hint = hints.get(first.code, "")
        if progress_note:
            hint = f"{hint}. {progress_note}" if hint else progress_note
        super().__init__(first.code, message, check="parts", member=first.file, hint=hint)
        self.problems = problems

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["problems"] = [p.to_dict() for p in self.problems]
        return out


@dataclass
class JoinResult:
    path: Path
    index: MediaIndex
    report: VerifyReport
    copied: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    index_signers: tuple[str, ...] = ()


def find_index(paths: Sequence[Path]) -> Path | None:
    """An ``*.index.json`` among ``paths``, else beside the first part."""
    for path in paths:
        if path.name.endswith(INDEX_SUFFIX):
            return path
    for path in paths:
        match = _PART_NAME.search(path.name)
        if match:
            candidate = path.with_name(path.name[:match.start()] + INDEX_SUFFIX)
            if candidate.is_file():
                return candidate
    return None


def work_dir_for(out: Path) -> Path:
    """The work area of a join given ``--out FILE``: ``.FILE.join`` beside it."""
    return out.parent / f".{out.name}.join"


def default_work_dir(directory: Path, bundle_sha256: str) -> Path:
    """The work area of a join that names the bundle itself (no ``--out``, or ``--out``
    an existing directory): ``.oemkit-join-<first 16 hex digits of the bundle's SHA-256>``
    in that directory. Nothing in it comes from a name the index chose."""
    return directory / f".oemkit-join-{bundle_sha256[:16]}"


def join_parts(parts: Sequence[Path | str], trust: Path | str | bytes, *,
               out: Path | str | None = None, index: Path | str | None = None,
               progress: ProgressFn | None = None,
               verify_progress: ProgressFn | None = None,
               limits: Limits | None = None, force: bool = False,
               max_parts: int = MAX_PARTS) -> JoinResult:
    """Check ``parts`` against the index, reassemble, verify, publish the bundle.

    The bundle is written to ``out`` (a file), or, when ``out`` is None or an existing
    directory, as ``NAME-VERSION.oemb`` there (name and version from the verified
    manifest). An existing file of that name is never replaced (``E_OUTPUT_EXISTS``)
    unless ``force``; join's own inputs never are.

    Raises :class:`PartsError` naming every bad or missing part (parts already checked
    are kept in the work area for the next run), ``EnvironmentProblem`` ``E_WRITE`` when
    the output cannot be written (the work area is removed; no output appears), or
    returns with ``report.ok`` False when the joined bundle does not verify (no output).
    """
    return plan_join(parts, trust, out=out, index=index, limits=limits, force=force,
                     max_parts=max_parts).run(progress, verify_progress)


def _output_exists(target: Path, kept: bool) -> InputError:
    what = "a directory" if target.is_dir() else "a file"
    kept_note = (" The joined, verified bundle is kept in the work area: run join again "
                 "after that and nothing is copied again." if kept else "")
    return InputError("E_OUTPUT_EXISTS", f"{target} already exists ({what} join did not "
                      "create); join never replaces it unless told to",
                      hint="remove or rename it, choose another --out, or pass --force to "
                           f"replace it.{kept_note}")


#: link(2) errors that mean "this file system has no hard links" (FAT32, some shares).
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS,
             errno.EXDEV}


@dataclass
class JoinPlan:
    """A checked index and the parts given, ready to join (see :func:`plan_join`).

    ``out`` is the ``--out`` file, or None: then the bundle goes into ``directory`` as
    ``NAME-VERSION.oemb`` of its verified manifest. ``inputs`` (parts, index, trust
    root) are never replaced, even with ``force``."""

    loaded: LoadedIndex
    work_dir: Path
    out: Path | None
    directory: Path
    found: dict[int, Path]
    pinned: bytes
    limits: Limits | None = None  # the joined bundle's verification (default: verify's)
    force: bool = False
    inputs: tuple[Path, ...] = ()

    @property
    def index(self) -> MediaIndex:
        return self.loaded.index

    @property
    def target(self) -> Path:
        """The output as planned: ``out``, or ``NAME-VERSION.oemb`` as the index names it
        (the verified manifest's name and version decide, and must agree)."""
        if self.out is not None:
            return self.out
        return self.directory / bundle_file_name(self.index.name, self.index.version)

    def pending_bytes(self) -> int:
        """Bytes this run will copy (parts given and not yet in place), as of now."""
        work = _Work(self.work_dir, self.index, self.loaded.data)
        done = work.peek()
        return sum(self.index.parts[n - 1].length for n in self.found if n not in done)

    def run(self, progress: ProgressFn | None = None,
            verify_progress: ProgressFn | None = None) -> JoinResult:
        idx, found = self.index, self.found
        work = _Work(self.work_dir, idx, self.loaded.data)
        self._check_target(self.target, work)  # before a byte is copied
        with work.locked():
            done = work.load()
            todo = [n for n in sorted(found) if n not in done]
            missing = [p for p in idx.parts if p.number not in done and p.number not in found]
            copied: list[int] = []
            corrupt: list[Problem] = []
            try:
                work.ensure_space(sum(idx.parts[n - 1].length for n in todo))
                for number in todo:
                    entry = idx.parts[number - 1]
                    try:
                        digest = work.copy_part(found[number], entry, progress)
                    except _ReadError as exc:
                        corrupt.append(Problem("E_PART_CORRUPT", number, str(found[number]),
                                               f"part {number} of {len(idx.parts)} cannot "
                                               f"be read ({exc.strerror})"))
                        continue
                    if digest == entry.sha256:
                        done[number] = digest
                        copied.append(number)
                        work.save(done)  # durable progress: a kill loses one part at most
                    else:
                        corrupt.append(Problem(
                            "E_PART_CORRUPT", number, str(found[number]),
                            f"part {number} of {len(idx.parts)} is damaged: its SHA-256 is "
                            f"{digest[:16]}…, the index says {entry.sha256[:16]}…"))
                work.save(done)
            except OSError as exc:
                work.remove()
                raise EnvironmentProblem(
                    "E_WRITE", f"cannot write the joined bundle in {work.dir}: "
                    f"{exc.strerror or exc}; nothing was kept",
                    hint=f"free at least {idx.bundle_size} bytes on {work.dir.parent} (or "
                         "choose --out elsewhere) and run join again; the parts were not "
                         "touched") from exc
            problems = corrupt + [Problem("E_PART_MISSING", p.number, p.file,
                                          f"part {p.number} of {len(idx.parts)} is missing")
                                  for p in missing]
            if problems:
                note = (f"{len(done)} of {len(idx.parts)} parts are checked and kept in "
                        f"{work.dir} for the next run")
                if not done:
                    work.remove()
                    note = ""
                raise PartsError(problems, progress_note=note)
            report, target = self._finish(work, verify_progress)
        return JoinResult(target, idx, report, copied, sorted(set(done) - set(copied)),
                          self.loaded.signers)

    def _check_target(self, target: Path, work: _Work) -> None:
        """Refuse an output name that is taken (by anything but this join's own output of
        an interrupted run), unless ``force``; refuse one of join's inputs always."""
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise EnvironmentProblem("E_WRITE", f"cannot check {target}: "
                                     f"{exc.strerror or exc}",
                                     hint="choose another --out") from exc
        for source in self.inputs:
            with contextlib.suppress(OSError):
                other = os.stat(source)
                if (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino):
                    raise UsageError("E_USAGE", f"{target} is one of join's inputs "
                                     f"({source}); join never replaces its parts, index or "
                                     "trust root", hint="choose another --out")
        if work.is_data(st):
            return
        if not self.force or stat.S_ISDIR(st.st_mode):
            raise _output_exists(target, kept=False)

    def _finish(self, work: _Work, verify_progress: ProgressFn | None
                ) -> tuple[VerifyReport, Path]:
        """Verify the reassembled bundle; publish it only if it verifies."""
        from oemkit.verify.bundle import verify_bundle

        idx = self.index
        work.close_data()
        report = verify_bundle(work.data, self.pinned, progress=verify_progress,
                               limits=self.limits)
        if report.ok and (report.manifest_sha256 != idx.manifest_sha256
                          or (report.name, report.version) != (idx.name, idx.version)):
            report.failed(VerificationError(
                "E_INDEX_MISMATCH", f"the joined bundle ({report.name} {report.version}, "
                f"manifest {report.manifest_sha256}) is not the one the index names "
                f"({idx.name} {idx.version}, manifest {idx.manifest_sha256})", check="index",
                hint="the index and the parts do not belong together"))
        if not report.ok:
            work.remove()
            return report, self.target
        # The name comes from the verified manifest (its rules make it a plain file name,
        # and it is the index's, checked above).
        target = self.out or self.directory / bundle_file_name(str(report.name),
                                                               str(report.version))
        self._check_target(target, work)
        try:
            published = work.publish(target, self.force)
        except OSError as exc:
            work.remove()
            raise EnvironmentProblem("E_WRITE", f"cannot write {target}: "
                                     f"{exc.strerror or exc}",
                                     hint="check permissions and run join again") from exc
        if not published:  # taken between the check and the link: keep the work
            raise _output_exists(target, kept=True)
        work.remove()
        report.passed("join", f"{len(idx.parts)} parts joined into {target}")
        return report, target


def plan_join(parts: Sequence[Path | str], trust: Path | str | bytes, *,
              out: Path | str | None = None, index: Path | str | None = None,
              limits: Limits | None = None, force: bool = False,
              max_parts: int = MAX_PARTS) -> JoinPlan:
    """Read the trust root and the index (checking its signatures), then every given
    part's header and size against the index: :class:`PartsError` names every foreign,
    mislabelled, duplicated, truncated or damaged-header part before anything is copied.
    Missing parts are not an error yet (they may already be in the work area)."""
    from oemkit.verify.trust import load_pinned

    paths = [Path(p) for p in parts]
    if not paths and index is None:
        raise UsageError("E_USAGE", "no parts given", hint="oemkit join DIR/*.part* --trust "
                         "ROOT")
    pinned_bytes = trust if isinstance(trust, bytes) else read_input(Path(trust),
                                                                       "trust root")
    pinned_root = load_pinned(pinned_bytes)
    out_file = Path(out) if out is not None else None
    directory = Path.cwd()
    if out_file is not None and out_file.is_dir():
        directory, out_file = out_file, None
    limit = index_byte_limit(max_parts)
    index_path = Path(index) if index is not None else find_index(paths)
    if index_path is not None:
        index_bytes = _read_index_file(index_path, limit, max_parts)
    else:
        saved = _saved_index(paths, out_file, directory, limit)
        if saved is None:
            raise InputError("E_INDEX_MISSING", "no index found: pass the .index.json file "
                             "'oemkit split' wrote (it lies beside the first part)",
                             hint="oemkit join NAME.oemb.index.json NAME.oemb.part* --trust "
                                  "ROOT")
        index_path, index_bytes = saved
    loaded = read_index(index_bytes, pinned_root, what=str(index_path),
                        max_parts=max_parts)
    idx = loaded.index
    work_dir = (work_dir_for(out_file) if out_file is not None
                else default_work_dir(directory, idx.bundle_sha256))
    given = [p for p in paths if p.resolve() != index_path.resolve()]
    inputs = tuple(paths) + (index_path,) + (() if isinstance(trust, bytes) else (Path(trust),))
    return JoinPlan(loaded, work_dir, out_file, directory, _classify(given, idx),
                    pinned_bytes, limits, force, inputs)


def _special(path: Path) -> bool:
    """``path`` exists and is neither a regular file nor a directory (a FIFO, a device, a
    socket: opening or reading one could block or never end)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # the reader says what is wrong with it
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _read_index_file(path: Path, limit: int, max_parts: int) -> bytes:
    if _special(path):
        raise InputError("E_NOT_A_FILE", f"index {path} is not a regular file",
                         hint="pass the .index.json file 'oemkit split' wrote")
    try:
        return read_input(path, "index", limit)
    except InputError as exc:
        if exc.code != "E_TOO_LARGE":
            raise
        raise _index_too_large(f"index {path}", path.stat().st_size, limit, max_parts) from None


def _saved_index(paths: Sequence[Path], out: Path | None, directory: Path,
                 limit: int) -> tuple[Path, bytes] | None:
    """The index an earlier run kept in the work area: beside ``--out``, or (no
    ``--out``) in the work area the given parts' headers point to."""
    if out is not None:
        areas = [work_dir_for(out)]
    else:
        areas = []
        for path in paths:
            with contextlib.suppress(OSError), open(path, "rb") as handle:
                header = PartHeader.from_bytes(handle.read(HEADER_SIZE))
                if header is not None:
                    areas.append(default_work_dir(directory, header.bundle_sha256))
    for area in dict.fromkeys(areas):
        saved = area / "index.json"
        with contextlib.suppress(OSError, ValueError):
            if _real_dir(area):
                return saved, _read_regular(saved, limit)
    return None


def _classify(paths: Sequence[Path], idx: MediaIndex) -> dict[int, Path]:
    """Read each file's header and size: part number -> file, or PartsError."""
    problems: list[Problem] = []
    found: dict[int, Path] = {}
    count = len(idx.parts)
    for path in paths:
        if _special(path):
            problems.append(Problem("E_PART_CORRUPT", None, str(path),
                                    "is not a regular file (a FIFO, device or socket)"))
            continue
        with open_input(path, "part") as handle:
            head = handle.read(HEADER_SIZE)
            size = os.fstat(handle.fileno()).st_size
        header = PartHeader.from_bytes(head)
        if header is None:
            detail = ("is not an oemkit part (no part header)" if not head.startswith(PART_MAGIC)
                      else "has a damaged part header")
            if len(head) < HEADER_SIZE and PART_MAGIC.startswith(head[:8]):
                problems.append(Problem("E_PART_TRUNCATED", None, str(path),
                                        f"is truncated: only {size} bytes"))
            else:
                problems.append(Problem("E_PART_CORRUPT", None, str(path), detail))
            continue
        if (header.bundle_sha256 != idx.bundle_sha256 or header.part_size != idx.part_size
                or header.count != count or header.bundle_size != idx.bundle_size):
            other = ("another bundle" if header.bundle_sha256 != idx.bundle_sha256
                     else "another split of this bundle")
            problems.append(Problem(
                "E_PART_FOREIGN", header.number, str(path),
                f"belongs to {other} (part {header.number} of {header.count}, bundle "
                f"sha256 {header.bundle_sha256[:16]}…), not to {idx.bundle_file} "
                f"(sha256 {idx.bundle_sha256[:16]}…)"))
            continue
        entry = idx.parts[header.number - 1] if 1 <= header.number <= count else None
        if entry is None or (header.offset, header.length) != (entry.offset, entry.length):
            problems.append(Problem("E_PART_CORRUPT", header.number, str(path),
                                    "its header does not match the index"))
            continue
        match = _PART_NAME.search(path.name)
        if match and int(match.group(1)) != header.number:
            problems.append(Problem(
                "E_PART_ORDER", header.number, str(path),
                f"is named as part {int(match.group(1))} but holds part {header.number} of "
                f"{count} ({entry.file}): parts are swapped or mislabelled"))
            continue
        if header.number in found:
            problems.append(Problem(
                "E_PART_DUPLICATE", header.number, str(path),
                f"is part {header.number} of {count} again (also given as "
                f"{found[header.number]})"))
            continue
        if size < entry.size:
            problems.append(Problem(
                "E_PART_TRUNCATED", header.number, str(path),
                f"part {header.number} of {count} is truncated: {size} of {entry.size} "
                "bytes"))
            continue
        if size > entry.size:
            problems.append(Problem(
                "E_PART_CORRUPT", header.number, str(path),
                f"part {header.number} of {count} is {size} bytes, {size - entry.size} more "
                "than the index says"))
            continue
        found[header.number] = path
    if problems:
        raise PartsError(problems)
    return found


class _ReadError(Exception):
    """A part could not be read (a bad medium): that part is damaged, not the disk full."""

    def __init__(self, strerror: str) -> None:
        super().__init__(strerror)
        self.strerror = strerror


def _real_dir(path: Path) -> bool:
    """``path`` is a directory itself, not a symbolic link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _read_regular(path: Path, limit: int) -> bytes:
    """A regular file's bytes, never through a symbolic link, at most ``limit`` bytes
    (``ValueError`` beyond; ``OSError`` when it cannot be read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        chunks, left = [], limit + 1
        while left:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data


#: What join itself writes in its work area; anything else there means the folder is not
#: (only) join's, and join will not write into it or remove it.
_WORK_FILES = frozenset({"data", "state.json", "index.json", "lock"})
_WORK_TEMP = re.compile(r"\.(?:state|index)\.json\.[A-Za-z0-9_]+\.tmp")
_WORK_STATE_PER_PART = 128


class _Work:
    """The work area: ``data`` (the bundle being reassembled, parts written at their
    offsets), ``state.json`` (parts in place), ``index.json`` and ``lock``. Join creates
    it (mode 0700), writes nothing but those names in it (never through a symbolic link),
    and removes only those names, then the folder if it is empty."""

    def __init__(self, directory: Path, idx: MediaIndex, index_bytes: bytes) -> None:
        from oemkit._canonical import sha256_hex

        self.dir = directory
        self.data = self.dir / "data"
        self.state = self.dir / "state.json"
        self.idx = idx
        self.index_bytes = index_bytes
        self.index_sha256 = sha256_hex(index_bytes)
        self._fd: int | None = None

    def _claim(self) -> None:
        """Create the work area, or adopt it when it holds only what join writes."""
        def not_ours(detail: str) -> InputError:
            return InputError("E_WORK_AREA", f"{self.dir} is not a join work area: {detail}",
                              hint="remove or rename it (join never writes into, or removes, "
                                   "a folder it did not make), or choose another --out")

        try:
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.dir, 0o700)
                return
            except FileExistsError:
                pass
            if not _real_dir(self.dir):
                raise not_ours("it is a symbolic link or not a folder")
            for name in sorted(os.listdir(self.dir)):
                if not (name in _WORK_FILES or _WORK_TEMP.fullmatch(name)):
                    raise not_ours(f"it holds {name!r}, which join did not write")
                if not stat.S_ISREG(os.lstat(self.dir / name).st_mode):
                    raise not_ours(f"{name!r} in it is not a regular file")
        except OSError as exc:
            raise EnvironmentProblem("E_WRITE", f"cannot create {self.dir}: "
                                     f"{exc.strerror or exc}",
                                     hint="choose a writable --out") from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        import fcntl

        self._claim()
        try:
            lock = os.open(self.dir / "lock",
                           os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise EnvironmentProblem("E_WRITE", f"cannot create {self.dir}/lock: "
                                     f"{exc.strerror or exc}",
                                     hint="choose a writable --out") from exc
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise EnvironmentProblem("E_BUSY", f"another join is writing in {self.dir}",
                                         hint="wait for it to finish") from exc
            yield
        finally:
            os.close(lock)
            self.close_data()

    def peek(self) -> dict[int, str]:
        """Parts already in place from an earlier run of this very index (read only).
        Anything unexpected in the work area (not ours, too large, malformed) reads as
        "nothing in place"."""
        try:
            if not _real_dir(self.dir):
                return {}
            st = os.lstat(self.data)
            if not stat.S_ISREG(st.st_mode) or st.st_size != self.idx.bundle_size:
                return {}
            limit = 4096 + _WORK_STATE_PER_PART * len(self.idx.parts)
            state = json.loads(_read_regular(self.state, limit))
        except (OSError, ValueError, RecursionError):
            return {}
        if not isinstance(state, dict) or state.get("index_sha256") != self.index_sha256:
            return {}
        recorded = state.get("done")
        if not isinstance(recorded, dict):
            return {}
        done: dict[int, str] = {}
        for number, digest in recorded.items():
            if not re.fullmatch(r"[1-9][0-9]{0,8}", number, re.ASCII):
                continue
            n = int(number)
            if n <= len(self.idx.parts) and digest == self.idx.parts[n - 1].sha256:
                done[n] = digest
        return done

    def load(self) -> dict[int, str]:
        """Like :meth:`peek`, and start afresh (no stale data) when nothing is in place."""
        done = self.peek()
        if not done:
            with contextlib.suppress(FileNotFoundError):
                self.data.unlink()
            with contextlib.suppress(FileNotFoundError):
                self.state.unlink()
        return done

    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.data, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                               | os.O_CLOEXEC, 0o600)
            if os.fstat(self._fd).st_size != self.idx.bundle_size:
                os.ftruncate(self._fd, self.idx.bundle_size)
        return self._fd

    def close_data(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def is_data(self, st: os.stat_result) -> bool:
        """``st`` is this work area's ``data`` file (an earlier run published it and was
        interrupted before removing the work area)."""
        try:
            mine = os.lstat(self.data)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def ensure_space(self, needed: int) -> None:
        """Fail before copying when the file system clearly cannot hold the parts."""
        if not needed:
            return
        stat_ = os.statvfs(self.dir)
        free = stat_.f_bavail * stat_.f_frsize
        if free < needed:
            raise OSError(28, f"No space left on device ({needed} bytes needed, {free} free)")

    def copy_part(self, path: Path, entry: PartEntry, progress: ProgressFn | None) -> str:
        """Copy one part's data into place; return the SHA-256 of the part file as read
        (its header, then exactly the bytes written)."""
        def short(missing: int) -> BaseException:
            return VerificationError("E_PART_TRUNCATED", f"{path} shrank while it was read "
                                     f"({missing} bytes missing)", member=str(path),
                                     check="parts", hint="copy that part again")

        try:
            src = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise _ReadError(exc.strerror or str(exc)) from exc
        with src:
            try:
                header = os.pread(src.fileno(), HEADER_SIZE, 0)  # the index hashes whole files
            except OSError as exc:
                raise _ReadError(exc.strerror or str(exc)) from exc
            reader = RangeReader(src.fileno(), HEADER_SIZE, entry.length, short=short,
                                 hash_prefix=header)
            return self._copy(reader, entry, progress)

    def _copy(self, reader: RangeReader, entry: PartEntry, progress: ProgressFn | None) -> str:
        fd = self.fd()
        with reader:
            position = entry.offset
            while True:
                try:
                    chunk = reader.next_chunk()
                except OSError as exc:
                    raise _ReadError(exc.strerror or str(exc)) from exc
                if chunk is None:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.pwrite(fd, view, position + len(chunk) - len(view)):]
                start_writeback(fd, position, len(chunk))
                position += len(chunk)
                if progress:
                    progress(len(chunk))
            return reader.hexdigest()

    def save(self, done: dict[int, str]) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
        atomic_write_bytes(self.dir / "index.json", self.index_bytes)
        doc = {"index_sha256": self.index_sha256,
               "done": {str(n): d for n, d in sorted(done.items())}}
        atomic_write_bytes(self.state, json.dumps(doc, sort_keys=True).encode())

    def publish(self, target: Path, force: bool) -> bool:
        """Give ``data`` its final name; False when ``target`` exists and is not ours.

        Without ``force`` nothing is ever replaced: ``link(2)`` fails when the name is
        taken (even by a dangling symbolic link), and on a file system without hard links
        the name is checked just before ``rename``. With ``force`` the name is replaced
        (a symbolic link itself, never what it points to; a directory never)."""
        self.close_data()
        os.chmod(self.data, 0o644)
        target.parent.mkdir(parents=True, exist_ok=True)
        if force:
            os.replace(self.data, target)
        else:
            try:
                os.link(self.data, target, follow_symlinks=False)
            except FileExistsError:
                if not self.is_data(os.lstat(target)):
                    return False
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                if os.path.lexists(target):
                    return False
                os.rename(self.data, target)
            with contextlib.suppress(FileNotFoundError):
                self.data.unlink()
        with contextlib.suppress(OSError):
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return True

    def remove(self) -> None:
        """Remove what join wrote in the work area, then the folder if that empties it."""
        self.close_data()
        if not _real_dir(self.dir):
            return
        with contextlib.suppress(OSError):
            for name in os.listdir(self.dir):
                if name in _WORK_FILES or _WORK_TEMP.fullmatch(name):
                    with contextlib.suppress(OSError):
                        os.unlink(self.dir / name)
            os.rmdir(self.dir)
