"""Usage metering for billing (docs/USAGE.md): the ``metering`` claim, the counting store
(restarts, several processes, a clock set back, kill -9 of a real server), and the signed
report a vendor verifies (replayed, reordered, edited and foreign reports refused)."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import oemkit.license
from helpers import EXAMPLE
from oemkit.cli import app
from oemkit.crypto.keys import generate, load_private, private_pem, public_pem
from oemkit.errors import FormatError, VerificationError
from oemkit.host.license_state import fingerprint
from oemkit.host.usage import UsageMeter, make_report, read_usage, usage_path
from oemkit.models.license import LicenseClaims
from oemkit.models.usage import Ledger, verify_report
from oemkit.release.trust import add_key
from oemkit.verify.trust import parse_root

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]

UTC = dt.timezone.utc
DAY = 86400
HOST = {"machine-id": ["0123456789abcdef"], "mac": ["02:00:00:00:00:01"]}
OTHER_HOST = {"machine-id": ["fedcba9876543210"], "mac": ["02:00:00:00:00:02"]}
SALT = "ab" * 32
runner = CliRunner()
X = np.asarray(json.loads((EXAMPLE / "golden" / "inputs.json").read_text())["x"]["data"],
               dtype=np.float32).reshape(-1, 4)


def _at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def host_key(tmp_path):
    info = load_private(private_pem(generate("ed25519"), None), None, "host.key")
    path = tmp_path / "host.key"
    path.write_bytes(private_pem(info.private, None))
    pub = tmp_path / "host.pub"
    pub.write_text(public_pem(info.public))
    return info, path, pub


@pytest.fixture
def fp_file(tmp_path):
    path = tmp_path / "acme.fp"
    path.write_text(json.dumps(fingerprint(HOST, salt=SALT)))
    return path


def _by_feature(state: Path, lid: str = "acme-example") -> dict[tuple[str, str], list[int]]:
    """The counts per (model, feature), summed over days: what a test of counts made now
    compares, whatever UTC day the run falls on (or across)."""
    out: dict[tuple[str, str], list[int]] = {}
    for (_, model, feature), (requests, rows) in _counts(state, lid).items():
        entry = out.setdefault((model, feature), [0, 0])
        entry[0] += requests
        entry[1] += rows
    return out


def _counts(state: Path, lid: str = "acme-example") -> dict[tuple[str, str, str], list[int]]:
    u = read_usage(state).licenses[lid]
    return {((dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat(), m, f): v
            for (d, m, f), v in u.model_counts.items()}


# --------------------------------------------------------------------------- the claim


def test_metering_claim_is_optional_strict_and_written_only_when_true(keys):
    common = {"key": keys["license"], "issuer": "license", "customer": "acme",
              "customer_name": "ACME", "product": "example", "expires": "2099-01-01",
              "issued_at": "2026-01-01T00:00:00Z"}
    plain, _ = oemkit.license.read_claims(oemkit.license.issue(**common))
    metered, _ = oemkit.license.read_claims(oemkit.license.issue(**common, metering=True))
    assert plain.metering is False and "metering" not in plain.to_dict()
    assert metered.metering is True and metered.to_dict()["metering"] is True
    for bad in (1, 0, "yes", None, [True]):
        with pytest.raises(FormatError) as exc:
            LicenseClaims.from_dict({**metered.to_dict(), "metering": bad})
        assert (exc.value.code, exc.value.message) == (
            "E_CLAIMS_INVALID", "license claims: metering must be true or false")


def test_license_issue_metering_option(keys, tmp_path, monkeypatch):
    from helpers import KEYS, PASSPHRASE

    monkeypatch.setenv("OEMKIT_KEY_PASSPHRASE", PASSPHRASE.decode())
    out = tmp_path / "m.lic"
    result = runner.invoke(app, [
        "license", "issue", "--key", str(KEYS / "license.key"), "--customer", "acme",
        "--customer-name", "ACME", "--product", "example", "--expires", "2099-01-01",
        "--metering", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["claims"]["metering"] is True
    assert oemkit.license.read_claims(out.read_bytes())[0].metering is True


# --------------------------------------------------------------------------- the store


def test_counts_survive_a_restart_and_a_failed_flush_keeps_them(tmp_path):
    state = tmp_path / "state.json"
    clock = [_at("2026-03-01T10:00:00")]
    meter = UsageMeter(state, "example", clock=lambda: clock[0])
    meter.count(1)  # before any license says metering: nothing is counted
    meter.activate("acme-example", None)
    for _ in range(3):
        meter.count(4, ("classification",))
    meter.flush()
    # a new runtime (restart) counts on top of what is on disk
    again = UsageMeter(state, "example", clock=lambda: clock[0])
    again.activate("acme-example", None)
    again.count(2)
    again.flush()
    assert _counts(state) == {("2026-03-01", "example", "infer"): [4, 14],
                              ("2026-03-01", "example", "classification"): [3, 12]}
    assert oct(usage_path(state).stat().st_mode & 0o777) == "0o600"
    # a file that cannot be read: the counts stay in memory for the next flush
    usage_path(state).write_text("{not json")
    again.count(1)
    with pytest.raises(Exception) as exc:
        again.flush()
    assert exc.value.code == "E_USAGE_STATE"
    assert again.pending == {("acme-example", int(clock[0] // DAY), "infer"): [1, 1]}


def _worker(state: str, n: int) -> None:
    meter = UsageMeter(Path(state), "example")
    meter.activate("acme-example", None)
    for i in range(n):
        meter.count(1)
        if i % 10 == 9:
            meter.flush()
    meter.flush()


def run_workers(state: Path, n: int, workers: int = 4) -> list[int | None]:
    """``workers`` forked processes each counting ``n`` inferences into ``state`` and
    flushing every 10; their exit codes."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(state), n)) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return [p.exitcode for p in procs]


