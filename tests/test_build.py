"""Building bundles: reproducibility, spec validation errors, atomic output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from helpers import EXAMPLE, read_members
from oemkit.errors import InputError
from oemkit.release.bundle import build_bundle


def _copy_example(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest)
    return dest


def _cli_build(spec: Path, out: Path, cwd: Path, umask: int, extra_env: dict[str, str]) -> Path:
    env = {**os.environ, **extra_env}
    code = f"import os, sys; os.umask({umask}); from oemkit.cli import main; main()"
    subprocess.run([sys.executable, "-c", code, "build", str(spec), "--out", str(out)],
                   cwd=cwd, env=env, check=True, capture_output=True)
    return out / "example-0.2.0.oemb"


def test_same_inputs_give_identical_bytes_whatever_the_environment(tmp_path):
    a = _copy_example(tmp_path / "a" / "spec")
    b = _copy_example(tmp_path / "deeper" / "path" / "b")
    # Different mtimes and group/other permission bits on the inputs.
    for f in b.rglob("*"):
        if f.is_file():
            os.utime(f, (1_000_000, 1_000_000))
            os.chmod(f, f.stat().st_mode | 0o066)
    one = _cli_build(a / "bundle.yaml", tmp_path / "out1", tmp_path, 0o022,
                     {"LC_ALL": "C", "TZ": "UTC"})
    two = _cli_build(Path(os.path.relpath(b / "bundle.yaml", tmp_path / "deeper")),
                     tmp_path / "out2", tmp_path / "deeper", 0o077,
                     {"LC_ALL": "C.UTF-8", "TZ": "Asia/Kolkata"})
    assert one.read_bytes() == two.read_bytes()


def test_source_date_epoch_sets_build_time_and_changes_only_time_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    result = build_bundle(EXAMPLE, tmp_path / "env")
    manifest = json.loads(read_members(result.path)[0][1])
    assert manifest["build_time"] == "2026-01-01T00:00:00Z"
    explicit = build_bundle(EXAMPLE, tmp_path / "flag", source_date_epoch_override=1767225600)
    assert explicit.path.read_bytes() == result.path.read_bytes()
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    default = build_bundle(EXAMPLE, tmp_path / "none")
    assert json.loads(read_members(default.path)[0][1])["build_time"] == "1970-01-01T00:00:00Z"


def test_bad_source_date_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InputError) as err:
        build_bundle(EXAMPLE, tmp_path)
    assert err.value.code == "E_SOURCE_DATE_EPOCH"


def test_bundle_layout_is_gnu_tar_readable_and_payload_is_deterministic_tar(tmp_path):
    result = build_bundle(EXAMPLE, tmp_path)
    listing = subprocess.run(["tar", "tf", str(result.path)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert listing == ["oemkit-bundle.json", "sbom.cdx.json", "provenance.intoto.json",
                       "payload.tar.zst"]
    import io

    import zstandard

    payload = dict(read_members(result.path))["payload.tar.zst"]
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload)).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == sorted(i.name for i in infos)
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname) for i in infos} == {(0, 0, 0, "", "")}
    assert all(i.isreg() for i in infos)


def _spec(tmp_path: Path, text: str) -> Path:
    spec = _copy_example(tmp_path / "spec")
    (spec / "bundle.yaml").write_text(textwrap.dedent(text))
    return spec / "bundle.yaml"


BASE = """\
apiVersion: oemkit/v1
name: example
version: 0.1.0
model: model/model.onnx
"""


@pytest.mark.parametrize("text, code, words", [
    (BASE + "modle: model/model.onnx\n", "E_SPEC_INVALID",
     ["bundle.yaml line 5", "unknown field 'modle'", "did you mean 'model'?"]),
    (BASE.replace("model/model.onnx", "model/missing.onnx"), "E_SPEC_MISSING_FILE",
     ["bundle.yaml line 4", "model/missing.onnx does not exist"]),
    (BASE.replace("version: 0.1.0", "version: 1.0"), "E_SPEC_INVALID",
     ["bundle.yaml line 3", "version", 'is not of type "string"']),
    (BASE + "profiles: cpu-small\n", "E_SPEC_INVALID", ["line 5", "profiles"]),
    (BASE + "profiles: [cpu-small, host.yaml]\n", "E_SPEC_INVALID",
     ["line 5", "profiles.1", "'host.yaml' is not a profile name", "no .yaml suffix"]),
    (BASE + "profiles: [" + ", ".join(f"p{i}" for i in range(65)) + "]\n", "E_SPEC_INVALID",
     ["line 5", "profiles"]),
    (BASE.replace("model/model.onnx", "../outside.onnx"), "E_SPEC_PATH",
     ["line 4", "'..'"]),
    (BASE.replace("model/model.onnx", "/etc/passwd"), "E_SPEC_PATH", ["absolute path"]),
    (BASE + "name: again\n", "E_SPEC_DUPLICATE_KEY", ["line 5", "duplicate key 'name'"]),
    ("a: &x [1]\nb: *x\n", "E_SPEC_YAML", ["aliases"]),
    ("name: [unclosed\n", "E_SPEC_YAML", ["bundle.yaml line"]),
    ("- just\n- a list\n", "E_SPEC_INVALID", ['is not of type "object"']),
    (BASE.replace("apiVersion: oemkit/v1\n", ""), "E_SPEC_INVALID",
     ["required field 'apiVersion' is missing"]),
])
def test_spec_errors_name_the_field_and_line(tmp_path, text, code, words):
    spec = _spec(tmp_path, text)
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "out")
    assert err.value.code == code, err.value
    for word in words:
        assert word in err.value.message, err.value.message
    assert err.value.exit_code == 3
    assert not (tmp_path / "out" / "example-0.1.0.oemb").exists()


def test_spec_symlink_pointing_outside_is_refused(tmp_path):
    outside = tmp_path / "secret.onnx"
    outside.write_bytes(b"x")
    spec = _spec(tmp_path, BASE.replace("model/model.onnx", "model/link.onnx"))
    (spec.parent / "model" / "link.onnx").symlink_to(outside)
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "out")
    assert err.value.code == "E_SPEC_PATH" and "points outside" in err.value.message


def test_spec_case_collision_is_refused(tmp_path):
    spec = _spec(tmp_path, BASE + "files: [extra]\n")
    (spec.parent / "extra").mkdir()
    (spec.parent / "extra" / "Readme.txt").write_text("a")
    (spec.parent / "extra" / "README.txt").write_text("b")
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "out")
    assert err.value.code == "E_SPEC_PATH_COLLISION"


def test_spec_files_globs_and_directories(tmp_path):
    spec = _spec(tmp_path, BASE + "files: ['docs/*.md', extra]\n")
    (spec.parent / "docs").mkdir()
    (spec.parent / "docs" / "a.md").write_text("a")
    (spec.parent / "docs" / "b.txt").write_text("b")
    (spec.parent / "extra" / "sub").mkdir(parents=True)
    (spec.parent / "extra" / "sub" / "c.bin").write_bytes(b"c")
    result = build_bundle(spec, tmp_path / "out")
    manifest = json.loads(read_members(result.path)[0][1])
    assert [f["path"] for f in manifest["files"]] == [
        "docs/a.md", "extra/sub/c.bin", "model/model.onnx"]


def test_cli_build_error_has_no_traceback_and_exit_3(tmp_path):
    spec = _spec(tmp_path, BASE + "modle: x\n")
    proc = subprocess.run([sys.executable, "-m", "oemkit", "build", str(spec), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert "E_SPEC_INVALID" in proc.stderr and "did you mean 'model'?" in proc.stderr


KILL_SCRIPT = """
import os, signal, sys
import oemkit._fs as fs
real = fs.copy_member
def dying(out, name, src, size, progress=None):
    out.write(fs.ustar_header(name, size))
    out.write(src.read(100))
    out.flush()
    os.kill(os.getpid(), signal.SIGKILL)
