"""Assembling a bundle from a spec: payload, manifest, SBOM, provenance, outer archive.

The payload tar is deterministic (PAX, sorted by path, mtime 0, uid/gid 0, no user
names, modes 0644/0755) and zstd-compressed at a fixed level as one frame by one
compression thread, so the same inputs give the same bytes whatever the clock, umask,
locale, working directory or number of cores. The result appears at its destination only
when complete (atomic rename).

Packing runs as a pipeline of three threads joined by bounded queues (constant memory:
a few MiB in flight whatever the payload size): this thread reads the inputs, hashes each
file and frames the tar stream; one thread compresses it; one hashes the compressed
stream and writes it to a temporary file. SHA-256, zstd and file I/O all release the GIL,
so the hashing passes overlap with compression on a second core. The payload then goes
into the bundle with ``copy_file_range`` (no user-space copy). Why the zstd settings are
what they are: benchmarks/RESULTS.md (issue 8).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from oemkit import __version__
from oemkit._canonical import sha256_hex
from oemkit._fs import (
    CHUNK,
    QUEUE_DEPTH,
    WRITEBACK_STEP,
    atomic_output,
    copy_into,
    copy_member,
    read_input,
    start_writeback,
    ustar_header,
)
from oemkit._tar import (
    BLOCK,
    END_OF_ARCHIVE,
    RECORD,
    file_header,
    padded,
    padding,
    record_padding,
)
from oemkit._time import format_time, from_epoch, source_date_epoch
from oemkit.errors import EnvironmentProblem, InputError, OemkitError, restate
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
from oemkit.release.spec import BundleSpec, SourceFile, load_spec

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
    #: reader-limit flags a default verifier needs for this bundle (usually none)
    verify_flags: tuple[str, ...] = ()
    #: what the build noticed but did not refuse (without ``strict``)
    warnings: tuple[BuildWarning, ...] = ()


@dataclass(frozen=True)
class BuildWarning:
    """Something a build noticed but did not refuse (``--strict`` refuses it): a code (the
    one ``--strict`` raises), what and where, and what to do."""

    code: str
    message: str
    hint: str
    #: the projects it is about (the requirements the wheelhouse lacks)
    projects: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form: one entry of the ``warnings`` list."""
        return {"code": self.code, "message": self.message, "hint": self.hint,
                "projects": list(self.projects)}


_END = object()


class _Aborted(Exception):
    """Another pipeline stage failed; this one stops quietly."""


class _Pipeline:
    """tar stream -> zstd (one thread) -> SHA-256 + temporary file (another thread).

    :meth:`send` is called from the producing thread; stages hand bytes on through
    bounded queues, so memory stays at a few chunks whatever the payload size. The first
    error of any stage stops every stage and is raised from :meth:`send` or :meth:`finish`.
    """

    def __init__(self, sink: BinaryIO) -> None:
        import zstandard

        # One frame, level 3, single-threaded (threads=0), content checksum, no content
        # size (streamed): the bytes FORMAT.md 2.5 specifies, identical to earlier builds.
        self._cobj = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, threads=0, write_checksum=True).compressobj()
        self._sink = sink
        self._to_zstd: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._to_disk: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._failed = threading.Event()
        self._errors: list[BaseException] = []
        self.hash = hashlib.sha256()
        self.size = 0
        self._threads = [threading.Thread(target=self._guard, args=(fn,), daemon=True,
                                          name=f"oemkit-{fn.__name__}")
                         for fn in (self._compress, self._write)]
        for thread in self._threads:
            thread.start()

    def _put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            if self._failed.is_set():
                raise _Aborted
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue[Any]) -> Any:
        while True:
            if self._failed.is_set():
                raise _Aborted
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except _Aborted:
            pass
        except BaseException as exc:  # handed to the producer
            self._errors.append(exc)
            self._failed.set()

    def _compress(self) -> None:
        while (item := self._get(self._to_zstd)) is not _END:
            out = self._cobj.compress(item)
            if out:
                self._put(self._to_disk, out)
        self._put(self._to_disk, self._cobj.flush())
        self._put(self._to_disk, _END)

    def _write(self) -> None:
        fd = self._sink.fileno()
        synced = start = self._sink.tell()
        while (item := self._get(self._to_disk)) is not _END:
            self.hash.update(item)
            self._sink.write(item)
            self.size += len(item)
            if start + self.size - synced >= WRITEBACK_STEP:
                start_writeback(fd, synced, start + self.size - synced)
                synced = start + self.size
        self._sink.flush()

    def send(self, data: bytes) -> None:
        try:
            self._put(self._to_zstd, data)
        except _Aborted:
            self.finish()
            raise

    def finish(self) -> None:
        """Wait for the stages; raise the first error of any of them."""
        if not self._failed.is_set():
            with contextlib.suppress(_Aborted):
                self._put(self._to_zstd, _END)
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]

    def abort(self) -> None:
        self._failed.set()
        for thread in self._threads:
            thread.join()


