"""The bundle manifest (``oemkit-bundle.json``): what the bundle is and every byte it holds.

Typed, validated in ``from_dict``; serialised as RFC 8785 canonical JSON so that its
SHA-256 (bound by the signed provenance) is well defined.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from oemkit.errors import FormatError

FORMAT = "oemkit-bundle/v1"
MANIFEST = "oemkit-bundle.json"
SBOM = "sbom.cdx.json"
PROVENANCE = "provenance.intoto.json"
PAYLOAD = "payload.tar.zst"
SIGNATURE_DIR = "signatures/"
#: in-toto link metadata (``links/build.<keyid:8>.link``), added by sign; outside the
#: signed payload like the signatures (docs/INTOTO.md).
LINK_DIR = "links/"
LICENSE_DIR = "licenses/"
TRUST_DIR = "trust/"
REVOCATIONS = "revocations.crl"
MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255
#: Always applied with ``fullmatch``: ``re.match(r"...$")`` also accepts a trailing "\n".
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
#: Characters Windows does not allow in a file name (':' would also name an NTFS stream).
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
#: Device names Windows reserves in every directory, with or without an extension.
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"0123456789", "\u00b9", "\u00b2",
                                                        "\u00b3")})
#: Config versions a bundle may describe (current and history) and migrations it may ship.
MAX_CONFIG_VERSIONS = 1000
#: Sample configs of one older version.
MAX_SAMPLES = 1000
#: Hardware profile names a manifest may list.
MAX_PROFILES = 64
RUNTIME_FIELDS = ("model", "entrypoint", "profiles", "config", "golden", "migrations")
#: Optional runtime fields: written only when the spec has the section, so a bundle built
#: from a spec without it has the manifest bytes it always had.
RUNTIME_OPTIONAL = ("license",)


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
        problem = _windows_problem(part)
        if problem:
            return problem
    return None


def _windows_problem(part: str) -> str | None:
    """Why one path component would be read as another name (or a device) on Windows."""
    if part.endswith((".", " ")):
        return (f"component {part!r} ends with a dot or a space (Windows drops them, so it "
                "would be the same file as the name without)")
    bad = sorted(_WINDOWS_FORBIDDEN.intersection(part))
    if bad:
        return f"character {bad[0]!r} in {part!r} is not allowed in a Windows file name"
    if part.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
        return f"{part!r} is a reserved device name on Windows"
    return None


def collision_key(path: str) -> str:
    """Key under which two paths would collide on a case-insensitive file system (or on
    Windows, which also drops trailing dots and spaces: ``run.bat.`` is ``run.bat``)."""
    folded = unicodedata.normalize("NFKC", path).casefold()
    return "/".join(part.rstrip(". ") or part for part in folded.split("/"))


def _bad(message: str, where: str | None = None) -> FormatError:
    """E_MANIFEST_INVALID; ``where`` is the JSON path of the offending field."""
    return FormatError("E_MANIFEST_INVALID", f"manifest: {message}", member=MANIFEST,
                       check="manifest schema", field=where,
                       hint="the bundle was not written by a compatible oemkit")


def _is_int(value: Any) -> bool:
    """An integer in JSON's sense: not a bool, not a float that happens to be whole."""
    return type(value) is int


def _is_number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and math.isfinite(value)


