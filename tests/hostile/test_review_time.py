"""Issue 13, times and trust roots (the "time" slice of the outside review).

- Every time oemkit reads or writes stays inside years 0001..9999 UTC or is ``E_TIME``:
  ``_time.parse_time``/``format_time``/``shift`` and the places that use them (pinned and
  carried trust roots, provenance ``finishedOn``, ``license issue`` options, the license
  state file); years below 1000 are written zero-padded and read back.
- Carried trust roots cost nothing before their predecessor's root signature: named
  versions, counts checked first, keys loaded only after the signature, lazy reading.
- A threshold (or spec_version) written as ``true`` is not the number 1.
- ECDSA P-256 signatures are written low-S and only low-S ones verify.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostile import make_corpus as mc
from hostile import review_time as rt
from hostile._support import cli
from oemkit._canonical import pae
from oemkit._time import MAX_TIME, MIN_TIME, UTC, format_time, parse_time, shift
from oemkit.crypto import dsse
from oemkit.crypto.keys import PrivateKeyInfo, public_pem
from oemkit.errors import InputError, VerificationError
from oemkit.models.license import LicenseClaims, parse_signed_time
from oemkit.models.trust import (
    MAX_KEYS,
    MAX_ROOT_BYTES,
    MAX_ROOT_SIGNATURES,
    TrustRoot,
)
from oemkit.verify.bundle import verify_open_bundle
from oemkit.verify.trust import MAX_CHAIN, parse_root, walk_chain

LATE, EARLY = rt.LATE, rt.EARLY
CORPUS = mc.CORPUS


@pytest.fixture(scope="module")
def ckeys() -> dict[str, PrivateKeyInfo]:
    return mc.load_keys()


@pytest.fixture(scope="module")
def pinned_doc(ckeys) -> bytes:
    return mc.make_root(ckeys)


@pytest.fixture(scope="module")
def pinned_payload(pinned_doc) -> dict[str, Any]:
    return rt._payload(pinned_doc)


@pytest.fixture
def key_loads(monkeypatch) -> list[str]:
    """Every public key a trust root entry loads (TrustKey.from_dict), by source."""
    import oemkit.crypto.keys as keys_module

    calls: list[str] = []
    real = keys_module.load_public

    def counting(data, source):
        calls.append(source)
        return real(data, source)

    monkeypatch.setattr(keys_module, "load_public", counting)
    return calls


# --------------------------------------------------------------------------- _time


@pytest.mark.parametrize("text", [LATE, EARLY, "9999-12-31T23:00:00-23:59",
                                  "0001-01-01T00:59:59.999999+01:00"])
def test_parse_time_outside_the_representable_years_is_e_time(text):
    with pytest.raises(InputError) as err:
        parse_time(text, "--expires")
    assert err.value.code == "E_TIME"
    assert "--expires" in err.value.message and text in err.value.message
    assert "outside the years 0001..9999" in err.value.message
    assert err.value.exit_code == 3


def test_parse_time_at_the_edges_inside():
    assert parse_time("9999-12-31T23:59:59+01:00", "t") == dt.datetime(
        9999, 12, 31, 22, 59, 59, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00-01:00", "t") == dt.datetime(
        1, 1, 1, 1, 0, 0, tzinfo=UTC)
    assert parse_time("9999-12-31T23:59:59Z", "t") == MAX_TIME
    assert parse_time("0001-01-01", "t") == MIN_TIME


@pytest.mark.parametrize("year", [1, 9, 99, 999, 1000, 9999])
def test_format_time_pads_the_year_and_every_parser_reads_it_back(year):
    moment = dt.datetime(year, 2, 3, 4, 5, 6, tzinfo=UTC)
    text = format_time(moment)
    assert text == f"{year:04d}-02-03T04:05:06Z"
    assert parse_time(text, "t") == moment
    assert parse_signed_time(text) == moment


def test_format_time_of_a_moment_past_9999_utc():
    late = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(-dt.timedelta(hours=1)))
    with pytest.raises(InputError) as err:
        format_time(late)
    assert err.value.code == "E_TIME" and "outside the years" in err.value.message


def test_shift_past_either_end_is_e_time():
    assert shift(MAX_TIME, dt.timedelta(seconds=-1), "t") == MAX_TIME - dt.timedelta(seconds=1)
    for moment, delta in ((MAX_TIME, dt.timedelta(hours=1)),
                          (MIN_TIME, -dt.timedelta(seconds=1))):
        with pytest.raises(InputError) as err:
            shift(moment, delta, "grace end")
        assert err.value.code == "E_TIME"
        assert err.value.message.startswith("grace end: ")


_OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m)))


@settings(max_examples=400, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59,
                                                                          59)), _OFFSETS)
def test_any_iso_time_is_a_moment_in_range_or_e_time(local, offset):
    """Property: every ISO 8601 text with any offset parses to a UTC moment inside
    0001..9999 (and round-trips through format_time) or is E_TIME; never OverflowError."""
    text = local.replace(tzinfo=offset).isoformat()
    try:
        moment = parse_time(text, "t")
    except InputError as exc:
        assert exc.code == "E_TIME" and "outside the years 0001..9999" in exc.message
        return
    assert MIN_TIME <= moment <= MAX_TIME + dt.timedelta(microseconds=999_999)
    assert parse_time(format_time(moment), "t") == moment.replace(microsecond=0)
    assert parse_signed_time(format_time(moment)) == moment.replace(microsecond=0)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_time_or_e_time(text):
    try:
        parse_time(text, "t")
    except InputError as exc:
        assert exc.code == "E_TIME"


def test_license_claims_with_years_below_1000_round_trip():
    claims = LicenseClaims(
        license_id="old", seq=1, issuer="i", customer_id="c", customer_name="C",
        product="p", issued_at=dt.datetime(999, 1, 1, tzinfo=UTC),
        not_before=dt.datetime(999, 1, 1, tzinfo=UTC),
        expires=dt.datetime(999, 6, 30, tzinfo=UTC))
    doc = claims.to_dict()
    assert doc["expires"] == "0999-06-30T00:00:00Z"
    assert LicenseClaims.from_dict(doc) == claims


# --------------------------------------------------------------------------- license CLI

ISSUE = ["license", "issue", "--key", str(mc.KEYS / "license.key"), "--customer", "acme",
         "--customer-name", "ACME", "--product", "vision", "--json"]


@pytest.fixture
def passphrase(monkeypatch):
    monkeypatch.setenv("OEMKIT_KEY_PASSPHRASE", mc.PASSPHRASE.decode())


@pytest.mark.parametrize(("option", "value"), [("--expires", LATE), ("--expires", EARLY),
                                               ("--not-before", EARLY),
                                               ("--issued-at", LATE)])
def test_license_issue_time_options_out_of_range(option, value, tmp_path, passphrase):
    out = tmp_path / "x.lic"
    extra = [] if option == "--expires" else ["--expires", "2099-01-01"]
    res = cli(*ISSUE, "--out", out, *extra, option, value)
    assert res.exit_code == 3, res.output
    doc = json.loads(res.stdout)
    assert doc["error"]["code"] == "E_TIME" and option in doc["error"]["message"]
    assert not out.exists()


def test_license_issue_before_year_1000_is_written_padded_and_verifies(tmp_path,
                                                                       passphrase):
    out = tmp_path / "old.lic"
    res = cli(*ISSUE, "--out", out, "--issued-at", "0999-01-01", "--expires", "0999-06-30")
    assert res.exit_code == 0, res.output
    claims = json.loads(res.stdout)["claims"]
    assert (claims["issued_at"], claims["expires"]) == ("0999-01-01T00:00:00Z",
                                                        "0999-06-30T00:00:00Z")
    inspected = cli("license", "inspect", out, "--json")
    assert inspected.exit_code == 0, inspected.output
    assert "0999-06-30T00:00:00Z" in inspected.stdout


def test_license_state_last_seen_past_9999_is_set_aside(tmp_path):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"type": "oemkit-license-state/v2", "last_seen": LATE,
                                 "issuers": []}))
    res = cli("license", "verify", CORPUS / "control-license-valid.lic", "--trust",
              CORPUS / mc.TRUST, "--state", state, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["verdict"] == "valid"
    assert any("corrupt" in w and "E_TIME" in w for w in doc["warnings"]), doc["warnings"]


# --------------------------------------------------------------------------- pinned roots


def test_pinned_root_key_time_past_9999(ckeys, pinned_payload, tmp_path):
    doc = rt._signed(ckeys, rt._with_key_time(pinned_payload, "expires", LATE))
    with pytest.raises(InputError) as err:
        parse_root(doc, "--trust")
    assert err.value.code == "E_TIME" and "expires" in err.value.message
    with pytest.raises(InputError) as err:
        verify_open_bundle((CORPUS / "control-bundle-valid.oemb").open("rb"), doc)
    assert err.value.code == "E_TIME"
    root = tmp_path / "root.json"
    root.write_bytes(doc)
    res = cli("verify", CORPUS / "control-bundle-valid.oemb", "--trust", root, "--json")
    assert res.exit_code == 3 and json.loads(res.stdout)["error"]["code"] == "E_TIME"


@pytest.mark.parametrize("usage", ["root", "bundle", "license", "crl"])
def test_threshold_true_is_not_one(ckeys, pinned_payload, usage):
    payload = {**pinned_payload, "thresholds": {**pinned_payload["thresholds"], usage: True}}
    with pytest.raises(InputError) as err:
        parse_root(rt._signed(ckeys, payload))
    assert err.value.code == "E_TRUST_INVALID"
    assert f"threshold for {usage!r} must be a positive integer, got True" in err.value.message
    with pytest.raises(InputError) as err:
        TrustRoot(1, MIN_TIME, {"root": 1, "bundle": 1, "license": 1, "crl": 1, usage: True})
    assert err.value.code == "E_TRUST_INVALID"


def test_spec_version_true_and_unknown_thresholds(ckeys, pinned_payload):
    for payload, words in (({**pinned_payload, "spec_version": True}, "type is not"),
                           ({**pinned_payload, "thresholds": {**pinned_payload["thresholds"],
                                                              "sbom": 1}},
                            "unknown threshold(s) ['sbom']")):
        with pytest.raises(InputError) as err:
            parse_root(rt._signed(ckeys, payload))
        assert err.value.code == "E_TRUST_INVALID" and words in err.value.message


def test_root_counts_are_checked_before_any_key_is_loaded(ckeys, pinned_payload,
                                                           key_loads):
    entry = pinned_payload["keys"][0]
    payload = {**pinned_payload, "keys": [entry] * (MAX_KEYS + 1)}
    with pytest.raises(InputError) as err:
        parse_root(rt._signed(ckeys, payload))
    assert err.value.code == "E_TRUST_TOO_MANY_KEYS"
    assert f"{MAX_KEYS + 1} keys (limit {MAX_KEYS})" in err.value.message
    env = mc.make_envelope([ckeys["root"]] * (MAX_ROOT_SIGNATURES + 1),
                           mc.TRUST_ROOT_PAYLOAD_TYPE, mc.canonical_json(pinned_payload))
    with pytest.raises(InputError) as err:
        parse_root(json.dumps(env.to_dict()).encode())
    assert err.value.code == "E_TOO_MANY_SIGNATURES"
    assert f"limit {MAX_ROOT_SIGNATURES} for a trust root" in err.value.message
    with pytest.raises(InputError) as err:
        parse_root(b" " * (MAX_ROOT_BYTES + 1))
    assert err.value.code == "E_TOO_LARGE"
    assert key_loads == []
    env = mc.make_envelope([ckeys["root"]] * MAX_ROOT_SIGNATURES,
                           mc.TRUST_ROOT_PAYLOAD_TYPE, mc.canonical_json(pinned_payload))
    assert parse_root(json.dumps(env.to_dict()).encode()).root.version == 4


def test_a_key_entry_is_checked_cheaply_before_its_key_is_loaded(ckeys, pinned_payload,
                                                                  key_loads):
    for change, words in (({"keyid": "AB" * 32}, "not 64 lowercase hex"),
                          ({"public_key": "x" * 1025}, "1025 characters"),
                          ({"usage": ["everything"]}, "invalid usage")):
        keys = [{**pinned_payload["keys"][0], **change}, *pinned_payload["keys"][1:]]
        with pytest.raises(InputError) as err:
            parse_root(rt._signed(ckeys, {**pinned_payload, "keys": keys}))
        assert err.value.code == "E_TRUST_INVALID" and words in err.value.message
    assert key_loads == []


# --------------------------------------------------------------------------- carried roots


def _stranger_root(payload: dict[str, Any], version: int) -> bytes:
    return rt._signed({}, {**payload, "version": version},
                      signer=mc.seeded_key(1300, "stranger"))


def test_505_carried_roots_are_refused_without_reading_one(pinned_doc):
    read: list[str] = []

    def loader(name: str):
        return lambda: read.append(name) or b""

    carried = [(f"trust/root-{v}.json", loader(f"trust/root-{v}.json"))
               for v in range(5, 5 + 505)]
    with pytest.raises(VerificationError) as err:
        walk_chain(parse_root(pinned_doc).root, carried)
    assert err.value.code == "E_TRUST_CHAIN_LENGTH"
    assert f"505 newer trust roots (limit {MAX_CHAIN})" in err.value.message
    assert read == []


def test_stranger_roots_stop_at_the_first_before_its_keys_load(pinned_doc, pinned_payload,
                                                                key_loads):
    """MAX_CHAIN carried roots signed by a stranger: one is read, none of its keys is
    loaded (only the pinned root's own root key, to check the signature)."""
    pinned = parse_root(pinned_doc).root
    read: list[int] = []

    def loader(version: int):
        def load() -> bytes:
            read.append(version)
            return _stranger_root(pinned_payload, version)
        return load

    carried = [(f"trust/root-{v}.json", loader(v)) for v in range(5 + MAX_CHAIN - 1, 4, -1)]
    assert len(key_loads) == 4  # the pinned root's four keys: the counter counts
    key_loads.clear()
    with pytest.raises(VerificationError) as err:
        walk_chain(pinned, carried)
    assert err.value.code == "E_TRUST_THRESHOLD"
    assert err.value.member == "trust/root-5.json"
    assert "0 valid signature(s) from v4's root keys" in err.value.message
    assert read == [5]
    assert key_loads == []


def test_carried_versions_at_or_below_the_pin_are_never_read(pinned_doc):
    def never() -> bytes:
        raise AssertionError("read")

    root, walked = walk_chain(parse_root(pinned_doc).root,
                              [(f"trust/root-{v}.json", never) for v in (1, 2, 3, 4)])
    assert root.version == 4 and walked == []


def test_carried_root_time_overflow(ckeys, pinned_doc, pinned_payload, key_loads):
    pinned = parse_root(pinned_doc).root
    good = rt._signed(ckeys, rt._with_key_time(pinned_payload, "expires", LATE, version=5))
    with pytest.raises(VerificationError) as err:
        walk_chain(pinned, [("trust/root-5.json", good)])
    assert (err.value.code, err.value.member) == ("E_TIME", "trust/root-5.json")
    assert err.value.exit_code == 1
    key_loads.clear()
    forged = rt._signed(ckeys, rt._with_key_time(pinned_payload, "expires", LATE, version=5),
                        signer=mc.seeded_key(1300, "stranger"))
    with pytest.raises(VerificationError) as err:
        walk_chain(pinned, [("trust/root-5.json", forged)])
    assert err.value.code == "E_TRUST_THRESHOLD" and key_loads == []


def test_a_validly_chained_carried_root_read_lazily(ckeys, pinned_doc, pinned_payload):
    doc = rt._signed(ckeys, {**pinned_payload, "version": 5})
    root, walked = walk_chain(parse_root(pinned_doc).root, [("trust/root-5.json", lambda: doc)])
    assert root.version == 5 and walked == [5]


# --------------------------------------------------------------------------- provenance


def _verify(data: bytes) -> Any:
    import io

    return verify_open_bundle(io.BytesIO(data), (CORPUS / mc.TRUST).read_bytes())


@pytest.mark.parametrize("value", [LATE, EARLY])
def test_signed_finished_on_outside_the_years(ckeys, value):
    forge = mc.Forge(ckeys)
    report = _verify(forge.bundle(provenance_edit=_finished(value)))
    assert report.ok is False and report.error is not None
    assert report.error.code == "E_TIME" and "finishedOn" in report.error.message
    stranger = forge.bundle(provenance_edit=_finished(value),
                            signers=[mc.seeded_key(1300, "stranger")])
    report = _verify(stranger)
    assert report.error is not None and report.error.code == "E_SIGNATURE_UNTRUSTED"


def _finished(value: str) -> Any:
    def edit(statement: dict[str, Any]) -> None:
        statement["predicate"]["runDetails"]["metadata"]["finishedOn"] = value
    return edit


# --------------------------------------------------------------------------- high-S ECDSA


@pytest.fixture(scope="module")
def ec_key() -> tuple[PrivateKeyInfo, int]:
    return rt.ecdsa_key(7, "ec-test")


def _s(sig: bytes) -> int:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    return decode_dss_signature(sig)[1]


def test_oemkit_writes_low_s_ecdsa_only(ec_key):
    from oemkit.crypto.armor import parse_document, sign_document

    key, _ = ec_key
    for i in range(40):  # a signer left alone gives high S half the time
        payload = b"payload %d" % i
        sig = dsse.sign(key, "text/plain", payload)
        assert _s(sig) <= dsse.P256_HALF_N and dsse.is_canonical_ecdsa(sig)
        assert dsse.verify_signature(key.public, "text/plain", payload, sig)
        doc = parse_document(sign_document(key, "text/plain", payload), "doc")
        assert _s(doc.sig) <= dsse.P256_HALF_N


def test_high_s_twin_and_non_strict_der_do_not_verify(ec_key):
    key, d = ec_key
    message = pae("text/plain", b"x")
    low = rt.ecdsa_sign(key, d, message, high_s=False)
    high = rt.ecdsa_sign(key, d, message, high_s=True)
    assert low != high and _s(high) > dsse.P256_HALF_N
    assert dsse.verify_raw(key.public, message, low)
    assert not dsse.verify_raw(key.public, message, high)
    # r with a superfluous leading zero byte: the same numbers, not DER
    r_len = low[3]
    padded_r = b"\x02" + bytes([r_len + 1]) + b"\x00" + low[4:4 + r_len]
    body = padded_r + low[4 + r_len:]
    assert not dsse.verify_raw(key.public, message, b"\x30" + bytes([len(body)]) + body)
    assert dsse.low_s(high) == low


def test_high_s_bundle_signature_is_refused(ckeys, ec_key):
    from oemkit.release.trust import add_key, init_root

    key, d = ec_key
    root = add_key(parse_root(init_root([ckeys["root"]], issued=mc.ISSUED)), key.public,
                   ["bundle"], [ckeys["root"]], issued=mc.ISSUED)
    forge = mc.Forge(ckeys)
    import io

    good = verify_open_bundle(io.BytesIO(rt._ecdsa_bundle(forge, key, d, high_s=False)), root)
    assert good.ok, good.to_dict()
    bad = verify_open_bundle(io.BytesIO(rt._ecdsa_bundle(forge, key, d, high_s=True)), root)
    assert bad.error is not None and bad.error.code == "E_SIGNATURE_UNTRUSTED"


def test_outside_verifiers_accept_oemkit_ecdsa_signatures(ec_key, tmp_path):
    """securesystemslib and openssl verify what oemkit writes (low S). They also accept
    the high-S twin: oemkit is the stricter party, so it must never write one."""
    from securesystemslib.dsse import Envelope as SslibEnvelope
    from securesystemslib.signer import SSlibKey

    key, d = ec_key
    payload = b'{"_type": "x"}'
    env = dsse.make_envelope([key], dsse.INTOTO_PAYLOAD_TYPE, payload)
    known = SSlibKey.from_crypto(key.public)
    sslib_key = SSlibKey("", known.keytype, known.scheme, known.keyval)
    assert list(SslibEnvelope.from_dict(env.to_dict()).verify([sslib_key], 1)) == [""]
    (tmp_path / "key.pub").write_text(public_pem(key.public))
    message = pae(dsse.INTOTO_PAYLOAD_TYPE, payload)
    (tmp_path / "pae.bin").write_bytes(message)
    for sig in (env.signatures[0], rt.ecdsa_sign(key, d, message, high_s=True)):
        (tmp_path / "sig.der").write_bytes(sig)
        proc = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "key.pub"),
                               "-signature", str(tmp_path / "sig.der"),
                               str(tmp_path / "pae.bin")], capture_output=True, text=True)
        assert proc.returncode == 0 and "Verified OK" in proc.stdout, proc.stderr


