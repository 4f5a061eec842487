"""Issue 21, items 5 and 6: help that pastes, messages that say what went wrong, and
``oemkit sizing`` that is never silent without a terminal.

- every "Example:" line of every command's ``--help`` is printed whole, on one line, at
  COLUMNS=60, equal to its docstring's example (continuation lines joined);
- no help shows a Python type name (``<list[Path]>``);
- ``sbom``: ``--json`` is oemkit's JSON document, ``--format cyclonedx`` the SBOM itself,
  ``--format json`` a deprecated alias that says so;
- ``--trust`` given a public key says it is one (and how a trust root is made);
- a typo in a nested spec section names the field, its path and its line, with a
  suggestion; ``atol: 1e-5`` (a YAML 1.1 string) suggests ``1.0e-5``;
- ``sizing`` prints one progress line per measured configuration on a non-terminal
  stderr, and none with ``--quiet``.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from helpers import EXAMPLE, KEYS
from oemkit.cli import app

# sizing drives oemkit serve over loopback.
pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]

runner = CliRunner()


def cli(*args, env=None):
    result = runner.invoke(app, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    return result


# --------------------------------------------------------------------------- help


def _commands():
    """Every command's words and its click command (a default command stands for its
    group's line: ``oemkit sizing --help`` is the measurement's help)."""
    import typer

    def walk(cmd, words):
        default = getattr(cmd, "default_command", None)
        if default is not None:
            yield words, default
        elif words:
            yield words, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*words, name])

    return list(walk(typer.main.get_command(app), []))


def _docstring_examples(help_text: str) -> list[str]:
    """The examples a help text holds, each joined into one line: an example goes on over
    the next lines of its paragraph."""
    examples: list[str] = []
    going = False
    for line in help_text.splitlines():
        stripped = line.strip()
        if not stripped:
            going = False
        elif stripped.startswith("Example:"):
            examples.append(stripped)
            going = True
        elif going:
            examples[-1] += " " + stripped
    return examples


COMMANDS = _commands()


def test_the_walk_finds_the_commands_with_examples():
    names = {" ".join(words) for words, _ in COMMANDS}
    assert {"sizing", "sizing compare", "sbom", "trust init", "license issue",
            "evidence", "verify"} <= names
    split = next(_docstring_examples(cmd.help or "") for words, cmd in COMMANDS
                 if words == ["sizing"])
    assert split == [
        "Example: oemkit sizing dist/example-0.2.0.oemb --profile cpu-small --trust "
        "trust-root.json --target-qps 200 --slo p95=20ms --out sizing/",
        "Example: oemkit sizing compare old/sizing.json new/sizing.json --max-regression 0.1"]


@pytest.mark.parametrize("words", [w for w, cmd in COMMANDS if "Example:" in (cmd.help or "")],
                         ids=" ".join)
def test_every_example_line_prints_whole_at_60_columns(words):
    cmd = dict((" ".join(w), c) for w, c in COMMANDS)[" ".join(words)]
    expected = _docstring_examples(cmd.help)
    result = cli(*words, "--help", env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    shown = [line.strip() for line in result.stdout.splitlines() if "Example:" in line]
    assert shown == expected
    for example in expected:
        assert f"\n  {example}\n" in result.stdout  # its own line, indented as help is
    assert "trust-\nroot.json" not in result.stdout


@pytest.mark.parametrize("words", [w for w, _ in COMMANDS], ids=" ".join)
def test_no_python_type_name_in_any_help(words):
    result = cli(*words, "--help", env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    for leak in ("list[", "Path]", "<class", "typing."):
        assert leak not in result.stdout, (leak, result.stdout)


def test_list_options_show_their_item_type():
    verify = cli("verify", "--help", env={"COLUMNS": "100"})
    assert "--layout-key <path>" in verify.stdout
    issue = cli("license", "issue", "--help", env={"COLUMNS": "100"})
    assert "--limit <str>" in issue.stdout
    join = cli("join", "--help", env={"COLUMNS": "100"})
    assert "parts... <path>" in join.stdout


def test_examples_unwrapped_keeps_prose_and_joins_examples():
    from oemkit.cli._output import examples_unwrapped

    text = ("Summary.\n\nProse line.\nExample: oemkit a --trust\ntrust-root.json\n"
            "Example: oemkit b\n\nAfter.")
    assert examples_unwrapped(text) == (
        "Summary.\n\nProse line.\n\n\b\nExample: oemkit a --trust trust-root.json\n"
        "Example: oemkit b\n\nAfter.")
    assert examples_unwrapped(examples_unwrapped(text)) == examples_unwrapped(text)


# --------------------------------------------------------------------------- sizing


SIZING = ["--batch", "1,4", "--threads", "1", "--duration", "0.2s", "--workers", "1",
          "--levels", "0.3", "--level-duration", "0.3s", "--mlperf", "off",
          "--target-qps", "100", "--slo", "p99=2s"]
CONFIG_LINE = re.compile(r"sizing: batch (\d+), 1 thread\(s\): \d+/s p99 [0-9.e+-]+ ms "
                         r"\((\d)/2\)")


@pytest.fixture(scope="module")
def sizing_bundle(_signed_bundle):
    return _signed_bundle


def test_sizing_without_a_terminal_prints_a_line_per_configuration(sizing_bundle, trust_file,
                                                                   tmp_path):
    result = cli("sizing", sizing_bundle, "--profile", "cpu-small", "--trust", trust_file,
                 *SIZING, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout: the one document, nothing else
    assert len(doc["configurations"]) == 2
    lines = result.stderr.splitlines()
    configs = [CONFIG_LINE.fullmatch(line) for line in lines]
    assert [(m.group(1), m.group(2)) for m in configs if m] == [("1", "1"), ("4", "2")]
    served = [line for line in lines if line.startswith("sizing: served, 1 worker(s), "
                                                        "oemkit driver at ")]
    assert len(served) == len(doc["served"]["levels"]) >= 1
    assert all(line.endswith(("meets the SLO", "misses the SLO")) for line in served)
    assert any(line.startswith("one instance (oemkit serve") for line in lines)


def test_sizing_quiet_prints_no_progress_but_the_summary(sizing_bundle, trust_file, tmp_path):
    result = cli("sizing", sizing_bundle, "--profile", "cpu-small", "--trust", trust_file,
                 *SIZING, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    assert "sizing:" not in result.stderr
    assert "one instance (oemkit serve, 1 worker(s)) sustains" in result.stderr
    assert f"reports in {tmp_path / 'out'}/" in result.stderr


def test_sizing_quiet_still_prints_errors(trust_file, tmp_path):
    result = cli("sizing", tmp_path / "none.oemb", "--profile", "cpu-small", "--trust",
                 trust_file, "--quiet")
    assert result.exit_code == 3
    assert result.stderr == (f"error E_NOT_FOUND: bundle {tmp_path / 'none.oemb'} does not "
                             "exist\n  hint: check the path\n")


# --------------------------------------------------------------------------- sbom


def test_sbom_json_is_oemkits_document_and_cyclonedx_the_sbom(signed_bundle, trust_file):
    ours = cli("sbom", signed_bundle, "--trust", trust_file, "--json")
    assert ours.exit_code == 0, ours.output
    doc = json.loads(ours.stdout)
    assert doc["ok"] is True and doc["verified"] is True and doc["components"]
    sbom = cli("sbom", signed_bundle, "--trust", trust_file, "--format", "cyclonedx")
    assert sbom.exit_code == 0, sbom.output
    assert json.loads(sbom.stdout)["bomFormat"] == "CycloneDX"
    assert "deprecated" not in sbom.stderr


def test_sbom_format_json_is_a_deprecated_alias(signed_bundle, trust_file):
    old = cli("sbom", signed_bundle, "--trust", trust_file, "--format", "json")
    assert old.exit_code == 0, old.output
    assert json.loads(old.stdout)["bomFormat"] == "CycloneDX"
    assert old.stderr.startswith(
        "note: --format json is deprecated: say --format cyclonedx (the SBOM itself; --json "
        "is oemkit's JSON document)\n")
    diff = cli("sbom", "diff", signed_bundle, signed_bundle, "--format", "json")
    assert diff.exit_code == 0, diff.output
    assert json.loads(diff.stdout)["changed"] == []
    assert diff.stderr.startswith("note: --format json is deprecated: say --json (the diff "
                                  "as oemkit's JSON document)\n")


@pytest.mark.parametrize(("args", "message", "hint"), [
    (["--format", "cyclonedx", "--json"],
     "--format cyclonedx and --json both print a document on stdout",
     "--format cyclonedx for the SBOM itself, or --json for oemkit's JSON document "
     "(components, verified)"),
    (["--format", "xml"], "unknown --format 'xml'",
     "table or cyclonedx (--json: oemkit's JSON document)"),
])
def test_sbom_switches_that_contradict_are_usage_errors(signed_bundle, args, message, hint):
    result = cli("sbom", signed_bundle, *args, "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == {
        "code": "E_USAGE", "exit_code": 2, "message": message, "hint": hint}


def test_sbom_diff_has_no_cyclonedx(signed_bundle):
    result = cli("sbom", "diff", signed_bundle, signed_bundle, "--format", "cyclonedx")
    assert result.exit_code == 2
    assert result.stderr == ("error E_USAGE: sbom diff has no SBOM to print (--format "
                             "cyclonedx is for one bundle)\n  hint: oemkit sbom diff "
                             "OLD.oemb NEW.oemb --json\n")


# --------------------------------------------------------------------------- --trust


PEM_HINT = ("pass the trust root JSON (e.g. trust-root.json); a trust root is made from root "
            "keys with 'oemkit trust init' and lists the public keys with 'oemkit trust "
            "add-key' (docs/TRUST.md)")


@pytest.mark.parametrize(("key", "kind"), [("bundle.pub", "a public key"),
                                           ("root.key", "a private key")])
def test_trust_given_a_key_says_it_is_a_key(signed_bundle, key, kind):
    result = cli("verify", signed_bundle, "--trust", KEYS / key, "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"] == {
        "code": "E_TRUST_INVALID", "exit_code": 3,
        "message": f"--trust is {kind} (a PEM file), not a trust root", "hint": PEM_HINT}


def test_the_library_says_so_too():
    from oemkit.errors import InputError
    from oemkit.verify.trust import parse_root

    with pytest.raises(InputError) as caught:
        parse_root((KEYS / "license.pub").read_bytes(), "trust.json")
    assert caught.value.code == "E_TRUST_INVALID"
    assert caught.value.message == "trust.json is a public key (a PEM file), not a trust root"
    with pytest.raises(InputError) as caught:
        parse_root(b"-----BEGIN OEMKIT LICENSE-----\nx\n", "t.json")
    assert caught.value.message == "t.json is a oemkit license (a PEM file), not a trust root"


# --------------------------------------------------------------------------- spec errors


def _spec(tmp_path, old, new):
    spec = tmp_path / "spec"
    shutil.copytree(EXAMPLE, spec)
    text = (spec / "bundle.yaml").read_text()
    assert old in text
    (spec / "bundle.yaml").write_text(text.replace(old, new))
    lines = (spec / "bundle.yaml").read_text().splitlines()
    return spec / "bundle.yaml", lines


def test_a_typo_in_a_nested_section_names_the_field_and_its_line(tmp_path):
    spec, lines = _spec(tmp_path, "  outputs: golden/expected.json",
                        "  ouputs: golden/expected.json")
    line = lines.index("  ouputs: golden/expected.json") + 1
    result = cli("build", spec, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"] == {
        "code": "E_SPEC_INVALID", "exit_code": 3, "field": "golden.ouputs",
        "message": f"bundle.yaml line {line}: unknown field 'ouputs' in golden (did you "
                   "mean 'outputs'?)",
        "hint": "rename it to 'outputs'; allowed fields in golden: inputs, outputs, atol, rtol"}


def test_a_typo_naming_a_nested_section_points_at_its_key(tmp_path):
    spec, lines = _spec(tmp_path, "license:\n  required: false",
                        "licence:\n  required: false")
    line = lines.index("licence:") + 1
    result = cli("build", spec, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 3
    error = json.loads(result.stdout)["error"]
    assert error["message"] == (f"bundle.yaml line {line}: unknown field 'licence' in the "
                                "top level (did you mean 'license'?)")
    assert error["field"] == "licence"
    assert error["hint"].startswith("rename it to 'license'; allowed fields at the top "
                                    "level: apiVersion, ")


@pytest.mark.parametrize(("written", "suggested"), [("1e-5", "1.0e-5"), ("2E6", "2.0E+6"),
                                                    ("1.5e5", "1.5e+5")])
def test_a_yaml11_string_in_a_number_field_suggests_the_number(tmp_path, written, suggested):
    spec, lines = _spec(tmp_path, "  atol: 1.0e-5", f"  atol: {written}")
    line = lines.index(f"  atol: {written}") + 1
    result = cli("build", spec, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"] == {
        "code": "E_SPEC_INVALID", "exit_code": 3, "field": "golden.atol",
        "message": f"bundle.yaml line {line}: golden.atol: YAML reads {written} as a "
                   f"string; write {suggested}",
        "hint": "YAML 1.1 reads a number with an exponent only with a dot and a signed "
                f"exponent: golden.atol: {suggested}"}


def test_yaml11_number_leaves_other_strings_alone():
    from oemkit.schema import yaml11_number

    assert yaml11_number("1e-5") == "1.0e-5"
    assert yaml11_number("3.e2") == "3.0e+2"
    assert yaml11_number("fast") is None and yaml11_number("1.5") is None
