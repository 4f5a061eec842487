"""What a key in hardware costs a release job (issue 20): ``oemkit sign`` of the example
bundle with a key file (the baseline, measured in the same run) against keys inside a
SoftHSM2 token, and the per-signature cost inside one process through the library.

    python benchmarks/pkcs11_sign.py [--runs 5] [--signatures 50]

Needs Debian's ``softhsm2``; the tokens live in a temporary folder (``SOFTHSM2_CONF``).
Each command figure is the median wall time of ``--runs`` fresh ``oemkit sign``
processes (min and max beside it), each signing a fresh copy of the unsigned bundle.
The in-process figure is the median of ``--signatures`` raw signatures over 1 KiB, after
one warm-up (the login and key lookup), so it shows what each further signature costs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
           "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")
OEMKIT = [sys.executable, "-m", "oemkit"]


def _ms(values: list[float], digits: int = 1) -> str:
    return (f"{1000 * statistics.median(values):7.{digits}f} ms  "
            f"(min {1000 * min(values):.{digits}f}, max {1000 * max(values):.{digits}f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--signatures", type=int, default=50)
    args = parser.parse_args()
    util = shutil.which("softhsm2-util")
    module = next((m for m in MODULES if os.path.exists(m)), None)
    if util is None or module is None:
        sys.exit("softhsm2 is not installed: apt-get install softhsm2")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "tokens").mkdir()
        conf = tmp / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\n"
                        "objectstore.backend = file\nlog.level = ERROR\n")
        env = {**os.environ, "SOFTHSM2_CONF": str(conf), "OEMKIT_PKCS11_MODULE": module,
               "OEMKIT_KEY_PASSPHRASE": "bench", "OEMKIT_STATE": str(tmp / "state")}
        os.environ.update(env)
        subprocess.run([util, "--init-token", "--free", "--label", "bench", "--pin", "1234",
                        "--so-pin", "99999999"], check=True, capture_output=True)
        pin = tmp / "pin"
        pin.write_text("1234\n")

        def oemkit(*argv: str) -> None:
            subprocess.run([*OEMKIT, *argv], check=True, capture_output=True, env=env, cwd=tmp)

        oemkit("keys", "generate", "file-ed25519", "--usage", "bundle", "--out-dir", "keys")
        for label, algorithm in (("hsm-p256", "ecdsa-p256"), ("hsm-ed25519", "ed25519")):
            oemkit("keys", "generate", "--pkcs11", "pkcs11:token=bench", "--label", label,
                   "--usage", "bundle", "--algorithm", algorithm, "--out-dir", "keys",
                   "--pin-file", str(pin))
        oemkit("build", str(ROOT / "bundles" / "example"), "--out", "dist",
               "--source-date-epoch", "1700000000")
        unsigned = next((tmp / "dist").glob("*.oemb"))
        keys = {"key file, Ed25519 (baseline)": [str(tmp / "keys" / "file-ed25519.key")],
                "token, ECDSA P-256 (HSMSigner)": ["pkcs11:token=bench;object=hsm-p256",
                                                   "--pin-file", str(pin)],
                "token, Ed25519 (CKM_EDDSA)": ["pkcs11:token=bench;object=hsm-ed25519",
                                               "--pin-file", str(pin)]}
        times: dict[str, list[float]] = {name: [] for name in keys}
        for _ in range(args.runs):
            for name, key in keys.items():  # interleaved, so load drifts hit all alike
                copy = tmp / "copy.oemb"
                shutil.copyfile(unsigned, copy)
                start = time.perf_counter()
                oemkit("sign", str(copy), "--key", *key)
                times[name].append(time.perf_counter() - start)
        print(f"oemkit sign of {unsigned.name} ({unsigned.stat().st_size} bytes), "
              f"{args.runs} fresh processes each:")
        base = statistics.median(times["key file, Ed25519 (baseline)"])
        for name, values in times.items():
            print(f"  {name:32} {_ms(values)}  x{statistics.median(values) / base:.2f}")

        from oemkit.crypto.keys import load_signing_key
        from oemkit.crypto.pkcs11 import TokenAccess

        message = os.urandom(1024)
        print(f"one more signature in the same process (median of {args.signatures}):")
        access = TokenAccess(pin="1234")
        for name, ref in (("key file, Ed25519", str(tmp / "keys" / "file-ed25519.key")),
                          ("token, ECDSA P-256", "pkcs11:token=bench;object=hsm-p256"),
                          ("token, Ed25519", "pkcs11:token=bench;object=hsm-ed25519")):
            key = load_signing_key(ref, b"bench", access)
            key.sign_raw(message)
            each = []
            for _ in range(args.signatures):
                start = time.perf_counter()
                key.sign_raw(message)
                each.append(time.perf_counter() - start)
            print(f"  {name:32} {_ms(each, 3)}")


if __name__ == "__main__":
    main()
