"""Issue 13, times and trust roots: times whose UTC moment leaves years 0001..9999 (in
every place a time is read), trust-root thresholds written as ``true``, carried roots
that must not cost anything before their predecessor's signature, and high-S ECDSA
signatures.

The ECDSA cases need signatures that are the same bytes on every run (the corpus is
deterministic) whatever the OpenSSL version, so they are made here with a fixed nonce in
plain integer arithmetic on P-256 and checked with ``cryptography`` before use.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from hostile.make_corpus import (
    ISSUED,
    TRUST,
    TRUST_ROOT_PAYLOAD_TYPE,
    Corpus,
    Forge,
    canonical_json,
    make_envelope,
    make_root,
    outer,
    seeded_key,
)
from oemkit._canonical import pae
from oemkit.crypto.dsse import INTOTO_PAYLOAD_TYPE, Envelope, sigstore_bundle
from oemkit.crypto.keys import PrivateKeyInfo, key_id
from oemkit.release.trust import add_key, init_root
from oemkit.verify.trust import parse_root

#: UTC conversion of these overflows (years 10000 and 0).
LATE = "9999-12-31T23:59:59-01:00"
EARLY = "0001-01-01T00:00:00+01:00"
VERIFY = ["verify", "{corpus}/{file}", "--trust", "{corpus}/" + TRUST,
          "--state", "{tmp}/state.json", "--json"]
ECDSA_ROOT = "review-time-ecdsa-trust-root.json"

# --------------------------------------------------------------------------- P-256 by hand

_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_A = _P - 3
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
      0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def _add(p: tuple[int, int] | None, q: tuple[int, int] | None) -> tuple[int, int] | None:
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % _P == 0:
        return None
    if p == q:
        lam = (3 * p[0] * p[0] + _A) * pow(2 * p[1], -1, _P) % _P
    else:
        lam = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P) % _P
    x = (lam * lam - p[0] - q[0]) % _P
    return x, (lam * (p[0] - x) - p[1]) % _P


def _mul(k: int, point: tuple[int, int]) -> tuple[int, int]:
    out: tuple[int, int] | None = None
    addend: tuple[int, int] | None = point
    while k:
        if k & 1:
            out = _add(out, addend)
        addend = _add(addend, addend)
        k >>= 1
    assert out is not None
    return out


def _der_int(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return b"\x02" + bytes([len(raw)]) + raw


def _der(r: int, s: int) -> bytes:
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes([len(body)]) + body


def ecdsa_key(seed: int, name: str) -> tuple[PrivateKeyInfo, int]:
    """A deterministic P-256 key (and its secret scalar) that no corpus root lists."""
    from cryptography.hazmat.primitives.asymmetric import ec

    d = int.from_bytes(hashlib.sha256(b"oemkit review-time ecdsa %d" % seed).digest(),
                       "big") % (_N - 1) + 1
    private = ec.derive_private_key(d, ec.SECP256R1())
    public = private.public_key()
    return PrivateKeyInfo(private, public, "ecdsa-p256", key_id(public), name), d


def ecdsa_sign(key: PrivateKeyInfo, d: int, message: bytes, *, high_s: bool) -> bytes:
    """DER ECDSA-SHA256 over ``message`` with a nonce derived from the key and message;
    ``high_s`` picks the s > n/2 twin of the signature (both verify in cryptography)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    z = int.from_bytes(hashlib.sha256(message).digest(), "big")
    k = int.from_bytes(hashlib.sha256(d.to_bytes(32, "big") + message).digest(),
                       "big") % (_N - 1) + 1
    r = _mul(k, _G)[0] % _N
    s = pow(k, -1, _N) * (z + r * d) % _N
    low = min(s, _N - s)
    sig = _der(r, _N - low if high_s else low)
    assert isinstance(key.public, ec.EllipticCurvePublicKey)
    key.public.verify(sig, message, ec.ECDSA(hashes.SHA256()))  # both twins are valid
    return sig


def _signature_member(key: PrivateKeyInfo, sig: bytes, provenance: bytes) -> tuple[str, bytes]:
    env = Envelope(INTOTO_PAYLOAD_TYPE, provenance, (sig,))
    doc = json.dumps(sigstore_bundle(env, key.public), indent=2, sort_keys=True) + "\n"
    return f"signatures/{key.keyid}.sigstore.json", doc.encode()


def _ecdsa_bundle(forge: Forge, key: PrivateKeyInfo, d: int, *, high_s: bool) -> bytes:
    parts = forge.parts(signers=[])
    provenance = dict(parts)["provenance.intoto.json"]
    sig = ecdsa_sign(key, d, pae(INTOTO_PAYLOAD_TYPE, provenance), high_s=high_s)
    return outer([*parts, _signature_member(key, sig, provenance)])


