"""Issue 13, area ``runtime``: what a signed manifest's runtime section may name, and config
sections and migrations that must end in coded errors (never a crash, never a host file).

Class 6: verify enforces everything build enforces about the runtime section (paths
inside the payload and listed in it, exact types, profile names never host paths, canonical
JSON). Class 8 (config part): malformed config sections, migrations and schemas are coded
errors; migration chains and nesting are bounded. Class 3 (migrate part): ``migrate
plan/test`` without ``--trust`` read the payload with the verifier's bounded reader.
Low: Windows look-alike names are refused at build and at verify.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostile.make_corpus import CORPUS, FILES, TRUST, Forge, load_keys
from oemkit.errors import InputError, OemkitError, VerificationError
from oemkit.models.manifest import (
    Manifest,
    check_config_section,
    collision_key,
    path_problem,
)
from oemkit.verify.bundle import verify_open_bundle
from oemkit.verify.trust import parse_root

KEYS = load_keys()
ROOT = parse_root((CORPUS / TRUST).read_bytes()).root


def _manifest_bytes(edit: Callable[[dict[str, Any]], None]) -> bytes:
    return dict(Forge(KEYS).parts(manifest_edit=edit))["oemkit-bundle.json"]


def _verify(data: bytes) -> Any:
    return verify_open_bundle(io.BytesIO(data), ROOT)


def _runtime(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["runtime"].update(fields)
    return edit


def _rejected(data: bytes, code: str, *words: str, field: str | None = None) -> None:
    report = _verify(data)
    assert not report.ok
    assert report.error is not None
    assert report.error.code == code, report.error.to_dict()
    for word in words:
        assert word in report.error.message, report.error.message
    if field is not None:
        assert report.error.field == field, report.error.to_dict()


def test_the_control_bundle_verifies() -> None:
    assert _verify(Forge(KEYS).bundle()).ok


# --------------------------------------------------------------------------- class 6

CONFIG = {"file": "a.txt", "schema": "a.txt", "version": 2}


@pytest.mark.parametrize(("edit", "field", "words"), [
    ({"entrypoint": "/bin/sh"}, "runtime.entrypoint", ("'/bin/sh'", "absolute path")),
    ({"entrypoint": "../../usr/bin/python3"}, "runtime.entrypoint", ("'..'",)),
    ({"entrypoint": "bin/other"}, "runtime.entrypoint", ("not a file of this bundle",)),
    ({"entrypoint": 7}, "runtime.entrypoint", ("not an integer",)),
    ({"model": "/etc/passwd"}, "runtime.model", ("absolute path",)),
    ({"model": None}, "runtime.model", ("not null",)),
    ({"profiles": ["/etc/oemkit/evil.yaml"]}, "runtime.profiles[0]", ("not a profile name",)),
    ({"profiles": ["evil.yaml"]}, "runtime.profiles[0]", ("no .yaml suffix",)),
    ({"profiles": ["cpu-small", 3]}, "runtime.profiles[1]", ("not an integer",)),
    ({"profiles": "cpu-small"}, "runtime.profiles", ("not a string",)),
    ({"golden": {"inputs": "a.txt", "outputs": "a.txt", "atol": "text"}},
     "runtime.golden.atol", ("finite number",)),
    ({"golden": {"inputs": "a.txt", "outputs": "a.txt", "rtol": True}},
     "runtime.golden.rtol", ("finite number",)),
    ({"golden": {"inputs": "a.txt", "outputs": "a.txt", "atol": -1}},
     "runtime.golden.atol", (">= 0",)),
    ({"golden": {"inputs": "/dev/zero", "outputs": "a.txt"}}, "runtime.golden.inputs",
     ("absolute path",)),
    ({"golden": {"inputs": "a.txt"}}, "runtime.golden", ("'outputs' is missing",)),
    ({"golden": {"inputs": "a.txt", "outputs": "a.txt", "cmd": "sh"}}, "runtime.golden",
     ("unknown field 'cmd'",)),
    ({"config": {"file": "a.txt", "schema": "a.txt"}}, "runtime.config",
     ("'version' is missing",)),
    ({"config": {**CONFIG, "version": "2"}}, "runtime.config.version", ("integer",)),
    ({"config": {**CONFIG, "file": "../etc/app.json"}}, "runtime.config.file", ("'..'",)),
    ({"config": {**CONFIG, "schema": "missing.json"}}, "runtime.config.schema",
     ("not a file of this bundle",)),
    ({"config": {**CONFIG, "migrations": ["a.txt"]}}, "runtime.config.migrations",
     ("not a list",)),
    ({"config": {**CONFIG, "history": {"version": 1}}}, "runtime.config.history",
     ("not an object",)),
    ({"config": {**CONFIG, "history": [{"version": 1}]}}, "runtime.config.history[0]",
     ("'schema' is missing",)),
    ({"config": {**CONFIG, "history": [{"version": 2, "schema": "a.txt"}]}},
     "runtime.config.history[0].version", ("described twice", "current version")),
    ({"config": {**CONFIG, "history": [{"version": 1, "schema": "a.txt",
                                        "samples": ["/etc/shadow"]}]}},
     "runtime.config.history[0].samples[0]", ("absolute path",)),
    ({"config": ["a.txt"]}, "runtime.config", ("not a list",)),
    ({"migrations": [{"from": 1}]}, "runtime.migrations", ("reserved",)),
])
def test_a_signed_runtime_section_is_checked_exactly(edit: dict[str, Any], field: str,
                                                     words: tuple[str, ...]) -> None:
    data = Forge(KEYS).bundle(manifest_edit=_runtime(**edit))
    _rejected(data, "E_MANIFEST_INVALID", field, *words, field=field)


def test_a_runtime_section_with_a_field_missing_or_added_is_refused() -> None:
    def drop(doc: dict[str, Any]) -> None:
        del doc["runtime"]["golden"]

    _rejected(Forge(KEYS).bundle(manifest_edit=drop), "E_MANIFEST_INVALID",
              "'golden' is missing", field="runtime")
    _rejected(Forge(KEYS).bundle(manifest_edit=_runtime(hook="rm -rf /")),
              "E_MANIFEST_INVALID", "unknown field 'hook'", field="runtime")


def test_a_complete_runtime_section_naming_payload_files_verifies() -> None:
    section = {"entrypoint": "bin/run", "profiles": ["cpu-small", "my-board"],
               "golden": {"inputs": "a.txt", "outputs": "a.txt", "atol": 0, "rtol": 1e-4},
               "config": {**CONFIG, "migrations": "a.txt",
                          "history": [{"version": 1, "schema": "a.txt",
                                       "samples": ["a.txt"]}]}}
    report = _verify(Forge(KEYS).bundle(manifest_edit=_runtime(**section)))
    assert report.ok, report.to_dict()
    assert report.manifest.runtime.entrypoint == "bin/run"


def _members(data: bytes) -> list[tuple[str, bytes]]:
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]


def _respelled(old: bytes, new: bytes) -> bytes:
    """The forged bundle with a manifest whose canonical ``old`` is written ``new``."""
    manifest = _manifest_bytes(_runtime(config=CONFIG))
    assert manifest.count(old) >= 1
    return Forge(KEYS).bundle(manifest_bytes=manifest.replace(old, new))


@pytest.mark.parametrize(("old", "new", "words"), [
    (b'"mode":420', b'"mode":420.0', "mode must be the integer 420"),
    (b'"mode":420', b'"mode":true', "mode must be the integer 420"),
    (b'"mode":420', b'"mode":"420"', "mode must be the integer 420"),
    (b'"version":2', b'"version":2.0', "runtime.config.version: must be an integer"),
])
def test_a_number_that_is_not_an_integer_is_refused(old: bytes, new: bytes,
                                                      words: str) -> None:
    data = _respelled(old, new)
    _rejected(data, "E_MANIFEST_INVALID")  # not canonical, and not format v1 either
    from oemkit._canonical import parse_json

    manifest = next(d for n, d in _members(data) if n == "oemkit-bundle.json")
    with pytest.raises(VerificationError) as err:  # what install reads from a slot
        Manifest.from_dict(parse_json(manifest, what="manifest"))
    assert err.value.code == "E_MANIFEST_INVALID" and words in err.value.message


def test_a_member_size_written_as_true_is_refused() -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["members"]["sbom.cdx.json"]["size"] = True

    _rejected(Forge(KEYS).bundle(manifest_edit=edit), "E_MANIFEST_INVALID", "malformed")


# --------------------------------------------------------------------------- Windows names


@pytest.mark.parametrize(("path", "words"), [
    ("run.bat.", "ends with a dot or a space"),
    ("bin/run.bat ", "ends with a dot or a space"),
    ("CON", "reserved device name"),
    ("logs/nul.txt", "reserved device name"),
    ("Com1.log", "reserved device name"),
    ("LPT\u00b9", "reserved device name"),
    ("a.txt:secret", "not allowed in a Windows file name"),
    ("what?.txt", "not allowed in a Windows file name"),
    ('say"hi"', "not allowed in a Windows file name"),
])
def test_windows_look_alike_names_are_unsafe(path: str, words: str) -> None:
    problem = path_problem(path)
    assert problem is not None and words in problem


@pytest.mark.parametrize("path", ["console.txt", "lpt10", "con-fig/x", ".hidden", "a..b"])
def test_names_that_merely_resemble_windows_devices_are_fine(path: str) -> None:
    assert path_problem(path) is None


def test_trailing_dots_and_spaces_fold_into_one_collision_key() -> None:
    assert collision_key("Run.Bat.") == collision_key("run.bat ") == collision_key("run.bat")


def test_a_windows_look_alike_in_the_manifest_is_refused_at_verify() -> None:
    files = [*FILES, ("bin/run.", b"#!/bin/sh\necho evil\n", 0o755)]
    files.sort(key=lambda f: f[0].encode())
    _rejected(Forge(KEYS).bundle(files=files), "E_MANIFEST_INVALID", "ends with a dot")


def test_a_windows_look_alike_is_refused_at_build(tmp_path: Path) -> None:
    from oemkit.build.spec import load_spec

    (tmp_path / "model.onnx").write_bytes(b"model")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "run.bat").write_text("echo a\n")
    (tmp_path / "extra" / "run.bat.").write_text("echo b\n")
    (tmp_path / "bundle.yaml").write_text("apiVersion: oemkit/v1\nname: w\nversion: '1'\n"
                                          "model: model.onnx\nfiles: [extra]\n")
    with pytest.raises(InputError) as err:
        load_spec(tmp_path / "bundle.yaml")
    assert err.value.code == "E_SPEC_PATH" and "ends with a dot" in err.value.message


# --------------------------------------------------------------------------- config section


def test_check_config_section_names_the_field() -> None:
    from oemkit.models.manifest import SectionProblem

    with pytest.raises(SectionProblem) as err:
        check_config_section({**CONFIG, "history": [{"version": True, "schema": "a"}]})
    assert err.value.where == "config.history[0].version"
    assert isinstance(err.value, Exception) and not isinstance(err.value, OemkitError)
