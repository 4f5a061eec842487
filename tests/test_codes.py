"""The error registry (src/oemkit/codes.py) against the source tree and docs/ERRORS.md.

The source is scanned at run time (every module under src/oemkit, wherever it lives), so
a code added, moved or raised with a new family anywhere is seen.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from oemkit import codes, errors
from oemkit.codes import (
    CONTAINED,
    FAMILY_EXIT,
    INTERNAL_EXIT,
    REGISTRY,
    REWRAPS,
    UNRAISED,
    Scan,
    X,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "oemkit"
ERRORS_MD = ROOT / "docs" / "ERRORS.md"
REGENERATE = "python -m oemkit.codes --markdown > docs/ERRORS.md"


@pytest.fixture(scope="module")
def scanned() -> Scan:
    return codes.scan(SRC)


def _where(scanned: Scan, code: str, kind: str | None = None) -> list[str]:
    return [f"{s.module}:{s.line} ({s.kind} {s.family})" for s in scanned.sites
            if s.code == code and (kind is None or s.kind == kind)]


def test_the_scan_sees_every_way_a_code_is_raised(scanned: Scan) -> None:
    """Not vacuous: hundreds of sites, and each way of raising a code is recognised."""
    assert len(scanned.sites) > 400
    assert len({s.code for s in scanned.sites}) > 150
    raised = scanned.raised()
    assert raised["E_UNSIGNED"] == {"VerificationError"}          # through verify's _fail
    assert raised["E_STOP"] == {"OemkitError"}                   # super().__init__("E_STOP")
    assert "InputError" in raised["E_JSON"]                       # parse_json's default code
    assert "InputError" in raised["E_MIGRATION_ROUNDTRIP"]        # `first.code or "E_…"`
    assert raised["E_USAGE"] == {"UsageError"}
    assert {s.kind for s in scanned.sites if s.code == "E_PART_MISSING"} >= {"record"}
    assert any(r.caught == "InputError" and r.raised == "VerificationError"
               for r in scanned.rewraps)


def test_every_code_in_the_source_is_registered(scanned: Scan) -> None:
    missing = sorted({s.code for s in scanned.sites} - set(REGISTRY))
    assert not missing, {code: _where(scanned, code) for code in missing}


def test_every_registered_code_is_emitted_somewhere(scanned: Scan) -> None:
    used = {s.code for s in scanned.sites}
    dead = sorted(set(REGISTRY) - used - set(UNRAISED))
    assert not dead, f"{dead} are registered but never raised: remove them from " \
                     "src/oemkit/codes.py, or list them in UNRAISED with why they stay"
    assert not set(UNRAISED) - set(REGISTRY)


def test_no_code_is_raised_with_an_undeclared_family(scanned: Scan) -> None:
    """A second family (exit code) for a code is either declared in its ``also``, with a
    reason, or a mistake."""
    wrong: dict[str, list[str]] = {}
    for site in scanned.sites:
        entry = REGISTRY.get(site.code)
        if site.kind == "raise" and entry and site.family not in (entry.family, *entry.also):
            wrong.setdefault(site.code, []).append(
                f"{site.module}:{site.line} raises it as {site.family}, registered as "
                f"{entry.family}" + (f" (also {', '.join(entry.also)})" if entry.also else ""))
    assert not wrong, wrong


def test_declared_second_families_are_real_families_with_a_reason() -> None:
    for code in REGISTRY.values():
        assert code.family not in code.also, code.name
        assert all(a in FAMILY_EXIT for a in code.also), code.name
        assert bool(code.also) == bool(code.reason), code.name
        assert len(set(code.also)) == len(code.also), code.name


def test_every_rewrap_is_declared(scanned: Scan) -> None:
    """``Family(exc.code, …)`` changes a code's family: each such place is declared."""
    undeclared = [f"{r.module}:{r.line} {r.function}: {r.caught} -> {r.raised}"
                  for r in scanned.rewraps
                  if (r.function, r.caught, r.raised) not in REWRAPS]
    assert not undeclared, f"{undeclared}: add them to REWRAPS in src/oemkit/codes.py " \
                           "(and the codes that change family to their `also`)"


