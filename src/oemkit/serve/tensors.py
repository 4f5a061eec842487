"""Open Inference Protocol v2 tensors: the JSON and binary wire forms, to and from numpy.

Pure (bytes and parsed JSON in, numpy arrays or bytes out), so every malformed request is
a unit test away. The wire rules follow the KServe v2 / Triton HTTP protocol and its
binary tensor data extension: a request body may start with ``Inference-Header-Content-
Length`` bytes of JSON followed by the raw tensors, in input order, each announced by its
``parameters.binary_data_size``; BYTES elements are a 4-byte little-endian length and the
bytes. A bad tensor raises :class:`ProtocolError` carrying the HTTP status and a message
that names the tensor, which the app turns into the protocol's ``{"error": ...}`` JSON.

JSON goes through orjson both ways: on the example model, the standard library's float
formatting alone was a sixth of a worker's time per request, and orjson writes a numpy
array's elements straight from its buffer (FP32 as the shortest text that reads back as the
same FP32). NaN and infinities, which orjson cannot write, fall back to the standard
library's ``NaN``/``Infinity`` (what Triton's and KServe's Python clients read).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import numpy as np

#: OIP datatype -> numpy dtype name (BYTES is an object array of ``bytes``).
DATATYPES: dict[str, str] = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
    "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "object",
}
#: onnxruntime's type strings -> OIP datatype.
ORT_TYPES: dict[str, str] = {
    "tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(int8)": "INT8",
    "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
#: Most dimensions and elements one tensor may declare (a shape is untrusted input).
MAX_DIMS = 16
MAX_ELEMENTS = 1 << 28
HEADER = "inference-header-content-length"


class ProtocolError(Exception):
    """A request the protocol refuses: ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, code: str = "E_REQUEST_INVALID") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass
