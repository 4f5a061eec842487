"""Issue 13, the license state file and the license verdict (the "state" slice).

- Hostile state content (too deep, Infinity/1e400/negative/true/fractional counters, a CRL
  that is not text, oversize) is set aside as ``.corrupt`` with a warning, through the
  CLI and ``oemkit.license.verify()``; the next file written is clean.
- State paths that cannot be used (a directory, a FIFO, a parent that is a file, an
  unreadable file, a full disk) are coded errors (E_STATE_UNUSABLE, E_PERMISSION,
  E_WRITE; exit 4), before any verdict, and the old state stays as it was.
- Every verification advances ``last_seen``: an observed expiry is not revived by
  turning the clock back.
- Verifications are serialised by ``<state>.lock`` and every write merges monotonic
  fields, so concurrent verifications never forget a revocation.
- A state file (or folder) others may write is used with a warning and rewritten 0600.
- License time arithmetic near the ends of the calendar is judged, never OverflowError.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import oemkit.license
from hostile import make_corpus as mc
from hostile import review_state as rs
from hostile._support import cli
from oemkit import _fs
from oemkit._time import MAX_TIME, UTC
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.errors import EnvironmentProblem, OemkitError, UsageError
from oemkit.host import license_state as runner
from oemkit.host.license_state import load_state, save_state, state_lock
from oemkit.models.license import LicenseClaims
from oemkit.release.licensing import issue_crl, issue_license
from oemkit.verify import license as core
from oemkit.verify.license import LicenseError, LicenseState, evaluate, pending_state
from oemkit.verify.trust import parse_root

CORPUS = mc.CORPUS
T0 = dt.datetime(2030, 1, 1, tzinfo=UTC)
DAY = dt.timedelta(days=1)
HOST: dict[str, list[str]] = {}


@pytest.fixture(scope="module")
def ckeys() -> dict[str, PrivateKeyInfo]:
    return mc.load_keys()


@pytest.fixture(scope="module")
def root():
    return parse_root((CORPUS / mc.TRUST).read_bytes()).root


def lic(ckeys, **over: Any) -> bytes:
    return issue_license(ckeys["license"], LicenseClaims.from_dict(mc.license_claims(**over)))


def crl(ckeys, seq: int, *revoked: str) -> bytes:
    return issue_crl(ckeys["crl"], seq, revoke=[(r, None) for r in revoked],
                     issued_at=mc.ISSUED + dt.timedelta(days=seq))


def api(ckeys, root, path: Path | None, *, now: dt.datetime = T0, crls=(), **over: Any):
    return oemkit.license.verify(lic(ckeys, **over), root, state=path, now=now, host=HOST,
                                 crl=list(crls))


def state_doc(**issuer: Any) -> str:
    return json.dumps(rs.state_doc(**issuer))


# --------------------------------------------------------------------------- hostile content

CORRUPT = [
    ("deep", '{"type": "oemkit-license-state/v2", "issuers": ' + "[" * 5000 + "]" * 5000
     + "}", "not valid JSON"),
    ("too-deep-for-the-limit", '{"type": "oemkit-license-state/v2", "issuers": '
     + "[" * 70 + "]" * 70 + "}", "nested deeper than"),
    ("infinity", state_doc().replace('"crl_seq": 0', '"crl_seq": Infinity'),
     "non-standard constant Infinity"),
    ("nan", state_doc().replace('"crl_seq": 0', '"crl_seq": NaN'), "non-standard constant"),
    ("1e400", state_doc().replace('"crl_seq": 0', '"crl_seq": 1e400'),
     "crl_seq must be a non-negative integer, not inf"),
    ("1e400-seq", state_doc(seqs={"a": 0}).replace('"a": 0', '"a": 1e400'),
     "seqs['a'] must be a non-negative integer"),
    ("negative", state_doc(crl_seq=-1), "crl_seq must be a non-negative integer, not -1"),
    ("true", state_doc(seqs={"acme-vision": True}), "must be a non-negative integer, not True"),
    ("fraction", state_doc(crl_seq=2.5), "not 2.5"),
    ("crl-number", state_doc(crl=5), "crl must be the armored text of a CRL or null"),
    ("crl-not-ascii", state_doc(crl="\u00e9"), "crl must be the armored text"),
    ("issuer-string", json.dumps({"type": "oemkit-license-state/v2", "issuers": ["x"]}),
     "issuers[0] is not an object"),
    ("duplicate-key", '{"type": "oemkit-license-state/v2", "type": "x"}', "duplicate key"),
    ("last-seen-number", json.dumps({"type": "oemkit-license-state/v2", "last_seen": 5}),
     "E_TIME"),
]


@pytest.mark.parametrize(("name", "text", "why"), CORRUPT, ids=[c[0] for c in CORRUPT])
def test_hostile_state_content_is_set_aside_through_the_api(ckeys, root, tmp_path, name,
                                                            text, why):
    path = tmp_path / "state.json"
    path.write_text(text)
    verdict = api(ckeys, root, path)
    assert verdict.status == "valid"
    [warning] = verdict.warnings
    assert f"license state {path} is corrupt" in warning and why in warning, warning
    assert f"kept as {path}.corrupt" in warning
    assert (tmp_path / "state.json.corrupt").read_text() == text
    again, problem = load_state(path, root)
    assert problem is None and again.last_seen == T0 and again.seqs == {"acme-vision": 1}


def test_an_oversize_state_is_set_aside_unparsed(ckeys, root, tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_text(state_doc() + " " * 200)
    monkeypatch.setattr(runner, "MAX_STATE_BYTES", 100)
    verdict = api(ckeys, root, path)
    assert "is corrupt (larger than 100 bytes)" in verdict.warnings[0]
    assert (tmp_path / "state.json.corrupt").stat().st_size == len(state_doc()) + 200


@pytest.mark.parametrize("name", ["deep-nesting", "infinity-counter", "1e400-counter",
                                  "1e400-seq", "negative-counter", "true-counter",
                                  "fraction-counter", "crl-not-text", "crl-not-ascii",
                                  "issuer-not-object", "duplicate-key"])
def test_corpus_state_cases_warn_on_the_cli(tmp_path, name):
    """The corpus checks code and exit only; the set-aside must also say so."""
    path = tmp_path / "state.json"
    path.write_bytes((CORPUS / f"review-state-{name}.json").read_bytes())
    res = cli("license", "verify", CORPUS / "control-license-valid.lic", "--trust",
              CORPUS / mc.TRUST, "--state", path, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["verdict"] == "valid"
    assert any(f"license state {path} is corrupt" in w for w in doc["warnings"]), doc
    assert (tmp_path / "state.json.corrupt").exists()
    assert load_state(path)[1] is None


# --------------------------------------------------------------------------- unusable paths


def _unusable(ckeys, root, path: Path, code: str, *words: str) -> EnvironmentProblem:
    with pytest.raises(EnvironmentProblem) as err:
        api(ckeys, root, path)
    assert err.value.code == code and err.value.exit_code == 4, err.value
    for word in words:
        assert word in err.value.message, err.value.message
    assert err.value.hint
    return err.value


def test_a_directory_at_the_state_path_is_refused_before_any_verdict(ckeys, root, tmp_path):
    path = tmp_path / "state.json"
    path.mkdir()
    (path / "keep").write_text("mine")
    _unusable(ckeys, root, path, "E_STATE_UNUSABLE", f"{path} is a directory")
    assert [p.name for p in path.iterdir()] == ["keep"]
    res = cli("license", "verify", CORPUS / "control-license-valid.lic", "--trust",
              CORPUS / mc.TRUST, "--state", path, "--json")
    assert res.exit_code == 4
    doc = json.loads(res.stdout)  # one document: the error, no verdict before it
    assert doc["ok"] is False and doc["error"]["code"] == "E_STATE_UNUSABLE"
    assert "VALID" not in res.stderr


def test_a_fifo_at_the_state_path_is_refused_without_blocking(ckeys, root, tmp_path):
    path = tmp_path / "state.json"
    os.mkfifo(path)
    _unusable(ckeys, root, path, "E_STATE_UNUSABLE", "is a special file")


@pytest.mark.parametrize("depth", [1, 2])
def test_a_file_where_the_state_folder_should_be_is_e_write(ckeys, root, tmp_path, depth):
    (tmp_path / "parent").write_text("not a folder")
    path = tmp_path / "parent" / ("deeper/" * (depth - 1)) / "state.json"
    _unusable(ckeys, root, path, "E_WRITE", "cannot create the folder",
              "a file is in the way")
    assert (tmp_path / "parent").read_text() == "not a folder"


def test_an_unreadable_state_is_refused_not_replaced(ckeys, root, tmp_path, monkeypatch):
    """Judging without it and then replacing it would forget what it remembers (tests run
    as root here, so the permission error is simulated)."""
    path = tmp_path / "state.json"
    path.write_text(state_doc(crl_seq=7))
    real_open = os.open

    def deny(file: Any, flags: int, *args: Any) -> int:
        if Path(file) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, flags, *args)

    monkeypatch.setattr(runner.os, "open", deny)
    _unusable(ckeys, root, path, "E_PERMISSION", f"cannot read the license state {path}",
              "Permission denied")
    monkeypatch.undo()
    assert json.loads(path.read_text())["issuers"][0]["crl_seq"] == 7


def _full_disk(path: Path, data: bytes, mode: int = 0o644) -> None:
    with _fs.atomic_output(path, mode) as handle:
        handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_e_write_and_the_old_state_is_intact(ckeys, root, tmp_path,
                                                            monkeypatch):
    path = tmp_path / "state.json"
    api(ckeys, root, path, crls=[crl(ckeys, 2, "other")])
    before = path.read_bytes()
    monkeypatch.setattr(runner, "atomic_write_bytes", _full_disk)
    err = _unusable(ckeys, root, path, "E_WRITE", f"cannot write the license state {path}",
                    "No space left on device", "unchanged")
    assert "free space" in err.hint
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.lock"]
    # the CLI (judging at the host clock): one JSON error document, exit 4
    monkeypatch.undo()
    here = tmp_path / "cli" / "state.json"
    args = ("license", "verify", CORPUS / "control-license-valid.lic", "--trust",
            CORPUS / mc.TRUST, "--state", here, "--json")
    assert cli(*args).exit_code == 0
    before = here.read_bytes()
    monkeypatch.setattr(runner, "atomic_write_bytes", _full_disk)
    res = cli(*args)
    assert res.exit_code == 4 and json.loads(res.stdout)["error"]["code"] == "E_WRITE"
    assert here.read_bytes() == before


def test_a_full_disk_never_hides_a_rejection(ckeys, root, tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    api(ckeys, root, path)
    before = path.read_bytes()
    monkeypatch.setattr(runner, "atomic_write_bytes", _full_disk)
    with pytest.raises(LicenseError) as err:
        api(ckeys, root, path, expires="2029-06-01T00:00:00Z")
    assert err.value.code == "E_EXPIRED"
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- clock rollback


def test_an_observed_expiry_is_not_revived_by_turning_the_clock_back(ckeys, root, tmp_path):
    path = tmp_path / "state.json"
    expires = {"expires": "2030-02-01T00:00:00Z"}
    assert api(ckeys, root, path, now=T0, **expires).status == "valid"
    with pytest.raises(LicenseError) as err:
        api(ckeys, root, path, now=T0 + 40 * DAY, **expires)
    assert err.value.code == "E_EXPIRED"
    assert load_state(path, root)[0].last_seen == T0 + 40 * DAY  # the rejection recorded it
    with pytest.raises(LicenseError) as err:  # was VALID again
        api(ckeys, root, path, now=T0 + DAY, **expires)
    assert err.value.code == "E_CLOCK_ROLLBACK"
    assert "already verified here at 2030-02-10T00:00:00Z" in err.value.message


@pytest.mark.parametrize(("over", "code"), [
    ({"not_before": "2031-01-01T00:00:00Z", "expires": "2032-01-01T00:00:00Z"},
     "E_NOT_YET_VALID"),
    ({"critical": ["x-unknown"]}, "E_CRIT_UNKNOWN"),
    ({"bindings": {"environment": "prod"}}, "E_ENV_MISMATCH"),
])
def test_every_rejection_records_the_clock_it_observed(ckeys, root, over, code):
    state = LicenseState(last_seen=T0 - DAY, seqs={"acme-vision": 1})
    with pytest.raises(OemkitError) as err:
        evaluate(lic(ckeys, **over), root, T0, state=state, host=HOST)
    assert err.value.code == code
    update = pending_state(err.value)
    assert update == LicenseState(last_seen=T0, seqs={"acme-vision": 1})


def test_a_forged_license_records_the_clock_but_nothing_else(ckeys, root):
    data = lic(ckeys).replace(b"A", b"B", 1)
    with pytest.raises(OemkitError) as err:
        evaluate(data, root, T0, state=LicenseState(crl_seq=4), host=HOST)
    assert pending_state(err.value) == LicenseState(last_seen=T0, crl_seq=4)


def test_a_rejection_never_moves_last_seen_back(ckeys, root):
    late = T0 + dt.timedelta(minutes=30)  # ahead of now, within the hour of tolerance
    with pytest.raises(LicenseError) as err:
        evaluate(lic(ckeys, expires="2029-06-01T00:00:00Z"), root, T0,
                 state=LicenseState(last_seen=late), host=HOST)
    assert err.value.code == "E_EXPIRED"
    update = pending_state(err.value)
    assert update is not None and update.last_seen == late


# --------------------------------------------------------------------------- concurrency


def test_save_merges_never_backwards(ckeys, root, tmp_path):
    """A slower writer (an older oemkit, or one that read before) cannot lower anything."""
    path = tmp_path / "state.json"
    newer = crl(ckeys, 5, "acme-vision")
    save_state(path, LicenseState(last_seen=T0 + 5 * DAY, crl=newer, crl_seq=5,
                                  seqs={"a": 4, "b": 1}), root)
    save_state(path, LicenseState(last_seen=T0, crl=crl(ckeys, 2), crl_seq=2,
                                  seqs={"a": 2, "c": 3}), root)
    state, problem = load_state(path, root)
    assert problem is None
    assert state == LicenseState(last_seen=T0 + 5 * DAY, crl=newer, crl_seq=5,
                                 seqs={"a": 4, "b": 1, "c": 3})


def test_a_write_between_read_and_save_is_merged_not_lost(ckeys, root, tmp_path,
                                                           monkeypatch):
    """An unlocked writer records a revoking CRL while a verification judges: the
    verification's write keeps it, and the revoked license stays revoked."""
    path = tmp_path / "state.json"
    api(ckeys, root, path, license_id="other-vision")
    revoking = crl(ckeys, 3, "acme-vision")
    real = core.evaluate

    def judge_while_another_writes(*args: Any, **kwargs: Any):
        verdict = real(*args, **kwargs)
        runner._save(path, LicenseState(crl=revoking, crl_seq=3), root)
        return verdict

    monkeypatch.setattr(runner, "evaluate", judge_while_another_writes)
    api(ckeys, root, path, license_id="other-vision", now=T0 + DAY)
    monkeypatch.undo()
    state, _ = load_state(path, root)
    assert state.crl_seq == 3 and state.crl == revoking and state.last_seen == T0 + DAY
    with pytest.raises(LicenseError) as err:
        api(ckeys, root, path, now=T0 + DAY)
    assert err.value.code == "E_REVOKED"


