"""Fuzz the spec and profile loaders: ``oemkit.schema.load_yaml`` + ``validate``.

Modes (first byte of the input, modulo 3):

0. the bytes are a bundle spec: ``load_yaml`` then ``validate`` against bundle.schema.json;
1. the bytes are a hardware profile (``host.profiles._from_yaml``: load, validate,
   build the Profile);
2. the bytes are written as ``bundle.yaml`` into a scratch directory and ``load_spec``
   resolves it there. The directory holds a model, a file, a sub-directory, a symlink to
   itself, a dangling symlink and one pointing outside, so path rules are exercised.

Run: ``python fuzz/run.py spec SECONDS`` (or ``nox -s fuzz -- SECONDS``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus_files, main, pick

MODES = 3
_S: dict[str, Any] = {}


def setup() -> None:
    if _S:
        return
    import atexit
    import os
    import shutil
    import tempfile

    from _common import CORPUS

    from oemkit.host.profiles import _from_yaml
    from oemkit.release.spec import load_spec
    from oemkit.schema import load_yaml, validate

    folder = Path(tempfile.mkdtemp(prefix="oemkit-fuzz-spec-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "spec-model.onnx").write_bytes((CORPUS / "spec-model.onnx").read_bytes())
    (folder / "a.txt").write_text("a\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.txt").write_text("b\n")
    os.symlink(".", folder / "loop")
    os.symlink("nowhere", folder / "gone")
    os.symlink("/etc", folder / "etc")
    _S.update(load_yaml=load_yaml, validate=validate, profile=_from_yaml,
              load_spec=load_spec, spec=folder / "bundle.yaml")


def run(data: bytes) -> Any:
    setup()
    mode, rest = pick(data, MODES)
    if mode == 0:
        value, lines = _S["load_yaml"](rest, "bundle.yaml")
        return _S["validate"](value, "bundle.schema.json", "bundle.yaml", lines)
    if mode == 1:
        return _S["profile"](rest, "fuzz.yaml")
    _S["spec"].write_bytes(rest)
    return _S["load_spec"](_S["spec"])


def check(data: bytes) -> None:
    """Replay one input (tests): an OemkitError is fine, anything else raises."""
    from _common import guarded

    guarded(run)(data)


def seeds() -> list[bytes]:
    from _common import REPO

    specs = [d for _, d in corpus_files("spec")]
    specs.append((REPO / "bundles" / "example" / "bundle.yaml").read_bytes())
    profiles = [d for _, d in corpus_files("profile")]
    profiles += [p.read_bytes() for p in sorted((REPO / "src" / "oemkit" / "profiles")
                                                 .glob("*.yaml"))]
    return ([bytes([0]) + d for d in specs] + [bytes([1]) + d for d in profiles]
            + [bytes([2]) + d for d in specs])


if __name__ == "__main__":
    main("spec", setup, run)
