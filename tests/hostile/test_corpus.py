"""Every case of the hostile corpus (tests/hostile/corpus/INDEX.json) through the real CLI.

Each case is one file crafted by ``make_corpus.py``; its INDEX entry names the ``oemkit``
command that judges it, the error code that command must print with ``--json`` and its
exit status. No case may end in a traceback or an internal error. The corpus itself must
be exactly what the generator writes (so it cannot drift), the decompression bombs and
huge declared sizes must be refused in a child process that stays under 100 MB, and every
input a fuzzer once crashed on (``corpus/regressions/``) must now be handled.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hostile import make_corpus
from oemkit.cli import app

CORPUS = make_corpus.CORPUS
REPO = CORPUS.parents[2]
INDEX = json.loads((CORPUS / "INDEX.json").read_text())
CASES: list[dict[str, Any]] = INDEX["cases"]
KINDS = {"bundle", "license", "crl", "trust-root", "spec", "profile", "fingerprint", "cli"}
RSS_LIMIT = 100 << 20
# Time per case is measured by benchmarks/hostile_corpus.py, not asserted here: these
# machines are shared and noisy (the fuzzers catch hangs: 10 s per input).

#: Cases oemkit still gets wrong, each with the bug that makes it fail. The case stays in
#: the corpus with the code it SHOULD get; its test is skipped with this reason until the
#: bug is fixed (then delete the entry: the test must pass as it is).
PENDING_FIXES: dict[str, str] = {
}

runner = CliRunner()


def _expand(case: dict[str, Any], tmp: Path) -> list[str]:
    work = tmp / "work"
    return [part.replace("{corpus}", str(CORPUS)).replace("{tmp}", str(tmp))
            .replace("{work}", str(work)).replace("{repo}", str(REPO))
            for part in case["command"]]


def _prepare(case: dict[str, Any], tmp: Path) -> None:
    """Spec cases run on a scratch copy of the spec's directory: the spec, the model and
    the files and symlinks the case sets up (symlink loops are never committed). ``cli``
    cases with a ``setup`` get the same scratch folder, with folders and copies of corpus
    files as well."""
    if case["kind"] not in ("spec", "cli"):
        return
    setup = case.get("setup", {})
    if case["kind"] == "cli" and not setup:
        return
    work = tmp / "work"
    work.mkdir()
    if case["kind"] == "spec":
        shutil.copyfile(CORPUS / case["file"], work / case["file"])
        shutil.copyfile(CORPUS / make_corpus.SPEC_MODEL, work / make_corpus.SPEC_MODEL)
    for name in setup.get("dirs", []):
        (work / name).mkdir(parents=True, exist_ok=True)
    for name, source in setup.get("copies", {}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / source, work / name)
    for name, text in setup.get("files", {}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    for name, target in setup.get("symlinks", {}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target.replace("{work}", str(work)), work / name)


def _check_output(case: dict[str, Any], exit_code: int, stdout: str, output: str) -> None:
    assert "Traceback" not in output, output
    assert "E_INTERNAL" not in output, output
    assert exit_code == case["exit"], output
    doc = json.loads(stdout)  # --json: exactly one JSON document on stdout
    if case["code"] is None:
        assert doc["ok"] is True, doc
        return
    assert doc["ok"] is False, doc
    assert doc["error"]["code"] == case["code"], doc["error"]


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_corpus_case(case: dict[str, Any], tmp_path: Path) -> None:
    if case["file"] in PENDING_FIXES:
        pytest.skip(PENDING_FIXES[case["file"]])
    _prepare(case, tmp_path)
    result = runner.invoke(app, _expand(case, tmp_path), env=case.get("env"))
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit), repr(result.exception)
    _check_output(case, result.exit_code, result.stdout, result.output)


def test_index_is_complete_and_small() -> None:
    names = {c["file"] for c in CASES}
    assert len(names) == len(CASES)
    assert {k for k in PENDING_FIXES if "/" not in k} <= names
    assert all(c["kind"] in KINDS for c in CASES)
    assert {c["kind"] for c in CASES} == KINDS
    committed = {p.name for p in CORPUS.iterdir() if p.is_file()} - {"INDEX.json"}
    assert names <= committed
    assert committed - names == {make_corpus.TRUST, make_corpus.SPEC_MODEL}
    sizes = [p.stat().st_size for p in CORPUS.iterdir() if p.is_file()]
    assert max(sizes) < 200_000 and sum(sizes) < 5_000_000
    for case in CASES:
        assert case["tries"] and case["command"] and isinstance(case["exit"], int)
        assert (case["code"] is None) == (case["exit"] == 0), case


def test_regenerating_the_corpus_gives_identical_files(tmp_path: Path) -> None:
    fresh = tmp_path / "corpus"
    make_corpus.write(fresh)
    made = {p.name: p.read_bytes() for p in fresh.iterdir() if p.is_file()}
    committed = {p.name: p.read_bytes() for p in CORPUS.iterdir() if p.is_file()}
    assert sorted(made) == sorted(committed), "run: python tests/hostile/make_corpus.py"
    drifted = [name for name in made if made[name] != committed[name]]
    assert not drifted, f"{drifted} differ from the generator; if the change is intended, " \
                        "run python tests/hostile/make_corpus.py and commit the result"


def _chain_of_257_roots(tmp: Path) -> list[str]:
    """A bundle carrying versions 5..261 of the corpus root (parseable, never walked)."""
    import base64

    keys = make_corpus.load_keys()
    env = json.loads((CORPUS / make_corpus.TRUST).read_bytes())
    payload = json.loads(base64.b64decode(env["payload"]))
    carried = []
    for version in range(5, 5 + 257):
        doc = make_corpus.make_envelope([keys["root"]], make_corpus.TRUST_ROOT_PAYLOAD_TYPE,
                                        make_corpus.canonical_json({**payload,
                                                                    "version": version}))
        carried.append((f"trust/root-{version}.json", json.dumps(doc.to_dict()).encode()))
    bundle = tmp / "chain.oemb"
    bundle.write_bytes(make_corpus.outer(make_corpus.Forge(keys).parts(extra=carried)))
    return ["verify", str(bundle), "--trust", str(CORPUS / make_corpus.TRUST), "--state",
            str(tmp / "state.json"), "--json"]


def _huge_trust_root(tmp: Path) -> list[str]:
    root = tmp / "huge-root.json"
    root.write_bytes(b" " * ((16 << 20) + 1))
    return ["verify", str(CORPUS / "control-bundle-valid.oemb"), "--trust", str(root),
            "--state", str(tmp / "state.json"), "--json"]


def _huge_spec(tmp: Path) -> list[str]:
    spec = tmp / "bundle.yaml"
    spec.write_bytes(make_corpus.SPEC_BASE.encode() + b"#" * (1 << 20))
    return ["build", str(spec), "--out", str(tmp / "out"), "--json"]


def _huge_profile(tmp: Path) -> list[str]:
    profile = tmp / "huge.yaml"
    profile.write_bytes(make_corpus.PROFILE_BASE.encode() + b"#" * (1 << 20))
    return ["profile", "show", str(profile), "--json"]


LIMITS = [("257-carried-trust-roots", _chain_of_257_roots, "E_TRUST_CHAIN_LENGTH", 1),
          ("trust-root-over-16-MiB", _huge_trust_root, "E_TOO_LARGE", 3),
          ("spec-over-1-MiB", _huge_spec, "E_TOO_LARGE", 3),
          ("profile-over-1-MiB", _huge_profile, "E_TOO_LARGE", 3)]


@pytest.mark.parametrize(("name", "make", "code", "exit_code"), LIMITS,
                         ids=[x[0] for x in LIMITS])
def test_limits_too_big_for_a_corpus_file(name: str, make: Any, code: str, exit_code: int,
                                          tmp_path: Path) -> None:
    """Limits whose hostile input would not fit the corpus's 200 KB per file."""
    if f"limits/{name}" in PENDING_FIXES:
        pytest.skip(PENDING_FIXES[f"limits/{name}"])
    result = runner.invoke(app, make(tmp_path))
    _check_output({"code": code, "exit": exit_code}, result.exit_code, result.stdout,
                  result.output)


