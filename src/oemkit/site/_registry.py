"""The registry side of ``oemkit oci``: references, credentials, and an OCI distribution
client that moves blobs in constant memory and resumes.

The session and the token flow are the ``oras`` SDK's (``oras.auth.TokenAuth`` answers a
``Bearer`` challenge with the credentials found here); the blob transfers are this module's
own, because the SDK's cannot carry a multi-GB layer (docs/FLEET.md, the registry section):
its monolithic upload reads the whole file into memory (``fd.read()``), its chunked upload
and its download cannot resume, its download checks no digest, and its retry decorator
sleeps for minutes on a registry that answers 500. Here a download hashes while it streams
and continues a partial file with an HTTP ``Range`` request; an upload skips a blob the
registry has (``HEAD``) and sends the rest in chunks (``PATCH`` with ``Content-Range``), each
streamed from the file, recording the upload's location so that the next run asks the
registry how far it got (``GET`` on the location: its ``Range`` header) and goes on from
there.

Every failure is a coded error: ``E_OCI_UNREACHABLE`` (connection refused, dropped, timed
out: run the command again to resume), ``E_OCI_TLS``, ``E_OCI_AUTH``, ``E_OCI_NOT_FOUND``,
``E_OCI_REGISTRY`` (a 5xx or an answer the protocol does not allow), ``E_OCI_DIGEST``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from oemkit.errors import EnvironmentProblem, InputError, UsageError, VerificationError

if TYPE_CHECKING:
    import requests

ProgressFn = Callable[[int], None]

#: The largest manifest or index read (the distribution spec suggests registries accept
#: at least 4 MiB; an oemkit artifact's is under 2 KiB).
MAX_MANIFEST_BYTES = 4 << 20
#: Bytes per upload chunk (one ``PATCH``): an interrupted push loses at most one.
CHUNK_BYTES = 64 << 20
#: Bytes per read and write while streaming.
BLOCK_BYTES = 1 << 20
#: Seconds to wait for a connection and between two reads: a dead registry is an error,
#: never a hang.
TIMEOUT_S = 60.0

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
_ACCEPT = ", ".join((MANIFEST_TYPE, INDEX_TYPE,
                     "application/vnd.docker.distribution.manifest.v2+json"))

# The distribution reference grammar (distribution/reference): host[:port]/path[:tag][@digest]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    r"^(?P<host>(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*"
    r"[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?)"
    rf"/(?P<repo>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    """``HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]``: the registry host is always named
    (a disconnected site has no default registry)."""

    host: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse a reference.

        Raises:
            UsageError: ``E_OCI_REF`` (not ``HOST/REPOSITORY[:TAG][@DIGEST]``, or neither
                a tag nor a digest).
        """
        match = _REFERENCE.match(text)
        if match is None or not ("." in match["host"] or ":" in match["host"]
                                 or match["host"] == "localhost"):
            raise UsageError(
                "E_OCI_REF", f"{text!r} is not a registry reference",
                hint="name the registry host: registry.example:5000/oemkit/example:0.3.0 "
                     "(repository in lower case; a tag, a @sha256: digest, or both)")
        if match["tag"] is None and match["digest"] is None:
            raise UsageError("E_OCI_REF", f"{text!r} names neither a tag nor a digest",
                             hint=f"add a tag: {text}:0.3.0, or a digest: {text}@sha256:...")
        return cls(match["host"], match["repo"], match["tag"], match["digest"])

    @property
    def target(self) -> str:
        """What a manifest request names: the digest when given, else the tag."""
        return self.digest or self.tag or ""

    @property
    def hostname(self) -> str:
        """The host without its port (and brackets)."""
        host = self.host
        if host.startswith("["):
            return host[1:host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    def __str__(self) -> str:
        out = f"{self.host}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def is_loopback(hostname: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- credentials

@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    #: Where they came from (a file, ``--username``, a credential helper), for messages.
    source: str


def auth_files() -> list[Path]:
    """The credential files, in the order Podman and Docker read them: ``$REGISTRY_AUTH_FILE``,
    ``${XDG_RUNTIME_DIR}/containers/auth.json``, ``$XDG_CONFIG_HOME/containers/auth.json``,
    then Docker's ``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``)."""
    env = os.environ
    paths: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    config_home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    paths.append(Path(config_home) / "containers" / "auth.json")
    docker = env.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    paths.append(Path(docker) / "config.json")
    return paths


def _auth_key(key: str) -> str:
    """An ``auths`` key as a registry host (and optional path): Docker writes
    ``https://host/v1/`` for some, Podman ``host/namespace`` for others."""
    key = re.sub(r"^https?://", "", key)
    return key.rstrip("/").removesuffix("/v1").removesuffix("/v2")


def find_credentials(ref: Reference, files: list[Path] | None = None) -> Credentials | None:
    """Credentials for ``ref`` from the first auth file that has an entry for its host (or
    a ``host/namespace`` prefix of its repository, the longest first), or from that file's
    credential helper (``credHelpers``, ``credsStore``: ``docker-credential-NAME get``).

    Raises:
        InputError: ``E_OCI_AUTH_FILE`` (a file that is not JSON, or an entry whose
            ``auth`` is not base64 of ``user:password``).
    """
    wanted = [f"{ref.host}/{'/'.join(ref.repository.split('/')[:n])}"
              for n in range(ref.repository.count("/") + 1, 0, -1)] + [ref.host]
    for path in auth_files() if files is None else files:
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise InputError("E_OCI_AUTH_FILE", f"cannot read {path}: {exc.strerror}",
                             hint="check the file's permissions") from None
        try:
            doc = json.loads(text)
            auths = {_auth_key(k): v for k, v in (doc.get("auths") or {}).items()}
        except (ValueError, AttributeError) as exc:
            raise InputError("E_OCI_AUTH_FILE", f"{path} is not a registry auth file: {exc}",
                             hint="fix or remove it ('podman login' / 'docker login' write "
                                  "it)") from None
        for key in wanted:
            entry = auths.get(key)
            if isinstance(entry, dict) and entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(
                        entry["auth"], validate=True).decode("utf-8").partition(":")
                except (ValueError, TypeError):
                    raise InputError("E_OCI_AUTH_FILE", f"the entry for {key} in {path} is "
                                     "not base64 of user:password",
                                     hint="log in again ('podman login HOST')") from None
                return Credentials(user, password, str(path))
        helper = (doc.get("credHelpers") or {}).get(ref.host) or doc.get("credsStore")
        if isinstance(helper, str) and helper:
            found = _from_helper(helper, ref.host)
            if found is not None:
                return found
    return None


def _from_helper(helper: str, host: str) -> Credentials | None:
    binary = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([binary, "get"], input=host.encode(), capture_output=True,
                              check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        doc = json.loads(proc.stdout)
        return Credentials(str(doc["Username"]), str(doc["Secret"]), binary)
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- the client

@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry sent it: its exact bytes, their digest, the
    media type, and the parsed document."""

    data: bytes
    digest: str
    media_type: str
    doc: dict[str, Any]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A manifest's JSON object.

    Raises:
        InputError: ``E_OCI_ARTIFACT`` (not a JSON object).
    """
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InputError("E_OCI_ARTIFACT", f"{where} is not JSON: {exc}",
                         hint="the reference does not name an OCI manifest") from None
    if not isinstance(doc, dict):
        raise InputError("E_OCI_ARTIFACT", f"{where} is not a JSON object",
                         hint="the reference does not name an OCI manifest")
    return doc


class Registry:
    """One registry host, over HTTPS (``ca_file``: the site's CA bundle) or, for a
    loopback host only, plain HTTP; ``credentials`` answer a ``Basic`` challenge and
    obtain a ``Bearer`` token (through ``oras``) for a token challenge."""

    def __init__(self, host: str, *, plain_http: bool = False, ca_file: Path | None = None,
                 credentials: Credentials | None = None, timeout: float = TIMEOUT_S) -> None:
        from oemkit._extras import require_oci

        require_oci(f"talking to the registry {host}")
        import requests
        from requests.adapters import HTTPAdapter

        self.host = host
        self.base = f"{'http' if plain_http else 'https'}://{host}"
        self.credentials = credentials
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = str(ca_file) if ca_file is not None else True
        self.session.trust_env = False  # no proxy from the environment inside an air gap
        self.session.mount("http://", HTTPAdapter(max_retries=0))
        self.session.mount("https://", HTTPAdapter(max_retries=0))
        self.session.headers["User-Agent"] = "oemkit"
        self._authorization: str | None = None
        self._plain_http = plain_http

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------ requests

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base + path

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                body: Callable[[], Any] | None = None, stream: bool = False,
                ok: tuple[int, ...] = (200,), what: str = "") -> requests.Response:
        """One request, authenticated on a 401 challenge and sent again (``body`` makes
        the body anew each time). A status outside ``ok`` is a coded error.

        Raises:
            EnvironmentProblem: ``E_OCI_UNREACHABLE``, ``E_OCI_TLS``, ``E_OCI_REGISTRY``.
            InputError: ``E_OCI_AUTH`` (401/403 after the credentials were offered),
                ``E_OCI_NOT_FOUND`` (404).
        """
        response = self._send(method, path, headers, body, stream)
        if response.status_code == 401 and self._authenticate(response):
            response.close()
            response = self._send(method, path, headers, body, stream)
        if response.status_code in ok:
            return response
        raise self._status_error(response, method, what or path)

    def _send(self, method: str, path: str, headers: dict[str, str] | None,
              body: Callable[[], Any] | None, stream: bool) -> requests.Response:
        import requests

        sent = dict(headers or {})
        if self._authorization is not None:
            sent["Authorization"] = self._authorization
        try:
            return self.session.request(method, self.url(path), headers=sent,
                                        data=body() if body is not None else None,
                                        stream=stream, timeout=self.timeout,
                                        allow_redirects=method in ("GET", "HEAD"))
        except requests.exceptions.SSLError as exc:
            raise EnvironmentProblem(
                "E_OCI_TLS", f"TLS with {self.host} failed: {_reason(exc)}",
                hint="give the site's CA bundle with --ca-file (plain HTTP only with "
                     "--plain-http to a loopback registry)") from None
        except requests.exceptions.RequestException as exc:
            raise unreachable(self.host, exc) from None

    def _authenticate(self, response: requests.Response) -> bool:
        """Set the Authorization for the challenge in ``response``; False if there is
        nothing new to offer (no credentials, or these were refused)."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self.credentials is None:
                return False
            token = base64.b64encode(
                f"{self.credentials.username}:{self.credentials.password}".encode()).decode()
            value = f"Basic {token}"
        elif scheme == "bearer":
            value = self._bearer(challenge) or ""
            if not value:
                return False
        else:
            return False
        if value == self._authorization:
            return False
        self._authorization = value
        return True

    def _bearer(self, challenge: str) -> str | None:
        """A token from the challenge's realm (the oras SDK's token flow), offering the
        credentials when there are some, anonymous otherwise."""
        import oras.auth
        import oras.auth.utils

        backend = oras.auth.get_auth_backend(
            "token", self.session, insecure=self._plain_http, tls_verify=self.session.verify)
        header = oras.auth.utils.parse_auth_header(challenge)
        import requests

        try:
            if self.credentials is not None:
                backend.set_basic_auth(self.credentials.username, self.credentials.password)
                token = backend.request_token(header)
            else:
                token = backend.request_anonymous_token(header)
        except requests.exceptions.RequestException as exc:
            raise unreachable(str(header.realm), exc) from None
        return f"Bearer {token}" if token else None

    def _status_error(self, response: requests.Response, method: str,
                      what: str) -> InputError | EnvironmentProblem:
        status = response.status_code
        detail = _oci_errors(response)
        response.close()
        said = f"{self.host} answered {status} to {method} {what}{detail}"
        if status in (401, 403):
            how = (f"the credentials from {self.credentials.source} were refused"
                   if self.credentials else "no credentials were found for it")
            return InputError(
                "E_OCI_AUTH", f"{said}: {how}",
                hint="log in ('podman login HOST' writes ${XDG_RUNTIME_DIR}/containers/"
                     "auth.json), point $REGISTRY_AUTH_FILE at an auth file, or give "
                     "--username with --password-stdin")
        if status == 404:
            return InputError("E_OCI_NOT_FOUND", f"{said}: not found",
                              hint="check the reference (host, repository, tag or digest)")
        return EnvironmentProblem(
            "E_OCI_REGISTRY", said,
            hint="the registry failed (5xx) or broke the protocol; check its logs and "
                 "run the same command again (a pull or push resumes)" if status >= 500 else
                 "the registry does not speak the OCI distribution protocol as expected; "
                 "check its version and logs")

    # ------------------------------------------------------------------ manifests

    def get_manifest(self, repository: str, target: str) -> Manifest:
        """The manifest ``target`` (a tag or a digest) names, its digest checked when
        ``target`` is one.

        Raises:
            VerificationError: ``E_OCI_DIGEST`` (the bytes are not the digest asked for).
            InputError: ``E_OCI_ARTIFACT`` (over 4 MiB, not JSON), and the codes of
                :meth:`request`.
        """
        response = self.request("GET", f"/v2/{repository}/manifests/{target}",
                                headers={"Accept": _ACCEPT}, stream=True,
                                what=f"manifest {repository}:{target}")
        with response:
            data = _read_bounded(response, MAX_MANIFEST_BYTES, f"manifest {target}", self.host)
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        digest = sha256_digest(data)
        if _DIGEST.match(target) and digest != target:
            raise VerificationError(
                "E_OCI_DIGEST", f"the manifest {self.host} sent for {target} has digest "
                f"{digest}", check="manifest digest", expected=target, actual=digest,
                hint="the registry's storage is damaged or it is not the registry you "
                     "think; do not use this artifact")
        doc = parse_manifest(data, f"manifest {repository}:{target}")
        return Manifest(data, digest, str(doc.get("mediaType") or media_type), doc)

    def put_manifest(self, repository: str, target: str, data: bytes,
                     media_type: str) -> requests.Response:
        """PUT a manifest (or index) under a tag or its digest."""
        response = self.request(
            "PUT", f"/v2/{repository}/manifests/{target}",
            headers={"Content-Type": media_type}, body=lambda: data, ok=(201, 200, 202),
            what=f"manifest {repository}:{target}")
        response.close()
        return response

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        """The descriptors of the manifests whose ``subject`` is ``digest``: the referrers
        API, or where the registry lacks it, the ``sha256-HEX`` tag's index (the OCI 1.1
        fallback that ORAS and cosign write)."""
        response = self._send("GET", f"/v2/{repository}/referrers/{digest}",
                              {"Accept": INDEX_TYPE}, None, True)
        if response.status_code == 401 and self._authenticate(response):
            response.close()
            response = self._send("GET", f"/v2/{repository}/referrers/{digest}",
                                  {"Accept": INDEX_TYPE}, None, True)
        with response:
            if (response.status_code == 200 and response.headers.get(
                    "Content-Type", "").startswith(INDEX_TYPE)):
                data = _read_bounded(response, MAX_MANIFEST_BYTES, "referrers", self.host)
                doc = parse_manifest(data, "the referrers index")
                return [m for m in doc.get("manifests", []) if isinstance(m, dict)]
        try:
            index = self.get_manifest(repository, fallback_tag(digest))
        except InputError as exc:
            if exc.code == "E_OCI_NOT_FOUND":
                return []
            raise
        return [m for m in index.doc.get("manifests", []) if isinstance(m, dict)]

    def add_referrer(self, repository: str, subject: str, descriptor: dict[str, Any],
                     response: requests.Response) -> str:
        """After a manifest with a ``subject`` was PUT (``response``): nothing more where
        the registry said it indexes referrers (``OCI-Subject``), else the descriptor is
        added to the fallback tag's index. Returns ``"api"`` or the fallback tag."""
        if response.headers.get("OCI-Subject") == subject:
            return "api"
        tag = fallback_tag(subject)
        try:
            current = self.get_manifest(repository, tag).doc
        except InputError as exc:
            if exc.code != "E_OCI_NOT_FOUND":
                raise
            current = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []}
        manifests = [m for m in current.get("manifests", []) if isinstance(m, dict)]
        if any(m.get("digest") == descriptor["digest"] for m in manifests):
            return tag
        index = {"schemaVersion": 2, "mediaType": INDEX_TYPE,
                 "manifests": [*manifests, descriptor]}
        self.put_manifest(repository, tag, canonical(index), INDEX_TYPE)
        return tag

    # ------------------------------------------------------------------ blobs

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob the registry has (``HEAD``), None when it has not."""
        try:
            response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}",
                                    what=f"blob {digest}")
        except InputError as exc:
            if exc.code == "E_OCI_NOT_FOUND":
                return None
            raise
        response.close()
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None

    def upload_blob(self, repository: str, path: Path, digest: str | Future[str], size: int,
                    *, state: Path | None = None, progress: ProgressFn | None = None,
                    chunk: int = CHUNK_BYTES) -> tuple[str, int]:
        """Upload the blob at ``path`` unless the registry has it. ``state``: a file that
        remembers an unfinished upload's location, so that a second run resumes it.

        ``digest`` may still be being computed (a future, for a large file: hashing and
        sending overlap); the registry is asked whether it has the blob (``HEAD``) as soon
        as the digest is known, and an upload already under way is then abandoned.

        Returns ``("present", bytes sent before the digest was known)``, or
        ``("uploaded", bytes sent now)`` (less than ``size`` when an earlier run's upload
        was resumed).

        Raises:
            The codes of :meth:`request`; ``E_OCI_REGISTRY`` (an upload the registry did
            not accept: a wrong offset, no Location).
        """
        future = digest if isinstance(digest, Future) else _known(digest)
        asked = False

        def present() -> bool:
            nonlocal asked
            if asked or not future.done():
                return False
            asked = True
            return self.blob_size(repository, future.result()) is not None

        if present():
            if progress:
                progress(size)
            return "present", 0
        location, offset = self._resume_upload(state)
        if location is None:
            response = self.request("POST", f"/v2/{repository}/blobs/uploads/",
                                    headers={"Content-Length": "0"}, ok=(202,),
                                    what="a blob upload")
            response.close()
            location, offset = self._location(response), 0
        if progress and offset:
            progress(offset)
        sent = 0
        with path.open("rb") as handle:
            while offset < size:
                if present():
                    self._abandon(location, state)
                    return "present", sent
                length = min(chunk, size - offset)
                start = offset
                response = self.request(
                    "PATCH", location,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{start}-{start + length - 1}",
                             "Content-Length": str(length)},
                    body=lambda start=start, length=length: _Slice(  # type: ignore[misc]
                        handle, start, length, progress),
                    ok=(202,), what=f"a blob upload, bytes {start}-")
                response.close()
                location = self._location(response)
                offset += length
                sent += length
                _save_upload(state, location, offset)
        final = future.result()
        response = self.request("PUT", _with_digest(location, final),
                                headers={"Content-Length": "0"}, ok=(201,),
                                what=f"the end of blob {final}")
        response.close()
        if state is not None:
            with contextlib.suppress(OSError):
                state.unlink()
        return "uploaded", sent

    def _abandon(self, location: str, state: Path | None) -> None:
        """Cancel an upload the registry turned out not to need (best effort)."""
        with contextlib.suppress(InputError, EnvironmentProblem):
            self.request("DELETE", location, ok=(204, 200, 202, 404),
                         what="an unneeded upload").close()
        if state is not None:
            with contextlib.suppress(OSError):
                state.unlink()

    def _resume_upload(self, state: Path | None) -> tuple[str | None, int]:
        """An earlier run's upload location and how far the registry has it (``GET`` on
        the location answers ``Range: 0-LAST``), or ``(None, 0)``."""
        if state is None:
            return None, 0
        try:
            saved = json.loads(state.read_text(encoding="utf-8"))
            location = str(saved["location"])
        except (OSError, ValueError, KeyError, TypeError):
            return None, 0
        if not location.startswith(self.base):
            return None, 0
        try:
            response = self.request("GET", location, ok=(204,), what="an upload's status")
        except (InputError, EnvironmentProblem):
            return None, 0
        response.close()
        match = re.match(r"^(?:bytes=)?0-(\d+)$", response.headers.get("Range", ""))
        offset = int(match[1]) + 1 if match else 0
        if not match and response.headers.get("Range") not in (None, ""):
            return None, 0
        return self._location(response, location), offset

    def _location(self, response: requests.Response, default: str | None = None) -> str:
        location = response.headers.get("Location") or default
        if not location:
            raise EnvironmentProblem(
                "E_OCI_REGISTRY", f"{self.host} started a blob upload without a Location",
                hint="the registry does not speak the OCI distribution protocol")
        if location.startswith("/"):
            location = self.base + location
        return location

    def clone(self) -> Registry:
        """A second client for the same registry (its own connections, for a request
        alongside a running one), with the authorization already obtained."""
        other = Registry(self.host, plain_http=self._plain_http, credentials=self.credentials,
                         timeout=self.timeout,
                         ca_file=None if self.session.verify is True
                         else Path(str(self.session.verify)))
        other._authorization = self._authorization
        return other

    def blob_range(self, repository: str, digest: str, start: int, end: int) -> bytes | None:
        """Bytes ``start`` to ``end`` (exclusive) of a blob, or None where the registry
        does not answer the Range request with exactly them."""
        response = self.request("GET", f"/v2/{repository}/blobs/{digest}",
                                headers={"Range": f"bytes={start}-{end - 1}"}, stream=True,
                                ok=(200, 206), what=f"blob {digest} bytes {start}-")
        with response:
            if response.status_code != 206 or not response.headers.get(
                    "Content-Range", "").startswith(f"bytes {start}-{end - 1}/"):
                return None
            data = _read_bounded(response, end - start, f"blob {digest}", self.host)
        return data if len(data) == end - start else None

    def download_blob(self, repository: str, digest: str, size: int, out: Path, *,
                      progress: ProgressFn | None = None,
                      written: Callable[[int], object] | None = None) -> int:
        """Stream a blob into ``out`` (a partial file: continued from its length with a
        ``Range`` request, or from zero where the registry ignores it), hashing as it
        goes; returns the bytes received now. The file is removed if its digest or size
        is not the descriptor's.

        ``written(offset)``, when given, is told after each block how many bytes of the
        file are written and flushed (a reader of the growing file follows it).

        Raises:
            VerificationError: ``E_OCI_DIGEST``.
            EnvironmentProblem: ``E_OCI_UNREACHABLE`` (interrupted: the partial file
                stays, the next run resumes it); the codes of :meth:`request`.
        """
        import requests
        import urllib3

        hasher = hashlib.sha256()
        offset = out.stat().st_size if out.exists() else 0
        if offset > size:
            offset = 0
        try:
            opened = out.open("r+b" if offset else "wb")
        except OSError as exc:
            raise write_failed(out, exc) from None
        with opened as handle:
            if offset:
                _hash_prefix(handle, offset, hasher)
            headers = {"Range": f"bytes={offset}-"} if 0 < offset < size else {}
            received = 0
            if offset < size:
                response = self.request("GET", f"/v2/{repository}/blobs/{digest}",
                                        headers=headers, stream=True, ok=(200, 206),
                                        what=f"blob {digest}")
                with response:
                    if response.status_code == 200 and offset:  # Range ignored: start over
                        offset = 0
                        hasher = hashlib.sha256()
                    elif response.status_code == 206 and not response.headers.get(
                            "Content-Range", "").startswith(f"bytes {offset}-"):
                        raise EnvironmentProblem(
                            "E_OCI_REGISTRY", f"{self.host} answered a Range request for "
                            f"bytes {offset}- with {response.headers.get('Content-Range')}",
                            hint="the registry's range support is broken; delete the "
                                 f"partial file {out} and pull again")
                    handle.seek(offset)
                    handle.truncate()
                    if written is not None:  # only now: a Range ignored starts from zero
                        written(offset)
                    if progress and offset:
                        progress(offset)
                    try:
                        for block in _blocks(response):
                            if offset + received + len(block) > size:
                                break  # more than the descriptor says: the digest decides
                            try:
                                handle.write(block)
                            except OSError as exc:
                                raise write_failed(out, exc) from None
                            hasher.update(block)
                            received += len(block)
                            if progress:
                                progress(len(block))
                            if written is not None:
                                handle.flush()
                                written(offset + received)
                    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
                            OSError) as exc:
                        handle.flush()
                        raise unreachable(
                            self.host, exc, f"; {offset + received} of {size} bytes of "
                            f"{digest} are in {out}, and the next pull continues from "
                            "there") from None
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as exc:
                raise write_failed(out, exc) from None
            total = handle.tell()
            if written is not None:
                written(total)
        actual = "sha256:" + hasher.hexdigest()
        if total != size or actual != digest:
            with contextlib.suppress(OSError):
                out.unlink()
            raise VerificationError(
                "E_OCI_DIGEST", f"the layer {self.host} sent is not the one its manifest "
                f"names ({total} of {size} bytes, digest {actual})", check="layer digest",
                expected=digest, actual=actual,
                hint="the registry's copy is damaged or was altered; nothing was written. "
                     "Push the bundle again from a verified copy")
        return received


def _known(value: str) -> Future[str]:
    future: Future[str] = Future()
    future.set_result(value)
    return future


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes oemkit writes for a manifest or index: sorted keys, no spaces, so the
    same bundle always gives the same manifest digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def fallback_tag(digest: str) -> str:
    """The OCI 1.1 referrers fallback tag of a subject: ``sha256-HEX``."""
    return digest.replace(":", "-", 1)


def write_failed(path: Path, exc: OSError) -> EnvironmentProblem:
    return EnvironmentProblem("E_WRITE", f"cannot write {path}: {exc.strerror or exc}",
                              hint="free space or fix the permissions there, or choose "
                                   "another --out")


def unreachable(host: str, exc: BaseException, more: str = "") -> EnvironmentProblem:
    return EnvironmentProblem(
        "E_OCI_UNREACHABLE", f"the connection to {host} failed: {_reason(exc)}{more}",
        hint="check that the registry runs and is reachable, then run the same command "
             "again: a pull continues its partial file, a push skips the blobs the "
             "registry has and resumes its upload")


#: What a requests/urllib3 error's long text says, in a few words.
_REASONS = (re.compile(r"\[SSL: [A-Z_]+\] ([^(\]]*?)\s*\("),
            re.compile(r"\[Errno -?\d+\] ([^'\")]*)"),
            re.compile(r"(Connection broken: [A-Za-z]+\([^)]*\))"),
            re.compile(r"(Read timed out)"),
            re.compile(r"(Connection aborted)"))


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for pattern in _REASONS:
        match = pattern.search(text)
        if match:
            return match[1].strip()
    return text[:300]


def _oci_errors(response: requests.Response) -> str:
    """The OCI error document's messages (``{"errors": [{"code", "message"}]}``), if any."""
    try:
        data = response.raw.read(64 << 10, decode_content=True) if response.raw else b""
        doc = json.loads(data)
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
                 for e in doc.get("errors", []) if isinstance(e, dict)]
    except (ValueError, AttributeError, OSError, TypeError):
        return ""
    return f" ({'; '.join(parts)[:300]})" if parts else ""