fs.copy_member = dying
import oemkit.release.bundle as b
b.copy_member = dying
b.build_bundle(sys.argv[1], sys.argv[2])
"""


def test_build_killed_mid_write_leaves_no_file_at_destination(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(EXAMPLE), str(out)],
                          capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "example-0.2.0.oemb").exists()
    # Only hidden temporary files may remain; nothing that looks like a bundle.
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []


def test_build_failure_mid_write_cleans_up(tmp_path, monkeypatch):
    import oemkit.release.bundle as b

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(b, "copy_member", boom)
    with pytest.raises(OSError):
        build_bundle(EXAMPLE, tmp_path)
    assert list(tmp_path.iterdir()) == []


UNPACK_KILL = """
import os, signal, sys
import oemkit.host.unpack as u
real = u.verify_open_bundle
def dying(handle, pinned, **kw):
    sink = kw["sink"]
    def killing_sink(entry):
        f = sink(entry)
        f.write(b"partial")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    kw["sink"] = killing_sink
    return real(handle, pinned, **kw)
u.verify_open_bundle = dying
u.unpack_bundle(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def test_unpack_killed_mid_write_leaves_no_destination(signed_bundle, trust_file, tmp_path):
    dest = tmp_path / "dest"
    proc = subprocess.run([sys.executable, "-c", UNPACK_KILL, str(signed_bundle), str(dest),
                           str(trust_file)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not dest.exists()


def test_spec_file_and_directory_collision_is_refused(tmp_path):
    spec = _spec(tmp_path, BASE + "files: [Data, data]\n")
    (spec.parent / "Data").write_text("file")
    (spec.parent / "data").mkdir()
    (spec.parent / "data" / "x").write_text("x")
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "out")
    assert err.value.code == "E_SPEC_PATH_COLLISION"
    assert "'Data' is a file but 'data/x' needs it to be a directory" in err.value.message


def test_negative_source_date_epoch_is_refused(tmp_path):
    with pytest.raises(InputError) as err:
        build_bundle(EXAMPLE, tmp_path, source_date_epoch_override=-5)
    assert err.value.code == "E_SOURCE_DATE_EPOCH" and "negative" in err.value.message


def test_float_version_hint_says_quote_it(tmp_path):
    spec = _spec(tmp_path, BASE.replace("version: 0.1.0", "version: 1.0"))
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "out")
    assert err.value.hint == 'quote the value in YAML: version: "1.0"'


def test_build_refuses_carried_trust_roots_with_a_gap(tmp_path, keys, trust_v1):
    from oemkit.release.trust import add_key
    from oemkit.verify.trust import parse_root

    v2 = add_key(parse_root(trust_v1), keys["bundle"].public, ["bundle"], [keys["root"]])
    v3 = add_key(parse_root(v2), keys["license"].public, ["license"], [keys["root"]])
    spec = _spec(tmp_path, BASE + "trust_roots: [v1.json, v3.json]\n")
    (spec.parent / "v1.json").write_bytes(trust_v1)
    (spec.parent / "v3.json").write_bytes(v3)
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "out")
    assert err.value.code == "E_SPEC_TRUST_ROOTS" and "version 3" in err.value.message
    (spec.parent / "v2.json").write_bytes(v2)
    (spec.parent / "bundle.yaml").write_text(BASE + "trust_roots: [v3.json, v2.json, v1.json]\n")
    result = build_bundle(spec, tmp_path / "out")
    names = [n for n, _ in read_members(result.path)]
    assert names[3:6] == ["trust/root-1.json", "trust/root-2.json", "trust/root-3.json"]