def test_several_worker_processes_lose_no_count(tmp_path):
    state = tmp_path / "state.json"
    assert run_workers(state, 200) == [0, 0, 0, 0]
    assert sum(v[0] for v in _counts(state).values()) == 800


def test_a_clock_set_back_never_reopens_a_day(tmp_path, host_key, fp_file):
    state = tmp_path / "state.json"
    clock = [_at("2026-03-10T12:00:00")]
    meter = UsageMeter(state, "example", clock=lambda: clock[0])
    meter.activate("acme-example", None)
    meter.count(1)
    meter.flush()
    clock[0] = _at("2026-03-02T08:00:00")  # set back 8 days, in the same process
    meter.count(1)
    meter.flush()
    # and across a restart (the file remembers the high-water mark)
    later = UsageMeter(state, "example", clock=lambda: clock[0])
    later.activate("acme-example", None)
    later.flush()  # reads the floor
    later.count(1)
    later.flush()
    assert _counts(state) == {("2026-03-10", "example", "infer"): [3, 3]}
    assert read_usage(state).last_seen == _when("2026-03-10T12:00:00")
    # a report closes the period; a count still pending for a closed day goes to the
    # first open one, and the report's period never ends before what it counted
    stale = UsageMeter(state, "example", clock=lambda: _at("2026-03-09T23:59:00"))
    stale.activate("acme-example", None)
    stale.count(5)
    made = make_report(state, host_key[0], tmp_path / "1.oemu", salt=SALT, host=HOST,
                       now=_when("2026-03-02T09:00:00"))
    assert made.report.period_end == _when("2026-03-10T12:00:00")
    assert [(c.day, c.requests) for c in made.report.counts] == [("2026-03-10", 3)]
    make_report_again = read_usage(state).licenses["acme-example"]
    assert make_report_again.model_counts == {} and make_report_again.seq == 1
    clock[0] = _at("2026-03-12T10:00:00")
    stale.flush()
    assert _counts(state) == {("2026-03-10", "example", "infer"): [1, 5]}


# --------------------------------------------------------------------------- reports


def _report(tmp_path, host_key, n: int, when: str, name: str) -> Path:
    state = tmp_path / "state.json"
    meter = UsageMeter(state, "example", clock=lambda: _at(when))
    meter.activate("acme-example", SALT)
    for _ in range(n):
        meter.count(2)
    meter.flush()
    out = tmp_path / name
    make_report(state, host_key[0], out, host=HOST, now=_when(when))
    return out


def _code(call) -> tuple[str, str]:
    with pytest.raises(VerificationError) as exc:
        call()
    return exc.value.code, exc.value.message


