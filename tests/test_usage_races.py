"""The usage meter's rare races (docs/USAGE.md, "When a flush fails"): a shutdown flush
that cannot write keeps its counts in an unsaved file, added once by the next flush or
report; shutdown waits for a periodic write in flight instead of cancelling it; and a
license check puts its result in force on the event loop, never racing the flush that
takes the meter's counts and salts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import signal
import threading
import time
from pathlib import Path

import pytest

import test_usage
from oemkit.errors import EnvironmentProblem
from oemkit.host.usage import (
    UsageMeter,
    add_counts,
    make_report,
    parse_unsaved,
    read_usage,
    save_unsaved,
    unsaved_files,
    usage_path,
)
from test_usage import HOST, SALT, X, _body, _by_feature, _counts, _metered_license

host_key = test_usage.host_key  # fixtures shared with test_usage
license_root = test_usage.license_root

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]
UTC = dt.timezone.utc
DAY = 86400
NOW = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
LID = "acme-example"


def _pending(day: str, requests: int, rows: int) -> dict:
    n = (dt.date.fromisoformat(day) - dt.date(1970, 1, 1)).days
    return {(LID, n, "infer"): [requests, rows]}


@pytest.fixture
def served(signed_bundle, license_root, keys, tmp_path):
    """A metered runtime over the example bundle, and its state file."""
    from oemkit.serve.model import SessionSettings
    from oemkit.serve.runtime import Settings
    from oemkit.serve.server import build_runtime
    from oemkit.serve.target import open_bundle

    state = tmp_path / "state.json"
    lic = _metered_license(keys, tmp_path / "m.lic")
    opened = open_bundle(signed_bundle, license_root, licenses=[lic], state_path=state)
    try:
        runtime = build_runtime(opened.source, Settings(session=SessionSettings()))
        assert runtime.meter is not None
        yield runtime, state, opened
    finally:
        opened.close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def serve_log():
    """What the runtime logs (its logger may not propagate: setup_logging turns that off)."""
    logger = logging.getLogger("oemkit.serve")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def _infer(client, n: int) -> None:
    for _ in range(n):
        assert client.post("/v2/models/example/infer", json=_body()).status_code == 200


# --------------------------------------------------------------------------- unsaved counts


def test_a_shutdown_that_cannot_write_keeps_the_counts_and_the_next_flush_adds_them(
        served, serve_log):
    from starlette.testclient import TestClient

    from oemkit.serve.server import worker_app

    runtime, state, _ = served
    with TestClient(worker_app(runtime)) as client:
        _infer(client, 3)
        usage_path(state).mkdir()  # the usage state cannot be read: E_USAGE_STATE
    [kept] = unsaved_files(state)
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    doc = json.loads(kept.read_text())
    assert doc["type"] == "oemkit-usage-unsaved/v1" and doc["model"] == "example"
    assert [(c["feature"], c["requests"], c["rows"]) for c in doc["counts"]] == [
        ("infer", 3, 3 * X.shape[0])]
    warned = [r for r in serve_log if "usage counts not written" in r.getMessage()]
    assert warned and str(kept) in warned[0].getMessage()
    assert warned[0].fields["code"] == "E_USAGE_STATE"
    # the usage state is usable again: the next flush adds the kept counts, once
    usage_path(state).rmdir()
    meter = UsageMeter(state, "example")
    meter.activate(LID, None)
    meter.count(1)
    meter.flush()
    assert _by_feature(state) == {("example", "infer"): [4, 3 * X.shape[0] + 1]}
    assert unsaved_files(state) == []
    meter.count(1)
    meter.flush()
    assert _by_feature(state)[("example", "infer")][0] == 5
    assert read_usage(state).merged == []  # the name is dropped once the file is gone


def test_an_unsaved_file_left_by_a_crash_after_it_was_added_is_not_counted_twice(tmp_path):
    state = tmp_path / "state.json"
    kept = save_unsaved(state, "example", _pending("2026-03-01", 5, 10), {LID: SALT})
    copy = kept.read_bytes()
    add_counts(state, "example", {}, {}, NOW)
    assert _counts(state) == {("2026-03-01", "example", "infer"): [5, 10]}
    assert read_usage(state).licenses[LID].salt == SALT
    assert read_usage(state).merged == [kept.name] and not kept.exists()
    kept.write_bytes(copy)  # as if oemkit died between writing the state and removing it
    add_counts(state, "example", _pending("2026-03-01", 1, 1), {}, NOW)
    assert _counts(state) == {("2026-03-01", "example", "infer"): [6, 11]}
    assert not kept.exists()


def test_a_report_takes_the_unsaved_counts_too(tmp_path, host_key):
    state = tmp_path / "state.json"
    add_counts(state, "example", _pending("2026-03-01", 2, 2), {LID: SALT}, NOW)
    save_unsaved(state, "example", _pending("2026-03-01", 3, 6), {})
    made = make_report(state, host_key[0], tmp_path / "r.oemu", host=HOST, now=NOW)
    assert [(c.feature, c.requests, c.rows) for c in made.report.counts] == [("infer", 5, 8)]
    assert unsaved_files(state) == [] and read_usage(state).licenses[LID].model_counts == {}


def test_a_damaged_unsaved_file_is_named_and_nothing_is_counted(tmp_path):
    state = tmp_path / "state.json"
    kept = save_unsaved(state, "example", _pending("2026-03-01", 1, 1), {})
    kept.write_text('{"type": "oemkit-usage-unsaved/v1"}')
    with pytest.raises(EnvironmentProblem) as exc:
        add_counts(state, "example", _pending("2026-03-01", 1, 1), {}, NOW)
    assert exc.value.code == "E_USAGE_STATE"
    assert exc.value.message == (f"the unsaved usage counts {kept} are not usable: not an "
                                 "oemkit-usage-unsaved/v1 document; nothing was counted "
                                 "from them")
    assert exc.value.hint == ("move the file away (its counts are then lost) or restore it "
                              "as oemkit wrote it")
    assert not usage_path(state).exists()  # the good counts were not written without it


def test_counts_lost_only_when_nothing_can_be_written_and_the_log_says_how_many(
        served, serve_log, monkeypatch):
    from starlette.testclient import TestClient

    import oemkit.host.usage as usage
    from oemkit.serve.server import worker_app

    runtime, _, _ = served

    def refuse(*_args, **_kw):
        raise EnvironmentProblem("E_WRITE", "disk full", hint="free space")

    with TestClient(worker_app(runtime)) as client:
        _infer(client, 2)
        monkeypatch.setattr(usage, "add_counts", refuse)
        monkeypatch.setattr(usage, "save_unsaved", refuse)
    [lost] = [r for r in serve_log if "usage counts lost" in r.getMessage()]
    assert lost.getMessage() == ("usage counts lost: 2 metered requests were not written "
                                 "(disk full; disk full)")
    assert lost.fields["lost_requests"] == 2


# --------------------------------------------------------------------------- shutdown


def test_shutdown_waits_for_a_flush_in_flight_and_keeps_what_it_failed_to_write(
        served, monkeypatch):
    """A periodic write that fails after shutdown began puts its counts back; shutdown's
    own flush then writes them (before, the write was cancelled and its counts lost)."""
    from starlette.testclient import TestClient

    from oemkit.serve.server import worker_app

    runtime, state, _ = served
    monkeypatch.setenv("OEMKIT_USAGE_FLUSH_S", "0.01")
    real = UsageMeter.write
    started = threading.Event()
    calls: list[int] = []

    def slow_then_fail(self, pending, salts):
        calls.append(sum(v[0] for v in pending.values()))
        if len(calls) == 1:
            started.set()
            deadline = time.monotonic() + 30
            while not runtime.draining and time.monotonic() < deadline:
                time.sleep(0.005)
            raise EnvironmentProblem("E_LOCKED", "the usage state is locked", hint="wait")
        return real(self, pending, salts)

    monkeypatch.setattr(UsageMeter, "write", slow_then_fail)
    with TestClient(worker_app(runtime)) as client:
        _infer(client, 4)
        assert started.wait(30)
    assert _by_feature(state)[("example", "infer")][0] == 4
    assert len(calls) == 2  # the failed periodic write and shutdown's flush, nothing more


# --------------------------------------------------------------------------- license check


def test_a_periodic_license_check_is_put_in_force_on_the_event_loop(served, monkeypatch):
    """The check's file work runs in a thread; the meter (which the request path and the
    flush use on the loop) is changed only on the loop."""
    from starlette.testclient import TestClient

    from oemkit.serve.server import worker_app

    runtime, _, opened = served
    opened.source.policy = dataclasses.replace(opened.source.policy, check_interval_s=0)
    threads: dict[str, set[int]] = {"activate": set(), "count": set(), "judge": set()}
    activate, count, judge = UsageMeter.activate, UsageMeter.count, runtime.judge_license

    def spy(name, fn):
        def wrapper(*args, **kw):
            threads[name].add(threading.get_ident())
            return fn(*args, **kw)
        return wrapper

    monkeypatch.setattr(UsageMeter, "activate", spy("activate", activate))
    monkeypatch.setattr(UsageMeter, "count", spy("count", count))
    monkeypatch.setattr(runtime, "judge_license", spy("judge", judge))
    with TestClient(worker_app(runtime)) as client:
        deadline = time.monotonic() + 30
        while len(threads["judge"]) == 0 or not threads["activate"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        _infer(client, 1)
    assert threads["activate"] == threads["count"]  # the loop's thread, one
    assert threads["judge"] and threads["judge"].isdisjoint(threads["count"])


def test_unsaved_files_belong_to_the_state_beside_them(tmp_path):
    state, other = tmp_path / "state.json", tmp_path / "other.json"
    kept = save_unsaved(state, "example", _pending("2026-03-01", 1, 1), {})
    save_unsaved(other, "example", _pending("2026-03-01", 7, 7), {})
    assert kept.parent == state.parent
    assert kept.name.startswith("state.json.usage.json.unsaved-")
    assert unsaved_files(state) == [kept]
    add_counts(state, "example", {}, {}, NOW)
    assert _counts(state) == {("2026-03-01", "example", "infer"): [1, 1]}
    assert len(unsaved_files(other)) == 1  # another state's counts are left alone


def test_unsaved_files_are_added_once_while_several_workers_flush(tmp_path):
    """Four worker processes flush at once while eight unsaved files wait: every unsaved
    count is added exactly once, beside every counted one."""
    from test_usage import run_workers

    state = tmp_path / "state.json"
    day = dt.datetime.now(UTC).date().isoformat()
    for _ in range(8):
        save_unsaved(state, "example", _pending(day, 5, 5), {})
    assert run_workers(state, 100) == [0, 0, 0, 0]
    infer = sum(v[0] for k, v in _counts(state).items() if k[2] == "infer")  # any day
    assert infer == 4 * 100 + 8 * 5
    assert unsaved_files(state) == []


def test_the_real_server_keeps_what_its_sigterm_flush_cannot_write(
        signed_bundle, license_root, keys, tmp_path):
    """`oemkit serve` in a process of its own: its usage state unusable at SIGTERM, it
    exits 0, logs where the counts went, and the unsaved file holds them."""
    from test_usage import Server, installed_metered

    prefix, state = installed_metered(signed_bundle, license_root, keys, tmp_path)
    server = Server(prefix, tmp_path, state)
    try:
        assert [server.infer() for _ in range(3)] == [200] * 3
        deadline = time.monotonic() + 30
        while not usage_path(state).exists():  # the 0.1 s flush wrote them
            assert time.monotonic() < deadline
            time.sleep(0.05)
        usage_path(state).unlink()
        usage_path(state).mkdir()  # from now on the usage state cannot be used
        assert [server.infer() for _ in range(4)] == [200] * 4
    finally:
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
    log = Path(server.log.name).read_text()
    kept = unsaved_files(state)
    assert kept, log
    requests = 0
    for path in kept:
        _, pending, _ = parse_unsaved(path.read_bytes(), path)
        requests += sum(v[0] for (_, _, f), v in pending.items() if f == "infer")
    assert requests == 4
    assert "usage counts not written" in log and str(kept[-1]) in log


def test_usage_status_shows_the_meter_and_what_waits(tmp_path):
    from typer.testing import CliRunner

    from oemkit.cli import app

    state = tmp_path / "state.json"
    run = CliRunner().invoke
    nothing = run(app, ["usage", "status", "--state", str(state)])
    assert nothing.exit_code == 0 and "Nothing metered on this host yet" in nothing.stderr
    add_counts(state, "example", _pending("2026-03-01", 7, 14), {LID: SALT}, NOW)
    add_counts(state, "example", _pending("2026-03-02", 1, 2), {}, NOW)
    save_unsaved(state, "example", _pending("2026-03-02", 3, 3), {})
    result = run(app, ["usage", "status", "--state", str(state), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and [u["requests"] for u in doc["unsaved"]] == [3]
    assert doc["licenses"][LID] == {
        "seq": 0, "reported_until": None, "first": "2026-03-01T00:00:00Z",
        "unreported_requests": 8, "unreported_rows": 16, "days": 2,
        "from_day": "2026-03-01", "to_day": "2026-03-02", "salt_known": True}
    assert read_usage(state).licenses[LID].model_counts  # status changed nothing
    assert len(unsaved_files(state)) == 1
    human = " ".join(result.stderr.split())
    assert (f"{LID}: 0 report(s) made; since 2026-03-01T00:00:00Z: 8 requests / 16 rows "
            "over 2 day(s)") in human
    assert "1 unsaved file(s) with 3 request(s) wait beside the usage state" in human
    usage_path(state).write_text("{not json")
    broken = run(app, ["usage", "status", "--state", str(state), "--json"])
    assert broken.exit_code == 4
    error = json.loads(broken.stdout)["error"]
    assert error["code"] == "E_USAGE_STATE"
    assert error["message"].startswith(f"the usage state {usage_path(state)} is not usable: ")
