"""oemkit's license verifier against an independent one written from docs/LICENSE-FORMAT.md.

Every case runs both verifiers on the same bytes at the same reference time: accepted
licenses must give the same claims and status, rejected ones the same error code. There
are no known disagreements: the cases that once differed (docs/LICENSE-FORMAT.md §14)
are ordinary tests at the end of this file.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import replace
from typing import Any

import pytest

from independent import license_verifier as ind
from oemkit._canonical import canonical_json, pae
from oemkit.crypto.armor import armor, sign_document
from oemkit.crypto.keys import PrivateKeyInfo, algorithm_of, generate, key_id, public_pem
from oemkit.host.license_state import fingerprint
from oemkit.models.license import (
    CRL_PAYLOAD_TYPE,
    LICENSE_PAYLOAD_TYPE,
    BundleBinding,
    HardwareBinding,
    LicenseClaims,
)
from oemkit.release.licensing import issue_crl, issue_license
from oemkit.release.trust import add_key, init_root
from oemkit.verify.license import component_hash, evaluate
from oemkit.verify.trust import parse_root

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 6, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)
NOW = T0 + 10 * DAY
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_L = 2**252 + 27742317777372353535851937790883648493
HOST = {"machine-id": ["m-1"], "mac": ["aa:01", "aa:02", "aa:03"]}


def _fresh(algorithm: str) -> PrivateKeyInfo:
    private = generate(algorithm)  # type: ignore[arg-type]
    public = private.public_key()
    return PrivateKeyInfo(private, public, algorithm_of(public), key_id(public), "fresh")


@pytest.fixture(scope="module")
def ec_key() -> PrivateKeyInfo:
    return _fresh("ecdsa-p256")


@pytest.fixture(scope="module")
def root(keys, ec_key):
    """oemkit's trust root: root, bundle, license, crl and an ECDSA license key."""
    doc = init_root([keys["root"]], issued=T0 - 30 * DAY)
    for name in ("bundle", "license", "crl"):
        doc = add_key(parse_root(doc), keys[name].public, [name], [keys["root"]], name=name,
                      issued=T0 - 30 * DAY)
    doc = add_key(parse_root(doc), ec_key.public, ["license"], [keys["root"]], name="ec",
                  issued=T0 - 30 * DAY)
    return parse_root(doc).root


@pytest.fixture(scope="module")
def trusted(root) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """The same trust, as the independent verifier takes it: {keyid: (alg, PEM, usages)}."""
    return {k.keyid: (k.algorithm, k.public_key, tuple(k.usage)) for k in root.keys}


