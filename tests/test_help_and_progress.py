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
    split = [_docstring_examples(cmd.help or "") for words, cmd in COMMANDS
             if words == ["sizing"]][0]
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
