"""Scaffold a new bundle directory: ``oemkit init NAME`` and the built-in example bundle.

Every file is byte-deterministic for a given name and description (fixed seeds, no
timestamps, ``\\n`` line endings) so the committed example in ``bundles/example`` can be
checked for drift. The directory appears all at once: files are written into a temporary
sibling of the destination that is renamed into place at the end, so an interrupted init
never leaves a half-written bundle behind.

numpy, onnx and onnxruntime (the ``onnx`` extra) are imported inside functions only:
importing this module (and so ``oemkit --help``) must stay cheap, and without the extra
:func:`render_files` raises ``E_MISSING_EXTRA`` (exit 4) instead of an ImportError.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit.errors import EnvironmentProblem, InputError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: Bundle names: lowercase, URL- and file-name-safe, at most 64 characters.
NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
_NAME_RE = re.compile(NAME_PATTERN)

#: Fixed so the model bytes never change across oemkit releases.
PRODUCER_VERSION = "oemkit-scaffold/1"
OPSET = 17
IR_VERSION = 8  # onnxruntime >= 1.15 loads IR 8; newer onnx would default higher
N_IN, N_HIDDEN, N_OUT = 4, 8, 3
GOLDEN_BATCH = 4
WEIGHT_SEED, INPUT_SEED = 0, 1
LABELS = ("a", "b", "c")

BUNDLE_YAML = "bundle.yaml"
MODEL = "model/model.onnx"
CONFIG = "config/config.json"
CONFIG_SCHEMA = "config/config.schema.json"
GOLDEN_INPUTS = "golden/inputs.json"
GOLDEN_OUTPUTS = "golden/expected.json"
ENTRYPOINT = "runtime/main.py"
README = "README.md"


def default_description(name: str) -> str:
    """The one-line description used when ``oemkit init`` is not given one."""
    return f"{name}: a tiny ONNX classifier scaffolded by oemkit init"


def scaffold_bundle(
    name: str,
    dest: Path,
    *,
    force: bool = False,
    description: str | None = None,
    model: Path | None = None,
    inputs: Path | None = None,
) -> list[Path]:
    """Write a ready-to-build bundle for ``name`` at ``dest``; return its files, sorted.

    ``dest`` may be missing or an empty directory; a non-empty one is replaced only with
    ``force``. Returned paths are relative to ``dest``. ``model``: scaffold around this
    ONNX model instead of the tiny example one, with golden inputs made from its input
    metadata (or read from ``inputs``) and expected outputs computed by running it
    (:mod:`oemkit.release.from_model`).

    Raises:
        InputError: E_SPEC_NAME, E_SPEC_DESCRIPTION, E_DEST_*; with ``model``:
            E_MODEL_INVALID, E_GOLDEN_INVALID, E_NOT_FOUND.
        EnvironmentProblem: E_MISSING_EXTRA (the stack that makes or runs the model),
            E_WRITE.
    """
    _check_name(name)
    if description is None:
        description = (default_description(name) if model is None
                       else f"{name}: {Path(model).name} scaffolded by oemkit init --model")
    _check_description(description)
    dest = Path(os.path.realpath(dest))
    _check_dest(dest, force=force)
    if inputs is not None and model is None:
        from oemkit.errors import UsageError

        raise UsageError("E_USAGE", "--inputs needs --model",
                         hint="oemkit init NAME --model MODEL.onnx --inputs FILE")

    files = (render_files(name, description) if model is None
             else render_model_files(name, description, Path(model), inputs))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    except OSError as exc:
        raise _write_error(dest.parent, exc) from exc
    try:
        for rel, data in files.items():
            _write_file(tmp / rel, data)
        # mkdtemp makes the directory 0700; give it the same mode mkdir gave the subdirs.
        shutil.copymode(tmp / "model", tmp)
        _install(tmp, dest, force=force)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(dest, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted((Path(rel) for rel in files), key=lambda p: p.as_posix())


def render_files(name: str, description: str) -> dict[str, bytes]:
    """Every file of the scaffold as ``{relative posix path: bytes}``; no disk access.

    Raises:
        EnvironmentProblem: E_MISSING_EXTRA when the ONNX stack (the ``onnx`` extra) that
            makes the model and its golden outputs is not installed.
    """
    from oemkit._extras import require_onnx

    require_onnx("oemkit init")
    model = build_model(name)
    x = golden_inputs()
    y = run_model(model, x.astype("float32"))
    config = {"schema_version": 1, "threshold": 0.5, "labels": list(LABELS), "threads": 1}
    return {
        BUNDLE_YAML: _bundle_yaml(name, description).encode("utf-8"),
        MODEL: model,
        CONFIG: _json_bytes(config),
        CONFIG_SCHEMA: _json_bytes(_config_schema(name)),
        GOLDEN_INPUTS: _json_bytes({"x": _tensor_json(x, "float32")}),
        GOLDEN_OUTPUTS: _json_bytes({"y": _tensor_json(y, "float32")}),
        ENTRYPOINT: RUNTIME_MAIN.encode("utf-8"),
        README: _readme(name, description).encode("utf-8"),
    }


def render_model_files(name: str, description: str, model: Path,
                       inputs: Path | None = None) -> dict[str, bytes]:
    """The scaffold around a given ONNX model: the model, golden inputs and outputs made
    with it, a minimal config (``schema_version``, ``threads``) and its schema, the runner,
    the spec and the README.

    Raises:
        EnvironmentProblem: E_MISSING_EXTRA without onnxruntime and numpy.
        InputError: E_NOT_FOUND, E_MODEL_INVALID, E_GOLDEN_INVALID.
    """
    from oemkit._extras import require_onnx
    from oemkit._fs import read_input
    from oemkit.release.from_model import MAX_MODEL, golden_for_model

    require_onnx("oemkit init --model", ("onnxruntime", "numpy"))
    data = read_input(model, "model", MAX_MODEL)
    golden_in, expected = golden_for_model(data, inputs)
    config = {"schema_version": 1, "threads": 1}
    schema = _config_schema(name)
    schema["required"] = ["schema_version", "threads"]
    schema["properties"] = {k: v for k, v in schema["properties"].items()
                            if k in ("schema_version", "threads", "labels")}
    schema["properties"]["labels"].pop("minItems")
    schema["properties"]["labels"].pop("maxItems")
    made = (f"read from {inputs.name}" if inputs is not None else
            "made from the model's input metadata\n(seeded random values, every dynamic "
            "dimension 1)")
    readme = _readme(name, description).replace(
        "- `model/model.onnx`: a tiny deterministic MLP, `x` float32 [batch, 4] to `y` [batch, 3].",
        f"- `model/model.onnx`: {model.name}, as given to `oemkit init --model`.").replace(
        "\nBuild the bundle with:", f"\nThe golden inputs were {made}; the expected outputs "
        "were computed by running the\nmodel with onnxruntime on the CPU.\n\nBuild the bundle "
        "with:")
    return {
        BUNDLE_YAML: _bundle_yaml(name, description).encode("utf-8"),
        MODEL: data,
        CONFIG: _json_bytes(config),
        CONFIG_SCHEMA: _json_bytes(schema),
        GOLDEN_INPUTS: _json_bytes(golden_in),
        GOLDEN_OUTPUTS: _json_bytes(expected),
        ENTRYPOINT: RUNTIME_MAIN.encode("utf-8"),
        README: readme.encode("utf-8"),
    }


# --------------------------------------------------------------------------- validation


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InputError(
            "E_SPEC_NAME",
            f"invalid bundle name {name!r}",
            hint="use 1-64 characters from a-z 0-9 . _ - starting with a letter or digit,"
            " e.g. 'acme-classifier'",
        )


def _check_description(description: str) -> None:
    if not description.strip() or any(ch < " " or ch == "\x7f" for ch in description):
        raise InputError(
            "E_SPEC_DESCRIPTION",
            f"invalid bundle description {description!r}",
            hint="give one non-empty line of text without control characters",
        )


def _contains_cwd(dest: Path) -> bool:
    cwd = Path(os.path.realpath(Path.cwd()))
    return cwd == dest or dest in cwd.parents


def _check_dest(dest: Path, *, force: bool) -> None:
    if not dest.exists():
        return
    if not dest.is_dir():
        raise InputError(
            "E_DEST_NOT_DIR",
            f"{dest} exists and is not a directory",
            hint="choose another --dir or remove it",
        )
    if not any(dest.iterdir()):
        return
    if not force:
        raise InputError(
            "E_DEST_NOT_EMPTY", f"{dest} is not empty", hint="choose another --dir or remove it"
        )
    if _contains_cwd(dest):
        raise InputError(
            "E_DEST_IS_CWD",
            f"{dest} is (or contains) the current directory and cannot be replaced",
            hint="run oemkit init from outside it, or empty it first",
        )


def _write_error(where: Path, exc: OSError) -> EnvironmentProblem:
    return EnvironmentProblem(
        "E_WRITE",
        f"cannot write {where}: {exc.strerror or exc}",
        hint="check that the directory is writable and the disk has space",
    )


# --------------------------------------------------------------------------- disk


def _write_file(path: Path, data: bytes) -> None:
    """Write bytes exactly (no newline translation) and flush them to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _install(tmp: Path, dest: Path, *, force: bool) -> None:
    """Move the finished ``tmp`` directory to ``dest``, replacing what ``_check_dest`` allowed."""
    if not dest.exists():
        os.rename(tmp, dest)
        return
    if not any(dest.iterdir()):
        if _contains_cwd(dest):
            # Renaming over the current directory would orphan the user's shell; fill it
            # instead. This is the one case where an interruption can leave a partial tree.
            for entry in sorted(tmp.iterdir()):
                os.rename(entry, dest / entry.name)
            os.rmdir(tmp)
            return
        try:
            os.rmdir(dest)
        except OSError as exc:  # filled since we checked
            raise InputError(
                "E_DEST_NOT_EMPTY", f"{dest} is not empty", hint="choose another --dir or remove it"
            ) from exc
        os.rename(tmp, dest)
        return
    if not force:  # filled since we checked
        raise InputError(
            "E_DEST_NOT_EMPTY", f"{dest} is not empty", hint="choose another --dir or remove it"
        )
    old = tmp.with_name(tmp.name.replace(".tmp-", ".old-", 1))
    os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- model + golden