@pytest.fixture
def check(root, trusted):
    """Run both verifiers; return (oemkit outcome, independent outcome)."""

    def run(data: bytes, now: dt.datetime = NOW, **kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("host", {})
        return _outcome(lambda: evaluate(data, root, now, **kwargs)), \
            _outcome(lambda: ind.judge(data, trusted, now, **kwargs))

    return run


def _outcome(call) -> Any:
    try:
        verdict = call()
    except Exception as exc:
        return ("rejected", getattr(exc, "code", type(exc).__name__))
    claims = verdict.claims if isinstance(verdict.claims, dict) else verdict.claims.to_dict()
    return ("accepted", verdict.status, claims, verdict.effective_time,
            verdict.grace_days_left)


def claims(**changes: Any) -> LicenseClaims:
    base = LicenseClaims(
        license_id="acme-vision", seq=1, issuer="vendor", customer_id="acme",
        customer_name="ACME Corp", product="vision", issued_at=T0, not_before=T0,
        expires=T0 + 365 * DAY, grace_seconds=14 * 86400, features=("batch", "gpu"),
        limits={"seats": 50})
    return replace(base, **changes)


def signed(key: PrivateKeyInfo, payload: bytes, ptype: str = LICENSE_PAYLOAD_TYPE) -> bytes:
    return armor("OEMKIT LICENSE", sign_document(key, ptype, payload))


def envelope(data: bytes) -> dict:
    body = b"".join(data.split(b"\n")[1:-2])
    return json.loads(base64.b64decode(body))


def rearmor(env: dict) -> bytes:
    return armor("OEMKIT LICENSE", json.dumps(env).encode())


def sig_of(env: dict) -> bytes:
    return base64.b64decode(env["signatures"][0]["sig"])


def with_sig(env: dict, sig: bytes) -> bytes:
    env = json.loads(json.dumps(env))
    env["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    return rearmor(env)


def agree_rejected(pair: tuple[Any, Any], code: str) -> None:
    oem, other = pair
    assert oem == ("rejected", code), oem
    assert other == ("rejected", code), other


def agree_accepted(pair: tuple[Any, Any], status: str = "valid") -> dict:
    oem, other = pair
    assert oem[0] == "accepted", oem
    assert other == oem, (oem, other)
    assert oem[1] == status
    return oem[2]


# ------------------------------------------------------------------------ the document's examples


def test_pae_example_of_the_document():
    body = b'{"seq":1,"type":"oemkit-license/v1"}'
    expected = (b"DSSEv1 35 application/vnd.oemkit.license+json 36 "
                b'{"seq":1,"type":"oemkit-license/v1"}')
    assert ind.pae(LICENSE_PAYLOAD_TYPE, body) == pae(LICENSE_PAYLOAD_TYPE, body) == expected
    assert len(expected) == 85


def test_keyed_hash_examples_of_the_document():
    salt = "11" * 32
    for kind, value, digest in (
            ("mac", "aa:01", "3f90943e8ae5f4148b6813e84e2d7f3c036e0bfb1c1b2a2114bd2bf2558f06e4"),
            ("machine-id", "m-1",
             "8d07d054998fd48016b9a571d1bc43ca321d5fac5451ce2974163d8151e37e35")):
        assert ind.keyed_hash(salt, kind, value) == component_hash(salt, kind, value) == digest


@pytest.mark.parametrize("obj", [
    {"b": 1, "a": [True, False, None, -5, 0], "": {}},
    {"\uffff": 1, "\U0001f600": 2, "\u00e9": 3, "z": 4},
    {"s": "\x00\x01\x08\t\n\x0b\x0c\r\x1f \"\\/\x7f\u2028\u00e9\U0001f600"},
    {"n": [9007199254740991, -9007199254740991]},
])
def test_canonical_json_matches_oemkit(obj):
    assert ind.canonical_json(obj) == canonical_json(obj)


# --------------------------------------------------------------------------- accepted


def test_ed25519_license_accepted_with_the_same_claims(check, keys):
    out = agree_accepted(check(issue_license(keys["license"], claims())))
    assert out["entitlements"] == {"features": ["batch", "gpu"], "limits": {"seats": 50}}


def test_ecdsa_licenses_accepted_with_the_same_claims(check, ec_key):
    # Different nonces give DER integers of different lengths (33-byte r/s, short ones).
    for seq in range(1, 25):
        agree_accepted(check(issue_license(ec_key, claims(seq=seq))))


def test_every_field_accepted_with_the_same_claims(check, keys, ec_key):
    fp = fingerprint(HOST, salt="11" * 32)
    full = claims(
        customer_name="Zoë «ACME» 株式会社 \U0001f600", features=("z", "a", "b"),
        limits={"seats": 50, "gpus": -1, "\u00e9": 0},
        hardware=HardwareBinding(fp["salt"], 3,
                                 tuple((c["kind"], c["hash"]) for c in fp["components"])),
        environment="prod", critical=("environment", "hardware"),
        extensions={"\uffff": {"nested": [1, "\x01", None, True]}, "\U0001f600": "x",
                    "note": "tab\there"})
    for key in (keys["license"], ec_key):
        data = issue_license(key, full)
        agree_accepted(check(data, host=HOST, environment="prod"))
        # k-of-n: one NIC changed still matches 3 of 4
        agree_accepted(check(data, host={"machine-id": ["m-1"], "mac": ["aa:01", "aa:02"]},
                             environment="prod"))


def test_grace_period_and_its_boundaries(check, keys):
    data = issue_license(keys["license"], claims(expires=T0 + 30 * DAY, grace_seconds=86400))
    agree_accepted(check(data, now=T0 + 30 * DAY), "valid")
    agree_accepted(check(data, now=T0 + 30 * DAY + dt.timedelta(seconds=1)), "grace")
    agree_accepted(check(data, now=T0 + 31 * DAY), "grace")
    agree_rejected(check(data, now=T0 + 31 * DAY + dt.timedelta(seconds=1)), "E_EXPIRED")


def test_clock_within_the_hour_of_tolerance_is_lifted_to_the_issue_time(check, keys):
    data = issue_license(keys["license"], claims())
    pair = check(data, now=T0 - dt.timedelta(minutes=59))
    agree_accepted(pair)
    assert pair[0][3] == T0


@pytest.mark.parametrize("spelling", ["crlf", "one-line", "padded", "urlsafe-unpadded"])
def test_unsigned_spellings_are_accepted_by_both(check, keys, spelling):
    data = issue_license(keys["license"], claims())
    if spelling == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif spelling == "one-line":
        lines = data.split(b"\n")
        data = b"\n".join([lines[0], b"".join(lines[1:-2]), lines[-2], b""])
    elif spelling == "padded":
        data = b"\n  \t" + data + b"\n\n"
    else:
        env = envelope(data)
        env["payload"] = base64.urlsafe_b64encode(
            base64.b64decode(env["payload"])).decode().rstrip("=")
        data = rearmor(env)
    agree_accepted(check(data))


@pytest.mark.parametrize("change", [
    {"min_crl_seq": None}, {"bindings": {"environment": None}},
    {"bindings": {"bundle": {"channel": None}}},
    {"bindings": {"bundle": {"updates_until": None}}},
    {"bindings": {"bundle": {"digests": []}}},
])
def test_null_optional_fields_and_empty_bindings_are_rejected_by_both(check, keys, change):
    # An optional field is absent or holds a value; a binding that binds nothing is a mistake.
    doc = claims().to_dict()
    doc.update(change)
    agree_rejected(check(signed(keys["license"], canonical_json(doc))), "E_CLAIMS_INVALID")


# --------------------------------------------------------------------------- tampered


def test_payload_edited(check, keys):
    env = envelope(issue_license(keys["license"], claims()))
    forged = claims(limits={"seats": 5000}).to_dict()
    env["payload"] = base64.b64encode(canonical_json(forged)).decode()
    agree_rejected(check(rearmor(env)), "E_SIG_INVALID")


@pytest.mark.parametrize("alg", ["ecdsa-p256", "none", "hs256", "ED25519", ""])
def test_alg_changed(check, keys, ec_key, alg):
    env = envelope(issue_license(keys["license"], claims()))
    env["signatures"][0]["alg"] = alg
    agree_rejected(check(rearmor(env)), "E_ALG_MISMATCH")
    env = envelope(issue_license(ec_key, claims()))
    env["signatures"][0]["alg"] = "ed25519" if alg == "ecdsa-p256" else alg
    agree_rejected(check(rearmor(env)), "E_ALG_MISMATCH")


@pytest.mark.parametrize("cut", [1, 2, 32, 63])
def test_signature_truncated(check, keys, ec_key, cut):
    for key in (keys["license"], ec_key):
        env = envelope(issue_license(key, claims()))
        agree_rejected(check(with_sig(env, sig_of(env)[:-cut])), "E_SIG_INVALID")


def test_signature_extended_or_emptied(check, keys, ec_key):
    for key in (keys["license"], ec_key):
        env = envelope(issue_license(key, claims()))
        agree_rejected(check(with_sig(env, sig_of(env) + b"\x00")), "E_SIG_INVALID")
        agree_rejected(check(with_sig(env, b"")), "E_SIG_INVALID")


def _der(r: int, s: int, *, pad_r: bool = False, long_form: bool = False) -> bytes:
    def integer(v: int, pad: bool) -> bytes:
        body = v.to_bytes((v.bit_length() + 8) // 8, "big")
        if pad:
            body = b"\x00" + body
        return b"\x02" + bytes([len(body)]) + body

    inner = integer(r, pad_r) + integer(s, False)
    length = (b"\x81" + bytes([len(inner)])) if long_form else bytes([len(inner)])
    return b"\x30" + length + inner


def test_ecdsa_malleations(check, ec_key):
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    env = envelope(issue_license(ec_key, claims()))
    r, s = decode_dss_signature(sig_of(env))
    assert _der(r, s) == sig_of(env)
    for sig in (_der(r, P256_N - s),                 # high S: verifies, but not canonical
                _der(r, s, pad_r=True),              # non-minimal INTEGER
                _der(r, s, long_form=True),          # non-minimal length
                _der(r + P256_N, s),                 # r out of range
                _der(0, s),
                sig_of(env)[:-1] + bytes([sig_of(env)[-1] ^ 1])):
        agree_rejected(check(with_sig(env, sig)), "E_SIG_INVALID")


def test_ed25519_non_canonical_s(check, keys):
    env = envelope(issue_license(keys["license"], claims()))
    sig = sig_of(env)
    s = int.from_bytes(sig[32:], "little") + ED25519_L
    agree_rejected(check(with_sig(env, sig[:32] + s.to_bytes(32, "little"))), "E_SIG_INVALID")


@pytest.mark.parametrize("name, mutate", [
    ("space", lambda t: t.replace(b'{"bindings"', b'{ "bindings"')),
    ("trailing newline", lambda t: t + b"\n"),
    ("key order", lambda t: t.replace(b'"seq":1,"type"', b'"type"', 1).replace(
        b'"oemkit-license/v1"}', b'"oemkit-license/v1","seq":1}')),
    ("escaped letter", lambda t: t.replace(b'"vision"', b'"vis\\u0069on"')),
    ("escaped slash", lambda t: t.replace(b'"vendor"', b'"ven\\/dor"')),
    ("upper-case hex escape", lambda t: t.replace(b'"vendor"', b'"vendor\\u001F"')),
    ("BOM", lambda t: b"\xef\xbb\xbf" + t),
    ("duplicate key", lambda t: t.replace(b'"seq":1', b'"seq":1,"seq":1')),
    ("float", lambda t: t.replace(b'"seq":1', b'"seq":1.0')),
    ("exponent", lambda t: t.replace(b'"seq":1', b'"seq":1e0')),
    ("negative zero", lambda t: t.replace(b'"grace_seconds":0', b'"grace_seconds":-0')),
    ("leading zero", lambda t: t.replace(b'"seq":1', b'"seq":01')),
    ("NaN", lambda t: t.replace(b'"extensions":{}', b'"extensions":{"x":NaN}')),
    ("not UTF-8", lambda t: t.replace(b'"vendor"', b'"vend\xff"')),
])
def test_non_canonical_payload_resigned_with_the_right_key(check, keys, ec_key, name, mutate):
    payload = canonical_json(claims(grace_seconds=0).to_dict())
    changed = mutate(payload)
    assert changed != payload, name
    for key in (keys["license"], ec_key):
        agree_rejected(check(signed(key, changed)), "E_CLAIMS_INVALID")


def test_float_in_canonical_form_is_rejected_by_both(check, keys):
    doc = claims().to_dict()
    doc["extensions"] = {"ratio": 0.5}
    agree_rejected(check(signed(keys["license"], canonical_json(doc))), "E_CLAIMS_INVALID")


@pytest.mark.parametrize("change", [
    {"type": "oemkit-license/v2"}, {"seq": 0}, {"seq": True}, {"grace_seconds": -1},
    {"license_id": "-starts-with-dash"}, {"license_id": "x" * 65}, {"issuer": ""},
    {"customer": {"id": "acme"}}, {"customer": {"id": "a", "name": "b", "x": "c"}},
    {"expires": "2026-06-01T00:00:00Z"}, {"unknown": 1}, {"bindings": []},
    {"bindings": {"bundle": {"channel": "a", "digests": []}}},
    {"bindings": {"bundle": {"digests": ["sha256:" + "AB" * 32]}}},
    {"bindings": {"hardware": {"salt": "11" * 32, "match": 2,
                               "components": [{"kind": "mac", "hash": "0" * 64}]}}},
    {"bindings": {"environment": ""}}, {"entitlements": {"limits": {"a": False}}},
    {"critical": "hardware"}, {"extensions": []}, {"min_crl_seq": -1},
    {"grace_seconds": 2**53 - 1}, {"expires": "9999-12-31T23:59:59Z", "grace_seconds": 1},
])
def test_schema_violations_resigned_with_the_right_key(check, keys, change):
    doc = claims().to_dict()
    doc.update(change)
    agree_rejected(check(signed(keys["license"], canonical_json(doc))), "E_CLAIMS_INVALID")


def test_missing_required_field(check, keys):
    for name in ("license_id", "seq", "issuer", "customer", "product", "issued_at",
                 "not_before", "expires", "grace_seconds"):
        doc = claims().to_dict()
        del doc[name]
        agree_rejected(check(signed(keys["license"], canonical_json(doc))), "E_CLAIMS_INVALID")


def test_expired_and_not_yet_valid_and_clock_behind(check, keys, ec_key):
    for key in (keys["license"], ec_key):
        data = issue_license(key, claims())
        agree_rejected(check(data, now=T0 + 380 * DAY), "E_EXPIRED")
        agree_rejected(check(data, now=T0 - 2 * DAY), "E_CLOCK_BEHIND")
        later = issue_license(key, claims(not_before=T0 + 30 * DAY))
        agree_rejected(check(later), "E_NOT_YET_VALID")


def test_unknown_key_wrong_usage_and_payload_type(check, keys):
    agree_rejected(check(issue_license(_fresh("ed25519"), claims())), "E_KID_UNKNOWN")
    agree_rejected(check(issue_license(keys["bundle"], claims())), "E_KEY_USAGE")
    crl = issue_crl(keys["crl"], 1, issued_at=T0)
    env = json.loads(base64.b64decode(b"".join(crl.split(b"\n")[1:-2])))
    agree_rejected(check(rearmor(env)), "E_PAYLOAD_TYPE")
    agree_rejected(check(signed(keys["license"], canonical_json(claims().to_dict()),
                                CRL_PAYLOAD_TYPE)), "E_PAYLOAD_TYPE")


@pytest.mark.parametrize("text", [
    b"", b"-----BEGIN OEMKIT LICENSE-----\nQUJD\n",
    b"-----BEGIN OEMKIT CRL-----\nQUJD\n-----END OEMKIT CRL-----\n",
    b"-----BEGIN OEMKIT LICENSE-----\nQU*D\n-----END OEMKIT LICENSE-----\n",
    b"-----BEGIN OEMKIT LICENSE-----\nQUJ\n-----END OEMKIT LICENSE-----\n",
    b"-----BEGIN OEMKIT LICENSE-----\n QUJD\n-----END OEMKIT LICENSE-----\n",
    b"-----BEGIN OEMKIT LICENSE-----\nQU=D\n-----END OEMKIT LICENSE-----\n",
    b"-----BEGIN OEMKIT LICENSE-----\n-----END OEMKIT LICENSE-----\n",
    b"-----BEGIN OEMKIT LICENSE----- \nQUJD\n-----END OEMKIT LICENSE-----\n",
    "-----BEGIN OEMKIT LICENSE-----\nQUJD\u00e9\n-----END OEMKIT LICENSE-----\n".encode(),
])
def test_bad_armor(check, text):
    agree_rejected(check(text), "E_ARMOR")


def test_armor_around_a_valid_license(check, keys):
    data = issue_license(keys["license"], claims())
    agree_rejected(check(b"x" + data), "E_ARMOR")
    agree_rejected(check(data + data), "E_ARMOR")
    agree_rejected(check(data + b"junk\n"), "E_ARMOR")
    agree_rejected(check(b"A" * (65 << 10)), "E_TOO_LARGE")
    agree_rejected(check(data + b" " * (65536 - len(data) + 1)), "E_TOO_LARGE")
    agree_accepted(check(data + b" " * (65536 - len(data))))


@pytest.mark.parametrize("mutate", [
    lambda e: e["signatures"].append(dict(e["signatures"][0])),
    lambda e: e["signatures"].clear(),
    lambda e: e.update(extra=1),
    lambda e: e.pop("payloadType"),
    lambda e: e["signatures"][0].update(keyid=1),
    lambda e: e["signatures"][0].update(extra="x"),
    lambda e: e.update(payloadType=None),
    lambda e: e.update(payload="not base64!"),
    lambda e: e["signatures"][0].update(sig="QU*D"),
    lambda e: e["signatures"][0].update(sig="Q"),
    lambda e: e.update(payload="QUJD QUJD"),
])
def test_bad_envelope(check, keys, mutate):
    env = envelope(issue_license(keys["license"], claims()))
    mutate(env)
    agree_rejected(check(rearmor(env)), "E_ENVELOPE")


def test_bad_envelope_json(check):
    for body in (b"[]", b"{", b'{"a":1,"a":2}', b"\xef\xbb\xbf{}"):
        agree_rejected(check(armor("OEMKIT LICENSE", body)), "E_ENVELOPE")


def test_critical_stale_crl_and_bindings(check, keys):
    agree_rejected(check(issue_license(keys["license"], claims(critical=("quantum",)))),
                   "E_CRIT_UNKNOWN")
    agree_rejected(check(issue_license(keys["license"], claims(min_crl_seq=1))), "E_CRL_STALE")
    fp = fingerprint(HOST, salt="22" * 32)
    hw = HardwareBinding(fp["salt"], 3, tuple((c["kind"], c["hash"]) for c in fp["components"]))
    data = issue_license(keys["license"], claims(hardware=hw))
    agree_rejected(check(data, host={"mac": ["aa:01", "aa:02"]}), "E_HW_MISMATCH")
    agree_rejected(check(data, host={"machine-id": ["M-1"], "mac": ["aa:01", "aa:02"]}),
                   "E_HW_MISMATCH")
    env = issue_license(keys["license"], claims(environment="prod"))
    agree_rejected(check(env, environment="staging"), "E_ENV_MISMATCH")
    agree_rejected(check(env), "E_ENV_MISMATCH")
    # a bundle binding is only a warning when no bundle is given, for both
    bound = issue_license(keys["license"], claims(bundle=BundleBinding(channel="stable")))
    agree_accepted(check(bound))


def test_independent_verifier_checks_its_trusted_keys(keys):
    data = issue_license(keys["license"], claims())
    pem = public_pem(keys["license"].public)
    assert ind.verify_license(data, {keys["license"].keyid: ("ed25519", pem)}, NOW)
    for trusted, code in (
            ({"0" * 64: ("ed25519", pem)}, "E_TRUST_INVALID"),
            ({keys["license"].keyid: ("ecdsa-p256", pem)}, "E_TRUST_INVALID")):
        with pytest.raises(ind.Rejected) as err:
            ind.verify_license(data, trusted, NOW)
        assert err.value.code == code
    from cryptography.hazmat.primitives.asymmetric import ed25519

    weak = ed25519.Ed25519PublicKey.from_public_bytes(bytes(32))
    with pytest.raises(ind.Rejected) as err:
        ind.verify_license(data, {key_id(weak): ("ed25519", public_pem(weak))}, NOW)
    assert err.value.code == "E_TRUST_WEAK_KEY"


# ------------------------------------------------------------- cases that once disagreed (§14)


@pytest.mark.parametrize("field", ["expires", "issued_at", "not_before", "updates_until"])
@pytest.mark.parametrize("when", ["2027-06-30", "2027-06-30T00:00:00+02:00",
                                  "2027-06-30T00:00:00.5Z", "20270630", "2027-06-30 00:00:00",
                                  "2027-06-30T00:00:00", "2027-06-30t00:00:00z",
                                  "2027-06-30T00:00:00Z\n", "2027-02-30T00:00:00Z"])
def test_time_spellings_other_than_the_written_one_are_rejected_by_both(check, keys, field,
                                                                        when):
    doc = claims().to_dict()
    if field == "updates_until":
        doc["bindings"] = {"bundle": {"updates_until": when}}
    else:
        doc[field] = when
    agree_rejected(check(signed(keys["license"], canonical_json(doc))), "E_CLAIMS_INVALID")


@pytest.mark.parametrize("field", ["license_id", "salt", "hash", "digest"])
def test_trailing_newline_in_identifiers_is_rejected_by_both(check, keys, field):
    fp = fingerprint(HOST, salt="11" * 32)
    doc = claims(hardware=HardwareBinding(
        fp["salt"], 1, tuple((c["kind"], c["hash"]) for c in fp["components"]))).to_dict()
    agree_accepted(check(signed(keys["license"], canonical_json(doc)), host=HOST))
    if field == "license_id":
        doc["license_id"] += "\n"
    elif field == "salt":
        doc["bindings"]["hardware"]["salt"] += "\n"
    elif field == "hash":
        doc["bindings"]["hardware"]["components"][0]["hash"] += "\n"
    else:
        doc["bindings"]["bundle"] = {"digests": ["sha256:" + "ab" * 32 + "\n"]}
    agree_rejected(check(signed(keys["license"], canonical_json(doc)), host=HOST),
                   "E_CLAIMS_INVALID")


@pytest.mark.parametrize("old, new", [
    (b'"seq":1', b'"seq":9007199254740993'),
    (b'"seq":1', b'"seq":9007199254740992'),
    (b'"extensions":{}', b'"extensions":{"n":-9007199254740992}'),
    (b'"product":"vision"', b'"product":"\\ud800"'),
    (b'"extensions":{}', b'"extensions":{"\\udfff":1}'),
])
def test_values_without_a_canonical_form_are_rejected_by_both(check, keys, old, new):
    payload = canonical_json(claims().to_dict()).replace(old, new)
    assert new in payload
    agree_rejected(check(signed(keys["license"], payload)), "E_CLAIMS_INVALID")


def _padding_free(keys, where: str) -> bytes:
    """A license whose armored envelope (or payload) needs no base64 padding."""
    for n in range(3):
        data = issue_license(keys["license"], claims(customer_name="ACME" + "x" * n))
        env = envelope(data)
        if where == "armor" and len(json.dumps(env).encode()) % 3 == 0:
            return data
        if where == "payload" and len(base64.b64decode(env["payload"])) % 3 == 0:
            return data
    raise AssertionError("no padding-free length found")


@pytest.mark.parametrize("where", ["armor", "payload"])
@pytest.mark.parametrize("extra", ["=", "==", "==="])
def test_excess_base64_padding_is_rejected_by_both(check, keys, where, extra):
    # '=' after a complete 4-character group: unsigned bytes, so only the base64 rules decide.
    data = _padding_free(keys, where)
    env = envelope(data)
    if where == "armor":
        body = base64.b64encode(json.dumps(env).encode())
        bad = (b"-----BEGIN OEMKIT LICENSE-----\n" + body + extra.encode() +
               b"\n-----END OEMKIT LICENSE-----\n")
        agree_rejected(check(bad), "E_ARMOR")
    else:
        env["payload"] += extra
        agree_rejected(check(rearmor(env)), "E_ENVELOPE")


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def flip_unused_bits(text: str) -> str | None:
    """``text`` with a non-zero unused bit in its last character (None if it has none)."""
    body = text.rstrip("=")
    if len(body) % 4 == 0:
        return None
    last = _B64_ALPHABET.index(body[-1])
    return body[:-1] + _B64_ALPHABET[last | 1] + text[len(body):]


@pytest.mark.parametrize("where", ["armor", "payload", "sig", "sig-unpadded"])
def test_non_zero_unused_base64_bits_are_rejected_by_both(check, keys, where):
    for n in range(3):
        data = issue_license(keys["license"], claims(customer_name="ACME" + "x" * n))
        env = envelope(data)
        if where == "armor":
            flipped = flip_unused_bits(base64.b64encode(json.dumps(env).encode()).decode())
            if flipped:
                bad = ("-----BEGIN OEMKIT LICENSE-----\n" + flipped +
                       "\n-----END OEMKIT LICENSE-----\n").encode()
                agree_rejected(check(bad), "E_ARMOR")
                return
        elif where == "payload":
            flipped = flip_unused_bits(env["payload"])
            if flipped:
                env["payload"] = flipped
                agree_rejected(check(rearmor(env)), "E_ENVELOPE")
                return
        else:
            flipped = flip_unused_bits(env["signatures"][0]["sig"])  # 64 bytes: 4 spare bits
            assert flipped is not None
            if where == "sig-unpadded":
                flipped = flipped.rstrip("=")
            env["signatures"][0]["sig"] = flipped
            agree_rejected(check(rearmor(env)), "E_ENVELOPE")
            return
    raise AssertionError("no length with unused bits found")
