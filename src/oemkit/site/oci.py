"""A bundle as an OCI artifact: push to and pull from the site's registry, export to and
import from an OCI image layout on disk (docs/FLEET.md, the registry section).

The artifact (OCI image-spec 1.1, "artifacts guidance") is an image manifest with
``artifactType`` :data:`ARTIFACT_TYPE`, the empty descriptor as its config, and the
``.oemb`` file, unchanged, as its one layer (media type :data:`LAYER_TYPE`, titled with
the file's name). The bundle's signatures travel inside the ``.oemb`` (``signatures/*``,
Sigstore bundles over the provenance) and are what ``pull`` verifies; each is also pushed
as a referrer of the artifact (artifact type ``application/vnd.dev.sigstore.bundle.v0.3+json``,
the media type cosign and ORAS use for a Sigstore bundle), so that ``oras discover`` lists
them and ``oras copy -r`` / ``skopeo`` mirror them with the bundle.

Pull and import write nothing under the output name until the layer's digest matched
while it streamed and the whole bundle verified against the pinned trust root: bytes go
to a partial file beside the output (``.NAME.DIGEST.partial``, kept when a transfer is
interrupted so that the next pull resumes it, removed when it fails its checks), which is
renamed into place only after verification.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oemkit.errors import InputError, OemkitError, UsageError, VerificationError
from oemkit.site._registry import (
    CHUNK_BYTES,
    INDEX_TYPE,
    MANIFEST_TYPE,
    Credentials,
    Reference,
    Registry,
    canonical,
    find_credentials,
    is_loopback,
    parse_manifest,
    sha256_digest,
)

if TYPE_CHECKING:
    from oemkit.models.report import VerifyReport
    from oemkit.models.trust import TrustRoot
    from oemkit.verify.bundle import BundleInfo, Limits

ProgressFn = Callable[[int], None]

#: The manifest's ``artifactType``: an oemkit bundle.
ARTIFACT_TYPE = "application/vnd.oemkit.bundle.v1"
#: The layer: the ``.oemb`` file itself (an uncompressed tar of the outer members).
LAYER_TYPE = "application/vnd.oemkit.bundle.v1.tar"
#: A Sigstore bundle (v0.3): each of the bundle's signatures, attached as a referrer.
SIGNATURE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
#: The OCI 1.1 empty descriptor: ``{}`` (the config of an artifact without one).
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"
EMPTY = {"mediaType": EMPTY_TYPE, "digest": sha256_digest(EMPTY_DATA), "size": 2,
         "data": "e30="}
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"


# --------------------------------------------------------------------------- the artifact

@dataclass(frozen=True)
class Artifact:
    """What oemkit pushes for one bundle: the layer's descriptor, the artifact manifest's
    exact bytes and digest, and one referrer manifest per signature with its blob."""

    layer: dict[str, Any]
    manifest: bytes
    digest: str
    signatures: tuple[tuple[dict[str, Any], bytes, bytes], ...]  # (layer, blob, manifest)
    info: BundleInfo

    @property
    def descriptor(self) -> dict[str, Any]:
        """The artifact manifest's descriptor (a referrer's ``subject``)."""
        return {"mediaType": MANIFEST_TYPE, "digest": self.digest, "size": len(self.manifest),
                "artifactType": ARTIFACT_TYPE}


def describe(bundle: Path, *, limits: Limits | None = None,
             digest: str | None = None) -> Artifact:
    """The artifact for ``bundle``: its structure checked as ``oemkit inspect`` checks it
    (nothing trusted), the file hashed once (unless ``digest`` says what it is), and its
    signature members read.

    The manifest is deterministic (sorted keys; dates from the bundle's build time), so a
    bundle pushed twice, or exported and copied, has one digest everywhere.

    Raises:
        InputError: ``E_NOT_FOUND``, ``E_NOT_A_FILE``.
        EnvironmentProblem: ``E_PERMISSION``.
        VerificationError: the codes of :func:`oemkit.verify.bundle.inspect_bundle`.
    """
    from oemkit._fs import open_input, read_member
    from oemkit.models.manifest import SIGNATURE_DIR
    from oemkit.verify.bundle import Limits, inspect_bundle, scan_bundle

    limits = limits or Limits()
    info = inspect_bundle(bundle, limits=limits)
    if digest is None:
        digest, size = _file_digest(bundle)
    else:
        size = bundle.stat().st_size
    made = info.manifest.build_time
    layer: dict[str, Any] = {"mediaType": LAYER_TYPE, "digest": digest, "size": size,
             "annotations": {TITLE: bundle.name}}
    doc = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": ARTIFACT_TYPE,
           "config": EMPTY, "layers": [layer],
           "annotations": {"org.opencontainers.image.created": made,
                           "org.opencontainers.image.title": info.manifest.name,
                           "org.opencontainers.image.version": info.manifest.version,
                           "vnd.oemkit.bundle.manifest.sha256": info.manifest_sha256}}
    manifest = canonical(doc)
    digest_of = sha256_digest(manifest)
    subject: dict[str, Any] = {"mediaType": MANIFEST_TYPE, "digest": digest_of,
                               "size": len(manifest), "artifactType": ARTIFACT_TYPE}
    signatures = []
    with open_input(bundle, "bundle") as handle:
        members = scan_bundle(handle, limits)
        for member in members:
            if not member.name.startswith(SIGNATURE_DIR):
                continue
            blob = read_member(handle, member)
            keyid = member.name[len(SIGNATURE_DIR):].split(".", 1)[0]
            sig_layer = {"mediaType": SIGNATURE_TYPE, "digest": sha256_digest(blob),
                         "size": len(blob),
                         "annotations": {TITLE: member.name[len(SIGNATURE_DIR):]}}
            sig_doc = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                       "artifactType": SIGNATURE_TYPE, "config": EMPTY, "layers": [sig_layer],
                       "subject": subject,
                       "annotations": {"org.opencontainers.image.created": made,
                                       "dev.sigstore.bundle.content": "dsse-envelope",
                                       "dev.sigstore.bundle.predicateType":
                                           "https://slsa.dev/provenance/v1",
                                       "vnd.oemkit.signature.keyid": keyid}}
            signatures.append((sig_layer, blob, canonical(sig_doc)))
    return Artifact(layer, manifest, digest_of, tuple(signatures), info)


def check_artifact(doc: dict[str, Any], where: str, limits: Limits) -> dict[str, Any]:
    """The layer descriptor of an oemkit artifact manifest, refused unless it is one: an
    image manifest of :data:`ARTIFACT_TYPE` (or that config media type, as older tools
    write it) with exactly one layer of :data:`LAYER_TYPE`, a sha256 digest and a size
    within the reader limits.

    Raises:
        InputError: ``E_OCI_ARTIFACT``.
    """
    kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
    layers = doc.get("layers")
    hint = "the reference names something other than an oemkit bundle; push one with " \
           "'oemkit oci push BUNDLE REF'"
    if doc.get("mediaType", MANIFEST_TYPE) != MANIFEST_TYPE or kind != ARTIFACT_TYPE:
        raise InputError("E_OCI_ARTIFACT", f"{where} is not an oemkit bundle (media type "
                         f"{doc.get('mediaType')!r}, artifact type {kind!r})", hint=hint,
                         expected=ARTIFACT_TYPE, actual=str(kind))
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        raise InputError("E_OCI_ARTIFACT", f"{where} has {len(layers or [])} layers; an "
                         "oemkit bundle artifact has one", hint=hint)
    layer = layers[0]
    digest, size = layer.get("digest"), layer.get("size")
    most = limits.max_payload_bytes + limits.max_metadata_total + (64 << 20)
    if (layer.get("mediaType") != LAYER_TYPE or not isinstance(digest, str)
            or not digest.startswith("sha256:") or len(digest) != 71
            or not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= most):
        raise InputError("E_OCI_ARTIFACT", f"{where}'s layer is not an oemkit bundle "
                         f"(media type {layer.get('mediaType')!r}, digest {digest!r}, size "
                         f"{size!r})", hint=hint, expected=LAYER_TYPE)
    return layer


# --------------------------------------------------------------------------- connecting

@dataclass(frozen=True)
class Connection:
    """How to reach a registry: ``plain_http`` (loopback only), ``ca_file``, and explicit
    credentials (``--username`` / ``--password-stdin``; else the auth files are read)."""

    plain_http: bool = False
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None
    auth_file: Path | None = None

    def open(self, ref: Reference) -> Registry:
        """A client for ``ref``'s registry.

        Raises:
            UsageError: ``E_OCI_PLAIN_HTTP`` (plain HTTP to a host that is not loopback),
                ``E_USAGE`` (a password without a user name, or the reverse).
            InputError: ``E_NOT_FOUND`` (the CA file), ``E_OCI_AUTH_FILE``.
        """
        if self.plain_http and not is_loopback(ref.hostname):
            raise UsageError(
                "E_OCI_PLAIN_HTTP", f"--plain-http to {ref.host}, which is not a loopback "
                "address: credentials and the bundle would cross the network unencrypted",
                hint="serve the registry over TLS and give its CA with --ca-file; plain HTTP "
                     "is only for a registry on 127.0.0.1, ::1 or localhost")
        if (self.username is None) != (self.password is None):
            raise UsageError("E_USAGE", "--username and --password-stdin go together",
                             hint="echo \"$TOKEN\" | oemkit oci pull REF --username USER "
                                  "--password-stdin ...")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise InputError("E_NOT_FOUND", f"CA file {self.ca_file} does not exist",
                             hint="give the PEM bundle of the site's registry CA")
        credentials: Credentials | None
        if self.username is not None and self.password is not None:
            credentials = Credentials(self.username, self.password, "--username")
        else:
            credentials = find_credentials(
                ref, None if self.auth_file is None else [self.auth_file])
        return Registry(ref.host, plain_http=self.plain_http, ca_file=self.ca_file,
                        credentials=credentials)


# --------------------------------------------------------------------------- push

@dataclass(frozen=True)
class PushResult:
    ref: str
    digest: str
    #: Blob digest -> "uploaded" or "present" (skipped: the registry had it).
    blobs: dict[str, str]
    #: Bytes sent now (an interrupted upload resumed sends only the rest).
    sent: int
    #: The referrer manifests' digests (one per signature) and how they are indexed:
    #: "api" (the registry's referrers API) or the OCI 1.1 fallback tag.
    referrers: tuple[str, ...]
    referrers_index: str
    report: VerifyReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "digest": self.digest, "blobs": dict(self.blobs),
                "sent_bytes": self.sent, "referrers": list(self.referrers),
                "referrers_index": self.referrers_index,
                "verified": self.report is not None}


def push(bundle: Path, ref_text: str, connection: Connection, *, trust: Path | None = None,
         limits: Limits | None = None, progress: ProgressFn | None = None,
         state_dir: Path | None = None, chunk_bytes: int = CHUNK_BYTES) -> PushResult:
    """Push ``bundle`` to ``ref_text`` (a tag; a digest, if given, must be the artifact's).

    With ``trust`` the bundle is verified first and nothing is pushed unless it verifies.
    Blobs the registry has are skipped (``HEAD``); an upload interrupted in an earlier run
    resumes where the registry has it (``state_dir`` remembers the upload's location;
    ``chunk_bytes``: the most an interruption loses).

    Raises:
        VerificationError: the verdict's code when ``trust`` is given and the bundle does
            not verify; ``E_OCI_DIGEST`` (the reference's digest is not the artifact's);
            the codes of :func:`describe`.
        UsageError: ``E_OCI_REF``, ``E_OCI_PLAIN_HTTP``.
        InputError, EnvironmentProblem: the registry's codes (``E_OCI_*``).
    """
    from oemkit.verify.bundle import Limits

    limits = limits or Limits()
    ref = Reference.parse(ref_text)
    report = None
    if trust is not None:
        report = _verify_file(bundle, _pinned(trust), limits)
        if not report.ok and report.error is not None:
            raise report.error
    from concurrent.futures import ThreadPoolExecutor

    from oemkit.verify.bundle import inspect_bundle

    inspect_bundle(bundle, limits=limits)  # refused before a byte goes out
    size = bundle.stat().st_size
    state_dir = state_dir or _state_dir()
    registry = connection.open(ref)
    blobs: dict[str, str] = {}
    sent = 0
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="oemkit-hash") as pool:
            # a large file is hashed while it is sent (the registry is asked whether it
            # has the blob as soon as the digest is known)
            layer_digest = pool.submit(lambda: _file_digest(bundle)[0])
            if size < OVERLAP_BYTES or ref.digest is not None:
                _check_ref_digest(ref, describe(bundle, limits=limits,
                                                digest=layer_digest.result()))
            state = state_dir / _upload_state_name(ref, bundle)
            how, count = registry.upload_blob(ref.repository, bundle, layer_digest, size,
                                              state=state, progress=progress,
                                              chunk=chunk_bytes)
        artifact = describe(bundle, limits=limits, digest=layer_digest.result())
        blobs[artifact.layer["digest"]] = how
        sent += count
        blobs[str(EMPTY["digest"])] = _push_small(registry, ref.repository, EMPTY_DATA)
        for sig_layer, blob, _ in artifact.signatures:
            blobs[sig_layer["digest"]] = _push_small(registry, ref.repository, blob)
        registry.put_manifest(ref.repository, ref.tag or artifact.digest, artifact.manifest,
                              MANIFEST_TYPE)
        if ref.tag and ref.digest:
            registry.put_manifest(ref.repository, artifact.digest, artifact.manifest,
                                  MANIFEST_TYPE)
        referrers = []
        index = "none"
        for _, _, sig_manifest in artifact.signatures:
            digest = sha256_digest(sig_manifest)
            response = registry.put_manifest(ref.repository, digest, sig_manifest,
                                             MANIFEST_TYPE)
            descriptor = {"mediaType": MANIFEST_TYPE, "digest": digest,
                          "size": len(sig_manifest), "artifactType": SIGNATURE_TYPE,
                          "annotations": json.loads(sig_manifest)["annotations"]}
            index = registry.add_referrer(ref.repository, artifact.digest, descriptor,
                                          response)
            referrers.append(digest)
    finally:
        registry.close()
    return PushResult(str(ref), artifact.digest, blobs, sent, tuple(referrers), index, report)


def _check_ref_digest(ref: Reference, artifact: Artifact) -> None:
    if ref.digest is not None and ref.digest != artifact.digest:
        raise VerificationError(
            "E_OCI_DIGEST", f"{ref} names digest {ref.digest}, but this bundle's artifact "
            f"is {artifact.digest}", check="manifest digest", expected=ref.digest,
            actual=artifact.digest, hint="push to a tag, or name the artifact's digest")


def _push_small(registry: Registry, repository: str, blob: bytes) -> str:
    digest = sha256_digest(blob)
    if registry.blob_size(repository, digest) is not None:
        return "present"
    response = registry.request("POST", f"/v2/{repository}/blobs/uploads/?digest={digest}",
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(len(blob))},
                                body=lambda: blob, ok=(201, 202), what=f"blob {digest}")
    response.close()
    if response.status_code == 202:  # no monolithic POST: PUT to the session
        location = registry._location(response)
        sep = "&" if "?" in location else "?"
        done = registry.request("PUT", f"{location}{sep}digest={digest}",
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(len(blob))},
                                body=lambda: blob, ok=(201,), what=f"blob {digest}")
        done.close()
    return "uploaded"


# --------------------------------------------------------------------------- pull

@dataclass
class PullResult:
    """The outcome of a pull or import: ``path`` is set only when the bundle verified and
    was renamed into place; ``report`` is the verification's."""

    ref: str
    digest: str
    layer_digest: str
    size: int
    received: int
    resumed_from: int
    report: VerifyReport
    path: Path | None = None
    referrers: list[dict[str, Any]] = field(default_factory=list)
    #: Seconds spent moving the layer (its digest checked as it came) and verifying it.
    transfer_s: float = 0.0
    verify_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "digest": self.digest, "layer_digest": self.layer_digest,
                "size": self.size, "received_bytes": self.received,
                "resumed_from": self.resumed_from,
                "bundle": str(self.path) if self.path is not None else None,
                "signature_referrers": [r.get("digest") for r in self.referrers],
                "seconds": {"transfer": round(self.transfer_s, 3),
                            "verify": round(self.verify_s, 3)}}


def pull(ref_text: str, out: Path, trust: Path, connection: Connection, *,
         force: bool = False, limits: Limits | None = None,
         progress: ProgressFn | None = None) -> PullResult:
    """Pull the bundle ``ref_text`` names into ``out``, verified.

    The layer streams into ``.OUT.HEX16.partial`` beside ``out`` (continued with a Range
    request if an earlier pull left one), its digest checked on the way; the file is then
    verified against ``trust`` and renamed to ``out`` only if it passes. A failed check
    removes the partial file; an interrupted transfer keeps it.

    Raises:
        InputError: ``E_OUTPUT_EXISTS`` (``out`` exists and not ``force``), the pinned
            trust root's codes, ``E_OCI_ARTIFACT``, ``E_OCI_NOT_FOUND``, ``E_OCI_AUTH``.
        VerificationError: ``E_OCI_DIGEST``.
        UsageError: ``E_OCI_REF``, ``E_OCI_PLAIN_HTTP``.
        EnvironmentProblem: ``E_OCI_UNREACHABLE``, ``E_OCI_TLS``, ``E_OCI_REGISTRY``,
            ``E_WRITE``.
    """
    from oemkit.verify.bundle import Limits

    limits = limits or Limits()
    ref = Reference.parse(ref_text)
    _check_output(out, force)
    pinned = _pinned(trust)
    _make_parent(out)
    registry = connection.open(ref)
    try:
        manifest = registry.get_manifest(ref.repository, ref.target)
        layer = check_artifact(manifest.doc, f"{ref}", limits)
        partial = _partial(out, layer["digest"])
        before = partial.stat().st_size if partial.exists() else 0
        started = time.perf_counter()
        if layer["size"] >= OVERLAP_BYTES:
            received, early = _pull_overlapped(registry, ref.repository, layer, partial,
                                               pinned, limits, f"{ref}", progress)
        else:
            received = registry.download_blob(ref.repository, layer["digest"], layer["size"],
                                              partial, progress=progress)
            early = None
        moved = time.perf_counter()
        try:
            referrers = [r for r in registry.referrers(ref.repository, manifest.digest)
                         if r.get("artifactType") == SIGNATURE_TYPE]
        except OemkitError:  # the bundle carries its signatures; the referrers are extra
            referrers = []
    finally:
        registry.close()
    verifying = time.perf_counter()
    report = (_finish(partial, out, pinned, limits, f"{ref}", force) if early is None
              else _place(partial, out, early, force))
    result = PullResult(str(ref), manifest.digest, layer["digest"], layer["size"], received,
                        before if received < layer["size"] else 0, report,
                        referrers=referrers, transfer_s=moved - started)
    result.verify_s = time.perf_counter() - verifying
    if result.report.ok:
        result.path = out
    return result


def _finish(partial: Path, out: Path, pinned: TrustRoot, limits: Limits, name: str,
            force: bool) -> VerifyReport:
    """Verify the complete partial file; rename it to ``out`` if it passes, else remove
    it. Nothing is ever half-written under ``out``."""
    return _place(partial, out, _verify_file(partial, pinned, limits, name=name), force)


def _place(partial: Path, out: Path, report: VerifyReport, force: bool) -> VerifyReport:
    """Rename the verified partial file to ``out``, or remove it when ``report`` failed."""
    if not report.ok:
        with contextlib.suppress(OSError):
            partial.unlink()
        return report
    _check_output(out, force)
    try:
        os.chmod(partial, 0o644)
        os.replace(partial, out)
    except OSError as exc:
        raise _write_error(out.parent, exc) from None
    _fsync_dir(out.parent)
    return report


class _Growing:
    """A read-only file object over the partial file while the download writes it: a read
    waits until the bytes it asks for are written (``advance``), so the verifier walks the
    bundle right behind the transfer. The bytes after the payload (signatures, licenses,
    the end of the archive), which the verifier reads before the payload, are fetched with
    a Range request of their own (``tail``) as soon as it asks for them; once the transfer
    is complete the file's own bytes there must equal them (:meth:`tail_matches`)."""

    def __init__(self, path: Path, size: int,
                 fetch_tail: Callable[[int], bytes | None]) -> None:
        import threading

        self._file = path.open("rb")
        self._size, self._pos, self._written = size, 0, 0
        self._fetch_tail = fetch_tail
        self._tail: bytes | None = None
        self._tail_start = size
        self._failed = False
        self._cond = threading.Condition()

    # the downloader's side
    def advance(self, written: int) -> bool:
        with self._cond:
            self._written = written
            self._cond.notify_all()
        return True

    def fail(self) -> None:
        """No more bytes will come: a read still waiting raises OSError."""
        with self._cond:
            self._failed = True
            self._cond.notify_all()

    def tail_matches(self) -> bool:
        if self._tail is None:
            return True
        self._file.seek(self._tail_start)
        return self._file.read(len(self._tail) + 1) == self._tail

    def close(self) -> None:
        self._file.close()

    # the verifier's side (what oemkit.verify reads through)
    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        import io

        raise io.UnsupportedOperation("a growing file has no descriptor to share")

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, amount: int | None = -1) -> bytes:
        end = self._size if amount is None or amount < 0 else min(self._size,
                                                                    self._pos + amount)
        out = b""
        if self._pos < end and self._tail is None and self._pos > self._written \
                and self._size - self._pos <= TAIL_BYTES:
            self._tail = self._fetch_tail(self._pos)
            if self._tail is not None:
                self._tail_start = self._pos
        if self._pos < min(end, self._tail_start):
            upto = min(end, self._tail_start)
            with self._cond:
                while self._written < upto and not self._failed:
                    self._cond.wait()
                if self._written < upto:
                    raise OSError("the transfer stopped before these bytes arrived")
            self._file.seek(self._pos)
            out = self._file.read(upto - self._pos)
            self._pos += len(out)
        if self._tail is not None and self._tail_start <= self._pos < end:
            out += self._tail[self._pos - self._tail_start:end - self._tail_start]
            self._pos = end
        return out