def test_cli_build_on_a_terminal_shows_progress_and_loads_the_spec_once(tmp_path, monkeypatch):
    """With a terminal the CLI loads the spec first (the bar needs a total) and hands the
    loaded spec to build_bundle: the same bytes as a build without a terminal."""
    import io

    from rich.console import Console
    from typer.testing import CliRunner

    import oemkit.cli._print as output  # progress() draws on its console
    import oemkit.cli.root as cli
    import oemkit.release.bundle as bundle_mod

    plain = build_bundle(EXAMPLE, tmp_path / "plain").path
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(cli, "err", console)
    monkeypatch.setattr(output, "err", console)
    loads = []
    real_load = bundle_mod.load_spec
    monkeypatch.setattr(bundle_mod, "load_spec", lambda p: loads.append(p) or real_load(p))
    result = CliRunner().invoke(cli.app, ["build", str(EXAMPLE), "--out", str(tmp_path / "tty")])
    assert result.exit_code == 0, result.output
    assert loads == []  # build_bundle got the CLI's loaded spec, not a path to load again
    assert "packing" in screen.getvalue()
    assert (tmp_path / "tty" / plain.name).read_bytes() == plain.read_bytes()


@pytest.mark.parametrize(("path", "text", "code", "words"), [
    ("config/migrations.yaml",
     "migrations:\n  - from: 1\n    to: 2\n    steps:\n      - renam: {from: threshold, to: x}\n",
     "E_MIGRATION_INVALID", "renam"),
    ("config/config.json", '{"labels": ["a", "b", "c"], "max_batch": 8, "schema_version": 2, '
     '"score_threshold": 0.5, "threads": "two"}', "E_CONFIG_INVALID",
     'config/config.json (version 2): threads: "two" is not of type "integer"'),
    ("config/config.json", '{"labels": ["a"], "schema_version": 1, "threads": 1, '
     '"threshold": 0.5}', "E_CONFIG_VERSION", "schema_version 1 but config.version is 2"),
    # a shipped v1 sample that is not even valid v1
    ("config/samples/v1.json", '{"labels": ["a", "b", "c"], "schema_version": 1, "threads": 2}',
     "E_CONFIG_INVALID", 'samples/v1.json (version 1): (top level): "threshold" is a required'),
    # a migration that forgets the rename: the sample comes out invalid for v2
    ("config/migrations.yaml", "migrations:\n  - from: 1\n    to: 2\n    steps:\n"
     "      - set_default: {path: max_batch, value: 8}\n", "E_CONFIG_INVALID",
     "config/samples/v1.json (v1 -> v2): config/samples/v1.json migrated to 2"),
])
def test_build_refuses_a_config_section_that_would_fail_on_the_host(tmp_path, path, text, code,
                                                                    words):
    """The checks 'oemkit migrate test' runs on a bundle run at build time, before packing,
    so a typo in a migration is not first found at a disconnected site."""
    from typer.testing import CliRunner

    from oemkit.cli import app

    spec = _copy_example(tmp_path / "spec")
    (spec / path).write_text(text)
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "out")
    assert err.value.code == code, err.value
    assert err.value.message.startswith("bundle.yaml: config: ") and words in err.value.message
    result = CliRunner().invoke(app, ["build", str(spec), "--out", str(tmp_path / "cli"),
                                      "--json"])
    assert result.exit_code == 3 and json.loads(result.stdout)["error"]["code"] == code
    assert not list((tmp_path / "out").glob("*")) and not list((tmp_path / "cli").glob("*"))


