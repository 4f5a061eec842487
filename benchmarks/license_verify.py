"""How long an OEM runtime waits at start-up for `oemkit.license.verify` (issue 4: well
under 10 ms, importing nothing heavy).

Prints, measured in this run: the import time of `oemkit.license` in a fresh interpreter
(best of 5, minus a bare interpreter start), the median time of one `verify()` call
(trust root loaded from bytes each time, with a state file), and as a floor the time of
the bare cryptography Ed25519 verification plus JSON parse of the same license.

    python benchmarks/license_verify.py [--calls 200]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = HERE.parent / "keys-example"
PASS = b"oemkit-example-insecure"


def best_of(cmd: list[str], n: int = 5) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    import oemkit.license
    from oemkit.crypto.keys import load_private_file
    from oemkit.models.license import LicenseClaims
    from oemkit.release.licensing import issue_license
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.trust import parse_root

    root_key = load_private_file(KEYS / "root.key", PASS)
    lic_key = load_private_file(KEYS / "license.key", PASS)
    trust = add_key(parse_root(init_root([root_key])), lic_key.public, ["license"], [root_key])
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    claims = LicenseClaims("acme-vision", 1, "vendor", "acme", "ACME", "vision", now, now,
                           now + dt.timedelta(days=365), features=("batch",),
                           limits={"seats": 50})
    license_bytes = issue_license(lic_key, claims)

    bare = best_of([sys.executable, "-c", "pass"])
    imported = best_of([sys.executable, "-c", "import oemkit.license"])
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.json"
        calls = []
        for _ in range(args.calls):
            start = time.perf_counter()
            verdict = oemkit.license.verify(license_bytes, trust, state=state, host={})
            calls.append(time.perf_counter() - start)
        assert verdict.status == "valid"

    env = json.loads(base64.b64decode(b"".join(license_bytes.splitlines()[1:-1])))
    payload = base64.b64decode(env["payload"])
    sig = base64.b64decode(env["signatures"][0]["sig"])
    ptype = env["payloadType"].encode()
    pae = b"DSSEv1 %d %b %d %b" % (len(ptype), ptype, len(payload), payload)
    floor = []
    for _ in range(args.calls):
        start = time.perf_counter()
        lic_key.public.verify(sig, pae)
        json.loads(payload)
        floor.append(time.perf_counter() - start)

    call = statistics.median(calls) * 1000
    raw = statistics.median(floor) * 1000
    print(f"import oemkit.license: {(imported - bare) * 1000:.0f} ms over a bare interpreter "
          f"({bare * 1000:.0f} ms)")
    print(f"verify() call, median of {args.calls}: {call:.2f} ms (trust root parsed and "
          f"checked, state read and written)")
    print(f"floor (Ed25519 verify + json.loads of the same license): {raw:.3f} ms; "
          f"ratio {call / raw:.0f}x")


if __name__ == "__main__":
    main()
