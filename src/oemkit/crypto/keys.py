"""Key generation, loading and key ids.

Private keys are PKCS#8 PEM, encrypted with a passphrase unless the user insists
otherwise. Public keys are SubjectPublicKeyInfo PEM. A key id is the hex SHA-256 of the
DER SubjectPublicKeyInfo: derived from the key itself, never taken from a file or an
envelope.

The two SubjectPublicKeyInfo encodings oemkit signs with (Ed25519, uncompressed P-256)
are fixed prefixes before the key bytes, so public keys are read and encoded here without
cryptography's ``serialization`` package (its SSH and cipher modules: about 5 ms of a
license check's cold start); anything else goes through that package, with its errors.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from oemkit.errors import InputError, UsageError

if TYPE_CHECKING:
    from oemkit.crypto.pkcs11 import TokenAccess

Algorithm = Literal["ed25519", "ecdsa-p256"]
ALGORITHMS: tuple[Algorithm, ...] = ("ed25519", "ecdsa-p256")
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


#: DER SubjectPublicKeyInfo before the 32 key bytes of an Ed25519 key (RFC 8410).
ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
#: DER SubjectPublicKeyInfo before the 65-byte uncompressed point of a P-256 key (RFC 5480).
P256_SPKI = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
_PEM_PUBLIC = re.compile(rb"\s*-----BEGIN PUBLIC KEY-----\r?\n([A-Za-z0-9+/=\r\n]{1,400})"
                         rb"-----END PUBLIC KEY-----\s*")


def public_der(public: PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of ``public``: the bytes :func:`key_id` hashes."""
    if isinstance(public, ed25519.Ed25519PublicKey):
        return ED25519_SPKI + public.public_bytes_raw()
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        numbers = public.public_numbers()
        return P256_SPKI + b"\x04" + numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem(public: PublicKey) -> str:
    """PEM SubjectPublicKeyInfo of ``public``: what a ``.pub`` file and a trust root hold."""
    body = binascii.b2a_base64(public_der(public), newline=False).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def _fast_public(raw: bytes) -> PublicKey | None:
    """The key of a PEM that is exactly one Ed25519 or uncompressed P-256 public key, else
    None (for the full loader to judge)."""
    found = _PEM_PUBLIC.fullmatch(raw)
    if found is None:
        return None
    try:
        der = binascii.a2b_base64(found.group(1))
    except binascii.Error:
        return None
    try:
        if len(der) == 44 and der.startswith(ED25519_SPKI):
            return ed25519.Ed25519PublicKey.from_public_bytes(der[12:])
        if len(der) == 91 and der.startswith(P256_SPKI):
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), der[26:])
    except ValueError:
        return None
    return None


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


class ExternalKey(Protocol):
    """A private key held elsewhere (a PKCS#11 token): it signs, and gives a
    securesystemslib ``Signer``; its bytes are never seen."""

    def sign_raw(self, message: bytes) -> bytes:
        """Ed25519's 64 bytes, or an ECDSA P-256 / SHA-256 DER signature."""

    def sslib_signer(self) -> Any:
        """A securesystemslib ``Signer`` over this key."""


