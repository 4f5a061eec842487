"""What a bundle signed by a stranger costs verify when it carries many big trust roots.

Issue 13, class 2: "52 s / 776 MiB with 505 carried roots of 1,000 keys". This builds such
a bundle (by default 505 carried versions 5..509 of a root listing N distinct Ed25519 keys,
each version signed by a stranger, the bundle too), then runs ``oemkit verify`` on it in a
child process against the hostile corpus's pinned root and reports the verdict, the wall
time and the child's peak RSS (``ru_maxrss`` from ``os.wait4``).

    python benchmarks/carried_roots.py [--roots 505] [--keys 1000] [--sign-with stranger|none]

``--roots 256 --keys 256`` is the largest chain the limits let through to the signature
check (MAX_CHAIN carried versions, MAX_KEYS keys each).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from hostile import make_corpus as mc  # noqa: E402


def root_payload(keys: int) -> dict:
    from oemkit.crypto.keys import public_pem

    entries = []
    for i in range(keys):
        info = mc.seeded_key(10_000 + i, f"k{i}")
        entries.append({"keyid": info.keyid, "name": f"k{i}", "algorithm": "ed25519",
                        "public_key": public_pem(info.public), "usage": ["root"],
                        "status": "active", "not_before": None, "expires": None,
                        "retired_at": None})
    entries.sort(key=lambda e: e["keyid"])
    return {"type": "oemkit-trust-root", "spec_version": 1, "version": 0,
            "issued": "2024-01-01T00:00:00Z",
            "thresholds": {"root": 1, "bundle": 1, "license": 1, "crl": 1}, "keys": entries}


def build(path: Path, roots: int, keys: int, first: int = 5) -> None:
    signing = mc.load_keys()
    stranger = mc.seeded_key(4242, "stranger")
    payload = root_payload(keys)
    carried = []
    for version in range(first, first + roots):
        env = mc.make_envelope([stranger], mc.TRUST_ROOT_PAYLOAD_TYPE,
                               mc.canonical_json({**payload, "version": version}))
        carried.append((f"trust/root-{version}.json", json.dumps(env.to_dict()).encode()))
    forge = mc.Forge(signing)
    path.write_bytes(mc.outer(forge.parts(extra=carried, signers=[stranger])))


CHILD = r"""
import os, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
out = proc.stdout.read()
_, status, usage = os.wait4(proc.pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
sys.stdout.flush()
os.write(1, out)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--roots", type=int, default=505)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "carried.oemb"
        t0 = time.perf_counter()
        build(bundle, args.roots, args.keys)
        print(f"built {bundle.stat().st_size / 2**20:.1f} MiB bundle: {args.roots} carried "
              f"roots of {args.keys} keys, signed by a stranger "
              f"({time.perf_counter() - t0:.1f} s)")
        cmd = [sys.executable, "-m", "oemkit", "verify", str(bundle), "--trust",
               str(mc.CORPUS / mc.TRUST), "--state", str(Path(tmp) / "state.json"), "--json"]
        res = subprocess.run([sys.executable, "-c", CHILD, *cmd], capture_output=True,
                             text=True, check=True)
        head, _, body = res.stdout.partition("\n")
        seconds, rss_kib, code = head.split()
        doc = json.loads(body)
        error = doc.get("error") or {}
        print(f"verdict: exit {code} {error.get('code')} ({error.get('message', '')[:90]})")
        print(f"verify: {float(seconds):.2f} s, peak RSS {int(rss_kib) / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
