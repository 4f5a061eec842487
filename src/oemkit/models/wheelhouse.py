"""Pure rules about a bundle's offline wheelhouse: which required projects it lacks, which
platform tags a target's wheels carry, and what a failed ``pip download`` means.

No I/O here: ``release.bundle`` (the build's requirements check), ``host.wheelhouse``
(``oemkit wheelhouse fetch``) and the tests call these with names, tags and pip's lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["PipVerdict", "Unmet", "classify_pip_output", "missing_projects",
           "normalize_project", "platform_tags", "target_arch", "target_environment",
           "unmet_requirements", "wheel_project"]

#: The architecture a profile without ``cpu.arch`` is fetched for when the fetching
#: machine's own is not one a Linux wheel is built for.
DEFAULT_ARCH = "x86_64"
#: Other spellings of the same architecture (macOS, Windows, some kernels).
_ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64"}


def normalize_project(name: str) -> str:
    """PEP 503 normalised project name (``Prometheus_Client`` -> ``prometheus-client``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_project(filename: str) -> str | None:
    """The normalised project a wheel's file name names (its first ``-`` field), or None
    for a name that is not a wheel's (``NAME-VERSION(-BUILD)?-PY-ABI-PLATFORM.whl``)."""
    base = filename.rsplit("/", 1)[-1]
    if not base.endswith(".whl"):
        return None
    parts = base[:-4].split("-")
    return normalize_project(parts[0]) if len(parts) in (5, 6) and parts[0] else None


def missing_projects(required: Iterable[str], carried: Iterable[str]) -> tuple[str, ...]:
    """The projects of ``required`` (project names, any spelling) that ``carried`` (the
    wheelhouse's projects) lacks: normalised, sorted, each once."""
    have = {normalize_project(n) for n in carried}
    return tuple(sorted({normalize_project(n) for n in required} - have))


@dataclass(frozen=True)
class Unmet:
    """A requirement the wheelhouse does not satisfy on the target: the project is not
    carried (``have`` None) or its carried version is outside ``wanted``."""

    project: str
    #: The carried project whose ``Requires-Dist`` asks for it; None: the spec's own list.
    needed_by: str | None = None
    wanted: str = ""
    have: str | None = None

    def describe(self) -> str:
        """``numpy (needed by onnxruntime)``, ``numpy 1.20 (onnxruntime wants >=1.24)``."""
        by = self.needed_by or "the spec"
        if self.have is not None:
            return f"{self.project} {self.have} ({by} wants {self.wanted})"
        return self.project if self.needed_by is None else f"{self.project} (needed by {by})"


_WHEEL_PY = re.compile(r"^cp(\d)(\d+)$")
_WHEEL_ARCH = re.compile(r"(?:manylinux|musllinux)[0-9_]*_(x86_64|aarch64|i686|ppc64le|s390x|"
                         r"armv7l)$")


def target_environment(wheel_files: Iterable[str],
                       host: dict[str, str]) -> dict[str, str]:
    """The PEP 508 marker environment of the Linux host a wheelhouse is for: Python and
    machine as its binary wheels' tags say (``cp311``, ``manylinux_2_28_x86_64``), else
    as on ``host`` (``packaging.markers.default_environment()`` of the build machine)."""
    pythons: dict[str, int] = {}
    arches: dict[str, int] = {}
    for name in wheel_files:
        parts = name.rsplit("/", 1)[-1][:-4].split("-") if name.endswith(".whl") else []
        if len(parts) not in (5, 6):
            continue
        for tag in parts[-3].split("."):
            found = _WHEEL_PY.match(tag)
            if found:
                version = f"{found.group(1)}.{found.group(2)}"
                pythons[version] = pythons.get(version, 0) + 1
        for tag in parts[-1].split("."):
            arch = _WHEEL_ARCH.search(tag)
            if arch:
                arches[arch.group(1)] = arches.get(arch.group(1), 0) + 1
    env = dict(host)
    env.update(sys_platform="linux", platform_system="Linux", os_name="posix")
    if pythons:
        version = max(pythons, key=lambda v: (pythons[v], v))
        env.update(python_version=version, python_full_version=f"{version}.0",
                   implementation_name="cpython", platform_python_implementation="CPython")
    if arches:
        env["platform_machine"] = max(arches, key=lambda a: (arches[a], a))
    return env


def unmet_requirements(required: Sequence[str], carried: dict[str, tuple[str, Sequence[str]]],
                       env: dict[str, str]) -> tuple[Unmet, ...]:
    """What installing ``required`` (PEP 508 strings) from a wheelhouse alone would miss on
    a host of marker environment ``env``: each requirement whose marker holds there, with
    its extras, and then each carried wheel's ``Requires-Dist`` the same way, to the end.
    ``carried``: normalised project -> (version, its Requires-Dist lines). Unparsable
    lines of a wheel's metadata are skipped (pip would judge them; oemkit only warns).
    Sorted by project, each (project, needed_by) once."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    def holds(req: Requirement, extras: frozenset[str]) -> bool:
        if req.marker is None:
            return True
        return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))

    found: dict[tuple[str, str | None], Unmet] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    queue: list[tuple[str, str | None, frozenset[str]]] = [(r, None, frozenset())
                                                          for r in required]
    while queue:
        text, needed_by, parent_extras = queue.pop(0)
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if not holds(req, parent_extras):
            continue
        name = canonicalize_name(req.name)
        if name not in carried:
            found.setdefault((name, needed_by), Unmet(name, needed_by))
            continue
        version, requires = carried[name]
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            found.setdefault((name, needed_by),
                             Unmet(name, needed_by, str(req.specifier), version))
        extras = frozenset(canonicalize_name(e) for e in req.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        queue += [(line, name, extras) for line in requires]
    return tuple(sorted(found.values(), key=lambda u: (u.project, u.needed_by or "")))


def platform_tags(arch: str) -> tuple[str, ...]:
    """The ``pip download --platform`` tags for a Linux host of ``arch``: those current
    onnxruntime wheels carry (``manylinux_2_27`` and ``manylinux_2_28``; onnxruntime
    stopped publishing ``manylinux2014`` wheels) and ``manylinux2014`` (``manylinux_2_17``,
    which pip widens to ``manylinux2010`` and ``manylinux1``) for the other projects'
    older wheels. Pure-Python (``none-any``) wheels match whatever the tags."""
    machine = _ARCH_ALIASES.get(arch.lower(), arch.lower())
    return (f"manylinux_2_28_{machine}", f"manylinux_2_27_{machine}",
            f"manylinux2014_{machine}")


def target_arch(profile_arch: Sequence[str], machine: str) -> str:
    """The architecture to fetch wheels for: the profile's first ``cpu.arch``, else
    ``machine`` (the fetching host's) when it is one Linux wheels are built for, else
    :data:`DEFAULT_ARCH`."""
    if profile_arch:
        return _ARCH_ALIASES.get(profile_arch[0].lower(), profile_arch[0].lower())
    own = _ARCH_ALIASES.get(machine.lower(), machine.lower())
    return own if own in ("x86_64", "aarch64") else DEFAULT_ARCH


#: pip's lines when no index could be reached (DNS, refused or timed-out connections,
#: proxies, TLS); pip then also says "No matching distribution", so these win.
_NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|nodename nor servname|Network is unreachable|"
    r"No route to host|Connection refused|ConnectTimeoutError|Read timed out|ProxyError|"
    r"SSLError|CERTIFICATE_VERIFY_FAILED|connection broken by|Max retries exceeded",
    re.IGNORECASE)
#: The reason in urllib3's retry warning ("... Failed to establish a new connection:
#: [Errno 111] Connection refused')': /simple/numpy/").
_REASON = re.compile(r"Failed to establish a new connection: ([^'\")]+)")
#: pip's first line: where it looks.
_INDEXES = re.compile(r"^Looking in indexes: (.+)$")
#: pip's lines when the index answered but no wheel fits the platform/Python asked for.
_NO_MATCH = re.compile(r"No matching distribution found for\s+(\S+)|Could not find a "
                       r"version that satisfies the requirement\s+(\S+)")


@dataclass(frozen=True)
class PipVerdict:
    """What a failed ``pip download`` says about itself."""

    #: ``network``: no index reachable; ``no_match``: no wheel fits; ``other``: anything
    #: else (a hash mismatch, a bad requirements file, ...).
    kind: Literal["network", "no_match", "other"]
    #: The requirements pip found nothing for (``no_match``), in pip's order, each once.
    requirements: tuple[str, ...] = ()
    #: pip's last error line (``ERROR: ...``), or its last line.
    last: str = ""
    #: ``network``: what failed, in words ("[Errno -3] Temporary failure in name
    #: resolution", or the first network line pip printed).
    reason: str = ""
    #: The indexes pip looked in (its "Looking in indexes:" line), if it said.
    indexes: str = ""


def classify_pip_output(lines: Iterable[str]) -> PipVerdict:
    """Tell apart, from a failed ``pip download``'s output lines, an unreachable index
    (connection and name resolution errors: pip retries, then also reports no matching
    distribution) from an index that has no wheel for the requested platform tags and
    Python, from any other failure."""
    network, last_error, last, reason, indexes = False, "", "", "", ""
    wanted: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        last = line
        if line.startswith("ERROR:"):
            last_error = line
        looking = _INDEXES.match(line)
        if looking and not indexes:
            indexes = looking.group(1)
        if _NETWORK.search(line):
            network = True
            if not reason:
                said = _REASON.search(line)
                reason = said.group(1).strip() if said else line[:200]
        match = _NO_MATCH.search(line)
        if match:
            name = match.group(1) or match.group(2)
            if name not in wanted:
                wanted.append(name)
    tail = last_error or last
    if network:
        return PipVerdict("network", tuple(wanted), tail, reason, indexes)
    if wanted:
        return PipVerdict("no_match", tuple(wanted), tail, indexes=indexes)
    return PipVerdict("other", (), tail, indexes=indexes)
