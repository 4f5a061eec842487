"""Start-up (issue 17): what each hot command imports, and that the fast paths answer as
typer does.

- The root group builds each command on demand (cli/_lazy.py): its help, and every
  command's help, equal what typer's own full build gives.
- The fast coercion (cli/_lazy.py) returns what typer's pydantic coercion returns, for every
  parameter of every command, and leaves every value it refuses to typer.
- ``oemkit verify`` and ``oemkit license verify`` answer without typer (cli/_hot.py): their
  option tables match the typer commands, and both paths print the same bytes and exit
  with the same code.
- Shell completion works for bash (run in bash itself), zsh and fish.

No wall-clock limits here: benchmarks/startup.py measures the times.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

CORPUS = REPO / "tests" / "hostile" / "corpus"
LICENSE = CORPUS / "control-license-valid.lic"
LICENSE_ROOT = CORPUS / "trust-root.json"
#: The typer path, as the console script would take it without the fast entry.
TYPER = "import sys; from oemkit.cli.root import main; sys.argv[0] = 'oemkit'; main()"
FAST = "import sys; from oemkit._entry import main; sys.argv[0] = 'oemkit'; main()"
_TIME = re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def _run(code: str, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=REPO)


def _modules(argv: list[str]) -> set[str]:
    """Top-level packages a command line imported, through the console script's entry."""
    code = ("import sys\nfrom oemkit._entry import main\nsys.argv = ['oemkit', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.__stdout__.write('\\nMODULES ' + ' '.join(sorted(sys.modules)))")
    out = _run(code, *argv).stdout
    line = out.rsplit("MODULES ", 1)[1]
    return set(line.split())


def _top(modules: set[str]) -> set[str]:
    return {m.partition(".")[0] for m in modules}


# --------------------------------------------------------------------------- imports


def test_help_imports_neither_pydantic_nor_rich_nor_the_library():
    modules = _modules(["--help"])
    assert not _top(modules) & {"pydantic", "rich", "cryptography", "yaml", "zstandard",
                                "onnxruntime", "numpy", "in_toto", "securesystemslib"}
    assert not {m for m in modules if m.startswith(("oemkit.verify", "oemkit.release",
                                                    "oemkit.host"))}


def test_verify_imports_no_cli_layer(signed_bundle, trust_file):
    modules = _modules(["verify", str(signed_bundle), "--trust", str(trust_file)])
    assert "oemkit.verify.bundle" in modules  # it did verify
    assert not _top(modules) & {"typer", "click", "pydantic", "in_toto", "onnxruntime",
                                "numpy", "starlette", "uvicorn"}
    assert "oemkit.cli.root" not in modules


def test_license_verify_imports_no_cli_layer(tmp_path):
    modules = _modules(["license", "verify", str(LICENSE), "--trust", str(LICENSE_ROOT),
                        "--state", str(tmp_path / "state.json")])
    assert "oemkit.host.license_state" in modules
    assert not _top(modules) & {"typer", "click", "pydantic", "zstandard", "yaml",
                                "onnxruntime", "numpy", "in_toto", "securesystemslib",
                                "cyclonedx", "jsonschema_rs"}


def test_status_imports_no_cli_layer(tmp_path):
    modules = _modules(["status", "--prefix", str(tmp_path), "--json"])
    assert "oemkit.host.install" in modules
    assert not _top(modules) & {"typer", "click", "pydantic", "onnxruntime", "numpy",
                                "in_toto", "starlette", "uvicorn"}


def test_a_typer_command_with_paths_does_not_import_pydantic(tmp_path):
    # inspect is a typer command (not a hot one) with a path argument and options
    modules = _modules(["license", "inspect", str(LICENSE), "--json"])
    assert "typer" in _top(modules) and "pydantic" not in _top(modules)


# --------------------------------------------------------------------------- lazy commands


@pytest.mark.parametrize("columns", ["50", "80", "200"])
def test_the_lazy_root_help_is_typers(columns):
    env = {"COLUMNS": columns}
    eager = _run("import sys; from oemkit.cli import app; sys.argv[0] = 'oemkit'; app()",
                 "--help", env=env)
    lazy = _run(TYPER, "--help", env=env)
    assert lazy.returncode == eager.returncode == 0
    assert lazy.stdout == eager.stdout and lazy.stderr == eager.stderr
    assert "verify" in lazy.stdout and "license" in lazy.stdout


