"""Delta updates (issue 18): `oemkit delta` and `oemkit patch` against zstd --patch-from,
bsdiff4 and casync over the same two bundles, in the same run.

    python benchmarks/delta.py [--model-size 1GiB] [--scenarios a,b,c,d] [--repeat 3]
        [--work DIR --keep] [--bsdiff-max 256MiB] [--zstd-level 19] [--json]
    python benchmarks/delta.py --model-size 64MiB            # a quick run
    python benchmarks/delta.py --model-size 4GiB --scenarios a --repeat 1 --no-baselines
                                                              # the RSS check

Every input is made here, in --work (a temporary directory, removed unless --keep):

  a  an ONNX model of --model-size (default 1 GiB): --tensors float32 initializers
     (default 200, ``raw_data``, random bytes, an Identity graph; written field by field as
     make_large.py does, so no size needs more memory than 4 MiB); NEW is "a fine-tune of
     the last layers": the last 5 % of the tensors by bytes get new random values, names
     and shapes unchanged.
  b  the example bundle (bundles/example) with one optional property added to
     config/config.schema.json, the field in config/config.json and the version bumped.
  c  the example bundle plus a ``wheelhouse: wheels`` of --wheels (default 100) synthetic
     wheels (METADATA, WHEEL, RECORD, 2-6 modules of 20-500 KiB of source-like text,
     deflated); NEW bumps one wheel's patch version (file name, dist-info directory,
     METADATA, RECORD), its modules byte for byte the same.
  d  a's OLD model, NEW the same payload with only the spec version bumped.

Each OLD and NEW is built (``oemkit build --source-date-epoch``, NEW a day later) and signed
with keys-example's bundle key (passphrase in OEMKIT_KEY_PASSPHRASE). Measured, per scenario:

  oemkit delta    ``oemkit delta OLD NEW --out NEW.oemd --key KEY --json`` (size, time, peak
                  RSS); ``--explain --json`` must report the same figures.
  oemkit patch    ``oemkit patch OLD NEW.oemd --out X --trust ROOT`` in a fresh process, best
                  of --repeat; MB/s of the NEW payload's file bytes (goal >= 200 MB/s, judged
                  where that payload is >= 64 MiB: below it start-up is all one measures),
                  peak RSS (``/usr/bin/time -f %M``, goal < 300 MB), X byte-identical to NEW.
                  For context, over the same payload: ``oemkit verify NEW``, ``zstd -3
                  --single-thread`` of NEW's payload tar (what rebuilding payload.tar.zst
                  costs at least) and ``zstd -d`` of it.
  zstd            ``zstd -19 --patch-from=OLD NEW`` (``--long=31`` over 128 MiB) over the
                  payload.tar.zst members (the issue's baseline), the decompressed payload
                  tars and the whole .oemb files (fair: the delta carries NEW's metadata too).
                  Above --zstd-fast-above (256 MiB of NEW input) level 9 is used instead:
                  level 19's optimal parser takes ~6 min a GiB on two cores, and on this
                  incompressible data the two levels' outputs differ by < 0.1 %.
  bsdiff4         ``bsdiff4.diff`` over the payload tars, in a child, when old + new <=
                  --bsdiff-max (it needs ~17x their size in memory); skipped with the reason.
  casync          ``casync make --store=S_old old.caidx OLD/`` and the same for NEW over the
                  unpacked payload directories (a directory is a .caidx in casync, not a
                  .caibx); the cost is the chunk files in S_new absent from S_old plus
                  new.caidx. Without casync: "casync: not installed (apt-get install casync)".
  changed bytes   what of NEW's payload content is new, per file: 0 for a file whose SHA-256
                  some OLD file has; for the model of a the changed tensors' raw_data bytes;
                  for a wheel of a project OLD has a wheel of, its zip entries (local header
                  and data) that OLD's wheel does not have byte for byte, plus its central
                  directory; for a file at the same path up to 4 MiB, the bytes outside
                  difflib's matching blocks; otherwise the whole file. Plus "metadata": zstd
                  -19 of NEW's outer members other than payload.tar.zst, concatenated in
                  order. Goal: delta / (changed + metadata) <= 1.1.

``--no-baselines`` skips zstd, bsdiff4 and casync (the oemkit figures and changed bytes
remain). Prints a table per scenario, a machine line first and a summary of goals met or
missed last.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import difflib
import hashlib
import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import large_bundle  # noqa: E402
import make_large  # noqa: E402
from make_large import f_bytes, f_str, f_varint, key, value_info, varint  # noqa: E402

KEYS = large_bundle.KEYS
BUNDLE_KEY = KEYS / "bundle.key"
PASSPHRASE = large_bundle.PASSPHRASE
EXAMPLE = REPO / "bundles" / "example"
TIME = "/usr/bin/time"
EPOCH_OLD, EPOCH_NEW = 1700000000, 1700086400
COLS = 1024  # float32 columns of every tensor: 4 KiB a row
FLOAT = 1
FINETUNE_SHARE = 20  # the last 1/20 (5 %) of the tensors' bytes change
GOAL_RATIO, GOAL_MBPS, GOAL_RSS = 1.1, 200.0, 300e6
JUDGE_SPEED_FROM = 64 << 20


# --------------------------------------------------------------------------- helpers


def env() -> dict[str, str]:
    return {**os.environ, "OEMKIT_KEY_PASSPHRASE": PASSPHRASE}


def timed(argv: list[str], check: bool = True) -> tuple[float, int, str, int]:
    """Run ``argv`` under /usr/bin/time; (wall seconds, peak RSS bytes, stdout, status)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rss:
        cmd = [TIME, "-o", rss.name, "-f", "%M", *argv] if os.path.exists(TIME) else argv
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env())
        wall = time.perf_counter() - start
        if check and proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout}\n"
                             f"{proc.stderr}")
        try:
            peak = int(Path(rss.name).read_text().split()[-1]) * 1024
        except (ValueError, IndexError):
            peak = 0
    return wall, peak, proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr, \
        proc.returncode


def sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return str(hashlib.file_digest(handle, "sha256").hexdigest())


def mib(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n:.0f} B"


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def bump_version(spec: Path, version: str) -> None:
    text = spec.read_text()
    new, n = re.subn(r"(?m)^version:.*$", f'version: "{version}"', text)
    assert n == 1, spec
    spec.write_text(new)


# --------------------------------------------------------------------------- (a) the model


def model_tensors(model_size: int, count: int) -> list[tuple[str, list[int]]]:
    """``count`` tensors in layers of an attention weight [r, 1024] and an MLP weight
    [3r, 1024]; r chosen so that they sum to about ``model_size`` bytes."""
    layers = max(1, count // 2)
    rows = max(1, model_size // (layers * 4 * COLS * 4))
    out: list[tuple[str, list[int]]] = []
    for k in range(layers):
        out.append((f"layers.{k:03d}.attn.weight", [rows, COLS]))
        out.append((f"layers.{k:03d}.mlp.weight", [3 * rows, COLS]))
    return out


def nbytes(dims: list[int]) -> int:
    n = 4
    for d in dims:
        n *= d
    return n


def finetuned(tensors: list[tuple[str, list[int]]]) -> set[int]:
    """Indices of the last tensors holding >= 1/FINETUNE_SHARE of the bytes."""
    total = sum(nbytes(d) for _, d in tensors)
    acc, picked = 0, set()
    for i in range(len(tensors) - 1, -1, -1):
        if acc * FINETUNE_SHARE >= total:
            break
        picked.add(i)
        acc += nbytes(tensors[i][1])
    return picked


def write_model(path: Path, tensors: list[tuple[str, list[int]]], seeds: list[int]) -> int:
    """ModelProto{ir 8, opset 17, graph{Identity x -> y, initializers}}, streamed."""
    heads = [b"".join(f_varint(1, d) for d in dims) + f_varint(2, FLOAT) + f_str(8, name)
             + key(9, 2) + varint(nbytes(dims)) for name, dims in tensors]
    entries = [key(5, 2) + varint(len(h) + nbytes(d))
               for h, (_, d) in zip(heads, tensors, strict=True)]
    node = f_str(1, "x") + f_str(2, "y") + f_str(3, "identity") + f_str(4, "Identity")
    graph_head = f_bytes(1, node) + f_str(2, "finetune")
    graph_tail = (f_bytes(11, value_info("x", FLOAT, ["batch", 16]))
                  + f_bytes(12, value_info("y", FLOAT, ["batch", 16])))
    graph_len = (len(graph_head) + len(graph_tail)
                 + sum(len(e) + len(h) + nbytes(d) for e, h, (_, d) in
                       zip(entries, heads, tensors, strict=True)))
    model_head = (f_varint(1, 8) + f_str(2, "oemkit-bench-delta") + f_str(3, "1")
                  + f_bytes(8, f_str(1, "") + f_varint(2, 17)) + key(7, 2) + varint(graph_len))
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as out:
        out.write(model_head + graph_head)
        for entry, head, (_, dims), seed in zip(entries, heads, tensors, seeds,
                                                    strict=True):
            out.write(entry + head)
            for chunk in make_large.stream("random", nbytes(dims), seed):
                out.write(chunk)
        out.write(graph_tail)
        size = out.tell()
    tmp.replace(path)
    return size


@dataclasses.dataclass
class Models:
    old: Path
    new: Path
    tensors: int
    changed_tensors: int
    changed_bytes: int


def make_models(work: Path, model_size: int, count: int) -> Models:
    tensors = model_tensors(model_size, count)
    picked = finetuned(tensors)
    base = work / "models" / f"{model_size}-{count}"
    base.mkdir(parents=True, exist_ok=True)
    old, new = base / "old.onnx", base / "new.onnx"
    for path, seeds in ((old, [1000 + i for i in range(len(tensors))]),
                        (new, [(900000 if i in picked else 1000) + i
                               for i in range(len(tensors))])):
        if not path.exists():
            start = time.perf_counter()
            size = write_model(path, tensors, seeds)
            print(f"  wrote {path} ({mib(size)}, {len(tensors)} tensors) in "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    from oemkit.release.modelcard import read_model_card

    card = read_model_card(old)
    assert card.inputs and card.outputs, card
    return Models(old, new, len(tensors), len(picked),
                  sum(nbytes(tensors[i][1]) for i in picked))


def model_spec(spec_dir: Path, model: Path, version: str, note: str) -> Path:
    link_or_copy(model, spec_dir / "model" / "model.onnx")
    (spec_dir / "labels.txt").write_text("".join(f"{i} {w}\n" for i, w in
                                                 enumerate(make_large.WORDS)))
    spec = spec_dir / "bundle.yaml"
    spec.write_text("apiVersion: oemkit/v1\n"
                    'name: "finetune"\n'
                    f'version: "{version}"\n'
                    f'description: "benchmarks/delta.py: {note}"\n'
                    "model: model/model.onnx\n"
                    "profiles: [cpu-large]\n"
                    "files: [labels.txt]\n")
    return spec


# --------------------------------------------------------------------------- (b) config


def example_copy(dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns("dist", "wheels"))
    return dst / "bundle.yaml"


def add_config_field(spec_dir: Path) -> None:
    schema_path = spec_dir / "config" / "config.schema.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"]["log_level"] = {"enum": ["debug", "info", "warning", "error"],
                                         "type": "string"}
    schema_path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    config_path = spec_dir / "config" / "config.json"
    config = json.loads(config_path.read_text())
    config["log_level"] = "info"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- (c) wheels


IDENTS = ["value", "items", "config", "result", "buffer", "offset", "index", "count", "name",
          "path", "data", "tensor", "shape", "dtype", "batch", "session", "model", "output",
          "inputs", "handle", "state", "cache", "key", "node", "graph", "options", "stream"]
KEYWORDS = ["if", "for", "while", "return", "yield", "with", "raise", "assert"]


def line_pool(rng: random.Random, n: int = 40000) -> list[str]:
    """Source-like lines: defs, calls, assignments, comments, with random identifiers."""
    def ident() -> str:
        return f"{rng.choice(IDENTS)}_{rng.choice(IDENTS)}{rng.randrange(100)}"

    lines = []
    for _ in range(n):
        indent = "    " * rng.randrange(0, 4)
        kind = rng.randrange(8)
        if kind == 0:
            line = f"def {ident()}(self, {ident()}, {ident()}={rng.randrange(1000)}):"
        elif kind == 1:
            line = f"{ident()} = {ident()}.{ident()}({ident()}, {rng.random():.6f})"
        elif kind == 2:
            words = (rng.choice(make_large.WORDS) for _ in range(rng.randrange(3, 12)))
            line = f"# {' '.join(words)}"
        elif kind == 3:
            line = f"{rng.choice(KEYWORDS)} {ident()} {rng.choice(['is None', '> 0', ''])}:"
        elif kind == 4:
            line = f'"""{" ".join(rng.choice(IDENTS) for _ in range(rng.randrange(4, 14)))}."""'
        elif kind == 5:
            line = f"return {ident()}[{rng.randrange(64)}:{ident()}] + {rng.randrange(10**6)}"
        elif kind == 6:
            line = f"class {ident().title().replace('_', '')}({ident().title()}):"
        else:
            line = f"self.{ident()} = {{{', '.join(repr(ident()) for _ in range(3))}}}"
        lines.append(indent + line)
    return lines


def b64_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_version(i: int, bump: bool) -> str:
    return f"{1 + i % 3}.{i % 10}.{i % 7 + (1 if bump else 0)}"


def make_wheel(dest: Path, i: int, pool: list[str], bump: bool = False) -> Path:
    """A valid pure-Python wheel; its modules depend on ``i`` only, not on the version."""
    rng = random.Random(10_000 + i)
    dist = f"synth_pkg{i:03d}"
    version = wheel_version(i, bump)
    files: list[tuple[str, bytes]] = [(f"{dist}/__init__.py",
                                       f'"""synthetic package {i}."""\n__version__ = '
                                       f'"{wheel_version(i, False)}"\n'.encode())]
    for m in range(rng.randrange(2, 7)):
        size = int(20 * 1024 * 25 ** rng.random())  # log-uniform 20 .. 500 KiB
        text, total = [], 0
        while total < size:
            chunk = rng.choices(pool, k=64)
            text.extend(chunk)
            total += sum(len(c) + 1 for c in chunk)
        files.append((f"{dist}/{rng.choice(IDENTS)}_{m}.py",
                      ("\n".join(text) + "\n").encode()[:size]))
    info = f"{dist}-{version}.dist-info"
    files.append((f"{info}/METADATA", (
        f"Metadata-Version: 2.1\nName: synth-pkg{i:03d}\nVersion: {version}\n"
        f"Summary: synthetic wheel {i} for benchmarks/delta.py\nLicense: MIT\n"
        f"Requires-Python: >=3.10\n").encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: oemkit-bench-delta\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    record = "".join(f"{name},sha256={b64_digest(data)},{len(data)}\n" for name, data in files)
    files.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    path = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files:
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    return path


def make_wheelhouse(dest: Path, count: int, bumped: int | None) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    pool = line_pool(random.Random(7))
    return sum(make_wheel(dest, i, pool, bump=i == bumped).stat().st_size
               for i in range(count))


# --------------------------------------------------------------------------- changed bytes


def zip_changed(old: bytes, new: bytes) -> int:
    """NEW's zip entries (local header + data) OLD lacks byte for byte, plus NEW's central
    directory and end record."""
    def entries(data: bytes) -> tuple[set[tuple[str, int, int]], list[zipfile.ZipInfo], int]:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            start_dir = int(zf.start_dir)
        return {(z.filename, z.CRC, z.compress_size) for z in infos}, infos, start_dir

    have, _, _ = entries(old)
    _, infos, start_dir = entries(new)
    cost = len(new) - start_dir
    for z in infos:
        if (z.filename, z.CRC, z.compress_size) not in have:
            cost += 30 + len(z.filename.encode()) + len(z.extra) + z.compress_size
    return cost


def bytes_changed(old: bytes, new: bytes) -> int:
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return len(new) - sum(block.size for block in matcher.get_matching_blocks())


def wheel_project(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    return name.split("-", 1)[0].lower() if name.endswith(".whl") else None


def read_member(tar_path: Path, name: str) -> bytes:
    with tarfile.open(tar_path) as tar:
        handle = tar.extractfile(name)
        assert handle is not None, name
        return handle.read()


def changed_content(old_tar: Path, new_tar: Path, old_files: list[dict[str, Any]],
                    new_files: list[dict[str, Any]], hints: dict[str, int]
                    ) -> tuple[int, list[tuple[str, int, str]]]:
    """Changed bytes of NEW's payload (the rules of the module docstring), reading the
    files it compares from the two payload tars."""
    digests = {f["sha256"] for f in old_files}
    by_path = {f["path"]: f for f in old_files}
    wheels = {wheel_project(f["path"]): f["path"] for f in old_files if wheel_project(f["path"])}
    total, detail = 0, []
    for f in new_files:
        path, size = f["path"], f["size"]
        if f["sha256"] in digests:
            continue
        if path in hints:
            n, how = hints[path], "changed tensors"
        elif (project := wheel_project(path)) and project in wheels:
            n = zip_changed(read_member(old_tar, wheels[project]), read_member(new_tar, path))
            how = "zip entries"
        elif path in by_path and size <= 4 << 20 and by_path[path]["size"] <= 4 << 20:
            n = bytes_changed(read_member(old_tar, path), read_member(new_tar, path))
            how = "byte diff"
        else:
            n, how = size, "whole file"
        total += n
        detail.append((path, n, how))
    return total, detail


# --------------------------------------------------------------------------- baselines


def outer_members(bundle: Path) -> list[tuple[str, bytes | None]]:
    """(name, data) of each outer member; the payload's data is None (not read)."""
    out: list[tuple[str, bytes | None]] = []
    with tarfile.open(bundle) as tar:
        for member in tar:
            if member.name == "payload.tar.zst":
                out.append((member.name, None))
            else:
                handle = tar.extractfile(member)
                assert handle is not None
                out.append((member.name, handle.read()))
    return out


def extract_payload(bundle: Path, dest: Path) -> None:
    with tarfile.open(bundle) as tar:
        handle = tar.extractfile("payload.tar.zst")
        assert handle is not None
        with open(dest, "wb") as out:
            shutil.copyfileobj(handle, out, 4 << 20)


def metadata_blob(bundle: Path) -> bytes:
    return b"".join(data for _, data in outer_members(bundle) if data is not None)


def metadata_cost(old: Path, new: Path) -> tuple[int, int]:
    """zstd -19 of NEW's metadata members, alone and with OLD's as the dictionary."""
    import zstandard

    blob = metadata_blob(new)
    alone = len(zstandard.ZstdCompressor(level=19).compress(blob))
    ref = zstandard.ZstdCompressionDict(metadata_blob(old),
                                        dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    against = len(zstandard.ZstdCompressor(level=19, dict_data=ref).compress(blob))
    return alone, against


def zstd_patch(old: Path, new: Path, out: Path, level: int) -> tuple[int, float, int]:
    cmd = ["zstd", "-q", "-f", f"-{level}", f"--patch-from={old}", str(new), "-o", str(out)]
    if max(old.stat().st_size, new.stat().st_size) > 128 << 20:
        cmd.insert(3, "--long=31")
    wall, peak, _, _ = timed(cmd)
    return out.stat().st_size, wall, peak


BSDIFF = """
import sys, bsdiff4
old = open(sys.argv[1], 'rb').read()
new = open(sys.argv[2], 'rb').read()
open(sys.argv[3], 'wb').write(bsdiff4.diff(old, new))
"""


def untar(tar_path: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    for root, dirs, _ in os.walk(dest):  # tar has no directory entries: fix their mtime
        for d in dirs:
            os.utime(Path(root) / d, (0, 0))
    os.utime(dest, (0, 0))


def casync_cost(old_dir: Path, new_dir: Path, m: Path) -> tuple[int, float, str]:
    stores = {}
    wall = 0.0
    for tag, d in (("old", old_dir), ("new", new_dir)):
        store = m / f"S_{tag}"
        shutil.rmtree(store, ignore_errors=True)
        took, _, _, _ = timed(["casync", "make", f"--store={store}", str(m / f"{tag}.caidx"),
                               str(d)])
        wall = took
        stores[tag] = {p.relative_to(store): p.stat().st_size for p in store.rglob("*.cacnk")}
    fresh = [n for p, n in stores["new"].items() if p not in stores["old"]]
    index = (m / "new.caidx").stat().st_size
    return sum(fresh) + index, wall, (f"{len(fresh)} of {len(stores['new'])} chunks new "
                                      f"+ caidx {mib(index)}")


# --------------------------------------------------------------------------- scenarios


@dataclasses.dataclass
class Scenario:
    key: str
    title: str
    old_spec: Path
    new_spec: Path
    hints: dict[str, int] = dataclasses.field(default_factory=dict)


def scenario_a(work: Path, models: Models, size_text: str) -> Scenario:
    d = work / "a"
    old = model_spec(d / "old", models.old, "1.0.0", f"{size_text} model")
    new = model_spec(d / "new", models.new, "1.0.1", f"{size_text} model, fine-tuned")
    return Scenario("a", f"{size_text} ONNX model, the last 5 % of its bytes re-trained "
                         f"({models.changed_tensors} of {models.tensors} tensors)", old, new,
                    {"model/model.onnx": models.changed_bytes})


def scenario_b(work: Path) -> Scenario:
    d = work / "b"
    old = example_copy(d / "old")
    new = example_copy(d / "new")
    add_config_field(new.parent)
    bump_version(new, "0.2.1")
    return Scenario("b", "example bundle, one optional config field added (schema + config)",
                    old, new)


def scenario_c(work: Path, wheels: int) -> Scenario:
    d = work / "c"
    specs = []
    for tag, bumped in (("old", None), ("new", wheels // 2)):
        spec = example_copy(d / tag)
        spec.write_text(spec.read_text() + "wheelhouse: wheels\n")
        start = time.perf_counter()
        total = make_wheelhouse(spec.parent / "wheels", wheels, bumped)
        print(f"  wrote {wheels} wheels ({mib(total)}) for {tag} in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        specs.append(spec)
    bump_version(specs[1], "0.2.1")
    return Scenario("c", f"example bundle + {wheels}-wheel wheelhouse, one wheel's patch "
                         "version bumped", specs[0], specs[1])


def scenario_d(work: Path, models: Models, size_text: str) -> Scenario:
    d = work / "d"
    old = model_spec(d / "old", models.old, "1.0.0", f"{size_text} model")
    new = model_spec(d / "new", models.old, "1.0.1", f"{size_text} model")
    return Scenario("d", f"{size_text} model, identical payload, only the version bumped",
                    old, new)


# --------------------------------------------------------------------------- measuring


def build_and_sign(spec: Path, out: Path, epoch: int) -> tuple[Path, dict[str, Any]]:
    shutil.rmtree(out, ignore_errors=True)
    oemkit = large_bundle.oemkit_cmd()
    _, _, stdout, _ = timed([*oemkit, "build", str(spec), "--out", str(out),
                             "--source-date-epoch", str(epoch), "--json"])
    info = json.loads(stdout)
    bundle = Path(info["bundle"])
    if not bundle.is_absolute():
        bundle = Path.cwd() / bundle
    timed([*oemkit, "sign", str(bundle), "--key", str(BUNDLE_KEY)])
    return bundle, info


def manifest(bundle: Path) -> dict[str, Any]:
    with tarfile.open(bundle) as tar:
        handle = tar.extractfile("oemkit-bundle.json")
        assert handle is not None
        return dict(json.load(handle))


def delta_parts(oemd: Path) -> dict[str, int]:
    """Bytes of the .oemd by part (docs/DELTA.md: a prefix of magic, lengths and signature
    count, the signature lengths, the preamble, the header frame, the signatures, the data).
    ``signatures`` counts their lengths' fields too: what an unsigned delta lacks."""
    with open(oemd, "rb") as handle:
        front = handle.read(25)
        if len(front) < 25 or front[:7] != b"OEMKITD":
            return {"unparsed (not an OEMKITD container)": oemd.stat().st_size}
        _, preamble, header, data, count = struct.unpack(">8sIIQB", front)
        sigs = struct.unpack(f">{count}H", handle.read(2 * count))
    parts = {"prefix": 25, "preamble": preamble, "header": header,
             "signatures": 2 * count + sum(sigs), "data": data}
    rest = oemd.stat().st_size - sum(parts.values())
    if rest:
        parts["unaccounted"] = rest
    return parts


def delta_available() -> str | None:
    proc = subprocess.run([*large_bundle.oemkit_cmd(), "delta", "--help"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return (proc.stderr or proc.stdout).strip().splitlines()[-1]
    return None


def measure(sc: Scenario, args: argparse.Namespace, trust: Path) -> dict[str, Any]:
    work: Path = args.work / sc.key
    m = work / "m"
    shutil.rmtree(m, ignore_errors=True)
    m.mkdir(parents=True)
    oemkit = large_bundle.oemkit_cmd()
    res: dict[str, Any] = {"scenario": sc.key, "title": sc.title, "findings": []}
    print(f"\n== scenario {sc.key}: {sc.title}", flush=True)
    old_b, _ = build_and_sign(sc.old_spec, work / "out-old", EPOCH_OLD)
    new_b, new_info = build_and_sign(sc.new_spec, work / "out-new", EPOCH_NEW)
    new_size = new_b.stat().st_size
    payload_bytes = int(new_info["payload_bytes"])
    old_man, new_man = manifest(old_b), manifest(new_b)
    res.update(old_bundle=old_b.stat().st_size, new_bundle=new_size,
               payload_bytes=payload_bytes, files=len(new_man["files"]))
    print(f"OLD {old_b.name} {old_b.stat().st_size} B; NEW {new_b.name} {new_size} B "
          f"({mib(new_size)}); NEW payload {len(new_man['files'])} files, {payload_bytes} B")
    rows: list[tuple[str, int | None, str]] = []  # (method, bytes, note)
    rows.append(("full NEW bundle", new_size, ""))

    # oemkit delta / patch
    missing = delta_available()
    delta_size: int | None = None
    delta_json: dict[str, Any] = {}
    if missing:
        print(f"oemkit delta: not available ({missing})")
        res["findings"].append(f"oemkit delta not available: {missing}")
    else:
        oemd = m / "new.oemd"
        wall, peak, stdout, rc = timed([*oemkit, "delta", str(old_b), str(new_b), "--out",
                                        str(oemd), "--key", str(BUNDLE_KEY), "--json"],
                                       check=False)
        if rc != 0:
            res["findings"].append(f"oemkit delta failed ({rc}): {stdout.strip()[-400:]}")
            print(f"oemkit delta failed ({rc}):\n{stdout}")
        else:
            delta_json = json.loads(stdout)
            delta_size = oemd.stat().st_size
            res.update(delta=delta_size, delta_s=wall, delta_rss=peak, delta_json=delta_json)
            rows.append(("oemkit delta", delta_size, f"{wall:.2f} s, {mib(peak)} RSS"))
            if delta_json.get("size") != delta_size:
                res["findings"].append(f"delta --json size {delta_json.get('size')} != file "
                                       f"size {delta_size}")
            if delta_json.get("new_bundle_size") != new_size:
                res["findings"].append(f"delta --json new_bundle_size "
                                       f"{delta_json.get('new_bundle_size')} != {new_size}")
            _, _, stdout, rc = timed([*oemkit, "delta", str(old_b), str(new_b), "--explain",
                                      "--json"], check=False)
            if rc != 0:
                res["findings"].append(f"oemkit delta --explain failed ({rc}): "
                                       f"{stdout.strip()[-300:]}")
            else:
                explain = json.loads(stdout)
                parts = delta_parts(oemd)
                res["delta_parts"] = parts
                # --explain takes no --key: its size is the unsigned delta's.
                signed = explain.get("size", 0) + parts["signatures"]
                differ = {k: (explain.get(k), delta_json.get(k))
                          for k in ("totals", "files", "members")
                          if explain.get(k) != delta_json.get(k)}
                if signed != delta_size:
                    differ["size"] = (signed, delta_size)
                if differ:
                    res["findings"].append(
                        "--explain differs from the delta written in "
                        + ", ".join(f"{k} ({a!r:.120} vs {b!r:.120})"
                                    for k, (a, b) in differ.items()))
                res["explain_agrees"] = not differ
            walls, peaks, identical, failed = [], [], True, False
            for _ in range(args.repeat):
                rebuilt = m / "rebuilt.oemb"
                rebuilt.unlink(missing_ok=True)
                wall, peak, stdout, rc = timed([*oemkit, "patch", str(old_b), str(oemd),
                                                "--out", str(rebuilt), "--trust", str(trust),
                                                "--json"], check=False)
                if rc != 0:
                    res["findings"].append(f"oemkit patch failed ({rc}): "
                                           f"{stdout.strip()[-400:]}")
                    identical, failed = False, True
                    break
                walls.append(wall)
                peaks.append(peak)
                identical = identical and sha256(rebuilt) == sha256(new_b)
            res.update(patch_s=walls, patch_rss=max(peaks, default=0), identical=identical)
            if not identical and not failed:
                res["findings"].append("the rebuilt bundle is not byte-identical to NEW")

    # zstd, bsdiff, casync
    zo, zn = m / "old.payload.tar.zst", m / "new.payload.tar.zst"
    extract_payload(old_b, zo)
    extract_payload(new_b, zn)
    to, tn = m / "old.payload.tar", m / "new.payload.tar"
    for src, dst in ((zo, to), (zn, tn)):
        subprocess.run(["zstd", "-q", "-d", "-f", "--long=31", str(src), "-o", str(dst)],
                       check=True)
    if args.no_baselines:
        rows.append(("zstd, bsdiff4, casync", None, "skipped: --no-baselines"))
    else:
        baselines(args, old_b, new_b, zo, zn, to, tn, m, rows, res)
    changed, detail = changed_content(to, tn, old_man["files"], new_man["files"], sc.hints)
    meta, meta_ref = metadata_cost(old_b, new_b)
    res.update(changed=changed, metadata=meta, metadata_vs_old=meta_ref)
    rows.append(("changed bytes + metadata", changed + meta,
                 f"changed {changed} + metadata (zstd -19) {meta}; the metadata against "
                 f"OLD's would be {meta_ref}"))
    if payload_bytes >= JUDGE_SPEED_FROM and res.get("patch_s"):
        # What the apply-speed goal is up against on this machine, same run.
        wall, _, _, _ = timed([*oemkit, "verify", str(new_b), "--trust", str(trust)])
        res["verify_s"] = wall
        res["zstd3_s"] = shell(f"zstd -q -3 --single-thread -c {tn} > /dev/null")
        res["unzstd_s"] = shell(f"zstd -q -d -c {zn} > /dev/null")
    report(sc, res, rows, detail, new_size, payload_bytes, delta_size, delta_json)
    if not args.keep:
        shutil.rmtree(m, ignore_errors=True)
    return res


def shell(command: str) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
    return time.perf_counter() - start


def baselines(args: argparse.Namespace, old_b: Path, new_b: Path, zo: Path, zn: Path,
              to: Path, tn: Path, m: Path, rows: list[tuple[str, int | None, str]],
              res: dict[str, Any]) -> None:
    """The zstd, bsdiff4 and casync rows."""
    for label, old, new in (("zstd --patch-from, payload.tar.zst (issue)", zo, zn),
                            ("zstd --patch-from, payload tar", to, tn),
                            ("zstd --patch-from, whole .oemb", old_b, new_b)):
        level = args.zstd_level if new.stat().st_size <= args.zstd_fast_above else 9
        size, wall, peak = zstd_patch(old, new, m / "patch.zst", level)
        why = "" if level == args.zstd_level else \
            f" (-{level}: NEW > --zstd-fast-above {mib(args.zstd_fast_above)})"
        rows.append((label.replace("zstd", f"zstd -{level}"), size,
                     f"{wall:.1f} s, {mib(peak)} RSS{why}"))
        res[f"zstd_{label.split(', ')[1].split(' ')[0]}"] = size
    if to.stat().st_size + tn.stat().st_size > args.bsdiff_max:
        rows.append(("bsdiff4, payload tar", None,
                     f"skipped: old + new = {mib(to.stat().st_size + tn.stat().st_size)} > "
                     f"--bsdiff-max {mib(args.bsdiff_max)} (needs ~17x in memory)"))
    else:
        try:
            import bsdiff4  # noqa: F401
        except ImportError:
            rows.append(("bsdiff4, payload tar", None, "skipped: not installed "
                                                       "(pip install 'bsdiff4>=1.2')"))
        else:
            wall, peak, _, _ = timed([sys.executable, "-c", BSDIFF, str(to), str(tn),
                                      str(m / "patch.bsdiff")])
            size = (m / "patch.bsdiff").stat().st_size
            res["bsdiff"] = size
            rows.append(("bsdiff4, payload tar", size, f"{wall:.1f} s, {mib(peak)} RSS"))
    od, nd = m / "old.d", m / "new.d"
    untar(to, od)
    untar(tn, nd)
    if shutil.which("casync"):
        size, wall, note = casync_cost(od, nd, m)
        res["casync"] = size
        rows.append(("casync, chunks new to the store", size, f"{note}; make {wall:.1f} s"))
    else:
        print("casync: not installed (apt-get install casync)")
        rows.append(("casync", None, "not installed (apt-get install casync)"))
    shutil.rmtree(od, ignore_errors=True)
    shutil.rmtree(nd, ignore_errors=True)


def report(sc: Scenario, res: dict[str, Any], rows: list[tuple[str, int | None, str]],
           detail: list[tuple[str, int, str]], new_size: int, payload_bytes: int,
           delta_size: int | None, delta_json: dict[str, Any]) -> None:
    """The scenario's table and verdicts."""
    print(f"{'method':<46} {'bytes':>12} {'% of NEW':>9} {'delta / it':>11}  note")
    for label, cost, note in rows:
        if cost is None:
            print(f"{label:<46} {'-':>12} {'':>9} {'':>11}  {note}")
            continue
        vs = f"{delta_size / cost:.3f}x" if delta_size and cost else ""
        print(f"{label:<46} {cost:>12} {cost / new_size:>8.2%} {vs:>11}  {note}")
    shown = sorted(detail, key=lambda t: -t[1])[:6]
    print("changed: " + (", ".join(f"{p} {n} B ({how})" for p, n, how in shown) or "nothing")
          + (f", ... {len(detail) - len(shown)} more" if len(detail) > len(shown) else ""))
    if delta_json:
        t = delta_json.get("totals", {})
        print(f"delta: files reused {t.get('reused')}, patched {t.get('patched')}, whole "
              f"{t.get('whole')}; payload cost {t.get('payload_cost')} B, metadata cost "
              f"{t.get('metadata_cost')} B")
        costly = sorted(delta_json.get("members", []), key=lambda x: -int(x.get("cost", 0)))
        print("delta metadata members: " + ", ".join(
            f"{x.get('name')} {x.get('cost')} B ({x.get('op')})" for x in costly[:3]))
    if res.get("delta_parts"):
        print("delta file: " + ", ".join(f"{k} {v} B" for k, v in res["delta_parts"].items())
              + "; --explain agrees (signatures aside): "
              + ("yes" if res.get("explain_agrees") else "NO"))
    if delta_size is not None:
        ratio = delta_size / (res["changed"] + res["metadata"])
        res["ratio"] = ratio
        print(f"delta / (changed + metadata) = {ratio:.3f} (goal <= {GOAL_RATIO}): "
              f"{'met' if ratio <= GOAL_RATIO else 'MISSED'}")
        print(f"make delta: {res['delta_s']:.2f} s, peak RSS {mib(res['delta_rss'])}")
    if res.get("patch_s"):
        best = min(res["patch_s"])
        rate = payload_bytes / best / 1e6
        res["patch_mbps"] = rate
        judged = payload_bytes >= JUDGE_SPEED_FROM
        verdict = ("met" if rate >= GOAL_MBPS else "MISSED") if judged else \
            f"not judged: payload < {mib(JUDGE_SPEED_FROM)}, start-up dominates"
        runs = ", ".join(f"{w:.2f}" for w in res["patch_s"])
        print(f"apply (oemkit patch): best {best:.2f} s [{runs}]"
              f" = {rate:.1f} MB/s of {payload_bytes / 1e6:.1f} MB payload (goal >= "
              f"{GOAL_MBPS:.0f} MB/s): {verdict}")
        print(f"apply peak RSS {mib(res['patch_rss'])} = {res['patch_rss'] / 1e6:.0f} MB "
              f"(goal < {GOAL_RSS / 1e6:.0f} MB): "
              f"{'met' if res['patch_rss'] < GOAL_RSS else 'MISSED'}")
        print(f"rebuilt bundle byte-identical to NEW (sha256): "
              f"{'yes' if res['identical'] else 'NO'}")
    if "verify_s" in res:
        mbs = {k: payload_bytes / res[k] / 1e6 for k in ("verify_s", "zstd3_s", "unzstd_s")}
        print(f"apply context, same run: oemkit verify NEW {res['verify_s']:.2f} s "
              f"({mbs['verify_s']:.0f} MB/s); zstd -3 --single-thread of NEW's payload tar "
              f"{res['zstd3_s']:.2f} s ({mbs['zstd3_s']:.0f} MB/s); zstd -d of its "
              f"payload.tar.zst {res['unzstd_s']:.2f} s ({mbs['unzstd_s']:.0f} MB/s); "
              f"patch / verify {min(res['patch_s']) / res['verify_s']:.2f}x")
    for finding in res["findings"]:
        print(f"FINDING: {finding}")


def summary(results: Iterable[dict[str, Any]]) -> None:
    print("\n== summary (goals: delta <= 1.1 x (changed + metadata), apply >= 200 MB/s, "
          "apply peak RSS < 300 MB, rebuilt == NEW)")
    met = missed = 0
    for r in results:
        checks: list[tuple[str, bool | None]] = []
        if "ratio" in r:
            checks.append((f"size {r['ratio']:.3f}x", r["ratio"] <= GOAL_RATIO))
        if "patch_mbps" in r:
            judged = r["payload_bytes"] >= JUDGE_SPEED_FROM
            checks.append((f"apply {r['patch_mbps']:.0f} MB/s",
                           r["patch_mbps"] >= GOAL_MBPS if judged else None))
            checks.append((f"RSS {r['patch_rss'] / 1e6:.0f} MB", r["patch_rss"] < GOAL_RSS))
        if "identical" in r:
            checks.append(("identical", bool(r["identical"])))
        if not checks:
            checks.append(("oemkit delta/patch did not run", False))
        met += sum(1 for _, ok in checks if ok)
        missed += sum(1 for _, ok in checks if ok is False)
        print(f"  {r['scenario']}: " + "; ".join(
            f"{name} {'met' if ok else ('n/a' if ok is None else 'MISSED')}"
            for name, ok in checks) + (f"; {len(r['findings'])} finding(s)"
                                       if r["findings"] else ""))
    print(f"  goals met {met}, missed {missed}")


def run(args: argparse.Namespace) -> None:
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    casync = subprocess.run(["casync", "--version"], capture_output=True, text=True
                            ).stdout.split("\n")[0] if shutil.which("casync") else "no casync"
    try:
        import bsdiff4

        bsd = f"bsdiff4 {bsdiff4.__version__}"
    except ImportError:
        bsd = "no bsdiff4"
    print(f"machine: {large_bundle.machine()}, {casync}, {bsd}")
    print(f"work dir {work}; model {args.size_text} in {args.tensors} tensors, "
          f"{args.wheels} wheels, repeat {args.repeat}", flush=True)
    trust = large_bundle.trust_root(work)
    models = None
    if {"a", "d"} & set(args.scenarios):
        models = make_models(work, args.model_size, args.tensors)
    results = []
    for s in args.scenarios:
        if s == "a" and models:
            sc = scenario_a(work, models, args.size_text)
        elif s == "b":
            sc = scenario_b(work)
        elif s == "c":
            sc = scenario_c(work, args.wheels)
        elif s == "d" and models:
            sc = scenario_d(work, models, args.size_text)
        else:
            raise SystemExit(f"unknown scenario {s!r}")
        results.append(measure(sc, args, trust))
    summary(results)
    if args.json:
        print(json.dumps(results, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-size", default="1GiB", help="model of a and d (default 1GiB)")
    parser.add_argument("--tensors", type=int, default=200)
    parser.add_argument("--wheels", type=int, default=100)
    parser.add_argument("--scenarios", default="a,b,c,d")
    parser.add_argument("--repeat", type=int, default=3, help="oemkit patch runs (best of)")
    parser.add_argument("--bsdiff-max", type=make_large.parse_size,
                        default=make_large.parse_size("256MiB"))
    parser.add_argument("--zstd-level", type=int, default=19)
    parser.add_argument("--zstd-fast-above", type=make_large.parse_size,
                        default=make_large.parse_size("256MiB"),
                        help="NEW inputs larger than this get zstd -9 (default 256MiB)")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip zstd, bsdiff4 and casync (for the 4GiB RSS check)")
    parser.add_argument("--work", type=Path, help="default: a temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep --work and what is in it")
    parser.add_argument("--json", action="store_true", help="also print the raw numbers")
    args = parser.parse_args()
    args.size_text = args.model_size
    args.model_size = make_large.parse_size(args.model_size)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    temp = args.work is None
    if temp:
        args.work = Path(tempfile.mkdtemp(prefix="oemkit-delta-bench-"))
    args.work = args.work.resolve()
    try:
        run(args)
    finally:
        if temp and not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