def test_gib_of_zeros_digest_constant() -> None:
    digest = hashlib.sha256()
    block = bytes(1 << 20)
    for _ in range(1024):
        digest.update(block)
    assert digest.hexdigest() == make_corpus.SHA256_GIB_ZEROS


_RSS_CHILD = r"""
import json, resource, sys
from typer.testing import CliRunner
from oemkit.cli import app

runner = CliRunner()
out = []
for argv, env in json.loads(sys.argv[1]):
    result = runner.invoke(app, argv, env=env)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.append({"exit": result.exit_code, "stdout": result.stdout, "output": result.output,
                "rss": rss})
print(json.dumps(out))
"""

# Linux carries a process's peak RSS across fork and exec into ru_maxrss, so a child of
# this (large) pytest process would report pytest's own peak. A small launcher process
# starts the child instead and reports the child's ru_maxrss from wait4().
_LAUNCHER = r"""
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=open(os.environ["RSS_OUT"], "w"))
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"status": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss}))
"""


def test_bombs_and_huge_sizes_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    """One child process judges every case marked ``rss``; its peak RSS (ru_maxrss, which
    only grows) must stay under 100 MB, so each case does."""
    cases = [c for c in CASES if c.get("rss") and c["file"] not in PENDING_FIXES]
    assert len(cases) >= 8
    jobs = []
    for i, case in enumerate(cases):
        tmp = tmp_path / str(i)
        tmp.mkdir()
        _prepare(case, tmp)
        jobs.append((_expand(case, tmp), case.get("env")))
    out = tmp_path / "out.json"
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-c", _RSS_CHILD, json.dumps(jobs)],
        capture_output=True, text=True, env={**os.environ, "RSS_OUT": str(out)}, timeout=300,
        check=False)
    assert launched.returncode == 0, launched.stderr
    report = json.loads(launched.stdout)
    assert report["status"] == 0, launched.stderr
    results = json.loads(out.read_text())
    for case, result in zip(cases, results, strict=True):
        _check_output(case, result["exit"], result["stdout"], result["output"])
    peak = report["maxrss"] * 1024  # Linux: kilobytes
    first_over = next((c["file"] for c, r in zip(cases, results, strict=True)
                       if r["rss"] >= RSS_LIMIT), None)
    assert peak < RSS_LIMIT, f"child peak RSS {peak >> 20} MB (first over: {first_over})"


