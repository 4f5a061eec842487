"""Peak memory and time of oemkit's strict base64 decoding (every DSSE payload and
signature, a 4 MiB provenance among them) against the earlier implementation (decode,
re-encode, compare), measured in the same run.

    python benchmarks/base64_decode.py [--mib 4] [--runs 5]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
import statistics
import time
import tracemalloc

from oemkit._canonical import strict_b64decode


def earlier(text: str) -> bytes:
    """The implementation before (copies the body, decodes, re-encodes to compare)."""
    match = re.fullmatch(r"([A-Za-z0-9+/]*)(=*)", text)
    if match is None:
        raise ValueError("alphabet")
    body, padding = match.group(1), len(match.group(2))
    if len(body) % 4 == 1 or (padding and len(body) % 4 == 0) or padding != -len(body) % 4:
        raise ValueError("padding")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError("unused bits")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data = os.urandom(args.mib << 20)
    text = base64.b64encode(data).decode()
    print(f"decoding {len(text)} base64 characters ({args.mib} MiB of data), "
          f"{args.runs} runs each; the output itself is {args.mib} MiB")
    results = {}
    for name, fn in (("earlier (baseline)", earlier), ("strict_b64decode", strict_b64decode)):
        times, peaks = [], []
        for _ in range(args.runs):
            tracemalloc.start()
            start = time.perf_counter()
            out = fn(text)
            times.append(time.perf_counter() - start)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            assert out == data
            del out
        results[name] = (statistics.median(times), max(peaks))
    base_t, base_m = results["earlier (baseline)"]
    for name, (t, m) in results.items():
        print(f"  {name:20} {t * 1000:7.1f} ms (x{t / base_t:.2f})  peak "
              f"{m / 2**20:5.1f} MiB (x{m / base_m:.2f})")


if __name__ == "__main__":
    main()