def test_every_command_built_on_demand_is_typers():
    import typer
    from typer import _click as click

    from oemkit.cli import app
    from oemkit.cli._lazy import LazyCommands, root_group
    from oemkit.cli._output import _leave_paths_to_oemkit

    eager = typer.main.get_command(app)
    lazy = root_group(app, _leave_paths_to_oemkit)
    assert isinstance(lazy.commands, LazyCommands)
    assert list(lazy.commands) == list(eager.commands)  # names, in typer's order
    assert not lazy.commands._built  # listing built nothing

    def helps(group, parent):
        for name in group.commands:
            cmd = group.commands[name]
            ctx = click.Context(cmd, info_name=name, parent=parent)
            yield name, cmd.get_help(ctx), [p.name for p in cmd.params]
            if hasattr(cmd, "commands"):
                yield from helps(cmd, ctx)

    root_eager = click.Context(eager, info_name="oemkit")
    root_lazy = click.Context(lazy, info_name="oemkit")
    assert list(helps(lazy, root_lazy)) == list(helps(eager, root_eager))
    # and the listing's stand-ins say what the built commands say
    fresh = root_group(app, _leave_paths_to_oemkit)
    for name in fresh.commands:
        assert fresh.commands.summary(name).get_short_help_str(60) == \
            eager.commands[name].get_short_help_str(60), name


def test_a_typo_still_gets_typers_suggestion():
    out = _run(TYPER, "verfy")
    assert out.returncode == 2
    assert "No such command 'verfy'. Did you mean 'verify'?" in out.stderr


# --------------------------------------------------------------------------- coercion


def _params():
    import typer

    from oemkit.cli import app

    def walk(cmd, path):
        for param in cmd.params:
            if hasattr(param, "type_descriptor"):
                yield path, param
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")
        default = getattr(cmd, "default_command", None)
        if default is not None:
            yield from walk(default, f"{path} (default)")

    yield from walk(typer.main.get_command(app), "oemkit")


SAMPLES = ["x", "", "a/b.oemb", "-", "5", "0", "-1", "1.5", "3600", "abc", "1e3", " 7",
           "99999999999999999999999", "true"]


def _outcome(runtime, value, param):
    from typer import _click as click
    from typer.core import TyperCommand

    ctx = click.Context(TyperCommand(name="t"))
    try:
        return ("ok", runtime._coerce_value(value, param=param, ctx=ctx))
    except Exception as exc:  # compared as type and message
        return ("error", type(exc).__name__, str(exc))


def test_fast_coercion_returns_what_typer_returns_for_every_parameter():
    from typer._coercion import build_runtime_param

    from oemkit.cli._lazy import _fast_param

    seen = fast = 0
    for path, param in _params():
        descriptor = param.type_descriptor
        ours = _fast_param(descriptor)
        seen += 1
        if ours is None:
            continue
        fast += 1
        typers = build_runtime_param(descriptor)
        many = param.multiple or param.nargs == -1
        values = [(v,) for v in SAMPLES] if many else [*SAMPLES, True, False, 3, Path("p")]
        for value in values:
            assert _outcome(ours, value, param) == _outcome(typers, value, param), \
                (path, param.name, value)
    assert fast == seen  # every parameter oemkit declares takes the fast path


# --------------------------------------------------------------------------- the hot path


def test_the_hot_option_tables_are_the_typer_commands():
    import typer

    from oemkit.cli import app
    from oemkit.cli._hot import SPECS

    root = typer.main.get_command(app)
    kinds = {"flag": (True, False), "paths": (False, True), "strs": (False, True),
             "path": (False, False), "str": (False, False), "int": (False, False)}
    for spec in SPECS:
        cmd = root
        for word in spec.words:
            cmd = cmd.commands[word]
        options = {p.opts[0]: p for p in cmd.params if p.param_type_name == "option"
                   and not p.hidden}
        arguments = [p.name for p in cmd.params if p.param_type_name == "argument"]
        assert arguments == ([] if spec.positional is None else [spec.positional]), spec.words
        assert {o.flag for o in spec.options} == set(options), spec.words
        for opt in spec.options:
            param = options[opt.flag]
            assert param.name == opt.dest, opt.flag
            assert (param.is_flag, param.multiple) == kinds[opt.kind], opt.flag
            assert param.required == opt.required, opt.flag
            if not opt.required:
                want = [] if opt.kind in ("paths", "strs") else opt.default
                assert (param.default if param.default is not None or not param.multiple
                        else []) == want, opt.flag


