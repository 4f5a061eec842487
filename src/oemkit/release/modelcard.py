"""An ONNX model card read straight from the protobuf wire format, in constant memory.

``onnx.load`` parses the whole file into memory (a 20 GB model needs 20 GB). The fields a
model card needs (IR version, opsets, producer, graph inputs and outputs, initializer
shapes) sit in small messages; the weights are large ``raw_data`` fields that this reader
seeks over. Only the protobuf wire format is implemented, not a general protobuf library.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from oemkit.errors import InputError

#: ONNX TensorProto.DataType names, as onnx.helper.tensor_dtype_to_np_dtype would call them.
DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn",
    18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4",
    23: "float4e2m1",
}
#: Messages other than tensors' raw data are small; anything bigger is not a sane model.
MAX_SMALL_MESSAGE = 16 << 20
MAX_DEPTH = 16


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, element type and shape (ints or symbolic names)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...] | None

    def describe(self) -> str:
        dims = "?" if self.shape is None else ",".join(str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass
class ModelCard:
    """What the SBOM says about an ONNX model."""

    ir_version: int = 0
    producer_name: str = ""
    producer_version: str = ""
    domain: str = ""
    model_version: int = 0
    graph_name: str = ""
    opsets: dict[str, int] = field(default_factory=dict)
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    parameter_count: int = 0
    initializers: int = 0
    nodes: int = 0
    external_data: bool = False
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ir_version": self.ir_version,
            "producer": f"{self.producer_name} {self.producer_version}".strip(),
            "domain": self.domain,
            "model_version": self.model_version,
            "graph": self.graph_name,
            "opsets": dict(sorted(self.opsets.items())),
            "inputs": [i.describe() for i in self.inputs],
            "outputs": [o.describe() for o in self.outputs],
            "parameters": self.parameter_count,
            "initializers": self.initializers,
            "nodes": self.nodes,
            "external_data": self.external_data,
        }


class _Malformed(Exception):
    pass


class _Reader:
    """Bounded wire-format reads over a seekable file."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle = handle
        self.size = size

    def varint(self) -> int:
        result = shift = 0
        while True:
            byte = self.handle.read(1)
            if not byte:
                raise _Malformed("truncated varint")
            result |= (byte[0] & 0x7F) << shift
            if not byte[0] & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise _Malformed("varint longer than 10 bytes")

    def fields(self, end: int) -> Iterator[tuple[int, int, int]]:
        """Yield (field number, wire type, value) until ``end``; for wire type 2 the value is
        the length and the file is positioned at the payload (the caller reads or skips it)."""
        while self.handle.tell() < end:
            key = self.varint()
            number, wire = key >> 3, key & 7
            if number == 0:
                raise _Malformed("field number 0")
            if wire == 0:
                yield number, wire, self.varint()
            elif wire == 1:
                yield number, wire, int.from_bytes(self._exact(8), "little")
            elif wire == 5:
                yield number, wire, int.from_bytes(self._exact(4), "little")
            elif wire == 2:
                length = self.varint()
                start = self.handle.tell()
                if start + length > end:
                    raise _Malformed("length-delimited field runs past its message")
                yield number, wire, length
                self.handle.seek(start + length)
            else:
                raise _Malformed(f"unsupported wire type {wire}")
        if self.handle.tell() != end:
            raise _Malformed("message runs past its end")

    def _exact(self, n: int) -> bytes:
        data = self.handle.read(n)
        if len(data) != n:
            raise _Malformed("truncated field")
        return data

    def small(self, length: int) -> bytes:
        if length > MAX_SMALL_MESSAGE:
            raise _Malformed(f"a {length}-byte metadata field")
        return self._exact(length)

    def text(self, length: int) -> str:
        return self.small(length).decode("utf-8", "replace")


def read_model_card(path: Path) -> ModelCard:
    """Read the model card of the ONNX file at ``path`` (InputError when it is not ONNX)."""
    card = ModelCard()
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            reader = _Reader(handle, size)
            _model(reader, card, size)
    except _Malformed as exc:
        raise InputError("E_MODEL_INVALID", f"{path.name} is not a valid ONNX model ({exc})",
                         hint="the spec's 'model' must be an ONNX file; re-export it") from None
    except OSError as exc:
        raise InputError("E_MODEL_INVALID", f"cannot read {path}: {exc.strerror}",
                         hint="check the file") from None
    if card.ir_version == 0 or not card.opsets:
        raise InputError("E_MODEL_INVALID", f"{path.name} is not an ONNX model (no IR version "
                         "or opset)", hint="the spec's 'model' must be an ONNX file")
    return card


def _model(r: _Reader, card: ModelCard, end: int) -> None:
    for number, wire, value in r.fields(end):
        if number == 1 and wire == 0:
            card.ir_version = value
        elif number == 2 and wire == 2:
            card.producer_name = r.text(value)
        elif number == 3 and wire == 2:
            card.producer_version = r.text(value)
        elif number == 4 and wire == 2:
            card.domain = r.text(value)
        elif number == 5 and wire == 0:
            card.model_version = value
        elif number == 7 and wire == 2:
            _graph(r, card, r.handle.tell() + value)
        elif number == 8 and wire == 2:
            domain, version = _opset(r, r.handle.tell() + value)
            card.opsets[domain or "ai.onnx"] = version
        elif number == 14 and wire == 2:
            key, val = _string_pair(r, r.handle.tell() + value)
            card.metadata[key] = val


