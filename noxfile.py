"""Sessions: `nox -s tests` (the suite, offline) and `nox -s lint` (ruff, mypy strict)."""

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
    session.run("ruff", "check", "src", "tests", "noxfile.py", "bundles", "keys-example")
    session.run("mypy")