def test_a_second_verification_waits_for_the_lock(ckeys, root, tmp_path, monkeypatch):
    """The slow verification holds the lock while it judges; the other one (recording a
    revocation) waits, then reads what the first wrote: the CRL survives both."""
    path = tmp_path / "state.json"
    inside, waiting, errors = threading.Event(), threading.Event(), []
    real = core.evaluate

    def slow(*args: Any, **kwargs: Any):
        if kwargs.get("crls"):
            return real(*args, **kwargs)
        inside.set()
        assert waiting.wait(60), "the second verification never waited for the lock"
        return real(*args, **kwargs)

    def pause() -> None:
        waiting.set()

    monkeypatch.setattr(runner, "evaluate", slow)
    monkeypatch.setattr(runner, "_pause", pause)

    def first() -> None:
        try:
            api(ckeys, root, path, license_id="slow-vision")
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(60)
    api(ckeys, root, path, license_id="fast-vision", crls=[crl(ckeys, 4, "acme-vision")])
    thread.join(60)
    assert not thread.is_alive() and errors == []
    state, _ = load_state(path, root)
    assert state.crl_seq == 4
    assert state.seqs == {"slow-vision": 1, "fast-vision": 1}


def test_a_lock_held_too_long_is_e_locked_and_nothing_changes(ckeys, root, tmp_path,
                                                               monkeypatch):
    path = tmp_path / "state.json"
    api(ckeys, root, path)
    before = path.read_bytes()
    monkeypatch.setattr(runner, "LOCK_WAIT_SECONDS", 0.0)
    with state_lock(path), pytest.raises(EnvironmentProblem) as err:
        api(ckeys, root, path, now=T0 + DAY)
    assert err.value.code == "E_LOCKED" and err.value.exit_code == 4
    assert str(path) in err.value.message
    assert path.read_bytes() == before


