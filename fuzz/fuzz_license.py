"""Fuzz the license and CRL parsers: ``oemkit.verify.license.evaluate``.

Modes (first byte of the input, modulo 5):

0. the bytes are an armored license;
1. the bytes are license claims, signed here by the trusted license key and armored;
2. the bytes are an armored CRL given with the control license;
3. the bytes are a CRL payload, signed here by the trusted crl key and armored;
4. the bytes are a license envelope (JSON), armored here, unsigned.

Bindings are exercised: the host facts, a bundle and an environment are always given.
Run: ``python fuzz/run.py license SECONDS`` (or ``nox -s fuzz -- SECONDS``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus_files, main, pick

MODES = 5
_S: dict[str, Any] = {}


def setup() -> None:
    if _S:
        return
    import datetime as dt

    from _common import CORPUS

    from hostile import make_corpus
    from oemkit.crypto.armor import armor, sign_document
    from oemkit.models.license import CRL_PAYLOAD_TYPE, LICENSE_PAYLOAD_TYPE
    from oemkit.verify.license import (
        CRL_LABEL,
        LICENSE_LABEL,
        BundleFacts,
        LicenseState,
        evaluate,
    )
    from oemkit.verify.trust import parse_root

    keys = make_corpus.load_keys()
    now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    _S.update(
        evaluate=evaluate, armor=armor, sign=sign_document, keys=keys,
        license_type=LICENSE_PAYLOAD_TYPE, crl_type=CRL_PAYLOAD_TYPE,
        license_label=LICENSE_LABEL, crl_label=CRL_LABEL, now=now,
        root=parse_root((CORPUS / make_corpus.TRUST).read_bytes()).root,
        control=(CORPUS / "control-license-valid.lic").read_bytes(),
        state=LicenseState(last_seen=now - dt.timedelta(days=1), crl_seq=0, seqs={}),
        bundle=BundleFacts(manifest_sha256="0" * 64, name="hostile", build_time=now,
                           channel="stable"),
        host={"machine-id": ["0123456789abcdef"], "mac": ["00:11:22:33:44:55"]},
    )


def run(data: bytes) -> Any:
    setup()
    mode, rest = pick(data, MODES)
    license_doc, crls = _S["control"], []
    if mode == 0:
        license_doc = rest
    elif mode == 1:
        license_doc = _S["armor"](_S["license_label"], _S["sign"](
            _S["keys"]["license"], _S["license_type"], rest))
    elif mode == 2:
        crls = [("fuzz.crl", rest, True)]
    elif mode == 3:
        crls = [("fuzz.crl", _S["armor"](_S["crl_label"], _S["sign"](
            _S["keys"]["crl"], _S["crl_type"], rest)), True)]
    else:
        license_doc = _S["armor"](_S["license_label"], rest)
    return _S["evaluate"](license_doc, _S["root"], _S["now"], state=_S["state"], crls=crls,
                          bundle=_S["bundle"], host=_S["host"], environment="prod",
                          what="fuzz.lic")


def check(data: bytes) -> None:
    """Replay one input (tests): an OemkitError is fine, anything else raises."""
    from _common import guarded

    guarded(run)(data)


def seeds() -> list[bytes]:
    import base64
    import json

    setup()
    out = [bytes([0]) + d for _, d in corpus_files("license")]
    out += [bytes([2]) + d for _, d in corpus_files("crl")]
    for mode, label in ((1, "control-license-valid.lic"), (3, "control-crl-valid.crl")):
        text = dict(corpus_files("license", "crl"))[label].decode()
        envelope = base64.b64decode("".join(text.splitlines()[1:-1]))
        out.append(bytes([4]) + envelope)
        out.append(bytes([mode]) + base64.b64decode(json.loads(envelope)["payload"]))
    return out


if __name__ == "__main__":
    main("license", setup, run)