def test_reports_chain_and_replayed_reordered_edited_foreign_ones_are_refused(
        tmp_path, host_key, fp_file):
    fp = json.loads(fp_file.read_text())
    r1 = _report(tmp_path, host_key, 3, "2026-04-01T10:00:00", "1.oemu")
    r2 = _report(tmp_path, host_key, 5, "2026-04-02T10:00:00", "2.oemu")
    r3 = _report(tmp_path, host_key, 1, "2026-04-03T10:00:00", "3.oemu")
    first = verify_report(r1.read_bytes(), fingerprint=fp)
    assert first.report.seq == 1 and first.report.prev is None
    assert first.report.totals == {"infer": {"requests": 3, "rows": 6}}
    assert (first.matched, first.of) == (2, 2)
    ledger = Ledger().record(first)
    # replayed
    assert _code(lambda: verify_report(r1.read_bytes(), fingerprint=fp, ledger=ledger)) == (
        "E_USAGE_REPLAY", "usage report has sequence number 1, and report 1 of license "
        "acme-example was already accepted: a replayed or older report")
    assert _code(lambda: verify_report(r1.read_bytes(), fingerprint=fp, last_seq=1))[0] == \
        "E_USAGE_REPLAY"
    # reordered: 3 before 2
    assert _code(lambda: verify_report(r3.read_bytes(), fingerprint=fp, ledger=ledger)) == (
        "E_USAGE_GAP", "usage report has sequence number 3, but the next report of license "
        "acme-example is 2: 1 report(s) are missing or arrive out of order")
    second = verify_report(r2.read_bytes(), fingerprint=fp, ledger=ledger)
    assert second.report.prev == first.digest
    assert second.report.period_start == first.report.period_end
    ledger = ledger.record(second)
    assert verify_report(r3.read_bytes(), fingerprint=fp, ledger=ledger).report.seq == 3
    assert Ledger.from_bytes(ledger.to_bytes()) == ledger
    # edited: one count changed inside the signed payload
    text = r2.read_text().splitlines()
    envelope = json.loads(base64.b64decode("".join(text[1:-1])))
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["counts"][0]["requests"] = 1
    payload["totals"]["infer"]["requests"] = 1
    from oemkit._canonical import canonical_json
    from oemkit.crypto.armor import armor

    envelope["payload"] = base64.b64encode(canonical_json(payload)).decode()
    edited = armor("OEMKIT USAGE REPORT", json.dumps(envelope).encode())
    assert _code(lambda: verify_report(edited, fingerprint=fp)) == (
        "E_USAGE_SIG_INVALID", "usage report: the signature does not verify over the "
        "report's bytes: it was edited after it was signed, or signed by another key")
    # another host's fingerprint (another salt), and the same salt on other hardware
    other = fingerprint(OTHER_HOST)
    code, message = _code(lambda: verify_report(r2.read_bytes(), fingerprint=other))
    assert code == "E_USAGE_FINGERPRINT" and "does not come from that host" in message
    same_salt = fingerprint(OTHER_HOST, salt=SALT)
    assert _code(lambda: verify_report(r2.read_bytes(), fingerprint=same_salt)) == (
        "E_USAGE_FINGERPRINT", "usage report: 0 of the fingerprint's 2 components are on "
        "the reporting host, 2 are needed")
    # another host key: pinned, or not the one the ledger holds
    stranger = load_private(private_pem(generate("ed25519"), None), None, "x")
    code, _ = _code(lambda: verify_report(r2.read_bytes(), fingerprint=fp,
                                          host_key=stranger.public))
    assert code == "E_USAGE_KEY"
    forged_ledger = Ledger({"acme-example": ledger.entries["acme-example"].__class__(
        1, first.digest, first.report.period_end, stranger.keyid)})
    assert _code(lambda: verify_report(r2.read_bytes(), fingerprint=fp,
                                       ledger=forged_ledger))[0] == "E_USAGE_KEY"
    # a chain from elsewhere: the right sequence, not the accepted predecessor
    fork = Ledger({"acme-example": ledger.entries["acme-example"].__class__(
        1, "sha256:" + "0" * 64, first.report.period_end, first.keyid)})
    assert _code(lambda: verify_report(r2.read_bytes(), fingerprint=fp, ledger=fork))[0] == \
        "E_USAGE_CHAIN"


