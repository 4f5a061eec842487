"""``oemkit image``: the container image that serves a bundle, as an OCI image layout.

No container daemon and no builder: the image is the site's own Python base image (an OCI
image layout on disk, its blobs checked against their digests and copied unchanged) plus
three layers written here with :mod:`tarfile`:

1. ``dependencies``: the wheels of oemkit's dependencies and of its ``oci`` extra (what
   the init container's ``oemkit oci pull`` needs) from ``--wheelhouse`` (``oemkit
   wheelhouse fetch`` of ``oemkit[oci]``) in ``/opt/oemkit/venv``;
2. ``oemkit``: oemkit itself (a wheel built from this checkout, or ``--oemkit-wheel``) in
   the same virtual environment, whose ``bin/python`` is the base image's Python;
3. ``bundle``: the verified ``.oemb`` at ``/opt/oemkit/bundle/NAME-VERSION.oemb``, its
   payload unpacked beside it in ``payload/`` (for scanners and people; ``oemkit serve``
   serves the verified file), and the trust root at ``/etc/oemkit/trust/trust-root.json``.

The wheels are installed by pip (``--target``, offline, for the base's Python version:
``--python-version X.Y --only-binary=:all:``), never by running the base image. The venv is
written by hand (``pyvenv.cfg`` and links to the base's interpreter), which is what
``python -m venv`` would make without copying the interpreter.

Deterministic: entries sorted, owner 0:0 (``/var/lib/oemkit`` 65532), mode 0644 or 0755,
mtime = ``SOURCE_DATE_EPOCH`` or the bundle's build time, PAX format, gzip with mtime 0 and
no name: the same inputs give the same manifest digest. The config runs
``/opt/oemkit/venv/bin/python -m oemkit serve BUNDLE --trust ...`` as user 65532.

The bundle's CycloneDX SBOM, extended with the image's layers, its base and the Python
packages in the venv, is attached as an OCI 1.1 referrer: an artifact manifest (artifact
type ``application/vnd.cyclonedx+json``) whose ``subject`` is the image manifest, listed in
``index.json`` without a tag.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oemkit import __version__
from oemkit.errors import EnvironmentProblem, InputError, UsageError, VerificationError
from oemkit.site.kubernetes import (
    IMAGE_BUNDLE_DIR,
    IMAGE_VENV,
    RUN_AS,
    STATE_DIR,
    TRUST_FILE,
    staged_dir,
)

__all__ = ["ImageOptions", "ImageResult", "build_image", "read_base"]

MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
INDEX_MT = "application/vnd.oci.image.index.v1+json"
CONFIG_MT = "application/vnd.oci.image.config.v1+json"
LAYER_MT = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_MT = "application/vnd.oci.empty.v1+json"
SBOM_MT = "application/vnd.cyclonedx+json"
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_PYTHON = re.compile(r"^(usr/local/bin|usr/bin|bin)/python(3\.\d+)$")
_CHUNK = 1 << 20
#: The largest JSON document (index, manifest, config) read from the base.
_JSON_LIMIT = 4 << 20


def _bad_base(base: Path, what: str) -> InputError:
    return InputError("E_IMAGE_BASE_INVALID", f"the base {base} is not a usable OCI image "
                      f"layout: {what}",
                      hint="pass the site's Python base image as an OCI layout, e.g. "
                           "skopeo copy docker://REGISTRY/python:3.11-slim oci:base:3.11")


# --------------------------------------------------------------------------- the base


@dataclass
class Base:
    """The base image: its manifest and config (parsed), the blobs it needs, its Python."""

    layout: Path
    ref: str | None
    manifest: dict[str, Any]
    manifest_digest: str
    config: dict[str, Any]
    python: str
    python_version: str
    #: the registry reference it was fetched from (the ``base.name`` annotation), if any
    name: str | None = None


def _blob(layout: Path, digest: Any, base: Path) -> Path:
    if not (isinstance(digest, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", digest)):
        raise _bad_base(base, f"digest {digest!r} is not sha256:<64 hex>")
    path = layout / "blobs" / "sha256" / digest[7:]
    if not path.is_file():
        raise _bad_base(base, f"blob {digest} is missing")
    return path


def _read_json(path: Path, base: Path, what: str, digest: str | None = None) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_JSON_LIMIT + 1)
    except OSError as exc:
        raise _bad_base(base, f"{what} cannot be read ({exc.strerror})") from None
    if len(data) > _JSON_LIMIT:
        raise _bad_base(base, f"{what} is over {_JSON_LIMIT} bytes")
    if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise _bad_base(base, f"{what} does not match its digest {digest}")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise _bad_base(base, f"{what} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _bad_base(base, f"{what} is not a JSON object")
    return doc


def _host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _pick(index: dict[str, Any], ref: str | None, base: Path) -> dict[str, Any]:
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise _bad_base(base, "index.json has no manifests list")
    if ref is not None:
        found = [m for m in manifests if (m.get("annotations") or {}).get(
            "org.opencontainers.image.ref.name") == ref]
        if not found:
            raise _bad_base(base, f"no manifest is tagged {ref!r}")
        return dict(found[0])
    images = [m for m in manifests if not m.get("artifactType") and "subject" not in m]
    if len(images) != 1:
        raise _bad_base(base, f"index.json lists {len(images)} images; name one as "
                        "--base DIR:TAG")
    return dict(images[0])


def read_base(spec: Path, *, python: str | None = None) -> Base:
    """The base image of ``spec`` (``DIR`` or ``DIR:TAG``): an OCI layout whose index names
    one image (or one per platform: this host's architecture is taken).

    Raises:
        InputError: E_IMAGE_BASE_INVALID (not an OCI layout, a blob missing or not matching
            its digest, no ``pythonX.Y`` in ``usr/local/bin``, ``usr/bin`` or ``bin``).
    """
    text = str(spec)
    layout, ref = spec, None
    if not (spec / "oci-layout").exists() and ":" in spec.name:
        head, _, ref = text.rpartition(":")
        layout = Path(head)
    marker = layout / "oci-layout"
    if not marker.is_file():
        raise _bad_base(spec, "it has no oci-layout file")
    if _read_json(marker, spec, "oci-layout").get("imageLayoutVersion") != "1.0.0":
        raise _bad_base(spec, "oci-layout's imageLayoutVersion is not 1.0.0")
    desc = _pick(_read_json(layout / "index.json", spec, "index.json"), ref, spec)
    for _ in range(2):  # an index of platforms: this host's
        if desc.get("mediaType") not in (INDEX_MT, _DOCKER_LIST):
            break
        nested = _read_json(_blob(layout, desc.get("digest"), spec), spec, "an image index",
                            desc.get("digest"))
        arch = _host_arch()
        matching = [m for m in nested.get("manifests") or [] if isinstance(m, dict)
                    and (m.get("platform") or {}).get("architecture") == arch
                    and (m.get("platform") or {}).get("os") == "linux"]
        if not matching:
            raise _bad_base(spec, f"its index has no linux/{arch} image")
        desc = dict(matching[0])
    if desc.get("mediaType") not in (MANIFEST_MT, _DOCKER_MANIFEST):
        raise _bad_base(spec, f"the image's media type is {desc.get('mediaType')!r}")
    digest = str(desc.get("digest"))
    manifest = _read_json(_blob(layout, digest, spec), spec, "the image manifest", digest)
    layers = manifest.get("layers")
    config_desc = manifest.get("config")
    if not isinstance(layers, list) or not isinstance(config_desc, dict) or not all(
            isinstance(d, dict) for d in layers):
        raise _bad_base(spec, "the image manifest has no config and layers")
    config = _read_json(_blob(layout, config_desc.get("digest"), spec), spec,
                        "the image config", str(config_desc.get("digest")))
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise _bad_base(spec, "the config's rootfs.diff_ids do not match the layers")
    for d in layers:
        _verify_blob(_blob(layout, d.get("digest"), spec), str(d.get("digest")),
                     d.get("size"), spec)
    found = python or _find_python(layout, layers, spec)
    match = re.search(r"python(3\.\d+)$", found)
    if not match or not found.startswith("/"):
        raise UsageError("E_USAGE", f"--python {found!r} is not an absolute path ending in "
                         "python3.N", hint="e.g. --python /usr/local/bin/python3.11")
    return Base(layout=layout, ref=ref, manifest=manifest, manifest_digest=digest,
                config=config, python=found, python_version=match.group(1))


def _verify_blob(path: Path, digest: str, size: Any, base: Path) -> None:
    h = hashlib.sha256()
    total = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
            total += len(chunk)
    if "sha256:" + h.hexdigest() != digest or (isinstance(size, int) and size != total):
        raise _bad_base(base, f"blob {digest} does not match its digest or size")


def _find_python(layout: Path, layers: list[dict[str, Any]], base: Path) -> str:
    """The base's ``pythonX.Y`` (``usr/local/bin`` first, as the official images have it)."""
    found: dict[str, str] = {}
    for d in layers:
        path = _blob(layout, d.get("digest"), base)
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    name = member.name.lstrip("./").lstrip("/")
                    m = _PYTHON.match(name)
                    if m and (member.isfile() or member.issym() or member.islnk()):
                        found[m.group(1)] = "/" + name
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise _bad_base(base, f"layer {d.get('digest')} is not a tar archive ({exc})"
                            ) from None
    for where in ("usr/local/bin", "usr/bin", "bin"):
        if where in found:
            return found[where]
    raise _bad_base(base, "no python3.N in /usr/local/bin, /usr/bin or /bin (pass --python "
                    "PATH if it is elsewhere)")


def is_layout_spec(text: str) -> bool:
    """Whether ``--base TEXT`` names an OCI layout on disk (``DIR`` or ``DIR:TAG``) rather
    than a registry reference."""
    head = text.rpartition(":")[0]
    return Path(text).exists() or (bool(head) and Path(head).is_dir())


def _registry_ref(text: str) -> None:
    from oemkit.site._registry import Reference

    try:
        Reference.parse(text)
    except UsageError:
        raise _bad_base(Path(text), "no such directory, nor a registry reference "
                        "HOST[:PORT]/REPOSITORY:TAG") from None


def fetch_base(ref_text: str, layout: Path, connection: Any) -> Path:
    """Copy the image ``ref_text`` names from the site's registry into a new OCI layout
    ``layout`` (tag ``base``): the manifest (this host's platform of an index), the config
    and every layer, each checked against its digest on the way (the registry client of
    ``oemkit oci``). Returns ``layout:base`` for :func:`read_base`.

    Raises:
        UsageError: E_OCI_REF, E_OCI_PLAIN_HTTP.
        InputError: E_IMAGE_BASE_INVALID (not an image, no image for this platform),
            E_OCI_NOT_FOUND, E_OCI_AUTH.
        VerificationError: E_OCI_DIGEST.
        EnvironmentProblem: E_OCI_UNREACHABLE, E_OCI_TLS, E_OCI_REGISTRY.
    """
    from oemkit.site._registry import Reference

    ref = Reference.parse(ref_text)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    registry = connection.open(ref)
    try:
        manifest = registry.get_manifest(ref.repository, ref.target)
        if manifest.media_type in (INDEX_MT, _DOCKER_LIST):
            arch = _host_arch()
            chosen = [m for m in manifest.doc.get("manifests") or [] if isinstance(m, dict)
                      and (m.get("platform") or {}).get("architecture") == arch
                      and (m.get("platform") or {}).get("os") == "linux"]
            if not chosen:
                raise _bad_base(Path(ref_text), f"its index has no linux/{arch} image")
            manifest = registry.get_manifest(ref.repository, str(chosen[0].get("digest")))
        if manifest.media_type not in (MANIFEST_MT, _DOCKER_MANIFEST):
            raise _bad_base(Path(ref_text), f"it is a {manifest.media_type!r}, not an image")
        (blobs / manifest.digest[7:]).write_bytes(manifest.data)
        config = manifest.doc.get("config")
        layers = manifest.doc.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise _bad_base(Path(ref_text), "the image manifest has no config and layers")
        for desc in [config, *layers]:
            digest, size = desc.get("digest"), desc.get("size")
            if not (isinstance(digest, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
                    and isinstance(size, int) and size >= 0):
                raise _bad_base(Path(ref_text), f"a descriptor has digest {digest!r}, "
                                f"size {size!r}")
            registry.download_blob(ref.repository, digest, size, blobs / digest[7:])
    finally:
        registry.close()
    (layout / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_bytes(_json({"schemaVersion": 2, "mediaType": INDEX_MT,
        "manifests": [{"mediaType": manifest.media_type, "digest": manifest.digest,
                       "size": len(manifest.data),
                       "annotations": {"org.opencontainers.image.ref.name": "base"}}]}))
    return Path(f"{layout}:base")


# --------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class _Entry:
    """One entry of a layer: a directory, a file (from ``source`` or ``data``), a link."""

    path: str
    kind: str  # "dir", "file", "symlink"
    mode: int = 0o755
    source: Path | None = None
    data: bytes | None = None
    target: str = ""
    owner: int = 0


class _Layer:
    """A layer's entries by path; parents are added as directories."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.entries: dict[str, _Entry] = {}

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            self.entries.setdefault(parent, _Entry(parent, "dir"))

    def add(self, entry: _Entry) -> None:
        self._parents(entry.path)
        self.entries[entry.path] = entry

    def add_tree(self, source: Path, dest: str) -> None:
        """``source``'s files, directories and links under ``dest`` (no special files)."""
        self.add(_Entry(dest, "dir"))
        for root, dirs, files in os.walk(source):
            dirs.sort()
            rel = os.path.relpath(root, source)
            here = dest if rel == "." else f"{dest}/{rel}"
            for name in [*dirs, *sorted(files)]:
                path = Path(root) / name
                target = f"{here}/{name}"
                if path.is_symlink():
                    self.add(_Entry(target, "symlink", 0o777, target=os.readlink(path)))
                elif path.is_dir():
                    self.add(_Entry(target, "dir"))
                elif path.is_file():
                    mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
                    self.add(_Entry(target, "file", mode, source=path))


def _tarinfo(entry: _Entry, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = mtime
    info.uid = info.gid = entry.owner
    info.uname = info.gname = ""
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    return info


@dataclass(frozen=True)
class _Written:
    role: str
    digest: str
    diff_id: str
    size: int
    files: int


def _write_layer(layer: _Layer, blobs: Path, mtime: int, work: Path) -> _Written:
    """Write ``layer`` as a gzip blob in ``blobs``; its digest, diff id and size."""
    raw = work / f"{layer.role}.tar"
    files = 0
    with open(raw, "w+b") as out:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(layer.entries):
                entry = layer.entries[path]
                info = _tarinfo(entry, mtime)
                if entry.kind != "file":
                    tar.addfile(info)
                    continue
                files += 1
                if entry.data is not None:
                    info.size = len(entry.data)
                    tar.addfile(info, io.BytesIO(entry.data))
                else:
                    assert entry.source is not None
                    with open(entry.source, "rb") as src:
                        info.size = os.fstat(src.fileno()).st_size
                        tar.addfile(info, src)
        out.flush()
        out.seek(0)
        diff = hashlib.sha256()
        packed = work / f"{layer.role}.tar.gz"
        with open(packed, "wb") as dest, gzip.GzipFile(
                filename="", mode="wb", fileobj=dest, mtime=0, compresslevel=6) as gz:
            while chunk := out.read(_CHUNK):
                diff.update(chunk)
                gz.write(chunk)
    digest, size = _store(packed, blobs)
    raw.unlink()
    return _Written(layer.role, digest, "sha256:" + diff.hexdigest(), size, files)


def _store(path: Path, blobs: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    size = path.stat().st_size
    os.replace(path, blobs / h.hexdigest())
    return digest, size


def _put(blobs: Path, data: bytes) -> str:
    hexd = hashlib.sha256(data).hexdigest()
    (blobs / hexd).write_bytes(data)
    return "sha256:" + hexd


def _json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------- python


def _oemkit_wheel(explicit: Path | None, wheelhouse: Path | None, work: Path) -> Path:
    """``--oemkit-wheel``, else this oemkit's wheel in the wheelhouse, else one built from
    the checkout oemkit runs from (``pip wheel --no-deps --no-build-isolation``)."""
    if explicit is not None:
        if not explicit.is_file() or not explicit.name.startswith("oemkit-"):
            raise InputError("E_NOT_FOUND", f"{explicit} is not an oemkit wheel",
                             hint="pass the oemkit-VERSION-py3-none-any.whl to install")
        return explicit
    if wheelhouse is not None:
        for wheel in sorted(wheelhouse.glob(f"oemkit-{__version__}-*.whl")):
            return wheel
    source = Path(__file__).resolve().parents[3]
    if not (source / "pyproject.toml").is_file() or not (source / "src" / "oemkit").is_dir():
        raise InputError("E_NOT_FOUND", "no oemkit wheel: oemkit does not run from a "
                         "checkout and the wheelhouse has none",
                         hint=f"pass --oemkit-wheel oemkit-{__version__}-py3-none-any.whl")
    dest = work / "oemkit-wheel"
    _pip(["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dest),
          str(source)], "build oemkit's wheel from the checkout")
    wheels = sorted(dest.glob("oemkit-*.whl"))
    if not wheels:
        raise EnvironmentProblem("E_PIP", "pip wheel made no oemkit wheel",
                                 hint="build it yourself and pass --oemkit-wheel")
    return wheels[0]


def _pip(args: list[str], what: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
           "PIP_NO_CACHE_DIR": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PIP_INDEX_URL", None)
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True,
                          text=True, env=env, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise EnvironmentProblem("E_PIP", f"pip could not {what}: " + " / ".join(tail),
                                 hint="the wheelhouse must hold every dependency for the "
                                      "base image's Python and platform ('oemkit wheelhouse "
                                      "fetch --python-version X.Y --platform ...')")


def _install(wheel: Path, wheelhouse: Path | None, version: str, target: Path,
             extras: tuple[str, ...]) -> None:
    """pip install oemkit (with ``extras`` and its dependencies from ``wheelhouse``, else
    alone) into ``target`` for Python ``version``, offline."""
    links = wheel.parent
    args = ["install", "--no-index", "--find-links", str(links), "--target", str(target),
            "--no-compile", "--no-warn-script-location", "--python-version", version,
            "--implementation", "cp", "--only-binary=:all:"]
    name = "oemkit"
    if wheelhouse is not None:
        args += ["--find-links", str(wheelhouse)]
        if extras:
            name += "[" + ",".join(extras) + "]"
    else:
        args.append("--no-deps")
    # by name from --find-links, not by path: a path would be recorded (direct_url.json)
    args.append(f"{name}==" + wheel.name.split("-")[1])
    _pip(args, f"install {wheel.name} for Python {version}")


def _compile(site: Path, version: str) -> str | None:
    """Byte-compile ``site`` for the image (the root filesystem is read-only, so without
    bytecode every start compiles every module in memory: about 0.2 s a process for
    oemkit's serving stack). Only when this interpreter is the base's version (the same
    bytecode format); deterministic: one process, files in sorted order, hash seed 0,
    ``unchecked-hash`` pycs (no source mtime), the in-image path as the file name. A file
    that does not compile is left to be compiled at import. Returns a note when skipped."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != version:
        return (f"bytecode not precompiled: oemkit runs on Python {here}, the base has "
                f"{version} (each start compiles in memory; build with Python {version})")
    dest = f"{IMAGE_VENV}/lib/python{version}/site-packages"
    # none of the caller's PYTHON* settings: PYTHONPYCACHEPREFIX would put the bytecode
    # elsewhere, PYTHONPATH and the like have no business here
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "1",
                           "--invalidation-mode", "unchecked-hash", "-d", dest, str(site)],
                          capture_output=True, text=True, check=False,
                          env={**env, "PYTHONHASHSEED": "0"})
    if done.returncode != 0 and not any(site.rglob("*.pyc")):
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"bytecode not precompiled: compileall failed ({tail[0]})"
    return None


def _dist_info(site: Path) -> list[tuple[str, str, Path]]:
    """(name, version, dist-info dir) of every distribution pip put in ``site``."""
    out = []
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        fields: dict[str, str] = {}
        for line in meta.read_text("utf-8", "replace").splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        out.append((fields.get("name", meta.parent.name), fields.get("version", ""),
                    meta.parent))
    return out


def _record_paths(dist_info: Path) -> set[str]:
    import csv

    paths = {dist_info.name}
    record = dist_info / "RECORD"
    if record.is_file():
        with open(record, newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                if row and not row[0].startswith(".."):
                    paths.add(row[0].split("/")[0])
    return paths


def _script(module: str, func: str, python: str) -> bytes:
    return (f"#!{python}\n# -*- coding: utf-8 -*-\nimport sys\nfrom {module} import {func}\n"
            f"if __name__ == '__main__':\n    sys.exit({func}())\n").encode()


def _entry_points(dist_info: Path) -> list[tuple[str, str, str]]:
    import configparser

    path = dist_info / "entry_points.txt"
    if not path.is_file():
        return []
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    if not parser.has_section("console_scripts"):
        return []
    out = []
    for name, value in sorted(parser.items("console_scripts")):
        module, _, func = value.partition(":")
        if re.fullmatch(r"[A-Za-z0-9_.-]+", name) and module and func:
            out.append((name, module.strip(), func.strip().split()[0]))
    return out


def _venv_layers(site: Path, base: Base) -> tuple[_Layer, _Layer, list[dict[str, Any]]]:
    """The dependencies layer and oemkit's layer, and the packages for the SBOM."""
    venv = IMAGE_VENV.lstrip("/")
    site_dest = f"{venv}/lib/python{base.python_version}/site-packages"
    deps, own = _Layer("dependencies"), _Layer("oemkit")
    dists = _dist_info(site)
    own_top: set[str] = set()
    for name, _, info in dists:
        if name.lower() == "oemkit":
            own_top = _record_paths(info)
    python = f"{IMAGE_VENV}/bin/python"
    packages = []
    for name, version, info in dists:
        layer = own if name.lower() == "oemkit" else deps
        for script, module, func in _entry_points(info):
            layer.add(_Entry(f"{venv}/bin/{script}", "file", 0o755,
                             data=_script(module, func, python)))
        packages.append({"name": name, "version": version})
    for child in sorted(site.iterdir()):
        if child.name == "bin":
            continue
        if child.name == "__pycache__":  # top-level modules' bytecode, with its module
            for pyc in sorted(child.iterdir()):
                module = pyc.name.split(".", 1)[0] + ".py"
                (own if module in own_top else deps).add(
                    _Entry(f"{site_dest}/__pycache__/{pyc.name}", "file", 0o644, source=pyc))
            continue
        layer = own if child.name in own_top else deps
        if child.is_dir() and not child.is_symlink():
            layer.add_tree(child, f"{site_dest}/{child.name}")
        elif child.is_file():
            layer.add(_Entry(f"{site_dest}/{child.name}", "file", 0o644, source=child))
    home = base.python.rsplit("/", 1)[0]
    cfg = (f"home = {home}\ninclude-system-site-packages = false\n"
           f"version = {base.python_version}\nexecutable = {base.python}\n")
    own.add(_Entry(f"{venv}/pyvenv.cfg", "file", 0o644, data=cfg.encode()))
    own.add(_Entry(f"{venv}/bin/python", "symlink", 0o777, target=base.python))
    own.add(_Entry(f"{venv}/bin/python3", "symlink", 0o777, target="python"))
    own.add(_Entry(f"{venv}/bin/python{base.python_version}", "symlink", 0o777,
                   target="python"))
    own.add(_Entry(f"{venv}/lib64", "symlink", 0o777, target="lib"))
    return deps, own, packages


# --------------------------------------------------------------------------- the image


@dataclass(frozen=True)
class ImageOptions:
    """What ``oemkit image`` was asked for besides the bundle, base and output."""

    trust: Path
    tag: str | None = None
    wheelhouse: Path | None = None
    oemkit_wheel: Path | None = None
    python: str | None = None
    #: oemkit's extras installed with the wheelhouse: ``oci`` for the init container's
    #: ``oemkit oci pull``
    extras: tuple[str, ...] = ("oci",)
    port: int = 8000
    source_date_epoch: int | None = None
    force: bool = False
    #: how to reach the registry when ``--base`` is a registry reference
    #: (:class:`oemkit.site.oci.Connection`); None: a layout only
    connection: Any = None


@dataclass
class ImageResult:
    """What ``build_image`` wrote."""

    dir: Path
    tag: str
    manifest_digest: str
    config_digest: str
    sbom_digest: str
    base_digest: str
    python: str
    layers: list[dict[str, Any]]
    created: str
    bundle: str
    version: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON data (``--json``)."""
        return {"ok": True, "dir": str(self.dir), "tag": self.tag,
                "reference": f"oci:{self.dir}:{self.tag}",
                "manifest_digest": self.manifest_digest, "config_digest": self.config_digest,
                "sbom_manifest_digest": self.sbom_digest, "base_digest": self.base_digest,
                "python": self.python, "layers": self.layers, "created": self.created,
                "bundle": self.bundle, "version": self.version, "notes": self.notes}


def _sbom(report: Any, bundle: Path) -> dict[str, Any]:
    """The bundle's SBOM, read from the bundle and checked against the verified manifest.

    Raises:
        VerificationError: E_MEMBER_MISSING, E_MEMBER_DIGEST (the bundle changed since).
    """
    from oemkit._fs import open_input, read_member
    from oemkit.verify.bundle import Limits, scan_bundle

    member = "sbom.cdx.json"
    expected = report.manifest.members.get(member)
    with open_input(bundle, "bundle") as handle:
        found = {m.name: m for m in scan_bundle(handle, Limits())}
        if member not in found or expected is None:
            raise VerificationError("E_MEMBER_MISSING", f"{bundle} has no {member}",
                                    member=member, hint="is this an oemkit bundle?")
        data = read_member(handle, found[member])
    if hashlib.sha256(data).hexdigest() != expected.sha256:
        raise VerificationError("E_MEMBER_DIGEST", f"{member} no longer matches what was "
                                "verified: the bundle changed while it was being read",
                                member=member, hint="make sure nothing writes to the bundle")
    doc = json.loads(data)
    assert isinstance(doc, dict)
    return doc


def _extend_sbom(doc: dict[str, Any], base: Base, layers: list[_Written],
                 packages: list[dict[str, Any]], manifest_digest: str) -> bytes:
    doc = json.loads(json.dumps(doc))
    components = doc.setdefault("components", [])
    known = {(c.get("name", "").lower(), c.get("version")) for c in components
             if isinstance(c, dict)}
    components.append({
        "type": "container", "bom-ref": f"oci-base:{base.manifest_digest}",
        "name": base.name or base.ref or "base", "version": base.manifest_digest,
        "description": "the base image (its layers unchanged)",
        "hashes": [{"alg": "SHA-256", "content": base.manifest_digest[7:]}]})
    for written in layers:
        components.append({
            "type": "data", "bom-ref": f"oci-layer:{written.digest}",
            "name": f"layer:{written.role}", "version": written.digest,
            "description": f"image layer {written.role} ({written.files} files, {LAYER_MT})",
            "hashes": [{"alg": "SHA-256", "content": written.digest[7:]}]})
    for p in packages:
        if (p["name"].lower(), p["version"]) in known:
            continue
        components.append({
            "type": "library", "bom-ref": f"pkg:pypi/{p['name'].lower()}@{p['version']}#image",
            "name": p["name"], "version": p["version"],
            "purl": f"pkg:pypi/{p['name'].lower()}@{p['version']}",
            "description": f"installed in {IMAGE_VENV}"})
    doc["serialNumber"] = "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                       f"oemkit-image:{manifest_digest}"))
    props = doc.setdefault("metadata", {}).setdefault("properties", [])
    props.append({"name": "oemkit:image:manifest", "value": manifest_digest})
    return json.dumps(doc, sort_keys=True, indent=2).encode() + b"\n"


def build_image(bundle: Path, base_spec: Path, out: Path, opts: ImageOptions) -> ImageResult:
    """Verify ``bundle`` and build the image layout at ``out`` (written atomically).
    ``base_spec`` is an OCI layout (``DIR`` or ``DIR:TAG``) or, with ``opts.connection``, a
    registry reference (:func:`fetch_base`).

    Raises:
        VerificationError: the bundle's verification failure.
        InputError: E_IMAGE_BASE_INVALID, E_NOT_FOUND, E_SOURCE_DATE_EPOCH, and those of
            :func:`oemkit.site.kubernetes.staged_dir`.
        UsageError: E_USAGE (a bad --tag or --python).
        EnvironmentProblem: E_PIP (a wheel could not be built or installed), E_WRITE.
    """
    from oemkit._fs import read_input
    from oemkit._time import format_time, from_epoch, parse_time, source_date_epoch
    from oemkit.host.unpack import unpack_bundle

    if opts.tag is not None and not _TAG.match(opts.tag):
        raise UsageError("E_USAGE", f"--tag {opts.tag!r} is not an OCI tag",
                         hint="letters, digits, '_', '.', '-'; at most 128")
    if opts.wheelhouse is not None and not opts.wheelhouse.is_dir():
        raise InputError("E_NOT_FOUND", f"--wheelhouse {opts.wheelhouse} is not a directory",
                         hint="pass the directory 'oemkit wheelhouse fetch' filled")
    trust = read_input(opts.trust, "trust root")
    work = Path(tempfile.mkdtemp(prefix="oemkit-image-"))
    try:
        base_name = str(base_spec)
        if opts.connection is not None and not is_layout_spec(base_name):
            _registry_ref(base_name)
            base_spec = fetch_base(base_name, work / "base", opts.connection)
        base = read_base(base_spec, python=opts.python)
        if base_spec != Path(base_name):
            base.name = base_name
        report = unpack_bundle(bundle, work / "payload", trust)
        if not report.ok:
            assert report.error is not None
            raise report.error
        manifest = report.manifest
        epoch = source_date_epoch(opts.source_date_epoch)
        created_at = (from_epoch(epoch) if epoch is not None
                      else parse_time(manifest.build_time, "build_time"))
        mtime = int(created_at.timestamp())
        created = format_time(created_at)
        tag = opts.tag or re.sub(r"[^A-Za-z0-9._-]", "_", manifest.version)[:128]
        sbom = _sbom(report, bundle)
        wheel = _oemkit_wheel(opts.oemkit_wheel, opts.wheelhouse, work)
        site = work / "site"
        _install(wheel, opts.wheelhouse, base.python_version, site, opts.extras)
        compiled = _compile(site, base.python_version)
        deps, own, packages = _venv_layers(site, base)
        file_name = f"{manifest.name}-{manifest.version}.oemb"
        content = _Layer("bundle")
        bundle_dir = IMAGE_BUNDLE_DIR.lstrip("/")
        content.add(_Entry(f"{bundle_dir}/{file_name}", "file", 0o644, source=bundle))
        content.add_tree(work / "payload", f"{bundle_dir}/payload")
        content.add(_Entry(TRUST_FILE.lstrip("/"), "file", 0o644, data=trust))
        content.add(_Entry(STATE_DIR.lstrip("/"), "dir", 0o755, owner=RUN_AS))
        with staged_dir(out, force=opts.force) as staging:
            result = _write_layout(staging, base, [deps, own, content], mtime, created, tag,
                                   manifest, sbom, packages, file_name, opts.port, work,
                                   str(report.manifest_sha256))
        result.dir = out
        if compiled is not None:
            result.notes.append(compiled)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _copy_base_blobs(base: Base, blobs: Path) -> None:
    wanted = [base.manifest["config"]["digest"], *(d["digest"]
                                                   for d in base.manifest["layers"])]
    for digest in wanted:
        dest = blobs / digest[7:]
        if not dest.exists():
            shutil.copyfile(base.layout / "blobs" / "sha256" / digest[7:], dest)


def _layer_iter(layers: list[_Layer]) -> Iterator[_Layer]:
    for layer in layers:
        if any(e.kind == "file" for e in layer.entries.values()):
            yield layer


def _write_layout(root: Path, base: Base, layers: list[_Layer], mtime: int, created: str,
                  tag: str, manifest: Any, sbom: dict[str, Any],
                  packages: list[dict[str, Any]], file_name: str, port: int,
                  work: Path, manifest_sha256: str) -> ImageResult:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (root / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    written = [_write_layer(layer, blobs, mtime, work) for layer in _layer_iter(layers)]
    _copy_base_blobs(base, blobs)
    # the base's media types are kept: its blobs are copied unchanged
    base_config = base.config
    cfg = dict(base_config.get("config") or {})
    env = [e for e in cfg.get("Env") or [] if isinstance(e, str)]
    path = next((e[5:] for e in env if e.startswith("PATH=")),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    ours = {"PATH": f"{IMAGE_VENV}/bin:{path}", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1", "HOME": "/tmp"}
    env = [e for e in env if e.split("=", 1)[0] not in ours]
    env += [f"{k}={v}" for k, v in ours.items()]
    labels = dict(cfg.get("Labels") or {})
    title = f"{manifest.name}-{manifest.version}"
    labels.update({"org.opencontainers.image.title": manifest.name,
                   "org.opencontainers.image.version": manifest.version,
                   "org.opencontainers.image.created": created,
                   "org.opencontainers.image.base.digest": base.manifest_digest,
                   "dev.oemkit.bundle": title,
                   "dev.oemkit.manifest-sha256": manifest_sha256})
    labels = {k: v for k, v in labels.items() if v}
    cfg.update({"User": f"{RUN_AS}:{RUN_AS}", "Env": env, "WorkingDir": "/",
                "Entrypoint": [f"{IMAGE_VENV}/bin/python", "-m", "oemkit"],
                "Cmd": ["serve", f"{IMAGE_BUNDLE_DIR}/{file_name}", "--trust", TRUST_FILE,
                        "--host", "0.0.0.0", "--port", str(port)],
                "ExposedPorts": {f"{port}/tcp": {}}, "Labels": labels,
                "StopSignal": "SIGTERM"})
    history = [h for h in base_config.get("history") or [] if isinstance(h, dict)]
    history += [{"created": created, "created_by": f"oemkit {__version__} image: "
                 f"{w.role} layer", "comment": f"{w.files} files"} for w in written]
    config = {"architecture": base_config.get("architecture", _host_arch()),
              "os": base_config.get("os", "linux"), "created": created, "config": cfg,
              "rootfs": {"type": "layers",
                         "diff_ids": [*base_config["rootfs"]["diff_ids"],
                                      *(w.diff_id for w in written)]},
              "history": history}
    for key in ("variant", "os.version"):
        if key in base_config:
            config[key] = base_config[key]
    config_bytes = _json(config)
    config_digest = _put(blobs, config_bytes)
    image: dict[str, Any] = {"schemaVersion": 2, "mediaType": MANIFEST_MT,
             "config": {"mediaType": CONFIG_MT, "digest": config_digest,
                        "size": len(config_bytes)},
             "layers": [*base.manifest["layers"],
                        *({"mediaType": LAYER_MT, "digest": w.digest, "size": w.size,
                           "annotations": {"dev.oemkit.layer": w.role}} for w in written)],
             "annotations": {"org.opencontainers.image.created": created,
                             "org.opencontainers.image.base.digest": base.manifest_digest,
                             "org.opencontainers.image.title": title,
                             "org.opencontainers.image.version": manifest.version}}
    if base.name:
        image["annotations"]["org.opencontainers.image.base.name"] = base.name
    image_bytes = _json(image)
    image_digest = _put(blobs, image_bytes)
    subject = {"mediaType": MANIFEST_MT, "digest": image_digest, "size": len(image_bytes)}
    sbom_bytes = _extend_sbom(sbom, base, written, packages, image_digest)
    sbom_digest = _put(blobs, sbom_bytes)
    empty = b"{}"
    empty_digest = _put(blobs, empty)
    referrer = {"schemaVersion": 2, "mediaType": MANIFEST_MT, "artifactType": SBOM_MT,
                "config": {"mediaType": EMPTY_MT, "digest": empty_digest, "size": 2,
                           "data": "e30="},
                "layers": [{"mediaType": SBOM_MT, "digest": sbom_digest,
                            "size": len(sbom_bytes),
                            "annotations": {"org.opencontainers.image.title":
                                            "sbom.cdx.json"}}],
                "subject": subject,
                "annotations": {"org.opencontainers.image.created": created}}
    referrer_bytes = _json(referrer)
    referrer_digest = _put(blobs, referrer_bytes)
    index = {"schemaVersion": 2, "mediaType": INDEX_MT, "manifests": [
        {**subject, "platform": {"architecture": config["architecture"], "os": config["os"]},
         "annotations": {"org.opencontainers.image.ref.name": tag}},
        {"mediaType": MANIFEST_MT, "digest": referrer_digest, "size": len(referrer_bytes),
         "artifactType": SBOM_MT,
         "annotations": {"org.opencontainers.image.created": created}}]}
    (root / "index.json").write_bytes(_json(index))
    for child in blobs.iterdir():
        os.chmod(child, 0o644)
    return ImageResult(
        dir=root, tag=tag, manifest_digest=image_digest, config_digest=config_digest,
        sbom_digest=referrer_digest, base_digest=base.manifest_digest, python=base.python,
        layers=[{"role": w.role, "digest": w.digest, "diff_id": w.diff_id, "size": w.size,
                 "files": w.files} for w in written],
        created=created, bundle=manifest.name, version=manifest.version)