class SectionProblem(Exception):
    """A runtime section field is malformed: ``field`` (relative JSON path) and why."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def _path_field(value: Any, where: str, files: Collection[str] | None) -> str:
    """A payload path the runtime section names: safe, and (``files`` given) listed."""
    if not isinstance(value, str):
        raise SectionProblem(where, f"must be a payload path (a string), not {_kind(value)}")
    problem = path_problem(value)
    if problem:
        raise SectionProblem(where, f"{value!r}: {problem}")
    if files is not None and value not in files:
        raise SectionProblem(where, f"{value!r} is not a file of this bundle (not in files)")
    return value


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object", type(None): "null"}.get(type(value),
                                                                      type(value).__name__)


def _keys(value: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SectionProblem(where, f"must be an object, not {_kind(value)}")
    missing = sorted(required - set(value))
    if missing:
        raise SectionProblem(where, f"required field {missing[0]!r} is missing")
    extra = sorted(set(value) - required - optional)
    if extra:
        raise SectionProblem(where, f"unknown field {extra[0]!r} (allowed: "
                             f"{', '.join(sorted(required | optional))})")
    return value


def _version(value: Any, where: str) -> int:
    if not _is_int(value) or not 1 <= value <= 2**53 - 1:
        raise SectionProblem(where, f"must be an integer >= 1, not {value!r}")
    assert isinstance(value, int)
    return value


def check_config_section(section: Any, files: Collection[str] | None = None,
                         where: str = "config") -> dict[str, Any]:
    """Check a config section (the spec's ``config:``, the manifest's ``runtime.config``)
    exactly: ``{file, schema, version[, history][, migrations]}``, every path safe and,
    when ``files`` is given, a file of the bundle; history versions unique and not the
    current one; at most MAX_CONFIG_VERSIONS versions. Raises :class:`SectionProblem`.

    Raises:
        SectionProblem: the field and why (callers raise their own code).
    """
    checked = _keys(section, where, {"file", "schema", "version"}, {"history", "migrations"})
    _path_field(section["file"], f"{where}.file", files)
    _path_field(section["schema"], f"{where}.schema", files)
    current = _version(section["version"], f"{where}.version")
    if "migrations" in section:
        _path_field(section["migrations"], f"{where}.migrations", files)
    history = section.get("history", [])
    if not isinstance(history, list):
        raise SectionProblem(f"{where}.history", f"must be a list, not {_kind(history)}")
    if len(history) >= MAX_CONFIG_VERSIONS:
        raise SectionProblem(f"{where}.history", f"{len(history)} older versions (at most "
                             f"{MAX_CONFIG_VERSIONS - 1})")
    seen = {current}
    for i, old in enumerate(history):
        here = f"{where}.history[{i}]"
        _keys(old, here, {"version", "schema"}, {"samples"})
        version = _version(old["version"], f"{here}.version")
        if version in seen:
            raise SectionProblem(f"{here}.version", f"version {version} is described twice"
                                 + (" (it is the current version)" if version == current
                                    else ""))
        seen.add(version)
        _path_field(old["schema"], f"{here}.schema", files)
        samples = old.get("samples", [])
        if not isinstance(samples, list):
            raise SectionProblem(f"{here}.samples", f"must be a list, not {_kind(samples)}")
        if len(samples) > MAX_SAMPLES:
            raise SectionProblem(f"{here}.samples", f"{len(samples)} samples (at most "
                                 f"{MAX_SAMPLES})")
        for j, sample in enumerate(samples):
            _path_field(sample, f"{here}.samples[{j}]", files)
    return checked


def check_golden_section(section: Any, files: Collection[str] | None = None,
                         where: str = "golden") -> dict[str, Any]:
    """``{inputs, outputs[, atol][, rtol]}``: payload paths and finite numbers >= 0.

    Raises:
        SectionProblem: the field and why (callers raise their own code).
    """
    checked = _keys(section, where, {"inputs", "outputs"}, {"atol", "rtol"})
    _path_field(section["inputs"], f"{where}.inputs", files)
    _path_field(section["outputs"], f"{where}.outputs", files)
    for key in ("atol", "rtol"):
        if key in section and (not _is_number(section[key]) or section[key] < 0):
            raise SectionProblem(f"{where}.{key}", f"must be a finite number >= 0, not "
                                 f"{section[key]!r}")
    return checked


def profile_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a manifest's profile reference: it must be a profile *name*
    (a shipped profile, or ``profiles/NAME.yaml`` in the payload), never a path."""
    if not isinstance(name, str):
        return f"must be a profile name (a string), not {_kind(name)}"
    if not _NAME.fullmatch(name) or name.endswith((".yaml", ".yml")):
        return (f"{name!r} is not a profile name (lowercase letters, digits, '.', '_', '-'; "
                "no path, no .yaml suffix)")
    return None


