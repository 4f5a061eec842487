"""Python packages a bundle's runtime needs: wheels in its wheelhouse and declared requirements.

Wheel identity comes from the wheel's own ``.dist-info/METADATA`` (name, version, license,
``Requires-Dist``), not from its file name alone; only the zip's central directory and that
one small member are read.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from email.parser import HeaderParser
from pathlib import Path

from oemkit.errors import InputError
from oemkit.release.sbom import Package

#: Tolerant: only for ``Requires-Dist`` lines read from third-party wheels.
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_SPECIFIER = r"(?:===|==|!=|~=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
#: Strict (PEP 508 without URLs): the requirements a spec declares.
_STRICT_REQ = re.compile(
    rf"\s*(?P<name>{_NAME})\s*"
    rf"(?:\[\s*(?:{_NAME}(?:\s*,\s*{_NAME})*)?\s*\])?\s*"
    rf"(?P<spec>{_SPECIFIER}(?:\s*,\s*{_SPECIFIER})*)?\s*"
    r"(?:;[ \t]*\S[^\n]*)?\s*")
MAX_METADATA = 1 << 20


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


_HASH = re.compile(r"\s+--hash=sha256:([0-9a-f]{64})(?=\s|$)")


def split_hashes(text: str) -> tuple[str, set[str]]:
    """A requirement without its pip ``--hash=sha256:...`` options, and those hashes."""
    return _HASH.sub("", text), set(_HASH.findall(text))


def parse_requirement(text: str, where: str) -> tuple[str, str, str | None]:
    """(normalised name, specifier, pinned version or None) of a PEP 508 requirement."""
    match = _STRICT_REQ.fullmatch(text)
    if not match:
        raise InputError("E_SPEC_REQUIREMENT", f"{where}: {text!r} is not a requirement",
                         hint="write NAME[EXTRAS]SPECIFIERS; MARKER as in requirements.txt, "
                              "e.g. onnxruntime>=1.17,<2 (no URLs or pip options)")
    spec = re.sub(r"\s+", "", match.group("spec") or "")
    pinned = None
    if spec.startswith("==") and not spec.startswith("===") and "," not in spec \
            and "*" not in spec:
        pinned = spec[2:]
    return normalize(match.group("name")), spec, pinned


def read_wheel(path: Path, payload_path: str, sha256: str) -> Package:
    """Identity and requirements of one wheel file."""
    try:
        with zipfile.ZipFile(path) as wheel:
            names = [n for n in wheel.namelist()
                     if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise InputError("E_WHEEL_INVALID", f"{payload_path} has no single "
                                 ".dist-info/METADATA", hint="rebuild the wheelhouse with "
                                 "'pip download' or 'pip wheel'")
            info = wheel.getinfo(names[0])
            if info.file_size > MAX_METADATA:
                raise InputError("E_WHEEL_INVALID", f"{payload_path}: METADATA is too large",
                                 hint="this is not a normal wheel")
            text = wheel.read(info).decode("utf-8", "replace")
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError("E_WHEEL_INVALID", f"{payload_path} is not a valid wheel ({exc})",
                         hint="rebuild the wheelhouse with 'pip download' or 'pip wheel'") from exc
    meta = HeaderParser().parsestr(text)
    name, version = meta.get("Name"), meta.get("Version")
    if not name or not version:
        raise InputError("E_WHEEL_INVALID", f"{payload_path}: METADATA lacks Name or Version",
                         hint="this is not a normal wheel")
    requires = []
    for req in meta.get_all("Requires-Dist") or []:
        if "extra" in req.split(";", 1)[-1] and ";" in req:
            continue  # only needed for an optional extra
        match = _REQ.match(req)
        if match:
            requires.append(normalize(match.group(1)))
    license_ = meta.get("License-Expression") or meta.get("License")
    if license_ and ("\n" in license_ or len(license_) > 100):
        license_ = None  # a whole license text, not a name
    return Package(name=normalize(name), version=version, path=payload_path, sha256=sha256,
                   requires=tuple(sorted(set(requires))), license=license_ or None,
                   requires_dist=tuple(meta.get_all("Requires-Dist") or ()))


def collect_packages(wheels: Sequence[tuple[Path, str, str]],
                     requirements: Sequence[str]) -> list[Package]:
    """Wheels (source path, payload path, sha256) merged with the spec's requirements."""
    by_name: dict[str, Package] = {}
    for source, payload_path, digest in wheels:
        pkg = read_wheel(source, payload_path, digest)
        if pkg.name in by_name:
            raise InputError("E_WHEEL_DUPLICATE", f"the wheelhouse holds two wheels of "
                             f"{pkg.name}: {by_name[pkg.name].path} and {payload_path}",
                             hint="keep one wheel per project (the one for the target platform)")
        by_name[pkg.name] = pkg
    for i, text in enumerate(requirements):
        bare, hashes = split_hashes(text)
        name, spec, pinned = parse_requirement(bare, f"requirements[{i}]")
        if name in by_name:
            wheel = by_name[name]
            if pinned is not None and wheel.version != pinned:
                raise InputError("E_WHEEL_VERSION", f"requirements[{i}] pins {name}=={pinned} "
                                 f"but the wheelhouse holds {wheel.path} ({wheel.version})",
                                 hint="refill the wheelhouse with 'oemkit wheelhouse fetch'")
            if hashes and wheel.sha256 not in hashes:
                raise InputError("E_WHEEL_HASH", f"{wheel.path} (sha256 {wheel.sha256}) does "
                                 f"not match the hashes requirements[{i}] pins for {name}",
                                 hint="the wheel is not the one the release pinned; refill "
                                      "the wheelhouse from a trusted index")
            by_name[name] = Package(wheel.name, wheel.version, wheel.path, wheel.sha256,
                                    wheel.requires, wheel.license, spec or None)
        else:
            by_name[name] = Package(name, pinned, specifier=spec or None)
    return [by_name[n] for n in sorted(by_name)]