@pytest.mark.parametrize(("argv", "accepted"), [
    (["b.oemb", "--trust", "t.json"], {"bundle": Path("b.oemb"), "trust": Path("t.json")}),
    (["--trust=t.json", "b.oemb", "--json"], {"json_out": True}),
    (["b.oemb", "--trust", "t.json", "--max-files", "5"], {"max_files": 5}),
    (["b.oemb", "--trust", "t.json", "--help"], None),
    (["b.oemb"], None),  # --trust is required: typer says so
    (["b.oemb", "--trust", "t.json", "--trust", "u.json"], None),  # repeated
    (["b.oemb", "--trust", "t.json", "--max-files", "0"], None),  # typer words the error
    (["b.oemb", "--trust", "t.json", "--max-files", "x"], None),
    (["b.oemb", "c.oemb", "--trust", "t.json"], None),
    (["b.oemb", "--trust"], None),
    (["b.oemb", "--trust", "-t"], None),
    (["b.oemb", "--trust", ""], None),
    (["b.oemb", "--trust", "t.json", "--json=1"], None),
    (["b.oemb", "--trust", "t.json", "--nope"], None),
    (["b.oemb", "--trust", "t.json", "--", "x"], None),
    (["-", "--trust", "t.json"], None),
])
def test_the_hot_parser_takes_only_plain_lines(argv, accepted):
    from oemkit.cli._hot import SPECS, accept

    got = accept(SPECS[0], argv)
    if accepted is None:
        assert got is None
    else:
        assert got is not None
        assert {k: got[k] for k in accepted} == accepted


def test_repeated_license_options_accumulate():
    from oemkit.cli._hot import SPECS, accept

    got = accept(SPECS[1], ["a.lic", "--trust", "t", "--crl", "1.crl", "--crl=2.crl",
                            "--require-feature", "batch"])
    assert got is not None
    assert got["crl"] == [Path("1.crl"), Path("2.crl")] and got["require_feature"] == ["batch"]
    assert got["require_limit"] == [] and got["state"] is None and got["json_out"] is False


def _hot_lines(bundle: Path, bad: Path, trust: Path, state: Path, prefix: Path
               ) -> list[list[str]]:
    lic = str(LICENSE)
    root = str(LICENSE_ROOT)
    return [
        ["verify", str(bundle), "--trust", str(trust)],
        ["verify", str(bundle), "--trust", str(trust), "--json"],
        ["verify", str(bad), "--trust", str(trust)],
        ["verify", str(bad), "--json", f"--trust={trust}"],
        ["verify", str(bundle.with_name("absent.oemb")), "--trust", str(trust), "--json"],
        ["verify", str(bundle), "--trust", str(bundle.with_name("absent.json"))],
        ["verify", str(bundle), "--trust", str(trust), "--max-member-size", "64"],
        ["license", "verify", lic, "--trust", root, "--state", str(state)],
        ["license", "verify", lic, "--trust", root, "--state", str(state), "--json"],
        ["license", "verify", lic, "--trust", root, "--state", str(state),
         "--require-feature", "nope"],
        ["license", "verify", lic, "--trust", root, "--state", str(state),
         "--require-limit", "seats=51", "--json"],
        ["license", "verify", lic, "--trust", root, "--state", str(state), "--crl",
         str(CORPUS / "crl-float.crl")],
        ["license", "verify", str(CORPUS / "license-armor-missing.lic"), "--trust", root,
         "--state", str(state)],
        ["license", "verify", lic, "--trust", str(trust), "--state", str(state), "--json"],
        ["status", "--prefix", str(prefix)],
        ["status", f"--prefix={prefix}", "--json"],
        ["status", "--prefix", str(bundle.with_name("no-such-prefix")), "--json"],
        ["status", "--json", "--prefix", str(bundle)],  # a file, not a prefix
    ]


