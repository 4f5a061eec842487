"""Multi-gigabyte bundles (issue 8): build and verify against their baselines, side by side.

    python benchmarks/large_bundle.py --size 1GiB [--files 1000] [--repeat 3]
    python benchmarks/large_bundle.py --size 8GiB --data zeros --rss-only
    python benchmarks/large_bundle.py --size 1MiB --files 100000 --repeat 1
    python benchmarks/large_bundle.py --levels

Writes a spec with benchmarks/make_large.py (one ONNX model of --size, --files small
files; kept in --work and reused), then, --repeat times and interleaved so that a noisy
neighbour hits both sides alike:

  build     ``oemkit build SPEC --out DIR`` (CLI, a fresh process: start-up included)
  baseline  ``tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - DIR |
            zstd -3 -T0 > out`` over the spec directory (no hashing, no fsync)
  verify    ``oemkit verify BUNDLE --trust ROOT`` (CLI, fresh process), and the library
            call ``verify_bundle`` timed inside a child (start-up excluded)
  hash      ``hashlib.file_digest(f, "sha256")`` over every payload file, in this process

Prints best and median seconds, throughput over the payload bytes (the files' sizes),
peak RSS of each oemkit process (``/usr/bin/time -f %M``), and the ratios the issue
sets: build <= 1.25 x baseline, verify >= 70 % of file_digest throughput. Use
incompressible data (the default, ``--data random``) for throughput; ``--data zeros``
(a sparse file) is for memory checks at sizes the disk could not hold otherwise.
``--levels`` prints zstd speed and ratio per level on model-like and text-like data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KEYS = REPO / "keys-example"
PASSPHRASE = "oemkit-example-insecure"
sys.path.insert(0, str(HERE))

import make_large  # noqa: E402

TIME = "/usr/bin/time"


def oemkit_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("oemkit")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "oemkit"]


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    import zstandard

    zstd_cli = subprocess.run(["zstd", "--version"], capture_output=True, text=True).stdout.strip()
    tar = subprocess.run(["tar", "--version"], capture_output=True, text=True).stdout
    return (f"{os.cpu_count()} x {cpu}, {mem:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, python-zstandard "
            f"{zstandard.__version__} (libzstd {zstandard.ZSTD_VERSION}), "
            f"{zstd_cli.strip('* ').split(',')[0]}, {tar.splitlines()[0] if tar else 'tar ?'}")


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run ``argv`` under /usr/bin/time; return (wall seconds, peak RSS in bytes)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rss:
        cmd = [TIME, "-o", rss.name, "-f", "%M", *argv] if os.path.exists(TIME) else argv
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")
        try:
            peak = int(Path(rss.name).read_text().split()[-1]) * 1024
        except (ValueError, IndexError):
            peak = 0
    return wall, peak


def shell(command: str) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
    return time.perf_counter() - start


def payload_files(spec_dir: Path) -> list[Path]:
    return sorted(p for p in spec_dir.rglob("*") if p.is_file() and p.name != "bundle.yaml")


def hash_files(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        with open(path, "rb") as handle:
            hashlib.file_digest(handle, "sha256")
    return time.perf_counter() - start


VERIFY_LIB = """
import sys, time
from oemkit.verify.bundle import verify_bundle
start = time.perf_counter()
report = verify_bundle(sys.argv[1], sys.argv[2])
print(time.perf_counter() - start if report.ok else -1)
"""


def verify_lib(bundle: Path, trust: Path) -> float:
    out = subprocess.run([sys.executable, "-c", VERIFY_LIB, str(bundle), str(trust)],
                         capture_output=True, text=True, check=True).stdout
    value = float(out.strip())
    if value < 0:
        raise SystemExit("library verify rejected the bundle")
    return value


def trust_root(work: Path) -> Path:
    from oemkit.crypto.keys import load_private_file
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.trust import parse_root

    path = work / "trust-root.json"
    if not path.exists():
        root = load_private_file(KEYS / "root.key", PASSPHRASE.encode())
        bundle = load_private_file(KEYS / "bundle.key", PASSPHRASE.encode())
        v1 = init_root([root], names=["root"])
        path.write_bytes(add_key(parse_root(v1), bundle.public, ["bundle"], [root],
                                 name="bundle"))
    return path


def gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def summary(name: str, values: list[float], nbytes: int | None = None) -> str:
    best, median = min(values), statistics.median(values)
    rate = f", {nbytes / best / 1e9:.2f} GB/s best" if nbytes else ""
    runs = ", ".join(f"{v:.2f}" for v in values)
    return f"{name:<34} best {best:7.2f} s  median {median:7.2f} s{rate}  [{runs}]"


def run(args: argparse.Namespace) -> None:
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    spec_dir = work / f"spec-{args.size_text}-{args.files}-{args.data}"
    if not (spec_dir / "bundle.yaml").exists():
        print(f"generating {spec_dir} ...", flush=True)
        shutil.rmtree(spec_dir, ignore_errors=True)
        start = time.perf_counter()
        make_large.make(spec_dir, args.size, args.files, args.data)
        print(f"  {time.perf_counter() - start:.1f} s", flush=True)
    files = payload_files(spec_dir)
    payload = sum(p.stat().st_size for p in files)
    trust = trust_root(work)
    out = work / "out"
    base_out = work / "baseline.tar.zst"
    env = {**os.environ, "OEMKIT_KEY_PASSPHRASE": PASSPHRASE}
    oemkit = oemkit_cmd()
    print(f"machine: {machine()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          "(other processes on this host compete for the same cores)")
    print(f"payload: {len(files)} files, {payload} bytes ({gib(payload)}), data {args.data}; "
          f"work dir {work}")
    res: dict[str, list[float]] = {k: [] for k in (
        "build", "baseline", "sign", "verify", "verify_lib", "hash")}
    rss: dict[str, int] = {}
    bundle = None
    for rep in range(args.repeat):
        shutil.rmtree(out, ignore_errors=True)
        base_out.unlink(missing_ok=True)
        wall, peak = timed([*oemkit, "build", str(spec_dir / "bundle.yaml"), "--out", str(out)],
                           env)
        res["build"].append(wall)
        rss["build"] = max(rss.get("build", 0), peak)
        bundle = next(out.glob("*.oemb"))
        if not args.rss_only:
            res["baseline"].append(shell(
                f"tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - "
                f"-C {spec_dir.parent} {spec_dir.name} | zstd -q -3 -T0 > {base_out}"))
        wall, peak = timed([*oemkit, "sign", str(bundle), "--key", str(KEYS / "bundle.key")],
                           env)
        res["sign"].append(wall)
        rss["sign"] = max(rss.get("sign", 0), peak)
        wall, peak = timed([*oemkit, "verify", str(bundle), "--trust", str(trust)], env)
        res["verify"].append(wall)
        rss["verify"] = max(rss.get("verify", 0), peak)
        if not args.rss_only:
            res["hash"].append(hash_files(files))
            res["verify_lib"].append(verify_lib(bundle, trust))
        print(f"  run {rep + 1}/{args.repeat}: " + ", ".join(
            f"{k} {v[-1]:.2f}s" for k, v in res.items() if len(v) > rep), flush=True)
    assert bundle is not None
    size = bundle.stat().st_size
    print(f"\nbundle: {size} bytes ({gib(size)}); baseline output: "
          f"{base_out.stat().st_size if base_out.exists() else 0} bytes")
    for key, label in (("build", "oemkit build (CLI)"),
                       ("baseline", "tar | zstd -3 -T0"),
                       ("sign", "oemkit sign (CLI)"),
                       ("verify", "oemkit verify (CLI)"),
                       ("verify_lib", "verify_bundle (library, in child)"),
                       ("hash", "hashlib.file_digest, all files")):
        if res[key]:
            print(summary(label, res[key], payload))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("peak RSS: " + ", ".join(f"{k} {v / (1 << 20):.0f} MiB" for k, v in rss.items()))
    if not args.rss_only:
        build_ratio = min(res["build"]) / min(res["baseline"])
        verify_ratio = min(res["hash"]) / min(res["verify"])
        lib_ratio = min(res["hash"]) / min(res["verify_lib"])
        med_build = statistics.median(res["build"]) / statistics.median(res["baseline"])
        med_verify = statistics.median(res["hash"]) / statistics.median(res["verify"])
        print(f"build / baseline: {build_ratio:.2f}x best-vs-best, {med_build:.2f}x "
              f"median-vs-median (target <= 1.25x)")
        print(f"verify throughput / file_digest throughput: CLI {verify_ratio:.0%} "
              f"best-vs-best ({med_verify:.0%} median), library {lib_ratio:.0%} "
              f"(target >= 70 %)")
    if args.json:
        print(json.dumps({"payload_bytes": payload, "bundle_bytes": size, "seconds": res,
                          "peak_rss_bytes": rss}))
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        base_out.unlink(missing_ok=True)


def levels(args: argparse.Namespace) -> None:
    """zstd speed and ratio on model-like and text-like data, per level and thread count."""
    import zstandard

    n = 64 << 20
    samples = {
        "random (quantized/encrypted weights)": b"".join(make_large.stream("random", n, 1)),
        "float32 N(0,0.02) weights": b"".join(make_large.stream("normal", n, 1)),
    }
    import random

    rng = random.Random(1)
    text = bytearray()
    i = 0
    while len(text) < n // 2:
        text += make_large.small_file(rng, 2 * i)[1]
        i += 1
    samples["text: labels, CSV, JSON"] = bytes(text)
    print(f"machine: {machine()}")
    for name, data in samples.items():
        start = time.perf_counter()
        hashlib.sha256(data).digest()
        sha = len(data) / (time.perf_counter() - start) / 1e9
        print(f"\n{name}: {len(data) >> 20} MiB (sha256 {sha:.2f} GB/s)")
        for level, threads in ((1, 0), (3, 0), (3, 2), (6, 0), (9, 0), (19, 0)):
            view = memoryview(data)[:8 << 20] if level >= 19 else memoryview(data)
            cobj = zstandard.ZstdCompressor(level=level, threads=threads,
                                            write_checksum=True).compressobj()
            start = time.perf_counter()
            size = 0
            for i in range(0, len(view), 1 << 20):
                size += len(cobj.compress(view[i:i + (1 << 20)]))
            size += len(cobj.flush())
            took = time.perf_counter() - start
            print(f"  level {level:2d} threads {threads}: {len(view) / took / 1e6:7.1f} MB/s, "
                  f"ratio {size / len(view):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB", help="model size (default 1GiB)")
    parser.add_argument("--files", type=int, default=1000, help="small files (default 1000)")
    parser.add_argument("--data", choices=("random", "zeros", "normal"), default="random")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) /
                        "oemkit-large-bench")
    parser.add_argument("--rss-only", action="store_true",
                        help="build, sign and verify once each; report peak RSS only")
    parser.add_argument("--keep", action="store_true", help="keep the built bundle")
    parser.add_argument("--json", action="store_true", help="also print the raw numbers")
    parser.add_argument("--levels", action="store_true",
                        help="zstd level/thread table instead of the benchmark")
    args = parser.parse_args()
    if args.levels:
        levels(args)
        return
    args.size_text = args.size
    args.size = make_large.parse_size(args.size)
    if args.rss_only:
        args.repeat = 1
    run(args)


if __name__ == "__main__":
    main()
