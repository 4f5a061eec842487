"""Write a buildable bundle spec with one large ONNX model and many small files (issue 8).

    python benchmarks/make_large.py --model-size 4GiB --files 1000 --out DIR
        [--data random|zeros|normal] [--seed N] [--name NAME]

The model is a real ONNX file: an embedding lookup, ``y = Gather(weights, ids)``, with
one float32 initializer ``weights[V, 256]`` holding almost all of the requested size.
The protobuf is written by hand, field by field, around the initializer's ``raw_data``,
which is streamed from a generator in 4 MiB chunks, so making a 20 GB model needs no
more memory than a 2 MB one. Sizes of the nested messages are computed up front (every
length is known before the weights are written).

``--data``:
  random  AES-CTR keystream of the seed (default): incompressible and reproducible. Use
          it for throughput figures.
  zeros   a hole in a sparse file (costs no disk and no time to write); compresses to
          almost nothing. Good for memory (RSS) checks of very large payloads.
  normal  float32 N(0, 0.02) weights like a trained layer (about 7 % compressible).

The small files go to ``extra/NNNN/FILE``: sizes from 200 bytes to 64 KiB, half text (a
label map, CSV, JSON) and half random bytes, all reproducible from the seed. The spec is
``DIR/bundle.yaml``; build it with ``oemkit build DIR/bundle.yaml``. ``--check`` reads
the model card back with oemkit's own reader (as ``oemkit build`` will).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path

CHUNK = 4 << 20
EMBED_DIM = 256


# --------------------------------------------------------------------------- protobuf wire


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def f_varint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def f_bytes(number: int, data: bytes) -> bytes:
    return key(number, 2) + varint(len(data)) + data


def f_str(number: int, text: str) -> bytes:
    return f_bytes(number, text.encode("utf-8"))


def value_info(name: str, elem_type: int, dims: list[int | str]) -> bytes:
    """ValueInfoProto{name, type: TypeProto{tensor_type{elem_type, shape{dim...}}}}."""
    shape = b"".join(
        f_bytes(1, f_str(2, d) if isinstance(d, str) else f_varint(1, d)) for d in dims)
    tensor_type = f_varint(1, elem_type) + f_bytes(2, shape)
    return f_str(1, name) + f_bytes(2, f_bytes(1, tensor_type))


FLOAT, INT64 = 1, 7


def model_layout(rows: int, doc: int = 0) -> tuple[bytes, bytes, int]:
    """The model's bytes before the initializer's raw_data, after it, and its length;
    ``doc`` bytes of doc_string pad the file to an exact size."""
    raw_len = rows * EMBED_DIM * 4
    # TensorProto: dims, data_type, name, then raw_data (field 9) last.
    tensor_head = (f_varint(1, rows) + f_varint(1, EMBED_DIM) + f_varint(2, FLOAT)
                   + f_str(8, "weights") + key(9, 2) + varint(raw_len))
    tensor_len = len(tensor_head) + raw_len
    node = (f_str(1, "weights") + f_str(1, "ids") + f_str(2, "y") + f_str(3, "lookup")
            + f_str(4, "Gather") + f_bytes(5, f_str(1, "axis") + f_varint(3, 0)
                                           + f_varint(20, 2)))  # AttributeProto INT
    graph_head = f_bytes(1, node) + f_str(2, "embedding") + key(5, 2) + varint(tensor_len)
    graph_tail = (f_bytes(11, value_info("ids", INT64, ["batch"]))
                  + f_bytes(12, value_info("y", FLOAT, ["batch", EMBED_DIM])))
    graph_len = len(graph_head) + tensor_len + len(graph_tail)
    model_head = (f_varint(1, 8)                                   # ir_version 8
                  + f_str(2, "oemkit-make-large") + f_str(3, "1")  # producer
                  + f_bytes(8, f_str(1, "") + f_varint(2, 17))     # opset ai.onnx 17
                  + (f_str(6, "." * doc) if doc else b"")          # doc_string (padding)
                  + key(7, 2) + varint(graph_len))
    return model_head + graph_head + tensor_head, graph_tail, raw_len


def stream(kind: str, length: int, seed: int) -> Iterator[bytes]:
    """``length`` bytes of weights in chunks (``zeros`` yields nothing: the caller seeks)."""
    if kind == "random":
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        cipher = Cipher(algorithms.AES(seed.to_bytes(16, "big")), modes.CTR(bytes(16)))
        enc = cipher.encryptor()
        zeros = bytes(CHUNK)
        while length:
            n = min(CHUNK, length)
            yield enc.update(zeros[:n])
            length -= n
    elif kind == "normal":
        import numpy as np

        rng = np.random.default_rng(seed)
        while length:
            n = min(CHUNK, length)
            yield rng.normal(0.0, 0.02, n // 4).astype("<f4").tobytes()
            length -= n
    elif kind != "zeros":
        raise SystemExit(f"unknown --data {kind!r}")


def write_model(path: Path, size: int, kind: str, seed: int) -> int:
    """Write the model; return its size. ``size`` is the target file size (rounded)."""
    rows = max(1, (size - 512) // (EMBED_DIM * 4))
    head, tail, raw_len = model_layout(rows)
    missing = size - len(head) - raw_len - len(tail)
    doc = next((k for k in range(max(0, missing - 12), missing) if
                len(f_str(6, "." * k)) == missing), 0) if missing > 2 else 0
    head, tail, raw_len = model_layout(rows, doc)
    with open(path, "wb") as out:
        out.write(head)
        if kind == "zeros":
            out.seek(raw_len, os.SEEK_CUR)  # a hole: reads as zeros, no blocks written
            out.truncate(out.tell())
        else:
            written = 0
            for chunk in stream(kind, raw_len, seed):
                out.write(chunk)
                written += len(chunk)
            assert written == raw_len
        out.write(tail)
        return out.tell()


# --------------------------------------------------------------------------- small files


WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota",
         "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon",
         "phi", "chi", "psi", "omega", "cat", "dog", "car", "person", "bicycle", "bus", "train",
         "truck", "boat", "light", "sign", "bench", "bird", "horse", "sheep", "cow"]


def small_file(rng: random.Random, i: int) -> tuple[str, bytes]:
    size = int(200 * (64 * 1024 / 200) ** rng.random())  # log-uniform 200 B .. 64 KiB
    if i % 2:
        return f"extra/{i // 100:04d}/blob-{i:06d}.bin", rng.randbytes(size)
    kind = ("labels.txt", "table.csv", "meta.json")[i // 2 % 3]
    lines = []
    total = 0
    while total < size:
        if kind == "labels.txt":
            line = f"{len(lines)} {rng.choice(WORDS)}"
        elif kind == "table.csv":
            line = ",".join(f"{rng.random():.6f}" for _ in range(6))
        else:
            line = f'{{"id": {len(lines)}, "label": "{rng.choice(WORDS)}", "score": ' \
                   f'{rng.random():.4f}}}'
        lines.append(line)
        total += len(line) + 1
    return f"extra/{i // 100:04d}/{i:06d}-{kind}", ("\n".join(lines) + "\n").encode()[:size]


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 4GiB, 500MiB, 1G)")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit])


def make(out: Path, model_size: int, files: int, kind: str = "random", seed: int = 1,
         name: str = "large", check: bool = True) -> dict[str, int]:
    """Write the spec, model and files under ``out``; return counts and byte totals."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "model").mkdir(exist_ok=True)
    model_bytes = write_model(out / "model" / "model.onnx", model_size, kind, seed)
    rng = random.Random(seed)
    extra_bytes = 0
    for i in range(files):
        rel, data = small_file(rng, i)
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        extra_bytes += len(data)
    spec = (
        "apiVersion: oemkit/v1\n"
        f'name: "{name}"\n'
        'version: "1.0.0"\n'
        f'description: "make_large.py: {model_size} byte {kind} model, {files} small files"\n'
        "model: model/model.onnx\n"
        "profiles: [cpu-large]\n"
        f"files: [{'extra' if files else ''}]\n"
    )
    (out / "bundle.yaml").write_text(spec)
    if check:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from oemkit.release.modelcard import read_model_card

        card = read_model_card(out / "model" / "model.onnx")
        assert card.parameter_count * 4 + 512 >= model_bytes - 4096, card
        assert card.inputs and card.outputs and card.nodes == 1, card
    return {"model_bytes": model_bytes, "files": files + 1,
            "payload_bytes": model_bytes + extra_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-size", type=parse_size, default=parse_size("4GiB"))
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", choices=("random", "zeros", "normal"), default="random")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--name", default="large")
    parser.add_argument("--no-check", action="store_true",
                        help="do not read the model card back")
    args = parser.parse_args()
    info = make(args.out, args.model_size, args.files, args.data, args.seed, args.name,
                check=not args.no_check)
    print(f"wrote {args.out / 'bundle.yaml'}: model {info['model_bytes']} bytes "
          f"({args.data}), {info['files']} files, {info['payload_bytes']} payload bytes")


if __name__ == "__main__":
    main()