def build_model(name: str) -> bytes:
    """Serialized ONNX model: x[batch,4] -> Gemm 4x8 -> Relu -> Gemm 8x3 -> Softmax -> y."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(WEIGHT_SEED)

    def dense(prefix: str, fan_in: int, fan_out: int) -> list[onnx.TensorProto]:
        # Glorot-uniform: uniform() is plain arithmetic on the bit stream, so the weights
        # are identical on every platform (standard_normal's tails go through libm).
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        weight = rng.uniform(-limit, limit, size=(fan_out, fan_in)).astype(np.float32)
        bias = rng.uniform(-0.1, 0.1, size=(fan_out,)).astype(np.float32)
        return [
            numpy_helper.from_array(weight, f"{prefix}.weight"),
            numpy_helper.from_array(bias, f"{prefix}.bias"),
        ]

    initializers = dense("fc1", N_IN, N_HIDDEN) + dense("fc2", N_HIDDEN, N_OUT)
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["h_relu"], name="relu"),
        helper.make_node(
            "Gemm", ["h_relu", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1
        ),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        f"{name}-mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", N_IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", N_OUT])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="oemkit",
        producer_version=PRODUCER_VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString()  # deterministic: ModelProto has no maps
    return data


def golden_inputs() -> npt.NDArray[np.float64]:
    """Golden ``x``: standard normal draws rounded to 6 decimals (float64; feed as float32).

    Kept in float64 so the JSON shows the short decimals; the model sees their float32 cast,
    which is also what reading the JSON back as float32 gives.
    """
    import numpy as np

    rng = np.random.default_rng(INPUT_SEED)
    return np.round(rng.standard_normal((GOLDEN_BATCH, N_IN)), 6)


def run_model(model: bytes, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Run ``model`` on CPU with one thread and deterministic kernels; return ``y``."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.use_deterministic_compute = True
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    (y,) = session.run(["y"], {"x": x})
    return np.asarray(y, dtype=np.float32)


def _tensor_json(array: npt.NDArray[Any], dtype: str) -> dict[str, Any]:
    """The JSON tensor format shared by golden files and ``runtime/main.py``."""
    return {"dtype": dtype, "shape": list(array.shape), "data": [float(v) for v in array.ravel()]}


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- text files


def _bundle_yaml(name: str, description: str) -> str:
    # Name and description are JSON-quoted: valid YAML double-quoted scalars, and a name
    # like "1.0" or "on" stays a string instead of becoming a float or a boolean.
    return f"""\
