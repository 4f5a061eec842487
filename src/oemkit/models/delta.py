"""The delta document (``oemkit-delta.json``): how to rebuild a NEW bundle from an OLD one.

A recipe per NEW outer member and per NEW payload file lists *pieces* whose outputs,
concatenated, are that member or file: ``copy`` (a byte range of a source) or ``zstd``
(a frame in the delta's data member, decompressed with the concatenated byte ranges of
``dict`` as its raw-content dictionary: zstd's patch-from). A source is named
``file:PATH`` (an OLD payload file), ``old:MEMBER`` (an OLD outer member: the manifest,
SBOM, provenance, CRL, in-toto links and signatures, which an installed slot keeps),
``new:MEMBER`` (a NEW member rebuilt earlier) or ``new64:MEMBER`` (its standard base64,
which a signature embeds). Pure: ``DeltaHeader.from_dict`` validates every field and
bound (``FormatError``, ``E_DELTA_INVALID``); docs/DELTA.md is the format's specification.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from oemkit.errors import FormatError
from oemkit.models.manifest import (
    LINK_DIR,
    MANIFEST,
    PAYLOAD,
    PROVENANCE,
    REVOCATIONS,
    SBOM,
    path_problem,
)

FORMAT = "oemkit-delta/v1"
#: A payload file's recipe for "the OLD file of the same path, whole".
SAME = "="
#: What messages call the file's parts.
HEADER = "header"
DATA = "data"
PAYLOAD_TYPE = "application/vnd.oemkit.delta+json"
#: The ``.oemd`` container (docs/DELTA.md): this prefix (magic; the preamble's, the header
#: frame's and the data's lengths; the signature count), one big-endian u16 length per
#: signature, then the preamble, the header frame, the signatures and the data.
MAGIC = b"OEMKITD\x01"
PREFIX = struct.Struct(">8sIIQB")
SIG_LENGTH = struct.Struct(">H")
MAX_PREAMBLE = 4 << 10
MAX_PACKED_HEADER = 256 << 20
MAX_SIGNATURES = 32
MAX_SIGNATURE = 4 << 10
#: The OLD outer members a delta may take bytes from: those an installed slot keeps (the
#: in-toto links and signatures too: a new one by the same key differs from the old one in
#: a few digests).
OLD_MEMBERS = (MANIFEST, SBOM, PROVENANCE, REVOCATIONS)
OLD_MEMBER_DIRS = (LINK_DIR, "signatures/")


def old_member(name: str) -> bool:
    """Whether a delta may take bytes from the OLD member ``name``."""
    return name in OLD_MEMBERS or (name.startswith(OLD_MEMBER_DIRS) and "/" not in
                                   name.partition("/")[2] and ".." not in name)
#: Largest output of one zstd piece, and largest dictionary: what one piece may hold in
#: memory while it is applied (a multi-GB file is many pieces; oemkit delta writes frames
#: of at most 16 MiB with dictionaries of at most 18 MiB).
MAX_PIECE = 32 << 20
MAX_DICT = 48 << 20
#: Pieces in one delta, and ranges in one dictionary.
MAX_PIECES = 4_000_000
MAX_DICT_RANGES = 8
MAX_SIZE = 1 << 50
#: Largest NEW metadata member (rebuilt in memory): the default metadata total of the
#: bundle reader (FORMAT.md 1.4).
MAX_MEMBER = 256 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KINDS = ("file", "old", "new", "new64")


def _bad(message: str, field: str | None = None) -> FormatError:
    return FormatError("E_DELTA_INVALID", f"the delta's header {message}", field=field,
                       hint="the delta is damaged or was not written by oemkit delta; "
                            "obtain a fresh copy")


def _obj(value: Any, keys: tuple[str, ...], where: str,
         optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"field {where} is not an object", where)
    missing = [k for k in keys if k not in value]
    extra = sorted(set(value) - set(keys) - set(optional))
    if missing or extra:
        raise _bad(f"field {where} has {'missing ' + ', '.join(missing) if missing else ''}"
                   f"{'; ' if missing and extra else ''}"
                   f"{'unknown ' + ', '.join(extra) if extra else ''} field(s)", where)
    return value


def _int(value: Any, where: str, high: int = MAX_SIZE) -> int:
    if type(value) is not int or not 0 <= value <= high:
        raise _bad(f"field {where} is not an integer from 0 to {high}", where)
    return value


def _str(value: Any, where: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or not value or len(value) > 4096 or (
            pattern is not None and not pattern.fullmatch(value)):
        raise _bad(f"field {where} is not a valid string", where)
    return value


@dataclass(frozen=True)
class Source:
    """A byte range of a source the patcher has: ``kind`` is file, old, new or new64."""

    kind: str
    name: str
    at: int
    length: int

    @classmethod
    def parse(cls, text: Any, at: Any, length: Any, where: str) -> Source:
        """A source from its header form (``kind:name``, offset, length), checked.

        Raises:
            FormatError: ``E_DELTA_INVALID`` naming the field.
        """
        raw = _str(text, f"{where}.src")
        kind, _, name = raw.partition(":")
        if kind not in _KINDS or not name:
            raise _bad(f"field {where}.src {raw!r} does not name a source (file:, old:, new: "
                       "or new64:)", f"{where}.src")
        if kind == "file" and path_problem(name):
            raise _bad(f"field {where}.src names an unsafe path", f"{where}.src")
        if kind == "old" and not old_member(name):
            raise _bad(f"field {where}.src names old member {name!r}, which a patcher does "
                       "not keep", f"{where}.src")
        return cls(kind, name, _int(at, f"{where}.at"), _int(length, f"{where}.len"))

    @property
    def ref(self) -> str:
        """The source as the header writes it."""
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Piece:
    """One piece of a recipe: a ``copy`` of ``source``, or a ``zstd`` frame at ``data``
    (``clen`` bytes into the data member) decompressing to ``length`` bytes with
    ``dictionary`` (concatenated ranges) as its raw-content dictionary."""

    op: str
    length: int
    source: Source | None = None
    data: int = 0
    clen: int = 0
    dictionary: tuple[Source, ...] = ()

    @property
    def cost(self) -> int:
        """Bytes this piece takes in the delta's data member."""
        return self.clen

    def to_dict(self) -> dict[str, Any]:
        """The piece as the header writes it."""
        if self.op == "copy":
            assert self.source is not None
            return {"op": "copy", "src": self.source.ref, "at": self.source.at,
                    "len": self.length}
        return {"op": "zstd", "data": self.data, "clen": self.clen, "len": self.length,
                "dict": [[s.ref, s.at, s.length] for s in self.dictionary]}

    @classmethod
    def from_dict(cls, value: Any, where: str) -> Piece:
        """A piece from the header, every field and bound checked.

        Raises:
            FormatError: ``E_DELTA_INVALID`` naming the field.
        """
        op = value.get("op") if isinstance(value, dict) else None
        if op == "copy":
            obj = _obj(value, ("op", "src", "at", "len"), where)
            length = _int(obj["len"], f"{where}.len")
            return cls("copy", length, source=Source.parse(obj["src"], obj["at"], length, where))
        if op != "zstd":
            raise _bad(f"field {where}.op is not 'copy' or 'zstd'", f"{where}.op")
        obj = _obj(value, ("op", "data", "clen", "len", "dict"), where)
        ranges = obj["dict"]
        if not isinstance(ranges, list) or len(ranges) > MAX_DICT_RANGES or not all(
                isinstance(r, list) and len(r) == 3 for r in ranges):
            raise _bad(f"field {where}.dict is not a list of at most {MAX_DICT_RANGES} "
                       "[source, at, len] ranges", f"{where}.dict")
        dictionary = tuple(Source.parse(r[0], r[1], r[2], f"{where}.dict[{i}]")
                           for i, r in enumerate(ranges))
        if sum(s.length for s in dictionary) > MAX_DICT:
            raise _bad(f"field {where}.dict is over {MAX_DICT} bytes", f"{where}.dict")
        return cls("zstd", _int(obj["len"], f"{where}.len", MAX_PIECE),
                   data=_int(obj["data"], f"{where}.data"),
                   clen=_int(obj["clen"], f"{where}.clen", MAX_PIECE + (MAX_PIECE >> 6)),
                   dictionary=dictionary)