def test_every_declared_rewrap_is_in_the_source(scanned: Scan) -> None:
    """No stale REWRAPS entry: a declaration names a place the scan still finds."""
    found = {(r.function, r.caught, r.raised) for r in scanned.rewraps}
    stale = sorted(str(key) for key in set(REWRAPS) - found)
    assert not stale, f"{stale}: no such re-raise in the source; drop them from REWRAPS"


def test_the_pinned_root_is_loaded_in_one_place(scanned: Scan) -> None:
    """verify.trust.load_pinned is the one place a bad pinned root becomes bad input (3):
    verify_open_bundle and plan_join call it instead of restating the check."""
    pinned = [(r.module, r.function) for r in scanned.rewraps
              if r.caught == "VerificationError" and r.raised == "InputError"]
    assert ("oemkit.verify.trust", "load_pinned") in pinned
    assert {f for _, f in pinned} <= {"load_pinned", "_successor"}, pinned
    holders = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                     if "pinned trust root is not properly" in p.read_text("utf-8"))
    assert holders == ["verify/trust.py"], holders


def test_contained_codes_are_raised_only_where_they_are_caught(scanned: Scan) -> None:
    """E_STOP and E_STATE_INVALID never reach a user: no module but their own emits them,
    and E_STOP's class is no family the payload reader restates or the CLI reports."""
    assert set(CONTAINED) <= set(REGISTRY)
    for name, (module, how) in CONTAINED.items():
        assert how
        where = {s.module for s in scanned.sites if s.code == name and s.kind != "reference"}
        assert where == {module}, (name, where)
    from oemkit.host.migrate import _Enough

    assert type(_Enough()).__mro__[1] is errors.OemkitError
    assert _Enough().code == "E_STOP"


def test_a_state_file_that_is_not_json_is_a_warning_not_an_error(tmp_path: Path) -> None:
    from oemkit.host.license_state import load_state

    for data in (b"{not json", b"\xff\xfe", b"[" * 100 + b"]" * 100, b'{"a": 1, "a": 2}'):
        path = tmp_path / "state.json"
        path.write_bytes(data)
        _, note = load_state(path)
        assert note is not None and "is corrupt" in note, note
        assert "E_STATE_INVALID" not in note
        assert (tmp_path / "state.json.corrupt").read_bytes() == data


@pytest.mark.parametrize("module", ["oemkit.verify.bundle", "oemkit.verify.trust"])
def test_public_verify_functions_document_what_they_raise(scanned: Scan, module: str) -> None:
    """Issue 14 step 4: every public function of verify/bundle.py and verify/trust.py has
    a ``Raises:`` section naming only registered codes, and every code its own body
    raises."""
    import importlib
    import inspect
    import re

    mod = importlib.import_module(module)
    functions = [(name, fn) for name, fn in vars(mod).items() if inspect.isfunction(fn)
                 and fn.__module__ == module and not name.startswith("_")]
    assert len(functions) >= 6
    for name, fn in functions:
        doc = inspect.getdoc(fn) or ""
        assert "\nRaises:\n" in doc, f"{module}.{name} has no Raises: section"
        named = set(re.findall(r"\bE_[A-Z0-9_]+", doc.split("\nRaises:\n", 1)[1]))
        assert named <= set(REGISTRY), (name, named - set(REGISTRY))
        own = {s.code for s in scanned.sites
               if s.module == module and s.function == name and s.kind == "raise"}
        assert own <= named, (name, own - named)