# oemkit bundle spec — see docs/SPEC.md
# Paths are relative to this file. Build with: oemkit build bundle.yaml
apiVersion: oemkit/v1
name: {json.dumps(name)}
version: 0.1.0
description: {json.dumps(description, ensure_ascii=False)}
# The ONNX model and the standalone runner that executes it on the target.
model: {MODEL}
entrypoint: {ENTRYPOINT}
# Runtime configuration and the JSON Schema it must satisfy.
config:
  file: {CONFIG}
  schema: {CONFIG_SCHEMA}
  version: 1
# Golden test: outputs must match within atol + rtol * |expected|.
golden:
  inputs: {GOLDEN_INPUTS}
  outputs: {GOLDEN_OUTPUTS}
  atol: 1.0e-5
  rtol: 1.0e-4
# Target profiles to smoke-test and size against.
profiles: [cpu-small]
# Python packages the runtime needs: the runner's (onnxruntime, numpy) and the
# server's (`oemkit serve`: starlette on uvicorn, prometheus-client, orjson). Listed in the SBOM;
# `oemkit wheelhouse fetch bundle.yaml --dest wheels` downloads them, and
# `wheelhouse: wheels` packs them to install offline on the target.
requirements: {_requirements()}
# Extra files to ship, relative to this file (label maps, licenses, ...).
files: []
# What the server does with its license (docs/SPEC.md#license); these are the defaults.
# license:
#   required: false         # true: serving needs a license that verifies
#   features: []            # features the license must grant
#   grace: serve            # an expired license in grace: serve (with a warning) or refuse
#   invalid: refuse         # an invalid license: refuse (never ready) or degrade
#   check_interval_s: 600   # seconds between checks (also at start and on SIGHUP)
"""


#: The runner's packages, then the serving runtime's (pyproject.toml's core dependencies).
REQUIREMENTS = ("onnxruntime>=1.17", "numpy>=1.24", "starlette>=0.40", "uvicorn>=0.30",
                "httptools>=0.6", "uvloop>=0.19; sys_platform != 'win32'",
                "prometheus-client>=0.20", "orjson>=3.9")


def _requirements() -> str:
    """The ``requirements:`` flow list, JSON-quoted (valid YAML), two packages a line."""
    items = [json.dumps(r) for r in REQUIREMENTS]
    rows = [", ".join(items[i:i + 2]) for i in range(0, len(items), 2)]
    return "[" + ",\n               ".join(rows) + "]"


def _config_schema(name: str) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://oemkit.dev/schemas/{name}/config/v1.json",
        "title": f"{name} runtime configuration",
        "type": "object",
        "required": ["schema_version", "threshold", "labels", "threads"],
        "additionalProperties": False,
        "properties": {
            "schema_version": {"const": 1},
            "threshold": {"type": "number", "minimum": 0, "maximum": 1},
            "labels": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": N_OUT,
                "maxItems": N_OUT,
                "uniqueItems": True,
            },
            "threads": {"type": "integer", "minimum": 1},
        },
    }


def _readme(name: str, description: str) -> str:
    return f"""\
