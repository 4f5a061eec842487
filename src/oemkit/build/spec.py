"""Loading a bundle spec (``bundle.yaml``) into the exact list of files a build will pack.

Every path is checked at this boundary: relative, inside the spec's directory even after
following symlinks, a regular file, and unambiguous on case-insensitive file systems.
Errors name the spec line.
"""

from __future__ import annotations

import glob
import os
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
        self.lines = lines
        self.files: dict[str, SourceFile] = {}

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

    def add_file(self, rel: str, key: tuple[Any, ...]) -> None:
        self._check_rel(rel, key)
        candidate = self.root / rel
        if not candidate.exists() and not candidate.is_symlink():
            raise InputError("E_SPEC_MISSING_FILE", f"{self.where(key)}: {rel} does not exist "
                             f"(looked in {self.root})", hint="fix the path or add the file")
        real = self._inside(candidate, rel, key)
        info = os.stat(real)
        if stat.S_ISDIR(info.st_mode):
            for sub in sorted(candidate.rglob("*")):
                if sub.is_file() or sub.is_symlink():
                    self.add_file(sub.relative_to(self.root).as_posix(), key)
            return
        if not stat.S_ISREG(info.st_mode):
            raise InputError("E_SPEC_FILE_TYPE", f"{self.where(key)}: {rel} is not a regular file",
                             hint="only regular files can be packed")
        self.files[rel] = SourceFile(rel, real, 0o755 if info.st_mode & stat.S_IXUSR else 0o644)

    def add_pattern(self, pattern: str, key: tuple[Any, ...]) -> None:
        if not any(c in pattern for c in "*?["):
            self.add_file(pattern, key)
            return
        self._check_rel(pattern.replace("*", "x").replace("?", "x"), key)
        matches = sorted(glob.glob(pattern, root_dir=self.root, recursive=True))
        if not matches:
            raise InputError("E_SPEC_MISSING_FILE", f"{self.where(key)}: pattern {pattern!r} "
                             "matches no file", hint="fix the pattern or remove it")
        for match in matches:
            self.add_file(Path(match).as_posix(), key)


def load_spec(spec_path: Path) -> BundleSpec:
    """Read, validate and resolve a spec. Raises InputError naming the field and line."""
    spec_path = Path(spec_path)
    if spec_path.is_dir():
        spec_path = spec_path / "bundle.yaml"
    data = read_input(spec_path, "spec", MAX_SPEC_BYTES)
    raw, lines = load_yaml(data, spec_path.name)
    validate(raw, "bundle.schema.json", spec_path.name, lines)
    root = spec_path.resolve().parent
    res = _Resolver(spec_path, root, lines)
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
        if not candidate.is_file():
            raise InputError("E_SPEC_MISSING_FILE", f"{res.where(('trust_roots', i))}: {rel} "
                             "does not exist", hint="fix the path")
        trust_roots.append(res._inside(candidate, rel, ("trust_roots", i)))
    crl = None
    if "crl" in raw:
        res._check_rel(raw["crl"], ("crl",))
        candidate = root / raw["crl"]
        if not candidate.is_file():
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
