"""Sessions: `nox -s tests` (the suite, offline) and `nox -s lint` (ruff, mypy strict)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "noxfile.py", "bundles", "keys-example")
    session.run("mypy")
