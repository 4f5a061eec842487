"""Carrying a bundle on removable media: split it into numbered parts, join them back.

``split_bundle`` cuts a bundle into parts of at most ``part_size`` bytes. Each part is a
128-byte header that says which bundle and which slice it holds, then that slice of the
bundle's bytes. An index (``NAME-VERSION.oemb.index.json``) lists every part's file name,
size and SHA-256; it is a DSSE envelope, signed with ``--key`` (a bundle-signing key) or
left unsigned and bound to the bundle's own signed manifest digest. docs/MEDIA.md has the
formats and the reasons.

``join_parts`` checks every given part against the index before a byte is reassembled
(missing, truncated, damaged, foreign, mislabelled and duplicated parts are named, all of
them at once), copies the good ones into a work area next to the output (hashing what it
writes; a part counts only when its SHA-256 matches), and remembers them: joining is
resumable, one medium at a time if need be. When every part is in, the bundle is
verified against the trust root and only then renamed to the output. Parts are only
ever read. A write failure (disk full) removes the work area and leaves no output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit._fs import (
    RangeReader,
    atomic_output,
    atomic_write_bytes,
    hash_fd,
    open_input,
    read_input,
    start_writeback,
)
from oemkit.errors import EnvironmentProblem, InputError, UsageError, VerificationError
from oemkit.models.report import VerifyReport

if TYPE_CHECKING:
    from oemkit.verify.bundle import Limits

ProgressFn = Callable[[int], None]

INDEX_PAYLOAD_TYPE = "application/vnd.oemkit.media-index+json"
INDEX_TYPE = "oemkit-media-index"
INDEX_SUFFIX = ".index.json"
PART_MAGIC = b"OEMKPART"
PART_VERSION = 1
HEADER_SIZE = 128
#: Smallest accepted part size (header included).
MIN_PART_SIZE = 4096
_HEADER = struct.Struct(">8sHHIIIQQQQ32s8x")  # 96 bytes, then SHA-256 of them
_PART_NAME = re.compile(r"\.part(\d+)$")
_MAX_INDEX = 16 << 20


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class PartHeader:
    """The 128-byte header at the start of every part file."""

    number: int
    count: int
    offset: int
    length: int
    bundle_size: int
    part_size: int
    bundle_sha256: str

    def to_bytes(self) -> bytes:
        body = _HEADER.pack(PART_MAGIC, PART_VERSION, HEADER_SIZE, self.number, self.count, 0,
                            self.offset, self.length, self.bundle_size, self.part_size,
                            bytes.fromhex(self.bundle_sha256))
        import hashlib

        return body + hashlib.sha256(body).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> PartHeader | None:
        """The header, or None when ``data`` is not an intact part header."""
        import hashlib

        if len(data) < HEADER_SIZE:
            return None
        body, check = data[:_HEADER.size], data[_HEADER.size:HEADER_SIZE]
        if hashlib.sha256(body).digest() != check:
            return None
        (magic, version, size, number, count, _, offset, length, bundle_size, part_size,
         digest) = _HEADER.unpack(body)
        if magic != PART_MAGIC or version != PART_VERSION or size != HEADER_SIZE:
            return None
        return cls(number, count, offset, length, bundle_size, part_size, digest.hex())


@dataclass(frozen=True)
class PartEntry:
    """One part as the index lists it."""

    number: int
    file: str
    offset: int
    length: int
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "file": self.file, "offset": self.offset,
                "length": self.length, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class MediaIndex:
    """The index of a split bundle (the DSSE payload, parsed)."""

    bundle_file: str
    bundle_size: int
    bundle_sha256: str
    manifest_sha256: str
    name: str
    version: str
    part_size: int
    parts: tuple[PartEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": INDEX_TYPE,
            "version": 1,
            "bundle": {"file": self.bundle_file, "size": self.bundle_size,
                       "sha256": self.bundle_sha256, "manifest_sha256": self.manifest_sha256,
                       "name": self.name, "version": self.version},
            "part_size": self.part_size,
            "header_size": HEADER_SIZE,
            "parts": [p.to_dict() for p in self.parts],
        }

    def header(self, part: PartEntry) -> PartHeader:
        return PartHeader(part.number, len(self.parts), part.offset, part.length,
                          self.bundle_size, self.part_size, self.bundle_sha256)

    @classmethod
    def from_dict(cls, obj: Any) -> MediaIndex:
        try:
            if obj["type"] != INDEX_TYPE or obj["version"] != 1:
                raise _bad_index("not an oemkit media index (type/version)")
            if obj["header_size"] != HEADER_SIZE:
                raise _bad_index(f"unsupported part header size {obj['header_size']}")
            b = obj["bundle"]
            parts = tuple(PartEntry(int(p["number"]), _file_name(p["file"]), int(p["offset"]),
                                    int(p["length"]), int(p["size"]), _hex(p["sha256"]))
                          for p in obj["parts"])
            index = cls(_file_name(b["file"]), int(b["size"]), _hex(b["sha256"]),
                        _hex(b["manifest_sha256"]), str(b["name"]), str(b["version"]),
                        int(obj["part_size"]), parts)
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad_index(f"missing or malformed field ({exc})") from exc
        # The parts must tile the bundle exactly, in order.
        position = 0
        for i, part in enumerate(index.parts, 1):
            if (part.number != i or part.offset != position or part.length <= 0
                    or part.size != part.length + HEADER_SIZE or part.size > index.part_size):
                raise _bad_index(f"part {i} does not continue the bundle where part {i - 1} "
                                 "ends")
            position += part.length
        if not index.parts or position != index.bundle_size:
            raise _bad_index("the parts do not add up to the bundle")
        return index


def _hex(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"{value!r} is not a SHA-256")
    return value


def _file_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", value):
        raise ValueError(f"{value!r} is not a plain file name")
    return value


def _bad_index(detail: str, what: str = "the index") -> VerificationError:
    return VerificationError("E_INDEX_INVALID", f"{what} is not a valid media index: {detail}",
                             check="index", hint="copy the .index.json file written by "
                             "'oemkit split' again")


def part_name(bundle_file: str, number: int, count: int) -> str:
    return f"{bundle_file}.part{number:0{max(3, len(str(count)))}d}"


def parse_size(text: str) -> int:
    """``4G``, ``4GiB``, ``650M``, ``4700MB`` (decimal), ``123456`` bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)(B?)\s*", text, re.IGNORECASE)
    if not match:
        raise UsageError("E_USAGE", f"--size {text!r} is not a size",
                         hint="use bytes or a unit: 4G (GiB), 4000M, 4700MB (decimal)")
    number, unit = float(match.group(1)), match.group(2).upper()
    decimal = bool(match.group(4)) and not match.group(3)
    base = 1000 if decimal else 1024
    return int(number * base ** " KMGT".index(unit or " "))


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class SplitResult:
    index: Path
    parts: tuple[Path, ...]
    index_data: MediaIndex
    signed_by: tuple[str, ...]