@dataclass(frozen=True)
class Recipe:
    """How to make one NEW member or payload file (``name``), ``size`` bytes; a member's
    SHA-256 is ``sha256`` (a file's is NEW's manifest's, not repeated: 64 incompressible
    bytes a file); the payload member has no pieces (it is rebuilt from the file recipes)."""

    name: str
    size: int
    sha256: str | None
    pieces: tuple[Piece, ...]

    @property
    def op(self) -> str:
        """``reused`` (copies only), ``whole`` (frames without a dictionary only) or
        ``patched``: what ``oemkit delta --explain`` says of it."""
        if all(p.op == "copy" for p in self.pieces):
            return "reused"
        if all(p.op == "zstd" and not p.dictionary for p in self.pieces):
            return "whole"
        return "patched"

    @property
    def cost(self) -> int:
        """Bytes this recipe takes in the delta's data member."""
        return sum(p.cost for p in self.pieces)

    @property
    def same(self) -> bool:
        """Whether this is a payload file made of the OLD file of its own path, whole (the
        header writes it as ``"="``: most files of a release are)."""
        return len(self.pieces) == 1 and self.pieces[0].op == "copy" and \
            self.pieces[0].source == Source("file", self.name, 0, self.size)

    def to_dict(self, *, file: bool = False) -> dict[str, Any] | str:
        """The recipe as the header writes it: a payload file's only as its pieces (its
        path, size and digest are NEW's manifest's, in the same order), or ``"="`` for the
        OLD file of the same path, whole."""
        if file and self.same:
            return SAME
        pieces = [p.to_dict() for p in self.pieces]
        if file:
            return {"pieces": pieces}
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "pieces": pieces}

    @classmethod
    def from_dict(cls, value: Any, where: str, *, file: bool) -> Recipe:
        """A member's (``file`` False) or payload file's recipe from the header, checked.

        Raises:
            FormatError: ``E_DELTA_INVALID`` naming the field.
        """
        if file and value == SAME:  # named, sized and made a copy by with_names
            return cls("", -1, None, ())
        obj = _obj(value, ("pieces",) if file else ("name", "size", "sha256", "pieces"), where)
        raw = obj["pieces"]
        if not isinstance(raw, list):
            raise _bad(f"field {where}.pieces is not a list", f"{where}.pieces")
        pieces = tuple(Piece.from_dict(p, f"{where}.pieces[{i}]") for i, p in enumerate(raw))
        if file:  # named and sized by NEW's manifest when it is applied (with_names)
            return cls("", sum(p.length for p in pieces), None, pieces)
        name = _str(obj["name"], f"{where}.name")
        size = _int(obj["size"], f"{where}.size", MAX_SIZE if name == PAYLOAD else MAX_MEMBER)
        if name == PAYLOAD:  # rebuilt from the file recipes
            if pieces:
                raise _bad(f"field {where}: {PAYLOAD} has pieces", f"{where}.pieces")
        elif sum(p.length for p in pieces) != size:
            raise _bad(f"field {where}: its pieces make {sum(p.length for p in pieces)} bytes, "
                       f"not {size}", f"{where}.pieces")
        return cls(name, size, _str(obj["sha256"], f"{where}.sha256", _HEX64), pieces)