class _TarStream:
    """Frames the payload tar exactly as ``tarfile`` (PAX_FORMAT, mode ``w|``) does: header,
    data, zero padding to a block per file; then two zero blocks and zero padding to a
    20-block record. Small pieces are gathered into chunks before they are handed on."""

    def __init__(self, pipe: _Pipeline) -> None:
        self._pipe = pipe
        self._pending = bytearray()
        self.offset = 0

    def write(self, data: bytes) -> None:
        self.offset += len(data)
        if len(data) >= CHUNK // 2:
            self._flush()
            self._pipe.send(data)
            return
        self._pending += data
        if len(self._pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._pipe.send(bytes(self._pending))
            self._pending.clear()

    def close(self) -> None:
        self.write(END_OF_ARCHIVE)
        self.write(record_padding(self.offset))
        self._flush()


def _header(path: str, size: int, mode: int) -> bytes:
    """The tar header ``tarfile`` writes for this entry (PAX_FORMAT, the path in the file
    system's encoding with undecodable bytes kept): ``_tar.file_header``. tests/test_large.py
    and tests/test_tar.py check it against ``tarfile``."""
    return file_header(path, size, mode, encoding=sys.getfilesystemencoding())


def _changed(path: str) -> InputError:
    return InputError("E_INPUT_CHANGED", f"{path} changed size while it was being packed",
                      hint="rebuild when the inputs are stable")


def _cannot_read(path: str, exc: OSError) -> InputError:
    return InputError("E_SPEC_MISSING_FILE", f"cannot read {path}: {exc.strerror or exc}",
                      hint="check the file exists and is readable")


def _read(handle: Any, size: int, path: str) -> bytes:
    try:
        data: bytes = handle.read(size)
    except OSError as exc:
        raise _cannot_read(path, exc) from exc
    return data


#: Opens one payload file for packing: (a reader with ``read(n)`` and ``close()``, its size).
Opener = Callable[[SourceFile], tuple[Any, int]]


def _open_source(item: SourceFile) -> tuple[Any, int]:
    try:
        handle = open(item.source, "rb", buffering=0)  # noqa: SIM115 - closed by the packer
    except OSError as exc:
        raise _cannot_read(item.path, exc) from exc
    return handle, os.fstat(handle.fileno()).st_size


def pack_payload(files: tuple[SourceFile, ...], sink: BinaryIO, progress: ProgressFn | None,
                 *, opener: Opener = _open_source,
                 check: Callable[[FileEntry], None] | None = None,
                 ) -> tuple[list[FileEntry], str, int]:
    """Write the compressed payload to ``sink``; return the file entries, its SHA-256 and
    size. Read errors are coded input errors; write errors propagate as ``OSError``.

    ``opener`` gives each file's bytes (``oemkit patch`` rebuilds them from a delta; the
    reads are the same ``CHUNK`` sizes either way), ``check`` sees each entry as soon as
    it is packed (the patcher compares it with the signed manifest)."""
    entries: list[FileEntry] = []
    pipe = _Pipeline(sink)
    tar = _TarStream(pipe)
    try:
        for item in files:
            handle, size = opener(item)
            with contextlib.closing(handle):
                tar.write(_header(item.path, size, item.mode))
                digest = hashlib.sha256()
                remaining = size
                while remaining:
                    chunk = _read(handle, min(CHUNK, remaining), item.path)
                    if not chunk:
                        raise _changed(item.path)
                    digest.update(chunk)
                    tar.write(chunk)
                    remaining -= len(chunk)
                    if progress:
                        progress(len(chunk))
                if _read(handle, 1, item.path):
                    raise _changed(item.path)
                tar.write(padding(size))
                entries.append(FileEntry(item.path, size, digest.hexdigest(), item.mode))
                if check is not None:
                    check(entries[-1])
        tar.close()
        pipe.finish()
    except BaseException:
        pipe.abort()
        raise
    return entries, pipe.hash.hexdigest(), pipe.size


#: The payload is compressed straight into the bundle (no temporary copy) when the tar is at
#: least this big and averages at least DIRECT_PER_FILE per file: the metadata is then
#: computed twice (once with placeholder digests, to know where the payload starts),
#: which costs more than copying a payload made of many small files.
DIRECT_MIN = 16 << 20
DIRECT_PER_FILE = 64 << 10
_PLACEHOLDER = "0" * 64


def build_bundle(
    spec_path: Path | str | BundleSpec, out_dir: Path | str = "dist", *,
    source_date_epoch_override: int | None = None, progress: ProgressFn | None = None,
    trust: Path | str | bytes | None = None, strict: bool = False,
) -> BuildResult:
    """Build ``NAME-VERSION.oemb`` from the spec into ``out_dir`` and return what was made.

    ``spec_path`` may be an already loaded spec (the CLI loads it first for the progress
    bar's total; resolving 100,000 paths twice cost seconds). ``trust``: the trust root the
    hosts pin; when given, the carried trust roots must chain from it and the carried CRL
    must verify under the newest of them, as they will be judged on the hosts.
    ``strict``: refuse (``E_WHEELHOUSE_INCOMPLETE``) a spec whose wheelhouse lacks a
    project ``requirements:`` names, instead of returning it in ``warnings``.
    """
    spec = spec_path if isinstance(spec_path, BundleSpec) else load_spec(Path(spec_path))
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
    # Carried roots, CRL and model card first: a bad one fails before a long pack.
    static = _static_metadata(spec)
    warnings = _check_wheelhouse(spec, strict)
    if trust is not None:
        _check_against(trust, static.trust_docs)
    meta = _Metadata(spec, static, build_time, epoch)

    sizes = []
    for item in spec.files:
        try:
            sizes.append(item.source.stat().st_size)
        except OSError as exc:
            raise _cannot_read(item.path, exc) from exc
    tar_size = _tar_size(spec.files, sizes)
    offset = None
    if tar_size >= DIRECT_MIN and tar_size >= DIRECT_PER_FILE * len(spec.files):
        # Where the payload will start: the metadata's length does not depend on the
        # digests' values, only on sizes (the payload's guessed from an incompressible tar).
        guess = _compressed_guess(tar_size)
        placeholders = [FileEntry(f.path, n, _PLACEHOLDER, f.mode)
                        for f, n in zip(spec.files, sizes, strict=True)]
        offset = meta.build(placeholders, _PLACEHOLDER, guess).size
        del placeholders

    try:
        with atomic_output(target) as handle:
            if offset is not None:
                head = _pack_in_place(handle, target, offset, spec, meta, progress)
            else:
                head = _pack_then_copy(handle, out, spec, meta, progress)
    except _Relocated as moved:  # the payload did not fit where it was guessed
        head = moved.head
    except OSError as exc:
        raise _write_error(out, exc) from exc
    from oemkit.verify.bundle import flags_needed

    members = dict(head.sizes, **{PAYLOAD: head.payload_size})
    return BuildResult(target, spec.name, spec.version, sha256_hex(head.manifest),
                       head.payload_digest, len(head.entries),
                       sum(e.size for e in head.entries),
                       tuple(flags_needed(members, len(head.entries))), warnings)


def _check_wheelhouse(spec: BundleSpec, strict: bool) -> tuple[BuildWarning, ...]:
    """Whether the wheelhouse carries every project ``requirements:`` names and what those
    wheels require in turn, in versions they accept, on the target (markers judged for the
    Linux host the wheels' tags name): a slot's venv is built from the wheelhouse alone
    (``pip install --no-index``), so a project it lacks is missing at the smoke test on the
    host, far from here. A warning, or with ``strict`` the error. Without a wheelhouse the
    bundle runs on the host's Python (no venv): only ``strict`` (the bundle must carry its
    requirements) refuses it. Each wheel's project is its METADATA's name, as the SBOM
    records it.

    Raises:
        InputError: E_WHEELHOUSE_INCOMPLETE (with ``strict``) naming the missing projects.
    """
    from packaging.markers import default_environment

    from oemkit.models.wheelhouse import target_environment, unmet_requirements
    from oemkit.release.packages import parse_requirement, read_wheel, split_hashes

    raw = spec.raw
    required = []
    for i, text in enumerate(raw.get("requirements") or []):
        bare = split_hashes(text)[0]
        parse_requirement(bare, f"requirements[{i}]")  # its E_SPEC_REQUIREMENT first
        required.append(bare)
    if not required:
        return ()
    where = spec.spec_path.name
    host = {k: str(v) for k, v in default_environment().items()}
    if "wheelhouse" not in raw:
        if not strict:
            return ()
        missing = tuple(u.project for u in unmet_requirements(
            required, {}, target_environment((), host)))
        if not missing:
            return ()
        raise InputError(
            "E_WHEELHOUSE_INCOMPLETE", f"{where}: requirements name {len(missing)} "
            f"project(s) and the spec has no wheelhouse to carry them: {', '.join(missing)}",
            hint="add 'wheelhouse: wheels' to the spec and fill it with 'oemkit wheelhouse "
                 f"fetch {spec.spec_path} --dest {spec.spec_path.parent / 'wheels'}' (or "
                 "build without --strict: the host's Python must then provide them)")
    prefix = str(raw["wheelhouse"]).rstrip("/") + "/"
    wheels = [f for f in spec.files if f.path.startswith(prefix) and f.path.endswith(".whl")]
    carried: dict[str, tuple[str, Sequence[str]]] = {}
    for f in wheels:
        pkg = read_wheel(f.source, f.path, "")
        carried[pkg.name] = (pkg.version or "", pkg.requires_dist)
    unmet = unmet_requirements(required, carried,
                               target_environment([f.path for f in wheels], host))
    if not unmet:
        return ()
    absent = [u for u in unmet if u.have is None]
    excluded = [u for u in unmet if u.have is not None]
    missing = tuple(sorted({u.project for u in absent}))
    parts = []
    if absent:
        parts.append(f"requirements name {len(missing)} project(s) the wheelhouse ({prefix}) "
                     f"does not carry: {', '.join(u.describe() for u in absent)}")
    if excluded:
        parts.append(f"the wheelhouse ({prefix}) carries versions the requirements exclude: "
                     + ", ".join(u.describe() for u in excluded))
    message = (f"{where}: " + "; ".join(parts) + "; a slot's venv is built from the "
               "wheelhouse alone, so the installed release cannot import them")
    dest = spec.spec_path.parent / prefix.rstrip("/")
    hint = (f"fill the wheelhouse with 'oemkit wheelhouse fetch {spec.spec_path} --dest "
            f"{dest}' and rebuild, or install with --system-site-packages on hosts whose "
            "Python has them")
    if strict:
        raise InputError("E_WHEELHOUSE_INCOMPLETE", message, hint=hint)
    projects = tuple(sorted({u.project for u in unmet}))
    return (BuildWarning("E_WHEELHOUSE_INCOMPLETE", message, hint, projects),)


class _Relocated(Exception):
    """Discards the first output file after the bundle was written to a second one."""

    def __init__(self, head: _Head) -> None:
        super().__init__("relocated")
        self.head = head


def _compressed_guess(tar_size: int) -> int:
    """The compressed size of an incompressible tar: zstd stores it in raw blocks of
    128 KiB with a 3-byte header each, plus the frame header and checksum."""
    return tar_size + 3 * (tar_size // (128 << 10) + 1) + 32


def _pack_in_place(handle: BinaryIO, target: Path, offset: int, spec: BundleSpec,
                   meta: _Metadata, progress: ProgressFn | None) -> _Head:
    """Compress the payload straight to ``offset`` of the output, then write the metadata
    in front of it. If the real metadata turns out longer or shorter than predicted (the
    compressed size has another number of digits and crosses a block boundary), copy the
    payload into a second output file instead."""
    handle.seek(offset)
    entries, digest, size = pack_payload(spec.files, handle, progress)
    head = meta.build(entries, digest, size)
    if head.size == offset:
        handle.seek(0)
        head.write(handle)
        handle.seek(offset + size)
        handle.write(padding(size))
        handle.write(END_OF_ARCHIVE)
        return head
    handle.flush()
    with atomic_output(target) as final:
        head.write(final)
        if copy_into(final, handle.fileno(), offset, size) != size:
            raise OSError("the payload was lost while it was moved")
        final.write(padding(size))
        final.write(END_OF_ARCHIVE)
    raise _Relocated(head)


def _pack_then_copy(handle: BinaryIO, out: Path, spec: BundleSpec, meta: _Metadata,
                    progress: ProgressFn | None) -> _Head:
    """Compress the payload to a temporary file, then copy it in behind the metadata
    (checking on the way that the copy still has the digest the manifest records)."""
    with tempfile.TemporaryFile(dir=out, prefix=".payload-") as payload_tmp:
        entries, digest, size = pack_payload(spec.files, payload_tmp, progress)
        head = meta.build(entries, digest, size)
        head.write(handle, payload_header=False)
        payload_tmp.seek(0)
        if copy_member(handle, PAYLOAD, payload_tmp, size) != digest:
            raise OSError("the temporary payload file changed while it was copied")
        handle.write(END_OF_ARCHIVE)
    return head


def _tar_size(files: tuple[SourceFile, ...], sizes: list[int]) -> int:
    """Bytes of the uncompressed payload tar (PAX headers estimated generously)."""
    total = 0
    for item, size in zip(files, sizes, strict=True):
        path = item.path.encode("utf-8", "surrogateescape")
        pax = 0 if len(path) <= 100 and path.isascii() else 1024 + len(path)
        total += BLOCK + pax + padded(size)
    total += len(END_OF_ARCHIVE)
    return total + (-total % RECORD)


class BuildWriteError(EnvironmentProblem, OSError):
    """``E_WRITE`` (exit 4): the bundle could not be written (disk full, permissions).

    Also an ``OSError`` (with the original ``errno``), as ``build_bundle`` raised one before
    write failures had a code."""


def _write_error(out: Path, exc: OSError) -> BuildWriteError:
    error = BuildWriteError(
        "E_WRITE", f"cannot write the bundle in {out}: {exc.strerror or exc}",
        hint="check free space and permissions of --out, then build again; nothing was "
             "left behind")
    error.errno, error.strerror = exc.errno, exc.strerror
    return error


@dataclass(frozen=True)
class _Static:
    """Metadata inputs that do not depend on the payload."""

    trust_docs: list[tuple[str, bytes]]
    card: Any
    sources: dict[str, SourceFile]


@dataclass(frozen=True)
class _Head:
    """Everything in front of the payload's data, and what went into it."""

    members: tuple[bytes, ...]  # headers, documents and padding, in order (not joined:
    # at 100,000 files the documents are 70 MB and a joined copy would double them)
    payload_header: bytes
    manifest: bytes
    payload_digest: str
    entries: list[FileEntry]
    sizes: dict[str, int]  # metadata member -> bytes
    payload_size: int

    @property
    def size(self) -> int:
        """Bytes in front of the payload's data (written as two parts: no 2x copy)."""
        return sum(map(len, self.members)) + len(self.payload_header)

    def write(self, out: BinaryIO, *, payload_header: bool = True) -> None:
        for part in self.members:
            out.write(part)
        if payload_header:
            out.write(self.payload_header)


def _check_config(spec: BundleSpec) -> None:
    """Refuse a config section that would fail on the host: the default config must be
    valid for the version the spec declares, the schemas and migrations must parse, and
    every shipped older sample must migrate up (``oemkit migrate test``'s checks; an
    irreversible step stays a warning there). Found here, a typo costs a rebuild; found on
    a disconnected host, it costs a trip."""
    section = spec.raw.get("config")
    if not section:
        return
    from oemkit.models.config import (
        MAX_CONFIG,
        config_version,
        load_configs,
        plan,
        upgrade_path_test,
        wanted_files,
    )

    files = {}
    for name in sorted(wanted_files(section)):
        source = spec.source(name)
        assert source is not None  # load_spec resolved every path of the section
        files[name] = read_input(source.source, f"config file {name}", MAX_CONFIG)
    where = f"{spec.spec_path.name}: config"
    try:
        configs = load_configs(files, section, verified=True)
        declared = config_version(configs.default, section["file"])
        if declared != configs.version:
            raise InputError("E_CONFIG_VERSION", f"{section['file']} has schema_version "
                             f"{declared} but config.version is {configs.version}",
                             hint="make the default config the current version")
        plan(configs.default, configs, section["file"])
        failed = [c for c in upgrade_path_test(configs) if c.status == "fail"]
    except InputError as exc:
        raise restate(exc, InputError, message=f"{where}: {exc.message}") from exc
    if failed:
        first = failed[0]
        raise InputError(first.code or "E_MIGRATION_ROUNDTRIP", f"{where}: {first.name}: "
                         f"{first.detail}", hint="fix the migrations or the sample; 'oemkit "
                         "migrate test' on a built bundle lists every check")


def _static_metadata(spec: BundleSpec) -> _Static:
    from oemkit.release.modelcard import read_model_card

    _check_config(spec)
    trust_docs = _carried_roots(spec)
    if spec.crl is not None:
        trust_docs.append((REVOCATIONS, _carried_crl(spec)))
    sources = {f.path: f for f in spec.files}
    model_source = sources.get(spec.model)
    assert model_source is not None
    card = read_model_card(model_source.source)
    if "golden" in spec.raw:
        from oemkit.release.golden import check_golden

        check_golden(spec.spec_path.name, spec.raw["golden"],
                     {path: f.source for path, f in sources.items()}, card)
    return _Static(trust_docs, card, sources)


class _Metadata:
    """Builds the members in front of the payload: manifest, SBOM, provenance, carried
    trust roots and CRL, then the payload's own header."""

    def __init__(self, spec: BundleSpec, static: _Static, build_time: Any, epoch: int) -> None:
        self._spec, self._static = spec, static
        self._build_time, self._epoch = build_time, epoch

    def build(self, entries: list[FileEntry], payload_digest: str, payload_size: int) -> _Head:
        manifest_bytes, sbom, provenance, trust_docs = _metadata(
            self._spec, self._static, entries, payload_digest, payload_size,
            self._build_time, self._epoch)
        parts: list[bytes] = []
        sizes = {}
        for name, data in [(MANIFEST, manifest_bytes), (SBOM, sbom), (PROVENANCE, provenance),
                           *trust_docs]:
            parts += (ustar_header(name, len(data)), data, padding(len(data)))
            sizes[name] = len(data)
        return _Head(tuple(parts), ustar_header(PAYLOAD, payload_size), manifest_bytes,
                     payload_digest, entries, sizes, payload_size)


def _metadata(
    spec: BundleSpec, static: _Static, entries: list[FileEntry], payload_digest: str,
    payload_size: int, build_time: object, epoch: int,
) -> tuple[bytes, bytes, bytes, list[tuple[str, bytes]]]:
    """Manifest bytes, SBOM, provenance and the carried members."""
    import datetime as dt

    from oemkit.release.packages import collect_packages
    from oemkit.release.provenance import make_statement
    from oemkit.release.sbom import make_sbom

    assert isinstance(build_time, dt.datetime)
    raw = spec.raw
    trust_docs = static.trust_docs
    card = static.card
    wheelhouse = raw.get("wheelhouse", "").rstrip("/") + "/"
    wheels = []
    for e in entries:
        if "wheelhouse" in raw and e.path.startswith(wheelhouse) and e.path.endswith(".whl"):
            source = static.sources.get(e.path)
            assert source is not None
            wheels.append((source.source, e.path, e.sha256))
    packages = collect_packages(wheels, raw.get("requirements", []))
    sbom = make_sbom(spec.name, spec.version, raw.get("description", ""), entries,
                     spec.model, build_time, model_card=card, packages=packages)
    golden = dict(raw["golden"]) if "golden" in raw else None
    runtime = Runtime(model=spec.model, entrypoint=raw.get("entrypoint"),
                      profiles=tuple(raw.get("profiles", ())),
                      config=dict(raw["config"]) if "config" in raw else None, golden=golden,
                      license=_license_policy(raw))
    members = {SBOM: MemberDigest(sha256_hex(sbom), len(sbom)),
               PAYLOAD: MemberDigest(payload_digest, payload_size)}
    for name, data in trust_docs:
        members[name] = MemberDigest(sha256_hex(data), len(data))
    manifest = Manifest(
        name=spec.name, version=spec.version, description=raw.get("description", ""),
        build_time=format_time(build_time), builder={"name": "oemkit", "version": __version__},
        runtime=runtime, files=tuple(entries), members=members, channel=raw.get("channel"))
    manifest_bytes = manifest.to_bytes()
    provenance = make_statement(
        {MANIFEST: sha256_hex(manifest_bytes), PAYLOAD: payload_digest},
        spec_name=spec.spec_path.name, spec_sha256=spec.spec_sha256,
        options={"source_date_epoch": epoch, "zstd_level": ZSTD_LEVEL},
        dependencies=[(e.path, e.sha256, _role(e.path, spec.model, wheelhouse if wheels else None))
                      for e in entries],
        build_time=build_time)
    return manifest_bytes, sbom, provenance, trust_docs


def _license_policy(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The spec's ``license:`` section with every default written out, as the manifest
    records it (load_spec checked it); None without one, so the manifest has no key."""
    if "license" not in raw:
        return None
    from oemkit.models.serving import LicensePolicy

    return LicensePolicy.from_dict(raw["license"]).to_dict()


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


def _check_against(trust: Path | str | bytes, carried: list[tuple[str, bytes]]) -> None:
    """Judge the carried trust roots and CRL as a host pinning ``trust`` will: the roots
    must chain from it (``verify``'s ``walk_chain``) and the CRL must be signed by a
    ``crl`` key of the newest root (``read_crl``). A mistake here is found in the release
    job instead of by every host that receives the bundle."""
    from oemkit.verify.license import read_crl
    from oemkit.verify.trust import load_pinned, walk_chain

    pinned = load_pinned(trust)
    roots = [(name, data) for name, data in carried if name.startswith(TRUST_DIR)]
    try:
        root, _ = walk_chain(pinned, roots)
    except OemkitError as exc:
        raise InputError("E_SPEC_TRUST_ROOTS", f"trust_roots: {exc.message} (judged from "
                         f"the --trust root, version {pinned.version})",
                         hint="carry every trust-root version after the one hosts pin, each "
                              "signed by its predecessor") from exc
    for name, data in carried:
        if name == REVOCATIONS:
            try:
                read_crl(data, root, "crl")
            except OemkitError as exc:
                raise InputError("E_SPEC_CRL", f"crl: {exc.message} (judged under trust "
                                 f"root version {root.version})",
                                 hint="issue the CRL with a crl key of the trust root the "
                                      "hosts will hold ('oemkit crl issue')") from exc


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