@dataclass(frozen=True)
class PrivateKeyInfo:
    """A loaded private key with its derived public half and key id.

    ``private`` is a cryptography key (a key file) or an :class:`ExternalKey` (a token);
    sign with :meth:`sign_raw` or :meth:`sslib_signer`, which work for both. ``usage`` is
    the usage the key's store records for it (a token key made by ``oemkit keys generate
    --pkcs11``), or None: key files record none.
    """

    private: PrivateKey | ExternalKey
    public: PublicKey
    algorithm: Algorithm
    keyid: str
    source: str
    usage: str | None = None

    @property
    def name(self) -> str:
        """A short name: a key file's stem, a token key's object label."""
        if self.source.startswith("pkcs11:"):
            from urllib.parse import unquote

            attrs = dict(p.split("=", 1) for p in self.source[7:].split("?")[0].split(";")
                         if "=" in p)
            return unquote(attrs.get("object", "token-key"))
        return Path(self.source).stem

    def sign_raw(self, message: bytes) -> bytes:
        """Sign exactly ``message``: Ed25519, or ECDSA P-256 with SHA-256 in DER, low S."""
        if isinstance(self.private, ed25519.Ed25519PrivateKey):
            return self.private.sign(message)
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            from cryptography.hazmat.primitives import hashes

            sig = self.private.sign(message, ec.ECDSA(hashes.SHA256()))
        else:
            sig = self.private.sign_raw(message)
        if self.algorithm == "ed25519":
            return sig
        from oemkit.crypto.dsse import low_s

        return low_s(sig)

    def sslib_signer(self) -> Any:
        """A securesystemslib ``Signer``: ``CryptoSigner`` for a key file, the token's
        signer (``HSMSigner`` where it applies) for a token key. Its ECDSA signatures may
        be high-S: callers normalise (:func:`oemkit.crypto.dsse.low_s`)."""
        if isinstance(self.private, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
            from securesystemslib.signer import (  # type: ignore[attr-defined]
                CryptoSigner,
                SSlibKey,
            )

            return CryptoSigner(self.private, SSlibKey.from_crypto(self.public))
        return self.private.sslib_signer()

    def require_usage(self, usage: str, command: str) -> None:
        """Refuse a key whose recorded usage is another one.

        Raises:
            VerificationError: E_KEY_USAGE naming the key, its usage and what was needed.
        """
        if self.usage is not None and self.usage != usage:
            from oemkit.errors import VerificationError

            raise VerificationError(
                "E_KEY_USAGE", f"{self.source} is a {self.usage} key; {command} signs with "
                f"a {usage} key", hint=f"pass a key generated with --usage {usage}")


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
    from cryptography.hazmat.primitives import serialization

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
    from cryptography.hazmat.primitives import serialization

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
    fast = _fast_public(raw)
    if fast is not None:
        return fast
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

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


#: Signer URI schemes securesystemslib knows that reach a network service: oemkit signs
#: offline, so these are refused with a reason rather than tried.
ONLINE_SCHEMES = ("gcpkms", "awskms", "azurekms", "hashivault", "sigstore")
#: Schemes it knows that need an agent or device oemkit does not drive.
OTHER_SCHEMES = ("gnupg", "tkey", "envvar")


def load_signing_key(ref: str | Path, passphrase: bytes | Any | None = None,
                     tokens: TokenAccess | None = None) -> PrivateKeyInfo:
    """The signing key ``ref`` names: a key file path, ``file:PATH`` (securesystemslib's
    private-key URI for a file), ``pkcs11:…`` (RFC 7512) or ``hsm:ID?label=TOKEN``
    (securesystemslib's HSMSigner URI, read through the same PKCS#11 code).

    ``passphrase`` is bytes, or a function of the file's path returning them (called only
    for an encrypted file). ``tokens`` says how to reach PKCS#11 tokens (module, PIN).

    Raises:
        UsageError: E_KEY_URI for a scheme oemkit does not sign with offline;
            E_PKCS11_NO_MODULE.
        InputError: :func:`load_private_file`'s codes; E_PKCS11_OBJECT, E_PKCS11_PIN,
            E_PKCS11_PIN_REQUIRED, E_KEY_ALGORITHM for a token key.
        EnvironmentProblem: E_PERMISSION; E_PKCS11_UNAVAILABLE, E_PKCS11_MODULE,
            E_PKCS11_TOKEN, E_PKCS11_PIN_LOCKED.
    """
    text = str(ref)
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower() if colon and len(scheme) > 1 else ""
    if scheme in ("pkcs11", "hsm"):
        from oemkit.crypto import pkcs11

        access = tokens if tokens is not None else pkcs11.TokenAccess()
        return pkcs11.load_token_key(pkcs11.from_hsm_uri(text) if scheme == "hsm" else text,
                                     access)
    if scheme in ONLINE_SCHEMES:
        raise UsageError("E_KEY_URI", f"{text[:80]!r} names a {scheme} key, which needs a "
                         "network service; oemkit signs offline",
                         hint="use a key file or a pkcs11: URI (an HSM or smart card)")
    if scheme in OTHER_SCHEMES:
        raise UsageError("E_KEY_URI", f"oemkit does not sign with {scheme}: keys ({text[:80]!r})",
                         hint="use a key file or a pkcs11: URI")
    path = Path(rest.split("?", 1)[0] if scheme == "file" else text)
    return load_private_file(path, passphrase(path) if callable(passphrase) else passphrase)