_HARNESSES: dict[str, Any] = {}


def _harness(target: str) -> Any:
    if target in _HARNESSES:
        return _HARNESSES[target]
    path = REPO / "fuzz" / f"fuzz_{target}.py"
    spec = importlib.util.spec_from_file_location(f"fuzz_{target}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _HARNESSES[target] = module
    return module


def test_verify_open_bundle_reads_a_bytesio() -> None:
    """The library entry point takes any BinaryIO (the bundle fuzzer hands it a BytesIO)."""
    import io

    from oemkit.verify.bundle import verify_open_bundle
    from oemkit.verify.trust import parse_root

    if "api/verify_open_bundle-bytesio" in PENDING_FIXES:
        pytest.skip(PENDING_FIXES["api/verify_open_bundle-bytesio"])
    root = parse_root((CORPUS / make_corpus.TRUST).read_bytes()).root
    report = verify_open_bundle(io.BytesIO((CORPUS / "control-bundle-valid.oemb").read_bytes()),
                                root)
    assert report.ok, report.to_dict()


REGRESSIONS = sorted((CORPUS / "regressions").glob("*.bin"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_fuzz_regression_is_handled(path: Path) -> None:
    """An input a fuzzer crashed on (``corpus/regressions/<target>-<sha1>.bin``), replayed
    through that target's check, which raises on anything but an OemkitError."""
    key = f"regressions/{path.name}"
    if key in PENDING_FIXES:
        pytest.skip(PENDING_FIXES[key])
    _harness(path.name.split("-", 1)[0]).check(path.read_bytes())


def test_fuzz_regressions_exist_for_every_target() -> None:
    assert {p.name.split("-", 1)[0] for p in REGRESSIONS} <= {"bundle", "license", "spec",
                                                              "readers", "media", "state"}
    assert all(key.split("/", 1)[1] in {p.name for p in REGRESSIONS}
               for key in PENDING_FIXES if key.startswith("regressions/"))
