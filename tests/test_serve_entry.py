"""``oemkit serve`` without the CLI layer (oemkit._entry, oemkit.serve.entry): the same
options as the typer command, the same answers, and none of the CLI's imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from oemkit.cli import app
from oemkit.serve import entry
from oemkit.serve.entry import OPTIONS, ServeArgs, accept

REPO = Path(__file__).resolve().parents[1]


def _typer_serve() -> Any:
    return typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]


def test_options_are_the_typer_commands_own():
    """Every option the typer command declares is in OPTIONS with the same default,
    range, type and multiplicity, and nothing else is."""
    declared = {}
    for param in _typer_serve().params:
        if param.name == "target":
            continue
        info = param.type_descriptor.parameter_info
        declared[param.opts[0]] = (param.default, info.min, info.max,
                                   bool(param.multiple))
    ours = {o.flag: ([] if o.multiple else o.default, o.min, o.max, o.multiple)
            for o in OPTIONS}
    assert ours == declared
    kinds = {p.opts[0]: p.type_descriptor.annotation for p in _typer_serve().params
             if p.name != "target"}
    for option in OPTIONS:
        assert kinds[option.flag] in (option.kind, option.kind | None,
                                      list[option.kind]), option.flag  # type: ignore[index]
    # and ServeArgs' defaults are OPTIONS' defaults
    blank = ServeArgs(target=Path("t"))
    assert {o.dest: getattr(blank, o.dest) for o in OPTIONS} == {
        o.dest: [] if o.multiple else o.default for o in OPTIONS}


LINES = [
    ["prefix"],
    ["b.oemb", "--trust", "root.json", "--port", "0", "--port-file", "p"],
    ["--workers", "3", "prefix", "--max-batch=8", "--max-queue-delay", "2.5"],
    ["prefix", "--license", "a.lic", "--license=b.lic", "--state", "s.json",
     "--host", "::1", "--drain", "0", "--inline-below", "0"],
    ["prefix", "--max-body", "1024", "--max-queue", "1000000", "--request-timeout", "0.1",
     "--tls-cert", "c.pem", "--tls-key", "k.pem", "--token-file", "t", "--profile",
     "gpu-cuda", "--port", "65535"],
]


@pytest.mark.parametrize("line", LINES)
def test_parse_gives_what_the_typer_command_passes(line, monkeypatch):
    """For a well-formed line the fast parser's ServeArgs equal the ones the typer
    command hands to the same start()."""
    seen: list[ServeArgs] = []

    def fake_start(args: ServeArgs) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr("oemkit.cli.serve.start", fake_start)
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["serve", *line])
    assert result.exit_code == 0, result.output
    assert accept(line) == seen[0]


@pytest.mark.parametrize("line", [
    [], ["--help"], ["prefix", "--help"], ["-h"], ["prefix", "other"],
    ["prefix", "--nope", "1"], ["prefix", "--port"], ["prefix", "--port", "x"],
    ["prefix", "--port", "65536"], ["prefix", "--port", "-1"], ["prefix", "--workers", "0"],
    ["prefix", "--max-queue-delay", "nan"], ["prefix", "--drain", "inf"],
    ["prefix", "--trust", "--port"], ["prefix", "--trust="], ["--", "prefix"], ["-"],
    ["prefix", "--max-body", "1023"],
])
def test_parse_leaves_everything_else_to_the_cli(line):
    assert accept(line) is None


def _run(args: list[str], entry_code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", entry_code, *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize(("args", "code", "error"), [
    (["serve", "missing-prefix"], 3, "error E_NOT_FOUND: missing-prefix does not exist"),
    (["serve", "bundle-file", "--tls-cert", "c.pem"], 2,
     "error E_USAGE: --tls-cert and --tls-key go together"),
    (["serve", "bundle-file"], 3, "error E_TRUST_REQUIRED: serving the bundle file "
     "bundle-file needs --trust ROOT"),
])
def test_errors_read_the_same_both_ways(args, code, error, tmp_path):
    """A bad target or option: the console script's fast path prints what the typer
    command prints, with the same exit code."""
    (tmp_path / "bundle-file").write_bytes(b"x")
    fast = _run(args, "import sys; from oemkit._entry import main; sys.argv[0] = 'oemkit'; "
                "main()", tmp_path)
    slow = _run(args, "import sys; from oemkit.cli import main; sys.argv[0] = 'oemkit'; "
                "main()", tmp_path)
    assert fast.returncode == slow.returncode == code
    assert fast.stderr == slow.stderr and fast.stdout == slow.stdout
    assert fast.stderr.startswith(error) and "hint: " in fast.stderr


def test_help_and_usage_errors_still_come_from_the_cli(tmp_path):
    code = "import sys; from oemkit._entry import main; sys.argv[0] = 'oemkit'; main()"
    helped = _run(["serve", "--help"], code, tmp_path)
    assert helped.returncode == 0 and "--max-queue-delay" in helped.stdout
    bad = _run(["serve", "prefix", "--port", "70000"], code, tmp_path)
    assert bad.returncode == 2
    assert "Invalid value for '--port': Input should be less than or equal to 65535" \
        in bad.stderr


def test_the_fast_path_imports_no_cli_layer(tmp_path):
    """Up to the point it would serve, ``oemkit serve`` has not imported typer, rich,
    click, pydantic, the CLI or the installer (the cold start and every worker's memory
    depend on it)."""
    code = """
import json, sys
from pathlib import Path
import oemkit.serve.server, oemkit.serve.target
from oemkit.serve.runtime import Source
from oemkit.models.serving import LicensePolicy

class T:
    profiles = ("cpu-small",)
    source = Source(root_dir=Path("."), model=Path("m.onnx"), name="m", version="1",
                    policy=LicensePolicy.from_dict(None))
    def close(self): pass

def fake_serve(source, settings, listen):
    print(json.dumps({"modules": sorted(sys.modules), "workers": settings.workers,
                      "port": listen.port, "max_batch": settings.max_batch}))
    return 0

oemkit.serve.target.open_target = lambda *a, **k: T()
oemkit.serve.server.serve = fake_serve
sys.argv = ["oemkit", "serve", "somewhere", "--port", "9", "--workers", "2",
            "--max-batch", "4"]
from oemkit._entry import main
main()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["workers"], doc["port"], doc["max_batch"]) == (2, 9, 4)
    loaded = set(doc["modules"])
    for name in ("typer", "rich", "click", "pydantic", "oemkit.cli", "oemkit.host.install"):
        assert name not in loaded, name
    assert "oemkit.serve.entry" in loaded and "oemkit.host.profiles" in loaded


def test_console_script_points_at_the_entry():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["oemkit"] == "oemkit._entry:main"
    assert entry.start is not None
