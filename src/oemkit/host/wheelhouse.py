"""Filling an offline wheelhouse on a connected machine: the ``pip download`` command
``oemkit wheelhouse fetch`` runs (binary wheels only, for the target's platforms and
Python), and running it. The packages come from a requirements file, or from a bundle
spec's ``requirements:`` (the runner's and the serving runtime's packages, the list the
SBOM describes)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from oemkit.errors import EnvironmentProblem, InputError

__all__ = ["pip_download_command", "run_pip", "spec_requirements"]

_SPEC_SUFFIXES = (".yaml", ".yml")


def _spec_file(path: Path) -> Path | None:
    """The bundle spec ``path`` names (a ``.yaml`` file or a directory holding
    ``bundle.yaml``), or None for a requirements file."""
    if path.is_dir() and (path / "bundle.yaml").is_file():
        return path / "bundle.yaml"
    return path if path.suffix in _SPEC_SUFFIXES else None


def spec_requirements(spec: Path | str) -> list[str]:
    """The ``requirements:`` of a bundle spec, validated as ``oemkit build`` validates the
    spec's schema (each entry a PEP 508 string; ``build`` also parses them strictly).

    Raises:
        InputError: E_NOT_FOUND (no such spec), E_SPEC_YAML / E_SPEC_INVALID (not a valid
            spec, or one without requirements).
    """
    from oemkit._fs import read_input
    from oemkit.schema import load_yaml, validate

    path = Path(spec)
    path = _spec_file(path) or path
    data = read_input(path, "spec", 1 << 20)
    raw, lines = load_yaml(data, path.name)
    validate(raw, "bundle.schema.json", path.name, lines)
    requirements = list(raw.get("requirements") or [])
    if not requirements:
        raise InputError("E_SPEC_INVALID", f"{path.name} lists no requirements",
                         hint="add the runtime's packages to requirements: (docs/SPEC.md)")
    return requirements


def pip_download_command(requirements: Path | str, dest: Path | str, *,
                         platforms: Sequence[str] = (),
                         python_version: str | None = None) -> list[str]:
    """The ``pip download`` command that fills ``dest`` from ``requirements`` (a
    requirements file, pinned with hashes; or a bundle spec, ``bundle.yaml`` or its
    directory, whose ``requirements:`` are passed to pip) with binary wheels only,
    through the Python running oemkit; each of ``platforms`` (e.g.
    ``manylinux2014_x86_64``) and ``python_version`` (e.g. ``3.11``) narrows what pip
    fetches to the target host's.

    Raises:
        InputError: E_NOT_FOUND when ``requirements`` is not a file; a spec's errors
            (:func:`spec_requirements`).
    """
    requirements = Path(requirements)
    spec = _spec_file(requirements)
    if spec is None and not requirements.is_file():
        raise InputError("E_NOT_FOUND", f"{requirements} does not exist",
                         hint="pass a requirements file or a bundle spec")
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest",
           str(dest)]
    cmd += spec_requirements(spec) if spec is not None else ["-r", str(requirements)]
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
