"""DSSE envelopes and their Sigstore v0.3 wrapping, on securesystemslib's keys and signers.

Signing goes through the key's securesystemslib signer (``CryptoSigner`` for a key file,
``HSMSigner`` or oemkit's PKCS#11 signer for a token key); verification uses cryptography
directly, recomputing the PAE over the exact payload bytes from the envelope, and tries
candidate keys chosen by the caller. In-band key ids are ignored: a signature counts for
the first trusted key it verifies under.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from oemkit._canonical import b64decode, b64encode, pae, parse_json
from oemkit.crypto.keys import PrivateKeyInfo, PublicKey, public_der
from oemkit.errors import InputError

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
SIGSTORE_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
#: More signatures than this in one envelope is treated as hostile.
MAX_SIGNATURES = 64
#: The order of the P-256 group. An ECDSA signature (r, s) also verifies as (r, n - s);
#: oemkit writes and accepts only the "low-S" one, s <= n / 2, so a signature has exactly
#: one valid form (as Bitcoin, Ethereum and sigstore-go require).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_HALF_N = P256_N // 2


@dataclass(frozen=True)
class Envelope:
    """A parsed DSSE envelope: the exact payload bytes and the raw signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]

    def to_dict(self, keyid: str = "") -> dict[str, Any]:
        """The envelope as DSSE JSON fields, each signature labelled ``keyid``."""
        return {
            "payload": b64encode(self.payload),
            "payloadType": self.payload_type,
            "signatures": [{"keyid": keyid, "sig": b64encode(s)} for s in self.signatures],
        }


def sign(key: PrivateKeyInfo, payload_type: str, payload: bytes) -> bytes:
    """Sign the DSSE PAE of ``payload`` with ``key``; return the raw signature."""
    sig = bytes.fromhex(key.sslib_signer().sign(pae(payload_type, payload)).signature)
    return low_s(sig) if key.algorithm == "ecdsa-p256" else sig


def low_s(sig: bytes) -> bytes:
    """An ECDSA P-256 DER signature in its low-S form.

    The signer (securesystemslib, OpenSSL) may return either s or n - s; both verify
    everywhere, and only the low one verifies in oemkit."""
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    r, s = decode_dss_signature(sig)
    return encode_dss_signature(r, s) if s <= P256_HALF_N else encode_dss_signature(
        r, P256_N - s)


def is_canonical_ecdsa(sig: bytes) -> bool:
    """Strict DER (re-encoding gives the same bytes) with 0 < r, s and s <= n / 2."""
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    try:
        r, s = decode_dss_signature(sig)
    except ValueError:
        return False
    return 0 < r < P256_N and 0 < s <= P256_HALF_N and encode_dss_signature(r, s) == sig


def verify_signature(public: PublicKey, payload_type: str, payload: bytes, sig: bytes) -> bool:
    """True when ``sig`` is a valid signature by ``public`` over the PAE of ``payload``.

    Checked with cryptography directly (cheap to import, no signer machinery): Ed25519,
    or ECDSA P-256 with SHA-256 and a DER signature, as securesystemslib and cosign write,
    in its low-S form only (:func:`is_canonical_ecdsa`; a high-S twin is refused).

    Raises:
        Nothing: an invalid, malformed or high-S signature is ``False``.
    """
    return verify_raw(public, pae(payload_type, payload), sig)