@dataclass(frozen=True)
class FileEntry:
    """One payload file."""

    path: str
    size: int
    sha256: str
    mode: int

    def to_dict(self) -> dict[str, Any]:
        """The entry as manifest JSON."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "mode": self.mode}

    @classmethod
    def from_dict(cls, data: Any) -> FileEntry:
        """Parse one ``files`` entry exactly: safe path, size, SHA-256, mode.

        Raises:
            FormatError: E_MANIFEST_INVALID.
        """
        if not isinstance(data, dict) or set(data) != {"path", "size", "sha256", "mode"}:
            raise _bad("a file entry must have exactly path, size, sha256, mode")
        path, size, digest, mode = data["path"], data["size"], data["sha256"], data["mode"]
        if not isinstance(path, str) or (problem := path_problem(path)):
            raise _bad(f"file entry {path!r}: {problem if isinstance(path, str) else 'not text'}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(f"file entry {path}: size must be a non-negative integer")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _bad(f"file entry {path}: sha256 must be 64 lowercase hex digits")
        if not _is_int(mode) or mode not in (0o644, 0o755):
            raise _bad(f"file entry {path}: mode must be the integer 420 (0644) or 493 "
                       f"(0755), not {mode!r}")
        return cls(path, size, digest, mode)


@dataclass(frozen=True)
class MemberDigest:
    """SHA-256 and size of one outer-archive member (SBOM, payload)."""
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        """The digest as manifest JSON."""
        return {"sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Runtime:
    """What the runtime needs to know: model, entrypoint, profiles, config, golden data, and
    the serving runtime's license policy (the spec's ``license:`` section, as
    ``LicensePolicy.to_dict`` writes it; None when the spec has none)."""

    model: str
    entrypoint: str | None = None
    profiles: tuple[str, ...] = ()
    config: dict[str, Any] | None = None
    golden: dict[str, Any] | None = None
    migrations: tuple[dict[str, Any], ...] = ()
    license: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The runtime section as manifest JSON (``license`` only when there is one)."""
        out: dict[str, Any] = {
            "model": self.model,
            "entrypoint": self.entrypoint,
            "profiles": list(self.profiles),
            "config": self.config,
            "golden": self.golden,
            "migrations": list(self.migrations),
        }
        if self.license is not None:
            out["license"] = self.license
        return out


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
        """The payload file at ``path``, or None."""
        return self._by_path.get(path)

    @property
    def payload_size(self) -> int:
        """Total size of the payload files in bytes."""
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
        """The canonical manifest bytes (RFC 8785), the files spliced in as a stream."""
        from oemkit._canonical import canonical_json_spliced, splice_marker

        skeleton = dict(self.to_dict(files=False), files=splice_marker())
        return canonical_json_spliced(skeleton, (f.to_dict() for f in self.files))

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Parse a manifest exactly as format v1 writes it.

        Raises:
            FormatError: E_MANIFEST_INVALID.
        """
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
                    or not _is_int(value["size"]) or value["size"] < 0):
                raise _bad(f"member digest for {key!r} is malformed")
            members[key] = MemberDigest(value["sha256"], value["size"])
        for required in (SBOM, PAYLOAD):
            if required not in members:
                raise _bad(f"no digest for {required}")
        runtime = _runtime(data["runtime"], frozenset(paths))
        builder = data["builder"]
        if not isinstance(builder, dict) or any(not isinstance(v, str)
                                                for v in builder.values()):
            raise _bad("builder must be an object of strings", "builder")
        description, channel = data["description"], data["channel"]
        if not isinstance(description, str) or not isinstance(data["build_time"], str):
            raise _bad("description and build_time must be strings")
        if channel is not None and (not isinstance(channel, str) or not _NAME.fullmatch(channel)):
            raise _bad(f"invalid channel {channel!r}")
        return cls(name=name, version=version, build_time=data["build_time"],
                   builder=dict(builder), runtime=runtime,
                   files=files, members=members, description=description, channel=channel)


def _runtime(rt: Any, files: frozenset[str]) -> Runtime:
    """The runtime section, checked as exactly as build writes it: every field present and
    of its type, every path it names a safe payload path listed in ``files``, profiles
    named (never a host path), the optional license policy as ``LicensePolicy.from_dict``
    reads it. Install, smoke and serve run what this section names."""
    try:
        _keys(rt, "runtime", set(RUNTIME_FIELDS), set(RUNTIME_OPTIONAL))
        model = _path_field(rt["model"], "runtime.model", files)
        entrypoint = rt["entrypoint"]
        if entrypoint is not None:
            _path_field(entrypoint, "runtime.entrypoint", files)
        profiles = rt["profiles"]
        if not isinstance(profiles, list):
            raise SectionProblem("runtime.profiles", f"must be a list of profile names, not "
                                 f"{_kind(profiles)}")
        if len(profiles) > MAX_PROFILES:
            raise SectionProblem("runtime.profiles", f"{len(profiles)} profiles (at most "
                                 f"{MAX_PROFILES})")
        for i, name in enumerate(profiles):
            problem = profile_problem(name)
            if problem:
                raise SectionProblem(f"runtime.profiles[{i}]", problem)
        config, golden = rt["config"], rt["golden"]
        if config is not None:
            check_config_section(config, files, "runtime.config")
        if golden is not None:
            check_golden_section(golden, files, "runtime.golden")
        if not isinstance(rt["migrations"], list) or rt["migrations"]:
            raise SectionProblem("runtime.migrations", "is reserved and must be [] in format "
                                 "v1 (config migrations live in runtime.config)")
        policy = rt.get("license")
        if "license" in rt:  # absent without the spec's section, never null
            check_license_section(policy, "runtime.license")
    except SectionProblem as exc:
        raise _bad(f"{exc.where}: {exc.problem}", exc.where) from None
    return Runtime(model=model, entrypoint=entrypoint, profiles=tuple(profiles),
                   config=config, golden=golden, migrations=(), license=policy)


def check_license_section(section: Any, where: str = "license") -> dict[str, Any]:
    """Check a license policy (the spec's ``license:``, the manifest's ``runtime.license``)
    with ``LicensePolicy.from_dict``; return it as the manifest records it.

    Raises:
        SectionProblem: the field and why (callers raise their own code).
    """
    from oemkit.errors import InputError
    from oemkit.models.serving import LicensePolicy

    if not isinstance(section, dict):
        raise SectionProblem(where, f"must be an object, not {_kind(section)}")
    try:
        policy = LicensePolicy.from_dict(section)
    except InputError as exc:
        raise SectionProblem(where, exc.message.removeprefix("license policy: ")) from None
    return policy.to_dict()
