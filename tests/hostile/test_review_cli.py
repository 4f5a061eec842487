"""Issue 13, the command-line surface: untrusted strings reach the terminal escaped, every
path prints exactly one JSON document with ``--json``, usage errors and numeric options
are E_USAGE (exit 2), file arguments are opened by oemkit (E_PERMISSION exit 4), and an
internal error has its own exit code (70), never the verdict's 1.

The hostile bundles are the corpus's ``review-cli-*`` files (tests/hostile/review_cli.py).
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers import EXAMPLE, KEYS, PASSPHRASE
from hostile import make_corpus
from hostile.review_cli import HOSTILE_TEXT
from oemkit.cli import app
from oemkit.cli._output import MAX_SAFE_INTEGER, parse_float, parse_int, safe
from oemkit.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, InputError, UsageError

CORPUS = make_corpus.CORPUS
TRUST = CORPUS / make_corpus.TRUST
VALID = CORPUS / "control-bundle-valid.oemb"
ENV = {"OEMKIT_KEY_PASSPHRASE": PASSPHRASE.decode()}
runner = CliRunner()
#: What must never reach stderr raw: ESC, CR, CSI (C1), BEL, the RLO override.
RAW = ("\x1b", "\r", "\x9b", "\x07", "\u202e")


def invoke(*args: Any, env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(app, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit), repr(result.exception)
    return result


def one_document(result: Any) -> Any:
    """The single JSON document on stdout (json.loads refuses a second one)."""
    return json.loads(result.stdout)


def assert_error(result: Any, code: str, exit_code: int, fragment: str = "") -> dict:
    assert result.exit_code == exit_code, result.output
    doc = one_document(result)
    assert doc["ok"] is False and doc["error"]["code"] == code, doc
    assert doc["error"]["exit_code"] == exit_code, doc
    assert fragment in doc["error"]["message"], doc
    return doc["error"]


# --------------------------------------------------------------------------- safe()


@pytest.mark.parametrize(("text", "shown"), [
    ("[/x]", "\\[/x]"),
    ("[bold red]x[/]", "\\[bold red]x\\[/]"),
    ("\x1b[2K", "\\x1b[2K"),  # not a tag: rich prints it as it is
    ("a\rb\nc\td", "a\\x0db\\x0ac\\x09d"),
    ("\x9b31m\x85", "\\x9b31m\\x85"),
    ("\x7f\x00", "\\x7f\\x00"),
    ("\u202eevil\u2066\u200f", "\\u202eevil\\u2066\\u200f"),
    ("line\u2028sep\ufeff", "line\\u2028sep\\ufeff"),
])
def test_safe_makes_untrusted_text_visible_and_inert(text: str, shown: str) -> None:
    assert safe(text) == shown
    assert not any(ch in safe(text) for ch in RAW)


def test_safe_without_markup_escapes_controls_only() -> None:
    assert safe("[/x]\x1b", markup=False) == "[/x]\\x1b"
    assert safe("plain café 名前 ✓", markup=False) == "plain café 名前 ✓"
    assert safe(None) == "None" and safe(42) == "42"


def test_safe_text_prints_through_rich_as_written() -> None:
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    console.print(f"[bold]{safe(HOSTILE_TEXT)}[/]")
    out = console.export_text()
    assert out.startswith("[/x] [bold red]x[/] \\x1b[2K\\x0d\\x1b[1;32mVERIFIED"), out
    assert not any(ch in out for ch in RAW)


# --------------------------------------------------------------------------- unverified readers


def test_inspect_prints_a_hostile_description_escaped_and_one_document() -> None:
    result = invoke("inspect", CORPUS / "review-cli-inspect-markup-ansi-description.oemb",
                    "--json")
    assert result.exit_code == 0, result.output
    doc = one_document(result)
    assert doc["ok"] is True and doc["verified"] is False
    assert doc["manifest"]["description"] == HOSTILE_TEXT  # JSON keeps the exact value
    assert not any(ch in result.stderr for ch in RAW), repr(result.stderr)
    first = result.stderr.splitlines()[0]
    assert first.startswith("UNVERIFIED hostile 1.0.0 — [/x] [bold red]x[/] \\x1b[2K\\x0d"), \
        first
    assert "\\u202eevil\\x9b" in first


def test_inspect_with_trust_rejects_with_one_document() -> None:
    result = invoke("inspect", CORPUS / "review-cli-inspect-markup-rejected-with-trust.oemb",
                    "--trust", TRUST, "--json")
    assert_error(result, "E_SIGNATURE_UNTRUSTED", 1)
    doc = one_document(result)
    assert doc["verified"] is False and doc["verification"]["ok"] is False
    assert result.stderr.startswith("REJECTED hostile 1.0.0 — [/x]"), result.stderr


@pytest.mark.parametrize(("args", "code"), [
    (["sbom", "review-cli-sbom-is-a-list.oemb"], "E_SBOM_INVALID"),
    (["sbom", "diff", str(VALID), "review-cli-sbom-diff-new-is-a-list.oemb"],
     "E_SBOM_INVALID"),
    (["sbom", "review-cli-sbom-components-not-a-list.oemb"], "E_SBOM_SCHEMA"),
    (["sbom", "diff", "review-cli-sbom-component-not-an-object.oemb", str(VALID)],
     "E_SBOM_SCHEMA"),
    (["provenance", "review-cli-provenance-is-a-list.oemb"], "E_PROVENANCE_INVALID"),
    (["provenance", "review-cli-provenance-build-definition-list.oemb"],
     "E_PROVENANCE_INVALID"),
])
def test_unverified_readers_check_the_shape(args: list[str], code: str) -> None:
    argv = [a if a.startswith(("sbom", "diff", "provenance", "/")) else str(CORPUS / a)
            for a in args]
    result = invoke(*argv, "--json")
    error = assert_error(result, code, 1)
    assert error["member"] in ("sbom.cdx.json", "provenance.intoto.json")
    # without --json: the same code on stderr and nothing on stdout
    plain = invoke(*argv)
    assert plain.exit_code == 1 and plain.stdout == "" and code in plain.stderr


def test_sbom_and_provenance_print_hostile_strings_escaped() -> None:
    sbom = invoke("sbom", CORPUS / "review-cli-sbom-markup-names.oemb", "--json")
    assert sbom.exit_code == 0, sbom.output
    assert one_document(sbom)["ok"] is True
    assert "SBOM of [/x] [bold red]x[/] \\x1b[2K" in sbom.stderr, sbom.stderr
    prov = invoke("provenance", CORPUS / "review-cli-provenance-markup-builder.oemb", "--json")
    assert prov.exit_code == 0, prov.output
    assert one_document(prov)["statement"]["subject"][0]["name"] == "[/x]\x1b]0;title\x07"
    assert "subject [/x]\\x1b]0;title\\x07 sha256:" in prov.stderr, prov.stderr
    for result in (sbom, prov):
        assert not any(ch in result.stderr for ch in RAW), repr(result.stderr)


def test_unverified_sbom_and_provenance_of_a_real_bundle_still_print() -> None:
    rows = one_document(invoke("sbom", VALID, "--json"))
    assert rows["ok"] is True and rows["verified"] is False and rows["components"]
    statement = one_document(invoke("provenance", VALID, "--trust", TRUST, "--json"))
    assert statement["verified"] is True
    assert statement["statement"]["_type"] == "https://in-toto.io/Statement/v1"


# --------------------------------------------------------------------------- markup in paths


def test_markup_in_paths_and_signed_strings_never_crashes(tmp_path: Path) -> None:
    """build --out, verify, license issue/verify/attach, crl issue and inspect with a
    folder named like rich markup: each succeeds and prints the path as written."""
    folder = tmp_path / "[/x] [bold]out"  # "[" / "x] [bold]out"
    folder.mkdir(parents=True)
    built = invoke("build", EXAMPLE / "bundle.yaml", "--out", folder, "--json")
    assert built.exit_code == 0, built.output
    assert f"Built {folder}" in built.stderr.replace("\n", "")
    bundle = folder / "b.oemb"
    shutil.copyfile(VALID, bundle)
    lic = folder / "[/y].lic"
    steps = [  # (command, whether its message names the path)
        (["verify", bundle, "--trust", TRUST, "--state", folder / "s.json", "--json"], False),
        (["license", "issue", "--key", KEYS / "license.key", "--customer", "acme",
          "--customer-name", "[/z] ACME", "--product", "[bold]vision", "--expires",
          "2099-01-01", "--out", lic, "--json"], True),
        (["license", "verify", lic, "--trust", TRUST, "--state", folder / "s.json",
          "--json"], False),
        (["license", "inspect", lic, "--json"], False),
        (["license", "attach", bundle, lic, "--json"], True),
        (["verify", bundle, "--trust", TRUST, "--state", folder / "s.json", "--json"], False),
        (["crl", "issue", "--key", KEYS / "crl.key", "--seq", "1", "--out",
          folder / "[/c].crl", "--json"], True),
        (["inspect", bundle, "--trust", TRUST, "--json"], False),
    ]
    for step, names_path in steps:
        result = invoke(*step, env=ENV)
        assert result.exit_code == 0, (step, result.output)
        assert one_document(result)["ok"] is True, step
        if names_path:
            assert "[/x] [bold]out" in result.stderr.replace("\n", ""), (step, result.stderr)
    assert lic.is_file() and (folder / "[/c].crl").is_file()
    verdict = invoke("license", "verify", lic, "--trust", TRUST, "--state", folder / "s.json",
                     env=ENV)
    assert "for [/z] ACME (acme), product [bold]vision" in verdict.stderr, verdict.stderr


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(("args", "fragment"), [
    (["verify", "--json"], "Missing argument"),
    (["verify", str(VALID), "--json"], "Missing option '--trust'"),
    (["inspect", str(VALID), "--bogus", "--json"], "No such option: --bogus"),
    (["license", "nope", "--json"], "No such command 'nope'"),
    (["trust", "init", "--root-key", "x", "--json"], "Missing option '--out'"),
    (["sbom", "--format", "yaml", str(VALID), "--json"], "unknown --format"),
    (["license", "issue", "--json", "--seq"], "requires an argument"),
])
def test_usage_errors_with_json_print_one_error_document(args: list[str],
                                                         fragment: str) -> None:
    error = assert_error(invoke(*args), "E_USAGE", 2, fragment)
    assert error["hint"]


def test_usage_errors_without_json_keep_click_text_and_stdout_empty() -> None:
    result = invoke("verify")
    assert result.exit_code == 2 and result.stdout == ""
    assert "Missing argument" in result.stderr and "Usage: oemkit verify" in result.stderr


def test_help_and_version_still_exit_0() -> None:
    assert invoke("--help").exit_code == 0
    assert invoke("verify", "--help").exit_code == 0
    version = invoke("--version")
    assert version.exit_code == 0 and version.stdout.startswith("oemkit ")


def test_console_script_prints_a_json_usage_error(tmp_path: Path) -> None:
    """``main()`` (the installed ``oemkit``) takes the same path as ``app``."""
    code = "import sys\nfrom oemkit.cli import main\nsys.argv = sys.argv[1:]\nmain()\n"
    done = subprocess.run([sys.executable, "-c", code, "oemkit", "verify", "--json"],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["error"]["code"] == "E_USAGE"
    ok = subprocess.run([sys.executable, "-c", code, "oemkit", "profile", "list", "--json"],
                        capture_output=True, text=True, check=False, cwd=tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True, ok.stderr


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("text", ["²", "٣", "1_000", "0x10", "1e3", "", " ", "9" * 17,
                                  "9" * 400, "--1", "1.0"])
def test_parse_int_refuses_what_is_not_a_short_ascii_integer(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_int(text, "--seq")
    assert caught.value.code == "E_USAGE" and caught.value.exit_code == 2
    assert "--seq" in caught.value.message and "not an integer" in caught.value.message


def test_parse_int_bounds_the_range() -> None:
    assert parse_int(" 42 ", "--n") == 42 and parse_int("+7", "--n") == 7
    assert parse_int(str(MAX_SAFE_INTEGER), "--n") == MAX_SAFE_INTEGER
    assert parse_int(5, "--n") == 5
    for value, low in ((str(MAX_SAFE_INTEGER + 1), 0), ("-1", 0), ("0", 1), (True, 0)):
        with pytest.raises(UsageError) as caught:
            parse_int(value, "--n", minimum=low)
        assert caught.value.code == "E_USAGE", value


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400", "9" * 400, "0x1p3", "²",
                                  "1,5", ""])
def test_parse_float_refuses_non_finite_and_long_numbers(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_float(text, "--headroom", minimum=0.0, maximum=1.0)
    assert caught.value.code == "E_USAGE"


def test_parse_float_bounds_the_range() -> None:
    assert parse_float("0.25", "--h", minimum=0.0, maximum=1.0) == 0.25
    assert parse_float("1e-2", "--h", minimum=0.0, maximum=1.0) == 0.01
    with pytest.raises(UsageError, match="out of range"):
        parse_float("1.5", "--h", minimum=0.0, maximum=1.0)


@pytest.mark.parametrize(("option", "value", "fragment"), [
    ("--seq", str(1 << 53), "--seq 9007199254740992 is out of range"),
    ("--seq", "0", "--seq 0 is out of range"),
    ("--limit", "seats=²", "--limit seats '²' is not an integer"),
    ("--limit", "=5", "is not NAME=INTEGER"),
    ("--require-limit", "x", None),
    ("--grace", "9" * 400 + "d", "--grace '9999"),
    ("--min-crl-seq", "-1", "--min-crl-seq -1 is out of range"),
])
def test_license_issue_numbers_are_usage_errors(option: str, value: str,
                                                fragment: str | None, tmp_path: Path) -> None:
    args = ["license", "issue", "--key", KEYS / "license.key", "--customer", "a",
            "--customer-name", "A", "--product", "p", "--expires", "2099-01-01", "--out",
            tmp_path / "x.lic", option, value, "--json"]
    result = invoke(*args, env=ENV)
    if fragment is None:  # an option license issue does not have
        assert_error(result, "E_USAGE", 2, "No such option")
        return
    assert_error(result, "E_USAGE", 2, fragment)
    assert not (tmp_path / "x.lic").exists()


def test_license_verify_require_limit_is_parsed_by_the_same_helper(tmp_path: Path) -> None:
    result = invoke("license", "verify", CORPUS / "control-license-valid.lic", "--trust",
                    TRUST, "--state", tmp_path / "s.json", "--require-limit", "seats=²",
                    "--json")
    assert_error(result, "E_USAGE", 2, "--limit seats '²' is not an integer")


# --------------------------------------------------------------------------- file arguments

U = "UNREADABLE"  # placeholder: replaced by a file the test makes unreadable

#: Commands whose input file is unreadable: every input argument is that one file.
UNREADABLE = [
    ["verify", U, "--trust", U],
    ["verify", str(VALID), "--trust", U],
    ["inspect", U],
    ["inspect", str(VALID), "--trust", U],
    ["sbom", U],
    ["sbom", "diff", str(VALID), U],
    ["provenance", U],
    ["provenance", str(VALID), "--trust", U],
    ["sign", U, "--key", str(KEYS / "bundle.key")],
    ["unpack", U, "{tmp}/dest", "--trust", str(TRUST)],
    ["build", U, "--out", "{tmp}/out"],
    ["trust", "show", U],
    ["trust", "init", "--root-key", U, "--out", "{tmp}/r.json"],
    ["trust", "add-key", U, "--pub", U, "--usage", "bundle", "--sign-with", U],
    ["trust", "retire-key", U, "abc", "--sign-with", U],
    ["trust", "set-threshold", U, "bundle", "1", "--sign-with", U],
    ["license", "verify", U, "--trust", str(TRUST), "--state", "{tmp}/s.json"],
    ["license", "verify", str(CORPUS / "control-license-valid.lic"), "--trust", U],
    ["license", "inspect", U],
    ["license", "attach", U, str(CORPUS / "control-license-valid.lic")],
    ["license", "issue", "--key", str(KEYS / "license.key"), "--customer", "a",
     "--customer-name", "A", "--product", "p", "--expires", "2099-01-01", "--hardware", U,
     "--out", "{tmp}/x.lic"],
    ["crl", "issue", "--key", U, "--seq", "1", "--out", "{tmp}/x.crl"],
    ["profile", "show", U],
    ["smoke", U, "--profile", "cpu-small", "--trust", str(TRUST)],
    ["sizing", "compare", U, U],
]


@pytest.mark.parametrize("args", UNREADABLE, ids=[" ".join(a[:2]) + f" #{i}"
                                                  for i, a in enumerate(UNREADABLE)])
def test_unreadable_input_file_is_E_PERMISSION_exit_4(args: list[str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreadable file (simulated: these tests may run as root) is oemkit's
    E_PERMISSION with exit 4 and one JSON document, not click's "is not readable", exit 2.
    """
    target = tmp_path / "unreadable.bin"
    shutil.copyfile(VALID, target)
    real_access, real_open = os.access, builtins.open

    def access(path: Any, mode: int, *a: Any, **kw: Any) -> bool:
        if mode & os.R_OK and Path(path) == target:
            return False
        return real_access(path, mode, *a, **kw)

    def guarded_open(path: Any, *a: Any, **kw: Any) -> Any:
        if isinstance(path, (str, os.PathLike)) and Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(Path, "read_bytes", lambda self: guarded_open(self, "rb").read())
    argv = [str(target) if a == U else a.replace("{tmp}", str(tmp_path)) for a in args]
    result = invoke(*argv, "--json", env=ENV)
    assert_error(result, "E_PERMISSION", 4, "permission denied")