def test_build_with_trust_judges_carried_roots_and_crl_as_hosts_will(tmp_path, keys, trust_v1):
    """Without --trust the carried CRL's signature is only judged on the hosts; with it,
    a root chain that does not start where the hosts are, or a CRL signed by a key the
    hosts will not accept for CRLs, stops the release job instead."""
    import datetime as dt

    from typer.testing import CliRunner

    from oemkit.cli import app
    from oemkit.release.licensing import issue_crl
    from oemkit.release.trust import add_key
    from oemkit.verify.trust import parse_root

    v2 = add_key(parse_root(trust_v1), keys["crl"].public, ["crl"], [keys["root"]], name="crl")
    v3 = add_key(parse_root(v2), keys["bundle"].public, ["bundle"], [keys["root"]])
    spec = _spec(tmp_path, BASE + "trust_roots: [v3.json]\ncrl: r.crl\n")
    (spec.parent / "v3.json").write_bytes(v3)
    (spec.parent / "v2.json").write_bytes(v2)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    (spec.parent / "r.crl").write_bytes(issue_crl(keys["crl"], 1, issued_at=when))
    build_bundle(spec, tmp_path / "plain")  # nothing to judge against: builds
    build_bundle(spec, tmp_path / "ok", trust=v2)  # hosts pin v2: v3 follows, crl key in it
    with pytest.raises(InputError) as err:  # hosts pin v1: v2 is not carried
        build_bundle(spec, tmp_path / "gap", trust=trust_v1)
    assert err.value.code == "E_SPEC_TRUST_ROOTS" and "version 1" in err.value.message
    (spec.parent / "r.crl").write_bytes(issue_crl(keys["license"], 1, issued_at=when))
    build_bundle(spec, tmp_path / "plain2")  # still only an armored CRL without --trust
    with pytest.raises(InputError) as err:
        build_bundle(spec, tmp_path / "bad", trust=v2)
    assert err.value.code == "E_SPEC_CRL" and "trust root version 3" in err.value.message
    result = CliRunner().invoke(app, ["build", str(spec), "--out", str(tmp_path / "cli"),
                                      "--trust", str(spec.parent / "v2.json"), "--json"])
    assert result.exit_code == 3 and json.loads(result.stdout)["error"]["code"] == "E_SPEC_CRL"
    for out in ("gap", "bad", "cli"):
        assert not list((tmp_path / out).glob("*.oemb"))
