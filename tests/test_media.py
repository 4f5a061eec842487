"""Removable media: split a bundle into parts and an index, join them back (issue 8).

Small parts (4 KiB) of the signed example bundle, so every case runs in milliseconds.
Every bad-part case asserts its code and that the error names the file at fault; parts
are never modified, and no output appears unless the joined bundle verifies.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from helpers import EXAMPLE
from oemkit.cli.media import join as join_command
from oemkit.cli.media import split as split_command
from oemkit.errors import EnvironmentProblem, InputError, UsageError, VerificationError
from oemkit.host import media
from oemkit.host.media import (
    HEADER_SIZE,
    PartsError,
    join_parts,
    parse_size,
    split_bundle,
    work_dir_for,
)
from oemkit.release.bundle import build_bundle
from oemkit.release.sign import sign_bundle

SIZE = 4096


def _snapshot(paths):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


@pytest.fixture
def split4k(signed_bundle, tmp_path):
    """The signed example split into 4 KiB parts (unsigned index) under tmp/media."""
    result = split_bundle(signed_bundle, SIZE, tmp_path / "media")
    assert len(result.parts) >= 4
    return result


def _join(split, trust_file, tmp_path, parts=None, **kw):
    parts = list(split.parts) if parts is None else parts
    return join_parts([split.index, *parts], trust_file, out=tmp_path / "joined.oemb", **kw)


def _problem(exc: PartsError, code: str, file: Path | str) -> None:
    assert exc.code == code or code in {p.code for p in exc.problems}, exc.to_dict()
    assert str(file) in exc.message, exc.message
    assert any(p.code == code and p.file == str(file) for p in exc.problems), exc.to_dict()


# --------------------------------------------------------------------------- happy paths


def test_split_join_round_trip_is_byte_identical(signed_bundle, split4k, trust_file, tmp_path):
    before = _snapshot([*split4k.parts, split4k.index])
    result = _join(split4k, trust_file, tmp_path)
    assert result.report.ok, result.report.to_dict()
    assert result.path.read_bytes() == signed_bundle.read_bytes()
    assert result.copied == list(range(1, len(split4k.parts) + 1)) and result.reused == []
    assert _snapshot([*split4k.parts, split4k.index]) == before  # parts are only read
    assert not work_dir_for(result.path).exists()
    assert [c.name for c in result.report.checks][-1] == "join"


def test_parts_have_the_documented_layout(signed_bundle, split4k):
    data = signed_bundle.read_bytes()
    idx = split4k.index_data
    assert idx.bundle_sha256 == hashlib.sha256(data).hexdigest()
    assert sum(p.length for p in idx.parts) == len(data)
    for entry, path in zip(idx.parts, split4k.parts, strict=True):
        raw = path.read_bytes()
        assert path.name == f"{signed_bundle.name}.part{entry.number:03d}" == entry.file
        assert len(raw) == entry.size <= SIZE and raw[:8] == b"OEMKPART"
        assert hashlib.sha256(raw).hexdigest() == entry.sha256  # sha256sum-checkable
        assert raw[HEADER_SIZE:] == data[entry.offset:entry.offset + entry.length]
    envelope = json.loads(split4k.index.read_bytes())
    assert envelope["signatures"] == []  # unsigned: bound to the manifest digest
    assert envelope["payloadType"] == "application/vnd.oemkit.media-index+json"


def test_split_is_reproducible(signed_bundle, tmp_path):
    one = split_bundle(signed_bundle, SIZE, tmp_path / "a")
    two = split_bundle(signed_bundle, SIZE, tmp_path / "b")
    for a, b in zip([one.index, *one.parts], [two.index, *two.parts], strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_signed_index_is_checked_against_the_trust_root(signed_bundle, keys, trust_file,
                                                        tmp_path):
    split = split_bundle(signed_bundle, SIZE, tmp_path / "media", keys=[keys["bundle"]])
    assert split.signed_by == (keys["bundle"].keyid,)
    result = _join(split, trust_file, tmp_path)
    assert result.report.ok and result.index_signers == (keys["bundle"].keyid,)
    assert result.path.read_bytes() == signed_bundle.read_bytes()


def test_tampered_signed_index_is_refused(signed_bundle, keys, trust_file, tmp_path):
    split = split_bundle(signed_bundle, SIZE, tmp_path / "media", keys=[keys["bundle"]])
    envelope = json.loads(split.index.read_bytes())
    import base64

    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["parts"][1]["sha256"] = "0" * 64  # point the engineer at a forged part 2
    from oemkit._canonical import canonical_json

    envelope["payload"] = base64.b64encode(canonical_json(payload)).decode()
    split.index.write_text(json.dumps(envelope))
    with pytest.raises(VerificationError) as err:
        _join(split, trust_file, tmp_path)
    assert err.value.code == "E_INDEX_SIGNATURE" and err.value.exit_code == 1
    assert not (tmp_path / "joined.oemb").exists()


def test_index_signed_by_an_untrusted_key_is_refused(signed_bundle, keys, trust_file, tmp_path):
    split = split_bundle(signed_bundle, SIZE, tmp_path / "media", keys=[keys["license"]])
    with pytest.raises(VerificationError) as err:
        _join(split, trust_file, tmp_path)
    assert err.value.code == "E_INDEX_SIGNATURE"


def test_parts_in_any_argument_order_and_index_found_beside_them(signed_bundle, split4k,
                                                                  trust_file, tmp_path):
    result = join_parts(list(reversed(split4k.parts)), trust_file, out=tmp_path / "j.oemb")
    assert result.report.ok and result.path.read_bytes() == signed_bundle.read_bytes()


# --------------------------------------------------------------------------- bad parts


def test_missing_part_is_named_and_join_resumes(signed_bundle, split4k, trust_file, tmp_path):
    third = split4k.parts[2]
    others = [p for p in split4k.parts if p != third]
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, others)
    _problem(err.value, "E_PART_MISSING", third.name)
    assert err.value.exit_code == 1 and "part 3 of" in err.value.message
    assert "kept" in err.value.hint
    assert not (tmp_path / "joined.oemb").exists()
    # Next medium: only the missing part (and the index) this time.
    result = _join(split4k, trust_file, tmp_path, [third])
    assert result.report.ok
    assert result.copied == [3] and result.reused == [n for n in range(1, len(others) + 2)
                                                      if n != 3]
    assert result.path.read_bytes() == signed_bundle.read_bytes()


def test_one_medium_at_a_time(signed_bundle, split4k, trust_file, tmp_path):
    out = tmp_path / "joined.oemb"
    for i, part in enumerate(split4k.parts, 1):
        if i < len(split4k.parts):
            with pytest.raises(PartsError) as err:
                join_parts([split4k.index, part], trust_file, out=out)
            assert err.value.code == "E_PART_MISSING"
            assert f"{i} of {len(split4k.parts)} parts are checked" in err.value.hint
        else:  # the index was saved in the work area: the last medium needs only its part
            result = join_parts([part], trust_file, out=out)
            assert result.report.ok and out.read_bytes() == signed_bundle.read_bytes()


def test_corrupt_part_is_named_others_are_kept(signed_bundle, split4k, trust_file, tmp_path):
    bad = tmp_path / "bad" / split4k.parts[1].name
    bad.parent.mkdir()
    data = bytearray(split4k.parts[1].read_bytes())
    data[HEADER_SIZE + 100] ^= 0x01
    bad.write_bytes(bytes(data))
    parts = [bad if p.name == bad.name else p for p in split4k.parts]
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, parts)
    _problem(err.value, "E_PART_CORRUPT", bad)
    assert "SHA-256" in err.value.message and err.value.member == str(bad)
    assert bad.read_bytes() == bytes(data)  # never modified, never deleted
    result = _join(split4k, trust_file, tmp_path, [split4k.parts[1]])  # a good copy
    assert result.report.ok and result.copied == [2]
    assert result.path.read_bytes() == signed_bundle.read_bytes()


def test_truncated_part_is_named(split4k, trust_file, tmp_path):
    cut = tmp_path / split4k.parts[1].name
    cut.write_bytes(split4k.parts[1].read_bytes()[:1000])
    parts = [cut if p.name == cut.name else p for p in split4k.parts]
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, parts)
    _problem(err.value, "E_PART_TRUNCATED", cut)
    assert "1000 of" in err.value.message
    assert not work_dir_for(tmp_path / "joined.oemb").exists()  # nothing copied


def test_part_cut_inside_its_header_is_truncated(split4k, trust_file, tmp_path):
    cut = tmp_path / split4k.parts[0].name
    cut.write_bytes(split4k.parts[0].read_bytes()[:50])
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, [cut, *split4k.parts[1:]])
    _problem(err.value, "E_PART_TRUNCATED", cut)


def test_part_of_another_bundle_is_foreign(split4k, keys, trust_file, tmp_path):
    spec = tmp_path / "other-spec"
    shutil.copytree(EXAMPLE, spec)
    config = spec / "config" / "config.json"  # another valid config: another bundle
    config.write_text(config.read_text().replace('"threads": 1', '"threads": 3'))
    other = build_bundle(spec / "bundle.yaml", tmp_path / "other").path
    sign_bundle(other, [keys["bundle"]])
    theirs = split_bundle(other, SIZE, tmp_path / "other-media")
    stranger = theirs.parts[1]
    parts = [stranger if p.name == stranger.name else p for p in split4k.parts]
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, parts)
    _problem(err.value, "E_PART_FOREIGN", stranger)
    assert "another bundle" in err.value.message


def test_part_of_another_split_of_the_same_bundle_is_foreign(signed_bundle, split4k, trust_file,
                                                             tmp_path):
    other = split_bundle(signed_bundle, 2 * SIZE, tmp_path / "big-parts")
    stranger = other.parts[0]
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, [stranger, *split4k.parts[1:]])
    _problem(err.value, "E_PART_FOREIGN", stranger)
    assert "another split of this bundle" in err.value.message


def test_swapped_parts_are_named(split4k, trust_file, tmp_path):
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    two, three = split4k.parts[1], split4k.parts[2]
    shutil.copyfile(two, swapped / three.name)   # part 2's bytes under part 3's name
    shutil.copyfile(three, swapped / two.name)
    parts = [swapped / p.name if p in (two, three) else p for p in split4k.parts]
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, parts)
    _problem(err.value, "E_PART_ORDER", swapped / three.name)
    _problem(err.value, "E_PART_ORDER", swapped / two.name)
    assert "holds part 2" in err.value.message


def test_duplicated_part_is_named(split4k, trust_file, tmp_path):
    copy = tmp_path / "second-copy.bin"
    shutil.copyfile(split4k.parts[1], copy)
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, [*split4k.parts, copy])
    _problem(err.value, "E_PART_DUPLICATE", copy)
    assert str(split4k.parts[1]) in err.value.message
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, [*split4k.parts, split4k.parts[0]])
    assert err.value.code == "E_PART_DUPLICATE"


def test_not_a_part_at_all(split4k, trust_file, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"shopping list\n" * 400)
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, [*split4k.parts, junk])
    _problem(err.value, "E_PART_CORRUPT", junk)
    assert "not an oemkit part" in err.value.message


def test_every_problem_is_reported_at_once(split4k, trust_file, tmp_path):
    cut = tmp_path / split4k.parts[0].name
    cut.write_bytes(split4k.parts[0].read_bytes()[:-10])
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(5000))
    with pytest.raises(PartsError) as err:
        _join(split4k, trust_file, tmp_path, [cut, junk, *split4k.parts[1:]])
    codes = {p.code for p in err.value.problems}
    assert codes == {"E_PART_TRUNCATED", "E_PART_CORRUPT"}
    assert "2 part problem(s)" in err.value.message
    doc = err.value.to_dict()
    assert len(doc["problems"]) == 2 and doc["code"] == "E_PART_TRUNCATED"


def test_index_missing(split4k, trust_file, tmp_path):
    split4k.index.unlink()
    with pytest.raises(InputError) as err:
        join_parts(split4k.parts, trust_file, out=tmp_path / "j.oemb")
    assert err.value.code == "E_INDEX_MISSING" and err.value.exit_code == 3


def test_damaged_index(split4k, trust_file, tmp_path):
    split4k.index.write_bytes(split4k.index.read_bytes()[:-30])
    with pytest.raises(VerificationError) as err:
        _join(split4k, trust_file, tmp_path)
    assert err.value.code == "E_INDEX_INVALID"


def test_joined_bundle_that_does_not_verify_is_not_written(tmp_path, trust_file):
    unsigned = build_bundle(EXAMPLE / "bundle.yaml", tmp_path / "dist").path
    split = split_bundle(unsigned, SIZE, tmp_path / "media")
    result = _join(split, trust_file, tmp_path)
    assert not result.report.ok and result.report.error.code == "E_UNSIGNED"
    assert not (tmp_path / "joined.oemb").exists()
    assert not work_dir_for(tmp_path / "joined.oemb").exists()


# --------------------------------------------------------------------------- disk full


def test_disk_full_mid_join_leaves_no_output(split4k, trust_file, tmp_path, monkeypatch):
    real = os.pwrite
    written = {"n": 0}

    def pwrite(fd, data, offset):
        if written["n"] > 2 * SIZE:
            raise OSError(errno.ENOSPC, "No space left on device")
        written["n"] += len(data)
        return real(fd, data, offset)

    monkeypatch.setattr(media.os, "pwrite", pwrite)
    before = _snapshot([*split4k.parts, split4k.index])
    listing = sorted(tmp_path.iterdir())
    with pytest.raises(EnvironmentProblem) as err:
        _join(split4k, trust_file, tmp_path)
    assert err.value.code == "E_WRITE" and err.value.exit_code == 4
    assert "No space left" in err.value.message and "free at least" in err.value.hint
    assert sorted(tmp_path.iterdir()) == listing  # no output, no work area
    assert _snapshot([*split4k.parts, split4k.index]) == before
    monkeypatch.setattr(media.os, "pwrite", real)
    assert _join(split4k, trust_file, tmp_path).report.ok  # after freeing space


def test_too_little_free_space_is_refused_before_copying(split4k, trust_file, tmp_path,
                                                         monkeypatch):
    class Tiny:
        f_bavail, f_frsize = 1, 4096

    monkeypatch.setattr(media.os, "statvfs", lambda path: Tiny())
    listing = sorted(tmp_path.iterdir())
    with pytest.raises(EnvironmentProblem) as err:
        _join(split4k, trust_file, tmp_path)
    assert err.value.code == "E_WRITE" and "bytes needed" in err.value.message
    assert sorted(tmp_path.iterdir()) == listing


def test_join_interrupted_mid_part_resumes(signed_bundle, split4k, trust_file, tmp_path,
                                           monkeypatch):
    real = media._Work.copy_part
    calls = {"n": 0}

    def flaky(self, path, entry, progress):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, path, entry, progress)

    monkeypatch.setattr(media._Work, "copy_part", flaky)
    with pytest.raises(KeyboardInterrupt):
        _join(split4k, trust_file, tmp_path)
    assert not (tmp_path / "joined.oemb").exists()
    monkeypatch.setattr(media._Work, "copy_part", real)
    result = _join(split4k, trust_file, tmp_path)
    assert result.report.ok and result.reused == [1, 2]
    assert result.path.read_bytes() == signed_bundle.read_bytes()


def test_split_disk_full_is_an_environment_error(signed_bundle, tmp_path, monkeypatch):
    import oemkit._fs as fs

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs.os, "replace", full)
    with pytest.raises(EnvironmentProblem) as err:
        split_bundle(signed_bundle, SIZE, tmp_path / "media")
    assert err.value.code == "E_WRITE"
    assert list((tmp_path / "media").iterdir()) == []


# --------------------------------------------------------------------------- sizes and CLI


@pytest.mark.parametrize(("text", "value"), [
    ("4G", 4 << 30), ("4GiB", 4 << 30), ("4000M", 4000 << 20), ("4700MB", 4_700_000_000),
    ("1.5G", 3 << 29), ("65536", 65536), ("64k", 65536),
])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["four", "4X", "", "-1G"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError):
        parse_size(text)


def test_part_size_too_small(signed_bundle, tmp_path):
    with pytest.raises(UsageError):
        split_bundle(signed_bundle, 1000, tmp_path)


app = typer.Typer()
app.command()(split_command)
app.command()(join_command)
runner = CliRunner()


def test_cli_split_and_join(signed_bundle, trust_file, tmp_path):
    media_dir = tmp_path / "usb"
    done = runner.invoke(app, ["split", str(signed_bundle), "--size", "4k", "--out",
                               str(media_dir), "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["ok"] and len(doc["parts"]) >= 4 and doc["signed_by"] == []
    parts = sorted(str(p) for p in media_dir.iterdir())
    out = tmp_path / "back.oemb"
    joined = runner.invoke(app, ["join", *parts, "--trust", str(trust_file), "--out", str(out),
                                 "--json"])
    assert joined.exit_code == 0, joined.output
    doc = json.loads(joined.stdout)
    assert doc["ok"] and doc["report"]["verdict"] == "verified"
    assert out.read_bytes() == signed_bundle.read_bytes()
    assert "JOINED" in joined.stderr


def test_cli_join_names_bad_parts_in_json(split4k, trust_file, tmp_path):
    parts = [str(split4k.index), *map(str, split4k.parts[:-1])]
    result = runner.invoke(app, ["join", *parts, "--trust", str(trust_file), "--out",
                                 str(tmp_path / "x.oemb"), "--json"])
    assert result.exit_code == 1, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_PART_MISSING"
    assert error["problems"][0]["file"] == split4k.parts[-1].name
    assert "E_PART_MISSING" in result.stderr and split4k.parts[-1].name in result.stderr


def test_cli_join_disk_full_exits_4(split4k, trust_file, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(media.os, "pwrite", full)
    result = runner.invoke(app, ["join", str(split4k.index), *map(str, split4k.parts),
                                 "--trust", str(trust_file), "--out", str(tmp_path / "x.oemb")])
    assert result.exit_code == 4, result.output
    assert "E_WRITE" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "x.oemb").exists()


def test_cli_modules_stay_light():
    import subprocess
    import sys

    code = ("import sys, oemkit.cli.media; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('zstandard', 'cryptography', 'securesystemslib', 'jsonschema_rs')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
