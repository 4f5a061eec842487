"""Fuzz the bundle reader: ``verify_open_bundle`` on a BytesIO, pinned to the corpus root.

Modes (first byte of the input, modulo 10):

0. the bytes are the whole bundle;
1. the bytes are the inner payload tar, zstd-compressed here, in a signed bundle;
2. the bytes are ``payload.tar.zst`` itself, in a signed bundle;
3. the bytes are the manifest, bound by a freshly signed provenance;
4. the bytes are the signature member of the control bundle;
5. the bytes are the provenance, signed by the trusted bundle key;
6. the bytes are a carried ``trust/root-5.json``, listed in a signed manifest;
7. the bytes are a carried ``revocations.crl``, listed in a signed manifest;
8. the bytes are the SBOM, listed in a signed manifest;
9. the bytes are the pinned trust root, verifying the control bundle.

The bundle is handed over as a ``BytesIO``. If ``verify_open_bundle`` cannot read one
(a reader that needs ``fileno()``), that is reported once on stderr and the bytes are
handed over as an in-memory file with a descriptor instead, so fuzzing can go on.

Run: ``python fuzz/run.py bundle SECONDS`` (or ``nox -s fuzz -- SECONDS``).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus_files, main, pick

MODES = 10
_S: dict[str, Any] = {}


def setup() -> None:
    if _S:
        return
    import zstandard
    from _common import CORPUS

    from hostile import make_corpus
    from oemkit._fs import write_member  # noqa: F401  (instrumented with the rest)
    from oemkit.verify import bundle, license, sbom, trust  # noqa: F401
    from oemkit.verify.bundle import verify_open_bundle
    from oemkit.verify.trust import parse_root

    keys = make_corpus.load_keys()
    forge = make_corpus.Forge(keys)
    control = forge.parts()
    parts = dict(control)
    _S.update(
        verify=verify_open_bundle, forge=forge, control=control, parts=parts,
        outer=make_corpus.outer, zstd=zstandard.ZstdCompressor(level=1),
        root=parse_root((CORPUS / make_corpus.TRUST).read_bytes()).root,
        control_bytes=(CORPUS / "control-bundle-valid.oemb").read_bytes(),
        sig_name=next(n for n, _ in control if n.startswith("signatures/")),
    )
    try:
        verify_open_bundle(io.BytesIO(_S["control_bytes"]), _S["root"])
        _S["open"] = io.BytesIO
    except io.UnsupportedOperation as exc:
        from _common import memory_file

        print(f"fuzz_bundle: verify_open_bundle cannot read a BytesIO ({exc!r}); fuzzing "
              "through memfd files instead", file=sys.stderr)
        _S["open"] = memory_file


def _bundle(mode: int, data: bytes) -> bytes:
    forge, parts = _S["forge"], _S["parts"]
    sbom = parts["sbom.cdx.json"]
    if mode == 0:
        return data
    if mode == 1:
        return _S["outer"](forge.parts(payload=_S["zstd"].compress(data), sbom=sbom))
    if mode == 2:
        return _S["outer"](forge.parts(payload=data, sbom=sbom))
    if mode == 3:
        return _S["outer"](forge.parts(manifest_bytes=data, sbom=sbom))
    if mode == 4:
        return _S["outer"]([(n, data if n == _S["sig_name"] else d) for n, d in _S["control"]])
    if mode == 5:
        return _S["outer"](forge.parts(provenance_bytes=data, sbom=sbom))
    if mode == 6:
        return _S["outer"](forge.parts(extra=[("trust/root-5.json", data)], sbom=sbom))
    if mode == 7:
        return _S["outer"](forge.parts(extra=[("revocations.crl", data)], sbom=sbom))
    return _S["outer"](forge.parts(sbom=data))


def run(data: bytes) -> Any:
    setup()
    mode, rest = pick(data, MODES)
    bundle, pinned = (_S["control_bytes"], rest) if mode == 9 else (_bundle(mode, rest),
                                                                    _S["root"])
    handle = _S["open"](bundle)
    try:
        return _S["verify"](handle, pinned)
    finally:
        handle.close()


def check(data: bytes) -> None:
    """Replay one input (tests): an OemkitError is fine, anything else raises."""
    from _common import guarded

    guarded(run)(data)


def seeds() -> list[bytes]:
    setup()
    parts = _S["parts"]
    from hostile import make_corpus

    out = [bytes([0]) + d for _, d in corpus_files("bundle")]
    out += [bytes([9]) + d for _, d in corpus_files("trust-root")]
    inner = make_corpus.tar_bytes([make_corpus.regular(p, d, m) for p, d, m in make_corpus.FILES])
    out += [bytes([1]) + inner, bytes([2]) + parts["payload.tar.zst"],
            bytes([3]) + parts["oemkit-bundle.json"], bytes([4]) + parts[_S["sig_name"]],
            bytes([5]) + parts["provenance.intoto.json"],
            bytes([6]) + (make_corpus.CORPUS / make_corpus.TRUST).read_bytes(),
            bytes([7]) + (make_corpus.CORPUS / "control-crl-valid.crl").read_bytes(),
            bytes([8]) + parts["sbom.cdx.json"]]
    return out


if __name__ == "__main__":
    main("bundle", setup, run)