def split_bundle(bundle: Path | str, part_size: int, out_dir: Path | str | None = None, *,
                 keys: Sequence[Any] = (), progress: ProgressFn | None = None,
                 limits: Limits | None = None) -> SplitResult:
    """Write ``bundle`` as numbered parts of at most ``part_size`` bytes and an index.

    ``keys`` (``PrivateKeyInfo``) sign the index; without keys it is written unsigned,
    bound to the bundle's manifest digest. Parts and index are written atomically; the
    same bundle and size always give the same bytes. ``progress`` gets bytes read (the
    bundle is read twice: once to hash it whole, once to cut it)."""
    from oemkit._canonical import canonical_json, sha256_hex
    from oemkit.models.manifest import MANIFEST
    from oemkit.verify.bundle import Limits, scan_bundle

    if part_size < MIN_PART_SIZE:
        raise UsageError("E_USAGE", f"--size {part_size} is too small (at least "
                         f"{MIN_PART_SIZE} bytes)", hint="use e.g. --size 4G")
    bundle = Path(bundle)
    out = Path(out_dir) if out_dir is not None else bundle.parent
    with open_input(bundle, "bundle") as handle:
        members = scan_bundle(handle, limits or Limits())
        by_name = {m.name: m for m in members}
        handle.seek(by_name[MANIFEST].offset)
        manifest_bytes = handle.read(by_name[MANIFEST].size)
        try:
            manifest = json.loads(manifest_bytes)
            name, version = str(manifest["name"]), str(manifest["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationError("E_MANIFEST_INVALID", f"{bundle}: the manifest is not "
                                    "valid", member=MANIFEST, check="manifest",
                                    hint="split a bundle written by 'oemkit build'") from exc
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        bundle_sha256, hashed = hash_fd(fd, 0, size, progress)
        if hashed != size:
            raise VerificationError("E_TRUNCATED", f"{bundle} shrank while it was read",
                                    hint="split a bundle nobody is writing")
        data_size = part_size - HEADER_SIZE
        count = -(-size // data_size)
        entries: list[PartEntry] = []
        paths: list[Path] = []
        try:
            out.mkdir(parents=True, exist_ok=True)
            for number in range(1, count + 1):
                offset = (number - 1) * data_size
                length = min(data_size, size - offset)
                header = PartHeader(number, count, offset, length, size, part_size,
                                    bundle_sha256).to_bytes()
                path = out / part_name(bundle.name, number, count)
                digest = _write_part(path, header, fd, offset, length, progress)
                entries.append(PartEntry(number, path.name, offset, length,
                                         HEADER_SIZE + length, digest))
                paths.append(path)
            index = MediaIndex(bundle.name, size, bundle_sha256, sha256_hex(manifest_bytes),
                               name, version, part_size, tuple(entries))
            payload = canonical_json(index.to_dict())
            envelope = _envelope(payload, keys)
            index_path = out / f"{bundle.name}{INDEX_SUFFIX}"
            atomic_write_bytes(index_path, envelope)
        except OSError as exc:
            raise EnvironmentProblem("E_WRITE", f"cannot write the parts in {out}: "
                                     f"{exc.strerror or exc}",
                                     hint="check free space and permissions") from exc
    return SplitResult(index_path, tuple(paths), index, tuple(k.keyid for k in keys))


def _write_part(path: Path, header: bytes, fd: int, offset: int, length: int,
                progress: ProgressFn | None) -> str:
    """Write one part (header, then the slice), hashing exactly the bytes written."""
    def short(missing: int) -> BaseException:
        return VerificationError("E_TRUNCATED", f"the bundle ended {missing} bytes early "
                                 "while it was split", hint="split a bundle nobody is writing")

    with atomic_output(path) as out, RangeReader(fd, offset, length, short=short,
                                                 hash_prefix=header) as reader:
        out.write(header)
        written = HEADER_SIZE
        for chunk in reader:
            out.write(chunk)
            if progress:
                progress(len(chunk))
            if written // (32 << 20) != (written + len(chunk)) // (32 << 20):
                out.flush()
                start_writeback(out.fileno(), 0, written + len(chunk))
            written += len(chunk)
        return reader.hexdigest()


def _envelope(payload: bytes, keys: Sequence[Any]) -> bytes:
    from oemkit._canonical import b64encode
    from oemkit.crypto.dsse import make_envelope

    signatures: list[dict[str, str]] = []
    if keys:
        env = make_envelope(list(keys), INDEX_PAYLOAD_TYPE, payload)
        signatures = [{"keyid": k.keyid, "sig": b64encode(s)}
                      for k, s in zip(keys, env.signatures, strict=True)]
    doc = {"payload": b64encode(payload), "payloadType": INDEX_PAYLOAD_TYPE,
           "signatures": signatures}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


# --------------------------------------------------------------------------- reading an index


@dataclass(frozen=True)
class LoadedIndex:
    index: MediaIndex
    data: bytes
    signers: tuple[str, ...]


def read_index(data: bytes, pinned: Any, what: str = "the index") -> LoadedIndex:
    """Parse an index envelope; check its signatures (if any) against the trust root.

    A signed index needs as many distinct, not compromised bundle-signing keys of the
    trust root as its ``bundle`` threshold. An unsigned one is accepted here: it is bound
    to the manifest digest, which the joined bundle must match and which its own
    signatures cover."""
    from oemkit._canonical import b64decode, parse_json
    from oemkit.crypto.dsse import verify_signature
    from oemkit.crypto.keys import load_public

    try:
        obj = parse_json(data, what=what, code="E_INDEX_INVALID")
        if not isinstance(obj, dict) or set(obj) != {"payload", "payloadType", "signatures"}:
            raise _bad_index("not a DSSE envelope", what)
        if obj["payloadType"] != INDEX_PAYLOAD_TYPE:
            raise _bad_index(f"payload type {obj['payloadType']!r}", what)
        payload = b64decode(obj["payload"], what=f"{what} payload")
        sigs = obj["signatures"]
        if not isinstance(sigs, list) or len(sigs) > 64:
            raise _bad_index("bad signature list", what)
        raw = [b64decode(s["sig"], what=f"{what} signature") for s in sigs]
        index = MediaIndex.from_dict(parse_json(payload, what=f"{what} payload",
                                                code="E_INDEX_INVALID"))
    except InputError as exc:
        raise _bad_index(exc.message, what) from exc
    except (KeyError, TypeError) as exc:
        raise _bad_index(f"malformed ({exc})", what) from exc
    if not raw:
        return LoadedIndex(index, data, ())
    root = pinned
    good: list[str] = []
    for key in root.keys:
        if "bundle" not in key.usage:
            continue
        public = load_public(key.public_key, key.keyid)
        if any(verify_signature(public, INDEX_PAYLOAD_TYPE, payload, s) for s in raw):
            if key.status == "compromised":
                raise VerificationError(
                    "E_KEY_COMPROMISED", f"{what} is signed by key {key.keyid[:16]}… "
                    f"({key.name}), which the trust root marks compromised", check="index",
                    hint="ask the vendor for a new split signed with a current key")
            good.append(key.keyid)
    need = root.thresholds["bundle"]
    if len(good) < need:
        raise VerificationError(
            "E_INDEX_SIGNATURE", f"{what} carries {len(raw)} signature(s) but {len(good)} "
            f"verify under a bundle key of trust root v{root.version} (needs {need})",
            check="index", expected=f">= {need}", actual=str(len(good)),
            hint="the index was altered, or signed by a key this host does not trust; "
                 "copy it again from the vendor's media")
    return LoadedIndex(index, data, tuple(good))


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
    """One or more parts cannot be joined; ``problems`` names every one of them."""

    def __init__(self, problems: list[Problem], *, progress_note: str = "") -> None:
        first = problems[0]
        lines = [f"{p.file}: {p.detail}" for p in problems]
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
    return out.parent / f".{out.name}.join"


def join_parts(parts: Sequence[Path | str], trust: Path | str | bytes, *,
               out: Path | str | None = None, index: Path | str | None = None,
               progress: ProgressFn | None = None,
               verify_progress: ProgressFn | None = None,
               limits: Limits | None = None) -> JoinResult:
    """Check ``parts`` against the index, reassemble, verify, publish ``out``.

    Raises :class:`PartsError` naming every bad or missing part (parts already checked
    are kept in the work area for the next run), ``EnvironmentProblem`` ``E_WRITE`` when
    the output cannot be written (the work area is removed; no output appears), or
    returns with ``report.ok`` False when the joined bundle does not verify (no output).
    """
    return plan_join(parts, trust, out=out, index=index, limits=limits).run(
        progress, verify_progress)


@dataclass
class JoinPlan:
    """A checked index and the parts given, ready to join (see :func:`plan_join`)."""

    loaded: LoadedIndex
    target: Path
    found: dict[int, Path]
    pinned: bytes
    limits: Limits | None = None  # the joined bundle's verification (default: verify's)

    @property
    def index(self) -> MediaIndex:
        return self.loaded.index

    def pending_bytes(self) -> int:
        """Bytes this run will copy (parts given and not yet in place), as of now."""
        work = _Work(self.target, self.index, self.loaded.data)
        done = work.peek()
        return sum(self.index.parts[n - 1].length for n in self.found if n not in done)

    def run(self, progress: ProgressFn | None = None,
            verify_progress: ProgressFn | None = None) -> JoinResult:
        idx, target, found = self.index, self.target, self.found
        work = _Work(target, idx, self.loaded.data)
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
                    "E_WRITE", f"cannot write the joined bundle next to {target}: "
                    f"{exc.strerror or exc}; nothing was kept",
                    hint=f"free at least {idx.bundle_size} bytes on {target.parent} (or "
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
            report = work.finish(self.pinned, idx, verify_progress, self.limits)
        return JoinResult(target, idx, report, copied, sorted(set(done) - set(copied)),
                          self.loaded.signers)


def plan_join(parts: Sequence[Path | str], trust: Path | str | bytes, *,
              out: Path | str | None = None, index: Path | str | None = None,
              limits: Limits | None = None) -> JoinPlan:
    """Read the trust root and the index (checking its signatures), then every given
    part's header and size against the index: :class:`PartsError` names every foreign,
    mislabelled, duplicated, truncated or damaged-header part before anything is copied.
    Missing parts are not an error yet (they may already be in the work area)."""
    from oemkit.verify.trust import check_self_signed, parse_root

    paths = [Path(p) for p in parts]
    if not paths and index is None:
        raise UsageError("E_USAGE", "no parts given", hint="oemkit join DIR/*.part* --trust "
                         "ROOT")
    pinned_bytes = trust if isinstance(trust, bytes) else read_input(Path(trust),
                                                                       "trust root")
    signed_root = parse_root(pinned_bytes, "--trust")
    try:
        check_self_signed(signed_root, "--trust")
    except VerificationError as exc:
        raise InputError(exc.code, exc.message, hint="the pinned trust root is not properly "
                         "signed; get it again from the vendor") from exc
    index_path = Path(index) if index is not None else find_index(paths)
    if index_path is None and out is not None:
        saved = work_dir_for(Path(out)) / "index.json"
        index_path = saved if saved.is_file() else None
    if index_path is None:
        raise InputError("E_INDEX_MISSING", "no index found: pass the .index.json file "
                         "'oemkit split' wrote (it lies beside the first part)",
                         hint="oemkit join NAME.oemb.index.json NAME.oemb.part* --trust ROOT")
    index_bytes = read_input(index_path, "index", _MAX_INDEX)
    loaded = read_index(index_bytes, signed_root.root, what=str(index_path))
    idx = loaded.index
    target = Path(out) if out is not None else Path.cwd() / idx.bundle_file
    given = [p for p in paths if p.resolve() != index_path.resolve()]
    return JoinPlan(loaded, target, _classify(given, idx), pinned_bytes, limits)


def _classify(paths: Sequence[Path], idx: MediaIndex) -> dict[int, Path]:
    """Read each file's header and size: part number -> file, or PartsError."""
    problems: list[Problem] = []
    found: dict[int, Path] = {}
    count = len(idx.parts)
    for path in paths:
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


class _Work:
    """The work area next to the output: ``data`` (the bundle being reassembled, parts
    written at their offsets), ``state.json`` (parts in place) and ``index.json``."""

    def __init__(self, target: Path, idx: MediaIndex, index_bytes: bytes) -> None:
        from oemkit._canonical import sha256_hex

        self.target = target
        self.dir = work_dir_for(target)
        self.data = self.dir / "data"
        self.state = self.dir / "state.json"
        self.idx = idx
        self.index_bytes = index_bytes
        self.index_sha256 = sha256_hex(index_bytes)
        self._fd: int | None = None

    @contextlib.contextmanager
    def locked(self) -> Any:
        import fcntl

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            lock = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise EnvironmentProblem("E_WRITE", f"cannot create {self.dir}: "
                                     f"{exc.strerror or exc}",
                                     hint="choose a writable --out") from exc
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise EnvironmentProblem("E_BUSY", f"another join is writing {self.target}",
                                         hint="wait for it to finish") from exc
            yield
        finally:
            os.close(lock)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def peek(self) -> dict[int, str]:
        """Parts already in place from an earlier run of this very index (read only)."""
        done: dict[int, str] = {}
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            state = json.loads(self.state.read_bytes())
            if (state["index_sha256"] == self.index_sha256
                    and self.data.stat().st_size == self.idx.bundle_size):
                for number, digest in state["done"].items():
                    entry = self.idx.parts[int(number) - 1]
                    if digest == entry.sha256:
                        done[entry.number] = digest
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
            self._fd = os.open(self.data, os.O_RDWR | os.O_CREAT, 0o644)
            if os.fstat(self._fd).st_size != self.idx.bundle_size:
                os.ftruncate(self._fd, self.idx.bundle_size)
        return self._fd

    def ensure_space(self, needed: int) -> None:
        """Fail before copying when the file system clearly cannot hold the parts."""
        if not needed:
            return
        stat = os.statvfs(self.dir)
        free = stat.f_bavail * stat.f_frsize
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

    def finish(self, pinned: bytes, idx: MediaIndex, verify_progress: ProgressFn | None,
               limits: Limits | None = None) -> VerifyReport:
        """Verify the reassembled bundle; publish it only if it verifies."""
        from oemkit.verify.bundle import verify_bundle

        report = verify_bundle(self.data, pinned, progress=verify_progress, limits=limits)
        if report.ok and report.manifest_sha256 != idx.manifest_sha256:
            report.failed(VerificationError(
                "E_INDEX_MISMATCH", f"the joined bundle's manifest ({report.manifest_sha256}) "
                f"is not the one the index names ({idx.manifest_sha256})", check="index",
                hint="the index and the parts do not belong together"))
        if not report.ok:
            self.remove()
            return report
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            os.chmod(self.data, 0o644)
            self.target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.data, self.target)
            with contextlib.suppress(OSError):
                dir_fd = os.open(self.target.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            self.remove()
            raise EnvironmentProblem("E_WRITE", f"cannot write {self.target}: "
                                     f"{exc.strerror or exc}",
                                     hint="check permissions and run join again") from exc
        self.remove()
        report.passed("join", f"{len(idx.parts)} parts joined into {self.target}")
        return report

    def remove(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        shutil.rmtree(self.dir, ignore_errors=True)

