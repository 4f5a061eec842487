"""Assembling a bundle from a spec: payload, manifest, SBOM, provenance, outer archive.

The payload tar is deterministic (PAX, sorted by path, mtime 0, uid/gid 0, no user
names, modes 0644/0755) and zstd-compressed at a fixed level in one thread, so the same
inputs give the same bytes whatever the clock, umask, locale or working directory.
The result appears at its destination only when complete (atomic rename).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oemkit import __version__
from oemkit._canonical import sha256_hex
from oemkit._fs import (
    CHUNK,
    END_OF_ARCHIVE,
    HashingWriter,
    atomic_output,
    copy_member,
    read_input,
    write_member,
)
from oemkit._time import format_time, from_epoch, source_date_epoch
from oemkit.build.spec import BundleSpec, SourceFile, load_spec
from oemkit.errors import EnvironmentProblem, InputError, OemkitError
from oemkit.models.manifest import (
    MANIFEST,
    PAYLOAD,
    PROVENANCE,
    REVOCATIONS,
    SBOM,
    TRUST_DIR,
    FileEntry,
    Manifest,
    MemberDigest,
    Runtime,
)

ZSTD_LEVEL = 3
ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class BuildResult:
    """What a build produced."""

    path: Path
    name: str
    version: str
    manifest_sha256: str
    payload_sha256: str
    files: int
    payload_bytes: int


class _HashingReader:
    """Wraps a source file: hashes and counts what tarfile reads from it."""

    def __init__(self, handle: object, progress: ProgressFn | None) -> None:
        self._handle = handle
        self._progress = progress
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._handle.read(size)  # type: ignore[attr-defined]
        self.hash.update(data)
        self.size += len(data)
        if self._progress:
            self._progress(len(data))
        return data


def _pack_payload(files: tuple[SourceFile, ...], sink: HashingWriter,
                  progress: ProgressFn | None) -> list[FileEntry]:
    import zstandard

    entries: list[FileEntry] = []
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0, write_checksum=True)
    writer = cctx.stream_writer(sink, closefd=False, write_size=CHUNK)  # type: ignore[arg-type]
    with writer as zst, tarfile.open(
        fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK
    ) as tar:
        for item in files:
            try:
                handle = open(item.source, "rb")  # noqa: SIM115 - closed by the with below
            except OSError as exc:
                raise InputError("E_SPEC_MISSING_FILE", f"cannot read {item.path}: "
                                 f"{exc.strerror}", hint="check the file exists and is "
                                 "readable") from exc
            with handle:
                size = os.fstat(handle.fileno()).st_size
                info = tarfile.TarInfo(item.path)
                info.size = size
                info.mode = item.mode
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                reader = _HashingReader(handle, progress)
                tar.addfile(info, reader)
                if reader.size != size:
                    raise InputError("E_INPUT_CHANGED", f"{item.path} changed size while it "
                                     "was being packed", hint="rebuild when the inputs are "
                                     "stable")
                entries.append(FileEntry(item.path, size, reader.hash.hexdigest(), item.mode))
    return entries


def build_bundle(
    spec_path: Path | str, out_dir: Path | str = "dist", *,
    source_date_epoch_override: int | None = None, progress: ProgressFn | None = None,
) -> BuildResult:
    """Build ``NAME-VERSION.oemb`` from the spec into ``out_dir`` and return what was made."""
    spec = load_spec(Path(spec_path))
    epoch = source_date_epoch(source_date_epoch_override)
    if epoch is None:
        epoch = spec.raw.get("source_date_epoch")
    if epoch is None:
        # No clock: derive the time from the newest input's content-independent default.
        epoch = 0
    build_time = from_epoch(int(epoch))
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem("E_WRITE", f"cannot create output directory {out}: "
                                 f"{exc.strerror}", hint="choose a writable --out") from exc
    target = out / f"{spec.name}-{spec.version}.oemb"

    with tempfile.TemporaryFile(dir=out, prefix=".payload-") as payload_tmp:
        sink = HashingWriter(payload_tmp)
        entries = _pack_payload(spec.files, sink, progress)
        payload_digest, payload_size = sink.hexdigest(), sink.size
        manifest, sbom, provenance, trust_docs = _metadata(
            spec, entries, payload_digest, payload_size, build_time, epoch)
        manifest_bytes = manifest.to_bytes()
        payload_tmp.seek(0)
        with atomic_output(target) as handle:
            write_member(handle, MANIFEST, manifest_bytes)
            write_member(handle, SBOM, sbom)
            write_member(handle, PROVENANCE, provenance)
            for name, data in trust_docs:
                write_member(handle, name, data)
            copy_member(handle, PAYLOAD, payload_tmp, payload_size)
            handle.write(END_OF_ARCHIVE)
    return BuildResult(target, spec.name, spec.version, sha256_hex(manifest_bytes),
                       payload_digest, len(entries), sum(e.size for e in entries))


def _metadata(
    spec: BundleSpec, entries: list[FileEntry], payload_digest: str, payload_size: int,
    build_time: object, epoch: int,
) -> tuple[Manifest, bytes, bytes, list[tuple[str, bytes]]]:
    import datetime as dt

    from oemkit.build.modelcard import read_model_card
    from oemkit.build.packages import collect_packages
    from oemkit.build.provenance import make_statement
    from oemkit.build.sbom import make_sbom

    assert isinstance(build_time, dt.datetime)
    raw = spec.raw
    trust_docs = _carried_roots(spec)
    if spec.crl is not None:
        trust_docs.append((REVOCATIONS, _carried_crl(spec)))
    model_source = spec.source(spec.model)
    assert model_source is not None
    card = read_model_card(model_source.source)
    wheelhouse = raw.get("wheelhouse", "").rstrip("/") + "/"
    wheels = []
    for e in entries:
        source = spec.source(e.path)
        if "wheelhouse" in raw and e.path.startswith(wheelhouse) and e.path.endswith(".whl"):
            assert source is not None
            wheels.append((source.source, e.path, e.sha256))
    packages = collect_packages(wheels, raw.get("requirements", []))
    sbom = make_sbom(spec.name, spec.version, raw.get("description", ""), entries,
                     spec.model, build_time, model_card=card, packages=packages)
    golden = dict(raw["golden"]) if "golden" in raw else None
    runtime = Runtime(model=spec.model, entrypoint=raw.get("entrypoint"),
                      profiles=tuple(raw.get("profiles", ())),
                      config=dict(raw["config"]) if "config" in raw else None, golden=golden)
    members = {SBOM: MemberDigest(sha256_hex(sbom), len(sbom)),
               PAYLOAD: MemberDigest(payload_digest, payload_size)}
    for name, data in trust_docs:
        members[name] = MemberDigest(sha256_hex(data), len(data))
    manifest = Manifest(
        name=spec.name, version=spec.version, description=raw.get("description", ""),
        build_time=format_time(build_time), builder={"name": "oemkit", "version": __version__},
        runtime=runtime, files=tuple(entries), members=members, channel=raw.get("channel"))
    provenance = make_statement(
        {MANIFEST: sha256_hex(manifest.to_bytes()), PAYLOAD: payload_digest},
        spec_name=spec.spec_path.name, spec_sha256=spec.spec_sha256,
        options={"source_date_epoch": epoch, "zstd_level": ZSTD_LEVEL},
        dependencies=[(e.path, e.sha256, _role(e.path, spec.model, wheelhouse if wheels else None))
                      for e in entries],
        build_time=build_time)
    return manifest, sbom, provenance, trust_docs


def _carried_roots(spec: BundleSpec) -> list[tuple[str, bytes]]:
    """The spec's trust_roots as members, checked to chain without gaps (fail at build,
    not on a disconnected site)."""
    from oemkit.verify.trust import check_self_signed, check_successor, parse_root

    parsed = []
    for path in spec.trust_roots:
        data = read_input(path, "trust root")
        signed = parse_root(data, str(path))
        parsed.append((signed, data, path))
    parsed.sort(key=lambda item: item[0].root.version)
    for i, (signed, _, path) in enumerate(parsed):
        try:
            if i == 0:
                check_self_signed(signed, str(path))
            else:
                check_successor(parsed[i - 1][0].root, signed, str(path))
        except OemkitError as exc:
            raise InputError("E_SPEC_TRUST_ROOTS", f"trust_roots: {exc.message}",
                             hint="carry every trust-root version from the oldest a host may "
                                  "pin up to the newest, each signed by its predecessor") from exc
    return [(f"{TRUST_DIR}root-{signed.root.version}.json", data) for signed, data, _ in parsed]


def _role(path: str, model: str, wheelhouse: str | None) -> str:
    if path == model:
        return "model"
    if wheelhouse and path.startswith(wheelhouse):
        return "wheelhouse"
    return "file"


def _carried_crl(spec: BundleSpec) -> bytes:
    """The spec's CRL, checked to be an armored oemkit CRL (its signature is judged on the
    host, against the host's trust root)."""
    from oemkit.crypto.armor import dearmor, parse_document
    from oemkit.models.license import CRL_PAYLOAD_TYPE
    from oemkit.verify.license import CRL_LABEL

    assert spec.crl is not None
    data = read_input(spec.crl, "CRL", 1 << 20)
    try:
        doc = parse_document(dearmor(data, CRL_LABEL, str(spec.crl)), str(spec.crl))
    except OemkitError as exc:
        raise InputError("E_SPEC_CRL", f"crl: {exc.message}",
                         hint="point crl: at a file written by 'oemkit crl issue'") from exc
    if doc.payload_type != CRL_PAYLOAD_TYPE:
        raise InputError("E_SPEC_CRL", f"crl: {spec.crl} is not a revocation list",
                         hint="point crl: at a file written by 'oemkit crl issue'")
    return data
