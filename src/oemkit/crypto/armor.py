"""ASCII armor for licenses and CRLs, and their signed envelope.

    -----BEGIN OEMKIT LICENSE-----
    <base64 of the envelope JSON, 64 columns>
    -----END OEMKIT LICENSE-----

The envelope is DSSE: ``{"payloadType", "payload", "signatures": [{"keyid", "alg",
"sig"}]}``. ``keyid`` and ``alg`` are unsigned hints used to pick a key from the trust
root and to refuse algorithm confusion; the trust decision is always the trust root's key.
ECDSA signatures are DER with a low S value, so a signature has exactly one valid form.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oemkit._canonical import b64encode, pae, strict_b64decode
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.errors import InputError, VerificationError

MAX_ARMORED = 64 << 10


def _armor_error(message: str, what: str) -> VerificationError:
    return VerificationError("E_ARMOR", f"{what}: {message}", check="armor",
                             hint="the file is damaged or not an oemkit document; ask for a "
                                  "fresh copy")


def armor(label: str, data: bytes) -> bytes:
    """Wrap ``data`` in one ``-----BEGIN LABEL-----`` block of 64-column base64
    (what :func:`dearmor` reads back)."""
    text = base64.b64encode(data).decode("ascii")
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return ("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])
            + "\n").encode("ascii")


def too_large(what: str, size: str) -> InputError:
    """E_TOO_LARGE for an armored document (an input error: exit 3, wherever it is found)."""
    return InputError("E_TOO_LARGE", f"{what} is {size} bytes (limit {MAX_ARMORED})",
                      check="armor", hint="this is not a license file")


def read_armored(path: Path, what: str) -> bytes:
    """Read an armored file (license or CRL), refusing one over MAX_ARMORED bytes.

    Raises:
        InputError: E_NOT_FOUND, E_NOT_A_FILE; E_TOO_LARGE over MAX_ARMORED bytes.
        EnvironmentProblem: E_PERMISSION when the file cannot be read.
    """
    from oemkit._fs import open_input

    with open_input(path, what) as handle:
        data = handle.read(MAX_ARMORED + 1)
        if len(data) > MAX_ARMORED:
            try:
                size = str(os.fstat(handle.fileno()).st_size)
            except OSError:  # pragma: no cover - a stream without a size
                size = f"more than {MAX_ARMORED}"
            raise too_large(f"{what} {path}", size)
    return bytes(data)


def dearmor(data: bytes, label: str, what: str) -> bytes:
    """The bytes inside exactly one armor block with ``label`` (strict base64).

    Raises:
        InputError: E_TOO_LARGE over MAX_ARMORED bytes.
        VerificationError: E_ARMOR: not ASCII, no or another label, bad base64.
    """
    if len(data) > MAX_ARMORED:
        raise too_large(what, str(len(data)))
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise _armor_error("not ASCII text", what) from None
    pattern = (rf"\s*-----BEGIN {label}-----\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n"
               rf"-----END {label}-----\s*")
    match = re.fullmatch(pattern, text)
    if not match:
        found = re.search(r"-----BEGIN ([A-Z ]+)-----", text)
        if found and found.group(1) == label:
            detail = (f"malformed '{label}' block (a missing END line, or characters that "
                      "are not base64)")
        elif found:
            detail = f"it is armored as {found.group(1)!r}, not {label!r}"
        else:
            detail = f"no '-----BEGIN {label}-----' block"
        raise _armor_error(detail, what)
    try:
        return strict_b64decode("".join(match.group(1).split()))
    except ValueError as exc:
        raise _armor_error(f"bad base64 ({exc})", what) from None


@dataclass(frozen=True)
class SignedDoc:
    """A decoded envelope: payload type, the exact payload bytes, and one signature."""

    payload_type: str
    payload: bytes
    keyid: str
    alg: str
    sig: bytes


def sign_document(key: PrivateKeyInfo, payload_type: str, payload: bytes) -> bytes:
    """Envelope JSON bytes with one signature by ``key`` (ECDSA normalised to low S)."""
    sig = key.sign_raw(pae(payload_type, payload))
    envelope = {"payloadType": payload_type, "payload": b64encode(payload),
                "signatures": [{"keyid": key.keyid, "alg": key.algorithm,
                                "sig": b64encode(sig)}]}
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode("ascii")


def parse_document(data: bytes, what: str) -> SignedDoc:
    """Decode an envelope with exactly one signature; structural errors are E_ENVELOPE.

    Raises:
        VerificationError: E_ENVELOPE for every structural fault (bad JSON or base64 too).
    """
    from oemkit._canonical import b64decode, parse_json

    def bad(message: str) -> VerificationError:
        return VerificationError("E_ENVELOPE", f"{what}: {message}", check="envelope",
                                 hint="the file is damaged or not an oemkit document")

    try:
        obj: Any = parse_json(data, what=what)
        if not isinstance(obj, dict) or set(obj) != {"payloadType", "payload", "signatures"}:
            raise bad("not an envelope {payloadType, payload, signatures}")
        sigs = obj["signatures"]
        if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict):
            raise bad("exactly one signature is expected")
        entry = sigs[0]
        if set(entry) != {"keyid", "alg", "sig"} or not all(
                isinstance(v, str) for v in entry.values()):
            raise bad("the signature must be {keyid, alg, sig} strings")
        if not isinstance(obj["payloadType"], str):
            raise bad("payloadType must be a string")
        payload = b64decode(obj["payload"], what=f"{what} payload")
        sig = b64decode(entry["sig"], what=f"{what} signature")
    except InputError as exc:
        raise bad(exc.message) from None
    return SignedDoc(obj["payloadType"], payload, entry["keyid"], entry["alg"], sig)
