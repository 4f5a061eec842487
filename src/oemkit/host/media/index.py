"""The media formats and the index: part headers, index entries, sizes, signing the index
(a DSSE envelope) and reading one back as the hostile input it is (docs/MEDIA.md)."""


from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from oemkit.errors import InputError, UsageError, VerificationError

if TYPE_CHECKING:
    pass


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


# --------------------------------------------------------------------------- signing the index


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
