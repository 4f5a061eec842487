"""Regenerate the INSECURE example keys used by `oemkit demo` and the tests.

The keys are derived from fixed seeds so that anyone can regenerate the same key pairs
(the encrypted files differ each time because the encryption salt is random). Never use
them for anything but demos: their private halves are public.

    python keys-example/generate.py
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from oemkit.crypto.keys import key_id, private_pem, public_pem

PASSPHRASE = b"oemkit-example-insecure"
NAMES = {"root": "root", "bundle": "bundle", "license": "license", "crl": "crl"}
HERE = Path(__file__).resolve().parent


def main() -> None:
    for name in NAMES:
        seed = hashlib.sha256(f"oemkit-example-insecure:{name}".encode()).digest()
        private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        key_path = HERE / f"{name}.key"
        key_path.write_bytes(private_pem(private, PASSPHRASE))
        os.chmod(key_path, 0o600)
        (HERE / f"{name}.pub").write_text(public_pem(private.public_key()))
        print(f"{name}: {key_id(private.public_key())}")


if __name__ == "__main__":
    main()