def test_the_hot_path_answers_byte_for_byte_as_typer(signed_bundle, trust_file, tmp_path):
    from helpers import read_members, replace_member, write_members

    members = read_members(signed_bundle)
    name = "oemkit-bundle.json"  # the manifest: changing it breaks its signed digest
    bad = write_members(tmp_path / "bad.oemb", replace_member(
        members, name, dict(members)[name].replace(b'"example"', b'"exampl3"')))
    env = {"OEMKIT_STATE": str(tmp_path / "default-state.json"), "COLUMNS": "100"}
    state = tmp_path / "state.json"

    def answer(code: str, argv: list[str]) -> tuple[int, str, str]:
        state.unlink(missing_ok=True)  # each path starts from the same (no) license state
        out = _run(code, *argv, env=env)
        # the one thing that differs between two runs: the clock ("judged at", in a second)
        return (out.returncode, _TIME.sub("<now>", out.stdout), _TIME.sub("<now>", out.stderr))

    prefix = tmp_path / "opt"  # an installed prefix for oemkit status
    installed = _run(FAST, "install", str(signed_bundle), "--prefix", str(prefix), "--trust",
                     str(trust_file), "--skip-smoke", "--no-ready-check",
                     "--system-site-packages", "--state", str(tmp_path / "install-state.json"))
    assert installed.returncode == 0, installed.stderr
    codes = set()
    for argv in _hot_lines(signed_bundle, bad, trust_file, state, prefix):
        fast = answer(FAST, argv)
        assert fast == answer(TYPER, argv), argv
        codes.add(fast[0])
    assert {0, 1, 3} <= codes  # verified, rejected, bad input all covered


def test_a_line_the_hot_parser_declines_is_answered_by_typer(signed_bundle, trust_file):
    out = _run(FAST, "verify", str(signed_bundle), "--trust", str(trust_file), "--max-files",
               "0", "--json")
    assert out.returncode == 2
    assert "--max-files" in out.stderr and '"E_USAGE"' in out.stdout
    helped = _run(FAST, "license", "verify", "--help")
    assert helped.returncode == 0 and "Verify a license offline" in helped.stdout


# --------------------------------------------------------------------------- completion


def _complete(shell: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run(FAST, env={"_OEMKIT_COMPLETE": f"complete_{shell}", **env})


def test_bash_completion_in_bash():
    bash = shutil.which("bash")  # essential on Debian; .ci/run itself runs in it
    assert bash is not None, "bash is needed to run the bash completion script"
    source = _run(FAST, env={"_OEMKIT_COMPLETE": "source_bash"})
    assert source.returncode == 0 and "complete -o default -F _oemkit_completion oemkit" \
        in source.stdout
    shim = Path(sys.executable).parent  # `oemkit` on PATH: the venv's console script
    script = (source.stdout + '\nCOMP_WORDS=(oemkit license v); COMP_CWORD=2; '
              '_oemkit_completion oemkit; printf "%s\\n" "${COMPREPLY[@]}"\n')
    out = subprocess.run([bash, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"})
    assert out.stdout.split() == ["verify"], out.stderr


def test_bash_zsh_and_fish_complete_commands_and_options():
    out = _complete("bash", {"COMP_WORDS": "oemkit ver", "COMP_CWORD": "1"})
    assert out.stdout.split() == ["verify"]
    out = _complete("bash", {"COMP_WORDS": "oemkit verify --tr", "COMP_CWORD": "2"})
    assert out.stdout.split() == ["--trust"]
    out = _complete("zsh", {"_TYPER_COMPLETE_ARGS": "oemkit lic"})
    assert "license" in out.stdout and out.returncode == 0
    out = _complete("fish", {"_TYPER_COMPLETE_ARGS": "oemkit lic",
                             "_TYPER_COMPLETE_FISH_ACTION": "get-args"})
    assert out.stdout.splitlines()[0].startswith("license") and out.returncode == 0
    for shell in ("zsh", "fish"):
        source = _run(FAST, env={"_OEMKIT_COMPLETE": f"source_{shell}"})
        assert source.returncode == 0 and "_OEMKIT_COMPLETE=complete_" + shell in source.stdout