# --------------------------------------------------------------------------- trust roots


def _payload(root_doc: bytes) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(json.loads(root_doc)["payload"])))


def _signed(keys: dict[str, PrivateKeyInfo], payload: dict[str, Any],
            signer: PrivateKeyInfo | None = None) -> bytes:
    env = make_envelope([signer or keys["root"]], TRUST_ROOT_PAYLOAD_TYPE,
                        canonical_json(payload))
    return json.dumps(env.to_dict(), indent=2, sort_keys=True).encode()


def _with_key_time(payload: dict[str, Any], field: str, value: str,
                   version: int | None = None) -> dict[str, Any]:
    keys = [dict(k) for k in payload["keys"]]
    bundle = next(k for k in keys if k["name"] == "bundle")
    bundle[field] = value
    out = {**payload, "keys": keys}
    if version is not None:
        out["version"] = version
    return out


def cases(c: Corpus, forge: Forge, keys: dict[str, PrivateKeyInfo]) -> None:
    root_doc = make_root(keys)
    pinned = _payload(root_doc)
    stranger = seeded_key(1300, "review-time-stranger")

    def bundle(file: str, tries: str, data: bytes, code: str | None, exit_code: int = 1
               ) -> None:
        c.add(f"review-time-{file}.oemb", "bundle", tries, data, code, exit_code)

    def root(file: str, tries: str, data: bytes, code: str) -> None:
        c.add(f"review-time-{file}.json", "trust-root", tries, data, code, 3)

    def finished(value: str) -> Any:
        def edit(statement: dict[str, Any]) -> None:
            statement["predicate"]["runDetails"]["metadata"]["finishedOn"] = value
        return edit

    # ---- provenance finishedOn (the signed build time)
    bundle("finishedon-overflow-stranger", f"provenance finishedOn {LATE} (UTC year 10000), "
           "signed by a key nobody trusts: the verdict is the signature's; the time is not "
           "read before a trusted key verified (was OverflowError)",
           forge.bundle(provenance_edit=finished(LATE), signers=[stranger]),
           "E_SIGNATURE_UNTRUSTED")
    bundle("finishedon-overflow-late", f"provenance finishedOn {LATE}, validly signed by "
           "the trusted bundle key: the signed time is not a time oemkit can hold",
           forge.bundle(provenance_edit=finished(LATE)), "E_TIME")
    bundle("finishedon-overflow-early", f"provenance finishedOn {EARLY} (UTC year 0), "
           "validly signed", forge.bundle(provenance_edit=finished(EARLY)), "E_TIME")

    # ---- carried trust roots (read before their signatures in the review)
    carried_late = _signed(keys, _with_key_time(pinned, "expires", LATE, version=5))
    bundle("carried-root-time-overflow", f"a carried trust/root-5.json, signed by the "
           f"trusted root key, whose bundle key expires {LATE} (was OverflowError)",
           forge.bundle(extra=[("trust/root-5.json", carried_late)]), "E_TIME")
    forged_late = _signed(keys, _with_key_time(pinned, "expires", LATE, version=5),
                          signer=stranger)
    bundle("carried-root-time-overflow-stranger", "the same carried root signed by a "
           "stranger: refused for the missing root signature before its keys and times "
           "are read", forge.bundle(extra=[("trust/root-5.json", forged_late)]),
           "E_TRUST_THRESHOLD")
    bundle("carried-root-issued-overflow", f"a carried trust/root-5.json (validly signed) "
           f"issued {EARLY}",
           forge.bundle(extra=[("trust/root-5.json", _signed(
               keys, {**pinned, "version": 5, "issued": EARLY}))]), "E_TIME")
    true_threshold = {**pinned, "version": 5,
                      "thresholds": {**pinned["thresholds"], "root": True}}
    bundle("carried-root-threshold-true", "a carried trust/root-5.json (validly signed) whose "
           "root threshold is the JSON boolean true (counted as 1 before)",
           forge.bundle(extra=[("trust/root-5.json", _signed(keys, true_threshold))]),
           "E_TRUST_INVALID")
    bundle("carried-root-misnamed", "a carried trust/root-5.json holding a validly signed "
           "version 6: carried roots are ordered by their names, so a name must be its "
           "document's version", forge.bundle(extra=[("trust/root-5.json", _signed(
               keys, {**pinned, "version": 6}))]), "E_TRUST_INVALID")
    bundle("carried-root-17-signatures", "a carried trust/root-5.json carrying 17 signatures "
           "(limit 16 for a trust root): refused before any is checked",
           forge.bundle(extra=[("trust/root-5.json", json.dumps(make_envelope(
               [keys["root"]] * 17, TRUST_ROOT_PAYLOAD_TYPE,
               canonical_json({**pinned, "version": 5})).to_dict()).encode())]),
           "E_TOO_MANY_SIGNATURES")

    # ---- the pinned root (--trust)
    root("pinned-key-expires-overflow", f"the pinned root's bundle key expires {LATE}",
         _signed(keys, _with_key_time(pinned, "expires", LATE)), "E_TIME")
    root("pinned-key-not-before-overflow", f"the pinned root's bundle key is valid from "
         f"{EARLY}", _signed(keys, _with_key_time(pinned, "not_before", EARLY)), "E_TIME")
    root("pinned-issued-overflow", f"the pinned root was issued {LATE}",
         _signed(keys, {**pinned, "issued": LATE}), "E_TIME")
    root("pinned-threshold-true", "the pinned root's bundle threshold is true",
         _signed(keys, {**pinned, "thresholds": {**pinned["thresholds"], "bundle": True}}),
         "E_TRUST_INVALID")
    root("pinned-spec-version-true", "the pinned root's spec_version is true (== 1 in Python)",
         _signed(keys, {**pinned, "spec_version": True}), "E_TRUST_INVALID")

    # ---- license issue --expires (and the other time options)
    issue = ["license", "issue", "--key", "{repo}/keys-example/license.key",
             "--customer", "acme", "--customer-name", "ACME", "--product", "vision",
             "--out", "{tmp}/issued.lic", "--json"]
    env = {"OEMKIT_KEY_PASSPHRASE": "oemkit-example-insecure"}
    for name, option, value in (("expires-late", "--expires", LATE),
                                ("expires-early", "--expires", EARLY),
                                ("not-before-early", "--not-before", EARLY),
                                ("issued-at-late", "--issued-at", LATE)):
        extra = [] if option == "--expires" else ["--expires", "2099-01-01"]
        c.add(f"review-time-license-issue-{name}.txt", "cli", f"license issue {option} "
              f"{value}: its UTC moment is outside 0001..9999 (was OverflowError)",
              f"{option} {value}\n".encode(), "E_TIME", 3,
              command=[*issue, *extra, option, value])
        c.index[-1]["env"] = env
    c.add("review-time-license-issue-year-0999.txt", "cli", "license issue with "
          "--issued-at 0999-01-01 and --expires 0999-06-30: written with zero-padded years "
          "and accepted back (was '999-01-01T00:00:00Z', refused by the strict parser)",
          b"--issued-at 0999-01-01 --expires 0999-06-30\n", None, 0,
          command=[*issue, "--issued-at", "0999-01-01", "--expires", "0999-06-30"])
    c.index[-1]["env"] = env

    # ---- the license state file's last_seen
    c.add("review-time-state-last-seen-overflow.json", "cli", f"a license state file whose "
          f"last_seen is {LATE}: set aside as corrupt with a warning, the license judged "
          "(was OverflowError)",
          json.dumps({"type": "oemkit-license-state/v2", "last_seen": LATE,
                      "issuers": []}).encode(), None, 0,
          command=["license", "verify", "{corpus}/control-license-valid.lic", "--trust",
                   "{corpus}/" + TRUST, "--state", "{work}/state.json", "--json"],
          setup={"copies": {"state.json": "review-time-state-last-seen-overflow.json"}})

    # ---- high-S ECDSA bundle signatures
    ec_key, d = ecdsa_key(1, "review-time-ecdsa")
    ec_root = add_key(parse_root(init_root([keys["root"]], names=["root"], issued=ISSUED)),
                      ec_key.public, ["bundle"], [keys["root"]], name="ecdsa-bundle",
                      issued=ISSUED)
    c.add(ECDSA_ROOT, "cli", "a trust root whose bundle key is ECDSA P-256 (the pin of the "
          "high-S cases): well-formed", ec_root, None, 0,
          command=["trust", "show", "{corpus}/{file}", "--json"])
    ec_verify = ["verify", "{corpus}/{file}", "--trust", "{corpus}/" + ECDSA_ROOT,
                 "--state", "{tmp}/state.json", "--json"]
    c.add("review-time-ecdsa-low-s.oemb", "cli", "a bundle signed by the ECDSA key with a "
          "low-S signature (s <= n/2): verifies (the control of the next case)",
          _ecdsa_bundle(forge, ec_key, d, high_s=False), None, 0, command=ec_verify)
    c.add("review-time-ecdsa-high-s.oemb", "cli", "the same signature with s replaced by "
          "n - s (valid ECDSA, a second form of one signature): refused as malleated",
          _ecdsa_bundle(forge, ec_key, d, high_s=True), "E_SIGNATURE_UNTRUSTED", 1,
          command=ec_verify)