@pytest.mark.parametrize("args", [["inspect", "{d}"], ["verify", "{d}", "--trust", str(TRUST)],
                                  ["license", "inspect", "{d}"], ["trust", "show", "{d}"]])
def test_a_directory_or_missing_file_is_a_coded_input_error(args: list[str],
                                                            tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    assert_error(invoke(*[a.replace("{d}", str(folder)) for a in args], "--json"),
                 "E_NOT_A_FILE", 3)
    missing = [a.replace("{d}", str(tmp_path / "absent")) for a in args]
    assert_error(invoke(*missing, "--json"), "E_NOT_FOUND", 3)


# --------------------------------------------------------------------------- internal errors


def test_an_internal_error_exits_70_with_one_document(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("oemkit.verify.bundle.inspect_bundle", boom)
    result = invoke("inspect", VALID, "--json")
    error = assert_error(result, "E_INTERNAL", EXIT_INTERNAL, "RuntimeError: boom")
    assert EXIT_INTERNAL == 70 and "--debug" in error["hint"]
    plain = invoke("inspect", VALID)
    assert plain.exit_code == 70 and "E_INTERNAL" in plain.stderr


@pytest.mark.parametrize(("raised", "code", "exit_code"), [
    (RuntimeError("rendering failed"), "E_INTERNAL", EXIT_INTERNAL),
    (InputError("E_SOMETHING", "late failure"), "E_SOMETHING", 3),
    (KeyboardInterrupt(), "E_INTERRUPTED", EXIT_INTERRUPTED),
])
def test_an_error_after_the_result_document_replaces_it(
        raised: BaseException, code: str, exit_code: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """inspect emits its document, then fails while printing: stdout holds exactly the
    error document (the partial result is dropped), never two documents."""
    import oemkit.cli.root as cli

    def fail(*a: Any, **kw: Any) -> None:
        raise raised

    monkeypatch.setattr(cli, "_print_inspect", fail)
    result = invoke("inspect", VALID, "--json")
    assert_error(result, code, exit_code)
    assert result.stdout.count('"ok"') == 1


def test_a_failing_verdict_is_still_exit_1_with_its_report(tmp_path: Path) -> None:
    """The verdict "no" keeps exit 1 (and its document): only crashes moved to 70."""
    result = invoke("verify", CORPUS / "review-cli-inspect-markup-rejected-with-trust.oemb",
                    "--trust", TRUST, "--state", tmp_path / "s.json", "--json")
    assert result.exit_code == 1
    doc = one_document(result)
    assert doc["ok"] is False and doc["error"]["code"] == "E_SIGNATURE_UNTRUSTED"


# --------------------------------------------------------------------------- reports


def test_junit_xml_stays_parseable_with_control_characters() -> None:
    import xml.etree.ElementTree as ET

    from oemkit.models.report import Check
    from oemkit.report.junit import junit_xml

    data = junit_xml("suite \x1b", [Check(name="a\x00b", status="fail", detail="d\x1b[31m",
                                          code="E_X", actual="\x0c")], classname="c\x08",
                     properties={"name\x01": "v\x02"})
    root = ET.fromstring(data)
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == "a\\x00b"
    assert case.find("failure").get("message") == "d\\x1b[31m"  # type: ignore[union-attr]


@pytest.mark.parametrize("doc", [
    [], {"configurations": "x", "recommendation": {}},
    {"configurations": [1], "recommendation": {}},
    {"configurations": [{"batch": "1", "threads": 1, "stream": {}}], "recommendation": {}},
    {"configurations": [{"batch": 1, "threads": 1, "stream": []}], "recommendation": {}},
])
def test_sizing_compare_of_a_malformed_report_is_E_SIZING_INVALID(doc: Any,
                                                                    tmp_path: Path) -> None:
    good = {"configurations": [{"batch": 1, "threads": 1, "stream": {"p50": 1.0}}],
            "recommendation": {"sustainable_qps_per_instance": 10}}
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text(json.dumps(doc))
    result = invoke("sizing", "compare", tmp_path / "a.json", tmp_path / "b.json", "--json")
    assert_error(result, "E_SIZING_INVALID", 3)


def test_sizing_compare_counts_non_numbers_as_missing(tmp_path: Path) -> None:
    a = {"configurations": [{"batch": 1, "threads": 1,
                             "stream": {"p50": "[/x]", "p99": 2.0, "throughput_samples_s": 5}}],
         "recommendation": {"sustainable_qps_per_instance": True}}
    b = {"configurations": [{"batch": 1, "threads": 1,
                             "stream": {"p50": 1.0, "p99": 4.0, "throughput_samples_s": 5}}],
         "recommendation": {}}
    (tmp_path / "[a].json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    result = invoke("sizing", "compare", tmp_path / "[a].json", tmp_path / "b.json", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["figure"]: r for r in one_document(result)["rows"]}
    assert rows["batch 1, 1 thr p50 ms"]["a"] is None
    assert rows["batch 1, 1 thr p99 ms"]["ratio"] == 2.0
    assert rows["sustainable QPS per instance"]["a"] is None


def test_a_click_error_inside_a_command_body_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    def bad(*a: Any, **kw: Any) -> Any:
        raise typer.BadParameter("no good")

    monkeypatch.setattr("oemkit.verify.bundle.inspect_bundle", bad)
    assert_error(invoke("inspect", VALID, "--json"), "E_USAGE", 2, "no good")