def _graph(r: _Reader, card: ModelCard, end: int) -> None:
    initializer_names: set[str] = set()
    inputs: list[TensorSpec] = []
    for number, wire, value in r.fields(end):
        if wire != 2:
            continue
        if number == 1:
            card.nodes += 1
        elif number == 2:
            card.graph_name = r.text(value)
        elif number == 5:
            name, count, external = _tensor(r, r.handle.tell() + value)
            initializer_names.add(name)
            card.initializers += 1
            card.parameter_count += count
            card.external_data |= external
        elif number == 11:
            inputs.append(_value_info(r, r.handle.tell() + value))
        elif number == 12:
            card.outputs.append(_value_info(r, r.handle.tell() + value))
    # Before IR 4, initializers were also listed as graph inputs.
    card.inputs = [i for i in inputs if i.name not in initializer_names]


def _tensor(r: _Reader, end: int) -> tuple[str, int, bool]:
    dims: list[int] = []
    name = ""
    external = False
    for number, wire, value in r.fields(end):
        if number == 1 and wire == 0:
            dims.append(value)
        elif number == 1 and wire == 2:  # packed dims
            stop = r.handle.tell() + value
            while r.handle.tell() < stop:
                dims.append(r.varint())
        elif number == 8 and wire == 2:
            name = r.text(value)
        elif number == 14 and wire == 0:
            external = value == 1
    return name, math.prod(dims) if dims else 1, external


def _value_info(r: _Reader, end: int) -> TensorSpec:
    name, dtype, shape = "", "?", None
    for number, wire, value in r.fields(end):
        if number == 1 and wire == 2:
            name = r.text(value)
        elif number == 2 and wire == 2:
            dtype, shape = _type(r, r.handle.tell() + value)
    return TensorSpec(name, dtype, shape)


def _type(r: _Reader, end: int) -> tuple[str, tuple[int | str, ...] | None]:
    dtype, shape = "?", None
    for number, wire, value in r.fields(end):
        if number == 1 and wire == 2:  # tensor_type
            for n2, w2, v2 in r.fields(r.handle.tell() + value):
                if n2 == 1 and w2 == 0:
                    dtype = DTYPES.get(v2, f"type{v2}")
                elif n2 == 2 and w2 == 2:
                    shape = _shape(r, r.handle.tell() + v2)
        elif wire == 2:
            dtype = {4: "sequence", 5: "map", 8: "sparse_tensor", 9: "optional"}.get(
                number, dtype)
    return dtype, shape


def _shape(r: _Reader, end: int) -> tuple[int | str, ...]:
    dims: list[int | str] = []
    for number, wire, value in r.fields(end):
        if number == 1 and wire == 2:
            dim: int | str = "?"
            for n2, w2, v2 in r.fields(r.handle.tell() + value):
                if n2 == 1 and w2 == 0:
                    dim = v2
                elif n2 == 2 and w2 == 2:
                    dim = r.text(v2)
            dims.append(dim)
    return tuple(dims)


def _opset(r: _Reader, end: int) -> tuple[str, int]:
    domain, version = "", 0
    for number, wire, value in r.fields(end):
        if number == 1 and wire == 2:
            domain = r.text(value)
        elif number == 2 and wire == 0:
            version = value
    return domain, version


def _string_pair(r: _Reader, end: int) -> tuple[str, str]:
    key = val = ""
    for number, wire, value in r.fields(end):
        if number == 1 and wire == 2:
            key = r.text(value)
        elif number == 2 and wire == 2:
            val = r.text(value)
    return key, val


def tensor_regions(path: Path) -> list[tuple[str, int, int]]:
    """The initializer tensors of the ONNX file at ``path``: (name, start, end) of each
    ``TensorProto`` message's bytes, in file order (``oemkit delta`` matches them by name).
    Seeks over the weights; InputError ``E_MODEL_INVALID`` when it is not ONNX."""
    regions: list[tuple[str, int, int]] = []
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            r = _Reader(handle, size)
            for number, wire, value in r.fields(size):
                if number == 7 and wire == 2:
                    graph_end = handle.tell() + value
                    for g_number, g_wire, g_value in r.fields(graph_end):
                        if g_number == 5 and g_wire == 2:
                            start = handle.tell()
                            name, _, _ = _tensor(r, start + g_value)
                            regions.append((name, start, start + g_value))
    except _Malformed as exc:
        raise InputError("E_MODEL_INVALID", f"{path.name} is not a valid ONNX model ({exc})",
                         hint="re-export the model") from None
    except OSError as exc:
        raise InputError("E_MODEL_INVALID", f"cannot read {path}: {exc.strerror}",
                         hint="check the file") from None
    return regions
