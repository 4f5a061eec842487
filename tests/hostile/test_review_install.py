"""Issue 13, install: oemkit removes only what it created and journaled, never follows a
link in a prefix, refuses a prefix it did not lay out, leaves the host as it was after
any failure, reads ``slot.json`` without crashing, and unpacks neither through a DEST
link nor leaves created parents behind.

The corpus cases (tests/hostile/review_install.py) check codes and exit statuses; the
tests here run the same setups and check what the corpus cannot: that every planted file
still exists, byte for byte, and that nothing was created.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hostile import make_corpus
from hostile.review_install import CASES, PLANTED, SLOT, resolve, slot_json
from hostile.test_corpus import _expand, _prepare
from oemkit._lock import exclusive_lock
from oemkit.cli import app
from oemkit.errors import EnvironmentProblem, InputError
from oemkit.host import install as inst
from oemkit.host.install import SlotRecord, install, read_slot, rollback, status
from oemkit.host.prefix import (
    JOURNAL,
    JOURNAL_FORMAT,
    Entry,
    Journal,
    check_layout,
    parse_journal,
)
from oemkit.host.unpack import unpack_bundle

CORPUS = make_corpus.CORPUS
TRUST = CORPUS / make_corpus.TRUST
VALID = CORPUS / "control-bundle-valid.oemb"
REJECTED = CORPUS / "bundle-signature-unknown-key.oemb"
runner = CliRunner()


def tree(root: Path) -> dict[str, Any]:
    """Everything under ``root`` as lstat sees it: kind, link text, file bytes, mode."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", path.read_bytes(), stat.S_IMODE(st.st_mode))
    return out