def verify_raw(public: PublicKey, message: bytes, sig: bytes) -> bool:
    """Verify ``sig`` over ``message`` (already the exact signed bytes).

    Raises:
        Nothing: an invalid, malformed or high-S signature is ``False``.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        if isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(sig, message)
        else:
            if not is_canonical_ecdsa(sig):
                return False
            public.verify(sig, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def signers_of(
    envelope: Envelope, candidates: Iterable[tuple[str, PublicKey]]
) -> list[str]:
    """Key ids (from ``candidates``) with at least one valid signature, each counted once."""
    found: list[str] = []
    remaining = list(candidates)
    for sig in envelope.signatures:
        for keyid, public in remaining:
            if verify_signature(public, envelope.payload_type, envelope.payload, sig):
                found.append(keyid)
                remaining = [(k, p) for k, p in remaining if k != keyid]
                break
    return found


def _bad(what: str, detail: str) -> InputError:
    return InputError("E_ENVELOPE", f"{what}: {detail}",
                      hint="the signature file is damaged or was not written by oemkit")


def parse_envelope(obj: Any, what: str, *, allow_unsigned: bool = False) -> Envelope:
    """Validate and decode a DSSE envelope dict (payload type, payload, signatures);
    ``allow_unsigned`` admits an empty signature list (a trust-root proposal).

    Raises:
        InputError: E_ENVELOPE (fields, types, no signatures), E_BASE64 (payload or
            a signature), E_TOO_MANY_SIGNATURES (over MAX_SIGNATURES).
    """
    if not isinstance(obj, dict):
        raise _bad(what, "not a JSON object")
    unknown = set(obj) - {"payload", "payloadType", "signatures"}
    if unknown:
        raise _bad(what, f"unknown field(s) {sorted(unknown)}")
    ptype = obj.get("payloadType")
    if not isinstance(ptype, str) or not ptype:
        raise _bad(what, "missing payloadType")
    payload = b64decode(obj.get("payload"), what=f"{what} payload")
    sigs = obj.get("signatures")
    if not isinstance(sigs, list) or (not sigs and not allow_unsigned):
        raise _bad(what, "no signatures")
    if len(sigs) > MAX_SIGNATURES:
        raise InputError("E_TOO_MANY_SIGNATURES",
                         f"{what} carries {len(sigs)} signatures (limit {MAX_SIGNATURES})",
                         hint="the envelope is hostile or damaged")
    raw: list[bytes] = []
    for i, entry in enumerate(sigs):
        if not isinstance(entry, dict) or "sig" not in entry:
            raise _bad(what, f"signature {i} has no 'sig'")
        if "keyid" in entry and not isinstance(entry["keyid"], str):
            raise _bad(what, f"signature {i} has a non-string keyid")
        raw.append(b64decode(entry["sig"], what=f"{what} signature {i}"))
    return Envelope(ptype, payload, tuple(raw))


# --------------------------------------------------------------------------- sigstore v0.3


def public_key_hint(public: PublicKey) -> str:
    """What cosign writes as ``publicKey.hint``: base64 SHA-256 of the DER SPKI."""
    return b64encode(hashlib.sha256(public_der(public)).digest())


def sigstore_bundle(envelope: Envelope, public: PublicKey) -> dict[str, Any]:
    """Wrap a single-signature DSSE envelope as a Sigstore bundle v0.3 (no tlog entries)."""
    return {
        "mediaType": SIGSTORE_BUNDLE_V03,
        "verificationMaterial": {
            "publicKey": {"hint": public_key_hint(public)},
            "tlogEntries": [],
        },
        "dsseEnvelope": envelope.to_dict(keyid=""),
    }


def parse_sigstore_bundle(data: bytes, what: str) -> Envelope:
    """Parse a Sigstore v0.3 bundle and return its DSSE envelope (hint ignored).

    Raises:
        InputError: E_ENVELOPE (not JSON, wrong mediaType, no dsseEnvelope, or as
            :func:`parse_envelope`), E_BASE64, E_TOO_MANY_SIGNATURES.
    """
    obj = parse_json(data, what=what, code="E_ENVELOPE")
    if not isinstance(obj, dict) or obj.get("mediaType") != SIGSTORE_BUNDLE_V03:
        raise _bad(what, f"mediaType is not {SIGSTORE_BUNDLE_V03}")
    if "dsseEnvelope" not in obj:
        raise _bad(what, "no dsseEnvelope (message signatures are not accepted)")
    return parse_envelope(obj["dsseEnvelope"], what)


def make_envelope(keys: Sequence[PrivateKeyInfo], payload_type: str, payload: bytes) -> Envelope:
    """Sign ``payload`` with every key in ``keys`` (in order)."""
    return Envelope(payload_type, payload, tuple(sign(k, payload_type, payload) for k in keys))
