"""Evidence packs (issue 19, part 1): made from the example's real smoke, sizing and
migration runs and a license; every piece of evidence tampered in turn is named by
`oemkit evidence verify`; the page drawn by headless Chromium, asking no network."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import EXAMPLE, KEYS, PASSPHRASE
from oemkit._canonical import canonical_json
from oemkit.cli import app
from oemkit.crypto.keys import generate, key_id, private_pem, public_pem
from oemkit.errors import VerificationError
from oemkit.report.evidence import read_pack, verify_pack
from test_charts import _browse, _pixels, needs_chromium

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]
runner = CliRunner()


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _key_files(folder: Path, name: str) -> tuple[Path, Path]:
    private = generate("ed25519")
    key, pub = folder / f"{name}.key", folder / f"{name}.pub"
    key.write_bytes(private_pem(private, None))
    pub.write_text(public_pem(private.public_key()))
    return key, pub


@pytest.fixture(scope="module")
def site(tmp_path_factory, keys, trust_v2):
    """The example built and signed, its real smoke test (attested), sizing and migration
    test runs, a license bound to it, and the trust root with a license key."""
    from oemkit._time import format_time, now
    from oemkit.crypto.keys import load_private_file
    from oemkit.license import issue
    from oemkit.measure.sizing import SizingRequest, Slo, run_sizing
    from oemkit.measure.smoke import run_smoke
    from oemkit.release.attest import sign_attestation, test_result_statement
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle
    from oemkit.release.trust import add_key
    from oemkit.verify.trust import parse_root

    tmp = tmp_path_factory.mktemp("site")
    bundle = build_bundle(EXAMPLE, tmp).path
    sign_bundle(bundle, [keys["bundle"]])
    trust = tmp / "trust-root.json"
    trust.write_bytes(add_key(parse_root(trust_v2), keys["license"].public, ["license"],
                              [keys["root"]], name="license"))
    attest_key, attest_pub = _key_files(tmp, "attest")
    smoke = run_smoke(bundle, "cpu-small", trust)
    assert smoke.result == "PASSED", smoke.to_dict()
    (tmp / "smoke.intoto.json").write_bytes(sign_attestation(
        test_result_statement(smoke, format_time(now())), load_private_file(attest_key, None)))
    sizing = run_sizing(bundle, "cpu-small", trust, SizingRequest(
        target_qps=100, slo=Slo("p95", 3000), batches=(1,), threads=(1,), duration_s=0.2,
        server_duration_s=0.2, workers=1, levels=(0.2, 0.4), level_duration_s=0.5,
        mlperf="off"))
    (tmp / "sizing.json").write_text(json.dumps(sizing))
    junit = cli("migrate", "test", bundle, "--trust", trust, "--junit", tmp / "migrate.xml",
                "--attest-key", attest_key, "--out", tmp / "migrate.intoto.json")
    assert junit.exit_code == 0, junit.output
    digest = json.loads(cli("inspect", bundle, "--json").stdout)["manifest_sha256"]
    (tmp / "acme.lic").write_bytes(issue(
        key=keys["license"], customer="acme", customer_name="ACME Corp", product="example",
        expires="2099-01-01T00:00:00Z", features="batch", bundle_digests=[digest]))
    pack_key, pack_pub = _key_files(tmp, "site")
    return {"dir": tmp, "bundle": bundle, "trust": trust, "attest_pub": attest_pub,
            "key": pack_key, "pub": pack_pub}


@pytest.fixture(scope="module")
def pack(site):
    out, html = site["dir"] / "example.oeme", site["dir"] / "example.html"
    made = cli("evidence", site["bundle"], "--trust", site["trust"], "--key", site["key"],
               "--smoke", site["dir"] / "smoke.intoto.json", "--smoke-key", site["attest_pub"],
               "--sizing", site["dir"] / "sizing.json", "--migrate-junit",
               site["dir"] / "migrate.xml", "--migrate", site["dir"] / "migrate.intoto.json",
               "--migrate-key", site["attest_pub"], "--license", site["dir"] / "acme.lic",
               "--out", out, "--html", html, "--json")
    assert made.exit_code == 0, made.output
    return out, html, json.loads(made.stdout)


def test_the_pack_claims_everything_it_was_given(pack, site):
    out, _, made = pack
    ids = [c["id"] for c in made["claims"]]
    assert ids == ["C1", "C2", "C3", "C4", "C5", "C6", "C9", "C7.1", "C8"]
    for claim in made["claims"]:
        assert len(claim["digest"]) == 64 and claim["artifact"] and claim["config"]
    _, parsed, _, _ = read_pack(out.read_bytes(), str(out))
    doc = parsed.doc
    assert doc["smoke"]["result"] == "PASSED" and doc["smoke"]["profile"] == "cpu-small"
    assert doc["migration"]["tests"] > 0 and doc["migration"]["failures"] == 0
    attested = doc["migration"]["attested"]
    assert (attested["result"], attested["config_version"], attested["samples_from"]) == (
        "PASSED", "2", "1")
    assert attested["passed"] == 2 and attested["bundle"] == "example-0.2.0"
    c9 = next(c for c in made["claims"] if c["id"] == "C9")
    assert c9["claim"].startswith("the config migrations PASSED for this bundle (to config "
                                  "version 2, 2 checks passed), attested by key ")
    assert c9["artifact"] == "migrate.intoto.json"
    assert doc["licenses"][0]["license_id"] == "acme-example"
    assert doc["licenses"][0]["status"] == "valid"
    assert doc["sizing"]["recommendation"]["basis"] == "served"
    assert doc["sbom"]["components"] > 0 and doc["sbom"]["files"] == doc["bundle"]["files"]
    names = {a for a in parsed.artifacts}
    assert {"oemkit-bundle.json", "sbom.cdx.json", "provenance.intoto.json",
            "smoke.intoto.json", "migrate-junit.xml", "migrate.intoto.json",
            "migrate-key.pub", "sizing.json",
            "licenses/acme-example.lic", "trust-root.json"} <= names
    assert any(n.startswith("signatures/") for n in names)


def test_evidence_verify_holds_and_pins_the_signer(pack, site):
    out, _, _ = pack
    ok = cli("evidence", "verify", out, "--trust", site["trust"], "--signer", site["pub"],
             "--json")
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["ok"] and all(c["holds"] for c in doc["claims"])
    assert doc["signature"]["ok"] and "the expected signer" in doc["signature"]["detail"]
    _, other = _key_files(site["dir"], "other")
    wrong = cli("evidence", "verify", out, "--trust", site["trust"], "--signer", other)
    assert wrong.exit_code == 1 and "E_EVIDENCE_SIGNATURE" in wrong.output


def _tamper(src: Path, dst: Path, artifact: str, edit) -> Path:
    """A copy of the pack with one artifact's bytes edited (the pack left unsigned-over)."""
    envelope = json.loads(src.read_bytes())
    doc = json.loads(base64.b64decode(envelope["payload"]))
    for a in doc["artifacts"]:
        if a["name"] == artifact:
            a["content"] = base64.b64encode(edit(base64.b64decode(a["content"]))).decode()
            break
    else:
        raise AssertionError(artifact)
    envelope["payload"] = base64.b64encode(canonical_json(doc)).decode()
    dst.write_bytes(canonical_json(envelope))
    return dst


