"""``oemkit delta``: a NEW bundle as what changed since an OLD one, for thin links.

Both bundles are read through the verifier's bounded readers (``scan_bundle``, the
canonical manifest, the payload streamed against it into a temporary folder). Each NEW
payload file becomes a recipe (``models.delta``): a file whose digest OLD has is one
``copy``; a changed file is compared with its base (the OLD file of the same path, a
``--pair``, or the OLD wheel of the same project) region by region (an ONNX model by
initializer tensor, matched by name; anything else by offset) in 1 MiB blocks: equal
blocks are copies, the rest zstd frames with the OLD counterpart as a raw-content
dictionary (zstd's patch-from) when a probe shows the dictionary helps, else without.
NEW's metadata members are frames against their OLD namesakes and NEW's manifest (a
signature against NEW's provenance in base64). Frames hold at most ``WINDOW`` bytes with
dictionaries of at most ``WINDOW`` + 2 ``SLACK``, so memory stays bounded whatever the
file size. Specified in docs/DELTA.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from oemkit._canonical import b64encode, canonical_json, sha256_hex
from oemkit._fs import (
    OuterMember,
    atomic_output,
    copy_into,
    hash_file,
    open_input,
    read_member,
)
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.errors import EnvironmentProblem, InputError, VerificationError
from oemkit.models.delta import (
    MAGIC,
    MAX_DICT,
    PAYLOAD_TYPE,
    PREFIX,
    SIG_LENGTH,
    BundleRef,
    DeltaHeader,
    Piece,
    Recipe,
    Source,
    old_member,
)
from oemkit.models.manifest import (
    LINK_DIR,
    MANIFEST,
    PAYLOAD,
    PROVENANCE,
    SIGNATURE_DIR,
    FileEntry,
    Manifest,
)
from oemkit.verify.bundle import Limits, parse_manifest, scan_bundle
from oemkit.verify.payload import stream_payload

#: Files up to this size are patched against their whole base in one go.
SMALL = 16 << 20
#: Largest frame output (a large file is windows of this), and the slack either side of
#: the OLD counterpart a frame's dictionary adds (moved bytes within it are still found).
WINDOW = 16 << 20
SLACK = 1 << 20
#: Block size of the equal-or-not comparison of a region with its OLD counterpart.
COMPARE = 1 << 20
#: zstd levels: frames of at most 1 MiB at 19; larger ones at 15, the lowest level whose
#: binary-tree match finder reaches into a large raw-content dictionary (levels up to 12
#: find almost nothing there: benchmarks/RESULTS.md, issue 18).
LEVEL_SMALL = 19
LEVEL = 15
PROBE = 1 << 20
#: A dictionary is used for a large run only when the probe's frame with it is at most
#: this fraction of the frame without.
DICT_GAIN = 0.95
_WHEEL = re.compile(r"(?P<dist>[^-/]+)-[^-/]+(-[^-/]+)?-[^-/]+-[^-/]+-[^-/]+\.whl")
ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class DeltaResult:
    """What ``make_delta`` produced (``path`` None for ``--explain``)."""

    path: Path | None
    size: int
    new_bundle_size: int
    header: DeltaHeader
    signers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """``oemkit delta --json``: per file and member its op and cost, and the totals."""
        files = [{"path": r.name, "op": r.op, "size": r.size, "cost": r.cost}
                 for r in self.header.files]
        members = [{"name": r.name, "op": "rebuilt" if r.name == PAYLOAD else r.op,
                    "size": r.size, "cost": r.cost} for r in self.header.members]
        totals: dict[str, int] = {op: sum(1 for f in files if f["op"] == op)
                                  for op in ("reused", "patched", "whole")}
        totals["payload_cost"] = sum(r.cost for r in self.header.files)
        totals["metadata_cost"] = sum(r.cost for r in self.header.members)
        return {"ok": True, "delta": str(self.path) if self.path else None, "size": self.size,
                "new_bundle_size": self.new_bundle_size,
                "old": self.header.old.to_dict(), "new": self.header.new.to_dict(),
                "signers": list(self.signers), "files": files, "members": members,
                "totals": totals}


# --------------------------------------------------------------------------- reading bundles


@dataclass
class OpenBundle:
    """A bundle read through the verifier's bounded readers (not its signatures: a delta's
    result is verified whole by ``oemkit patch``): members, manifest and its bytes."""

    path: Path
    handle: BinaryIO
    members: list[OuterMember]
    manifest_bytes: bytes
    manifest: Manifest
    size: int
    limits: Limits = field(default_factory=Limits)

    @property
    def by_name(self) -> dict[str, OuterMember]:
        return {m.name: m for m in self.members}

    def member(self, name: str) -> bytes:
        return read_member(self.handle, self.by_name[name])

    def ref(self, *, whole: bool = False) -> BundleRef:
        if not whole:
            return BundleRef(self.manifest.name, self.manifest.version,
                             sha256_hex(self.manifest_bytes))
        digest, _ = hash_file(self.path)
        return BundleRef(self.manifest.name, self.manifest.version,
                         sha256_hex(self.manifest_bytes), self.size, digest)

    def extract(self, dest: Path) -> None:
        """Stream the payload against the manifest into ``dest`` (files written with
        ``O_EXCL | O_NOFOLLOW``, paths checked by the payload reader first)."""
        stream_payload(self.handle, self.by_name[PAYLOAD], self.manifest, self.limits, None,
                       _sink(dest))


@contextlib.contextmanager
def open_bundle(path: Path, what: str, limits: Limits | None = None) -> Iterator[OpenBundle]:
    """Open ``path`` as a bundle: outer scan, member order and canonical manifest."""
    limits = limits or Limits()
    with open_input(path, what) as handle:
        try:
            members = scan_bundle(handle, limits)
            manifest_bytes = read_member(handle, {m.name: m for m in members}[MANIFEST])
            manifest = parse_manifest(manifest_bytes)
        except VerificationError as exc:
            exc.message = f"{what} {path}: {exc.message}"
            raise
        size = os.fstat(handle.fileno()).st_size
        yield OpenBundle(path, handle, members, manifest_bytes, manifest, size, limits)


def _sink(dest: Path) -> Callable[[FileEntry], BinaryIO]:
    def sink(entry: FileEntry) -> BinaryIO:
        target = dest.joinpath(*entry.path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "wb")
    return sink


# --------------------------------------------------------------------------- zstd frames


def window_log(total: int) -> int:
    """The zstd window that spans a dictionary and a frame of ``total`` bytes together."""
    return min(27, max(20, math.ceil(math.log2(max(total, 1)))))


def compress(data: bytes, dictionary: bytes, level: int) -> bytes:
    """One zstd frame of ``data`` (content size and checksum written), with ``dictionary``
    as raw content when it is not empty (patch-from: long-distance matching on, the
    window covering both)."""
    import zstandard

    if not dictionary:
        return zstandard.ZstdCompressor(level=level, write_checksum=True,
                                        write_content_size=True).compress(data)
    cdict = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=len(data), dict_size=len(dictionary),
        window_log=window_log(len(data) + len(dictionary)), enable_ldm=True,
        write_checksum=1, write_content_size=1)
    cdict.precompute_compress(compression_params=params)
    return zstandard.ZstdCompressor(dict_data=cdict, compression_params=params).compress(data)


def _best(data: bytes, dictionary: bytes) -> tuple[bytes, bool]:
    """The smaller frame of ``data`` with and without ``dictionary``; (frame, used it).
    Small data tries both at level 19; large data is probed on its first MiB first."""
    if len(data) <= PROBE:
        plain = compress(data, b"", LEVEL_SMALL)
        if not dictionary:
            return plain, False
        patched = compress(data, dictionary, LEVEL_SMALL)
        return (patched, True) if len(patched) < len(plain) else (plain, False)
    if dictionary:
        probe = data[:PROBE]
        if len(compress(probe, dictionary, LEVEL)) <= DICT_GAIN * len(compress(probe, b"",
                                                                                 LEVEL)):
            return compress(data, dictionary, LEVEL), True
    return compress(data, b"", LEVEL), False


# --------------------------------------------------------------------------- planning


@dataclass
class _Data:
    """The delta's data member as it is written: frames appended to a temporary file."""

    handle: BinaryIO
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def add(self, frame: bytes) -> tuple[int, int]:
        at = self.size
        self.handle.write(frame)
        self.digest.update(frame)
        self.size += len(frame)
        return at, len(frame)


