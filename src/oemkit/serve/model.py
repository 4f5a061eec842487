"""The model a worker serves: one onnxruntime session, its metadata, and the checks and
conversions between the protocol's tensors and what the session takes and returns.

Inputs are checked against the model before they reach onnxruntime (names, datatypes,
fixed dimensions), so a bad request is a 400 naming the tensor, never an onnxruntime
exception text. Outputs that are not tensors (a ``seq(map(...))`` from skl2onnx's ZipMap,
a sequence of tensors) are served as BYTES tensors of JSON text, one element per item,
with the output's metadata saying so (docs/SERVE.md "Non-tensor outputs").
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oemkit.serve.tensors import DATATYPES, ORT_TYPES, ProtocolError

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the protocol describes it (``-1``: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    #: The onnxruntime type string (``tensor(float)``, ``seq(map(int64,tensor(float)))``).
    onnx_type: str

    def to_dict(self) -> dict[str, Any]:
        """The tensor as model metadata JSON (non-tensors say their ONNX type)."""
        out: dict[str, Any] = {"name": self.name, "datatype": self.datatype,
                               "shape": list(self.shape)}
        if not self.onnx_type.startswith("tensor("):
            out["parameters"] = {"onnx_type": self.onnx_type, "encoding": "json"}
        return out


def _dims(shape: Sequence[Any] | None) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (shape or ()))


def _spec(arg: Any) -> TensorSpec:
    datatype = ORT_TYPES.get(arg.type, "BYTES")
    shape = _dims(arg.shape) if arg.type.startswith("tensor(") else (-1,)
    return TensorSpec(arg.name, datatype, shape, arg.type)


@dataclass
class SessionSettings:
    """How a worker's session is made: providers (highest priority first, with options),
    intra/inter-op threads (0: onnxruntime's default)."""

    providers: list[tuple[str, dict[str, str]]] = field(
        default_factory=lambda: [("CPUExecutionProvider", {})])
    intra_op: int = 1
    inter_op: int = 1


class Model:
    """A loaded model: ``run`` takes checked numpy inputs and returns named outputs."""

    def __init__(self, path: Path, name: str, version: str,
                 settings: SessionSettings | None = None) -> None:
        import onnxruntime as ort

        settings = settings or SessionSettings()
        start = time.perf_counter()
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op
        options.inter_op_num_threads = settings.inter_op
        options.log_severity_level = 3
        available = set(ort.get_available_providers())
        chosen = [(n, o) for n, o in settings.providers if n in available]
        if not any(n == "CPUExecutionProvider" for n, _ in chosen):
            chosen.append(("CPUExecutionProvider", {}))
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=[n for n, _ in chosen],
            provider_options=[o for _, o in chosen])
        self.load_seconds = time.perf_counter() - start
        self.name = name
        self.version = version
        self.providers: list[str] = self.session.get_providers()
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]
        self._inputs = {s.name: s for s in self.inputs}
        self._outputs = {s.name: s for s in self.outputs}
        # asked for by name: onnxruntime would rebuild the list from its metadata per run
        self._output_names = [s.name for s in self.outputs]
        # onnxruntime's Python run() re-checks every feed (missing inputs, the owner of
        # each OrtValue) and retries a failed execution provider on the next one; the
        # server's feeds are numpy arrays already checked by check_inputs, so a CPU-only
        # session calls the binding under it (about 3 us a request on the example)
        binding = getattr(self.session, "_sess", None)
        self._run = (binding.run if binding is not None
                     and self.providers == ["CPUExecutionProvider"] else self.session.run)
        import numpy

        self._ndarray = numpy.ndarray
        import numpy

        # dtype objects, compared directly (dtype.name is slow: see tensors.datatype_of)
        self._np_types = {s.name: numpy.dtype(DATATYPES[s.datatype]) for s in self.inputs}

    @property
    def batchable(self) -> bool:
        """Every input and tensor output has a first dimension of any size: requests can be
        stacked along it (the dynamic batcher's precondition, as Triton's)."""
        specs = self.inputs + [s for s in self.outputs if s.onnx_type.startswith("tensor(")]
        return all(s.shape and s.shape[0] == -1 for s in specs)

    def metadata(self, platform: str = "onnxruntime_onnx") -> dict[str, Any]:
        """The protocol's model metadata: name, versions, platform, inputs, outputs."""
        return {"name": self.name, "versions": [self.version], "platform": platform,
                "inputs": [s.to_dict() for s in self.inputs],
                "outputs": [s.to_dict() for s in self.outputs]}

    def output_spec(self, name: str) -> TensorSpec:
        """The output called ``name``.

        Raises:
            ProtocolError: 400 for an output the model does not have.
        """
        spec = self._outputs.get(name)
        if spec is None:
            raise ProtocolError(f"unknown output '{name}' for model '{self.name}' (outputs: "
                                f"{', '.join(self._outputs)})")
        return spec

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> int:
        """Check names, datatypes and fixed dimensions; the batch size (first dimension of
        the first input, 1 for a scalar).

        Raises:
            ProtocolError: 400 naming the missing, unexpected or mismatched input.
        """
        missing = [n for n in self._inputs if n not in inputs]
        if missing:
            raise ProtocolError(f"missing input(s) {', '.join(missing)} for model "
                                f"'{self.name}'")
        extra = [n for n in inputs if n not in self._inputs]
        if extra:
            raise ProtocolError(f"unknown input(s) {', '.join(extra)} for model '{self.name}' "
                                f"(inputs: {', '.join(self._inputs)})")
        batch = None
        for name, array in inputs.items():
            spec = self._inputs[name]
            want = self._np_types[name]
            if array.dtype != want:
                from oemkit.serve.tensors import datatype_of

                raise ProtocolError(f"input '{name}': datatype {datatype_of(array)}, the model "
                                    f"expects {spec.datatype}")
            if spec.shape and len(array.shape) != len(spec.shape):
                raise ProtocolError(f"input '{name}': shape {list(array.shape)} has "
                                    f"{len(array.shape)} dimensions, the model expects "
                                    f"{list(spec.shape)}")
            for got, dim in zip(array.shape, spec.shape, strict=True):
                if dim != -1 and got != dim:
                    raise ProtocolError(f"input '{name}': shape {list(array.shape)}, the "
                                        f"model expects {list(spec.shape)} (-1: any)")
            rows = array.shape[0] if array.shape else 1
            if batch is None:
                batch = rows
        return batch or 1

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Run the session; non-tensor outputs come back as BYTES arrays of JSON text."""
        feed = inputs if type(inputs) is dict else dict(inputs)
        results = self._run(self._output_names, feed, None)
        return {name: value if type(value) is self._ndarray else _tensor(value)
                for name, value in zip(self._output_names, results, strict=True)}


def json_value(value: Any) -> Any:
    """A sequence item as JSON data: maps with string keys, arrays and NumPy scalars as
    lists and numbers, non-finite floats as text (JSON has none). Shared with
    ``release.from_model``'s golden outputs, so that both write an item the same way."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _tensor(value: Any) -> Any:
    """A numpy array stays one; a sequence (of maps or tensors) becomes a BYTES array with
    one JSON text per item."""
    import numpy

    if isinstance(value, numpy.ndarray):
        return value
    items = value if isinstance(value, (list, tuple)) else [value]
    array = numpy.empty(len(items), dtype=object)
    array[:] = [json.dumps(json_value(v), sort_keys=True).encode() for v in items]
    return array


def classify(scores: np.ndarray, top: int, labels: Sequence[str] | None,
             threshold: float | None) -> np.ndarray:
    """Triton's classification extension: per row the ``top`` classes as
    ``"score:index[:label]"`` BYTES, best first; with ``threshold`` (the config's
    ``score_threshold``) classes scoring below it are left out (an empty string fills)."""
    import numpy

    if scores.ndim == 1:
        scores = scores.reshape(1, -1)
    if scores.ndim != 2 or scores.dtype.kind not in "fiu":
        raise ProtocolError("classification needs a 2-D numeric output")
    top = min(top, scores.shape[1])
    out = numpy.empty((scores.shape[0], top), dtype=object)
    order = numpy.argsort(-scores, axis=1, kind="stable")[:, :top]
    for row in range(scores.shape[0]):
        for col, index in enumerate(order[row]):
            score = float(scores[row, index])
            if threshold is not None and score < threshold:
                out[row, col] = b""
                continue
            text = f"{score:f}:{int(index)}"
            if labels and int(index) < len(labels):
                text += f":{labels[int(index)]}"
            out[row, col] = text.encode()
    return out