def _read_bounded(response: requests.Response, limit: int, what: str, host: str) -> bytes:
    import requests

    chunks: list[bytes] = []
    total = 0
    try:
        for block in response.iter_content(64 << 10):
            total += len(block)
            if total > limit:
                raise InputError("E_OCI_ARTIFACT", f"{what} from {host} is larger than "
                                 f"{limit} bytes", hint="this is not an oemkit artifact")
            chunks.append(block)
    except requests.exceptions.RequestException as exc:
        raise unreachable(host, exc) from None
    return b"".join(chunks)


def _blocks(response: requests.Response) -> Iterator[bytes]:
    """The body in blocks of at most 1 MiB, each what one read of the socket gave
    (urllib3's ``read1``): a connection that drops mid-body loses nothing already
    received, so the partial file holds every byte that arrived."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:  # urllib3 1.x
        yield from response.iter_content(BLOCK_BYTES)
        return
    while block := read1(BLOCK_BYTES):
        yield block


def _hash_prefix(handle: BinaryIO, size: int, hasher: Any) -> None:
    handle.seek(0)
    left = size
    while left:
        block = handle.read(min(BLOCK_BYTES, left))
        if not block:
            break
        hasher.update(block)
        left -= len(block)


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _save_upload(state: Path | None, location: str, offset: int) -> None:
    if state is None:
        return
    with contextlib.suppress(OSError):
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.with_name(state.name + ".tmp")
        tmp.write_text(json.dumps({"location": location, "offset": offset}), encoding="utf-8")
        os.replace(tmp, state)


class _Slice:
    """``length`` bytes of ``handle`` from ``start``, as a request body: streamed (reads of
    1 MiB), its length known (so the request has a Content-Length), counted for progress."""

    def __init__(self, handle: BinaryIO, start: int, length: int,
                 progress: ProgressFn | None) -> None:
        self._handle, self._left, self._progress = handle, length, progress
        self._length = length
        handle.seek(start)

    def __len__(self) -> int:
        return self._length

    def read(self, amount: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if amount is None or amount < 0 else max(amount, BLOCK_BYTES)
        block = self._handle.read(min(want, self._left, BLOCK_BYTES))
        self._left -= len(block)
        if self._progress and block:
            self._progress(len(block))
        return block

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(BLOCK_BYTES):
            yield block
