"""The license API inside a slot: wheels of distributions installed on this host, made
offline from their installed files, so that a slot's venv can carry the oemkit that
installed it (``import oemkit.license``) and what that API imports.

The slot's venv is created by the interpreter running oemkit, so the distributions this
interpreter has are, by construction, built for the venv's Python and platform: repacking
them is the one source that is always there and always fits. A regular install is
repacked from the files its ``.dist-info/RECORD`` lists; an editable one (a checkout) from
its packages' source directories and its ``.dist-info`` metadata. Nothing is downloaded
and no build backend runs.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from oemkit.errors import EnvironmentProblem

if TYPE_CHECKING:
    from importlib.metadata import Distribution

__all__ = ["LICENSE_API_NEEDS", "LICENSE_API_PROBE", "SelfWheel", "license_api_distributions",
           "wheel_of_installed"]

#: What ``oemkit.license.verify`` imports beyond the standard library and oemkit itself
#: (``python -X importtime``; the noxfile's ``license_api`` session installs the same):
#: the signature checks, and the canonical JSON of the state file. Their own requirements
#: (cffi, pycparser) follow from their metadata.
LICENSE_API_NEEDS = ("cryptography", "rfc8785")

#: Run by the slot's Python after the install: the modules a first ``verify`` call imports
#: (imported at once, so a missing one is found at install time, not at the first call).
LICENSE_API_PROBE = ("import oemkit.license, oemkit.verify.trust, oemkit.host.license_state, "
                     "rfc8785, cryptography.hazmat.primitives.serialization, "
                     "cryptography.hazmat.primitives.asymmetric.ed25519")

#: Metadata the installer writes about one install, not part of a wheel.
_INSTALL_ONLY = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


@dataclass(frozen=True)
class SelfWheel:
    """A wheel made from an installed distribution."""

    #: The distribution's name as its metadata spells it.
    name: str
    version: str
    path: Path
    #: True when it came from an editable install (a checkout's source tree).
    editable: bool


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _unusable(name: str, why: str) -> EnvironmentProblem:
    return EnvironmentProblem(
        "E_SLOT_LICENSE_API", f"cannot copy {name} from this host into the slot: {why}",
        hint=f"ship a {name} wheel in the bundle's wheelhouse (oemkit wheelhouse fetch), or "
             "install with --system-site-packages")


def _distribution(name: str) -> Distribution:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        return distribution(name)
    except PackageNotFoundError:
        raise _unusable(name, "it is not installed for this Python") from None


def license_api_distributions() -> list[str]:
    """The distributions the license API needs, by their metadata names: oemkit, then
    :data:`LICENSE_API_NEEDS` and what they require for this interpreter (markers
    evaluated, no extras), each once.

    Raises:
        EnvironmentProblem: E_SLOT_LICENSE_API when one is not installed here.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    found: dict[str, str] = {"oemkit": _distribution("oemkit").metadata["Name"]}
    todo = list(LICENSE_API_NEEDS)
    while todo:
        name = todo.pop(0)
        if _normalise(name) in found:
            continue
        dist = _distribution(name)
        found[_normalise(name)] = dist.metadata["Name"]
        for line in dist.requires or ():
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


def _wheel_tag(dist: Distribution, name: str) -> str:
    """The first tag of the distribution's ``WHEEL`` file this interpreter supports."""
    from packaging.tags import parse_tag, sys_tags

    text = dist.read_text("WHEEL")
    if text is None:
        raise _unusable(name, "it was not installed from a wheel (no .dist-info/WHEEL)")
    supported = set(sys_tags())
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Tag" and parse_tag(value.strip()) & supported:
            return value.strip()
    raise _unusable(name, "its wheel tags do not match this Python")


def _is_editable(dist: Distribution) -> bool:
    import json

    text = dist.read_text("direct_url.json")
    try:
        info = json.loads(text) if text else {}
    except ValueError:
        return False
    return isinstance(info, dict) and bool((info.get("dir_info") or {}).get("editable"))