_CHILD = r"""
import datetime as dt, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/hostile"]
import oemkit.license
from hostile import make_corpus as mc
from oemkit.release.licensing import issue_crl, issue_license
from oemkit.models.license import LicenseClaims
from oemkit.verify.trust import parse_root
keys = mc.load_keys()
n = int(sys.argv[3])
root = parse_root((mc.CORPUS / mc.TRUST).read_bytes()).root
data = issue_license(keys["license"], LicenseClaims.from_dict(
    mc.license_claims(license_id=f"p{n}-vision", seq=n)))
crls = [issue_crl(keys["crl"], 2, revoke=[("acme-vision", None)],
                  issued_at=mc.ISSUED)] if n == 1 else []
for i in range(20):
    oemkit.license.verify(data, root, state=sys.argv[2], host={}, crl=crls,
                          now=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
"""


def test_concurrent_processes_keep_every_revocation_and_reissue(ckeys, root, tmp_path):
    """Three processes verify at once, 20 times each: one records a revoking CRL, each
    its own license id and re-issue number. Nothing any of them recorded may be lost."""
    path = tmp_path / "state.json"
    tests = str(Path(__file__).resolve().parents[1])
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, tests, str(path), str(n)],
                                 stderr=subprocess.PIPE) for n in (1, 2, 3)]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err.decode()
    state, problem = load_state(path, root)
    assert problem is None and state.crl_seq == 2 and state.last_seen == T0
    assert state.seqs == {"p1-vision": 1, "p2-vision": 2, "p3-vision": 3}
    with pytest.raises(LicenseError) as err:
        api(ckeys, root, path)
    assert err.value.code == "E_REVOKED"