def test_report_needs_a_salt_and_metered_data(tmp_path, host_key):
    state = tmp_path / "state.json"
    with pytest.raises(Exception) as exc:
        make_report(state, host_key[0], tmp_path / "x.oemu", host=HOST)
    assert (exc.value.code, exc.value.message) == ("E_USAGE_NO_DATA",
                                                   "nothing was metered on this host yet")
    meter = UsageMeter(state, "example")
    meter.activate("acme-example", None)
    meter.count(1)
    meter.flush()
    with pytest.raises(Exception) as exc:
        make_report(state, host_key[0], tmp_path / "x.oemu", host=HOST)
    assert exc.value.code == "E_USAGE" and "has no hardware binding" in exc.value.message
    assert not (tmp_path / "x.oemu").exists()


# --------------------------------------------------------------------------- the runtime


@pytest.fixture
def license_root(keys, trust_v2, tmp_path):
    v3 = add_key(parse_root(trust_v2), keys["license"].public, ["license"], [keys["root"]],
                 name="license")
    path = tmp_path / "trust-v3.json"
    path.write_bytes(v3)
    return path


def _metered_license(keys, path: Path, *, metering: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(oemkit.license.issue(
        key=keys["license"], issuer="license", customer="acme", customer_name="ACME",
        product="example", expires="2099-01-01T00:00:00Z", metering=metering,
        issued_at=dt.datetime(2026, 1, 1, tzinfo=UTC)))
    return path


def _body(x: np.ndarray = X, **extra) -> dict:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                        "data": x.ravel().tolist()}], **extra}


def test_the_runtime_counts_infer_and_classification_and_flushes_at_shutdown(
        signed_bundle, license_root, keys, tmp_path):
    from starlette.testclient import TestClient

    from oemkit.serve.model import SessionSettings
    from oemkit.serve.runtime import Settings
    from oemkit.serve.server import build_runtime, worker_app
    from oemkit.serve.target import open_bundle

    state = tmp_path / "state.json"
    plain = _metered_license(keys, tmp_path / "plain.lic", metering=False)
    opened = open_bundle(signed_bundle, license_root, licenses=[plain], state_path=state)
    try:
        runtime = build_runtime(opened.source, Settings(session=SessionSettings()))
        assert runtime.meter is None  # a license without metering: nothing is counted
        lic = _metered_license(keys, tmp_path / "m.lic")
        opened.source.license_files = [lic]
        with TestClient(worker_app(runtime)) as client:
            runtime.check_license()
            assert runtime.meter is not None
            assert client.post("/v2/models/example/infer", json=_body()).status_code == 200
            body = _body(outputs=[{"name": "y", "parameters": {"classification": 1}}])
            assert client.post("/v2/models/example/infer", json=body).status_code == 200
            assert client.post("/v2/models/nope/infer", json=_body()).status_code == 404
        rows = X.shape[0]
        assert _by_feature(state) == {("example", "infer"): [2, 2 * rows],
                                      ("example", "classification"): [1, rows]}
    finally:
        opened.close()