def run_case(case: tuple[str, str, dict[str, Any], list[str], str | None, int],
             tmp: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    file, _, setup, command, _, _ = case
    spec = {"kind": "cli", "setup": resolve(setup, file), "command": [
        part.replace("{file}", file) for part in command]}
    _prepare(spec, tmp)
    before = tree(tmp / "work")
    result = runner.invoke(app, _expand(spec, tmp))
    return result, before, tree(tmp / "work")


def state(tmp: Path) -> Path:
    return tmp / "license-state.json"


REFUSED = [c for c in CASES if c[0] != "review-install-legacy-leftovers-kept.json"]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_and_read_only_cases_change_nothing(case, tmp_path):
    """Each refusal (and each status) leaves the scratch tree exactly as planted: the
    shared data behind a planted link, the link's target, the prefix itself (no .lock,
    slots/ or journal created), and no parent directory of an unpack DEST."""
    result, before, after = run_case(case, tmp_path)
    assert result.exit_code == case[5], result.output
    assert "Traceback" not in result.output and "E_INTERNAL" not in result.output
    doc = json.loads(result.stdout)
    assert (doc.get("error") or {}).get("code") == case[4], doc
    made = {name: after.pop(name) for name in ("prefix/.lock", "prefix/.journal")
            if name in after and name not in before}
    assert after == before
    # all oemkit may add: its own empty lock, and a journal with nothing pending
    assert made.get("prefix/.lock", ("file", b"", 0o600)) == ("file", b"", 0o600)
    if "prefix/.journal" in made:
        assert parse_journal(made["prefix/.journal"][1], "j") == []
    if case[0].startswith(("review-install-journal-", "review-install-status-")):
        assert made == {}  # refused (or read) before anything is created


def test_planted_slots_link_keeps_shared_data(tmp_path):
    """The review's exact attack: slots -> ../shared-data; install, upgrade, rollback and
    status all refuse, and db/ and photos/ are still there with their files."""
    for case in (c for c in CASES if c[0].startswith("review-install-slots-symlink-")):
        tmp = tmp_path / case[0]
        tmp.mkdir()
        result, _, _ = run_case(case, tmp)
        assert result.exit_code == 3, result.output
        error = json.loads(result.stdout)["error"]
        assert error["code"] == "E_PREFIX_LAYOUT"
        assert "slots is a symbolic link, not a directory" in error["message"]
        shared = tmp / "work" / "shared-data"
        assert (shared / "db" / "data.sqlite").read_text() == "rows\n"
        assert (shared / "photos" / "cat.jpg").read_text() == "jpeg\n"


def test_layout_error_names_every_foreign_entry(tmp_path):
    prefix = tmp_path / "p"
    (prefix / ".cache.tmp").mkdir(parents=True)
    (prefix / "README").write_text("x")
    os.symlink("/etc", prefix / "current")
    with pytest.raises(InputError) as err:
        install(VALID, prefix, TRUST, skip_smoke=True, state_path=state(tmp_path))
    assert err.value.code == "E_PREFIX_LAYOUT" and err.value.exit_code == 3
    message = err.value.message
    assert ".cache.tmp (a directory) is not something oemkit makes" in message
    assert "README (a file) is not something oemkit makes" in message
    assert "current points at '/etc', not at a slot" in message
    assert "move these entries away" in err.value.hint
    assert sorted(p.name for p in prefix.iterdir()) == [".cache.tmp", "README", "current"]


def test_legacy_prefix_without_journal_cleans_nothing(tmp_path):
    """A prefix laid out by the previous oemkit (no journal): its leftovers are not
    oemkit's to guess at; install works beside them and leaves them."""
    case = next(c for c in CASES if c[0] == "review-install-legacy-leftovers-kept.json")
    result, before, after = run_case(case, tmp_path)
    assert result.exit_code == 0, result.output
    for kept in ("prefix/slots/.tmp-abcd1234/bundle/partial", "prefix/.current.4242.tmp"):
        assert after[kept] == before[kept]
    doc = status(tmp_path / "work" / "prefix")
    assert doc["consistent"] and doc["current"].startswith("hostile-1.0.0-")
    assert {s["name"]: s.get("incomplete", False) for s in doc["slots"]} == {
        ".tmp-abcd1234": True, doc["current"]: False}


# --------------------------------------------------------------------------- the journal


def _installed(tmp: Path) -> Path:
    prefix = tmp / "p"
    report = install(VALID, prefix, TRUST, skip_smoke=True, state_path=state(tmp))
    assert report.ok, report.to_dict()
    return prefix


def _journal(prefix: Path, *names: str) -> None:
    (prefix / JOURNAL).write_text(json.dumps({"format": JOURNAL_FORMAT,
                                              "pending": list(names)}))


def test_journal_is_private_and_empty_after_a_run(tmp_path):
    prefix = _installed(tmp_path)
    assert stat.S_IMODE(os.lstat(prefix / JOURNAL).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(prefix / ".lock").st_mode) == 0o600
    assert Journal.load(prefix).pending == []
    assert sorted(p.name for p in prefix.iterdir()) == [".journal", ".lock", "current",
                                                        "reports", "slots"]


def test_cleanup_removes_only_journaled_names_and_never_follows_links(tmp_path):
    prefix = _installed(tmp_path)
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "data").write_text("precious")
    journaled = prefix / "slots" / ".tmp-journaled"
    (journaled / "bundle").mkdir(parents=True)
    (journaled / "bundle" / "partial").write_text("x")
    (prefix / "slots" / ".tmp-unlisted").mkdir()
    os.symlink(str(outside / "keep"), prefix / ".current.deadbeef.tmp")  # a switch link
    os.symlink("slots/.tmp-x", prefix / ".previous.cafe.tmp")            # not journaled
    current = status(prefix)["current"]
    _journal(prefix, "slots/.tmp-journaled", ".current.deadbeef.tmp", f"slots/{current}",
             "slots/.tmp-gone")
    report = install(VALID, prefix, TRUST, upgrade=True, skip_smoke=True,
                     state_path=state(tmp_path))
    assert report.ok and report.checks[0].name == "cleanup", report.to_dict()
    assert report.checks[0].detail == ("removed leftovers of an interrupted run: "
                                       "slots/.tmp-journaled, .current.deadbeef.tmp")
    assert not journaled.exists() and not os.path.lexists(prefix / ".current.deadbeef.tmp")
    assert (outside / "keep" / "data").read_text() == "precious"  # the link's target stays
    assert (prefix / "slots" / ".tmp-unlisted").is_dir()
    assert os.path.islink(prefix / ".previous.cafe.tmp")
    assert status(prefix)["current"] == current  # a journaled live slot is only forgotten
    assert Journal.load(prefix).pending == []


