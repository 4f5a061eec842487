"""The library carries the CLI's rules: ``oemkit.license.issue`` and ``oemkit license
issue`` give byte-identical licenses and the same error codes; ``oemkit.license.verify``
binds to a bundle as ``oemkit license verify --bundle`` does."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import oemkit.license
from helpers import KEYS, PASSPHRASE
from oemkit.errors import OemkitError
from oemkit.host.license_state import fingerprint

UTC = dt.timezone.utc
HOST = {"machine-id": ["m1"], "dmi": ["d1"], "disk": ["s1"], "mac": ["aa:bb"]}
BASE = {"customer": "acme", "customer_name": "ACME Corp", "product": "vision",
        "expires": "2099-01-01", "issued_at": "2026-06-01T00:00:00Z"}


@pytest.fixture
def cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from oemkit.cli import app

    monkeypatch.setenv("OEMKIT_KEY_PASSPHRASE", PASSPHRASE.decode())
    monkeypatch.setenv("OEMKIT_STATE", str(tmp_path / "state.json"))
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert "Traceback" not in result.output, result.output
        assert "internal error" not in result.output, result.output
        return result

    return run


def _cli_args(options: dict, out) -> list:
    """The ``oemkit license issue`` options for the library keywords in ``options``."""
    flags = {"environment": "--env", "bundle_digests": "--bundle-digest", "limits": "--limit"}
    args: list = ["license", "issue", "--key", KEYS / "license.key", "--out", out]
    for name, value in options.items():
        flag = flags.get(name, "--" + name.replace("_", "-"))
        for item in value if isinstance(value, list) else [value]:
            args += [flag, item]
    return args


def _python(options: dict) -> bytes:
    return oemkit.license.issue(key=KEYS / "license.key", passphrase=PASSPHRASE, **options)


@pytest.mark.parametrize("extra", [
    {},
    {"grace": "14d", "features": "batch,gpu", "limits": ["seats=50", "streams=4"]},
    {"not_before": "2026-07-01", "grace": "36h", "seq": 3, "license_id": "acme-x",
     "min_crl_seq": 2, "environment": "prod"},
    {"bundle_digests": ["ab" * 32, "sha256:" + "cd" * 32]},
    {"channel": "stable"},
    {"updates_until": "2027-01-01"},
    {"hardware": "FP", "match": 2},
    {"hardware": "FP"},
])
def test_python_and_cli_issue_byte_identical_licenses(cli, tmp_path, extra):
    fp = tmp_path / "host.fp"
    fp.write_text(json.dumps(fingerprint(HOST, salt="11" * 32)))
    options = {**BASE, **{k: (fp if v == "FP" else v) for k, v in extra.items()}}
    out = tmp_path / "cli.lic"
    res = cli(*_cli_args(options, out), "--json")
    assert res.exit_code == 0, res.output
    data = _python(options)
    assert data == out.read_bytes()
    claims, keyid = oemkit.license.read_claims(data)
    assert json.loads(res.stdout)["claims"] == claims.to_dict()
    assert claims.issuer == "license" and f"signed by {keyid[:16]}" in res.stderr


def test_python_issue_takes_typed_values_and_a_loaded_key(keys, tmp_path):
    typed = oemkit.license.issue(
        key=keys["license"], issuer="license", customer="acme", customer_name="ACME Corp",
        product="vision", expires=dt.datetime(2099, 1, 1, tzinfo=UTC),
        issued_at=dt.datetime(2026, 6, 1, tzinfo=UTC), grace=dt.timedelta(days=14),
        features=["batch"], limits={"seats": 50})
    strings = _python({**BASE, "grace": "14d", "features": "batch", "limits": ["seats=50"]})
    assert typed == strings
    claims, keyid = oemkit.license.read_claims(typed)
    assert keyid == keys["license"].keyid and claims.grace_seconds == 14 * 86400
    # the issuer defaults to the loaded key's file name, as for a path
    assert oemkit.license.issue(key=keys["license"], **BASE) == _python(BASE)


def test_python_issue_asks_for_the_passphrase_only_after_the_claims(monkeypatch):
    asked: list = []

    def passphrase(path):
        asked.append(path)
        return PASSPHRASE

    with pytest.raises(OemkitError) as err:
        oemkit.license.issue(key=KEYS / "license.key", passphrase=passphrase,
                             **{**BASE, "license_id": "bad id!"})
    assert err.value.code == "E_USAGE" and asked == []
    assert oemkit.license.issue(key=KEYS / "license.key", passphrase=passphrase, **BASE)
    assert asked == [KEYS / "license.key"]


@pytest.mark.parametrize("extra, code", [
    ({"bundle_digests": ["ab" * 32], "channel": "stable"}, "E_USAGE"),
    ({"channel": "stable", "updates_until": "2027-01-01"}, "E_USAGE"),
    ({"match": 2}, "E_USAGE"),
    ({"hardware": "FP", "match": 0}, "E_USAGE"),
    ({"hardware": "FP", "match": 5}, "E_USAGE"),
    ({"hardware": "BADFP"}, "E_FINGERPRINT"),
    ({"hardware": "MISSING"}, "E_NOT_FOUND"),
    ({"expires": "2020-01-01"}, "E_USAGE"),
    ({"not_before": "2099-01-01"}, "E_USAGE"),
    ({"expires": "next year"}, "E_TIME"),
    ({"not_before": "soon"}, "E_TIME"),
    ({"updates_until": "later"}, "E_TIME"),
    ({"issued_at": "2026-13-01"}, "E_TIME"),
    ({"grace": "two weeks"}, "E_USAGE"),
    ({"grace": "99999999999d"}, "E_USAGE"),
    ({"limits": ["seats"]}, "E_USAGE"),
    ({"limits": ["seats=many"]}, "E_USAGE"),
    ({"limits": ["seats=-1"]}, "E_USAGE"),
    ({"license_id": "bad id!"}, "E_USAGE"),
    ({"bundle_digests": ["xyz"]}, "E_USAGE"),
    ({"seq": 0}, "E_USAGE"),
    ({"min_crl_seq": -1}, "E_USAGE"),
    ({"customer": ""}, "E_USAGE"),
])
def test_each_rule_has_the_same_code_through_python_and_the_cli(cli, tmp_path, extra, code):
    files = {"FP": tmp_path / "host.fp", "BADFP": tmp_path / "bad.fp",
             "MISSING": tmp_path / "missing.fp"}
    files["FP"].write_text(json.dumps(fingerprint(HOST, salt="11" * 32)))
    files["BADFP"].write_text(json.dumps({"type": "other"}))
    options = {**BASE, **{k: files.get(v, v) if isinstance(v, str) else v
                          for k, v in extra.items()}}
    out = tmp_path / "cli.lic"
    res = cli(*_cli_args(options, out), "--json")
    assert res.exit_code != 0, res.output
    error = json.loads(res.stdout)["error"]
    with pytest.raises(OemkitError) as err:
        _python(options)
    assert err.value.code == error["code"] == code
    assert err.value.exit_code == error["exit_code"]
    if code != "E_USAGE" or "match" not in extra:  # click words --match 0 itself
        assert err.value.message == error["message"]
    assert not out.exists()


def test_python_issue_refuses_a_naive_datetime():
    with pytest.raises(OemkitError) as err:
        _python({**BASE, "expires": dt.datetime(2099, 1, 1)})
    assert err.value.code == "E_USAGE" and "timezone-aware" in err.value.message


# --------------------------------------------------------------------------- verify(bundle=)


@pytest.fixture
def license_root(keys, tmp_path):
    """A trust root with the example bundle and license keys (windows open since 2026-01)."""
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.trust import parse_root

    since = dt.datetime(2026, 1, 1, tzinfo=UTC)
    doc = init_root([keys["root"]], issued=since)
    for name in ("bundle", "license"):
        doc = add_key(parse_root(doc), keys[name].public, [name], [keys["root"]], name=name,
                      issued=since)
    path = tmp_path / "root.json"
    path.write_bytes(doc)
    return path


def _digest(bundle, root) -> str:
    report = oemkit.verify_bundle(bundle, root)
    assert report.ok and report.manifest_sha256
    return report.manifest_sha256


def _same_verdicts(cli, tmp_path, lic: bytes, bundle, root) -> tuple:
    """(CLI JSON, Python outcome) for ``lic`` judged against ``bundle``: path and bytes."""
    path = tmp_path / "judged.lic"
    path.write_bytes(lic)
    res = cli("license", "verify", path, "--trust", root, "--bundle", bundle, "--json")
    doc = json.loads(res.stdout)
    outcomes = []
    for given in (bundle, str(bundle), bundle.read_bytes()):
        try:
            verdict = oemkit.license.verify(lic, root, bundle=given, state=None)
        except OemkitError as exc:
            outcomes.append(("error", exc.code, exc.exit_code))
        else:
            outcomes.append(("ok", verdict.to_dict()["verdict"], verdict.signer))
    assert len(set(outcomes)) == 1, outcomes
    if doc["ok"]:
        assert outcomes[0] == ("ok", doc["verdict"], doc["signer"]), (doc, outcomes)
    else:
        error = doc["error"]
        assert outcomes[0] == ("error", error["code"], error["exit_code"]), (doc, outcomes)
        assert res.exit_code == error["exit_code"]
    return doc, outcomes[0]


def test_verify_bundle_binding_matches_the_cli(cli, tmp_path, signed_bundle, license_root):
    digest = _digest(signed_bundle, license_root)
    bound = _python({**BASE, "bundle_digests": [digest]})
    doc, outcome = _same_verdicts(cli, tmp_path, bound, signed_bundle, license_root)
    assert outcome == ("ok", "valid", doc["signer"])
    other = _python({**BASE, "bundle_digests": ["ab" * 32]})
    assert _same_verdicts(cli, tmp_path, other, signed_bundle, license_root)[1][1] == (
        "E_BUNDLE_MISMATCH")
    from oemkit.host.license_state import bundle_facts

    facts = bundle_facts(oemkit.verify_bundle(signed_bundle, license_root))
    before = facts.build_time - dt.timedelta(days=1)
    old = _python({**BASE, "updates_until": before})  # built after that date
    assert _same_verdicts(cli, tmp_path, old, signed_bundle, license_root)[1][1] == (
        "E_BUNDLE_MISMATCH")
    unbound = _python(BASE)
    assert _same_verdicts(cli, tmp_path, unbound, signed_bundle, license_root)[1][1] == "valid"
    # the facts of a verified bundle, passed directly, give the same verdict
    assert oemkit.license.verify(bound, license_root, bundle=facts, state=None).status == (
        "valid")


def test_verify_bundle_that_fails_verification_matches_the_cli(cli, tmp_path, keys,
                                                               signed_bundle, license_root):
    from oemkit.release.trust import add_key, init_root
    from oemkit.verify.trust import parse_root

    lic = _python(BASE)
    no_bundle_key = tmp_path / "no-bundle-key.json"
    no_bundle_key.write_bytes(add_key(
        parse_root(init_root([keys["root"]], issued=dt.datetime(2026, 1, 1, tzinfo=UTC))),
        keys["license"].public, ["license"], [keys["root"]], name="license",
        issued=dt.datetime(2026, 1, 1, tzinfo=UTC)))
    assert _same_verdicts(cli, tmp_path, lic, signed_bundle, no_bundle_key)[1][1] == (
        "E_SIGNATURE_UNTRUSTED")
    damaged = tmp_path / "damaged.oemb"
    data = bytearray(signed_bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    kind, code, _ = _same_verdicts(cli, tmp_path, lic, damaged, license_root)[1]
    assert kind == "error" and code.startswith("E_")
    missing = tmp_path / "missing.oemb"
    res = cli("license", "verify", tmp_path / "judged.lic", "--trust", license_root,
              "--bundle", missing, "--json")
    with pytest.raises(OemkitError) as err:
        oemkit.license.verify(lic, license_root, bundle=missing, state=None)
    assert err.value.code == json.loads(res.stdout)["error"]["code"] == "E_NOT_FOUND"
