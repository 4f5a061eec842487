"""``split_bundle``: a bundle cut into numbered parts and their index (docs/MEDIA.md)."""


from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit._fs import (
    RangeReader,
    atomic_output,
    atomic_write_bytes,
    hash_fd,
    open_input,
    start_writeback,
)
from oemkit.errors import EnvironmentProblem, UsageError, VerificationError
from oemkit.host.media.index import (
    _BUNDLE_NAME,
    _BUNDLE_VERSION,
    HEADER_SIZE,
    INDEX_SUFFIX,
    MAX_BYTES,
    MAX_PARTS,
    MIN_PART_SIZE,
    MediaIndex,
    PartEntry,
    PartHeader,
    ProgressFn,
    _envelope,
    _file_name,
    _pattern,
    part_name,
)

if TYPE_CHECKING:
    from oemkit.verify.bundle import Limits

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
