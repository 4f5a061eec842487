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
verified against the trust root and only then published under its name. Parts are only
ever read. A write failure (disk full) removes the work area and leaves no output.

The index is untrusted input until its signatures verify (and an unsigned one stays
untrusted: only the joined bundle's own verification decides). So it is bounded before
it is parsed (bytes, from ``max_parts``), its signatures are checked over the exact
payload bytes before the payload is parsed, every field is checked for its exact type
and range (no floats, booleans or huge numbers), and nothing in it chooses a path: the
output is ``--out``, or ``NAME-VERSION.oemb`` from the *verified* manifest, and join
never replaces a file it did not create unless told to (``force``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
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
#: Largest size, offset or length anywhere (canonical JSON holds integers up to 2^53 - 1).
MAX_BYTES = (1 << 53) - 1
#: Default bound on the parts of one split (``--max-parts`` on split and join raises it).
MAX_PARTS = 4096
#: Signatures an index may carry.
MAX_SIGNATURES = 16
#: Index bytes allowed: a fixed part (envelope, bundle section, signatures) and, per part,
#: room for the longest legal entry in base64 (474 bytes; a real one is about 300).
INDEX_BASE_BYTES = 64 << 10
INDEX_BYTES_PER_PART = 512
_HEADER = struct.Struct(">8sHHIIIQQQQ32s8x")  # 96 bytes, then SHA-256 of them
_PART_NAME = re.compile(r"\.part([0-9]{1,9})\Z")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,159}")
# The manifest's own rules for name and version (models/manifest.py): NAME-VERSION.oemb
# is then always a plain file name.
_BUNDLE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_BUNDLE_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: Problems named in an error's message (``problems`` in ``--json`` has all of them).
_SHOWN_PROBLEMS = 10


def index_byte_limit(max_parts: int = MAX_PARTS) -> int:
    """The most bytes an index of at most ``max_parts`` parts can need."""
    return INDEX_BASE_BYTES + INDEX_BYTES_PER_PART * max_parts


def bundle_file_name(name: str, version: str) -> str:
    """``NAME-VERSION.oemb``, the name join gives a bundle when ``--out`` is not given."""
    return f"{name}-{version}.oemb"


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


_TOP_FIELDS = frozenset({"type", "version", "header_size", "part_size", "bundle", "parts"})
_BUNDLE_FIELDS = frozenset({"file", "size", "sha256", "manifest_sha256", "name", "version"})
_PART_FIELDS = frozenset({"number", "file", "offset", "length", "size", "sha256"})


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
    def from_dict(cls, obj: Any, *, max_parts: int = MAX_PARTS,
                  what: str = "the index") -> MediaIndex:
        """Check every field for its exact type and range: integers are JSON integers
        (not ``1.0``, ``true``, ``"1"`` or ``1e400``) within their bounds, names are
        plain and derived as split writes them, and the parts tile the bundle exactly.
        More than ``max_parts`` parts is ``E_LIMIT_PARTS``, before any part is read."""
        try:
            _fields(obj, _TOP_FIELDS, "the index")
            if obj["type"] != INDEX_TYPE or _int(obj["version"], "version", 1, 1) != 1:
                raise _bad_index("not an oemkit media index (type/version)", what)
            _int(obj["header_size"], "header_size", HEADER_SIZE, HEADER_SIZE)
            part_size = _int(obj["part_size"], "part_size", MIN_PART_SIZE, MAX_BYTES)
            b = _fields(obj["bundle"], _BUNDLE_FIELDS, "bundle")
            bundle_file = _file_name(b["file"], "bundle.file")
            raw_parts = obj["parts"]
            if not isinstance(raw_parts, list) or not raw_parts:
                raise ValueError("parts is not a non-empty list")
            count = len(raw_parts)
            if count > max_parts:
                raise VerificationError(
                    "E_LIMIT_PARTS", f"{what} lists {count} parts (limit {max_parts})",
                    check="index", expected=f"<= {max_parts}", actual=str(count),
                    hint="if this split is legitimate, raise the limit with --max-parts")
            parts = tuple(_part(p, i, count, bundle_file, part_size)
                          for i, p in enumerate(raw_parts, 1))
            index = cls(bundle_file, _int(b["size"], "bundle.size", 1, MAX_BYTES),
                        _hex(b["sha256"], "bundle.sha256"),
                        _hex(b["manifest_sha256"], "bundle.manifest_sha256"),
                        _pattern(b["name"], _BUNDLE_NAME, "bundle.name"),
                        _pattern(b["version"], _BUNDLE_VERSION, "bundle.version"),
                        part_size, parts)
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad_index(f"missing or malformed field ({exc})", what) from exc
        # The parts must tile the bundle exactly, in order.
        position = 0
        for part in index.parts:
            if part.offset != position:
                raise _bad_index(f"part {part.number} does not continue the bundle where "
                                 f"part {part.number - 1} ends", what)
            position += part.length
        if position != index.bundle_size:
            raise _bad_index(f"the parts add up to {position} bytes, the bundle is "
                             f"{index.bundle_size}", what)
        return index


def _part(p: Any, number: int, count: int, bundle_file: str, part_size: int) -> PartEntry:
    where = f"parts[{number - 1}]"
    _fields(p, _PART_FIELDS, where)
    _int(p["number"], f"{where}.number", number, number)
    name = part_name(bundle_file, number, count)
    if p["file"] != name:
        raise ValueError(f"{where}.file is {_shown(p['file'])}, split names it {name!r}")
    length = _int(p["length"], f"{where}.length", 1, part_size - HEADER_SIZE)
    _int(p["size"], f"{where}.size", length + HEADER_SIZE, length + HEADER_SIZE)
    return PartEntry(number, name, _int(p["offset"], f"{where}.offset", 0, MAX_BYTES),
                     length, length + HEADER_SIZE, _hex(p["sha256"], f"{where}.sha256"))


def _shown(value: Any) -> str:
    """A short, printable stand-in for a hostile value (never the value's own repr of a
    huge number, which Python refuses to format beyond 4,300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit number"
    if isinstance(value, float) and not math.isfinite(value):  # 1e400 reads as infinity
        return "a number beyond a float's range (1e400 and the like)"
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fields(obj: Any, expected: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{where} is {_shown(obj)}, not an object")
    if set(obj) != expected:
        extra, missing = sorted(set(obj) - expected), sorted(expected - set(obj))
        raise ValueError(f"{where} fields differ from format v1 (unknown {extra[:5]}, "
                         f"missing {missing})")
    return obj


def _int(value: Any, what: str, low: int, high: int) -> int:
    """A JSON integer in ``low..high``: ``type(value) is int``, so ``true``, ``1.0`` and
    ``1e400`` (which JSON parsers read as a float, infinity) are refused by type."""
    if type(value) is not int:
        raise ValueError(f"{what} is {_shown(value)}, not a whole number")
    if not low <= value <= high:
        shown = _shown(value) if value.bit_length() > 64 else str(value)
        bounds = str(low) if low == high else f"{low}..{high}"
        raise ValueError(f"{what} is {shown}, must be {bounds}")
    return value


def _hex(value: Any, what: str = "value") -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError(f"{what} {_shown(value)} is not a SHA-256")
    return value


def _pattern(value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{what} {_shown(value)} is not valid")
    return value


def _file_name(value: Any, what: str = "file") -> str:
    if not isinstance(value, str) or not _FILE_NAME.fullmatch(value):
        raise ValueError(f"{what} {_shown(value)} is not a plain file name (letters, digits, "
                         "'.', '_', '+', '-'; at most 160)")
    return value


def _bad_index(detail: str, what: str = "the index") -> VerificationError:
    return VerificationError("E_INDEX_INVALID", f"{what} is not a valid media index: {detail}",
                             check="index", hint="copy the .index.json file written by "
                             "'oemkit split' again")


def part_name(bundle_file: str, number: int, count: int) -> str:
    return f"{bundle_file}.part{number:0{max(3, len(str(count)))}d}"


_SIZE = re.compile(r"\s*([0-9]{1,19})(?:\.([0-9]{1,9}))?\s*([KMGT]?)(i?)(B?)\s*",
                   re.IGNORECASE | re.ASCII)


def parse_size(text: str) -> int:
    """``4G``, ``4GiB``, ``650M``, ``4700MB`` (decimal), ``1.5G``, ``123456`` bytes: ASCII
    digits only (at most 19, and 9 after the point), computed exactly, at most
    :data:`MAX_BYTES`; anything else is ``E_USAGE``."""
    match = _SIZE.fullmatch(text)
    hint = "use bytes or a unit: 4G (GiB), 4000M, 4700MB (decimal)"
    if not match:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise UsageError("E_USAGE", f"--size {shown!r} is not a size", hint=hint)
    whole, frac, unit = match.group(1), match.group(2) or "", match.group(3).upper()
    decimal = bool(match.group(5)) and not match.group(4)
    base = 1000 if decimal else 1024
    number = Fraction(int(whole)) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    value = int(number * base ** " KMGT".index(unit or " "))
    if value > MAX_BYTES:
        raise UsageError("E_USAGE", f"--size {text.strip()} is too large (at most "
                         f"{MAX_BYTES} bytes)", hint=hint)
    return value


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class SplitResult:
    index: Path
    parts: tuple[Path, ...]
    index_data: MediaIndex
    signed_by: tuple[str, ...]


def split_bundle(bundle: Path | str, part_size: int, out_dir: Path | str | None = None, *,
                 keys: Sequence[Any] = (), progress: ProgressFn | None = None,
                 limits: Limits | None = None, max_parts: int = MAX_PARTS) -> SplitResult:
    """Write ``bundle`` as numbered parts of at most ``part_size`` bytes and an index.

    ``keys`` (``PrivateKeyInfo``) sign the index; without keys it is written unsigned,
    bound to the bundle's manifest digest. Parts and index are written atomically; the
    same bundle and size always give the same bytes. ``progress`` gets bytes read (the
    bundle is read twice: once to hash it whole, once to cut it). A split of more than
    ``max_parts`` parts is refused (``E_USAGE``): join refuses it too unless given the
    same ``--max-parts``."""
    from oemkit._canonical import canonical_json, sha256_hex
    from oemkit.models.manifest import MANIFEST
    from oemkit.verify.bundle import Limits, scan_bundle

    if not MIN_PART_SIZE <= part_size <= MAX_BYTES:
        raise UsageError("E_USAGE", f"--size {part_size} is out of range ({MIN_PART_SIZE} "
                         f"to {MAX_BYTES} bytes)", hint="use e.g. --size 4G")
    bundle = Path(bundle)
    try:
        _file_name(bundle.name)
    except ValueError as exc:
        raise UsageError("E_USAGE", f"{bundle}: the parts are named after the bundle's "
                         f"file, and {exc}", hint="rename the bundle (e.g. NAME-VERSION.oemb) "
                         "and split it again") from None
    out = Path(out_dir) if out_dir is not None else bundle.parent
    with open_input(bundle, "bundle") as handle:
        members = scan_bundle(handle, limits or Limits())
        by_name = {m.name: m for m in members}
        handle.seek(by_name[MANIFEST].offset)
        manifest_bytes = handle.read(by_name[MANIFEST].size)
        try:
            manifest = json.loads(manifest_bytes)
            name = _pattern(manifest["name"], _BUNDLE_NAME, "name")
            version = _pattern(manifest["version"], _BUNDLE_VERSION, "version")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise VerificationError("E_MANIFEST_INVALID", f"{bundle}: the manifest is not "
                                    "valid", member=MANIFEST, check="manifest",
                                    hint="split a bundle written by 'oemkit build'") from exc
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        data_size = part_size - HEADER_SIZE
        count = -(-size // data_size)
        if count > max_parts:
            raise UsageError("E_USAGE", f"--size {part_size} cuts {bundle} ({size} bytes) "
                             f"into {count} parts, more than --max-parts {max_parts}",
                             hint="use a larger --size, or raise --max-parts (join then "
                                  "needs the same --max-parts)")
        if size > MAX_BYTES:
            raise UsageError("E_USAGE", f"{bundle} is larger than {MAX_BYTES} bytes",
                             hint="split a bundle written by 'oemkit build'")
        bundle_sha256, hashed = hash_fd(fd, 0, size, progress)
        if hashed != size:
            raise VerificationError("E_TRUNCATED", f"{bundle} shrank while it was read",
                                    hint="split a bundle nobody is writing")
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


def read_index(data: bytes, pinned: Any, what: str = "the index", *,
               max_parts: int = MAX_PARTS) -> LoadedIndex:
    """Parse an index envelope; check its signatures (if any) against the trust root.

    Cost before trust is bounded: ``data`` over :func:`index_byte_limit` is refused
    (``E_TOO_LARGE``) before it is parsed, and a signed index's signatures are checked
    over the exact payload bytes before the payload (the part list) is parsed. A signed
    index needs as many distinct, not compromised bundle-signing keys of the trust root as
    its ``bundle`` threshold. An unsigned one is accepted here: it is bound to the
    manifest digest, which the joined bundle must match and which its own signatures
    cover; its part list is parsed within the same bounds."""
    from oemkit._canonical import b64decode, canonical_json, parse_json

    limit = index_byte_limit(max_parts)
    if len(data) > limit:
        raise _index_too_large(what, len(data), limit, max_parts)
    try:
        obj = parse_json(data, what=what)  # restated below as E_INDEX_INVALID (exit 1)
        if not isinstance(obj, dict) or set(obj) != {"payload", "payloadType", "signatures"}:
            raise _bad_index("not a DSSE envelope", what)
        if obj["payloadType"] != INDEX_PAYLOAD_TYPE:
            raise _bad_index(f"payload type {_shown(obj['payloadType'])}", what)
        payload = b64decode(obj["payload"], what=f"{what} payload")
        sigs = obj["signatures"]
        if not isinstance(sigs, list) or len(sigs) > MAX_SIGNATURES:
            raise _bad_index(f"the signatures are not a list of at most {MAX_SIGNATURES}",
                             what)
        raw = []
        for s in sigs:
            if (not isinstance(s, dict) or "sig" not in s or not set(s) <= {"keyid", "sig"}
                    or not isinstance(s.get("keyid", ""), str)
                    or not isinstance(s["sig"], str) or len(s["sig"]) > 1024):
                raise _bad_index("a signature is not {keyid, sig}", what)
            raw.append(b64decode(s["sig"], what=f"{what} signature"))
        del obj, sigs
    except InputError as exc:
        raise _bad_index(exc.message, what) from exc
    signers = _index_signers(payload, raw, pinned, what) if raw else ()
    _bound_structure(payload, max_parts, what)
    try:
        doc = parse_json(payload, what=f"{what} payload")  # restated: E_INDEX_INVALID
    except InputError as exc:
        raise _bad_index(exc.message, what) from exc
    index = MediaIndex.from_dict(doc, max_parts=max_parts, what=what)
    try:
        canonical = canonical_json(doc) == payload
    except InputError:
        canonical = False
    if not canonical:
        raise _bad_index("the payload is not canonical JSON (RFC 8785), as split writes it",
                         what)
    return LoadedIndex(index, data, signers)


def _bound_structure(payload: bytes, max_parts: int, what: str) -> None:
    """Refuse, unparsed, a payload with more JSON values than an index of ``max_parts``
    parts holds. No string in a valid index contains ``{`` or ``,`` (hex digests, plain
    names, the type), so its payload has exactly ``parts + 2`` bytes ``{`` (one object
    per part, the bundle, the document) and ``6 * parts + 9`` bytes ``,``; every JSON
    object needs a ``{`` and every further array item a ``,``, so these counts bound what
    the parser would build, whatever the payload holds."""
    objects, commas = payload.count(b"{"), payload.count(b",")
    if objects > max_parts + 2 or commas > 6 * max_parts + 9:
        parts = max(objects - 2, (commas - 9) // 6)
        raise VerificationError(
            "E_LIMIT_PARTS", f"{what} holds more than {max_parts} parts (about {parts}, "
            "counted before parsing it)", check="index", expected=f"<= {max_parts}",
            actual=str(parts),
            hint="if this split is legitimate, raise the limit with --max-parts")


def _index_too_large(what: str, size: int, limit: int, max_parts: int) -> InputError:
    return InputError("E_TOO_LARGE", f"{what} is {size} bytes, more than an index of "
                      f"{max_parts} parts needs ({limit} bytes)",
                      hint="pass the .index.json file 'oemkit split' wrote; for a split of "
                           "more parts, raise --max-parts")


def _index_signers(payload: bytes, raw: Sequence[bytes], root: Any, what: str
                   ) -> tuple[str, ...]:
    """The trust root's bundle keys whose signature over ``payload`` verifies; at least
    the ``bundle`` threshold of them, none compromised, or a VerificationError."""
    from oemkit.crypto.dsse import verify_signature
    from oemkit.crypto.keys import load_public

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
    return tuple(good)


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
