"""_canonical.strict_b64decode decodes without copying the text, and still accepts exactly
one spelling per byte string: it agrees with the reference (decode, re-encode, compare) on
every input."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oemkit._canonical import strict_b64decode

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def reference(text: str) -> bytes | None:
    """The earlier implementation's verdict: None where it refused."""
    import re

    match = re.fullmatch(r"([A-Za-z0-9+/]*)(=*)", text)
    if match is None:
        return None
    body, padding = match.group(1), len(match.group(2))
    if len(body) % 4 == 1 or (padding and len(body) % 4 == 0) or padding != -len(body) % 4:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data).decode("ascii") == text else None


def ours(text: str) -> bytes | None:
    try:
        return strict_b64decode(text)
    except ValueError:
        return None


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=ALPHABET + "=-_ \n", max_size=14))
def test_agrees_with_the_reference_on_any_text(text):
    assert ours(text) == reference(text)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_round_trips_and_rejects_every_other_spelling_of_the_last_char(data):
    text = base64.b64encode(data).decode()
    assert strict_b64decode(text) == data
    padding = len(text) - len(text.rstrip("="))
    if padding:
        body = len(text) - padding
        for c in ALPHABET:
            other = text[:body - 1] + c + text[body:]
            if other != text:
                assert ours(other) is None or ours(other) != data


@pytest.mark.parametrize("text", ["QR==", "QUJ=", "QQ=", "Q===", "QQ==QQ==", "QQ"])
def test_non_canonical_spellings_are_refused(text):
    with pytest.raises(ValueError):
        strict_b64decode(text)