def test_registry_entries_are_well_formed() -> None:
    assert len(REGISTRY) == len(codes._CODES), "a code is registered twice"
    for name, code in REGISTRY.items():
        assert name == code.name and name.startswith("E_"), name
        assert code.meaning.strip() and "\n" not in code.meaning, name
        assert "\n" not in code.hint and "\n" not in code.reason, name
        assert code.family in FAMILY_EXIT or code.family == X, name


def test_every_registered_code_has_a_meaning_and_a_default_hint() -> None:
    """Every code tells the user what it means and what to do next: the hint is what the
    CLI shows when a raise site gives none (cli/_output.py)."""
    bare = sorted(name for name, code in REGISTRY.items()
                  if not code.hint.strip() or not code.meaning.strip())
    assert not bare, f"{bare} have no default hint (or meaning) in src/oemkit/codes.py"


def test_the_cli_guard_prints_the_registry_hints() -> None:
    """E_INTERNAL and E_INTERRUPTED have no exception class: the CLI's guard writes their
    hints itself (cli/_print.py, shared by the typer and the typer-free paths), and they
    are the registry's."""
    guard = (SRC / "cli" / "_print.py").read_text(encoding="utf-8")
    for name in INTERNAL_EXIT:
        assert f'"{codes.lookup(name).hint}"' in guard, name


@pytest.mark.parametrize("json_flag", [False, True])
def test_an_error_raised_without_a_hint_shows_the_registry_hint(
        monkeypatch: pytest.MonkeyPatch, json_flag: bool) -> None:
    """The CLI falls back to the code's default hint when the raise site gives none, in the
    text on stderr and in the --json error document; a raise site's own hint wins."""
    import json

    from typer.testing import CliRunner

    from oemkit.cli import app
    from oemkit.host import profiles

    def raising(hint: str) -> object:
        def shipped() -> None:
            raise errors.InputError("E_PROFILE_INVALID", "probe: no such field", hint=hint)
        return shipped

    default = codes.lookup("E_PROFILE_INVALID").hint
    args = ["profile", "list"] + (["--json"] if json_flag else [])
    for given, shown in (("", default), ("the site's own hint", "the site's own hint")):
        monkeypatch.setattr(profiles, "shipped_profiles", raising(given))
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 3, result.output
        assert "probe: no such field" in result.stderr
        assert f"hint: {shown}" in " ".join(result.stderr.split()), result.stderr
        if json_flag:
            doc = json.loads(result.stdout)
            assert doc["error"]["code"] == "E_PROFILE_INVALID"
            assert doc["error"]["hint"] == shown
            assert doc["error"]["exit_code"] == 3


def test_exit_codes_are_the_families_exit_codes() -> None:
    for family, exit_code in FAMILY_EXIT.items():
        cls = getattr(errors, family)
        assert issubclass(cls, errors.OemkitError) and cls.exit_code == exit_code, family
    assert INTERNAL_EXIT == {"E_INTERNAL": errors.EXIT_INTERNAL,
                             "E_INTERRUPTED": errors.EXIT_INTERRUPTED}
    for code in REGISTRY.values():
        want = INTERNAL_EXIT[code.name] if code.family == X else FAMILY_EXIT[code.family]
        assert code.exit_code == want, code.name
    assert {c.name for c in REGISTRY.values() if c.family == X} == set(INTERNAL_EXIT)


def test_errors_md_is_what_the_generator_writes(scanned: Scan) -> None:
    made = codes.markdown(scanned)
    assert ERRORS_MD.read_text(encoding="utf-8") == made, \
        f"docs/ERRORS.md differs from the registry and the source; run: {REGENERATE}"
    for name in REGISTRY:
        assert f"| `{name}` |" in made, name
    assert "(undeclared)" not in made


