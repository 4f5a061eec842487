"""`oemkit oci push` and `pull` of a large bundle to a loopback registry, against `skopeo
copy` of the same bytes in the same run (issue 16).

    python benchmarks/oci_transfer.py [--size 1GiB] [--files 100] [--repeat 3] [--work DIR]

The bundle is a real one: ``make_large.py`` writes a spec with one ONNX model of ``--size``
(random, incompressible weights) and ``--files`` small files; ``oemkit build`` and
``oemkit sign`` (the example keys) make the ``.oemb``. Debian's ``docker-registry`` serves
127.0.0.1 on a free port, its storage under the work directory.

Each repeat starts a fresh registry (skopeo would otherwise mount a blob it saw pushed
there before instead of sending it) and alternates which client goes first:

- ``oemkit oci push BUNDLE HOST/oemkit:1 --plain-http`` (the CLI, its own process);
- ``skopeo copy oci:LAYOUT:1 docker://HOST/skopeo:1``: the layout is ``oemkit oci
  export`` of the same bundle, so skopeo uploads the same blob;
- ``oemkit oci pull HOST/oemkit:1 --out FILE --trust ROOT`` (the digest checked while it
  streams and, a large layer, the whole bundle verified against the trust root while it
  arrives; the rename only after both);
- ``skopeo copy docker://HOST/skopeo:1 oci:DIR:1`` (skopeo checks the digest and writes
  a layout; it verifies no signature).

Wall time and peak RSS (``/usr/bin/time``) of each process; the ratio is the throughput of
oemkit over skopeo's (target >= 0.8x), peak RSS of the oemkit process (target < 200 MB).
``oemkit verify`` of the bundle is timed once too: it is the part of a pull that skopeo
does not do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import large_bundle  # noqa: E402
import make_large  # noqa: E402

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_registry(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    host = f"127.0.0.1:{port}"
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text("\n".join([
        "version: 0.1", "log:", "  level: error", "storage:", "  filesystem:",
        f"    rootdirectory: {root / 'storage'}", "  delete:", "    enabled: true", "http:",
        f"  addr: {host}"]) + "\n")
    proc = subprocess.Popen([str(REGISTRY), "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, host
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("docker-registry did not start") from None
            time.sleep(0.05)


def machine() -> str:
    skopeo = subprocess.run([str(SKOPEO), "--version"], capture_output=True,
                            text=True).stdout.strip()
    registry = subprocess.run([str(REGISTRY), "--version"], capture_output=True,
                              text=True).stdout.strip()
    import oras.version
    import requests
    import urllib3

    base = large_bundle.machine().split(", python-zstandard")[0]
    return (f"{base}, {skopeo}, {registry}, oras {oras.version.__version__}, requests "
            f"{requests.__version__}, urllib3 {urllib3.__version__}")


def make_bundle(work: Path, size: int, size_text: str, files: int) -> tuple[Path, Path]:
    spec = work / f"spec-{size_text}-{files}"
    if not (spec / "bundle.yaml").exists():
        make_large.make(spec, size, files, "random")
    out = work / "dist"
    bundles = sorted(out.glob("*.oemb")) if out.is_dir() else []
    oemkit = large_bundle.oemkit_cmd()
    env = {**os.environ, "OEMKIT_KEY_PASSPHRASE": large_bundle.PASSPHRASE}
    if not bundles:
        subprocess.run([*oemkit, "build", str(spec / "bundle.yaml"), "--out", str(out)],
                       check=True, capture_output=True)
        bundles = sorted(out.glob("*.oemb"))
        subprocess.run([*oemkit, "sign", str(bundles[0]), "--key",
                        str(large_bundle.KEYS / "bundle.key")], check=True,
                       capture_output=True, env=env)
    return bundles[0], large_bundle.trust_root(work)


CPU: dict[str, list[float]] = {}


def timed(argv: list[str], name: str = "") -> tuple[float, int, str]:
    """Run ``argv`` under /usr/bin/time: (wall seconds, peak RSS in bytes, its stdout);
    its user + system CPU seconds go to ``CPU[name]``."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rss:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-o", rss.name, "-f", "%M %U %S", *argv],
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")
        fields = Path(rss.name).read_text().split()[-3:]
        peak = int(fields[0]) * 1024
        CPU.setdefault(name, []).append(float(fields[1]) + float(fields[2]))
    return wall, peak, proc.stdout


def line(name: str, values: list[float], nbytes: int, rss: int | None = None,
         cpu: str = "") -> str:
    best, median = min(values), statistics.median(values)
    runs = ", ".join(f"{v:.2f}" for v in values)
    peak = f"  peak RSS {rss / (1 << 20):.0f} MiB" if rss else ""
    if cpu in CPU:
        peak += f", CPU {statistics.median(CPU[cpu]):.2f} s (median)"
    return (f"{name:<28} best {best:6.2f} s  median {median:6.2f} s  "
            f"{nbytes / best / 1e9:5.2f} GB/s best  [{runs}]{peak}")