# {name}
{description}

- `bundle.yaml`: the bundle spec (name, version, model, entrypoint, config, golden test).
- `model/model.onnx`: a tiny deterministic MLP, `x` float32 [batch, 4] to `y` [batch, 3].
- `config/config.json`: runtime settings, validated by `config/config.schema.json`.
- `golden/inputs.json`, `golden/expected.json`: golden tensors the model must reproduce.
- `runtime/main.py`: standalone runner (numpy + onnxruntime), e.g. `--out out.json`.

Build the bundle with: `oemkit build bundle.yaml`. Serve its model over HTTP (the Open
Inference Protocol v2, docs/SERVE.md) with `oemkit serve NAME-VERSION.oemb --trust ROOT`,
or `oemkit serve PREFIX` once installed. `requirements:` lists the runner's and the
server's packages; `oemkit wheelhouse fetch bundle.yaml --dest wheels` downloads them for
an offline install. The commented `license:` section shows the default license policy:
no license needed.
"""


RUNTIME_MAIN = '''\
"""Standalone runner for this bundle: load the ONNX model, run JSON or .npz inputs, write JSON.

Needs only numpy and onnxruntime (never oemkit), so it can run in a fresh process on the
target. Relative paths resolve against the bundle root (the parent of runtime/), not the
current directory. Tensor JSON: {"<name>": {"dtype": ..., "shape": [...], "data": [...]}}
with data flattened row-major; a non-tensor output as {"<name>": {"seq": [...]}}. Its
output file (with "_timings_ms" and "_providers") is also a golden outputs file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