def test_the_generator_runs_as_a_module() -> None:
    out = subprocess.run([sys.executable, "-m", "oemkit.codes", "--markdown"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.startswith("# Error codes\n")
    bad = subprocess.run([sys.executable, "-m", "oemkit.codes"], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--markdown" in bad.stderr and "--sections" in bad.stderr


DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
SECTIONS = "python -m oemkit.codes --sections docs/ README.md"


def test_the_docs_code_sections_are_what_the_generator_writes(scanned: Scan) -> None:
    """The code tables between ``<!-- codes:begin FILTER -->`` and ``<!-- codes:end -->``
    in docs/*.md and README.md are the registry's rows, current."""
    with_sections = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        if "<!-- codes:begin" in text:
            with_sections.append(path.name)
            assert codes.render_sections(text, scanned) == text, \
                f"{path.name}: a codes section differs from the registry; run: {SECTIONS}"
    assert {"FORMAT.md", "MEDIA.md", "SMOKE.md"} <= set(with_sections), with_sections


def test_a_codes_section_is_rewritten_from_its_filter(scanned: Scan) -> None:
    """Not vacuous: a stale body is replaced, codes keep the marker's order, a module
    name selects what the scan finds raised there, and a bad marker is an error."""
    doc = ("intro\n<!-- codes:begin E_USAGE E_BUSY -->\n| stale |\n<!-- codes:end -->\n"
           "<!-- codes:begin\n    host.profiles -->\n<!-- codes:end -->\nend\n")
    made = codes.render_sections(doc, scanned)
    assert "| stale |" not in made and made.startswith("intro\n") and made.endswith("end\n")
    assert made.index("`E_USAGE`") < made.index("`E_BUSY`")
    assert f"| `E_BUSY` | 4 | {REGISTRY['E_BUSY'].meaning} | {REGISTRY['E_BUSY'].hint} |" \
        in made
    assert "| `E_PROFILE_INVALID` | 3 |" in made and "| `E_PROFILE_NOT_FOUND` | 3 |" in made
    assert "| `E_BASE64` | 3 / 1 |" in codes.render_sections(
        "<!-- codes:begin E_BASE64 --><!-- codes:end -->", scanned)
    assert codes.render_sections(made, scanned) == made
    for bad in ("<!-- codes:begin E_NOT_A_REAL_CODE --><!-- codes:end -->",
                "<!-- codes:begin no.such.module --><!-- codes:end -->",
                "<!-- codes:begin --><!-- codes:end -->",
                "<!-- codes:begin E_USAGE -->\n| row |\n",
                "<!-- codes:begin Bad-Token --><!-- codes:end -->"):
        with pytest.raises(ValueError):
            codes.render_sections(bad, scanned)


def test_the_sections_option_rewrites_the_files_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "A.md").write_text("<!-- codes:begin E_BUSY -->\nold\n<!-- codes:end -->\n",
                                   encoding="utf-8")
    (tmp_path / "ERRORS.md").write_text("<!-- codes:begin E_BUSY -->x<!-- codes:end -->",
                                        encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "oemkit.codes", "--sections", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "A.md" in done.stderr, done.stderr
    assert "| `E_BUSY` | 4 |" in (tmp_path / "A.md").read_text(encoding="utf-8")
    assert (tmp_path / "ERRORS.md").read_text(encoding="utf-8").endswith("x<!-- codes:end -->")
    again = subprocess.run([sys.executable, "-m", "oemkit.codes", "--sections", str(tmp_path)],
                           capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0 and again.stderr == ""


def test_every_code_the_docs_mention_is_registered() -> None:
    """A code named in docs/*.md or README.md exists (``E_PART_*`` names a prefix of some)."""
    import re

    unknown: dict[str, list[str]] = {}
    mentioned = set()
    for path in DOCS:
        for name, star in re.findall(r"\b(E_[A-Z][A-Z0-9_]*)(\*?)",
                                     path.read_text(encoding="utf-8")):
            mentioned.add(name)
            if star and any(code.startswith(name) for code in REGISTRY):
                continue
            if name not in REGISTRY:
                unknown.setdefault(path.name, []).append(name + star)
    assert not unknown, unknown
    assert len(mentioned) > 150


def _tables(text: str) -> Iterator[tuple[list[str], list[tuple[int, list[str]]]]]:
    """Each Markdown table of ``text``: its header cells and its rows (line, cells)."""
    import re

    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+\s*", lines[i + 1]):
            head = [c.strip() for c in lines[i].strip()[1:-1].split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append((i + 1, [c.strip() for c in
                                     re.split(r"(?<!\\)\|", lines[i].strip()[1:-1])]))
                i += 1
            yield head, rows
        else:
            i += 1


def test_the_docs_tables_state_the_registry_exit_codes() -> None:
    """Where a hand-written table gives a code and an exit code, the exit code is the
    code's own (or a second family's; an input error read inside a bundle is reported as
    a rejection, exit 1: REWRAPS)."""
    import re

    wrong, checked = [], 0
    for path in DOCS:
        if path.name == "ERRORS.md":
            continue
        for head, rows in _tables(path.read_text(encoding="utf-8")):
            if "exit" not in head:
                continue
            where = head.index("exit")
            columns = [k for k, h in enumerate(head) if h in ("code", "must get")]
            for line, cells in rows:
                if len(cells) != len(head) or not columns:
                    continue
                named = set(re.findall(r"`(E_[A-Z0-9_]+)`", cells[columns[0]]))
                number = re.match(r"\**(\d+)", cells[where])
                if len(named) != 1 or not number:
                    continue
                code = REGISTRY[named.pop()]
                allowed = {code.exit_code, *(FAMILY_EXIT[a] for a in code.also)}
                if code.family == "InputError":
                    allowed.add(FAMILY_EXIT["VerificationError"])
                checked += 1
                if int(number[1]) not in allowed:
                    wrong.append(f"{path.name}:{line}: {code.name} exit {cells[where]!r}, "
                                 f"registered {sorted(allowed)}")
    assert not wrong, wrong
    assert checked > 300, checked


def test_code_info_and_lookup() -> None:
    info = errors.VerificationError("E_UNSIGNED", "no signature").code_info()
    assert info is not None and info.exit_code == 1 and info.family == "VerificationError"
    assert errors.InputError("E_NOT_REGISTERED", "x").code_info() is None
    assert codes.lookup("E_USAGE").exit_code == errors.EXIT_USAGE
    with pytest.raises(KeyError, match=r"docs/ERRORS\.md"):
        codes.lookup("E_NOT_REGISTERED")


def test_the_registry_stays_off_the_hot_paths() -> None:
    """``oemkit`` start-up (and raising an error) never imports the registry."""
    probe = ("import sys, oemkit.cli, oemkit.errors\n"
             "oemkit.errors.InputError('E_JSON', 'x').to_dict()\n"
             "print('oemkit.codes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "False"


def test_the_scan_catches_a_new_second_family_and_an_unregistered_code(
        tmp_path: Path) -> None:
    """The checks above are not vacuous: a probe module added anywhere in a copy of the
    tree, raising a registered code with another family (directly and through a helper)
    and an unregistered code, is seen."""
    import shutil

    tree = tmp_path / "oemkit"
    shutil.copytree(SRC, tree, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "verify" / "zz_probe.py").write_text(
        "from oemkit.errors import EnvironmentProblem, UsageError\n\n\n"
        "def _oops(code: str, message: str) -> UsageError:\n"
        "    return UsageError(code, message)\n\n\n"
        "def probe() -> None:\n"
        "    if probe:\n"
        "        raise _oops(\"E_UNSIGNED\", \"x\")\n"
        "    raise EnvironmentProblem(\"E_NOT_A_REAL_CODE\", \"y\")\n", encoding="utf-8")
    result = codes.scan(tree)
    assert result.raised()["E_UNSIGNED"] == {"VerificationError", "UsageError"}
    assert result.raised()["E_NOT_A_REAL_CODE"] == {"EnvironmentProblem"}
    assert "E_NOT_A_REAL_CODE" not in REGISTRY
