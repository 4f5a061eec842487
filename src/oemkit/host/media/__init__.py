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

The package: ``index`` (the formats, signing and reading an index), ``split`` and ``join``
(the work area too); every name is importable from ``oemkit.host.media`` as before.
"""

from __future__ import annotations

# Tests patch os functions through this module (media.os.pwrite, media.os.link).
import os as os

from oemkit.host.media.index import (
    HEADER_SIZE,
    INDEX_BASE_BYTES,
    INDEX_BYTES_PER_PART,
    INDEX_PAYLOAD_TYPE,
    INDEX_SUFFIX,
    INDEX_TYPE,
    MAX_BYTES,
    MAX_PARTS,
    MAX_SIGNATURES,
    MIN_PART_SIZE,
    PART_MAGIC,
    PART_VERSION,
    LoadedIndex,
    MediaIndex,
    PartEntry,
    PartHeader,
    ProgressFn,
    bundle_file_name,
    index_byte_limit,
    parse_size,
    part_name,
    read_index,
)
from oemkit.host.media.index import (
    _envelope as _envelope,
)
from oemkit.host.media.join import (
    JoinPlan,
    JoinResult,
    PartsError,
    Problem,
    default_work_dir,
    find_index,
    join_parts,
    plan_join,
    work_dir_for,
)
from oemkit.host.media.join import (
    _Work as _Work,
)
from oemkit.host.media.split import (
    SplitResult,
    split_bundle,
)

__all__ = [
    "HEADER_SIZE",
    "INDEX_BASE_BYTES",
    "INDEX_BYTES_PER_PART",
    "INDEX_PAYLOAD_TYPE",
    "INDEX_SUFFIX",
    "INDEX_TYPE",
    "MAX_BYTES",
    "MAX_PARTS",
    "MAX_SIGNATURES",
    "MIN_PART_SIZE",
    "PART_MAGIC",
    "PART_VERSION",
    "JoinPlan",
    "JoinResult",
    "LoadedIndex",
    "MediaIndex",
    "PartEntry",
    "PartHeader",
    "PartsError",
    "Problem",
    "ProgressFn",
    "SplitResult",
    "bundle_file_name",
    "default_work_dir",
    "find_index",
    "index_byte_limit",
    "join_parts",
    "parse_size",
    "part_name",
    "plan_join",
    "read_index",
    "split_bundle",
    "work_dir_for",
]
