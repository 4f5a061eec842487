"""The bundle manifest (``oemkit-bundle.json``): what the bundle is and every byte it holds.

Typed, validated in ``from_dict``; serialised as RFC 8785 canonical JSON so that its
SHA-256 (bound by the signed provenance) is well defined.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from oemkit.errors import VerificationError

FORMAT = "oemkit-bundle/v1"
MANIFEST = "oemkit-bundle.json"
SBOM = "sbom.cdx.json"
PROVENANCE = "provenance.intoto.json"
PAYLOAD = "payload.tar.zst"
SIGNATURE_DIR = "signatures/"
LICENSE_DIR = "licenses/"
TRUST_DIR = "trust/"
REVOCATIONS = "revocations.crl"
MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255
#: Always applied with ``fullmatch``: ``re.match(r"...$")`` also accepts a trailing "\n".
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")


def path_problem(path: str) -> str | None:
    """Why ``path`` is unsafe as a payload path, or None when it is fine.

    Payload paths are relative, '/'-separated, NFC-normalised, with no empty, '.' or '..'
    components, no backslashes, control characters or NUL.
    """
    if not path:
        return "empty path"
    if "\0" in path:
        return "NUL byte in path"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"path longer than {MAX_PATH_BYTES} bytes"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "absolute path"
    if "\\" in path:
        return "backslash in path"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return "control character in path"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "path is not valid UTF-8"
    if unicodedata.normalize("NFC", path) != path:
        return "path is not NFC-normalised Unicode"
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return "'..', '.' or empty component in path"
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            return f"path component longer than {MAX_COMPONENT_BYTES} bytes"
    return None


def collision_key(path: str) -> str:
    """Key under which two paths would collide on a case-insensitive file system."""
    return unicodedata.normalize("NFKC", path).casefold()


def _bad(message: str) -> VerificationError:
    return VerificationError("E_MANIFEST_INVALID", f"manifest: {message}", member=MANIFEST,
                             check="manifest schema",
                             hint="the bundle was not written by a compatible oemkit")


@dataclass(frozen=True)
class FileEntry:
    """One payload file."""

    path: str
    size: int
    sha256: str
    mode: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "mode": self.mode}

    @classmethod
    def from_dict(cls, data: Any) -> FileEntry:
        if not isinstance(data, dict) or set(data) != {"path", "size", "sha256", "mode"}:
            raise _bad("a file entry must have exactly path, size, sha256, mode")
        path, size, digest, mode = data["path"], data["size"], data["sha256"], data["mode"]
        if not isinstance(path, str) or (problem := path_problem(path)):
            raise _bad(f"file entry {path!r}: {problem if isinstance(path, str) else 'not text'}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(f"file entry {path}: size must be a non-negative integer")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _bad(f"file entry {path}: sha256 must be 64 lowercase hex digits")
        if mode not in (0o644, 0o755):
            raise _bad(f"file entry {path}: mode must be 0644 or 0755")
        return cls(path, size, digest, mode)


@dataclass(frozen=True)
class MemberDigest:
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Runtime:
    """What the runtime needs to know: model, entrypoint, profiles, config, golden data."""

    model: str
    entrypoint: str | None = None
    profiles: tuple[str, ...] = ()
    config: dict[str, Any] | None = None
    golden: dict[str, Any] | None = None
    migrations: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "entrypoint": self.entrypoint,
            "profiles": list(self.profiles),
            "config": self.config,
            "golden": self.golden,
            "migrations": list(self.migrations),
        }


@dataclass(frozen=True)
class Manifest:
    """The whole manifest."""

    name: str
    version: str
    build_time: str
    builder: dict[str, str]
    runtime: Runtime
    files: tuple[FileEntry, ...]
    members: dict[str, MemberDigest]
    description: str = ""
    channel: str | None = None
    format: str = FORMAT
    _by_path: dict[str, FileEntry] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_path.update({f.path: f for f in self.files})

    def entry(self, path: str) -> FileEntry | None:
        return self._by_path.get(path)

    @property
    def payload_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self, *, files: bool = True) -> dict[str, Any]:
        """The manifest as JSON data (``files=False``: without the "files" key)."""
        out: dict[str, Any] = {
            "format": self.format,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "channel": self.channel,
            "build_time": self.build_time,
            "builder": dict(self.builder),
            "runtime": self.runtime.to_dict(),
            "members": {k: v.to_dict() for k, v in sorted(self.members.items())},
        }
        if files:
            out["files"] = [f.to_dict() for f in self.files]
        return out

    def to_bytes(self) -> bytes:
        from oemkit._canonical import canonical_json_spliced, splice_marker

        skeleton = dict(self.to_dict(files=False), files=splice_marker())
        return canonical_json_spliced(skeleton, (f.to_dict() for f in self.files))

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise _bad("not a JSON object")
        if data.get("format") != FORMAT:
            raise _bad(f"format is {data.get('format')!r}, this oemkit reads {FORMAT}")
        expected = {"format", "name", "version", "description", "channel", "build_time",
                    "builder", "runtime", "files", "members"}
        if set(data) != expected:
            raise _bad(f"fields differ from format v1: {sorted(set(data) ^ expected)}")
        name, version = data["name"], data["version"]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _bad(f"invalid name {name!r}")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise _bad(f"invalid version {version!r}")
        files_raw = data["files"]
        if not isinstance(files_raw, list):
            raise _bad("files is not a list")
        files = tuple(FileEntry.from_dict(f) for f in files_raw)
        paths = [f.path for f in files]
        if paths != sorted(paths, key=lambda p: p.encode("utf-8")) or len(set(paths)) != len(
            paths
        ):
            raise _bad("files must be sorted by path and unique")
        members_raw = data["members"]
        if not isinstance(members_raw, dict):
            raise _bad("members is not an object")
        members: dict[str, MemberDigest] = {}
        for key, value in members_raw.items():
            if (not isinstance(value, dict) or set(value) != {"sha256", "size"}
                    or not isinstance(value["sha256"], str) or not _HEX64.fullmatch(value["sha256"])
                    or not isinstance(value["size"], int) or value["size"] < 0):
                raise _bad(f"member digest for {key!r} is malformed")
            members[key] = MemberDigest(value["sha256"], value["size"])
        for required in (SBOM, PAYLOAD):
            if required not in members:
                raise _bad(f"no digest for {required}")
        rt = data["runtime"]
        if not isinstance(rt, dict) or not isinstance(rt.get("model"), str):
            raise _bad("runtime.model is missing")
        profiles, migrations = rt.get("profiles") or [], rt.get("migrations") or []
        if not isinstance(profiles, list) or any(not isinstance(p, str) for p in profiles):
            raise _bad("runtime.profiles must be a list of names")
        if not isinstance(migrations, list) or any(not isinstance(m, dict) for m in migrations):
            raise _bad("runtime.migrations must be a list of objects")
        for key in ("config", "golden"):
            if rt.get(key) is not None and not isinstance(rt[key], dict):
                raise _bad(f"runtime.{key} must be an object")
        if rt.get("entrypoint") is not None and not isinstance(rt["entrypoint"], str):
            raise _bad("runtime.entrypoint must be a path")
        runtime = Runtime(
            model=rt["model"], entrypoint=rt.get("entrypoint"), profiles=tuple(profiles),
            config=rt.get("config"), golden=rt.get("golden"), migrations=tuple(migrations),
        )
        builder = data["builder"]
        if not isinstance(builder, dict):
            raise _bad("builder is not an object")
        description, channel = data["description"], data["channel"]
        if not isinstance(description, str) or not isinstance(data["build_time"], str):
            raise _bad("description and build_time must be strings")
        if channel is not None and (not isinstance(channel, str) or not _NAME.fullmatch(channel)):
            raise _bad(f"invalid channel {channel!r}")
        return cls(name=name, version=version, build_time=data["build_time"],
                   builder={str(k): str(v) for k, v in builder.items()}, runtime=runtime,
                   files=files, members=members, description=description, channel=channel)
