"""Sessions: `nox -s tests` (the suite, offline, hostile corpus and property tests included),
`nox -s lint` (ruff, mypy strict, import-linter's layering contract) and
`nox -s fuzz -- SECONDS` (atheris, not run by default)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    # sigstore-js, an outside verifier for our Sigstore bundles (tests/test_interop.py).
    if shutil.which("npm") and not Path("tests/interop/node_modules/@sigstore").is_dir():
        session.run("npm", "ci", "--silent", "--no-audit", "--no-fund", "--prefix",
                    "tests/interop", external=True)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "fuzz", "benchmarks", "noxfile.py", "bundles",
                "keys-example")
    session.run("mypy")
    session.run("lint-imports")  # the layering of pyproject.toml's [tool.importlinter]


@nox.session
def fuzz(session: nox.Session) -> None:
    """Coverage-guided fuzzing of the bundle reader, the license parser, the spec loader, the
    unverified readers, the media index and the license state file.

    `nox -s fuzz -- 1800` runs each target for 1800 s (default 60), seeded from
    tests/hostile/corpus; extra arguments go to fuzz/run.py (e.g. --save-regressions).
    Findings are kept in fuzz/.work/TARGET/artifacts; the session fails if there are any.
    """
    seconds = session.posargs[0] if session.posargs else "60"
    session.install("-e", ".[test]", "atheris")
    failed = []
    for target in ("bundle", "license", "spec", "readers", "media", "state"):
        try:
            session.run("python", "fuzz/run.py", target, seconds, *session.posargs[1:])
        except nox.command.CommandFailed:
            failed.append(target)
    if failed:
        session.error(f"fuzzing found crashes in {', '.join(failed)}: see "
                      "fuzz/.work/TARGET/artifacts/*.txt")