def run(args: argparse.Namespace) -> None:
    if REGISTRY is None or SKOPEO is None:
        raise SystemExit("needs Debian's docker-registry and skopeo (apt-get install -y "
                         "docker-registry skopeo)")
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    bundle, trust = make_bundle(work, args.size, args.size_text, args.files)
    nbytes = bundle.stat().st_size
    oemkit = large_bundle.oemkit_cmd()
    layout = work / "layout"
    if not (layout / "index.json").exists():
        subprocess.run([*oemkit, "oci", "export", str(bundle), str(layout), "--tag", "1"],
                       check=True, capture_output=True)
    times: dict[str, list[float]] = {k: [] for k in ("push", "skopeo push", "pull",
                                                     "skopeo pull", "transfer", "verify")}
    rss: dict[str, int] = {}
    print(f"bundle: {bundle.name}, {nbytes} bytes ({large_bundle.gib(nbytes)}); load "
          f"average {os.getloadavg()[0]:.2f}")
    for n in range(args.repeat):
        # a fresh registry (new storage, new port) each repeat: skopeo reuses a blob it
        # saw pushed to the same registry (a cross-repository mount) instead of sending it
        root = work / f"registry-{os.getpid()}-{n}"
        registry, host = start_registry(root)
        try:
            pushes = [
                ("push", [*oemkit, "oci", "push", str(bundle), f"{host}/oemkit:1",
                          "--plain-http"]),
                ("skopeo push", [str(SKOPEO), "copy", "--quiet", "--dest-tls-verify=false",
                                 f"oci:{layout}:1", f"docker://{host}/skopeo:1"])]
            pulls = [
                ("pull", [*oemkit, "oci", "pull", f"{host}/oemkit:1", "--out",
                          str(work / "pulled.oemb"), "--trust", str(trust), "--plain-http",
                          "--force", "--json"]),
                ("skopeo pull", [str(SKOPEO), "copy", "--quiet", "--src-tls-verify=false",
                                 f"docker://{host}/skopeo:1", f"oci:{work / 'pulled'}:1"])]
            if n % 2:  # alternate who goes first
                pushes.reverse()
                pulls.reverse()
            for name, argv in pushes + pulls:
                shutil.rmtree(work / "pulled", ignore_errors=True)
                wall, peak, out = timed(argv, name)
                times[name].append(wall)
                rss[name] = max(rss.get(name, 0), peak)
                if name == "pull":
                    seconds = json.loads(out)["seconds"]
                    times["transfer"].append(seconds["transfer"])
                    times["verify"].append(seconds["verify"])
            (work / "pulled.oemb").unlink()
        finally:
            registry.terminate()
            registry.wait()
            shutil.rmtree(root, ignore_errors=True)
    verify, verify_rss, _ = timed([*oemkit, "verify", str(bundle), "--trust", str(trust)],
                                  "verify")
    print(line("oemkit oci push (CLI)", times["push"], nbytes, rss["push"], "push"))
    print(line("skopeo copy oci: -> docker:", times["skopeo push"], nbytes, rss["skopeo push"],
               "skopeo push"))
    print(line("oemkit oci pull (CLI)", times["pull"], nbytes, rss["pull"], "pull"))
    print(line("skopeo copy docker: -> oci:", times["skopeo pull"], nbytes,
               rss["skopeo pull"], "skopeo pull"))
    print(line("  in it: transfer + verify", times["transfer"], nbytes))
    print(line("  in it: after the transfer", times["verify"], nbytes))
    print(line("oemkit verify (CLI), once", [verify], nbytes, verify_rss, "verify"))
    for name in ("push", "pull"):
        best = min(times[f"skopeo {name}"]) / min(times[name])
        median = statistics.median(times[f"skopeo {name}"]) / statistics.median(times[name])
        print(f"{name} throughput / skopeo's: {best:.2f}x best-vs-best, {median:.2f}x "
              f"median-vs-median (target >= 0.8x); oemkit peak RSS "
              f"{rss[name] / (1 << 20):.0f} MiB (target < 200 MB)")
    transfer = min(times["skopeo pull"]) / min(times["transfer"])
    print(f"pull in-process (transfer with its digest, the verification overlapped) / "
          f"skopeo pull: {transfer:.2f}x best-vs-best")
    print(f"machine: {machine()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB", help="model size (default 1GiB)")
    parser.add_argument("--files", type=int, default=100, help="small files (default 100)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) /
                        "oemkit-oci-bench")
    args = parser.parse_args()
    args.size_text = args.size
    args.size = make_large.parse_size(args.size)
    run(args)


if __name__ == "__main__":
    main()