class Server:
    """``oemkit serve PREFIX`` in a child process, flushing usage every 0.1 s."""

    def __init__(self, prefix: Path, tmp: Path, state: Path) -> None:
        self.port_file = tmp / f"port-{time.monotonic_ns()}"
        self.log = (tmp / f"serve-{time.monotonic_ns()}.log").open("wb")
        env = {**os.environ, "OEMKIT_STATE": str(state), "OEMKIT_USAGE_FLUSH_S": "0.1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oemkit", "serve", str(prefix), "--workers", "1",
             "--port", "0", "--port-file", str(self.port_file), "--state", str(state)],
            stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        deadline = time.monotonic() + 60
        while not self.port_file.exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                Path(self.log.name).read_text()
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        self.port_file.unlink()
        while self.ready() != 200:
            assert time.monotonic() < deadline, Path(self.log.name).read_text()
            time.sleep(0.05)

    def ready(self) -> int:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("GET", "/v2/health/ready")
            return conn.getresponse().status
        except OSError:
            return 0

    def infer(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("POST", "/v2/models/example/infer", json.dumps(_body()),
                     {"Content-Type": "application/json"})
        res = conn.getresponse()
        res.read()
        return res.status


def _requests(state: Path) -> int:
    if not usage_path(state).exists():
        return 0
    return sum(v[0] for k, v in _counts(state).items() if k[2] == "infer")


def installed_metered(bundle: Path, root: Path, keys, tmp_path: Path) -> tuple[Path, Path]:
    """The prefix and state file of `oemkit install` (a real process) of ``bundle``, with
    a metering license in PREFIX/licenses."""
    prefix, state = tmp_path / "opt", tmp_path / "state.json"
    installed = subprocess.run(
        [sys.executable, "-m", "oemkit", "install", str(bundle), "--prefix", str(prefix),
         "--trust", str(root), "--skip-smoke", "--service", "none", "--state", str(state)],
        capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    _metered_license(keys, prefix / "licenses" / "acme.lic")
    return prefix, state


def test_counts_survive_kill_9_and_a_restart_of_the_real_server_then_bill_once(
        signed_bundle, license_root, keys, tmp_path, host_key, monkeypatch):
    from oemkit.host.license_state import collect_host

    fp_file = tmp_path / "this-host.fp"  # what the customer sent when buying
    fp_file.write_text(json.dumps(fingerprint(collect_host())))
    prefix, state = installed_metered(signed_bundle, license_root, keys, tmp_path)
    server = Server(prefix, tmp_path, state)
    try:
        assert [server.infer() for _ in range(5)] == [200] * 5
        deadline = time.monotonic() + 30
        while _requests(state) < 5:  # the 0.1 s flush
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
    assert _requests(state) == 5
    server = Server(prefix, tmp_path, state)
    try:
        assert [server.infer() for _ in range(3)] == [200] * 3
    finally:
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
    assert _requests(state) == 8  # the last ones were flushed at SIGTERM

    monkeypatch.setenv("OEMKIT_STATE", str(state))
    out, ledger = tmp_path / "usage-1.oemu", tmp_path / "acme.ledger"
    made = runner.invoke(app, ["usage", "report", "--prefix", str(prefix), "--key",
                                     str(host_key[1]), "--fingerprint", str(fp_file), "--out",
                                     str(out), "--json"])
    assert made.exit_code == 0, made.output
    doc = json.loads(made.stdout)
    assert (doc["seq"], doc["license_id"], doc["totals"]["infer"]["requests"]) == (
        1, "acme-example", 8)
    args = ["verify", str(out), "--fingerprint", str(fp_file), "--host-key", str(host_key[2]),
            "--ledger", str(ledger), "--record", "--json"]
    ok = runner.invoke(app, ["usage", *args])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["report"]["seq"] == 1 and ledger.exists()
    again = runner.invoke(app, ["usage", *args])
    assert again.exit_code == 1
    assert json.loads(again.stdout)["error"]["code"] == "E_USAGE_REPLAY"
    # nothing is counted twice: the next report starts empty
    assert read_usage(state).licenses["acme-example"].model_counts == {}


def test_a_report_holds_at_most_max_counts_rows_and_leaves_later_days(tmp_path, host_key,
                                                                      fp_file):
    from oemkit.models.usage import MAX_COUNTS

    state = tmp_path / "state.json"
    features = [f"f{i}" for i in range(MAX_COUNTS // 2 + 10)]
    for when in ("2026-05-01T10:00:00", "2026-05-02T10:00:00"):
        meter = UsageMeter(state, "example", clock=lambda when=when: _at(when))
        meter.activate("acme-example", SALT)
        meter.count(1, features)
        meter.flush()
    fp = json.loads(fp_file.read_text())
    one = make_report(state, host_key[0], tmp_path / "1.oemu", host=HOST,
                      now=_when("2026-05-02T11:00:00"))
    assert {c.day for c in one.report.counts} == {"2026-05-01"}
    assert one.report.period_end == _when("2026-05-02T00:00:00")
    two = make_report(state, host_key[0], tmp_path / "2.oemu", host=HOST,
                      now=_when("2026-05-02T11:00:00"))
    assert {c.day for c in two.report.counts} == {"2026-05-02"}
    ledger = Ledger().record(verify_report(one.data, fingerprint=fp))
    assert verify_report(two.data, fingerprint=fp, ledger=ledger).report.totals["infer"] == {
        "requests": 1, "rows": 1}
    assert len(one.data) < 64 << 10