@pytest.mark.parametrize(("pending", "fragment"), [
    (["slots/../../victim"], "'slots/../../victim' is not a name oemkit makes"),
    (["db"], "'db' is not a name oemkit makes"),
    (["slots"], "'slots' is not a name oemkit makes"),
    (["/etc/passwd"], "'/etc/passwd' is not a name oemkit makes"),
    (["slots/a/b"], "'slots/a/b' is not a name oemkit makes"),
    ([5], "5 is not a name oemkit makes"),
    (["slots/.tmp-a"] * 65, "at most 64 names"),
])
def test_a_forged_journal_is_refused_and_nothing_is_removed(pending, fragment, tmp_path):
    prefix = _installed(tmp_path)
    _journal(prefix, *pending)
    before = tree(prefix)
    with pytest.raises(InputError) as err:
        rollback(prefix)
    assert err.value.code == "E_PREFIX_JOURNAL" and fragment in err.value.message
    assert tree(prefix) == before


@pytest.mark.parametrize("data", [b"", b"[]", b"{}", b"[" * 5000, b'{"format": "x"}',
                                  json.dumps({"format": JOURNAL_FORMAT, "pending": [],
                                              "more": 1}).encode(), b" " * (65 << 10)])
def test_parse_journal_refuses_what_oemkit_never_writes(data):
    with pytest.raises(InputError) as err:
        parse_journal(data, "p/.journal")
    assert err.value.code == "E_PREFIX_JOURNAL" and "p/.journal is not an oemkit journal" in (
        err.value.message)


def test_parse_journal_accepts_its_own_names():
    names = ["slots/.tmp-0a1b2c", "slots/example-0.2.0-42c52d800c39-2",
             ".current.0a1b.tmp", ".previous.4242.tmp"]
    doc = json.dumps({"format": JOURNAL_FORMAT, "pending": names}).encode()
    assert parse_journal(doc, "j") == names


# --------------------------------------------------------------------------- the layout core


@pytest.mark.parametrize(("top", "slots", "fragment"), [
    ([Entry("slots", "link", "../shared")], None, "slots is a symbolic link, not a dir"),
    ([Entry("slots", "dir"), Entry(".lock", "link", "/etc/passwd")], [],
     ".lock is a symbolic link, not a file"),
    ([Entry("slots", "dir"), Entry(".journal", "dir")], [], ".journal is a directory"),
    ([Entry("slots", "dir")], [Entry("x", "link", "/")], "slots/x is a symbolic link"),
    ([Entry("slots", "dir")], [Entry("x", "file")], "slots/x is a file"),
    ([Entry("slots", "dir")], [Entry("-x", "dir")], "slots/-x is not a slot name"),
    ([Entry("slots", "dir"), Entry("current", "link", "slots/a/../../b")], [Entry("a", "dir")],
     "current points at 'slots/a/../../b'"),
    ([Entry("slots", "dir"), Entry("previous", "file")], [], "previous is a file, not a sym"),
    ([Entry(".current.1.tmp", "dir")], None, ".current.1.tmp is a directory"),
    ([Entry("x.tmp", "file")], None, "x.tmp (a file) is not something oemkit makes"),
    ([Entry("licenses", "link", "/etc")], None, "licenses is a symbolic link, not a dir"),
])
def test_check_layout_refuses(top, slots, fragment):
    with pytest.raises(InputError) as err:
        check_layout(Path("/p"), top, slots)
    assert err.value.code == "E_PREFIX_LAYOUT" and fragment in err.value.message


def test_check_layout_accepts_oemkit_layouts():
    assert check_layout(Path("/p"), None, None).live == frozenset()
    assert check_layout(Path("/p"), [], None).exists
    layout = check_layout(Path("/p"), [
        Entry("slots", "dir"), Entry(".lock", "file"), Entry(".journal", "file"),
        Entry("current", "link", "slots/a-1-0123456789ab"),
        Entry("previous", "link", "slots/gone"), Entry(".current.77.tmp", "link", "slots/x"),
        Entry("licenses", "dir")],
        [Entry("a-1-0123456789ab", "dir"), Entry(".tmp-abc", "dir")])
    assert layout.current == "a-1-0123456789ab" and layout.previous is None  # dangling
    assert layout.slots == (".tmp-abc", "a-1-0123456789ab")


