"""Golden data for a given ONNX model: ``oemkit init NAME --model FILE [--inputs FILE]``.

The golden inputs come from the model's input metadata (onnxruntime's
``session.get_inputs()``): random values with a fixed seed, every dynamic dimension 1; or
from the user's file (golden JSON or ``.npz``), checked against the model's input names.
The expected outputs are what the model computes on them with onnxruntime on the CPU, one
thread, deterministic kernels; a non-tensor output (a ``seq(map(...))`` from skl2onnx's
ZipMap, a sequence, a map) is written as ``{"seq": [item, ...]}``, as the smoke test and
the server compare and serve it. Needs onnxruntime and numpy (oemkit's core dependencies),
not the ``onnx`` package; imported inside functions so that ``oemkit --help`` stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oemkit._fs import read_input
from oemkit.errors import InputError

#: Fixed, so the same model gets the same golden inputs on every run and platform.
INPUT_SEED = 1
#: Largest model ``--model`` copies (read whole to run it and to write the scaffold).
MAX_MODEL = 2 << 30
MAX_INPUTS = 256 << 20
#: onnxruntime's tensor element types as NumPy dtype names.
ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
    "tensor(string)": "str"}
HINT = "pass golden inputs with --inputs FILE (JSON {NAME: {dtype, shape, data}} or .npz)"


def _session(model: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.use_deterministic_compute = True
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InputError("E_MODEL_INVALID", f"onnxruntime cannot load the model: {exc}",
                         hint="pass an ONNX model onnxruntime can run on the CPU") from None


def random_inputs(session: Any) -> dict[str, Any]:
    """One array per model input: standard normal floats rounded to 6 decimals, integers
    0-9, booleans, short strings; every dynamic dimension 1; seeded with INPUT_SEED."""
    import numpy as np

    rng = np.random.default_rng(INPUT_SEED)
    feeds: dict[str, Any] = {}
    for spec in session.get_inputs():
        dtype = ORT_DTYPES.get(spec.type)
        if dtype is None:
            raise InputError("E_GOLDEN_INVALID", f"model input {spec.name!r} is a {spec.type}: "
                             "oemkit cannot make a value for it", hint=HINT)
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in (spec.shape or []))
        if dtype.startswith("float"):
            # fed as written: the JSON shows the short decimals, the model their cast
            value = np.round(rng.standard_normal(shape), 6)
        elif dtype == "bool":
            value = rng.integers(0, 2, size=shape).astype(bool)
        elif dtype == "str":
            value = np.array([f"text{i}" for i in range(int(np.prod(shape)))],
                             dtype=object).reshape(shape)
        else:
            value = rng.integers(0, 10, size=shape).astype(dtype)
        feeds[spec.name] = value
    return feeds


def read_inputs(path: Path, session: Any) -> dict[str, Any]:
    """The user's golden inputs (JSON or .npz), with exactly the model's input names.

    Raises:
        InputError: E_GOLDEN_INVALID naming the file and the tensor.
    """
    import numpy as np

    def bad(message: str) -> InputError:
        return InputError("E_GOLDEN_INVALID", f"--inputs {path.name}: {message}", hint=HINT)

    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                feeds = {k: archive[k] for k in archive.files}
        except (OSError, ValueError, EOFError) as exc:
            raise bad(f"not a readable .npz archive: {exc}") from None
    else:
        try:
            doc = json.loads(read_input(path, "golden inputs", MAX_INPUTS))
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise bad("must be a JSON object of tensors by name")
        feeds = {}
        for name, tensor in doc.items():
            try:
                dtype = str(tensor["dtype"])
                # floats kept as written (float64): the file's decimals, fed as their cast
                feeds[name] = np.asarray(tensor["data"], dtype="float64" if dtype.startswith(
                    "float") else dtype).reshape(tensor["shape"])
            except (KeyError, TypeError, ValueError) as exc:
                raise bad(f"input {name!r} is not {{dtype, shape, data}}: {exc}") from None
    wanted = [i.name for i in session.get_inputs()]
    for name in feeds:
        if name not in wanted:
            raise bad(f"{name!r} is not an input of the model (its inputs: "
                      f"{', '.join(wanted)})")
    for name in wanted:
        if name not in feeds:
            raise bad(f"the model input {name!r} is missing")
    return feeds


def tensor_json(value: Any) -> dict[str, Any]:
    """A golden tensor (``{dtype, shape, data}``), or ``{"seq": [...]}`` for a sequence or
    a map (a map being a sequence of one item)."""
    import numpy as np

    from oemkit.serve.model import json_value

    if isinstance(value, np.ndarray):
        dtype = "str" if value.dtype.kind in "USO" else str(value.dtype)
        return {"dtype": dtype, "shape": list(value.shape), "data": value.ravel().tolist()}
    items = value if isinstance(value, (list, tuple)) else [value]
    return {"seq": [json_value(v) for v in items]}


def golden_for_model(model: bytes, inputs: Path | None = None) -> tuple[dict[str, Any],
                                                                       dict[str, Any]]:
    """(golden inputs, expected outputs) as golden JSON documents for ``model``.

    Raises:
        InputError: E_MODEL_INVALID (onnxruntime cannot load or run it), E_GOLDEN_INVALID
            (an input oemkit cannot make, or a bad ``inputs`` file).
    """
    session = _session(model)
    given = read_inputs(inputs, session) if inputs is not None else random_inputs(session)
    dtypes = {i.name: ORT_DTYPES.get(i.type) for i in session.get_inputs()}
    golden_in = {}
    feeds = {}
    for name, value in given.items():
        doc = tensor_json(value)
        want = dtypes.get(name)
        if want is not None and doc["dtype"] != want and want != "str":
            doc["dtype"] = want  # float64 decimals for a float32 input: fed as their cast
        golden_in[name] = doc
        feeds[name] = value.astype(object if want == "str" else want) if want else value
    try:
        results = session.run(None, feeds)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InputError("E_MODEL_INVALID", f"the model fails on the golden inputs: {exc}",
                         hint=HINT) from None
    names = [o.name for o in session.get_outputs()]
    expected = {name: tensor_json(value) for name, value in zip(names, results, strict=True)}
    return golden_in, expected