@dataclass(frozen=True)
class BundleRef:
    """Which bundle a side of the delta is: its name, version and manifest digest; for NEW
    also the whole file's size and SHA-256."""

    name: str
    version: str
    manifest_sha256: str
    size: int | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The reference as the header writes it."""
        out: dict[str, Any] = {"name": self.name, "version": self.version,
                               "manifest_sha256": self.manifest_sha256}
        if self.sha256 is not None:
            out.update(size=self.size, sha256=self.sha256)
        return out

    @classmethod
    def from_dict(cls, value: Any, where: str, *, whole: bool) -> BundleRef:
        """A bundle reference from the header (``whole``: with the file's size and digest).

        Raises:
            FormatError: ``E_DELTA_INVALID`` naming the field.
        """
        keys = ("name", "version", "manifest_sha256") + (("size", "sha256") if whole else ())
        obj = _obj(value, keys, where)
        return cls(_str(obj["name"], f"{where}.name"), _str(obj["version"], f"{where}.version"),
                   _str(obj["manifest_sha256"], f"{where}.manifest_sha256", _HEX64),
                   _int(obj["size"], f"{where}.size") if whole else None,
                   _str(obj["sha256"], f"{where}.sha256", _HEX64) if whole else None)


@dataclass(frozen=True)
class Preamble:
    """The container's preamble: the OLD release a delta applies to and the NEW one it
    makes (names and versions), checked before anything else is read."""

    old: BundleRef
    new_name: str
    new_version: str

    @classmethod
    def from_dict(cls, value: Any) -> Preamble:
        """The preamble from its parsed JSON.

        Raises:
            FormatError: ``E_DELTA_INVALID`` naming the field.
        """
        obj = _obj(value, ("format", "old", "new"), "preamble")
        if obj["format"] != FORMAT:
            raise _bad(f"format is {obj['format']!r}, not {FORMAT!r}", "format")
        new = _obj(obj["new"], ("name", "version"), "preamble.new")
        return cls(BundleRef.from_dict(obj["old"], "preamble.old", whole=False),
                   _str(new["name"], "preamble.new.name"),
                   _str(new["version"], "preamble.new.version"))


@dataclass(frozen=True)
class DeltaHeader:
    """The whole delta document. ``compressor`` names the zstandard and libzstd versions
    and the level the NEW payload was compressed with (the rebuilt payload has the signed
    digest only when the patcher's libzstd writes the same bytes); ``data`` is the data
    member's size and SHA-256; ``members`` the NEW outer members in order (the payload with
    no pieces), ``files`` the NEW payload files in manifest order."""

    old: BundleRef
    new: BundleRef
    compressor: dict[str, Any]
    data_size: int
    data_sha256: str
    members: tuple[Recipe, ...]
    files: tuple[Recipe, ...]

    def to_dict(self) -> dict[str, Any]:
        """The header document (canonical JSON of it is what is signed)."""
        return {"format": FORMAT, "old": self.old.to_dict(), "new": self.new.to_dict(),
                "compressor": dict(self.compressor),
                "data": {"size": self.data_size, "sha256": self.data_sha256},
                "members": [m.to_dict() for m in self.members],
                "files": [f.to_dict(file=True) for f in self.files]}

    def preamble(self) -> dict[str, Any]:
        """The container's preamble: what the delta turns into what, readable before the
        header (whose frame has OLD's manifest as its dictionary) is."""
        return {"format": FORMAT, "old": self.old.to_dict(),
                "new": {"name": self.new.name, "version": self.new.version}}

    @classmethod
    def from_dict(cls, value: Any) -> DeltaHeader:
        """The header from its parsed JSON, every field, bound and range checked.

        Raises:
            FormatError: ``E_DELTA_INVALID`` naming the field.
        """
        obj = _obj(value, ("format", "old", "new", "compressor", "data", "members", "files"),
                   "header")
        if obj["format"] != FORMAT:
            raise _bad(f"format is {obj['format']!r}, not {FORMAT!r}", "format")
        comp = _obj(obj["compressor"], ("zstandard", "libzstd", "level"), "compressor")
        for key in ("zstandard", "libzstd"):
            _str(comp[key], f"compressor.{key}")
        _int(comp["level"], "compressor.level", 22)
        data = _obj(obj["data"], ("size", "sha256"), "data")
        members, files = obj["members"], obj["files"]
        if not isinstance(members, list) or not isinstance(files, list):
            raise _bad("members and files are not lists", "members")
        count = sum(len(r.get("pieces", ())) for r in (*members, *files) if isinstance(r, dict))
        if count > MAX_PIECES:
            raise _bad(f"lists {count} pieces (limit {MAX_PIECES})", "files")
        header = cls(
            BundleRef.from_dict(obj["old"], "old", whole=False),
            BundleRef.from_dict(obj["new"], "new", whole=True), dict(comp),
            _int(data["size"], "data.size"), _str(data["sha256"], "data.sha256", _HEX64),
            tuple(Recipe.from_dict(m, f"members[{i}]", file=False)
                  for i, m in enumerate(members)),
            tuple(Recipe.from_dict(f, f"files[{i}]", file=True) for i, f in enumerate(files)))
        for where, recipe in header.pieces():
            for piece in recipe.pieces:
                if piece.op == "zstd" and piece.data + piece.clen > header.data_size:
                    raise _bad(f"field {where} points past the end of {DATA}", where)
        return header

    def with_names(self, files: list[tuple[str, int]]) -> DeltaHeader:
        """The header with its file recipes named and sized by NEW's manifest (``files``:
        path and size of each, in order).

        Raises:
            FormatError: ``E_DELTA_INVALID``: another number of files, or a recipe whose
                pieces do not make its file's size.
        """
        if len(files) != len(self.files):
            raise _bad(f"has {len(self.files)} file recipes for NEW's {len(files)} payload "
                       "files", "files")
        named = []
        for i, ((path, size), recipe) in enumerate(zip(files, self.files, strict=True)):
            if recipe.size == -1:  # "=": the OLD file of this path, whole
                named.append(Recipe(path, size, None, (
                    Piece("copy", size, source=Source("file", path, 0, size)),)))
                continue
            if recipe.size != size:
                raise _bad(f"field files[{i}] makes {recipe.size} bytes of {path}, which NEW's "
                           f"manifest says has {size}", f"files[{i}].pieces")
            named.append(Recipe(path, size, None, recipe.pieces))
        return DeltaHeader(self.old, self.new, self.compressor, self.data_size,
                           self.data_sha256, self.members, tuple(named))

    def pieces(self) -> list[tuple[str, Recipe]]:
        """Every recipe with where it is in the header (for messages)."""
        return ([(f"members[{i}]", m) for i, m in enumerate(self.members)]
                + [(f"files[{i}]", f) for i, f in enumerate(self.files)])