def _read_range(path: Path, at: int, length: int) -> bytes:
    with open(path, "rb", buffering=0) as handle:
        return os.pread(handle.fileno(), length, at) if length else b""


@dataclass(frozen=True)
class _Region:
    """A stretch of a NEW file and its OLD counterpart (None: none)."""

    start: int
    end: int
    old: tuple[int, int] | None


class _Planner:
    """Turns NEW files and members into recipes, writing frames to ``data``."""

    def __init__(self, data: _Data, old_dir: Path, new_dir: Path, old: OpenBundle,
                 pairs: dict[str, str], progress: ProgressFn | None) -> None:
        self.data = data
        self.old_dir, self.new_dir = old_dir, new_dir
        self.old = old
        self.pairs = pairs
        self.progress = progress
        self.old_files = {f.path: f for f in old.manifest.files}
        self.by_digest = {f.sha256: f for f in reversed(old.manifest.files)}

    # -- pieces

    def _frame(self, data: bytes, dictionary: tuple[Source, ...], dict_bytes: bytes) -> Piece:
        frame, used = _best(data, dict_bytes)
        at, clen = self.data.add(frame)
        return Piece("zstd", len(data), data=at, clen=clen,
                     dictionary=dictionary if used else ())

    def _frames(self, data: bytes, dictionary: tuple[Source, ...],
                dict_bytes: bytes) -> list[Piece]:
        return [self._frame(data[i:i + WINDOW], dictionary, dict_bytes)
                for i in range(0, len(data), WINDOW)]

    # -- files

    def base(self, entry: FileEntry) -> FileEntry | None:
        """The OLD file a changed NEW file is patched against."""
        declared = self.pairs.get(entry.path)
        if declared is not None:
            return self.old_files.get(declared)
        if entry.path in self.old_files:
            return self.old_files[entry.path]
        wheel = _WHEEL.fullmatch(entry.path.rsplit("/", 1)[-1])
        if wheel:
            folder = entry.path.rpartition("/")[0]
            dist = _normal(wheel["dist"])
            for path, old in self.old_files.items():
                match = _WHEEL.fullmatch(path.rsplit("/", 1)[-1])
                if match and path.rpartition("/")[0] == folder and _normal(
                        match["dist"]) == dist:
                    return old
        return None

    def file(self, entry: FileEntry) -> Recipe:
        same = self.by_digest.get(entry.sha256)
        if same is not None and same.size == entry.size:
            pieces: list[Piece] = [Piece("copy", entry.size,
                                         source=Source("file", same.path, 0, entry.size))]
        else:
            base = self.base(entry)
            new_path = self.new_dir.joinpath(*entry.path.split("/"))
            if base is None:
                pieces = self._whole(new_path, entry.size)
            elif entry.size <= SMALL and base.size <= MAX_DICT:
                data = _read_range(new_path, 0, entry.size)
                src = (Source("file", base.path, 0, base.size),) if base.size else ()
                old_bytes = _read_range(self._old_path(base), 0, base.size)
                pieces = self._frames(data, src, old_bytes)
            else:
                pieces = self._large(new_path, entry, base)
        if self.progress:
            self.progress(entry.size)
        return Recipe(entry.path, entry.size, None, tuple(_merge(pieces)))

    def _old_path(self, entry: FileEntry) -> Path:
        return self.old_dir.joinpath(*entry.path.split("/"))

    def _whole(self, path: Path, size: int) -> list[Piece]:
        pieces: list[Piece] = []
        for at in range(0, size, WINDOW):
            pieces.append(self._frame(_read_range(path, at, min(WINDOW, size - at)), (), b""))
        return pieces

    def _large(self, new_path: Path, entry: FileEntry, base: FileEntry) -> list[Piece]:
        old_path = self._old_path(base)
        pieces: list[Piece] = []
        for region in _regions(new_path, entry.size, old_path, base.size):
            pieces += self._region(new_path, old_path, base.path, region)
        return pieces

    def _region(self, new_path: Path, old_path: Path, old_name: str,
                region: _Region) -> list[Piece]:
        length = region.end - region.start
        if region.old is None:
            out: list[Piece] = []
            for at in range(region.start, region.end, WINDOW):
                out.append(self._frame(_read_range(new_path, at, min(WINDOW, region.end - at)),
                                       (), b""))
            return out
        o_start, o_end = region.old
        o_len = o_end - o_start
        pieces: list[Piece] = []
        for at in range(0, length, WINDOW):
            n = min(WINDOW, length - at)
            new = _read_range(new_path, region.start + at, n)
            # The OLD counterpart of this window: the same offset when the lengths agree,
            # else the proportional one.
            o_at = at if o_len == length else at * o_len // max(length, 1)
            old = _read_range(old_path, o_start + o_at, min(n, max(o_len - o_at, 0)))
            pieces += self._window(new, old, old_path, old_name, o_start, o_len, o_at)
        return pieces

    def _window(self, new: bytes, old: bytes, old_path: Path, old_name: str, o_start: int,
                o_len: int, o_at: int) -> list[Piece]:
        """Equal 1 MiB blocks as copies; each run of unequal ones as frames against the
        OLD bytes around it."""
        pieces: list[Piece] = []
        run_start: int | None = None

        def flush(end: int) -> None:
            assert run_start is not None
            lo = max(0, o_at + run_start - SLACK)
            hi = min(o_len, o_at + end + SLACK)
            src = (Source("file", old_name, o_start + lo, hi - lo),) if hi > lo else ()
            dict_bytes = _read_range(old_path, o_start + lo, hi - lo) if src else b""
            pieces.extend(self._frames(new[run_start:end], src, dict_bytes))

        for at in range(0, len(new), COMPARE):
            end = min(at + COMPARE, len(new))
            if new[at:end] == old[at:end]:
                if run_start is not None:
                    flush(at)
                    run_start = None
                pieces.append(Piece("copy", end - at, source=Source(
                    "file", old_name, o_start + o_at + at, end - at)))
            elif run_start is None:
                run_start = at
        if run_start is not None:
            flush(len(new))
        return pieces

    # -- members

    def member(self, name: str, data: bytes, new: dict[str, bytes]) -> Recipe:
        """A NEW metadata member as one frame against what the patcher will have."""
        ranges: list[tuple[Source, bytes]] = []
        old_members = self.old.by_name
        if old_member(name) and name in old_members:
            old = self.old.member(name)
            ranges.append((Source("old", name, 0, len(old)), old))
        if name != MANIFEST and MANIFEST in new:
            ranges.append((Source("new", MANIFEST, 0, len(new[MANIFEST])), new[MANIFEST]))
        elif name == MANIFEST:
            old = self.old.manifest_bytes
            if not ranges:
                ranges.append((Source("old", MANIFEST, 0, len(old)), old))
        if name.startswith((SIGNATURE_DIR, LINK_DIR)) and PROVENANCE in new:
            b64 = b64encode(new[PROVENANCE]).encode() if name.startswith(
                SIGNATURE_DIR) else new[PROVENANCE]
            kind = "new64" if name.startswith(SIGNATURE_DIR) else "new"
            ranges.append((Source(kind, PROVENANCE, 0, len(b64)), b64))
        kept: list[tuple[Source, bytes]] = []
        room = MAX_DICT
        for src, raw in ranges:
            take = min(len(raw), room)
            if take:
                kept.append((Source(src.kind, src.name, 0, take), raw[:take]))
                room -= take
        dictionary = tuple(s for s, _ in kept)
        dict_bytes = b"".join(raw for _, raw in kept)
        pieces = self._frames(data, dictionary, dict_bytes)
        return Recipe(name, len(data), sha256_hex(data), tuple(pieces))