BUNDLE_ROOT = Path(__file__).resolve().parent.parent


def _path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else BUNDLE_ROOT / path


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000.0, 3)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _output(value: Any, np: Any) -> dict[str, Any]:
    """A tensor as {dtype, shape, data}; a sequence or a map (e.g. skl2onnx's ZipMap
    seq(map)) as {"seq": [item, ...]}, maps with string keys."""
    if isinstance(value, np.ndarray):
        dtype = "str" if value.dtype.kind in "USO" else str(value.dtype)
        return {"dtype": dtype, "shape": list(value.shape), "data": value.ravel().tolist()}
    items = value if isinstance(value, (list, tuple)) else [value]
    return {"seq": [_plain(v) for v in items]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run this bundle's model on JSON inputs.")
    parser.add_argument("--model", default="model/model.onnx")
    parser.add_argument("--inputs", default="golden/inputs.json")
    parser.add_argument("--providers", default="CPUExecutionProvider",
                        help="comma-separated execution providers, highest priority first")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (0: default)")
    parser.add_argument("--out", required=True, help="output JSON file")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    import numpy as np
    import onnxruntime as ort
    imported = time.perf_counter()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.use_deterministic_compute = True
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    session = ort.InferenceSession(str(_path(args.model)), options, providers=providers)
    created = time.perf_counter()

    if args.inputs.endswith(".npz"):
        with np.load(_path(args.inputs), allow_pickle=False) as archive:
            feeds = {k: archive[k] for k in archive.files}
    else:
        spec: dict[str, Any] = json.loads(_path(args.inputs).read_text(encoding="utf-8"))
        feeds = {k: np.asarray(t["data"], dtype=t["dtype"]).reshape(t["shape"])
                 for k, t in spec.items()}
    missing = sorted({i.name for i in session.get_inputs()} - set(feeds))
    if missing:
        print(f"error: inputs file lacks model inputs {missing}", file=sys.stderr)
        return 2
    results = session.run(None, feeds)
    finished = time.perf_counter()

    names = [o.name for o in session.get_outputs()]
    out: dict[str, Any] = {names[i]: _output(r, np) for i, r in enumerate(results)}
    out["_timings_ms"] = {"import": _ms(start, imported), "session": _ms(imported, created),
                          "first_inference": _ms(created, finished)}
    out["_providers"] = session.get_providers()
    out_path = _path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
