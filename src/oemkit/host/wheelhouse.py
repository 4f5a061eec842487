"""Filling an offline wheelhouse on a connected machine: the ``pip download`` command
``oemkit wheelhouse fetch`` runs (binary wheels only, for the target's platforms and
Python), and running it. The packages come from a requirements file, or from a bundle
spec's ``requirements:`` (the runner's and the serving runtime's packages, the list the
SBOM describes). Without ``--platform``, the tags are the target profile's
(:func:`default_platforms`); a failed pip is told apart as "no index reachable"
(``E_WHEELHOUSE_OFFLINE``), "no wheel fits" (``E_WHEELHOUSE_NO_MATCH``) or anything else
(``E_PIP``)."""

from __future__ import annotations

import platform as _platform
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oemkit.errors import EnvironmentProblem, InputError

__all__ = ["Platforms", "default_platforms", "pip_download_command", "run_pip",
           "spec_requirements"]

_SPEC_SUFFIXES = (".yaml", ".yml")
#: pip's last lines kept to judge a failure by (its output is echoed as it comes).
_KEEP_LINES = 2000


def _spec_file(path: Path) -> Path | None:
    """The bundle spec ``path`` names (a ``.yaml`` file or a directory holding
    ``bundle.yaml``), or None for a requirements file."""
    if path.is_dir() and (path / "bundle.yaml").is_file():
        return path / "bundle.yaml"
    return path if path.suffix in _SPEC_SUFFIXES else None


def _spec_raw(path: Path) -> dict[str, Any]:
    """A bundle spec's document, validated against the spec's schema."""
    from oemkit._fs import read_input
    from oemkit.schema import load_yaml, validate

    data = read_input(path, "spec", 1 << 20)
    raw, lines = load_yaml(data, path.name)
    validate(raw, "bundle.schema.json", path.name, lines)
    return dict(raw)


def spec_requirements(spec: Path | str) -> list[str]:
    """The ``requirements:`` of a bundle spec, validated as ``oemkit build`` validates the
    spec's schema (each entry a PEP 508 string; ``build`` also parses them strictly).

    Raises:
        InputError: E_NOT_FOUND (no such spec), E_SPEC_YAML / E_SPEC_INVALID (not a valid
            spec, or one without requirements).
    """
    path = Path(spec)
    path = _spec_file(path) or path
    requirements = list(_spec_raw(path).get("requirements") or [])
    if not requirements:
        raise InputError("E_SPEC_INVALID", f"{path.name} lists no requirements",
                         hint="add the runtime's packages to requirements: (docs/SPEC.md)")
    return requirements


@dataclass(frozen=True)
class Platforms:
    """The platform tags a fetch narrows pip to, and what chose them."""

    tags: tuple[str, ...]
    #: The profile whose ``cpu.arch`` chose them (None: no profile named one).
    profile: str | None
    #: The architecture they are for.
    arch: str
    #: In words, for the command's output: "profile npu-openvino (x86_64)", ...
    source: str


def default_platforms(requirements: Path | str, profile: str | None = None,
                      machine: str | None = None) -> Platforms:
    """The platform tags a fetch uses without ``--platform``: those a Linux host of the
    target profile's architecture takes (:func:`oemkit.models.wheelhouse.platform_tags`).
    The profile is ``profile`` (a shipped name or a YAML file), else the first of a spec's
    ``profiles:``; a profile without ``cpu.arch`` (or none at all) means ``machine`` (this
    machine's, by default), x86_64 when that is not a Linux wheel architecture.

    Raises:
        InputError: E_PROFILE_NOT_FOUND / E_PROFILE_INVALID (the named profile); a spec's
            errors (:func:`spec_requirements`).
    """
    from oemkit.host.profiles import load_profile
    from oemkit.models.wheelhouse import platform_tags, target_arch

    path = Path(requirements)
    spec = _spec_file(path)
    name, bundle_dir = profile, None
    if name is None and spec is not None and spec.is_file():
        names = _spec_raw(spec).get("profiles") or []
        name, bundle_dir = (str(names[0]) if names else None), spec.parent
    own = machine if machine is not None else _platform.machine()
    arch_list: tuple[str, ...] = ()
    if name is not None:
        loaded = load_profile(name, bundle_dir)
        name, arch_list = loaded.name, loaded.arch
    arch = target_arch(arch_list, own)
    if name is None:
        source = f"no profile: this machine's architecture ({arch})"
    elif arch_list:
        source = f"profile {name} ({arch})"
    else:
        source = f"profile {name}, which names no cpu.arch: this machine's ({arch})"
    return Platforms(platform_tags(arch), name, arch, source)