@pytest.mark.parametrize(("artifact", "claim"), [
    ("provenance.intoto.json", "C1"),
    ("oemkit-bundle.json", "C1"),  # the signed provenance no longer names it: every claim
    ("sbom.cdx.json", "C4"),
    ("smoke.intoto.json", "C5"),
    ("migrate-junit.xml", "C6"),
    ("migrate.intoto.json", "C9"),
    ("licenses/acme-example.lic", "C7.1"),
    ("sizing.json", "C8"),
])
def test_each_piece_of_evidence_tampered_is_named(pack, site, tmp_path, artifact, claim):
    out, _, _ = pack
    bad = _tamper(out, tmp_path / "bad.oeme", artifact,
                  lambda b: b.replace(b"a", b"b", 1) if b"a" in b else b + b" ")
    result = cli("evidence", "verify", bad, "--trust", site["trust"], "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_EVIDENCE_CLAIM"
    assert error["message"].startswith(f"claim {claim} (")
    assert "no longer holds" in error["message"]


def test_a_tampered_pack_with_a_recomputed_digest_still_fails_its_claim(pack, site, tmp_path):
    """Editing the attestation and its recorded digests consistently: the signature inside
    the attestation still says no."""
    out, _, _ = pack
    envelope = json.loads(out.read_bytes())
    doc = json.loads(base64.b64decode(envelope["payload"]))
    from oemkit._canonical import sha256_hex

    for a in doc["artifacts"]:
        if a["name"] == "smoke.intoto.json":
            outer = json.loads(base64.b64decode(a["content"]))
            statement = json.loads(base64.b64decode(outer["dsseEnvelope"]["payload"]))
            statement["predicate"]["failedTests"] = ["served:ready"]
            outer["dsseEnvelope"]["payload"] = base64.b64encode(
                canonical_json(statement)).decode()
            raw = json.dumps(outer).encode()
            a["content"], a["sha256"], a["size"] = (base64.b64encode(raw).decode(),
                                                    sha256_hex(raw), len(raw))
            for c in doc["claims"]:
                if c["artifact"] == "smoke.intoto.json":
                    c["digest"] = sha256_hex(raw)
    envelope["payload"] = base64.b64encode(canonical_json(doc)).decode()
    bad = tmp_path / "bad.oeme"
    bad.write_bytes(canonical_json(envelope))
    report = verify_pack(bad, site["trust"])
    failure = report.first_failure
    assert failure is not None and failure.claim.id == "C5"
    assert "signed by no key the pack knows" in failure.detail
    assert not report.signature_ok  # and the pack's own signature no longer verifies


def test_a_revoked_bundle_key_breaks_the_signature_claim_years_later(pack, site, keys,
                                                                     tmp_path):
    from oemkit.release.trust import revoke_key
    from oemkit.verify.trust import parse_root

    out, _, _ = pack
    newer = tmp_path / "root-v4.json"
    newer.write_bytes(revoke_key(parse_root(site["trust"].read_bytes()),
                                 keys["bundle"].keyid, [keys["root"]]))
    result = cli("evidence", "verify", out, "--trust", newer, "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["message"].startswith("claim C1 (") and "E_KEY_" in error["message"]


def test_only_a_passed_smoke_a_clean_junit_and_this_bundle_s_license_go_in(site, keys,
                                                                           tmp_path):
    from oemkit.license import issue

    junit = tmp_path / "bad.xml"
    junit.write_text('<testsuites name="m" tests="2" failures="1"><testsuite name="m" '
                     'tests="2" failures="1"/></testsuites>')
    result = cli("evidence", site["bundle"], "--trust", site["trust"], "--key", site["key"],
                 "--migrate-junit", junit, "--out", tmp_path / "p.oeme")
    assert result.exit_code == 3 and "E_EVIDENCE_INPUT" in result.output
    assert "it is not evidence that the migrations pass" in result.output
    other = tmp_path / "other.lic"
    other.write_bytes(issue(key=keys["license"], customer="acme", customer_name="ACME",
                            product="example", expires="2099-01-01T00:00:00Z",
                            bundle_digests=["0" * 64]))
    result = cli("evidence", site["bundle"], "--trust", site["trust"], "--key", site["key"],
                 "--license", other, "--out", tmp_path / "p.oeme")
    assert result.exit_code == 3 and "E_BUNDLE_MISMATCH" in result.output
    assert not (tmp_path / "p.oeme").exists()
    result = cli("evidence", site["bundle"], "--trust", site["trust"], "--key", site["key"],
                 "--smoke", site["dir"] / "smoke.intoto.json", "--out", tmp_path / "p.oeme")
    assert result.exit_code == 3 and "signed by no key the pack knows" in result.output


def test_a_migration_attestation_is_not_a_smoke_one_nor_a_failed_one(site, tmp_path):
    smoke, migrate = site["dir"] / "smoke.intoto.json", site["dir"] / "migrate.intoto.json"
    base = ["evidence", site["bundle"], "--trust", site["trust"], "--key", site["key"],
            "--out", tmp_path / "p.oeme", "--json"]
    result = cli(*base, "--migrate", smoke, "--migrate-key", site["attest_pub"])
    assert result.exit_code == 3
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_EVIDENCE_INPUT"
    assert error["message"] == f"{smoke} was written by 'oemkit smoke', not 'oemkit migrate test'"
    result = cli(*base, "--smoke", migrate, "--smoke-key", site["attest_pub"])
    assert json.loads(result.stdout)["error"]["message"] == (
        f"{migrate} was written by 'oemkit migrate test', not 'oemkit smoke'")
    assert not (tmp_path / "p.oeme").exists()


def test_migrate_test_attests_a_failure_too_and_needs_trust(site, tmp_path):
    key = tmp_path / "ci.key"
    key.write_bytes(private_pem(generate("ed25519"), None))
    result = cli("migrate", "test", site["bundle"], "--attest-key", key, "--out",
                 tmp_path / "m.json", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["message"]) == (
        "E_USAGE", "--attest-key needs --trust: an attestation is about the verified bundle")
    result = cli("migrate", "test", site["bundle"], "--trust", site["trust"], "--attest-key",
                 key, "--json")
    assert json.loads(result.stdout)["error"]["message"] == "--attest-key and --out go together"
    # a failed migration test attests FAILED, and evidence refuses it (build itself refuses
    # a spec whose samples do not migrate, so the failing checks are made here)
    from oemkit.crypto.keys import load_private_file
    from oemkit.host.migrate import bundle_configs
    from oemkit.models.report import Check
    from oemkit.release.attest import migration_statement, sign_attestation

    configs = bundle_configs(site["bundle"], site["trust"])
    failed = [Check("config/samples/v1.json (v1 -> v2)", "fail", "does not validate")]
    out = tmp_path / "m.json"
    out.write_bytes(sign_attestation(migration_statement(configs, failed, "2026-12-08T00:00:00Z"),
                                     load_private_file(key, None)))
    statement = json.loads(base64.b64decode(json.loads(out.read_bytes())["dsseEnvelope"][
        "payload"]))
    assert statement["predicate"]["result"] == "FAILED"
    assert statement["predicate"]["failedTests"] == ["config/samples/v1.json (v1 -> v2)"]
    assert statement["subject"][0]["digest"]["sha256"] == configs.manifest_sha256
    result = cli("evidence", site["bundle"], "--trust", site["trust"], "--key", site["key"],
                 "--migrate", out, "--migrate-key", _pub_of(key, tmp_path), "--out",
                 tmp_path / "p.oeme")
    assert result.exit_code == 3 and "records result 'FAILED', not PASSED" in result.output


def _pub_of(key: Path, tmp_path: Path) -> Path:
    from oemkit.crypto.keys import load_private_file

    pub = tmp_path / (key.stem + ".pub")
    pub.write_text(public_pem(load_private_file(key, None).public))
    return pub


def test_not_a_pack(site, tmp_path):
    bogus = tmp_path / "x.oeme"
    bogus.write_text("{}")
    result = cli("evidence", "verify", bogus, "--trust", site["trust"])
    assert result.exit_code == 1 and "E_EVIDENCE_INVALID" in result.output
    with pytest.raises(VerificationError) as caught:
        read_pack(b"[1]", "x")
    assert caught.value.code == "E_EVIDENCE_INVALID"


def test_the_pack_s_json_follows_its_published_schema(pack):
    import jsonschema

    from oemkit.schema import load_schema

    out, _, _ = pack
    _, parsed, _, _ = read_pack(out.read_bytes(), str(out))
    jsonschema.validate(parsed.doc, load_schema("evidence.schema.json"))
    broken = dict(parsed.doc, claims=[])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, load_schema("evidence.schema.json"))


def test_the_page_holds_the_claim_table_and_nothing_external(pack):
    _, html, made = pack
    page = html.read_text()
    assert "<h2>Claims and their evidence</h2>" in page
    for claim in made["claims"]:
        assert f"<td>{claim['id']}</td>" in page
    for needle in ("<script", "<link", "src=", "http://", "https://", "@import", "url("):
        assert needle not in page, needle


# The browser check needs Debian's chromium, which .ci/run installs (test_charts.py's
# marker: it skips, saying so, only on a machine without it; every other check of the page
# runs everywhere, above).
@needs_chromium
def test_chromium_draws_the_claim_table_and_the_page_asks_no_network(pack, tmp_path):
    _, html, _ = pack
    folder = tmp_path / "site"
    folder.mkdir()
    shutil.copyfile(html, folder / "pack.html")
    shot, served, asked = _browse(folder, "pack.html", tmp_path)
    assert [u for u in asked if not u.endswith("/favicon.ico")] == []
    assert set(served) <= {"/pack.html", "/favicon.ico"}, served
    _, ink, colours = _pixels(shot)
    assert ink >= 0.05, ink  # not blank
    assert (0xDD, 0xE7, 0xF0) in colours  # the claim table's header row is on screen


def test_key_ids_in_the_pack_are_computed(pack, site):
    out, _, _ = pack
    _, parsed, _, _ = read_pack(out.read_bytes(), str(out))
    from oemkit.crypto.keys import load_public_file

    assert parsed.doc["signer"]["keyid"] == key_id(load_public_file(site["pub"]))
    assert PASSPHRASE and KEYS  # the example keys signed the bundle the pack is about
