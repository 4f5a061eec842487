"""``oemkit patch`` and ``oemkit upgrade --delta``: rebuild a NEW bundle from a delta.

The delta is read through the outer archive's bounded reader, its header parsed strictly
(``models.delta``) and, when signed, checked against the trust root's bundle keys. The
OLD side is a bundle file (its payload streamed against its manifest into a temporary
folder) or an installed slot (its ``bundle/`` files, ``manifest.json`` and the members
it keeps). NEW's metadata members are rebuilt in memory, then each payload file is
streamed piece by piece into the same packer ``oemkit build`` uses (same chunking, same
zstd settings), each file checked against NEW's manifest as soon as it is packed; the
outer archive is written to a temporary file beside ``--out``, its SHA-256 compared with
the one the delta records, verified in full against the trust root, and only then
published. Any failure leaves nothing behind. docs/DELTA.md specifies it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from oemkit._canonical import b64decode, b64encode, parse_json, sha256_hex
from oemkit._fs import (
    CHUNK,
    HashingWriter,
    hash_fd,
    open_input,
    ustar_header,
)
from oemkit._tar import END_OF_ARCHIVE, padding
from oemkit.errors import (
    EnvironmentProblem,
    InputError,
    OemkitError,
    VerificationError,
    restate,
)
from oemkit.models.delta import (
    DATA,
    HEADER,
    MAGIC,
    MAX_DICT,
    MAX_PACKED_HEADER,
    MAX_PIECE,
    MAX_PREAMBLE,
    MAX_SIGNATURE,
    MAX_SIGNATURES,
    PAYLOAD_TYPE,
    PREFIX,
    SIG_LENGTH,
    DeltaHeader,
    Piece,
    Preamble,
    Recipe,
    Source,
)
from oemkit.models.manifest import MANIFEST, PAYLOAD, FileEntry, Manifest
from oemkit.models.report import VerifyReport
from oemkit.release.spec import SourceFile
from oemkit.verify.bundle import Limits, parse_manifest

#: Largest header a delta may carry (one recipe per payload file: about 300 bytes each).
MAX_HEADER = 256 << 20
ProgressFn = Callable[[int], None]


def _fail(code: str, message: str, *, member: str | None = None, hint: str = "",
          expected: str | None = None, actual: str | None = None) -> VerificationError:
    return VerificationError(code, message, member=member, check="delta", expected=expected,
                             actual=actual, hint=hint or "the delta is damaged or was "
                             "tampered with; obtain a fresh copy of it (nothing was written)")


@dataclass(frozen=True)
class PatchResult:
    """What ``patch_bundle`` produced: the verified NEW bundle and how."""

    path: Path
    name: str
    version: str
    size: int
    payload_bytes: int
    files: int
    signers: tuple[str, ...]
    report: VerifyReport

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "bundle": str(self.path), "name": self.name,
                "version": self.version, "size": self.size, "files": self.files,
                "payload_bytes": self.payload_bytes, "delta_signers": list(self.signers),
                "verify": self.report.to_dict()}


# --------------------------------------------------------------------------- the delta file


@dataclass
class OpenDelta:
    """A delta file opened and bounded: its preamble, header frame, signatures and where
    its data lies. ``decode`` turns the header frame into the header, with OLD's manifest
    (the frame's dictionary) once the OLD side is known to be the one it names."""

    path: Path
    handle: BinaryIO
    preamble: Preamble
    packed_header: bytes
    signatures: list[tuple[str, bytes]]
    data_offset: int
    data_size: int
    header_bytes: bytes = b""
    header: DeltaHeader | None = None

    def frame(self, piece: Piece) -> bytes:
        return os.pread(self.handle.fileno(), piece.clen, self.data_offset + piece.data)

    def decode(self, old_manifest: bytes) -> DeltaHeader:
        """The header, its frame decompressed with OLD's manifest as the dictionary.

        Raises:
            VerificationError: ``E_DELTA_INVALID`` (not one bounded frame, not the header,
                not the preamble's releases, another data size).
        """
        import zstandard

        try:
            size = zstandard.frame_content_size(self.packed_header)
            if not 0 <= size <= MAX_HEADER:
                raise zstandard.ZstdError(f"content size {size}")
            cdict = zstandard.ZstdCompressionDict(old_manifest,
                                                  dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            self.header_bytes = zstandard.ZstdDecompressor(
                dict_data=cdict, max_window_size=1 << 27).decompress(
                    self.packed_header, max_output_size=MAX_HEADER)
        except zstandard.ZstdError as exc:
            raise _fail("E_DELTA_INVALID", f"delta {self.path}: its header is not one zstd "
                        f"frame of at most {MAX_HEADER} bytes ({exc})", member=HEADER) from exc
        try:
            header = DeltaHeader.from_dict(parse_json(self.header_bytes,
                                                      what=f"delta {self.path} {HEADER}",
                                                      code="E_DELTA_INVALID"))
        except InputError as exc:
            raise restate(exc, VerificationError) from exc
        if (header.old != self.preamble.old or header.new.name != self.preamble.new_name
                or header.new.version != self.preamble.new_version):
            raise _fail("E_DELTA_INVALID", f"delta {self.path}: its header and preamble name "
                        "other releases", member=HEADER)
        if header.data_size != self.data_size:
            raise _fail("E_DELTA_INVALID", f"delta {self.path}: its data is {self.data_size} "
                        f"bytes, the header says {header.data_size}", member=DATA)
        self.header = header
        return header


def _exact(handle: BinaryIO, n: int, path: Path, what: str) -> bytes:
    data = handle.read(n)
    if len(data) != n:
        raise _fail("E_TRUNCATED", f"delta {path} is truncated: it ends inside its {what}",
                    hint="the copy is truncated; obtain a complete copy")
    return data


@contextlib.contextmanager
def open_delta(path: Path) -> Iterator[OpenDelta]:
    """Open a delta file: the container's lengths, bounds and exact size, the preamble.

    Raises:
        VerificationError: ``E_DELTA_INVALID`` (not a delta, over a bound, data after its
            end, the preamble), ``E_TRUNCATED`` (shorter than its lengths say).
    """
    with open_input(path, "delta") as handle:
        total = os.fstat(handle.fileno()).st_size
        prefix = handle.read(PREFIX.size)
        if not prefix or not prefix.startswith(MAGIC[:len(prefix)]) or (
                len(prefix) >= len(MAGIC) and prefix[:len(MAGIC)] != MAGIC):
            raise _fail("E_DELTA_INVALID", f"{path} is not an oemkit delta (no "
                        f"{MAGIC[:7].decode()} magic)",
                        hint="pass the .oemd file oemkit delta wrote")
        if len(prefix) < PREFIX.size:
            raise _fail("E_TRUNCATED", f"delta {path} is truncated: it ends inside its "
                        "prefix", hint="the copy is truncated; obtain a complete copy")
        _, pre_len, head_len, data_len, count = PREFIX.unpack(prefix)
        if pre_len > MAX_PREAMBLE or head_len > MAX_PACKED_HEADER or count > MAX_SIGNATURES:
            raise _fail("E_DELTA_INVALID", f"delta {path} declares a preamble of {pre_len}, a "
                        f"header of {head_len} bytes or {count} signatures (limits "
                        f"{MAX_PREAMBLE}, {MAX_PACKED_HEADER}, {MAX_SIGNATURES})")
        lengths = [SIG_LENGTH.unpack(_exact(handle, SIG_LENGTH.size, path, "signature "
                                            "lengths"))[0] for _ in range(count)]
        if any(n > MAX_SIGNATURE for n in lengths):
            raise _fail("E_DELTA_INVALID", f"delta {path} declares a signature over "
                        f"{MAX_SIGNATURE} bytes")
        start = PREFIX.size + SIG_LENGTH.size * count
        need = start + pre_len + head_len + sum(lengths) + data_len
        if total < need:
            raise _fail("E_TRUNCATED", f"delta {path} is truncated: it needs {need} bytes, "
                        f"the file has {total}", hint="the copy is truncated; obtain a "
                        "complete copy")
        if total > need:
            raise _fail("E_DELTA_INVALID", f"delta {path} has {total - need} bytes after its "
                        "end", hint="the file carries data outside the delta; obtain a fresh "
                        "copy")
        raw = _exact(handle, pre_len, path, "preamble")
        try:
            preamble = Preamble.from_dict(parse_json(raw, what=f"delta {path} preamble",
                                                     code="E_DELTA_INVALID"))
        except InputError as exc:
            raise restate(exc, VerificationError) from exc
        packed = _exact(handle, head_len, path, "header")
        signatures = [(f"signature {i + 1}", _exact(handle, n, path, "signatures"))
                      for i, n in enumerate(lengths)]
        yield OpenDelta(path, handle, preamble, packed, signatures, need - data_len,
                        data_len)


def delta_signers(delta: OpenDelta, root: Any) -> tuple[str, ...]:
    """The trust root's bundle keys that signed the delta's header (none: unsigned).

    Raises:
        VerificationError: ``E_DELTA_SIGNATURE``: a signature that does not verify, or
            signatures by no bundle key of the root.
    """
    from oemkit.crypto.dsse import verify_signature
    from oemkit.crypto.keys import load_public

    if not delta.signatures:
        return ()
    assert delta.header is not None, "decode the header first"
    keys = {k.keyid: k for k in root.keys_for("bundle")}
    good: list[str] = []
    for name, raw in delta.signatures:
        try:
            doc = parse_json(raw, what=name)
            sig = b64decode(doc["sig"], what=name) if isinstance(doc, dict) and set(doc) == {
                "keyid", "sig"} and isinstance(doc["keyid"], str) else None
        except InputError as exc:
            raise _fail("E_DELTA_SIGNATURE", f"delta {delta.path}: {exc.message}",
                        member=name) from exc
        if sig is None:
            raise _fail("E_DELTA_SIGNATURE", f"delta {delta.path}: {name} is not a "
                        "{keyid, sig} document", member=name)
        key = keys.get(doc["keyid"])
        if key is None:
            continue
        if not verify_signature(load_public(key.public_key, key.keyid), PAYLOAD_TYPE,
                                delta.header_bytes, sig):
            raise _fail("E_DELTA_SIGNATURE", f"delta {delta.path}: the signature {name} by "
                        f"bundle key {key.keyid[:16]} does not verify over its header",
                        member=name)
        good.append(key.keyid)
    if not good:
        raise _fail("E_DELTA_SIGNATURE", f"delta {delta.path} is signed, but by no bundle key "
                    f"of trust root v{root.version}", member=delta.signatures[0][0],
                    hint="sign the delta with a bundle key of the trust root the hosts pin "
                         "(oemkit delta --key)")
    return tuple(sorted(good))


# --------------------------------------------------------------------------- the OLD side


@dataclass
class OldSide:
    """What a delta may take bytes from on the OLD side: its payload files (``files``,
    a folder), its manifest and the metadata members it keeps."""

    files: Path
    manifest_bytes: bytes
    manifest: Manifest
    members: dict[str, bytes]
    where: str

    sizes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sizes = {f.path: f.size for f in self.manifest.files}

    def file_size(self, path: str) -> int | None:
        return self.sizes.get(path)


@contextlib.contextmanager
def old_from_bundle(path: Path, work: Path, limits: Limits | None = None,
                    check: Callable[[bytes, Manifest], None] | None = None
                    ) -> Iterator[OldSide]:
    """The OLD side from a bundle file: ``check`` called with its manifest (bytes and
    parsed), then its payload streamed into ``work``."""
    from oemkit.models.delta import old_member
    from oemkit.release.delta import open_bundle

    with open_bundle(path, "OLD", limits) as old:
        if check is not None:
            check(old.manifest_bytes, old.manifest)
        folder = work / "old"
        folder.mkdir()
        old.extract(folder)
        members = {m.name: old.member(m.name) for m in old.members if old_member(m.name)}
        yield OldSide(folder, old.manifest_bytes, old.manifest, members, str(path))


def old_from_slot(slot: Path) -> OldSide:
    """The OLD side from an installed slot: ``bundle/``, ``manifest.json`` and the members
    install keeps in ``members/`` (SBOM, provenance, ``links/``, ``signatures/``; and the
    slot's ``revocations.crl``)."""
    from oemkit.models.delta import OLD_MEMBER_DIRS, OLD_MEMBERS

    try:
        manifest_bytes = (slot / "manifest.json").read_bytes()
    except OSError as exc:
        raise InputError("E_SLOT_DAMAGED", f"cannot read {slot}/manifest.json: "
                         f"{exc.strerror}", hint="reinstall the current release") from exc
    members = {MANIFEST: manifest_bytes}
    kept = slot / "members"
    names = [n for n in OLD_MEMBERS if n != MANIFEST]
    for folder in OLD_MEMBER_DIRS:
        with contextlib.suppress(OSError):
            names += [folder + p.name for p in sorted((kept / folder).iterdir())]
    for name in names:
        for candidate in (kept / name, slot / name):
            if candidate.is_file() and not candidate.is_symlink():
                members[name] = candidate.read_bytes()
                break
    manifest = parse_manifest(manifest_bytes)
    return OldSide(slot / "bundle", manifest_bytes, manifest, members, str(slot))


# --------------------------------------------------------------------------- rebuilding


@dataclass
class _Rebuilder:
    delta: OpenDelta
    old: OldSide
    new: dict[str, bytes] = field(default_factory=dict)
    _fds: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        """Close the OLD files read so far."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def source(self, src: Source, recipe: str) -> bytes:
        """The bytes of one source range (at most MAX_DICT: dictionaries, members)."""
        if src.kind == "file":
            return self._file_range(src, src.at, src.length, recipe)
        if src.kind == "old":
            data = self.old.members.get(src.name)
            if data is None:
                raise _fail("E_DELTA_BASE", f"{recipe} needs the OLD member {src.name}, which "
                            f"{self.old.where} does not keep", member=recipe,
                            hint="patch from the OLD bundle file instead: oemkit patch "
                                 "OLD.oemb DELTA --out NEW.oemb")
        else:
            data = self.new.get(src.name)
            if data is None:
                raise _fail("E_DELTA_INVALID", f"{recipe} refers to NEW member {src.name} "
                            "before it is rebuilt", member=recipe)
            if src.kind == "new64":
                data = b64encode(data).encode()
        if src.at + src.length > len(data):
            raise _fail("E_DELTA_INVALID", f"{recipe} reads past the end of {src.ref}",
                        member=recipe)
        return data[src.at:src.at + src.length]

    def _file_range(self, src: Source, at: int, length: int, recipe: str) -> bytes:
        size = self.old.file_size(src.name)
        if size is None or src.at + src.length > size:
            raise _fail("E_DELTA_BASE", f"{recipe} needs {src.name} of OLD "
                        f"({src.at + src.length} bytes), which {self.old.where} "
                        f"{'does not have' if size is None else f'has with {size} bytes'}",
                        member=recipe, hint="this delta was made against another OLD release")
        try:
            fd = self._fds.get(src.name)
            if fd is None:  # opened once: a large file is read a chunk at a time
                fd = self._fds[src.name] = os.open(
                    self.old.files.joinpath(*src.name.split("/")), os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(fd, length, at)
        except OSError as exc:
            raise _fail("E_DELTA_BASE", f"cannot read {src.name} of OLD in {self.old.where}: "
                        f"{exc.strerror}", member=recipe,
                        hint="the OLD release is damaged; patch from the OLD bundle file"
                        ) from exc
        if len(data) != length:
            raise _fail("E_DELTA_BASE", f"{src.name} of OLD in {self.old.where} is shorter "
                        "than its manifest says", member=recipe,
                        hint="the OLD release is damaged; patch from the OLD bundle file")
        return data

    def frame(self, piece: Piece, recipe: str) -> bytes:
        """A zstd piece's output, checked against its declared length."""
        import zstandard

        frame = self.delta.frame(piece)
        if len(frame) != piece.clen:
            raise _fail("E_TRUNCATED", f"{recipe}: {DATA} ends inside its frame", member=recipe)
        try:
            declared = zstandard.frame_content_size(frame)
        except zstandard.ZstdError:
            declared = -2
        if declared != piece.length:
            raise _fail("E_DELTA_CORRUPT", f"{recipe}: a frame of {DATA} is not the zstd frame "
                        f"of {piece.length} bytes the header describes", member=recipe)
        dict_bytes = b"".join(self.source(s, recipe) for s in piece.dictionary)
        if len(dict_bytes) > MAX_DICT:
            raise _fail("E_DELTA_INVALID", f"{recipe}: dictionary over {MAX_DICT} bytes",
                        member=recipe)
        try:
            if dict_bytes:
                cdict = zstandard.ZstdCompressionDict(
                    dict_bytes, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
                dctx = zstandard.ZstdDecompressor(dict_data=cdict, max_window_size=1 << 27)
            else:
                dctx = zstandard.ZstdDecompressor(max_window_size=1 << 27)
            out = dctx.decompress(frame, max_output_size=MAX_PIECE)
        except zstandard.ZstdError as exc:
            raise _fail("E_DELTA_CORRUPT", f"{recipe}: a frame of {DATA} does not decompress "
                        f"({exc})", member=recipe) from exc
        if len(out) != piece.length:
            raise _fail("E_DELTA_CORRUPT", f"{recipe}: a frame of {DATA} gives {len(out)} "
                        f"bytes, not {piece.length}", member=recipe)
        return out

    def member(self, recipe: Recipe) -> bytes:
        parts = []
        for piece in recipe.pieces:
            if piece.op == "copy":
                assert piece.source is not None
                parts.append(self.source(piece.source, recipe.name))
            else:
                parts.append(self.frame(piece, recipe.name))
        data = b"".join(parts)
        if sha256_hex(data) != recipe.sha256:
            raise _fail("E_DELTA_RESULT", f"the NEW member {recipe.name} rebuilt from the "
                        "delta does not have the digest the delta records", member=recipe.name,
                        expected=recipe.sha256, actual=sha256_hex(data))
        self.new[recipe.name] = data
        return data


class _FileReader:
    """One NEW payload file from its recipe, read by the packer in ``CHUNK`` pieces."""

    def __init__(self, rebuild: _Rebuilder, recipe: Recipe) -> None:
        self._rebuild = rebuild
        self._recipe = recipe
        self._pieces = iter(recipe.pieces)
        self._current: Iterator[bytes] = iter(())
        self._buffer = memoryview(b"")

    def _chunks(self, piece: Piece) -> Iterator[bytes]:
        name = self._recipe.name
        if piece.op == "zstd":
            yield self._rebuild.frame(piece, name)
            return
        assert piece.source is not None
        src = piece.source
        for at in range(src.at, src.at + src.length, CHUNK):
            yield self._rebuild._file_range(src, at, min(CHUNK, src.at + src.length - at),
                                            name)

    def read(self, n: int) -> bytes:
        out: list[bytes | memoryview] = []
        want = n
        while want:
            if not self._buffer:
                chunk = next(self._current, None)
                while chunk is None:
                    piece = next(self._pieces, None)
                    if piece is None:
                        return b"".join(out)
                    self._current = self._chunks(piece)
                    chunk = next(self._current, None)
                self._buffer = memoryview(chunk)
            take = self._buffer[:want]
            self._buffer = self._buffer[len(take):]
            out.append(take)
            want -= len(take)
        return out[0].tobytes() if len(out) == 1 and isinstance(out[0], memoryview) else \
            b"".join(out)

    def close(self) -> None:
        self._current = iter(())


def _check_entry(manifest: Manifest) -> Callable[[FileEntry], None]:
    expected = {f.path: f for f in manifest.files}

    def check(entry: FileEntry) -> None:
        want = expected[entry.path]
        if (entry.size, entry.sha256) != (want.size, want.sha256):
            raise _fail("E_DELTA_RESULT", f"payload file {entry.path} rebuilt from the delta "
                        "does not match NEW's manifest", member=entry.path,
                        expected=want.sha256, actual=entry.sha256,
                        hint="the delta is damaged or tampered with, or the OLD release it "
                             "is applied to was changed; nothing was written")
    return check


def _compressor_hint(header: DeltaHeader) -> VerificationError:
    from oemkit.release.delta import compressor_info

    here = compressor_info()
    if here != header.compressor:
        return _fail("E_DELTA_COMPRESSOR", "the rebuilt payload has every file right but not "
                     "the signed archive bytes: this host's zstd ("
                     f"zstandard {here['zstandard']}, libzstd {here['libzstd']}) compresses "
                     "differently from the one that built NEW (zstandard "
                     f"{header.compressor['zstandard']}, libzstd "
                     f"{header.compressor['libzstd']})", member=PAYLOAD,
                     hint=f"install zstandard=={header.compressor['zstandard']} for oemkit, "
                          "or ship the full bundle")
    return _fail("E_DELTA_RESULT", f"the rebuilt {PAYLOAD} does not have the digest NEW's "
                 "manifest records", member=PAYLOAD)


def rebuild(delta: OpenDelta, old: OldSide, out: BinaryIO,
            progress: ProgressFn | None = None) -> Manifest:
    """Write NEW (the whole outer archive) to ``out`` from ``delta`` and ``old``; return
    NEW's manifest (as the rebuilt bytes say: verified by the caller)."""
    header = delta.header
    assert header is not None, "decode the header first (check_base)"
    rebuilder = _Rebuilder(delta, old)
    try:
        return _rebuild(delta, header, rebuilder, out, progress)
    finally:
        rebuilder.close()


def _rebuild(delta: OpenDelta, header: DeltaHeader, rebuilder: _Rebuilder, out: BinaryIO,
             progress: ProgressFn | None) -> Manifest:
    from oemkit.release.bundle import pack_payload

    for recipe in header.members:
        if recipe.name != PAYLOAD:
            rebuilder.member(recipe)
    try:
        manifest = parse_manifest(rebuilder.new[MANIFEST])
    except KeyError:
        raise _fail("E_DELTA_INVALID", f"{delta.path} rebuilds no {MANIFEST}") from None
    try:
        header = header.with_names([(f.path, f.size) for f in manifest.files])
    except InputError as exc:
        raise restate(exc, VerificationError) from exc
    recipes = {r.name: r for r in header.files}

    def opener(item: SourceFile) -> tuple[Any, int]:
        recipe = recipes[item.path]
        return _FileReader(rebuilder, recipe), recipe.size

    items = tuple(SourceFile(f.path, Path(f.path), f.mode) for f in manifest.files)
    expected = manifest.members[PAYLOAD]
    # The payload is packed straight into its place in the output (its size is known from
    # the manifest), through one hasher of the whole file: no second pass over it.
    writer = HashingWriter(out)
    for recipe in header.members:
        size = expected.size if recipe.name == PAYLOAD else recipe.size
        writer.write(ustar_header(recipe.name, size))
        if recipe.name == PAYLOAD:
            writer.flush()
            _, digest, packed = pack_payload(items, writer, progress,  # type: ignore[arg-type]
                                             opener=opener, check=_check_entry(manifest))
            if (digest, packed) != (expected.sha256, expected.size):
                raise _compressor_hint(header)
        else:
            writer.write(rebuilder.new[recipe.name])
        writer.write(padding(size))
    writer.write(END_OF_ARCHIVE)
    writer.flush()
    if (writer.size, writer.hexdigest()) != (header.new.size, header.new.sha256):
        raise _fail("E_DELTA_RESULT", f"the rebuilt {header.new.name} {header.new.version} "
                    "is not the bundle the delta was made from", expected=header.new.sha256,
                    actual=writer.hexdigest())
    data_digest, _ = hash_fd(delta.handle.fileno(), delta.data_offset, delta.data_size)
    if data_digest != header.data_sha256:
        raise _fail("E_DELTA_DIGEST", f"{DATA} of {delta.path} does not match the digest in "
                    "its header", member=DATA, expected=header.data_sha256, actual=data_digest)
    return manifest


def check_base(delta: OpenDelta, manifest_bytes: bytes, manifest: Manifest,
               where: str) -> DeltaHeader:
    """OLD (its manifest, found at ``where``) must be the release the delta names; then the
    header is decoded with that manifest.

    Raises:
        VerificationError: ``E_DELTA_BASE`` (another release), ``E_DELTA_INVALID``.
    """
    want = delta.preamble
    digest = sha256_hex(manifest_bytes)
    if digest != want.old.manifest_sha256:
        raise _fail("E_DELTA_BASE", f"{delta.path} turns {want.old.name} {want.old.version} "
                    f"into {want.new_name} {want.new_version}, but {where} is "
                    f"{manifest.name} {manifest.version}",
                    expected=want.old.manifest_sha256, actual=digest,
                    hint=f"apply it to {want.old.name} {want.old.version}, or get the delta "
                         f"made from {manifest.name} {manifest.version}")
    return delta.decode(manifest_bytes)


# --------------------------------------------------------------------------- the commands


def patch_bundle(old: Path | str | None, delta_path: Path | str, out: Path | str,
                 trust: Path | str | bytes, *, slot: Path | None = None, force: bool = False,
                 limits: Limits | None = None, progress: ProgressFn | None = None,
                 verify: bool = True) -> PatchResult:
    """Rebuild NEW from ``old`` (a bundle file, or ``slot``: an installed slot) and the
    delta, verify it against ``trust``, and write it to ``out`` (never replacing a file
    unless ``force``). ``verify`` False skips the final full verification (``upgrade
    --delta``, whose install verifies the result anyway).

    Raises:
        InputError: ``E_OUTPUT_EXISTS``, ``E_NOT_FOUND``.
        VerificationError: ``E_DELTA_*`` naming the file or member; the verifier's code
            when the rebuilt bundle does not verify.
        EnvironmentProblem: ``E_WRITE``.
    """
    from oemkit._fs import read_input
    from oemkit.verify.bundle import verify_open_bundle
    from oemkit.verify.trust import load_pinned

    out = Path(out)
    if out.exists() and not force:
        raise InputError("E_OUTPUT_EXISTS", f"{out} already exists",
                         hint="choose another --out, or pass --force to replace it")
    pinned = trust if isinstance(trust, bytes) else read_input(Path(trust), "trust root")
    root = load_pinned(pinned)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.patch-", dir=out.parent))
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot write in {out.parent}: {exc.strerror}",
                                 hint="choose a writable --out") from exc
    try:
        with open_delta(Path(delta_path)) as delta:
            signers: tuple[str, ...] = ()

            def judge(manifest_bytes: bytes, manifest: Manifest, where: str) -> None:
                nonlocal signers
                check_base(delta, manifest_bytes, manifest, where)
                signers = delta_signers(delta, root)

            with contextlib.ExitStack() as stack:
                if slot is not None:
                    side = old_from_slot(slot)
                    judge(side.manifest_bytes, side.manifest, side.where)
                else:
                    assert old is not None
                    side = stack.enter_context(old_from_bundle(
                        Path(old), work, limits,
                        lambda b, m: judge(b, m, str(old))))
                target = work / out.name
                with open(target, "xb") as handle:
                    manifest = rebuild(delta, side, handle, progress)
                    handle.flush()
                    os.fsync(handle.fileno())
            report = VerifyReport(bundle=str(out))
            if verify:
                with open(target, "rb") as done:
                    report = verify_open_bundle(done, root, name=str(out), limits=limits)
                if not report.ok:
                    raise _rebuilt_refused(report)
            if force:
                os.replace(target, out)
            else:
                try:
                    os.link(target, out)
                except FileExistsError:
                    raise InputError("E_OUTPUT_EXISTS", f"{out} appeared while it was "
                                     "rebuilt", hint="choose another --out") from None
        size = out.stat().st_size
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot write {out}: {exc.strerror or exc}",
                                 hint="check free space and permissions (patching needs room "
                                      "for OLD's payload and NEW); nothing was written"
                                 ) from exc
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return PatchResult(out, manifest.name, manifest.version, size, manifest.payload_size,
                       len(manifest.files), signers, report)


def _rebuilt_refused(report: VerifyReport) -> OemkitError:
    failure = report.error
    if isinstance(failure, OemkitError):
        failure.message = f"the bundle rebuilt from the delta does not verify: {failure.message}"
        return failure
    return _fail("E_DELTA_RESULT", "the bundle rebuilt from the delta does not verify")