def _normal(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _merge(pieces: list[Piece]) -> list[Piece]:
    """Adjacent copies of contiguous ranges of one source as one copy."""
    out: list[Piece] = []
    for piece in pieces:
        last = out[-1] if out else None
        if (last is not None and piece.op == "copy" and last.op == "copy"
                and last.source is not None and piece.source is not None
                and last.source.ref == piece.source.ref
                and last.source.at + last.length == piece.source.at):
            merged = last.length + piece.length
            out[-1] = Piece("copy", merged, source=Source(
                last.source.kind, last.source.name, last.source.at, merged))
        else:
            out.append(piece)
    return out


def _regions(new_path: Path, new_size: int, old_path: Path, old_size: int) -> list[_Region]:
    """NEW stretches and their OLD counterparts: per initializer tensor (by name) and the
    bytes between tensors for two ONNX models; the whole file otherwise."""
    whole = [_Region(0, new_size, (0, old_size))]
    if new_path.suffix != ".onnx":
        return whole
    from oemkit.release.modelcard import tensor_regions

    try:
        new_t, old_t = tensor_regions(new_path), tensor_regions(old_path)
    except InputError:
        return whole
    if not new_t or not old_t:
        return whole
    old_by = {name: (start, end) for name, start, end in old_t}
    old_gap: dict[str, tuple[int, int]] = {}
    previous = 0
    for name, start, end in old_t:
        old_gap.setdefault(name, (previous, start))
        previous = end
    regions: list[_Region] = []
    previous = 0
    for name, start, end in new_t:
        if start > previous:
            regions.append(_Region(previous, start, old_gap.get(name)))
        regions.append(_Region(start, end, old_by.get(name)))
        previous = end
    if new_size > previous:
        regions.append(_Region(previous, new_size, (old_t[-1][2], old_size)))
    return regions


# --------------------------------------------------------------------------- the command


def make_delta(old_path: Path | str, new_path: Path | str, out: Path | str | None, *,
               keys: list[PrivateKeyInfo] | None = None, pairs: dict[str, str] | None = None,
               limits: Limits | None = None, force: bool = False,
               progress: ProgressFn | None = None) -> DeltaResult:
    """Write the delta that turns ``old_path`` into ``new_path`` (``out`` None: plan it
    only, for ``--explain``), signed by ``keys``.

    Raises:
        InputError: ``E_NOT_FOUND``, ``E_DELTA_PAIR`` (a ``--pair`` naming a file neither
            bundle has), ``E_OUTPUT_EXISTS`` (``out`` exists and not ``force``),
            ``E_DELTA_SAME`` (OLD and NEW are the same release).
        VerificationError: either bundle fails the bounded reading (its code, the file
            named).
        EnvironmentProblem: ``E_WRITE``.
    """
    old_path, new_path = Path(old_path), Path(new_path)
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.exists() and not force:
        raise InputError("E_OUTPUT_EXISTS", f"{out_path} already exists",
                         hint="choose another --out, or pass --force to replace it")
    pairs = dict(pairs or {})
    work_parent = out_path.parent if out_path is not None else None
    with open_bundle(old_path, "OLD", limits) as old, open_bundle(new_path, "NEW",
                                                                  limits) as new:
        if sha256_hex(old.manifest_bytes) == sha256_hex(new.manifest_bytes):
            raise InputError(
                "E_DELTA_SAME", f"{old_path} and {new_path} are the same release "
                f"({new.manifest.name} {new.manifest.version})",
                hint="a delta needs two different releases; ship the bundle itself")
        new_paths = {f.path for f in new.manifest.files}
        for new_name, old_name in pairs.items():
            if new_name not in new_paths or old_name not in {f.path for f in
                                                             old.manifest.files}:
                raise InputError(
                    "E_DELTA_PAIR", f"--pair {new_name}={old_name}: "
                    f"{new_name if new_name not in new_paths else old_name} is not a payload "
                    f"file of {'NEW' if new_name not in new_paths else 'OLD'}",
                    hint="name a NEW payload path, '=', and an OLD payload path "
                         "(oemkit inspect lists them)")
        try:
            if work_parent is not None:
                work_parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".oemkit-delta-",
                                             dir=work_parent) as tmp, \
                    tempfile.TemporaryFile(dir=tmp) as data_file:
                work = Path(tmp)
                old.extract(work / "old")
                new.extract(work / "new")
                (work / "old").mkdir(exist_ok=True)
                (work / "new").mkdir(exist_ok=True)
                data = _Data(data_file)
                planner = _Planner(data, work / "old", work / "new", old, pairs, progress)
                files = tuple(planner.file(entry) for entry in new.manifest.files)
                rebuilt: dict[str, bytes] = {}
                members: list[Recipe] = []
                for m in new.members:
                    if m.name == PAYLOAD:
                        payload = new.manifest.members[PAYLOAD]
                        members.append(Recipe(PAYLOAD, payload.size, payload.sha256, ()))
                        continue
                    raw = new.member(m.name)
                    rebuilt[m.name] = raw
                    members.append(planner.member(m.name, raw, rebuilt))
                header = DeltaHeader(old.ref(), new.ref(whole=True), compressor_info(),
                                     data.size, data.digest.hexdigest(), tuple(members), files)
                header_bytes = canonical_json(header.to_dict())
                preamble = canonical_json(header.preamble())
                sigs = sorted((k.keyid, _sign(k, header_bytes)) for k in keys or ())
                # The header's paths, sizes and digests are mostly OLD's manifest's: it is
                # the header frame's dictionary (the patcher has it before the header).
                packed_header = compress(header_bytes, old.manifest_bytes,
                                         LEVEL_SMALL if len(header_bytes) <= PROBE else LEVEL)
                front = container_front(preamble, packed_header, [s for _, s in sigs],
                                        data.size)
                size = len(front) + data.size
                if out_path is not None:
                    with atomic_output(out_path) as handle:
                        handle.write(front)
                        data_file.flush()
                        if copy_into(handle, data_file.fileno(), 0, data.size) != data.size:
                            raise OSError("the delta's data was lost while it was copied")
        except OSError as exc:
            raise EnvironmentProblem(
                "E_WRITE", f"cannot write the delta: {exc.strerror or exc}",
                hint="check free space and permissions of --out's folder (the delta needs "
                     "room for both payloads while it is made); nothing was left behind"
            ) from exc
    return DeltaResult(out_path, size, new.size, header, tuple(k for k, _ in sigs))


def compressor_info() -> dict[str, Any]:
    """The zstd the payload packer uses here: the delta records it, the patcher compares."""
    import zstandard

    from oemkit.release.bundle import ZSTD_LEVEL

    return {"zstandard": zstandard.__version__,
            "libzstd": ".".join(map(str, zstandard.ZSTD_VERSION)), "level": ZSTD_LEVEL}


def container_front(preamble: bytes, packed_header: bytes, signatures: list[bytes],
                    data_size: int) -> bytes:
    """Everything of a ``.oemd`` file in front of its data (docs/DELTA.md): the prefix,
    the signature lengths, the preamble, the header frame and the signatures."""
    return b"".join((PREFIX.pack(MAGIC, len(preamble), len(packed_header), data_size,
                                 len(signatures)),
                     *(SIG_LENGTH.pack(len(sig)) for sig in signatures),
                     preamble, packed_header, *signatures))


def _sign(key: PrivateKeyInfo, header: bytes) -> bytes:
    """A detached DSSE signature over the header: ``{"keyid", "sig"}``."""
    from oemkit.crypto.dsse import sign

    return canonical_json({"keyid": key.keyid,
                           "sig": b64encode(sign(key, PAYLOAD_TYPE, header))})