#: The most bytes after the payload a pull fetches ahead (signatures and licenses: a few
#: hundred KiB for a real bundle); a bundle with more is verified after its transfer.
TAIL_BYTES = 16 << 20


def _pull_overlapped(registry: Registry, repository: str, layer: dict[str, Any],
                     partial: Path, pinned: TrustRoot, limits: Limits, name: str,
                     progress: ProgressFn | None) -> tuple[int, VerifyReport]:
    """Transfer the layer and verify the bundle at the same time (a large layer: the two
    passes would otherwise add up): the verifier reads the partial file through a
    :class:`_Growing` view. The report counts only if the layer's digest then matched
    and the bytes it read ahead are the file's own; otherwise this raises as the
    sequential path does (``E_OCI_DIGEST``, ``E_OCI_UNREACHABLE``)."""
    import threading

    from oemkit.verify.bundle import verify_open_bundle

    digest, size = layer["digest"], layer["size"]
    helper = registry.clone()

    def tail(start: int) -> bytes | None:
        try:
            return helper.blob_range(repository, digest, start, size)
        except OemkitError:
            return None

    try:
        partial.touch()
    except OSError as exc:
        raise _write_error(partial.parent, exc) from None
    view = _Growing(partial, size, tail)
    outcome: dict[str, Any] = {}

    def verify() -> None:
        try:
            outcome["report"] = verify_open_bundle(
                view, pinned, name=name, limits=limits)  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised below when the transfer succeeded
            outcome["error"] = exc

    worker = threading.Thread(target=verify, name="oemkit-verify", daemon=True)
    worker.start()
    try:  # a "no" from the verifier still waits for the digest: E_OCI_DIGEST comes first
        received = registry.download_blob(repository, digest, size, partial,
                                          progress=progress, written=view.advance)
    except BaseException:
        view.fail()
        worker.join()
        view.close()
        helper.close()
        raise
    view.fail()  # nothing more will come: a read still waiting ends
    worker.join()
    matches = view.tail_matches()
    view.close()
    helper.close()
    report = outcome.get("report")
    if report is None:
        raise outcome["error"]
    if not matches:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise VerificationError(
            "E_OCI_DIGEST", f"the end of the layer {registry.host} sent for a Range request "
            "is not the end of the layer it sent whole", check="layer digest",
            expected=digest, hint="the registry answers inconsistently; nothing was written")
    return received, report


