"""split/join against the outside hostile review (issue 13): High class 5 (the unsigned
index chose the output file and join replaced it) and the media part of class 2 (a
75,000-part unsigned index cost join 179 MiB before any check).

How each class is closed, and the tests that hold it:

- the output name: ``--out``, or NAME-VERSION.oemb of the *verified* manifest; nothing
  in the index names a path, and an existing file is never replaced unless ``force``
  (never a directory or one of join's inputs, even then);
- the index: bounded in bytes by ``--max-parts`` before it is parsed, its structure
  counted before the part list is parsed, signatures checked over the exact payload
  first, every field an exact JSON integer or plain name in range;
- the work area: created by join, adopted only when it holds join's own files, never
  written through a symbolic link; its state file is untrusted too.

The corpus cases (tests/hostile/review_media.py) run through the CLI; these tests check
what the corpus cannot: files left untouched, costs measured in a child process.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hostile import make_corpus, review_media
from oemkit._canonical import canonical_json
from oemkit.errors import InputError, UsageError, VerificationError
from oemkit.host import media
from oemkit.host.media import (
    MAX_PARTS,
    PartsError,
    Problem,
    default_work_dir,
    index_byte_limit,
    join_parts,
    parse_size,
    read_index,
    split_bundle,
)
from oemkit.verify.trust import parse_root

SIZE = 4096
CORPUS = make_corpus.CORPUS
OUT_NAME = "example-0.2.0.oemb"  # NAME-VERSION.oemb of the signed example's manifest


def _snapshot(*paths: Path) -> dict[Path, tuple[bytes, int, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in paths}


def _payload(index: Path) -> dict:
    return json.loads(base64.b64decode(json.loads(index.read_bytes())["payload"]))


def _write_index(index: Path, payload: dict | bytes) -> None:
    raw = payload if isinstance(payload, bytes) else canonical_json(payload)
    index.write_bytes(review_media.envelope(raw))


@pytest.fixture
def split4k(signed_bundle, tmp_path):
    return split_bundle(signed_bundle, SIZE, tmp_path / "media")


@pytest.fixture
def pinned(trust_file):
    return parse_root(trust_file.read_bytes()).root


@pytest.fixture
def host(trust_file, tmp_path, monkeypatch) -> Path:
    """The current directory of a host: its own folder, holding the pinned trust-root.json
    (tmp_path itself holds the signed bundle under the very name join gives its output)."""
    folder = tmp_path / "host"
    folder.mkdir()
    (folder / "trust-root.json").write_bytes(trust_file.read_bytes())
    monkeypatch.chdir(folder)
    return folder


# --------------------------------------------------------------------------- the output name


def test_unsigned_index_cannot_name_the_output(signed_bundle, split4k, host):
    """The review: an unsigned index naming trust-root.json as its bundle file, joined in
    the folder holding the pinned trust-root.json, replaced it. Now the bundle is named
    after its verified manifest and the trust root is untouched."""
    payload = _payload(split4k.index)
    count = len(payload["parts"])
    payload["bundle"]["file"] = "trust-root.json"
    renamed = []
    for part, path in zip(payload["parts"], split4k.parts, strict=True):
        part["file"] = media.part_name("trust-root.json", part["number"], count)
        renamed.append(path.rename(path.with_name(part["file"])))
    _write_index(split4k.index, payload)
    pinned = host / "trust-root.json"
    before = _snapshot(pinned, *renamed)
    result = join_parts([split4k.index, *renamed], "trust-root.json")
    assert result.report.ok, result.report.to_dict()
    assert result.path == host / OUT_NAME
    assert result.path.read_bytes() == signed_bundle.read_bytes()
    assert _snapshot(pinned, *renamed) == before
    assert sorted(p.name for p in host.iterdir()) == [OUT_NAME, "trust-root.json"]


def test_default_name_never_replaces_an_existing_file(signed_bundle, split4k, trust_file,
                                                      host):
    theirs = host / OUT_NAME
    theirs.write_bytes(b"someone else's file\n")
    before = _snapshot(theirs)
    listing = sorted(host.iterdir())
    with pytest.raises(InputError) as err:
        join_parts([split4k.index, *split4k.parts], trust_file)
    assert err.value.code == "E_OUTPUT_EXISTS" and err.value.exit_code == 3
    assert str(theirs) in err.value.message and "--force" in err.value.hint
    assert _snapshot(theirs) == before
    assert sorted(host.iterdir()) == listing  # refused before a byte was copied
    result = join_parts([split4k.index, *split4k.parts], trust_file, force=True)
    assert result.report.ok and result.path == theirs
    assert theirs.read_bytes() == signed_bundle.read_bytes()


def test_out_naming_an_existing_file_is_refused_unless_force(signed_bundle, split4k,
                                                             trust_file, tmp_path):
    out = tmp_path / "taken.oemb"
    out.write_bytes(b"precious")
    with pytest.raises(InputError) as err:
        join_parts([split4k.index, *split4k.parts], trust_file, out=out)
    assert err.value.code == "E_OUTPUT_EXISTS" and out.read_bytes() == b"precious"
    assert not media.work_dir_for(out).exists()
    link = tmp_path / "dangling.oemb"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(InputError) as err:
        join_parts([split4k.index, *split4k.parts], trust_file, out=link)
    assert err.value.code == "E_OUTPUT_EXISTS" and not (tmp_path / "nowhere").exists()
    result = join_parts([split4k.index, *split4k.parts], trust_file, out=out, force=True)
    assert result.report.ok and out.read_bytes() == signed_bundle.read_bytes()


def test_out_directory_gets_the_manifest_name(signed_bundle, split4k, trust_file, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    result = join_parts([split4k.index, *split4k.parts], trust_file, out=folder)
    assert result.report.ok and result.path == folder / OUT_NAME
    assert sorted(p.name for p in folder.iterdir()) == [OUT_NAME]


def test_force_never_replaces_an_input_or_a_directory(split4k, trust_file, tmp_path):
    before = _snapshot(trust_file, split4k.index, *split4k.parts)
    for victim in (trust_file, split4k.index, split4k.parts[0]):
        with pytest.raises(UsageError) as err:
            join_parts([split4k.index, *split4k.parts], trust_file, out=victim, force=True)
        assert err.value.code == "E_USAGE" and "one of join's inputs" in err.value.message
    assert _snapshot(trust_file, split4k.index, *split4k.parts) == before
    folder = tmp_path / "incoming"
    (folder / OUT_NAME).mkdir(parents=True)
    with pytest.raises(InputError) as err:
        join_parts([split4k.index, *split4k.parts], trust_file, out=folder, force=True)
    assert err.value.code == "E_OUTPUT_EXISTS" and "a directory" in err.value.message


def test_name_taken_while_joining_keeps_the_verified_work(signed_bundle, split4k, trust_file,
                                                         tmp_path, monkeypatch):
    out = tmp_path / "joined.oemb"
    real = media._Work.publish

    def racing(self, target, force):
        target.write_bytes(b"arrived meanwhile")  # another program takes the name
        return real(self, target, force)

    monkeypatch.setattr(media._Work, "publish", racing)
    with pytest.raises(InputError) as err:
        join_parts([split4k.index, *split4k.parts], trust_file, out=out)
    assert err.value.code == "E_OUTPUT_EXISTS" and "kept" in err.value.hint
    assert out.read_bytes() == b"arrived meanwhile"
    monkeypatch.setattr(media._Work, "publish", real)
    out.unlink()
    result = join_parts([split4k.index], trust_file, out=out)  # nothing copied again
    assert result.report.ok and result.copied == [] and len(result.reused) == len(split4k.parts)
    assert out.read_bytes() == signed_bundle.read_bytes()


def test_output_of_an_interrupted_publish_is_recognised(signed_bundle, split4k, trust_file,
                                                        tmp_path, monkeypatch):
    """Interrupted between link(2) and removing the work area: the output is join's own
    (the same inode as the work area's data), so the next run finishes, no --force."""
    out = tmp_path / "joined.oemb"

    def interrupted(self, target, force):
        os.link(self.data, target)
        raise KeyboardInterrupt

    monkeypatch.setattr(media._Work, "publish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        join_parts([split4k.index, *split4k.parts], trust_file, out=out)
    monkeypatch.undo()
    assert out.exists() and media.work_dir_for(out).exists()
    result = join_parts([split4k.index], trust_file, out=out)
    assert result.report.ok and out.read_bytes() == signed_bundle.read_bytes()
    assert not media.work_dir_for(out).exists()


def test_file_system_without_hard_links(signed_bundle, split4k, trust_file, tmp_path,
                                        monkeypatch):
    import errno

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(media.os, "link", no_links)
    out = tmp_path / "joined.oemb"
    result = join_parts([split4k.index, *split4k.parts], trust_file, out=out)
    assert result.report.ok and out.read_bytes() == signed_bundle.read_bytes()


def test_resume_without_out_finds_the_index_through_the_parts(signed_bundle, split4k,
                                                              trust_file, host):
    first, rest = split4k.parts[0], split4k.parts[1:]
    with pytest.raises(PartsError) as err:
        join_parts([split4k.index, first], trust_file)
    sha = split4k.index_data.bundle_sha256
    area = default_work_dir(host, sha)
    assert err.value.code == "E_PART_MISSING" and str(area) in err.value.hint
    assert sorted(p.name for p in area.iterdir()) == ["data", "index.json", "lock",
                                                      "state.json"]
    split4k.index.unlink()  # the next medium carries no index: it is in the work area
    result = join_parts(rest, trust_file)
    assert result.report.ok and result.path == host / OUT_NAME
    assert result.reused == [1] and not area.exists()


def test_cli_join_refuses_existing_out_and_force_replaces(signed_bundle, split4k, trust_file,
                                                          tmp_path):
    from oemkit.cli import app

    out = tmp_path / "taken.oemb"
    out.write_bytes(b"precious")
    argv = ["join", str(split4k.index), *map(str, split4k.parts), "--trust", str(trust_file),
            "--out", str(out), "--json"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["error"]["code"] == "E_OUTPUT_EXISTS"
    assert out.read_bytes() == b"precious"
    result = CliRunner().invoke(app, [*argv, "--force"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["error"] is None and doc["bundle"] == str(out)
    assert out.read_bytes() == signed_bundle.read_bytes()


def test_corpus_case_leaves_the_trust_root_untouched(tmp_path):
    """review-media-index-names-trust-root.json, run as test_corpus.py runs it, and then
    the files it aims at compared byte for byte."""
    from hostile.test_corpus import _expand, _prepare
    from oemkit.cli import app

    case = next(c for c in json.loads((CORPUS / "INDEX.json").read_text())["cases"]
                if c["file"] == "review-media-index-names-trust-root.json")
    _prepare(case, tmp_path)
    work = tmp_path / "work"
    pinned = (work / "trust-root.json").read_bytes()
    assert pinned == (CORPUS / "trust-root.json").read_bytes()
    result = CliRunner().invoke(app, _expand(case, tmp_path))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["bundle"] == str(work / review_media.OUTPUT)
    assert (work / "trust-root.json").read_bytes() == pinned
    assert (work / review_media.OUTPUT).read_bytes() == (
        work / "trust-root.json.part001").read_bytes()[media.HEADER_SIZE:]


# --------------------------------------------------------------------------- the index


def _genuine_text(split4k) -> str:
    return canonical_json(_payload(split4k.index)).decode()


@pytest.mark.parametrize(("old", "new", "fragment"), [
    ('"part_size":4096', '"part_size":1e400', "beyond a float's range"),
    ('"part_size":4096', '"part_size":4096.0', "part_size is 4096.0, not a whole number"),
    ('"part_size":4096', '"part_size":true', "part_size is True"),
    ('"part_size":4096', '"part_size":"4096"', "part_size is '4096'"),
    ('"part_size":4096', '"part_size":' + "9" * 5000, "4300 digits"),
    ('"part_size":4096', f'"part_size":{1 << 70}', "a 71-bit number"),
    ('"part_size":4096', '"part_size":100', "part_size is 100, must be 4096.."),
    ('"header_size":128', '"header_size":128.0', "header_size is 128.0"),
    ('"number":1,', '"number":true,', "parts[0].number is True"),
    ('"offset":0,', '"offset":-0.0,', "parts[0].offset is -0.0"),
    ('"version":1}', '"version":1.0}', "version is 1.0"),
])
def test_every_number_is_an_exact_integer_in_range(split4k, pinned, old, new, fragment):
    text = _genuine_text(split4k)
    assert text.count(old) == 1, old
    data = review_media.envelope(text.replace(old, new).encode())
    with pytest.raises(VerificationError) as err:
        read_index(data, pinned)
    assert err.value.code == "E_INDEX_INVALID" and err.value.exit_code == 1
    assert fragment in err.value.message, err.value.message


NOT_JSON = [b"{", b"\xff\xfe{}", b"[" * 100 + b"]" * 100, b'{"a": 1, "a": 2}',
            b'{"a": NaN}']


@pytest.mark.parametrize("raw", NOT_JSON)
def test_an_index_that_is_not_json_is_e_index_invalid_exit_1(pinned, raw):
    """Issue 14: E_INDEX_INVALID has one exit code. An envelope or a payload that is not
    strict JSON is a "no" (1) like every other malformed index, never bad input (3)."""
    for data in (raw, review_media.envelope(raw)):
        with pytest.raises(VerificationError) as err:
            read_index(data, pinned)
        assert err.value.code == "E_INDEX_INVALID" and err.value.exit_code == 1, data[:20]
        assert "is not a valid media index" in err.value.message


def test_cli_join_of_an_index_that_is_not_json_exits_1(split4k, trust_file, tmp_path):
    from oemkit.cli import app

    split4k.index.write_bytes(b"{not json")
    result = CliRunner().invoke(app, ["join", str(split4k.index), *map(str, split4k.parts),
                                      "--trust", str(trust_file), "--out",
                                      str(tmp_path / "j.oemb"), "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["error"]["code"] == "E_INDEX_INVALID"


def test_index_fields_are_exact(split4k, pinned):
    payload = _payload(split4k.index)
    cases = [
        (lambda d: d["parts"][1].__setitem__("file", "x.part002"), "split names it"),
        (lambda d: d["bundle"].__setitem__("file", "a/b.oemb"), "not a plain file name"),
        (lambda d: d["bundle"].__setitem__("name", "../x"), "bundle.name '../x' is not valid"),
        (lambda d: d["bundle"].__setitem__("extra", 1), "unknown ['extra']"),
        (lambda d: d["parts"][0].pop("sha256"), "missing ['sha256']"),
        (lambda d: d.__setitem__("parts", {}), "not a non-empty list"),
        (lambda d: d["parts"][0].__setitem__("size", d["parts"][0]["size"] + 1),
         "parts[0].size"),
    ]
    for edit, fragment in cases:
        doc = json.loads(json.dumps(payload))
        edit(doc)
        with pytest.raises(VerificationError) as err:
            read_index(review_media.envelope(canonical_json(doc)), pinned)
        assert err.value.code == "E_INDEX_INVALID", fragment
        assert fragment in err.value.message, (fragment, err.value.message)
    spaced = review_media.envelope(json.dumps(payload, indent=1).encode())
    with pytest.raises(VerificationError) as err:
        read_index(spaced, pinned)
    assert err.value.code == "E_INDEX_INVALID" and "canonical" in err.value.message


def test_signatures_are_checked_before_the_payload_is_parsed(keys, pinned, monkeypatch):
    from oemkit import _canonical
    from oemkit.crypto.dsse import make_envelope

    garbage = b'{"parts": [' + b"[" * 100
    stranger = make_corpus.seeded_key(7, "stranger")
    for key, code in ((stranger, "E_INDEX_SIGNATURE"), (keys["bundle"], "E_INDEX_INVALID")):
        env = make_envelope([key], media.INDEX_PAYLOAD_TYPE, garbage)
        data = review_media.envelope(garbage, [{"keyid": key.keyid, "sig": base64.b64encode(
            env.signatures[0]).decode()}])
        parsed: list[str] = []
        real = _canonical.parse_json

        def spy(raw, *, what, code="E_JSON", _real=real, _parsed=parsed):
            _parsed.append(what)
            return _real(raw, what=what, code=code)

        monkeypatch.setattr(_canonical, "parse_json", spy)
        with pytest.raises(VerificationError) as err:
            read_index(data, pinned)
        monkeypatch.setattr(_canonical, "parse_json", real)
        assert err.value.code == code
        assert len(parsed) == (1 if code == "E_INDEX_SIGNATURE" else 2), parsed


def test_index_bytes_are_bounded_before_parsing(split4k, pinned, trust_file, tmp_path,
                                                monkeypatch):
    limit = index_byte_limit(10)
    assert limit == media.INDEX_BASE_BYTES + 10 * media.INDEX_BYTES_PER_PART
    data = split4k.index.read_bytes()
    padded = data[:-2] + b" " * (limit - len(data) + 1) + b"}\n"
    assert len(padded) == limit + 1
    from oemkit import _canonical

    monkeypatch.setattr(_canonical, "parse_json", None)  # must not be reached
    with pytest.raises(InputError) as err:
        read_index(padded, pinned, max_parts=10)
    assert err.value.code == "E_TOO_LARGE" and err.value.exit_code == 3
    assert "--max-parts" in err.value.hint
    monkeypatch.undo()
    split4k.index.write_bytes(padded)
    with pytest.raises(InputError) as err:
        join_parts([split4k.index, *split4k.parts], trust_file, out=tmp_path / "j.oemb",
                   max_parts=10)
    assert err.value.code == "E_TOO_LARGE" and str(split4k.index) in err.value.message
    assert read_index(padded, pinned).index == split4k.index_data  # the default allows it


def test_structure_is_counted_before_the_part_list_is_parsed(pinned, monkeypatch):
    from oemkit import _canonical

    real = _canonical.parse_json
    for payload in (b"[" + b",".join([b"{}"] * 50) + b"]", b"[" + b"1," * 100 + b"1]"):
        calls: list[str] = []

        def spy(raw, *, what, code="E_JSON", _calls=calls):
            _calls.append(what)
            return real(raw, what=what, code=code)

        monkeypatch.setattr(_canonical, "parse_json", spy)
        with pytest.raises(VerificationError) as err:
            read_index(review_media.envelope(payload), pinned, max_parts=5)
        monkeypatch.setattr(_canonical, "parse_json", real)
        assert err.value.code == "E_LIMIT_PARTS" and len(calls) == 1  # the envelope only


def test_part_count_limit_on_split_and_join(signed_bundle, split4k, trust_file, tmp_path,
                                            pinned):
    count = len(split4k.parts)
    with pytest.raises(VerificationError) as err:
        read_index(split4k.index.read_bytes(), pinned, max_parts=count - 1)
    assert err.value.code == "E_LIMIT_PARTS"  # exact for a real index, before parsing it
    assert f"more than {count - 1} parts (about {count}" in err.value.message
    with pytest.raises(VerificationError) as err:  # the parsed form has the same bound
        media.MediaIndex.from_dict(_payload(split4k.index), max_parts=count - 1)
    assert err.value.code == "E_LIMIT_PARTS" and f"lists {count} parts" in err.value.message
    assert read_index(split4k.index.read_bytes(), pinned, max_parts=count).index.parts
    with pytest.raises(UsageError) as err:
        split_bundle(signed_bundle, SIZE, tmp_path / "again", max_parts=count - 1)
    assert err.value.code == "E_USAGE" and "--max-parts" in err.value.message
    assert not (tmp_path / "again").exists()


def test_split_refuses_a_bundle_file_name_join_would_refuse(signed_bundle, tmp_path):
    odd = signed_bundle.rename(signed_bundle.with_name("my bundle.oemb"))
    with pytest.raises(UsageError) as err:
        split_bundle(odd, SIZE, tmp_path / "media")
    assert err.value.code == "E_USAGE" and "rename" in err.value.hint


def test_fifos_among_the_files_do_not_block_join(split4k, trust_file, tmp_path):
    fifo = tmp_path / "media" / "pipe.oemb.part009"
    os.mkfifo(fifo)
    with pytest.raises(PartsError) as err:
        join_parts([split4k.index, *split4k.parts, fifo], trust_file, out=tmp_path / "j.oemb")
    assert err.value.code == "E_PART_CORRUPT" and "not a regular file" in err.value.message
    index_fifo = tmp_path / "fifo.index.json"
    os.mkfifo(index_fifo)
    with pytest.raises(InputError) as err:
        join_parts([index_fifo, *split4k.parts], trust_file, out=tmp_path / "j.oemb")
    assert err.value.code == "E_NOT_A_FILE" and err.value.exit_code == 3


def test_cli_default_max_parts_is_the_library_default():
    from oemkit.cli import media as cli_media

    assert cli_media.MAX_PARTS.default == MAX_PARTS


def test_part_problems_message_is_bounded():
    problems = [Problem("E_PART_MISSING", n, f"b.oemb.part{n:03d}", f"part {n} of 50 is "
                        "missing") for n in range(1, 51)]
    exc = PartsError(problems)
    assert "50 part problem(s)" in exc.message and "… and 40 more" in exc.message
    assert "part010" in exc.message and "part011" not in exc.message
    assert len(exc.to_dict()["problems"]) == 50


# --------------------------------------------------------------------------- the work area


def test_work_area_symlink_is_refused(split4k, trust_file, tmp_path):
    out = tmp_path / "joined.oemb"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    media.work_dir_for(out).symlink_to(elsewhere)
    with pytest.raises(InputError) as err:
        join_parts([split4k.index, *split4k.parts], trust_file, out=out)
    assert err.value.code == "E_WORK_AREA" and "symbolic link" in err.value.message
    assert list(elsewhere.iterdir()) == [] and not out.exists()


def test_work_area_with_foreign_files_is_neither_used_nor_removed(split4k, trust_file,
                                                                  tmp_path):
    out = tmp_path / "joined.oemb"
    area = media.work_dir_for(out)
    area.mkdir()
    (area / "photos.db").write_bytes(b"precious")
    with pytest.raises(InputError) as err:
        join_parts([split4k.index, *split4k.parts], trust_file, out=out)
    assert err.value.code == "E_WORK_AREA" and "photos.db" in err.value.message
    assert sorted(p.name for p in area.iterdir()) == ["photos.db"]
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (area / "photos.db").unlink()
    (area / "data").symlink_to(victim)
    with pytest.raises(InputError) as err:
        join_parts([split4k.index, *split4k.parts], trust_file, out=out)
    assert err.value.code == "E_WORK_AREA" and victim.read_bytes() == b"precious"


@pytest.mark.parametrize("state", [
    '{"done": {"999": "%s", "-1": "%s", "0": "%s"}, "index_sha256": "@"}' % (("0" * 64,) * 3),
    '{"done": {"1": 1e400, "1e400": 1}, "index_sha256": "@"}',
    '{"done": [], "index_sha256": "@"}',
    "[" * 100_000 + "]" * 100_000,
    '{"done": {}, "index_sha256": "@"}' + " " * (1 << 20),
])
def test_hostile_state_file_reads_as_nothing_in_place(signed_bundle, split4k, trust_file,
                                                      tmp_path, state):
    from oemkit._canonical import sha256_hex

    out = tmp_path / "joined.oemb"
    area = media.work_dir_for(out)
    area.mkdir()
    (area / "data").write_bytes(bytes(split4k.index_data.bundle_size))
    (area / "state.json").write_text(state.replace("@", sha256_hex(split4k.index.read_bytes())))
    result = join_parts([split4k.index, *split4k.parts], trust_file, out=out)
    assert result.report.ok and result.reused == []
    assert out.read_bytes() == signed_bundle.read_bytes() and not area.exists()


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("text", ["9" * 400, "1" + "0" * 20, "99999999999T", "٤G", "4\u212a",
                                  "1.5e3M", "0x10", "1." + "5" * 20])
def test_parse_size_refuses_with_a_usage_error(text):
    with pytest.raises(UsageError) as err:
        parse_size(text)
    assert err.value.code == "E_USAGE" and err.value.exit_code == 2


def test_parse_size_is_exact():
    assert parse_size("1.5G") == 3 << 29
    assert parse_size("0.1K") == 102  # floor of 102.4, computed exactly
    assert parse_size("4.7GB") == 4_700_000_000
    assert parse_size("8191T") == 8191 << 40
    with pytest.raises(UsageError):
        parse_size("8192T")  # 2^53: beyond what an index can hold


# --------------------------------------------------------------------------- cost


_LAUNCHER = r"""
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
out = child.stdout.read()
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "stdout": out.decode(),
                  "rss": usage.ru_maxrss * 1024, "seconds": time.perf_counter() - start}))
"""


def _huge_index(path: Path, count: int, *, base: str = "x") -> Path:
    """An unsigned index of ``count`` one-byte parts, each entry as short as the format
    allows (the cheapest way to many parts, as the review built its 75,000)."""
    width = max(3, len(str(count)))
    parts = [{"file": f"{base}.oemb.part{i:0{width}d}", "length": 1, "number": i,
              "offset": i - 1, "sha256": "0" * 64, "size": 129} for i in range(1, count + 1)]
    doc = {"bundle": {"file": f"{base}.oemb", "manifest_sha256": "0" * 64, "name": "x",
                      "sha256": "0" * 64, "size": count, "version": "1"},
           "header_size": 128, "part_size": 4096, "parts": parts,
           "type": "oemkit-media-index", "version": 1}
    path.write_bytes(review_media.envelope(canonical_json(doc)))
    return path


def _join_cost(index: Path, tmp: Path) -> dict:
    """``oemkit join INDEX`` in a child process (started by a small launcher, so its
    ru_maxrss is its own, as in test_corpus.py): exit, stdout, peak RSS, seconds."""
    argv = [sys.executable, "-m", "oemkit", "join", str(index), "--trust",
            str(CORPUS / "trust-root.json"), "--out", str(tmp / "out.oemb"), "--json"]
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *argv], capture_output=True,
                          text=True, timeout=300, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize(("count", "code", "exit_code"), [
    (75_000, "E_TOO_LARGE", 3),        # the review's index: refused unread past its size
    (MAX_PARTS, "E_PART_MISSING", 1),  # the largest index the default allows: parsed whole
    (10_000, "E_LIMIT_PARTS", 1),      # just under the byte bound: refused by its structure
])
def test_a_huge_unsigned_index_costs_join_little(tmp_path, count, code, exit_code):
    """SECURITY.md promises about 100 MB per verdict; the review measured 179 MiB for an
    unsigned index of 75,000 parts (211 MiB here before the fix)."""
    index = _huge_index(tmp_path / "x.oemb.index.json", count)
    assert (index.stat().st_size > index_byte_limit()) == (code == "E_TOO_LARGE")
    cost = _join_cost(index, tmp_path)
    doc = json.loads(cost["stdout"])
    assert cost["exit"] == exit_code and doc["error"]["code"] == code, doc["error"]
    assert cost["rss"] < 100 << 20, f"peak RSS {cost['rss'] >> 20} MiB"
    assert not (tmp_path / "out.oemb").exists()
