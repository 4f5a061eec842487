"""Key generation, loading and key ids.

Private keys are PKCS#8 PEM, encrypted with a passphrase unless the user insists
otherwise. Public keys are SubjectPublicKeyInfo PEM. A key id is the hex SHA-256 of the
DER SubjectPublicKeyInfo: derived from the key itself, never taken from a file or an
envelope.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from oemkit.errors import InputError

Algorithm = Literal["ed25519", "ecdsa-p256"]
ALGORITHMS: tuple[Algorithm, ...] = ("ed25519", "ecdsa-p256")
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def public_der(public: PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of ``public``: the bytes :func:`key_id` hashes."""
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_pem(public: PublicKey) -> str:
    """PEM SubjectPublicKeyInfo of ``public``: what a ``.pub`` file and a trust root hold."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def key_id(public: PublicKey) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(public_der(public)).hexdigest()


def algorithm_of(public: object) -> Algorithm:
    """Name the algorithm of a public key, rejecting anything oemkit does not sign with.

    Raises:
        InputError: E_KEY_ALGORITHM for a key that is neither Ed25519 nor P-256.
    """
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        return "ecdsa-p256"
    raise InputError(
        "E_KEY_ALGORITHM", f"unsupported key type {type(public).__name__}",
        hint="oemkit uses Ed25519 or ECDSA P-256 keys; generate one with 'oemkit keys generate'",
    )


@dataclass(frozen=True)
class PrivateKeyInfo:
    """A loaded private key with its derived public half and key id."""

    private: PrivateKey
    public: PublicKey
    algorithm: Algorithm
    keyid: str
    source: str


def generate(algorithm: Algorithm) -> PrivateKey:
    """A new private key for ``algorithm``.

    Raises:
        InputError: E_KEY_ALGORITHM for a name outside ALGORITHMS.
    """
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise InputError("E_KEY_ALGORITHM", f"unknown algorithm {algorithm!r}",
                     hint=f"choose one of {', '.join(ALGORITHMS)}")


def private_pem(private: PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM, encrypted with ``passphrase`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def is_encrypted_pem(data: bytes) -> bool:
    """Whether ``data`` is an encrypted PKCS#8 PEM (it needs a passphrase)."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data


def load_private(data: bytes, passphrase: bytes | None, source: str) -> PrivateKeyInfo:
    """Load a PKCS#8 PEM private key; errors name the file and what to do.

    Raises:
        InputError: E_KEY_FORMAT (not a PEM private key, or unreadable),
            E_KEY_PASSPHRASE_REQUIRED, E_KEY_PASSPHRASE (wrong), E_KEY_ALGORITHM.
    """
    if b"PRIVATE KEY-----" not in data:
        hint = ("this is a public key; pass the .key file" if b"PUBLIC KEY-----" in data
                else "pass a PEM private key written by 'oemkit keys generate'")
        raise InputError("E_KEY_FORMAT", f"{source} is not a PEM private key", hint=hint)
    encrypted = is_encrypted_pem(data)
    if encrypted and not passphrase:
        raise InputError(
            "E_KEY_PASSPHRASE_REQUIRED", f"{source} is encrypted and no passphrase was given",
            hint="set OEMKIT_KEY_PASSPHRASE or run in a terminal to be prompted",
        )
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        private = serialization.load_pem_private_key(data, passphrase if encrypted else None)
    except UnsupportedAlgorithm as exc:
        raise InputError("E_KEY_ALGORITHM", f"{source} uses an algorithm oemkit does not "
                         f"support ({exc})", hint="generate a key with 'oemkit keys generate'"
                         ) from exc
    except ValueError as exc:
        if encrypted:
            raise InputError("E_KEY_PASSPHRASE", f"wrong passphrase for {source}",
                             hint="check OEMKIT_KEY_PASSPHRASE") from exc
        raise InputError("E_KEY_FORMAT", f"{source} is not a valid private key ({exc})",
                         hint="pass a PEM private key written by 'oemkit keys generate'") from exc
    except TypeError as exc:
        raise InputError("E_KEY_FORMAT", f"{source}: {exc}", hint="check the key file") from exc
    public = private.public_key()
    algorithm = algorithm_of(public)
    assert isinstance(private, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey))
    assert isinstance(public, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey))
    return PrivateKeyInfo(private, public, algorithm, key_id(public), source)


def load_public(data: bytes | str, source: str) -> PublicKey:
    """Load a PEM SubjectPublicKeyInfo public key.

    Raises:
        InputError: E_KEY_FORMAT (a private key, or not a PEM public key),
            E_KEY_ALGORITHM (neither Ed25519 nor P-256).
    """
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    if b"PRIVATE KEY-----" in raw:
        raise InputError("E_KEY_FORMAT", f"{source} is a private key",
                         hint="pass the public key (.pub); never ship private keys")
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        public = serialization.load_pem_public_key(raw)
    except UnsupportedAlgorithm as exc:
        raise InputError("E_KEY_ALGORITHM", f"{source} uses an algorithm oemkit does not "
                         f"support ({exc})", hint="oemkit uses Ed25519 or ECDSA P-256 keys"
                         ) from exc
    except ValueError as exc:
        raise InputError("E_KEY_FORMAT", f"{source} is not a PEM public key ({exc})",
                         hint="pass a .pub file written by 'oemkit keys generate'") from exc
    algorithm_of(public)
    assert isinstance(public, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey))
    return public


def load_private_file(path: Path, passphrase: bytes | None) -> PrivateKeyInfo:
    """Read a private key file (at most 64 KiB) and :func:`load_private` it.

    Raises:
        InputError: E_NOT_FOUND, E_NOT_A_FILE, E_TOO_LARGE, and :func:`load_private`'s
            E_KEY_FORMAT, E_KEY_PASSPHRASE_REQUIRED, E_KEY_PASSPHRASE, E_KEY_ALGORITHM.
        EnvironmentProblem: E_PERMISSION.
    """
    from oemkit._fs import read_input

    return load_private(read_input(path, "key file", 1 << 16), passphrase, str(path))


def load_public_file(path: Path) -> PublicKey:
    """Read a public key file (at most 64 KiB) and :func:`load_public` it.

    Raises:
        InputError: E_NOT_FOUND, E_NOT_A_FILE, E_TOO_LARGE, E_KEY_FORMAT, E_KEY_ALGORITHM.
        EnvironmentProblem: E_PERMISSION.
    """
    from oemkit._fs import read_input

    return load_public(read_input(path, "public key file", 1 << 16), str(path))
