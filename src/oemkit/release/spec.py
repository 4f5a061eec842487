"""Loading a bundle spec (``bundle.yaml``) into the exact list of files a build will pack.

Every path is checked at this boundary: relative, inside the spec's directory even after
following symlinks, a regular file, and unambiguous on case-insensitive file systems.
Errors name the spec line.

Hostile directories are bounded too: symlink loops are refused (never followed forever),
glob patterns are matched by a walker that looks at most at ``MAX_GLOB_VISITS`` directory
entries (Python's ``glob`` can take exponential time on ``**/**/...`` or on symlink
cycles), everything packed is found within ``MAX_VISITS`` paths, and the spec file itself
is never packed (naming it is an error; a glob or a directory skips it).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oemkit._canonical import sha256_hex
from oemkit._fs import read_input
from oemkit.errors import InputError
from oemkit.models.manifest import collision_key, path_problem
from oemkit.schema import load_yaml, validate

MAX_SPEC_BYTES = 1 << 20
#: Paths a spec's files and directories may make the resolver look at, in total.
MAX_VISITS = 1_000_000
#: Directory entries all of a spec's glob patterns together may look at.
MAX_GLOB_VISITS = 100_000
#: 9999-12-31T23:59:59Z: the latest build time a manifest can express.
MAX_SOURCE_DATE_EPOCH = 253_402_300_799
_MAGIC = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class SourceFile:
    """A file to pack: its path inside the payload and where it is read from."""

    path: str
    source: Path
    mode: int


@dataclass(frozen=True)
class BundleSpec:
    """A validated spec with every input resolved."""

    spec_path: Path
    spec_sha256: str
    root: Path
    raw: dict[str, Any]
    files: tuple[SourceFile, ...]
    trust_roots: tuple[Path, ...]
    crl: Path | None = None

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def version(self) -> str:
        return str(self.raw["version"])

    @property
    def model(self) -> str:
        return str(self.raw["model"])

    def source(self, payload_path: str) -> SourceFile | None:
        for f in self.files:
            if f.path == payload_path:
                return f
        return None


class _Resolver:
    def __init__(self, spec_path: Path, root: Path, lines: dict[Any, int]) -> None:
        self.spec_path = spec_path
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        self.real_spec = Path(os.path.realpath(spec_path))
        self.lines = lines
        self.files: dict[str, SourceFile] = {}
        self._walking: list[Path] = []  # real directories being expanded (loop detection)
        self._visits = 0
        self._glob_visits = 0

    def _visit(self, key: tuple[Any, ...], count: int = 1) -> None:
        self._visits += count
        if self._visits > MAX_VISITS:
            raise InputError("E_SPEC_PATH", f"{self.where(key)}: the spec's files and "
                             f"directories reach more than {MAX_VISITS} paths",
                             hint="pack fewer files, or look for symlinks that multiply "
                                  "the directory tree")

    def _glob_visit(self, key: tuple[Any, ...], count: int = 1) -> None:
        self._glob_visits += count
        if self._glob_visits > MAX_GLOB_VISITS:
            raise InputError("E_SPEC_PATH", f"{self.where(key)}: the spec's glob patterns look "
                             f"at more than {MAX_GLOB_VISITS} paths",
                             hint="narrow the pattern (fewer '*' and '**' components), name a "
                                  "directory instead, or look for symlinks that multiply the "
                                  "directory tree")

    def _fs_error(self, exc: OSError, rel: str, key: tuple[Any, ...],
                  dangling: bool = False) -> InputError:
        if exc.errno == errno.ELOOP:
            return InputError("E_SPEC_PATH", f"{self.where(key)}: {rel!r} is a symlink loop",
                              hint="remove the looping symlink")
        if exc.errno == errno.ENAMETOOLONG:
            return InputError("E_SPEC_PATH", f"{self.where(key)}: {rel!r} is too long for "
                              "this file system", hint="use a shorter path")
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            what = "is a symlink to nothing" if dangling else "does not exist"
            return InputError("E_SPEC_MISSING_FILE", f"{self.where(key)}: {rel} {what} "
                              f"(looked in {self.root})", hint="fix the path or add the file")
        return InputError("E_SPEC_PATH", f"{self.where(key)}: cannot read {rel!r}: "
                          f"{exc.strerror or exc}", hint="check the file and its permissions")

    def where(self, key: tuple[Any, ...]) -> str:
        line = self.lines.get(key)
        return f"{self.spec_path.name} line {line}" if line else self.spec_path.name

    def _check_rel(self, rel: str, key: tuple[Any, ...]) -> None:
        problem = path_problem(rel.rstrip("/"))
        if problem:
            raise InputError("E_SPEC_PATH", f"{self.where(key)}: {rel!r}: {problem}",
                             hint="paths in a spec are relative to the spec's directory and "
                                  "stay inside it")

    def _inside(self, candidate: Path, rel: str, key: tuple[Any, ...]) -> Path:
        real = Path(os.path.realpath(candidate))
        if real != self.real_root and self.real_root not in real.parents:
            raise InputError("E_SPEC_PATH", f"{self.where(key)}: {rel!r} points outside the "
                             f"spec's directory ({real})",
                             hint="copy the file next to the spec instead of linking to it")
        return real

    def add_file(self, rel: str, key: tuple[Any, ...], explicit: bool = True) -> None:
        """Add one file, or every file below a directory. ``explicit``: named in the spec
        (not found by a pattern or inside a directory)."""
        self._check_rel(rel, key)
        self._visit(key)
        candidate = self.root / rel
        try:
            os.lstat(candidate)
        except OSError as exc:
            raise self._fs_error(exc, rel, key) from None
        real = self._inside(candidate, rel, key)
        if real == self.real_spec:
            if explicit:
                raise InputError("E_SPEC_PATH", f"{self.where(key)}: {rel!r} is the spec file "
                                 "itself", hint="the spec is recorded in the provenance (by "
                                 "digest), never packed; remove this entry")
            return
        try:
            info = os.stat(real)
        except OSError as exc:
            raise self._fs_error(exc, rel, key, dangling=True) from None
        if stat.S_ISDIR(info.st_mode):
            if real in self._walking:
                raise InputError("E_SPEC_PATH", f"{self.where(key)}: {rel!r} is a symlink loop "
                                 f"(it leads back to {real})",
                                 hint="remove the symlink that points to its own parent")
            self._walking.append(real)
            try:
                for sub in self._tree(candidate, rel, key):
                    self.add_file(sub, key, explicit=False)
            finally:
                self._walking.pop()
            return
        if not stat.S_ISREG(info.st_mode):
            raise InputError("E_SPEC_FILE_TYPE", f"{self.where(key)}: {rel} is not a regular file",
                             hint="only regular files can be packed")
        self.files[rel] = SourceFile(rel, real, 0o755 if info.st_mode & stat.S_IXUSR else 0o644)

    def _tree(self, directory: Path, rel: str, key: tuple[Any, ...]) -> list[str]:
        """Every regular file and symlink below ``directory`` (hidden ones included), sorted;
        symlinked directories are listed, not entered (add_file follows them, loop-checked).
        FIFOs, sockets and devices found inside a directory are skipped."""
        out: list[str] = []
        pending = [(directory, rel)]
        while pending:
            folder, prefix = pending.pop()
            try:
                with os.scandir(folder) as entries:
                    listed = list(entries)
            except OSError as exc:
                raise self._fs_error(exc, prefix, key) from None
            self._visit(key, len(listed))
            for entry in listed:
                sub = f"{prefix.rstrip('/')}/{entry.name}"
                try:
                    if entry.is_symlink() or entry.is_file(follow_symlinks=False):
                        out.append(sub)
                    elif entry.is_dir(follow_symlinks=False):
                        pending.append((Path(entry.path), sub))
                except OSError as exc:
                    raise self._fs_error(exc, sub, key) from None
        return sorted(out)

    def add_pattern(self, pattern: str, key: tuple[Any, ...]) -> None:
        if not _MAGIC.search(pattern):
            self.add_file(pattern, key)
            return
        self._check_rel(pattern.replace("*", "x").replace("?", "x"), key)
        matches = sorted(self._glob(pattern, key))
        if not matches:
            raise InputError("E_SPEC_MISSING_FILE", f"{self.where(key)}: pattern {pattern!r} "
                             "matches no file", hint="fix the pattern or remove it")
        for match in matches:
            self.add_file(match, key, explicit=False)

    # Python's glob (recursive=True, hidden names only matched by patterns starting with
    # '.'), re-done component by component with a visit budget and without walking round
    # symlink cycles.

    def _scandir(self, rel: str, key: tuple[Any, ...]) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(self.root / rel if rel else self.root) as entries:
                listed = list(entries)
        except OSError:
            return []
        self._glob_visit(key, len(listed) + 1)
        return listed

    @staticmethod
    def _is_dir(entry: os.DirEntry[str]) -> bool:
        try:
            return entry.is_dir()
        except OSError:
            return False

    def _rlist(self, rel: str, dironly: bool, key: tuple[Any, ...]) -> list[str]:
        """What ``**`` matches below ``rel``: non-hidden descendants (directories only when
        ``dironly``), entering symlinked directories but never one of their own ancestors."""
        out: list[str] = []
        start = os.path.realpath(self.root / rel if rel else self.root)
        pending: list[tuple[str, tuple[str, ...]]] = [(rel, (start,))]
        while pending:
            folder, ancestors = pending.pop()
            for entry in self._scandir(folder, key):
                if entry.name.startswith("."):
                    continue
                sub = f"{folder}/{entry.name}" if folder else entry.name
                isdir = self._is_dir(entry)
                if isdir or not dironly:
                    out.append(sub)
                if isdir:
                    real = (os.path.realpath(entry.path) if entry.is_symlink()
                            else os.path.join(ancestors[-1], entry.name))
                    if real not in ancestors:
                        pending.append((sub, (*ancestors, real)))
        return out

    def _glob(self, pattern: str, key: tuple[Any, ...]) -> list[str]:
        trailing = pattern.endswith("/")
        parts = pattern.rstrip("/").split("/")
        frontier = [""]
        for i, part in enumerate(parts):
            dironly = i < len(parts) - 1 or trailing
            found: list[str] = []
            for base in frontier:
                if part == "**":
                    if not base or os.path.isdir(self.root / base):
                        found.append(base)
                    found.extend(self._rlist(base, dironly, key))
                elif _MAGIC.search(part):
                    found.extend(f"{base}/{e.name}" if base else e.name
                                 for e in self._scandir(base, key)
                                 if (part.startswith(".") or not e.name.startswith("."))
                                 and fnmatch.fnmatchcase(e.name, part)
                                 and (not dironly or self._is_dir(e)))
                else:
                    sub = f"{base}/{part}" if base else part
                    path = self.root / sub
                    if os.path.isdir(path) if dironly else os.path.lexists(path):
                        found.append(sub)
                    self._glob_visit(key)
            frontier = list(dict.fromkeys(found))
            self._glob_visit(key, len(frontier))
        return [f for f in frontier if f]


def _check_profiles(raw: dict[str, Any], spec_name: str, lines: dict[Any, int]) -> None:
    """Profiles are names (a shipped profile or ``profiles/NAME.yaml`` in the payload), as
    verify requires of the manifest: a spec naming a path would build a bundle no host
    accepts."""
    from oemkit.models.manifest import profile_problem

    for i, name in enumerate(raw.get("profiles") or []):
        problem = profile_problem(name)
        if problem:
            line = lines.get(("profiles", i)) or lines.get(("profiles",))
            where = f"{spec_name} line {line}" if line else spec_name
            raise InputError("E_SPEC_INVALID", f"{where}: profiles.{i}: {problem}",
                             hint="name a shipped profile (oemkit profile list) or ship "
                                  "profiles/NAME.yaml in the payload and name NAME")


def _check_license(raw: dict[str, Any], spec_name: str, lines: dict[Any, int]) -> None:
    """The ``license:`` section as the runtime will read it (``LicensePolicy.from_dict``):
    the schema checks each field's type, this the rules between fields (``degrade_features``
    needs ``invalid: degrade``)."""
    from oemkit.models.manifest import SectionProblem, check_license_section

    if "license" not in raw:
        return
    try:
        check_license_section(raw["license"])
    except SectionProblem as exc:
        line = lines.get(("license",))
        where = f"{spec_name} line {line}" if line else spec_name
        raise InputError("E_SPEC_INVALID", f"{where}: license: {exc.problem}",
                         hint="fix the license: section (docs/SPEC.md#license, "
                              "docs/SERVE.md#license-policy)") from None


def load_spec(spec_path: Path) -> BundleSpec:
    """Read, validate and resolve a spec. Raises InputError naming the field and line."""
    spec_path = Path(spec_path)
    if spec_path.is_dir():
        spec_path = spec_path / "bundle.yaml"
    data = read_input(spec_path, "spec", MAX_SPEC_BYTES)
    raw, lines = load_yaml(data, spec_path.name)
    validate(raw, "bundle.schema.json", spec_path.name, lines)
    _check_profiles(raw, spec_path.name, lines)
    _check_license(raw, spec_path.name, lines)
    epoch = raw.get("source_date_epoch")
    if isinstance(epoch, int) and epoch > MAX_SOURCE_DATE_EPOCH:
        line = lines.get(("source_date_epoch",))
        where = f"{spec_path.name} line {line}" if line else spec_path.name
        raise InputError("E_SPEC_INVALID", f"{where}: source_date_epoch: {epoch} is after "
                         "9999-12-31T23:59:59Z", hint=f"use seconds since 1970-01-01 UTC, at "
                         f"most {MAX_SOURCE_DATE_EPOCH}")
    root = spec_path.resolve().parent
    res = _Resolver(spec_path, root, lines)
    try:
        return _resolve(spec_path, data, raw, root, res)
    except RecursionError:
        raise InputError("E_SPEC_PATH", f"{spec_path.name}: symlinks are nested too deeply "
                         "to follow", hint="pack the files themselves, not chains of "
                         "symlinked directories") from None


def _resolve(spec_path: Path, data: bytes, raw: dict[str, Any], root: Path,
             res: _Resolver) -> BundleSpec:
    res.add_file(raw["model"], ("model",))
    if "entrypoint" in raw:
        res.add_file(raw["entrypoint"], ("entrypoint",))
    for section, keys in (("config", ("file", "schema")), ("golden", ("inputs", "outputs"))):
        if section in raw:
            for key in keys:
                res.add_file(raw[section][key], (section, key))
    config = raw.get("config", {})
    if "migrations" in config:
        res.add_file(config["migrations"], ("config", "migrations"))
    for i, old in enumerate(config.get("history", [])):
        res.add_file(old["schema"], ("config", "history", i, "schema"))
        for j, sample in enumerate(old.get("samples", [])):
            res.add_file(sample, ("config", "history", i, "samples", j))
    for i, pattern in enumerate(raw.get("files", [])):
        res.add_pattern(pattern, ("files", i))
    if "wheelhouse" in raw:
        res.add_file(raw["wheelhouse"], ("wheelhouse",))
    trust_roots = []
    for i, rel in enumerate(raw.get("trust_roots", [])):
        res._check_rel(rel, ("trust_roots", i))
        candidate = root / rel
        if not os.path.isfile(candidate):
            raise InputError("E_SPEC_MISSING_FILE", f"{res.where(('trust_roots', i))}: {rel} "
                             "does not exist", hint="fix the path")
        trust_roots.append(res._inside(candidate, rel, ("trust_roots", i)))
    crl = None
    if "crl" in raw:
        res._check_rel(raw["crl"], ("crl",))
        candidate = root / raw["crl"]
        if not os.path.isfile(candidate):
            raise InputError("E_SPEC_MISSING_FILE", f"{res.where(('crl',))}: {raw['crl']} "
                             "does not exist", hint="fix the path")
        crl = res._inside(candidate, raw["crl"], ("crl",))
    seen: dict[str, str] = {}
    for path in res.files:
        other = seen.setdefault(collision_key(path), path)
        if other != path:
            raise InputError("E_SPEC_PATH_COLLISION", f"{path!r} and {other!r} differ only in "
                             "case or Unicode form", hint="rename one of them: they would "
                             "overwrite each other on Windows and macOS")
    folded = set(seen)
    for path in res.files:
        parts = collision_key(path).split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in folded:
                raise InputError("E_SPEC_PATH_COLLISION", f"{seen[prefix]!r} is a file but "
                                 f"{path!r} needs it to be a directory",
                                 hint="rename the file or the directory")
    files = tuple(sorted(res.files.values(), key=lambda f: f.path.encode("utf-8")))
    return BundleSpec(spec_path, sha256_hex(data), root, raw, files, tuple(trust_roots), crl)
