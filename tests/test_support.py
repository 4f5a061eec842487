"""Support bundles (issue 19 part 2): a real install, a failed upgrade and a rollback, then
`oemkit support collect` and `inspect` on what they left: contents, redaction, the size
bound with a 1 GiB log, --dry-run, signatures and tampering, the known problems."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import io
import json
import shutil
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard
from typer.testing import CliRunner

from helpers import PASSPHRASE, REPO
from oemkit.cli import app
from oemkit.errors import FormatError, InputError, UsageError
from oemkit.host.install import install, rollback
from oemkit.host.support import CollectOptions, collect, inspect
from oemkit.models.support import (
    MANIFEST,
    REDACTED,
    SIGNATURE,
    SupportManifest,
    find_problems,
    redact_config,
    secret_fields,
)

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]
runner = CliRunner()
SECRET = "SECRET-XYZ"
ADMIN = "admin-pw-4711"
UTC = dt.timezone.utc
TAIL = b"TAIL-MARKER-OF-THE-BIG-LOG\n"


def invoke(*args: object, env: dict[str, str] | None = None):
    result = runner.invoke(app, ["support", *(str(a) for a in args)], env=env)
    assert "Traceback" not in result.output, result.output
    return result


def untar(path: Path) -> tuple[bytes, dict[str, bytes], list[str]]:
    """The decompressed tar, its members by name and their order."""
    raw = zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read()
    members, order = {}, []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for info in tar:
            handle = tar.extractfile(info)
            assert handle is not None
            members[info.name] = handle.read()
            order.append(info.name)
    return raw, members, order


def retar(path: Path, members: list[tuple[str, bytes]]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))


def _secret_schema(path: Path) -> None:
    schema = json.loads(path.read_text())
    schema["properties"]["api_token"] = {"type": "string", "x-oemkit-secret": True}
    schema.setdefault("$defs", {})["secret"] = {"type": "string", "writeOnly": True}
    schema["properties"]["admin"] = {"type": "object", "additionalProperties": False,
                                     "properties": {"password": {"$ref": "#/$defs/secret"},
                                                    "user": {"type": "string"}}}
    path.write_text(json.dumps(schema, indent=2))


@pytest.fixture(scope="module")
def trust(tmp_path_factory, keys, trust_v2) -> Path:
    from oemkit.release.trust import add_key
    from oemkit.verify.trust import parse_root

    doc = add_key(parse_root(trust_v2), keys["license"].public, ["license"], [keys["root"]],
                  name="license")
    path = tmp_path_factory.mktemp("trust") / "trust-root.json"
    path.write_bytes(doc)
    return path


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, keys):
    """example-v1 and example whose config schemas mark api_token and admin.password
    secret (x-oemkit-secret; writeOnly through a $ref)."""
    from oemkit.release.bundle import build_bundle
    from oemkit.release.sign import sign_bundle

    work = tmp_path_factory.mktemp("specs")
    out = tmp_path_factory.mktemp("bundles")
    made = []
    for name, schemas in (("example-v1", ["config.schema.json"]),
                          ("example", ["config.schema.json", "v1.schema.json"])):
        spec = work / name
        shutil.copytree(REPO / "bundles" / name, spec)
        for schema in schemas:
            _secret_schema(spec / "config" / schema)
        path = build_bundle(spec, out).path
        sign_bundle(path, [keys["bundle"]])
        made.append(path)
    return made


class _Service(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (b"# TYPE oemkit_requests_total counter\noemkit_requests_total 42\n"
                if self.path == "/metrics" else b'{"ready": true}')
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def service():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory, bundles, trust, keys):
    """A prefix after: install 0.1.0 (live config with secrets), an upgrade to 0.2.0 whose
    smoke test fails (no such profile), an upgrade that works, a rollback to 0.1.0; an
    expired license in PREFIX/licenses; a log folder with a secret, a password and a
    sparse 1 GiB log; the reports saved as install/upgrade/rollback --json write them."""
    from oemkit.models.license import LicenseClaims
    from oemkit.release.licensing import issue_license

    v1, v2 = bundles
    base = tmp_path_factory.mktemp("site")
    prefix, reports, logs = base / "opt", base / "reports", base / "logs"
    reports.mkdir()
    logs.mkdir()
    config = base / "config.json"
    config.write_text(json.dumps({"schema_version": 1, "threshold": 0.5, "threads": 1,
                                  "labels": ["a", "b", "c"], "api_token": SECRET,
                                  "admin": {"user": "ops", "password": ADMIN}}))
    first = install(v1, prefix, trust, config=config, skip_smoke=True)
    assert first.ok, first.to_dict()
    failed = install(v2, prefix, trust, upgrade=True, profile="no-such-profile")
    assert not failed.ok and failed.checks[-1].name == "smoke", failed.to_dict()
    (reports / "upgrade-failed.json").write_text(json.dumps(failed.to_dict()))
    second = install(v2, prefix, trust, upgrade=True, skip_smoke=True)
    assert second.ok, second.to_dict()
    assert json.loads((prefix / "current" / "config.json").read_text())["api_token"] == SECRET
    back = rollback(prefix)
    assert back.switched
    (reports / "rollback.json").write_text(json.dumps(back.to_dict()))
    t0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
    expired = issue_license(keys["license"], LicenseClaims(
        license_id="acme-example", seq=1, issuer="vendor", customer_id="acme",
        customer_name="ACME Corp", product="example", issued_at=t0, not_before=t0,
        expires=t0 + dt.timedelta(days=30)))
    (prefix / "licenses").mkdir()
    (prefix / "licenses" / "acme.lic").write_bytes(expired)
    (logs / "app.log").write_text(f"started\nusing token {SECRET} for the upstream\n"
                                  "login password=hunter2 accepted\nready\n")
    with (logs / "big.log").open("wb") as handle:
        handle.truncate((1 << 30) - len(TAIL))
        handle.seek(0, 2)
        handle.write(TAIL)
    return {"prefix": prefix, "reports": sorted(reports.iterdir()), "logs": logs,
            "base": base}


@pytest.fixture(scope="module")
def host_key(tmp_path_factory):
    from oemkit.crypto.keys import generate, private_pem, public_pem

    folder = tmp_path_factory.mktemp("hostkey")
    private = generate("ed25519")
    (folder / "host.key").write_bytes(private_pem(private, PASSPHRASE))
    (folder / "host.pub").write_text(public_pem(private.public_key()))
    other = generate("ed25519")
    (folder / "other.pub").write_text(public_pem(other.public_key()))
    return folder


ENV = {"OEMKIT_KEY_PASSPHRASE": PASSPHRASE.decode()}
MAX = 8 << 20


@pytest.fixture(scope="module")
def collected(site, host_key, service, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "support.tar.zst"
    args = ["collect", "--prefix", site["prefix"], "--out", out, "--logs", site["logs"],
            "--url", service, "--redact", r"password=\S+", "--redact", "hunter2",
            "--key", host_key / "host.key",
            "--max-size", MAX, "--state", site["base"] / "state.json", "--json"]
    for report in site["reports"]:
        args += ["--report", report]
    result = invoke(*args, env=ENV)
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_the_bundle_holds_what_the_list_says(collected, site):
    out, doc = collected
    _, members, order = untar(out)
    assert order[:2] == [MANIFEST, SIGNATURE]
    manifest = SupportManifest.from_dict(json.loads(members[MANIFEST]))
    assert [f.path for f in manifest.files] == order[2:]
    status = json.loads(members["status.json"])
    assert status["current"].startswith("example-0.1.0-")
    assert status["previous"].startswith("example-0.2.0-")
    for slot in (status["current"], status["previous"]):
        record = json.loads(members[f"slots/{slot}/slot.json"])
        assert record["name"] == slot
        assert json.loads(members[f"slots/{slot}/manifest.json"])["name"] == "example"
        config = json.loads(members[f"slots/{slot}/config.json"])
        assert config["api_token"] == REDACTED
        assert config["admin"] == {"user": "ops", "password": REDACTED}
        assert config["threads"] == 1
    history = json.loads(members["history.json"])
    assert history["reports_kept"] is True
    kept = sorted(n for n in members if n.startswith("reports/kept-"))
    assert [n.split("-", 2)[2] for n in kept] == ["install.json", "upgrade.json",
                                                  "upgrade.json", "rollback.json"]
    assert [json.loads(members[n])["ok"] for n in kept] == [True, False, True, True]
    smoke_failed = json.loads(members[kept[1]])
    assert smoke_failed["checks"][-1]["name"] == "smoke" and smoke_failed["recorded_at"]
    assert [s["version"] for s in history["slots"]] == ["0.1.0", "0.2.0"]
    assert json.loads(members["reports/01-rollback.json"])["action"] == "rollback"
    assert json.loads(members["reports/02-upgrade-failed.json"])["ok"] is False
    assert b"using token [REDACTED] for the upstream" in members["logs/app.log"]
    assert b"login [REDACTED] accepted" in members["logs/app.log"]
    assert members["logs/big.log"].endswith(TAIL)
    assert "host" in json.loads(members["profile.json"])
    assert b"oemkit_requests_total 42" in members["metrics.txt"]
    assert members["service/ready.txt"].startswith(b"HTTP 200")
    assert json.loads(members["license/state.json"])["present"] is False
    verdicts = json.loads(members["license/verdicts.json"])
    assert verdicts["slot"] == status["current"]
    assert [(v["license"], v["verdict"], v["error"]["code"]) for v in verdicts["verdicts"]
            ] == [("licenses/acme.lic", "rejected", "E_EXPIRED")]
    fingerprint = json.loads(members["fingerprint.json"])
    assert fingerprint["type"] and len(fingerprint["salt"]) == 64
    assert all(set(c) == {"kind", "hash"} for c in fingerprint["components"])
    disk = json.loads(members["disk.json"])
    assert disk["total"] >= disk["free"] > 0
    assert json.loads(members["host.json"])["oemkit_version"]
    paths = set(members)
    assert not any(p.endswith((".key", ".kept.json")) or "trust-root" in p for p in paths)
    assert sorted(manifest.secret_fields) == sorted(
        f"slots/{s}/config.json:{f}" for s in (status["current"], status["previous"])
        for f in ("api_token", "admin.password"))
    assert manifest.patterns == tuple("sha256:" + hashlib.sha256(p).hexdigest()
                                      for p in (rb"password=\S+", b"hunter2"))
    assert doc["signer"] and doc["manifest"] == manifest.to_dict()


def test_no_secret_in_any_collected_byte(collected):
    out, _ = collected
    raw, members, _ = untar(out)
    for secret in (SECRET, ADMIN, "hunter2"):
        assert secret.encode() not in raw
        assert not any(secret.encode() in data for data in members.values())


def test_the_size_bound_holds_with_a_1_gib_log(collected):
    out, _ = collected
    assert out.stat().st_size <= MAX
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    raw, members, _ = untar(out)
    assert len(raw) <= MAX
    manifest = SupportManifest.from_dict(json.loads(members[MANIFEST]))
    big = manifest.file("logs/big.log")
    assert big is not None and big.truncated and big.original_size == 1 << 30
    assert MAX // 2 < big.size < MAX
    assert manifest.file("logs/app.log").truncated is False  # type: ignore[union-attr]


def test_inspect_verifies_and_flags_the_known_problems(collected, host_key):
    out, _ = collected
    result = invoke("inspect", out, "--key", host_key / "host.pub", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["integrity"] == {"ok": True, "problems": []}
    assert doc["signature"]["valid"] is True and doc["signature"]["signed"] is True
    kinds = {p["kind"] for p in doc["problems"]}
    assert {"smoke-failed", "rollback", "license-expired", "truncated"} <= kinds, kinds
    smoke = next(p for p in doc["problems"] if p["kind"] == "smoke-failed")
    assert smoke["evidence"] == "reports/02-upgrade-failed.json"
    assert "E_PROFILE_NOT_FOUND" in smoke["message"]
    rolled = [p for p in doc["problems"] if p["kind"] == "rollback"]
    assert {p["evidence"] for p in rolled} == {"status.json", "reports/01-rollback.json"}
    assert any("(0.2.0) is newer than the current one (0.1.0)" in p["message"] for p in rolled)
    human = invoke("inspect", out)
    assert human.exit_code == 0 and "license-expired" in human.output


def test_inspect_wants_the_expected_host_key(collected, host_key):
    out, _ = collected
    result = invoke("inspect", out, "--key", host_key / "other.pub", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["signature"]["valid"] is False
    assert doc["error"]["code"] == "E_SUPPORT_TAMPERED"
    assert "not by the expected host key" in doc["error"]["message"]


def test_a_tampered_file_is_flagged(collected, tmp_path):
    out, _ = collected
    _, members, order = untar(out)
    bad = tmp_path / "tampered.tar.zst"
    retar(bad, [(n, members[n].replace(b"0.1.0", b"9.9.9") if n == "status.json"
                 else members[n]) for n in order])
    result = invoke("inspect", bad, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["signature"]["valid"] is True
    assert doc["integrity"]["problems"][0].startswith("status.json was changed (sha256 ")
    assert doc["error"]["code"] == "E_SUPPORT_TAMPERED"
    # The changed status.json is not evidence: no rollback is read from it.
    assert "status.json" not in {p["evidence"] for p in doc["problems"]}


def test_a_tampered_manifest_breaks_the_signature(collected, tmp_path):
    out, _ = collected
    _, members, order = untar(out)
    manifest = json.loads(members[MANIFEST])
    manifest["notes"].append("nothing to see here")
    bad = tmp_path / "tampered.tar.zst"
    retar(bad, [(n, json.dumps(manifest).encode() if n == MANIFEST else members[n])
                for n in order])
    doc = json.loads(invoke("inspect", bad, "--json").stdout)
    assert doc["integrity"]["ok"] is True and doc["signature"]["valid"] is False
    assert doc["error"]["message"] == "the signature covers another manifest than the one here"
    dropped = tmp_path / "dropped.tar.zst"
    retar(dropped, [(n, members[n]) for n in order if n != "disk.json"]
          + [("extra.txt", b"x")])
    doc = json.loads(invoke("inspect", dropped, "--json").stdout)
    assert doc["integrity"]["problems"] == ["disk.json is listed in the manifest but missing",
                                            "extra.txt is not listed in the manifest"]


def test_an_unsigned_bundle_with_an_expected_key(site, host_key, tmp_path):
    out = tmp_path / "s.tar.zst"
    collect(site["prefix"], out, CollectOptions(state_path=tmp_path / "state.json"))
    assert inspect(out).ok and not inspect(out).signed
    report = inspect(out, _public(host_key / "host.pub"))
    assert not report.ok
    assert report.signature_problem == "the bundle is not signed, and a host key was expected"


def _public(path: Path):
    from oemkit.crypto.keys import load_public_file

    return load_public_file(path)


def test_dry_run_writes_nothing(site, tmp_path):
    out = tmp_path / "out" / "support.tar.zst"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke("collect", "--prefix", site["prefix"], "--out", out, "--dry-run",
                    "--logs", site["logs"], "--state", tmp_path / "state.json")
    assert result.exit_code == 0, result.output
    assert "Would collect" in result.output and "big.log" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not out.parent.exists()
    doc = json.loads(invoke("collect", "--prefix", site["prefix"], "--dry-run", "--json",
                            "--state", tmp_path / "state.json").stdout)
    assert doc["dry_run"] is True and doc["out"] is None and doc["size"] is None
    assert {"status.json", "history.json", "disk.json"} <= {f["path"] for f in
                                                           doc["manifest"]["files"]}


def test_collect_refuses_bad_input(site, tmp_path):
    cases = [
        (["--redact", "("], 2, "E_USAGE", "--redact '(' is not a regular expression: "
                                          "missing ), unterminated subpattern at position 0"),
        (["--redact", "x*"], 2, "E_USAGE", "--redact 'x*' matches the empty string"),
        (["--max-size", "1000"], 2, "E_USAGE", "--max-size 1000 is under 1048576 bytes (1 MiB)"),
        (["--url", "https://127.0.0.1:1"], 2, "E_USAGE",
         "--url 'https://127.0.0.1:1' is not http://HOST:PORT"),
    ]
    for extra, code, error, message in cases:
        result = invoke("collect", "--prefix", site["prefix"], "--out", tmp_path / "s.tar.zst",
                        "--state", tmp_path / "state.json", *extra, "--json")
        assert result.exit_code == code, result.output
        got = json.loads(result.stdout)["error"]
        assert (got["code"], got["message"]) == (error, message)
        assert not (tmp_path / "s.tar.zst").exists()
    missing = invoke("collect", "--prefix", tmp_path / "nothing", "--out", tmp_path / "s",
                     "--json")
    assert missing.exit_code == 3
    assert json.loads(missing.stdout)["error"]["code"] == "E_NOT_INSTALLED"
    (tmp_path / "exists").write_text("x")
    with pytest.raises(InputError) as exc:
        collect(site["prefix"], tmp_path / "exists")
    assert (exc.value.code, exc.value.message) == ("E_OUTPUT_EXISTS",
                                                   f"{tmp_path / 'exists'} already exists")
    with pytest.raises(UsageError) as usage:
        collect(site["prefix"], None)
    assert usage.value.message == "oemkit support collect needs --out FILE (or --dry-run)"


def test_inspect_refuses_what_is_not_a_support_bundle(tmp_path):
    plain = tmp_path / "x.tar.zst"
    plain.write_bytes(b"not zstd at all")
    result = invoke("inspect", plain, "--json")
    assert result.exit_code == 3
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_SUPPORT_INVALID"
    assert error["message"].startswith(f"{plain} is not an oemkit support bundle: ")
    retar(plain, [("status.json", b"{}")])
    error = json.loads(invoke("inspect", plain, "--json").stdout)["error"]
    assert error["message"] == (f"{plain} is not an oemkit support bundle: its first member "
                                "is 'status.json', not oemkit-support.json")


# --------------------------------------------------------------------------- pure parts


def test_redact_config_follows_the_schema():
    schema = {
        "$defs": {"pw": {"type": "string", "writeOnly": True}},
        "type": "object",
        "properties": {
            "token": {"type": "string", "x-oemkit-secret": True},
            "db": {"allOf": [{"properties": {"password": {"$ref": "#/$defs/pw"}}}]},
            "keys": {"type": "array", "items": {"x-oemkit-secret": True}},
            "pair": {"prefixItems": [{"type": "string"}, {"writeOnly": True}]},
            "plain": {"type": "string", "writeOnly": False},
        },
        "patternProperties": {"^secret_": {"x-oemkit-secret": True}},
        "additionalProperties": {"type": "object",
                                 "properties": {"key": {"x-oemkit-secret": True}}},
    }
    config = {"token": "t0ken", "db": {"password": "pw1", "host": "db"},
              "keys": ["k1", "k2"], "pair": ["name", "value"], "plain": "p",
              "secret_x": {"nested": "deep"}, "other": {"key": "k3", "name": "n"}}
    out = redact_config(config, schema)
    assert out.config == {"token": REDACTED, "db": {"password": REDACTED, "host": "db"},
                          "keys": [REDACTED, REDACTED], "pair": ["name", REDACTED],
                          "plain": "p", "secret_x": REDACTED,
                          "other": {"key": REDACTED, "name": "n"}}
    assert out.paths == ["token", "db.password", "keys[0]", "keys[1]", "pair[1]", "secret_x",
                         "other.key"]
    assert out.values == {"t0ken", "pw1", "k1", "k2", "value", "deep", "k3"}
    assert config["token"] == "t0ken"  # the input is unchanged
    assert secret_fields(schema) == ["*", "*.key", "db.password", "keys[]", "pair[]", "token"]
    whole = redact_config({"a": 1}, {"writeOnly": True})
    assert whole.config == REDACTED and whole.paths == ["$"]


def _manifest(**changes):
    doc = {"format": "oemkit-support/v1", "created": "2026-01-01T00:00:00Z",
           "oemkit_version": "1.0", "prefix": "/opt/x", "max_size": 1 << 20,
           "files": [{"path": "status.json", "size": 2, "sha256": "0" * 64, "source": "s",
                      "truncated": False, "original_size": None, "redactions": 0}],
           "redaction": {"secret_fields": [], "patterns": []}, "notes": []}
    doc.update(changes)
    return doc


def test_the_manifest_is_parsed_strictly():
    assert SupportManifest.from_dict(_manifest()).to_dict() == _manifest()
    f = _manifest()["files"][0]
    cases = [
        (_manifest(format="x"), "the support manifest format is not oemkit-support/v1"),
        (_manifest(extra=1), "the support manifest field manifest has unknown extra field(s)"),
        (_manifest(files=[{**f, "path": "../etc/passwd"}]),
         "the support manifest field files[0].path '../etc/passwd' is not a name collect "
         "writes"),
        (_manifest(files=[f, f]), "the support manifest lists 'status.json' twice"),
        (_manifest(files=[{**f, "sha256": "x"}]),
         "the support manifest field files[0].sha256 is not a valid string"),
        (_manifest(files=[{**f, "size": -1}]),
         "the support manifest field files[0].size is not an integer from 0 to "
         f"{1 << 50}"),
        (_manifest(created="yesterday"),
         "the support manifest field created is not a valid string"),
    ]
    for doc, message in cases:
        with pytest.raises(FormatError) as exc:
            SupportManifest.from_dict(doc)
        assert (exc.value.code, exc.value.message) == ("E_SUPPORT_INVALID", message)


def test_find_problems_disk_damage_and_interrupted_runs():
    gib = 1 << 30
    docs = {
        "disk.json": {"total": 100 * gib, "free": 5 * gib},
        "status.json": {"current": "a", "previous": None, "consistent": False, "slots": [
            {"name": "a", "incomplete": True, "problem": "a/slot.json is missing: the slot "
             "is incomplete", "current": True, "previous": False}]},
        "history.json": {"journal_pending": ["slots/.tmp-abc"]},
        "license/verdicts.json": {"verdicts": [
            {"license": "l1", "verdict": "grace", "grace_days_left": 3},
            {"license": "l2", "verdict": "rejected",
             "error": {"code": "E_HW_MISMATCH", "message": "other host"}}]},
        "reports/01-smoke.json": {"ok": False, "profile": {}, "checks": [
            {"name": "golden", "status": "fail", "code": "E_GOLDEN_MISMATCH",
             "detail": "output 0 differs"}]},
    }
    got = [(p.kind, p.severity, p.evidence) for p in find_problems(docs)]
    assert got == [
        ("license-invalid", "error", "license/verdicts.json"),
        ("slot-damaged", "error", "status.json"),
        ("slot-damaged", "error", "status.json"),
        ("smoke-failed", "error", "reports/01-smoke.json"),
        ("disk-nearly-full", "warn", "disk.json"),
        ("interrupted", "warn", "history.json"),
        ("license-grace", "warn", "license/verdicts.json"),
    ]
    assert find_problems({"disk.json": {"total": 100 * gib, "free": 50 * gib}}) == []
    full = find_problems({"disk.json": {"total": 100 * gib, "free": gib // 2}})
    assert [(p.kind, p.severity) for p in full] == [("disk-nearly-full", "error")]


def test_install_keeps_only_the_newest_reports(tmp_path):
    from oemkit.host.install import InstallReport, keep_report
    from oemkit.host.prefix import KEEP_REPORTS, scan

    prefix = tmp_path / "opt"
    prefix.mkdir()
    for i in range(KEEP_REPORTS + 5):
        keep_report(prefix, InstallReport("upgrade", str(prefix), slot=f"s{i}"))
    names = sorted(p.name for p in (prefix / "reports").iterdir())
    assert len(names) == KEEP_REPORTS
    assert names[0] == "000006-upgrade.json" and names[-1] == "000025-upgrade.json"
    assert json.loads((prefix / "reports" / names[-1]).read_text())["slot"] == "s24"
    assert scan(prefix).exists  # reports/ is part of an oemkit prefix: its layout check passes


def test_collect_carries_the_usage_state_and_inspect_flags_unsaved_counts(site, tmp_path):
    """A host that meters usage: the usage state's totals (no salt) and the unsaved files a
    shutdown left go in license/usage.json; inspect names what waits and a damaged file."""
    import datetime as dt

    from oemkit.host.usage import add_counts, save_unsaved, usage_path

    state = tmp_path / "state.json"
    day = (dt.date(2026, 3, 1) - dt.date(1970, 1, 1)).days
    now = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
    add_counts(state, "example", {("acme-example", day, "infer"): [7, 14]},
               {"acme-example": "ab" * 32}, now)
    save_unsaved(state, "example", {("acme-example", day, "infer"): [3, 3]}, {})
    out = tmp_path / "support.tar.zst"
    result = invoke("collect", "--prefix", site["prefix"], "--out", out, "--state", state,
                    "--json", env=ENV)
    assert result.exit_code == 0, result.output
    _, members, _ = untar(out)
    usage = json.loads(members["license/usage.json"])
    assert usage["present"] is True and "error" not in usage
    assert usage["licenses"] == {"acme-example": {
        "seq": 0, "reported_until": None, "first": "2026-03-01T00:00:00Z",
        "unreported_requests": 7, "unreported_rows": 14, "days": 1,
        "from_day": "2026-03-01", "to_day": "2026-03-01", "salt_known": True}}
    assert [u["requests"] for u in usage["unsaved"]] == [3]
    assert "ab" * 32 not in members["license/usage.json"].decode()
    doc = json.loads(invoke("inspect", out, "--json").stdout)
    [waiting] = [p for p in doc["problems"] if p["kind"] == "usage-unsaved"]
    assert waiting["message"] == (
        "1 unsaved usage file(s) with 3 metered request(s) wait beside the usage state: a "
        "shutdown could not write them; the next flush or report adds them once the state is "
        "usable")
    # a damaged usage state is an error of its own
    usage_path(state).write_text("{not json")
    result = invoke("collect", "--prefix", site["prefix"], "--out", tmp_path / "2.tar.zst",
                    "--state", state, env=ENV)
    assert result.exit_code == 0, result.output
    doc = json.loads(invoke("inspect", tmp_path / "2.tar.zst", "--json").stdout)
    [damaged] = [p for p in doc["problems"] if p["kind"] == "usage-state-damaged"]
    assert damaged["severity"] == "error" and damaged["evidence"] == "license/usage.json"
    assert damaged["message"].startswith("the usage state cannot be used: E_USAGE_STATE: the "
                                         f"usage state {usage_path(state)} is not usable: ")


def test_a_host_that_meters_nothing_collects_no_usage_file(site, tmp_path):
    result = invoke("collect", "--prefix", site["prefix"], "--dry-run", "--json", "--state",
                    tmp_path / "state.json")
    assert result.exit_code == 0, result.output
    paths = {f["path"] for f in json.loads(result.stdout)["manifest"]["files"]}
    assert "license/usage.json" not in paths and "license/state.json" in paths


def _fake_journalctl(folder: Path, body: str, status: int = 0) -> Path:
    """A journalctl on PATH that records its arguments and prints ``body``."""
    folder.mkdir()
    script = folder / "journalctl"
    script.write_text("#!/bin/sh\n"
                      f"printf '%s\\n' \"$@\" > {folder / 'args'}\n"
                      f"cat <<'EOF'\n{body}EOF\n"
                      f"exit {status}\n")
    script.chmod(0o755)
    return folder


def test_the_service_journal_is_collected_where_systemd_runs(site, tmp_path, monkeypatch):
    """systemd is simulated (its run directory test, and journalctl on PATH): the unit's
    journal goes in as a log, redacted like any other; a journalctl that fails is noted."""
    import os

    import oemkit.host.support as support

    fake = _fake_journalctl(tmp_path / "bin", "2026-12-08T01:00:00+0000 host oemkit[1]: ready\n"
                            f"2026-12-08T01:00:01+0000 host oemkit[1]: token {SECRET}\n")
    monkeypatch.setattr(support, "systemd_running", lambda: True)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "s.tar.zst"
    result = invoke("collect", "--prefix", site["prefix"], "--out", out, "--state",
                    tmp_path / "state.json", "--redact", SECRET, "--json")
    assert result.exit_code == 0, result.output
    _, members, _ = untar(out)
    [journal] = [n for n in members if n.startswith("logs/journal-")]
    assert journal == "logs/journal-oemkit-example.service.txt"
    assert b"oemkit[1]: ready" in members[journal] and SECRET.encode() not in members[journal]
    args = (fake / "args").read_text().split()
    assert args[:2] == ["-u", "oemkit-example.service"] and "--no-pager" in args
    assert args[args.index("-n") + 1] == "10000"  # JOURNAL_LINES
    failing = _fake_journalctl(tmp_path / "bin2", "", status=1)
    monkeypatch.setenv("PATH", f"{failing}{os.pathsep}{os.environ['PATH']}")
    result = invoke("collect", "--prefix", site["prefix"], "--dry-run", "--json", "--state",
                    tmp_path / "state.json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert not any(f["path"].startswith("logs/journal-") for f in doc["manifest"]["files"])
    assert any("journalctl -u oemkit-example.service failed (exit 1)" in n
               for n in doc["manifest"]["notes"])