def test_a_root_at_the_key_limit_fits_and_the_writer_refuses_one_more(ckeys, pinned_doc):
    from oemkit.release.trust import _document, _trust_key, add_key

    pinned = parse_root(pinned_doc).root
    extra = tuple(_trust_key(mc.seeded_key(20_000 + i, f"k{i}").public, ("bundle",), f"k{i}")
                  for i in range(MAX_KEYS - len(pinned.keys)))
    full = _document(pinned.next_version(mc.ISSUED, keys=(*pinned.keys, *extra)),
                     [ckeys["root"]])
    assert len(full) < 200 << 10 < MAX_ROOT_BYTES  # TRUST.md: about 150 KiB
    signed = parse_root(full)
    assert len(signed.root.keys) == MAX_KEYS
    with pytest.raises(InputError) as err:
        add_key(signed, mc.seeded_key(30_000, "one-more").public, ["bundle"], [ckeys["root"]])
    assert err.value.code == "E_TRUST_TOO_MANY_KEYS"
    assert f"already lists {MAX_KEYS} keys (limit {MAX_KEYS})" in err.value.message


def test_bundle_with_505_carried_roots_is_judged_by_their_names_alone(ckeys):
    """Through the bundle verifier: 505 carried members that are not even JSON are
    refused for their number (the review's 505 roots of 1,000 keys cost 52 s)."""
    extra = [(f"trust/root-{v}.json", b"x") for v in range(5, 5 + 505)]
    report = _verify(mc.Forge(ckeys).bundle(extra=extra))
    assert report.error is not None and report.error.code == "E_TRUST_CHAIN_LENGTH"
    assert "505 newer trust roots" in report.error.message
