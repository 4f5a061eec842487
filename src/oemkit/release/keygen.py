"""Writing new key pairs: private key 0600 (encrypted unless told otherwise), public 0644."""

from __future__ import annotations

from pathlib import Path

from oemkit._fs import atomic_write_bytes
from oemkit.crypto.keys import ALGORITHMS, generate, key_id, private_pem, public_pem
from oemkit.errors import InputError, UsageError
from oemkit.models.trust import USAGES


def generate_key_files(name: str, usage: str, algorithm: str, out_dir: Path,
                       passphrase: bytes | None) -> dict[str, str]:
    """Generate and write ``NAME.key``/``NAME.pub``; refuse to overwrite existing files."""
    if usage not in USAGES:
        raise UsageError("E_USAGE", f"unknown --usage {usage!r}",
                         hint=f"choose from {', '.join(USAGES)}")
    if algorithm not in ALGORITHMS:
        raise UsageError("E_USAGE", f"unknown --algorithm {algorithm!r}",
                         hint=f"choose from {', '.join(ALGORITHMS)}")
    if not name or "/" in name or name.startswith("."):
        raise UsageError("E_USAGE", f"invalid key name {name!r}",
                         hint="use a plain file stem such as release-2027")
    out_dir = Path(out_dir)
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise InputError("E_KEY_EXISTS", f"{path} already exists",
                             hint="choose another NAME or --out-dir; keys are never overwritten")
    private = generate(algorithm)
    atomic_write_bytes(private_path, private_pem(private, passphrase), mode=0o600)
    atomic_write_bytes(public_path, public_pem(private.public_key()).encode("ascii"), mode=0o644)
    return {"keyid": key_id(private.public_key()), "private": str(private_path),
            "public": str(public_path), "algorithm": algorithm, "usage": usage,
            "encrypted": "yes" if passphrase else "no"}