def _members(dist: Distribution, name: str, editable: bool) -> Iterator[tuple[str, Path]]:
    """(name in the wheel, file on disk) of each file the wheel carries, RECORD excluded."""
    files = dist.files
    if files is None:
        raise _unusable(name, "its .dist-info has no RECORD, so its files are unknown")
    seen = False
    for entry in files:
        parts = PurePosixPath(str(entry)).parts
        if not parts or ".." in parts or "__pycache__" in parts or parts[-1].endswith(".pyc"):
            continue  # scripts outside site-packages are made again by pip; bytecode too
        in_meta = parts[0].endswith(".dist-info")
        if in_meta and (len(parts) == 2 and parts[1] in _INSTALL_ONLY):
            continue
        if editable and not in_meta:
            continue  # the .pth file or finder pointing at the checkout
        seen = seen or in_meta
        yield str(PurePosixPath(*parts)), Path(str(dist.locate_file(entry)))
    if not seen:
        raise _unusable(name, "its RECORD lists no .dist-info metadata")
    if editable:
        yield from _source_files(name)


def _source_files(name: str) -> Iterator[tuple[str, Path]]:
    """The packages an editable distribution maps to, from their source directories."""
    import importlib.util
    from importlib.metadata import packages_distributions

    tops = sorted(top for top, dists in packages_distributions().items()
                  if any(_normalise(d) == _normalise(name) for d in dists))
    if not tops:
        raise _unusable(name, "its editable install names no importable package")
    for top in tops:
        spec = importlib.util.find_spec(top)
        locations = list(spec.submodule_search_locations or ()) if spec else []
        if not locations:
            raise _unusable(name, f"the package {top} of its editable install is not a "
                            "directory")
        root = Path(locations[0])
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for file in sorted(names):
                if file.endswith((".pyc", ".pyo")):
                    continue
                path = Path(folder) / file
                if path.is_file() and not path.is_symlink():
                    yield f"{top}/{path.relative_to(root).as_posix()}", path


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}\n"


def _write_wheel(path: Path, members: Iterable[tuple[str, Path]], dist_info: str) -> None:
    """A wheel of ``members`` and a fresh RECORD (stored, not compressed: it is read once)."""
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for arcname, source in members:
            data = source.read_bytes()
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if os.access(source, os.X_OK) else 0o644) << 16
            zf.writestr(info, data)
            record.append(_record_line(arcname, data))
        record.append(f"{dist_info}/RECORD,,\n")
        zf.writestr(zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0)),
                    "".join(record))


def wheel_of_installed(name: str, dest: Path) -> SelfWheel:
    """Make a wheel of the installed distribution ``name`` in ``dest`` (offline): its
    RECORD's files (a regular install) or its packages' source files and metadata (an
    editable install), under the first tag of its ``WHEEL`` file this interpreter accepts.

    Raises:
        EnvironmentProblem: E_SLOT_LICENSE_API when it is not installed, was not installed
            from a wheel, has no RECORD, lists a file that is gone, or cannot be written.
    """
    dist = _distribution(name)
    meta_name, version = dist.metadata["Name"], dist.version
    editable = _is_editable(dist)
    tag = _wheel_tag(dist, meta_name)
    stem = f"{re.sub(r'[-_.]+', '_', meta_name)}-{version}"
    dist_info = next((PurePosixPath(str(f)).parts[0] for f in dist.files or ()
                      if PurePosixPath(str(f)).parts[0].endswith(".dist-info")),
                     f"{stem}.dist-info")
    path = Path(dest) / f"{stem}-{tag}.whl"
    try:
        _write_wheel(path, _members(dist, meta_name, editable), dist_info)
    except FileNotFoundError as exc:
        raise _unusable(meta_name, f"{exc.filename} is listed but missing") from None
    except OSError as exc:
        raise _unusable(meta_name, f"{exc.filename or path}: {exc.strerror or exc}") from None
    return SelfWheel(meta_name, version, path, editable)