def pip_download_command(requirements: Path | str, dest: Path | str, *,
                         platforms: Sequence[str] = (),
                         python_version: str | None = None,
                         profile: str | None = None,
                         machine: str | None = None) -> list[str]:
    """The ``pip download`` command that fills ``dest`` from ``requirements`` (a
    requirements file, pinned with hashes; or a bundle spec, ``bundle.yaml`` or its
    directory, whose ``requirements:`` are passed to pip) with binary wheels only,
    through the Python running oemkit; each of ``platforms`` (e.g.
    ``manylinux_2_28_x86_64``) and ``python_version`` (e.g. ``3.11``) narrows what pip
    fetches to the target host's. Without ``platforms``, the target profile's
    (:func:`default_platforms` of ``profile`` and ``machine``), written before the
    requirements.

    Raises:
        InputError: E_NOT_FOUND when ``requirements`` is not a file; a spec's errors
            (:func:`spec_requirements`); a profile's (:func:`default_platforms`).
    """
    requirements = Path(requirements)
    spec = _spec_file(requirements)
    if spec is None and not requirements.is_file():
        raise InputError("E_NOT_FOUND", f"{requirements} does not exist",
                         hint="pass a requirements file or a bundle spec")
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest",
           str(dest)]
    wanted = spec_requirements(spec) if spec is not None else ["-r", str(requirements)]
    if not platforms:
        for tag in default_platforms(requirements, profile, machine).tags:
            cmd += ["--platform", tag]
    cmd += wanted
    for tag in platforms:
        cmd += ["--platform", tag]
    if python_version:
        cmd += ["--python-version", python_version]
    return cmd


def _option_values(cmd: Sequence[str], option: str) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd[:-1]) if arg == option]


def run_pip(cmd: Sequence[str]) -> None:
    """Run a command from :func:`pip_download_command`; pip's output (stdout and stderr)
    is echoed to this process's stderr as it comes, so ``--json`` keeps stdout to itself.

    Raises:
        EnvironmentProblem: E_WHEELHOUSE_OFFLINE when pip reached no package index
            (connection, name resolution, proxy or TLS errors); E_WHEELHOUSE_NO_MATCH when
            the index has no wheel of a requirement for the platform tags and Python asked
            for; E_PIP for any other failure (a hash mismatch, a bad requirements file).
    """
    from oemkit.models.wheelhouse import classify_pip_output

    kept: deque[str] = deque(maxlen=_KEEP_LINES)
    with subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(line)
            kept.append(line)
        code = proc.wait()
    if code == 0:
        return
    verdict = classify_pip_output(kept)
    said = f": {verdict.last}" if verdict.last else ""
    if verdict.kind == "network":
        where = f" ({verdict.indexes})" if verdict.indexes else ""
        raise EnvironmentProblem(
            "E_WHEELHOUSE_OFFLINE", f"pip download could not reach the package "
            f"index{where}: {verdict.reason}",
            hint="this step needs the package index: run it on a connected machine (or set "
                 "PIP_INDEX_URL to a mirror this machine reaches), then carry the "
                 "wheelhouse over")
    if verdict.kind == "no_match":
        tags = ", ".join(_option_values(cmd, "--platform")) or "this machine's"
        python = ", ".join(_option_values(cmd, "--python-version")) or \
            f"{sys.version_info.major}.{sys.version_info.minor} (this Python)"
        raise EnvironmentProblem(
            "E_WHEELHOUSE_NO_MATCH", f"the package index has no wheel of "
            f"{', '.join(verdict.requirements)} for platforms {tags} and Python {python}",
            hint="choose the target's tags (--profile, or --platform: e.g. "
                 "manylinux_2_28_aarch64 for an ARM host) and --python-version, or relax the "
                 "version pin; a project with no wheel for the target cannot be fetched "
                 "(build one with 'pip wheel' and put it in the wheelhouse)")
    raise EnvironmentProblem("E_PIP", f"pip download failed (exit status {code}){said}",
                             hint="read pip's output above; fix the requirements (or the "
                                  "pinned hashes) and fetch again")
