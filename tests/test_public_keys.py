"""crypto.keys reads and writes the two public-key encodings oemkit signs with (Ed25519,
uncompressed P-256 SubjectPublicKeyInfo) itself; every other input goes to cryptography's
loader, so results and errors are exactly cryptography's."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from oemkit.crypto.keys import _fast_public, generate, key_id, load_public, public_der, public_pem
from oemkit.errors import InputError


def _theirs(public, encoding) -> bytes:
    return public.public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_encodings_are_cryptographys_byte_for_byte(algorithm):
    for _ in range(200):
        public = generate(algorithm).public_key()  # type: ignore[arg-type]
        assert public_der(public) == _theirs(public, serialization.Encoding.DER)
        pem = _theirs(public, serialization.Encoding.PEM)
        assert public_pem(public).encode() == pem
        loaded = _fast_public(pem)
        assert loaded is not None and public_der(loaded) == public_der(public)


def test_other_forms_go_to_the_full_loader_with_the_same_key_id():
    public = generate("ecdsa-p256").public_key()
    compressed = public.public_bytes(serialization.Encoding.X962,
                                     serialization.PublicFormat.CompressedPoint)
    spki = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), compressed)
    assert key_id(spki) == key_id(public)
    crlf = public_pem(public).replace("\n", "\r\n").encode()
    assert key_id(load_public(crlf, "x")) == key_id(public)
    framed = b"a comment\n" + public_pem(public).encode()
    assert _fast_public(framed) is None  # not exactly one PEM: cryptography decides
    with pytest.raises(InputError) as err:
        load_public(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "k.pub")
    assert err.value.code == "E_KEY_FORMAT"
    rsa_pem = _theirs(rsa.generate_private_key(65537, 2048).public_key(),
                      serialization.Encoding.PEM)
    with pytest.raises(InputError) as err:
        load_public(rsa_pem, "rsa.pub")
    assert err.value.code == "E_KEY_ALGORITHM"


def test_a_p256_point_off_the_curve_is_refused_as_before():
    public = generate("ecdsa-p256").public_key()
    der = bytearray(public_der(public))
    der[-1] ^= 1  # y no longer on the curve
    import base64

    pem = (b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(bytes(der)) +
           b"-----END PUBLIC KEY-----\n")
    assert _fast_public(pem) is None
    with pytest.raises(InputError) as err:
        load_public(pem, "bad.pub")
    assert err.value.code == "E_KEY_FORMAT"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_any_bytes_after_the_prefix_agree_with_cryptography(tail):
    import base64

    for prefix in (bytes.fromhex("302a300506032b6570032100"),
                   bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")):
        pem = (b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(prefix + tail) +
               b"-----END PUBLIC KEY-----\n")
        try:
            want = public_der(serialization.load_pem_public_key(pem))  # type: ignore[arg-type]
        except Exception:  # whatever cryptography refuses, the fast path must too
            want = None
        got = _fast_public(pem)
        if got is not None:
            assert public_der(got) == want
