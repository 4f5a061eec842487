"""Fuzz the media index and part readers of ``join``: ``oemkit.host.media.read_index``
(the DSSE envelope, its signatures against the pinned root, ``MediaIndex.from_dict``) and
``plan_join`` / ``JoinPlan.run`` (part headers against the index, then copy, verify and
publish). The index and the parts come from removable media: anyone can write them.

Modes (first byte of the input, modulo 6):

0. the bytes are an index file, read by ``read_index`` pinned to the corpus root;
1. the bytes are an index payload (the JSON ``split`` signs), in an unsigned envelope;
2. the bytes are an index payload, signed here by the trusted bundle key;
3. the bytes are an index file, given to ``plan_join`` with the real parts, then joined
   (``--out`` in a scratch folder, never the working directory);
4. the bytes replace part 1 of a real split, joined with the real unsigned index;
5. the bytes are an extra file given beside the real parts and index (a foreign,
   duplicated or damaged part), joined.

Seeds: the corpus control bundle split at seed time (deterministic: fixed bundle, part
size 4096) unsigned and signed with the corpus bundle key, its parts and indexes; plus every
corpus case that is a media index envelope (its payload type).

Run: ``python fuzz/run.py media SECONDS`` (or ``nox -s fuzz -- SECONDS``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus_files, main, pick

MODES = 6
PART_SIZE = 4096
_S: dict[str, Any] = {}


def setup() -> None:
    if _S:
        return
    import atexit
    import json
    import shutil
    import tempfile

    from _common import CORPUS

    from hostile import make_corpus
    from oemkit._canonical import b64decode
    from oemkit.host import media
    from oemkit.verify import bundle, trust  # noqa: F401  (instrumented with the rest)
    from oemkit.verify.trust import parse_root

    keys = make_corpus.load_keys()
    folder = Path(tempfile.mkdtemp(prefix="oemkit-fuzz-media-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    source = folder / "src" / "hostile-1.0.0.oemb"
    source.parent.mkdir()
    source.write_bytes((CORPUS / "control-bundle-valid.oemb").read_bytes())
    unsigned = media.split_bundle(source, PART_SIZE, folder / "unsigned")
    signed = media.split_bundle(source, PART_SIZE, folder / "signed", keys=[keys["bundle"]])
    index_bytes = unsigned.index.read_bytes()
    _S.update(
        media=media, keys=keys, pinned=(CORPUS / make_corpus.TRUST).read_bytes(),
        root=parse_root((CORPUS / make_corpus.TRUST).read_bytes()).root,
        index=index_bytes, signed_index=signed.index.read_bytes(),
        payload=b64decode(json.loads(index_bytes)["payload"], what="index"),
        parts=[p.read_bytes() for p in unsigned.parts],
        part_names=[p.name for p in unsigned.parts], index_name=unsigned.index.name,
        scratch=folder / "run",
    )
    result = _join(index_bytes, _S["parts"])
    assert result.report.ok, result.report.to_dict()  # the harness itself works


def _envelope(payload: bytes, signed: bool) -> bytes:
    keys = [_S["keys"]["bundle"]] if signed else []
    return bytes(_S["media"]._envelope(payload, keys))


def _join(index: bytes, parts: list[bytes], extra: bytes | None = None) -> Any:
    import shutil

    scratch: Path = _S["scratch"]
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    paths = []
    for name, data in zip(_S["part_names"], parts, strict=True):
        (scratch / name).write_bytes(data)
        paths.append(scratch / name)
    if extra is not None:
        (scratch / "extra.bin").write_bytes(extra)  # no part number in the name
        paths.append(scratch / "extra.bin")
    index_path = scratch / _S["index_name"]
    index_path.write_bytes(index)
    media = _S["media"]
    return media.join_parts([index_path, *paths], _S["pinned"], out=scratch / "out" / "b.oemb")


def run(data: bytes) -> Any:
    setup()
    mode, rest = pick(data, MODES)
    if mode in (0, 1, 2):
        index = rest if mode == 0 else _envelope(rest, signed=mode == 2)
        return _S["media"].read_index(index, _S["root"], what="fuzz.index.json")
    if mode == 3:
        return _join(rest, _S["parts"])
    if mode == 4:
        return _join(_S["index"], [rest, *_S["parts"][1:]])
    return _join(_S["index"], _S["parts"], extra=rest)


def check(data: bytes) -> None:
    """Replay one input (tests): an OemkitError is fine, anything else raises."""
    from _common import guarded

    guarded(run)(data)


def media_index_type(data: bytes) -> bool:
    """Whether a corpus file looks like a media index envelope (its payload type)."""
    return _S["media"].INDEX_PAYLOAD_TYPE.encode() in data


def seeds() -> list[bytes]:
    setup()
    indexes = [_S["index"], _S["signed_index"],
               *(d for _, d in corpus_files("cli") if media_index_type(d))]
    out = [bytes([0]) + d for d in indexes]
    out += [bytes([1]) + _S["payload"], bytes([2]) + _S["payload"]]
    out += [bytes([3]) + d for d in indexes]
    out += [bytes([4]) + _S["parts"][0]]
    out += [bytes([5]) + p for p in _S["parts"]]
    return out


if __name__ == "__main__":
    main("media", setup, run)
