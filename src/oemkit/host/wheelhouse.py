"""Filling an offline wheelhouse on a connected machine: the ``pip download`` command
``oemkit wheelhouse fetch`` runs (binary wheels only, for the target's platforms and
Python), and running it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from oemkit.errors import EnvironmentProblem, InputError

__all__ = ["pip_download_command", "run_pip"]


def pip_download_command(requirements: Path | str, dest: Path | str, *,
                         platforms: Sequence[str] = (),
                         python_version: str | None = None) -> list[str]:
    """The ``pip download`` command that fills ``dest`` from ``requirements`` (pinned, with
    hashes) with binary wheels only, through the Python running oemkit; each of
    ``platforms`` (e.g. ``manylinux2014_x86_64``) and ``python_version`` (e.g. ``3.11``)
    narrows what pip fetches to the target host's.

    Raises:
        InputError: E_NOT_FOUND when ``requirements`` is not a file.
    """
    requirements = Path(requirements)
    if not requirements.is_file():
        raise InputError("E_NOT_FOUND", f"{requirements} does not exist",
                         hint="pass a requirements file")
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest",
           str(dest), "-r", str(requirements)]
    for tag in platforms:
        cmd += ["--platform", tag]
    if python_version:
        cmd += ["--python-version", python_version]
    return cmd


def run_pip(cmd: Sequence[str]) -> None:
    """Run a command from :func:`pip_download_command` (pip's output goes to this process's).

    Raises:
        EnvironmentProblem: E_PIP when pip exits non-zero (no index reachable, a wheel
            missing for the platform, a hash mismatch).
    """
    proc = subprocess.run(list(cmd))
    if proc.returncode != 0:
        raise EnvironmentProblem("E_PIP", "pip download failed (see above)",
                                 hint="this step needs network access to the package "
                                      "index; run it on a connected machine")
