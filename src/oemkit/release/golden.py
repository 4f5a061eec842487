"""Build's check of the golden data against the model: names, dtypes and shapes.

``oemkit build`` refuses golden inputs and outputs that the model could never accept or
produce, so that a typo costs a rebuild in the release job instead of a failed smoke test
on a disconnected host. The model's graph inputs and outputs come from the same
constant-memory protobuf reader the SBOM's model card uses (``release/modelcard.py``):
the check is the same whether or not the ``onnx`` package is installed, and a 20 GB model
is never loaded. Golden files are JSON ``{"NAME": {"dtype", "shape", "data"}}`` (data
flattened row-major; a non-tensor output, a sequence or a map, as ``{"seq": [...]}``) or a
NumPy ``.npz``. Keys starting with ``_`` in an outputs file are not outputs (the runner's
own ``_timings_ms`` and ``_providers``), so a runner's output file is a golden file.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oemkit._fs import read_input
from oemkit.errors import InputError
from oemkit.release.modelcard import ModelCard, TensorSpec

#: Golden files are read whole; a bigger one is not a sane test vector.
MAX_GOLDEN = 256 << 20
#: dtype names as NumPy writes them (``str(array.dtype)``) for ONNX's tensor types.
_NUMERIC = frozenset({
    "float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8",
    "uint16", "uint32", "uint64", "bool", "complex64", "complex128"})
_STRING = re.compile(r"(?:string|str|object|bytes|[<>|=]?[USO]\d*)")
#: Model value types that are not tensors: their golden outputs are ``{"seq": [...]}``.
NON_TENSOR = frozenset({"sequence", "map", "optional", "sparse_tensor"})
HINT = ("make golden data from the model with 'oemkit init NAME --model MODEL' (or "
        "regenerate it), or fix the file (docs/SPEC.md#golden-data)")


@dataclass(frozen=True)
class Golden:
    """One golden tensor as a file states it: dtype (normalised), shape, value count."""

    name: str
    dtype: str | None
    shape: tuple[int, ...] | None
    count: int | None
    sequence: bool = False


def dtype_name(text: str) -> str | None:
    """A golden dtype as the model card names it (``float32``, ``string``), or None."""
    if text in _NUMERIC:
        return text
    if _STRING.fullmatch(text):
        return "string"
    return None


def _shape_text(shape: tuple[int | str, ...] | None) -> str:
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


class _Checker:
    """Checks the golden files of one spec against one model card."""

    def __init__(self, spec_name: str, card: ModelCard) -> None:
        self.where = f"{spec_name}: golden"
        self.card = card
        self.bound: dict[str, tuple[int, str]] = {}  # symbolic dim -> (value, tensor)

    def fail(self, key: str, message: str, *, expected: str | None = None,
             actual: str | None = None) -> InputError:
        return InputError("E_GOLDEN_INVALID", f"{self.where}: {message}", hint=HINT,
                          field=f"golden.{key}", expected=expected, actual=actual)

    def load(self, key: str, rel: str, path: Path, outputs: bool) -> dict[str, Golden]:
        if path.suffix == ".npz":
            return self._load_npz(key, rel, path)
        data = read_input(path, f"golden {key}", MAX_GOLDEN)
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise self.fail(key, f"{rel} is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise self.fail(key, f"{rel} must be a JSON object of tensors by name")
        found = {}
        for name, value in doc.items():
            if outputs and name.startswith("_"):
                continue  # the runner's _timings_ms, _providers
            found[name] = self._entry(key, rel, name, value)
        return found

    def _entry(self, key: str, rel: str, name: str, value: Any) -> Golden:
        what = f"{rel}: {'output' if key == 'outputs' else 'input'} {name!r}"
        if isinstance(value, dict) and "seq" in value:
            if not isinstance(value["seq"], list):
                raise self.fail(key, f"{what}: seq must be a list")
            return Golden(name, None, None, None, sequence=True)
        if not isinstance(value, dict) or not {"shape", "data"} <= set(value):
            raise self.fail(key, f"{what} needs dtype, shape and data (or seq)")
        shape, data = value["shape"], value["data"]
        if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
            raise self.fail(key, f"{what}: shape must be a list of integers >= 0, not "
                            f"{json.dumps(shape)}")
        if not isinstance(data, list):
            raise self.fail(key, f"{what}: data must be a flat list")
        if math.prod(shape) != len(data):
            raise self.fail(key, f"{what}: shape {_shape_text(tuple(shape))} holds "
                            f"{math.prod(shape)} values, data has {len(data)}",
                            expected=str(math.prod(shape)), actual=str(len(data)))
        dtype = value.get("dtype")
        if dtype is not None and (not isinstance(dtype, str) or dtype_name(dtype) is None):
            raise self.fail(key, f"{what}: {json.dumps(dtype)} is not a dtype (write a NumPy "
                            "name: float32, int64, bool, ...)")
        return Golden(name, dtype_name(dtype) if dtype else None, tuple(shape), len(data))

    def _load_npz(self, key: str, rel: str, path: Path) -> dict[str, Golden]:
        import zipfile

        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as archive:
                return {name: Golden(name, "string" if archive[name].dtype.kind in "USO"
                                     else archive[name].dtype.name,
                                     tuple(archive[name].shape), int(archive[name].size))
                        for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise self.fail(key, f"{rel} is not a readable .npz archive: {exc}") from None

    def match(self, key: str, rel: str, golden: dict[str, Golden],
              model: list[TensorSpec]) -> None:
        kind = "output" if key == "outputs" else "input"
        names = [t.name for t in model]
        listed = ", ".join(names) or "none"
        for name in golden:
            if name not in names:
                raise self.fail(key, f"{rel}: {name!r} is not an {kind} of the model (its "
                                f"{kind}s: {listed})", expected=listed, actual=name)
        if key == "inputs":
            for name in names:
                if name not in golden:
                    raise self.fail(key, f"{rel} lacks the model input {name!r}",
                                    expected=listed, actual=", ".join(golden) or "none")
        for spec in model:
            if spec.name in golden:
                self._tensor(key, f"{rel}: {kind} {spec.name!r}", golden[spec.name], spec)

    def _tensor(self, key: str, what: str, got: Golden, spec: TensorSpec) -> None:
        if spec.dtype in NON_TENSOR:
            if not got.sequence and key == "outputs":
                raise self.fail(key, f"{what} is a tensor, the model's is a {spec.dtype} "
                                "(write it as {\"seq\": [...]})", expected=spec.dtype,
                                actual="tensor")
            return
        if got.sequence:
            raise self.fail(key, f"{what} is a sequence, the model's is a {spec.dtype} tensor",
                            expected=spec.dtype, actual="sequence")
        known = spec.dtype in _NUMERIC or spec.dtype == "string"
        if got.dtype is not None and known and got.dtype != spec.dtype:
            raise self.fail(key, f"{what} is {got.dtype}, the model's is {spec.dtype}",
                            expected=spec.dtype, actual=got.dtype)
        if spec.shape is None or got.shape is None:
            return
        expected, actual = _shape_text(spec.shape), _shape_text(got.shape)
        if len(spec.shape) != len(got.shape) or any(
                type(want) is int and want > 0 and want != have
                for want, have in zip(spec.shape, got.shape, strict=True)):
            raise self.fail(key, f"{what} has shape {actual}, the model's is {expected}",
                            expected=expected, actual=actual)
        for want, have in zip(spec.shape, got.shape, strict=True):
            if isinstance(want, str) and want not in ("", "?"):
                value, first = self.bound.setdefault(want, (have, what))
                if value != have:
                    raise self.fail(key, f"{what} has shape {actual}, but {want!r} is {value} "
                                    f"in {first}", expected=f"{want} = {value}",
                                    actual=f"{want} = {have}")


def check_golden(spec_name: str, section: dict[str, Any], files: dict[str, Path],
                 card: ModelCard) -> None:
    """Check a spec's ``golden`` section's files (``files``: payload path -> source file)
    against the model's graph (``card``): every model input given and no other name, every
    golden output one of the model's, dtypes equal, shapes of the model's rank with its
    fixed dimensions, a symbolic dimension (``batch``) the same size everywhere.

    Raises:
        InputError: E_GOLDEN_INVALID (exit 3) naming the file and the tensor, with
            ``field`` (golden.inputs or golden.outputs), ``expected`` and ``actual``.
    """
    checker = _Checker(spec_name, card)
    for key, model in (("inputs", card.inputs), ("outputs", card.outputs)):
        rel = section[key]
        golden = checker.load(key, rel, files[rel], outputs=key == "outputs")
        checker.match(key, rel, golden, model)