# --------------------------------------------------------------------------- the layout

@dataclass(frozen=True)
class ExportResult:
    layout: Path
    tag: str
    digest: str
    blobs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"layout": str(self.layout), "tag": self.tag, "digest": self.digest,
                "blobs": list(self.blobs), "skopeo": f"oci:{self.layout}:{self.tag}"}


def export(bundle: Path, layout: Path, *, tag: str | None = None,
           limits: Limits | None = None, progress: ProgressFn | None = None) -> ExportResult:
    """Write the artifact of ``bundle`` into the OCI image layout ``layout`` (created, or
    added to when it already is one), tagged ``tag`` (default: the bundle's version), with
    its signature referrers; ``skopeo copy oci:LAYOUT:TAG docker://...`` carries it.

    Raises:
        InputError: ``E_OCI_LAYOUT`` (``layout`` is a file, or a non-empty directory that
            is not an OCI layout; a broken ``index.json``).
        UsageError: ``E_OCI_REF`` (a tag outside the OCI grammar).
        EnvironmentProblem: ``E_WRITE``.
        VerificationError: the codes of :func:`describe`.
    """
    from oemkit._fs import atomic_output

    artifact = describe(bundle, limits=limits)
    tag = tag or artifact.info.manifest.version
    _check_tag(tag)
    index = _open_layout(layout, create=True)
    blobs = layout / "blobs" / "sha256"
    try:
        blobs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(layout, exc) from None
    written = []
    layer_path = blobs / artifact.layer["digest"][7:]
    if not _blob_ok(layer_path, artifact.layer["size"]):
        with atomic_output(layer_path) as handle, bundle.open("rb") as src:
            _copy(src, handle, progress)
        written.append(artifact.layer["digest"])
    small = [(EMPTY_DATA, None), (artifact.manifest, None)]
    small += [(blob, None) for _, blob, _ in artifact.signatures]
    small += [(manifest, None) for _, _, manifest in artifact.signatures]
    for data, _ in small:
        path = blobs / sha256_digest(data)[7:]
        if not _blob_ok(path, len(data)):
            with atomic_output(path) as handle:
                handle.write(data)
            written.append(sha256_digest(data))
    manifests = [m for m in index.get("manifests", []) if isinstance(m, dict)
                 and (m.get("annotations") or {}).get(REF_NAME) != tag]
    entries = [{**artifact.descriptor, "annotations": {REF_NAME: tag}}]
    for _, _, manifest in artifact.signatures:
        entries.append({"mediaType": MANIFEST_TYPE, "digest": sha256_digest(manifest),
                        "size": len(manifest), "artifactType": SIGNATURE_TYPE})
    known = {m.get("digest") for m in manifests}
    manifests += [e for e in entries if e["digest"] not in known or e is entries[0]]
    doc = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": manifests}
    with atomic_output(layout / "index.json") as handle:
        handle.write(json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")
    if not (layout / "oci-layout").is_file():
        with atomic_output(layout / "oci-layout") as handle:
            handle.write(json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
    return ExportResult(layout, tag, artifact.digest, tuple(written))


def import_layout(layout: Path, out: Path, trust: Path, *, tag: str | None = None,
                  force: bool = False, limits: Limits | None = None,
                  progress: ProgressFn | None = None) -> PullResult:
    """Copy the bundle of the layout's artifact ``tag`` (default: its only oemkit bundle)
    to ``out``, checked as a pull checks it: every blob against its digest, the bundle
    against ``trust``, renamed into place only when it verifies.

    Raises:
        InputError: ``E_OCI_LAYOUT`` (not a layout, no such tag, a blob missing),
            ``E_OCI_ARTIFACT`` (several bundles and no ``tag``, or not a bundle),
            ``E_OUTPUT_EXISTS``, the pinned trust root's codes.
        VerificationError: ``E_OCI_DIGEST``.
    """
    from oemkit.verify.bundle import Limits

    limits = limits or Limits()
    _check_output(out, force)
    pinned = _pinned(trust)
    _make_parent(out)
    index = _open_layout(layout, create=False)
    entries = [m for m in index.get("manifests", []) if isinstance(m, dict)]
    if tag is not None:
        chosen = [m for m in entries if (m.get("annotations") or {}).get(REF_NAME) == tag]
        if not chosen:
            raise InputError("E_OCI_LAYOUT", f"the layout {layout} has no image tagged "
                             f"{tag!r}", hint="list its tags: jq '.manifests[].annotations' "
                             f"{layout}/index.json")
    else:  # an entry's artifactType, else (older writers, skopeo) its manifest's
        chosen = [m for m in entries if m.get("artifactType") == ARTIFACT_TYPE
                  or ("artifactType" not in m and m.get("mediaType") == MANIFEST_TYPE
                      and _layout_artifact_type(layout, m) == ARTIFACT_TYPE)]
        if len(chosen) != 1:
            raise InputError("E_OCI_ARTIFACT", f"the layout {layout} holds {len(chosen)} "
                             "oemkit bundles", hint="name one with --tag")
    descriptor = chosen[0]
    digest = str(descriptor.get("digest", ""))
    data = _read_layout_blob(layout, digest, MAX_LAYOUT_MANIFEST)
    doc = parse_manifest(data, f"{layout} manifest {digest}")
    name = f"oci:{layout}:{tag or ''}".rstrip(":")
    layer = check_artifact(doc, name, limits)
    source = _blob_path(layout, layer["digest"])
    partial = _partial(out, layer["digest"])
    with contextlib.suppress(OSError):
        partial.unlink()
    hasher = hashlib.sha256()
    try:
        with source.open("rb") as src, partial.open("wb") as dst:
            size = _copy(src, dst, progress, hasher, limit=layer["size"] + 1)
            dst.flush()
            os.fsync(dst.fileno())
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise InputError("E_OCI_LAYOUT", f"the layout {layout} lacks blob {layer['digest']}",
                         hint="copy the whole layout directory again") from None
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise _write_error(out.parent, exc) from None
    actual = "sha256:" + hasher.hexdigest()
    if actual != layer["digest"] or size != layer["size"]:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise VerificationError(
            "E_OCI_DIGEST", f"the layer in {layout} is not the one its manifest names "
            f"({size} of {layer['size']} bytes, digest {actual})", check="layer digest",
            expected=layer["digest"], actual=actual,
            hint="the layout was damaged or altered; nothing was written. Export it again "
                 "from a verified bundle")
    report = _finish(partial, out, pinned, limits, name, force)
    result = PullResult(name, digest, layer["digest"], layer["size"], size, 0, report)
    if report.ok:
        result.path = out
    return result


MAX_LAYOUT_MANIFEST = 4 << 20
#: From this size on, push hashes the file while it sends it.
OVERLAP_BYTES = 64 << 20


def _open_layout(layout: Path, *, create: bool) -> dict[str, Any]:
    marker = layout / "oci-layout"
    if layout.exists() and not layout.is_dir():
        raise InputError("E_OCI_LAYOUT", f"{layout} is a file, not a layout directory",
                         hint="give a directory (it is created if missing)")
    if not marker.is_file():
        if create and (not layout.exists() or not any(layout.iterdir())):
            return {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
        raise InputError("E_OCI_LAYOUT", f"{layout} is not an OCI image layout (no "
                         "oci-layout file)" + (" and is not empty" if create else ""),
                         hint="choose an empty or new directory, or an existing layout")
    try:
        version = json.loads(marker.read_text(encoding="utf-8")).get("imageLayoutVersion")
        index = parse_manifest((layout / "index.json").read_bytes(), f"{layout}/index.json")
    except (OSError, ValueError, AttributeError, InputError) as exc:
        raise InputError("E_OCI_LAYOUT", f"{layout} is a broken OCI layout: {exc}",
                         hint="export again into a new directory") from None
    if version != LAYOUT_VERSION or not isinstance(index.get("manifests", []), list):
        raise InputError("E_OCI_LAYOUT", f"{layout} is a layout of version {version!r} "
                         "or has no manifest list", hint="export again into a new directory")
    return index


def _layout_artifact_type(layout: Path, entry: dict[str, Any]) -> str | None:
    try:
        doc = parse_manifest(_read_layout_blob(layout, str(entry.get("digest", "")),
                                               MAX_LAYOUT_MANIFEST), "a manifest")
    except OemkitError:
        return None
    kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
    return kind if isinstance(kind, str) else None


def _blob_path(layout: Path, digest: str) -> Path:
    if not digest.startswith("sha256:") or len(digest) != 71 or not all(
            c in "0123456789abcdef" for c in digest[7:]):
        raise InputError("E_OCI_LAYOUT", f"{layout} names a blob {digest!r}",
                         hint="only sha256 digests are supported")
    return layout / "blobs" / "sha256" / digest[7:]


def _read_layout_blob(layout: Path, digest: str, limit: int) -> bytes:
    path = _blob_path(layout, digest)
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError:
        raise InputError("E_OCI_LAYOUT", f"the layout {layout} lacks blob {digest}",
                         hint="copy the whole layout directory again") from None
    if len(data) > limit or sha256_digest(data) != digest:
        raise VerificationError(
            "E_OCI_DIGEST", f"blob {digest} in {layout} does not match its digest",
            check="manifest digest", expected=digest, actual=sha256_digest(data[:limit]),
            hint="the layout was damaged or altered; export it again")
    return data


def _blob_ok(path: Path, size: int) -> bool:
    """A blob already written by an earlier export (content-addressed: same name, same
    bytes; its size is checked, and import checks its digest)."""
    try:
        return path.stat().st_size == size
    except OSError:
        return False


# --------------------------------------------------------------------------- helpers

def _pinned(trust: Path) -> TrustRoot:
    from oemkit._fs import read_input
    from oemkit.verify.trust import load_pinned

    return load_pinned(read_input(trust, "trust root"))


def _verify_file(path: Path, pinned: TrustRoot, limits: Limits,
                 name: str | None = None) -> VerifyReport:
    from oemkit._fs import open_input
    from oemkit.verify.bundle import verify_open_bundle

    with open_input(path, "bundle") as handle:
        return verify_open_bundle(handle, pinned, name=name or str(path), limits=limits)


def _check_output(out: Path, force: bool) -> None:
    if out.is_dir() or out.is_symlink() or (out.exists() and not force):
        raise InputError("E_OUTPUT_EXISTS", f"{out} already exists",
                         hint="choose another --out, or pass --force to replace a file")


def _make_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(out.parent, exc) from None


def _check_tag(tag: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise UsageError("E_OCI_REF", f"{tag!r} is not an OCI tag",
                         hint="letters, digits, '_', '.', '-'; at most 128; not starting "
                              "with '.' or '-'")


def _upload_state_name(ref: Reference, bundle: Path) -> str:
    """The state file of an upload of this file (by identity: device, inode, size, mtime)
    to this repository."""
    st = bundle.stat()
    who = f"{ref.host}/{ref.repository}|{bundle.resolve()}|{st.st_dev}:{st.st_ino}:" \
          f"{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(who.encode()).hexdigest()[:32] + ".json"


def _partial(out: Path, digest: str) -> Path:
    return out.with_name(f".{out.name}.{digest[7:23]}.partial")


def _state_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "oemkit" / "oci-uploads"


def _file_digest(path: Path) -> tuple[str, int]:
    from oemkit._fs import open_input

    hasher = hashlib.sha256()
    with open_input(path, "bundle") as handle:
        size = 0
        while block := handle.read(1 << 20):
            hasher.update(block)
            size += len(block)
    return "sha256:" + hasher.hexdigest(), size


def _copy(src: Any, dst: Any, progress: ProgressFn | None, hasher: Any = None,
          limit: int | None = None) -> int:
    total = 0
    while block := src.read(1 << 20):
        dst.write(block)
        total += len(block)
        if hasher is not None:
            hasher.update(block)
        if progress:
            progress(len(block))
        if limit is not None and total >= limit:
            break
    return total


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_error(where: Path, exc: OSError) -> Exception:
    from oemkit.errors import EnvironmentProblem

    return EnvironmentProblem("E_WRITE", f"cannot write in {where}: {exc.strerror}",
                              hint="check that the directory exists and is writable")