# --------------------------------------------------------------------------- who may write it


def test_a_world_writable_state_is_used_with_a_warning_and_rewritten_0600(ckeys, root,
                                                                          tmp_path):
    path = tmp_path / "state.json"
    api(ckeys, root, path)
    os.chmod(path, 0o666)
    verdict = api(ckeys, root, path, now=T0 + DAY)
    assert verdict.warnings == [f"the license state {path} is writable by other users (mode "
                                "0666): anyone on this host could have changed what it "
                                "remembers; it is rewritten with mode 0600"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert api(ckeys, root, path, now=T0 + 2 * DAY).warnings == []


@pytest.mark.parametrize(("mode", "warned"), [(0o777, True), (0o1777, False), (0o755, False)])
def test_a_state_folder_anyone_may_write_is_warned_about(ckeys, root, tmp_path, mode, warned):
    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / "state.json"
    api(ckeys, root, path)
    os.chmod(folder, mode)
    try:
        warnings = api(ckeys, root, path, now=T0 + DAY).warnings
    finally:
        os.chmod(folder, 0o700)
    assert any(f"the folder {folder} holding the license state is writable by every "
               "user" in w for w in warnings) is warned, warnings


# --------------------------------------------------------------------------- time arithmetic


def test_a_clock_at_the_end_of_the_calendar_is_judged(ckeys, root):
    """``now + 1 h`` used to overflow: the clock checks compare differences now."""
    data = lic(ckeys, expires="9999-12-31T23:59:59Z")
    late = dt.datetime(9999, 12, 31, 23, 30, tzinfo=UTC)
    verdict = evaluate(data, root, late, host=HOST,
                       state=LicenseState(last_seen=MAX_TIME))
    assert verdict.status == "valid" and verdict.new_state is not None
    assert verdict.new_state.last_seen == MAX_TIME
    with pytest.raises(LicenseError) as err:
        evaluate(lic(ckeys), root, late, host=HOST)  # expires 2099
    assert err.value.code == "E_EXPIRED" and "judged at 9999-12-31T23:30:00Z" in \
        err.value.message


def test_a_clock_at_the_start_of_the_calendar_is_behind(ckeys, root):
    with pytest.raises(LicenseError) as err:
        evaluate(lic(ckeys), root, dt.datetime(1, 1, 1, tzinfo=UTC), host=HOST)
    assert err.value.code == "E_CLOCK_BEHIND" and "0001-01-01T00:00:00Z" in err.value.message


def test_grace_past_9999_is_a_coded_rejection(ckeys, root):
    from oemkit.crypto.armor import armor, sign_document
    from oemkit.models.license import LICENSE_PAYLOAD_TYPE

    claims = mc.license_claims(expires="9999-12-01T00:00:00Z", grace_seconds=90 * 86400)
    data = armor("OEMKIT LICENSE", sign_document(ckeys["license"], LICENSE_PAYLOAD_TYPE,
                                                 mc.canonical_json(claims)))
    with pytest.raises(OemkitError) as err:
        evaluate(data, root, T0, host=HOST)
    assert err.value.code == "E_CLAIMS_INVALID" and "expires + grace_seconds" in \
        err.value.message


def test_expiry_arithmetic_never_overflows_even_for_claims_built_in_code(ckeys, root):
    """The verdict's own arithmetic is integer microseconds, whatever a caller builds."""
    base = LicenseClaims.from_dict(mc.license_claims(expires="9999-12-01T00:00:00Z"))
    claims = replace(base, grace_seconds=10**15)
    assert core._grace_end(claims) == "after 9999-12-31T23:59:59Z"
    key = root.key(ckeys["license"].keyid)
    assert key is not None
    verdict = core._judge(key, claims, core._Revocations(), MAX_TIME, LicenseState(), None,
                          HOST, None)
    assert verdict.status == "grace" and verdict.grace_days_left is not None
    assert "grace period ends after 9999-12-31T23:59:59Z" in verdict.warnings[0]


def test_years_below_1000_are_written_zero_padded(ckeys, root):
    data = lic(ckeys, issued_at="0999-01-01T00:00:00Z", not_before="0999-01-01T00:00:00Z",
               expires="0999-06-30T00:00:00Z")
    doc = evaluate(data, root, dt.datetime(999, 2, 1, tzinfo=UTC), host=HOST).to_dict()
    assert doc["expires"] == "0999-06-30T00:00:00Z"
    assert doc["effective_time"] == "0999-02-01T00:00:00Z"


@pytest.mark.parametrize(("now", "code", "words"), [
    (dt.datetime(2030, 1, 1), "E_USAGE", "must be a timezone-aware datetime"),
    ("2030-01-01", "E_USAGE", "must be a timezone-aware datetime"),
    (dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(-dt.timedelta(hours=2))), "E_TIME",
     "outside the years 0001..9999"),
])
def test_a_bad_now_from_the_api_is_coded(ckeys, root, tmp_path, now, code, words):
    with pytest.raises(OemkitError) as err:
        oemkit.license.verify(lic(ckeys), root, state=tmp_path / "s.json", now=now, host=HOST)
    assert err.value.code == code and words in err.value.message
    assert isinstance(err.value, UsageError) is (code == "E_USAGE")
    assert not (tmp_path / "s.json").exists()