class InferRequest:
    """A decoded inference request: input arrays by name, the outputs asked for (None: all)
    with whether each is wanted as binary, and the request's id and parameters."""

    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    binary_output_default: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of a request's ``outputs``: a name, binary or JSON, and for the
    classification extension the number of top classes wanted (0: the raw tensor)."""

    name: str
    binary: bool | None = None
    classification: int = 0


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_DIMS:
        raise ProtocolError(f"{where}: 'shape' must be a list of at most {MAX_DIMS} integers")
    for dim in value:
        if type(dim) is not int or dim < 0:
            raise ProtocolError(f"{where}: 'shape' must hold integers >= 0, not {dim!r}")
    if math.prod(value) > MAX_ELEMENTS:
        raise ProtocolError(f"{where}: shape {value} holds more than {MAX_ELEMENTS} elements",
                            status=413, code="E_REQUEST_TOO_LARGE")
    return tuple(value)


def _flatten(data: Any, where: str) -> list[Any]:
    """Row-major flattening of JSON ``data`` (flat or nested lists)."""
    if not isinstance(data, list):
        return [data]
    if list not in set(map(type, data)):  # map/set run in C: this is per element
        return data
    out: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) > MAX_DIMS:
                    raise ProtocolError(f"{where}: 'data' is nested deeper than {MAX_DIMS}")
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _from_json(datatype: str, shape: tuple[int, ...], data: Any, where: str) -> np.ndarray:
    import numpy as np

    flat = _flatten(data, where)
    count = math.prod(shape)
    if len(flat) != count:
        raise ProtocolError(f"{where}: 'data' has {len(flat)} elements, shape {list(shape)} "
                            f"needs {count}")
    if datatype == "BYTES":
        items = [item.encode("utf-8") if isinstance(item, str) else None for item in flat]
        if any(item is None for item in items):
            raise ProtocolError(f"{where}: BYTES data must be strings")
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    kinds = set(map(type, flat))  # the element types, found in C (bool is not an int here)
    if datatype == "BOOL":
        if not kinds <= {bool}:
            raise ProtocolError(f"{where}: BOOL data must be true or false")
    elif not kinds <= {int, float}:
        raise ProtocolError(f"{where}: {datatype} data must be numbers")
    elif float in kinds and datatype.startswith(("INT", "UINT")):
        raise ProtocolError(f"{where}: {datatype} data must be integers")
    try:
        array = np.asarray(flat, dtype=DATATYPES[datatype])
    except (OverflowError, ValueError) as exc:
        raise ProtocolError(f"{where}: {datatype} data out of range: {exc}") from None
    return array.reshape(shape)


def _from_binary(datatype: str, shape: tuple[int, ...], raw: bytes | memoryview,
                 where: str) -> np.ndarray:
    import numpy as np
    count = math.prod(shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        view, pos = memoryview(raw), 0
        while pos < len(view):
            if pos + 4 > len(view):
                raise ProtocolError(f"{where}: BYTES element {len(items)} is truncated")
            (length,) = struct.unpack_from("<I", view, pos)
            pos += 4
            if pos + length > len(view):
                raise ProtocolError(f"{where}: BYTES element {len(items)} is truncated")
            items.append(bytes(view[pos:pos + length]))
            pos += length
        if len(items) != count:
            raise ProtocolError(f"{where}: {len(items)} BYTES elements, shape {list(shape)} "
                                f"needs {count}")
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = np.dtype(DATATYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise ProtocolError(f"{where}: binary data is {len(raw)} bytes, shape {list(shape)} "
                            f"of {datatype} needs {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False) \
        .reshape(shape)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where} must be a JSON object")
    return value


def _parameters(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    params = item.get("parameters", {})
    return _object(params, f"{where}.parameters")


def _header_length(headers: Mapping[str, str], body_len: int) -> int | None:
    value = headers.get(HEADER)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 20) or int(value) > body_len:
        raise ProtocolError(f"the {HEADER} header must be an integer no larger than the body "
                            f"({body_len} bytes), not {value!r}")
    return int(value)


def _loads(data: bytes | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise ProtocolError(f"the request body is not valid JSON: {exc}") from None


def _input(index: int, raw_item: Any, binary: memoryview, offset: int,
           seen: Mapping[str, Any]) -> tuple[str, np.ndarray, int]:
    """One entry of ``inputs``: its name, array, and the binary offset after it."""
    item = _object(raw_item, f"inputs[{index}]")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"inputs[{index}] needs a 'name'")
    where = f"input '{name}'"
    if name in seen:
        raise ProtocolError(f"{where} is given twice")
    datatype = item.get("datatype")
    if datatype not in DATATYPES:
        raise ProtocolError(f"{where}: unknown datatype {datatype!r} (one of "
                            f"{', '.join(DATATYPES)})")
    shape = _shape(item.get("shape"), where)
    size = _parameters(item, where).get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise ProtocolError(f"{where}: binary_data_size {size!r} runs past the "
                                f"{len(binary)} bytes of binary data")
        return name, _from_binary(datatype, shape, binary[offset:offset + size], where), \
            offset + size
    if "data" in item:
        return name, _from_json(datatype, shape, item["data"], where), offset
    raise ProtocolError(f"{where} has neither 'data' nor binary_data_size")


def decode_request(body: bytes, headers: Mapping[str, str]) -> InferRequest:
    """Parse an infer request body (JSON, or JSON then binary tensors).

    Raises:
        ProtocolError: 400 for malformed JSON, fields, datatypes, shapes or binary sizes;
            413 for a shape with more than MAX_ELEMENTS elements.
    """
    json_len = _header_length(headers, len(body))
    head = body if json_len is None else memoryview(body)[:json_len]
    doc = _object(_loads(head), "the request")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("the request needs 'inputs': a non-empty list of tensors")
    binary = memoryview(body)[json_len:] if json_len is not None else memoryview(b"")
    offset = 0
    arrays: dict[str, np.ndarray] = {}
    for index, raw_item in enumerate(inputs):
        name, array, offset = _input(index, raw_item, binary, offset, arrays)
        arrays[name] = array
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data follow the last "
                            f"tensor")
    params = _parameters(doc, "the request")
    default_binary = params.get("binary_data_output") is True
    outputs = _requested(doc.get("outputs"))
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("the request's 'id' must be a string")
    return InferRequest(arrays, outputs, request_id, default_binary, params)


def _requested(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ProtocolError("'outputs' must be a list")
    out = []
    for index, raw in enumerate(value):
        item = _object(raw, f"outputs[{index}]")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"outputs[{index}] needs a 'name'")
        params = _parameters(item, f"output '{name}'")
        binary = params.get("binary_data")
        classes = params.get("classification", 0)
        if type(classes) is not int or classes < 0:
            raise ProtocolError(f"output '{name}': 'classification' must be an integer >= 0")
        out.append(RequestedOutput(name, binary if isinstance(binary, bool) else None,
                                   classes))
    return out


_BY_DTYPE: dict[Any, str] = {}
#: The fallback for a response holding NaN or an infinity: json.dumps(doc, separators=...)
#: without building a new encoder per response
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def datatype_of(array: np.ndarray) -> str:
    """The OIP datatype of a numpy array (object and string arrays are BYTES).

    Looked up by the dtype object: ``dtype.name`` is a Python-level property costing
    microseconds per call, on every output of every response.
    """
    kind = array.dtype
    if kind.kind in ("O", "U", "S"):
        return "BYTES"
    if not _BY_DTYPE:
        import numpy as np

        _BY_DTYPE.update({np.dtype(n): d for d, n in DATATYPES.items() if n != "object"})
    name = _BY_DTYPE.get(kind)
    if name is None:
        raise ProtocolError(f"the model returned an unsupported dtype {kind}", status=500,
                            code="E_RUNTIME_CRASH")
    return name


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    return str(item).encode("utf-8")


def _binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in array.ravel().tolist():
            raw = _as_bytes(item)
            parts.append(struct.pack("<I", len(raw)))
            parts.append(raw)
        return b"".join(parts)
    import numpy as np
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _json_data(array: np.ndarray, datatype: str) -> Any:
    """The ``data`` of a JSON output, flat in row-major order: a 1-D array (orjson writes
    its elements from the buffer) or, for BYTES, a list of text."""
    if datatype == "BYTES":
        return [_as_bytes(i).decode("utf-8", "replace") for i in array.ravel().tolist()]
    return array.ravel()


def _nonfinite(entries: list[dict[str, Any]]) -> bool:
    """Whether a JSON output holds NaN or an infinity (orjson writes those as null)."""
    import numpy as np

    return any(e["datatype"] in ("FP16", "FP32", "FP64") and "data" in e
               and not np.isfinite(e["data"]).all() for e in entries)


def encode_response(model: str, version: str, outputs: Sequence[tuple[str, np.ndarray, bool]],
                    request_id: str | None = None,
                    parameters: Mapping[str, Any] | None = None) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length (the
    value of ``Inference-Header-Content-Length``). ``outputs``: (name, array, binary)."""
    entries = []
    blobs: list[bytes] = []
    for name, array, binary in outputs:
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype,
                                 "shape": list(array.shape)}
        if binary:
            blob = _binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(array, datatype)
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": entries}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    head = orjson.dumps(doc, option=_NUMPY)
    # a null where a float was: NaN or an infinity (rare; checked only then, as isfinite
    # costs microseconds on small arrays); the standard library writes them as JSON's
    # common extension (NaN, Infinity), every array as a list
    if b"null" in head and _nonfinite(entries):
        for entry in entries:
            data = entry.get("data")
            if data is not None and not isinstance(data, list):
                entry["data"] = data.tolist()
        head = _ENCODE(doc).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