# --------------------------------------------------------------------------- the lock


def test_lock_refuses_links_directories_and_fifos(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("root:x:0:0\n")
    os.symlink(victim, tmp_path / "a.lock")
    os.symlink(tmp_path / "absent", tmp_path / "b.lock")
    (tmp_path / "c.lock").mkdir()
    os.mkfifo(tmp_path / "d.lock")
    for name, what in (("a.lock", "a symbolic link"), ("b.lock", "a symbolic link"),
                       ("c.lock", "a directory"), ("d.lock", "a special file")):
        with pytest.raises(InputError) as err, exclusive_lock(tmp_path / name, "x"):
            pass
        assert err.value.code == "E_LOCK_UNSAFE" and err.value.exit_code == 3
        assert f"{tmp_path / name} is {what}, not a regular file" in err.value.message
    assert victim.read_text() == "root:x:0:0\n" and not (tmp_path / "absent").exists()


def test_lock_is_a_private_regular_file_and_exclusive(tmp_path):
    lock = tmp_path / "x.lock"
    with exclusive_lock(lock, "the thing"):
        assert stat.S_IMODE(os.lstat(lock).st_mode) == 0o600
        with pytest.raises(EnvironmentProblem) as err, exclusive_lock(lock, "the thing"):
            pass
        assert err.value.code == "E_LOCKED"
    with exclusive_lock(lock, "the thing"):  # released
        pass


# --------------------------------------------------------------------------- failures


def _slots(prefix: Path) -> list[str]:
    return sorted(p.name for p in (prefix / "slots").iterdir())


@pytest.mark.parametrize("error", [RuntimeError("a bug"), KeyboardInterrupt(),
                                   KeyError("version")])
def test_any_exception_while_preparing_leaves_the_host_as_it_was(error, tmp_path,
                                                                  monkeypatch):
    prefix = _installed(tmp_path)
    before = status(prefix)
    v2 = tmp_path / "v2.oemb"
    v2.write_bytes(make_corpus.Forge(make_corpus.load_keys()).bundle(
        manifest_edit=lambda d: d.update(version="1.0.1")))

    def boom(*args, **kwargs):
        raise error

    monkeypatch.setattr(inst, "_prepare_slot", boom)
    with pytest.raises(type(error)):
        install(v2, prefix, TRUST, upgrade=True, skip_smoke=True, state_path=state(tmp_path))
    assert status(prefix) == before and _slots(prefix) == [before["current"]]
    assert Journal.load(prefix).pending == []


def test_a_failed_switch_leaves_current_and_no_slot(tmp_path, monkeypatch):
    prefix = _installed(tmp_path)
    before = status(prefix)
    v2 = tmp_path / "v2.oemb"
    v2.write_bytes(make_corpus.Forge(make_corpus.load_keys()).bundle(
        manifest_edit=lambda d: d.update(version="1.0.1")))

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(inst, "_point", full)
    report = install(v2, prefix, TRUST, upgrade=True, skip_smoke=True,
                     state_path=state(tmp_path))
    assert report.exit_code == 4 and report.to_dict()["error"]["code"] == "E_WRITE"
    assert "No space left on device" in report.checks[-1].detail
    assert status(prefix) == before and _slots(prefix) == [before["current"]]
    assert Journal.load(prefix).pending == []


def test_prune_removes_only_oemkits_complete_slots(tmp_path):
    forge = make_corpus.Forge(make_corpus.load_keys())
    prefix = _installed(tmp_path)
    first = status(prefix)["current"]
    decoy, data = prefix / "slots" / "decoy", prefix / "slots" / "userdata"
    decoy.mkdir()
    (decoy / "slot.json").write_bytes((prefix / "slots" / first / "slot.json").read_bytes())
    data.mkdir()
    (data / "db").write_text("rows")
    for version in ("1.0.1", "1.0.2"):
        bundle = tmp_path / f"{version}.oemb"
        bundle.write_bytes(forge.bundle(manifest_edit=lambda d, v=version: d.update(
            version=v)))
        report = install(bundle, prefix, TRUST, upgrade=True, skip_smoke=True,
                         state_path=state(tmp_path))
        assert report.ok, report.to_dict()
    assert first not in _slots(prefix)
    assert (decoy / "slot.json").is_file() and (data / "db").read_text() == "rows"
    assert [c.detail for c in report.checks if c.name == "prune"] == [
        f"removed old slots: {first}"]


# --------------------------------------------------------------------------- slot.json


@pytest.mark.parametrize(("data", "fragment"), [
    (b"[]", "a JSON array, not an object"),
    (slot_json().encode(), None),
    (b"5", "a JSON int, not an object"),
    (b"not json", "not JSON"),
    (b"[" * 5000, "not JSON"),
    (slot_json(name=5).encode(), "'name' must be a non-empty string, not a number"),
    (slot_json(version={"x": 1}).encode(), "'version' must be a non-empty string, not an obj"),
    (slot_json(bundle_name=None).encode(), "'bundle_name' must be a non-empty string, not nu"),
    (slot_json(manifest_sha256="x" * 64).encode(), "'manifest_sha256' is not what oemkit"),
    (slot_json(version="[/x]\x1b[2K").encode(),
     "'version' is not what oemkit writes there ('[/x]\\x1b[2K')"),
    (slot_json(installed_at="[bold]now").encode(), "'installed_at' is not what oemkit"),
    (slot_json(oemkit_version="1\n2").encode(), "'oemkit_version' is not what oemkit"),
    (slot_json(config_version=True).encode(), "'config_version' must be an integer, not a b"),
    (slot_json(python=["x"]).encode(), "'python' must be a non-empty string, not an array"),
    (b" " * (65 << 10), "bytes (at most 65536)"),
])
def test_slot_record_refuses_malformed_slot_json(data, fragment):
    if fragment is None:  # the control: what install writes is accepted
        assert SlotRecord.parse(data, "s/slot.json").to_dict() == json.loads(data)
        return
    with pytest.raises(InputError) as err:
        SlotRecord.parse(data, "s/slot.json")
    assert err.value.code == "E_SLOT_DAMAGED"
    assert err.value.message.startswith("s/slot.json is damaged: ") and fragment in (
        err.value.message)


def test_status_lists_damaged_slots_and_never_reads_through_a_link(tmp_path):
    prefix = tmp_path / "p"
    for name, data in [("a-1-0123456789ab", b"[]"), ("b-1-0123456789ab", None),
                       ("c-1-0123456789ab", slot_json(name="c-1-0123456789ab").encode())]:
        (prefix / "slots" / name).mkdir(parents=True)
        if data is not None:
            (prefix / "slots" / name / "slot.json").write_bytes(data)
    (tmp_path / "elsewhere.json").write_text(slot_json())
    os.symlink(tmp_path / "elsewhere.json", prefix / "slots" / "b-1-0123456789ab" /
               "slot.json")
    os.symlink("slots/a-1-0123456789ab", prefix / "current")
    doc = status(prefix)
    assert not doc["consistent"] and doc["current"] == "a-1-0123456789ab"
    rows = {s["name"]: s for s in doc["slots"]}
    assert rows["a-1-0123456789ab"]["incomplete"] and rows["a-1-0123456789ab"]["current"]
    assert "a-1-0123456789ab/slot.json is damaged: a JSON array" in rows[
        "a-1-0123456789ab"]["problem"]
    assert "b-1-0123456789ab/slot.json cannot be read" in rows["b-1-0123456789ab"]["problem"]
    assert rows["c-1-0123456789ab"]["version"] == "1.0.0"
    assert "incomplete" not in rows["c-1-0123456789ab"]
    result = runner.invoke(app, ["status", "--prefix", str(prefix), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True, result.output


def test_read_slot_missing_is_coded(tmp_path):
    (tmp_path / "s").mkdir()
    with pytest.raises(InputError) as err:
        read_slot(tmp_path / "s")
    assert err.value.code == "E_SLOT_DAMAGED" and "s/slot.json is missing" in err.value.message


def test_upgrade_over_a_damaged_current_with_allow_downgrade_replaces_it(tmp_path):
    prefix = tmp_path / "p" / "slots" / SLOT
    prefix.mkdir(parents=True)
    (prefix / "slot.json").write_bytes(PLANTED["review-install-upgrade-current-damaged.json"])
    os.symlink(f"slots/{SLOT}", tmp_path / "p" / "current")
    report = install(VALID, tmp_path / "p", TRUST, upgrade=True, skip_smoke=True,
                     allow_downgrade=True, state_path=state(tmp_path))
    assert report.ok and report.previous == SLOT, report.to_dict()
    assert status(tmp_path / "p")["consistent"]


# --------------------------------------------------------------------------- unpack


def test_unpack_refuses_a_dest_link_and_writes_nothing_behind_it(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "dest")
    with pytest.raises(InputError) as err:
        unpack_bundle(VALID, tmp_path / "dest", TRUST)
    assert err.value.code == "E_DEST_SYMLINK" and "is a symbolic link" in err.value.message
    assert list(real.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "dest", "real"]
    with pytest.raises(InputError) as err:
        unpack_bundle(VALID, tmp_path / "dest", TRUST, force=True)
    assert err.value.code == "E_DEST_SYMLINK"


def test_unpack_leaves_no_created_parents_on_failure(tmp_path, monkeypatch):
    dest = tmp_path / "a" / "b" / "c" / "dest"
    report = unpack_bundle(REJECTED, dest, TRUST)
    assert not report.ok and report.error.code == "E_SIGNATURE_UNTRUSTED"
    assert list(tmp_path.iterdir()) == []
    import oemkit.host.unpack as unpack

    def crash(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(unpack, "verify_open_bundle", crash)
    with pytest.raises(RuntimeError):
        unpack_bundle(VALID, dest, TRUST)
    assert list(tmp_path.iterdir()) == []


def test_unpack_keeps_parents_that_existed_and_succeeds_through_new_ones(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "mine").write_text("x")
    report = unpack_bundle(VALID, tmp_path / "a" / "b" / "dest", TRUST)
    assert report.ok and (tmp_path / "a" / "b" / "dest" / "model").is_dir()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b", "mine"]


def test_upgrade_and_rollback_of_a_missing_prefix_create_nothing(tmp_path):
    with pytest.raises(InputError) as err:
        install(VALID, tmp_path / "a" / "p", TRUST, upgrade=True, skip_smoke=True,
                state_path=state(tmp_path))
    assert err.value.code == "E_NOT_INSTALLED"
    with pytest.raises(InputError) as err:
        rollback(tmp_path / "a" / "p")
    assert err.value.code == "E_NO_PREVIOUS"
    assert list(tmp_path.iterdir()) == []


def test_a_prefix_named_through_a_link_is_the_users_choice(tmp_path):
    """The --prefix path itself may be a link (the user named it); links inside are not
    followed."""
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "p")
    report = install(VALID, tmp_path / "p", TRUST, skip_smoke=True, state_path=state(tmp_path))
    assert report.ok, report.to_dict()
    assert status(tmp_path / "p")["current"] == status(real)["current"] is not None


def test_rollback_cleans_the_journal_first_and_reports_it(tmp_path):
    prefix = _installed(tmp_path)
    v2 = tmp_path / "v2.oemb"
    v2.write_bytes(make_corpus.Forge(make_corpus.load_keys()).bundle(
        manifest_edit=lambda d: d.update(version="1.0.1")))
    assert install(v2, prefix, TRUST, upgrade=True, skip_smoke=True,
                   state_path=state(tmp_path)).ok
    (prefix / "slots" / ".tmp-killed").mkdir()
    _journal(prefix, "slots/.tmp-killed")
    report = rollback(prefix)
    assert report.ok and report.slot.startswith("hostile-1.0.0-")
    assert (report.checks[0].name, report.checks[0].detail) == (
        "cleanup", "removed leftovers of an interrupted run: slots/.tmp-killed")
    assert not (prefix / "slots" / ".tmp-killed").exists()
