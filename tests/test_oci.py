"""`oemkit oci`: a bundle through a real registry (Debian's docker-registry, the CNCF
distribution registry, on 127.0.0.1) and OCI image layouts, checked by clients nobody here
wrote: skopeo (inspect, copy) and the oras SDK. Damage, a wrong digest, a connection cut
mid-layer, an upload cut mid-blob, a registry answering 500, auth and TLS each have a test.
Servers bind 127.0.0.1 on a free port and are stopped by their fixture."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers import read_members, write_members
from oemkit.cli import app
from oemkit.errors import EnvironmentProblem, InputError, UsageError, VerificationError
from oemkit.site import oci
from oemkit.site._registry import Reference, find_credentials

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]

# .ci/run installs docker-registry and skopeo (Debian); without them these tests skip.
REGISTRY_BIN = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
needs_registry = pytest.mark.skipif(REGISTRY_BIN is None, reason="Debian's docker-registry "
                                    "is not installed (.ci/run installs it)")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="Debian's skopeo is not installed "
                                  "(.ci/run installs it)")
PLAIN = oci.Connection(plain_http=True)
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch) -> Path:
    """A fresh home: no credentials or upload state of the user running the suite."""
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG", "XDG_CONFIG_HOME",
                 "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(path))
    return path


# --------------------------------------------------------------------------- the registry

class RegistryProcess:
    """``docker-registry serve CONFIG`` with filesystem storage under ``root``."""

    def __init__(self, root: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.yml"
        lines = ["version: 0.1", "log:", "  level: error", "storage:", "  filesystem:",
                 f"    rootdirectory: {root / 'storage'}", "  delete:", "    enabled: true",
                 "http:", f"  addr: {self.host}"]
        if tls:
            lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
        config.write_text("\n".join(lines) + "\n")
        self.log = (root / "registry.log").open("wb")
        self.proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((root / "registry.log").read_text()) from None
                time.sleep(0.05)

    def blob_file(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return (self.root / "storage" / "docker" / "registry" / "v2" / "blobs" / "sha256"
                / hexd[:2] / hexd / "data")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[RegistryProcess]:
    if REGISTRY_BIN is None:
        pytest.skip("Debian's docker-registry is not installed (.ci/run installs it)")
    reg = RegistryProcess(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


def skopeo_raw(ref: str) -> dict[str, Any]:
    out = subprocess.run([str(SKOPEO), "inspect", "--tls-verify=false", "--raw",
                          f"docker://{ref}"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def cli(*args: object, input: str | None = None) -> Any:
    result = runner.invoke(app, [str(a) for a in args], input=input)
    assert "Traceback" not in result.output, result.output
    return result


def cli_json(*args: object, input: str | None = None) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, [str(a) for a in args] + ["--json"], input=input)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout)


# --------------------------------------------------------------------------- push and pull

@needs_skopeo
def test_push_writes_an_oci_artifact_skopeo_reads(registry, signed_bundle, trust_file):
    ref = f"{registry.host}/oemkit/example:0.2.0"
    code, doc = cli_json("oci", "push", signed_bundle, ref, "--plain-http",
                         "--trust", trust_file)
    assert code == 0 and doc["ok"] and doc["verified"]
    manifest = skopeo_raw(ref)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == oci.ARTIFACT_TYPE
    assert manifest["config"] == oci.EMPTY
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == oci.LAYER_TYPE
    assert layer["annotations"]["org.opencontainers.image.title"] == signed_bundle.name
    assert layer["size"] == signed_bundle.stat().st_size
    digest = layer["digest"]
    assert registry.blob_file(digest).read_bytes() == signed_bundle.read_bytes()
    assert manifest["annotations"]["org.opencontainers.image.version"] == "0.2.0"

    # the signatures as referrers: the OCI 1.1 fallback tag (this registry has no API)
    index = skopeo_raw(f"{registry.host}/oemkit/example:{doc['digest'].replace(':', '-')}")
    (referrer,) = index["manifests"]
    assert referrer["artifactType"] == oci.SIGNATURE_TYPE
    assert referrer["digest"] == doc["referrers"][0]
    sig = skopeo_raw(f"{registry.host}/oemkit/example@{referrer['digest']}")
    assert sig["subject"]["digest"] == doc["digest"]
    (sig_layer,) = sig["layers"]
    carried = dict(read_members(signed_bundle))
    (name,) = [n for n in carried if n.startswith("signatures/")]
    assert registry.blob_file(sig_layer["digest"]).read_bytes() == carried[name]

    # pushed again: nothing sent, the same (deterministic) digest
    code, again = cli_json("oci", "push", signed_bundle, ref, "--plain-http")
    assert code == 0 and again["digest"] == doc["digest"] and again["sent_bytes"] == 0
    assert set(again["blobs"].values()) == {"present"}


def test_pull_verifies_then_writes(registry, signed_bundle, trust_file, tmp_path):
    ref = f"{registry.host}/oemkit/pull:1"
    oci.push(signed_bundle, ref, PLAIN)
    out = tmp_path / "got" / "example.oemb"  # the directory is made
    code, doc = cli_json("oci", "pull", ref, "--out", out, "--trust", trust_file,
                         "--plain-http")
    assert code == 0 and doc["ok"] and doc["bundle"] == str(out)
    assert doc["report"]["ok"] and doc["signature_referrers"]
    assert out.read_bytes() == signed_bundle.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["example.oemb"]
    # by digest too; an existing output is refused without --force
    by_digest = f"{registry.host}/oemkit/pull@{doc['digest']}"
    code, doc = cli_json("oci", "pull", by_digest, "--out", out, "--trust", trust_file,
                         "--plain-http")
    assert code == 3 and doc["error"]["code"] == "E_OUTPUT_EXISTS"
    code, doc = cli_json("oci", "pull", by_digest, "--out", out, "--trust", trust_file,
                         "--plain-http", "--force")
    assert code == 0 and doc["ok"]


def test_the_oras_sdk_pulls_what_oemkit_pushed(registry, signed_bundle, tmp_path):
    import oras.provider

    ref = f"{registry.host}/oemkit/sdk:1"
    result = oci.push(signed_bundle, ref, PLAIN)
    client = oras.provider.Registry(hostname=registry.host, insecure=True)
    files = client.pull(target=ref, outdir=str(tmp_path / "oras"))
    assert [Path(f).name for f in files] == [signed_bundle.name]
    assert Path(files[0]).read_bytes() == signed_bundle.read_bytes()
    referrers = client.get_manifest(f"{registry.host}/oemkit/sdk:"
                                    f"{result.digest.replace(':', '-')}")
    assert [m["artifactType"] for m in referrers["manifests"]] == [oci.SIGNATURE_TYPE]


@needs_skopeo
def test_export_skopeo_copy_and_pull_back(registry, signed_bundle, trust_file, tmp_path):
    layout = tmp_path / "layout"
    code, doc = cli_json("oci", "export", signed_bundle, layout)
    assert code == 0 and doc["tag"] == "0.2.0"
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    ref = f"{registry.host}/oemkit/jump:0.2.0"
    subprocess.run([str(SKOPEO), "copy", "--dest-tls-verify=false", f"oci:{layout}:0.2.0",
                    f"docker://{ref}"], check=True, capture_output=True)
    out = tmp_path / "back.oemb"
    result = oci.pull(ref, out, trust_file, PLAIN)
    assert result.report.ok and out.read_bytes() == signed_bundle.read_bytes()
    # and back into a layout with skopeo, then imported
    mirror = tmp_path / "mirror"
    subprocess.run([str(SKOPEO), "copy", "--src-tls-verify=false", f"docker://{ref}",
                    f"oci:{mirror}:0.2.0"], check=True, capture_output=True)
    code, doc = cli_json("oci", "import", mirror, "--out", tmp_path / "imported.oemb",
                         "--trust", trust_file)
    assert code == 0 and doc["ok"]
    assert (tmp_path / "imported.oemb").read_bytes() == signed_bundle.read_bytes()


def test_export_is_deterministic_and_adds_to_a_layout(signed_bundle, tmp_path):
    a = oci.export(signed_bundle, tmp_path / "a")
    b = oci.export(signed_bundle, tmp_path / "b", tag="stable")
    assert a.digest == b.digest
    again = oci.export(signed_bundle, tmp_path / "a", tag="stable")
    assert again.blobs == ()  # every blob already there
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    tags = sorted(m["annotations"][oci.REF_NAME] for m in index["manifests"]
                  if "annotations" in m)
    assert tags == ["0.2.0", "stable"]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    with pytest.raises(InputError) as info:
        oci.export(signed_bundle, tmp_path / "junk")
    assert info.value.code == "E_OCI_LAYOUT"


# --------------------------------------------------------------------------- damage

def test_a_tampered_layer_in_the_registry_writes_nothing(registry, signed_bundle, trust_file,
                                                         tmp_path):
    ref = f"{registry.host}/oemkit/tampered:1"
    result = oci.push(signed_bundle, ref, PLAIN)
    layer_digest = next(iter(result.blobs))  # the layer is pushed first
    blob = registry.blob_file(layer_digest)
    good = blob.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    out = tmp_path / "out.oemb"
    try:
        code, doc = cli_json("oci", "pull", ref, "--out", out, "--trust", trust_file,
                             "--plain-http")
    finally:  # the blob store is shared by every repository of the module's registry
        blob.write_bytes(good)
    assert code == 1 and doc["error"]["code"] == "E_OCI_DIGEST"
    assert doc["error"]["expected"] == layer_digest
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([signed_bundle.name,
                                                                 "trust-root.json"])


def test_a_bundle_that_fails_verification_is_never_written(registry, signed_bundle,
                                                            trust_file, tmp_path):
    """Digests all consistent (the bundle was altered before it was pushed): the signature
    check is what refuses it, after the transfer and before the rename."""
    members = read_members(signed_bundle)
    payload = dict(members)["payload.tar.zst"]
    changed = bytearray(payload)
    changed[-100] ^= 0x01
    altered = write_members(tmp_path / "altered.oemb", [
        (n, bytes(changed) if n == "payload.tar.zst" else d) for n, d in members])
    ref = f"{registry.host}/oemkit/altered:1"
    code, doc = cli_json("oci", "push", altered, ref, "--plain-http", "--trust", trust_file)
    assert code == 1 and doc["error"]["code"].startswith("E_PAYLOAD")
    oci.push(altered, ref, PLAIN)  # without --trust it goes up
    out = tmp_path / "dl" / "out.oemb"
    out.parent.mkdir()
    result = cli("oci", "pull", ref, "--out", out, "--trust", trust_file, "--plain-http")
    assert result.exit_code == 1 and "REJECTED" in result.output
    assert list(out.parent.iterdir()) == []


def test_a_tampered_layout_is_refused(signed_bundle, trust_file, tmp_path):
    layout = tmp_path / "layout"
    exported = oci.export(signed_bundle, layout)
    manifest = json.loads((layout / "blobs" / "sha256" / exported.digest[7:]).read_bytes())
    blob = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0x01
    blob.write_bytes(bytes(data))
    out = tmp_path / "out" / "bundle.oemb"
    out.parent.mkdir()
    code, doc = cli_json("oci", "import", layout, "--out", out, "--trust", trust_file)
    assert code == 1 and doc["error"]["code"] == "E_OCI_DIGEST"
    assert list(out.parent.iterdir()) == []


def test_a_wrong_digest_is_refused(registry, signed_bundle, trust_file, tmp_path):
    ref = f"{registry.host}/oemkit/wrong:1"
    oci.push(signed_bundle, ref, PLAIN)
    code, doc = cli_json("oci", "pull", f"{registry.host}/oemkit/wrong@sha256:{'0' * 64}",
                         "--out", tmp_path / "x.oemb", "--trust", trust_file, "--plain-http")
    assert code == 3 and doc["error"]["code"] == "E_OCI_NOT_FOUND"
    # a registry that answers a digest with other bytes
    with Stub("wrong-digest") as stub, pytest.raises(VerificationError) as info:
        oci.pull(f"{stub.host}/oemkit/wrong@sha256:{'1' * 64}", tmp_path / "y.oemb",
                 trust_file, PLAIN)
    assert info.value.code == "E_OCI_DIGEST" and info.value.expected == f"sha256:{'1' * 64}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["trust-root.json",
                                                                 signed_bundle.name])


def test_not_a_bundle_artifact(tmp_path, trust_file):
    with Stub("not-a-bundle") as stub, pytest.raises(InputError) as info:
        oci.pull(f"{stub.host}/some/image:1", tmp_path / "y.oemb", trust_file, PLAIN)
    assert info.value.code == "E_OCI_ARTIFACT"


# --------------------------------------------------------------------------- resume

class Proxy:
    """An HTTP proxy in front of the registry that records every request and, when told,
    cuts the connection ``cut_after`` bytes into a blob's body, or drops the
    ``drop_patch``-th PATCH without answering."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.cut_after: int | None = None
        self.drop_patch: int | None = None
        self.patches = 0
        #: hold a whole-blob answer at this byte until a Range request for the blob came
        self.hold_at: int | None = None
        self.range_seen = threading.Event()
        #: flip a byte of every Range answer
        self.corrupt_ranges = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self.server.proxy = self  # type: ignore[attr-defined]
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        proxy: Proxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        proxy.log.append((self.command, self.path, dict(self.headers)))
        if "Range" in self.headers:
            proxy.range_seen.set()
        if self.command == "PATCH":
            proxy.patches += 1
            if proxy.drop_patch == proxy.patches:
                self.close_connection = True
                return
        conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", resp.getheader("Content-Length", "0")
                         if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if proxy.corrupt_ranges and "Range" in self.headers and len(data) > 700:
            data = data[:600] + bytes([data[600] ^ 1]) + data[601:]
        hold = proxy.hold_at
        if hold is not None and self.command == "GET" and "/blobs/sha256:" in self.path \
                and "Range" not in self.headers and len(data) > hold:
            self.wfile.write(data[:hold])
            self.wfile.flush()
            proxy.range_seen.wait(60)  # the verifier asks for the tail while this waits
            self.wfile.write(data[hold:])
            return
        cut = proxy.cut_after
        if cut is not None and self.command == "GET" and "/blobs/sha256:" in self.path \
                and len(data) > cut:
            proxy.cut_after = None  # once
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward


def test_an_interrupted_pull_resumes_with_a_range_request(registry, signed_bundle, trust_file,
                                                           tmp_path):
    oci.push(signed_bundle, f"{registry.host}/oemkit/resume:1", PLAIN)
    out = tmp_path / "out.oemb"
    with Proxy(registry.port) as proxy:
        ref = f"{proxy.host}/oemkit/resume:1"
        proxy.cut_after = 10_000
        code, doc = cli_json("oci", "pull", ref, "--out", out, "--trust", trust_file,
                             "--plain-http")
        assert code == 4 and doc["error"]["code"] == "E_OCI_UNREACHABLE"
        assert "run the same command again" in doc["error"]["hint"]
        assert not out.exists()
        (partial,) = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        assert partial.stat().st_size == 10_000
        proxy.log.clear()
        result = oci.pull(ref, out, trust_file, PLAIN)
    assert result.report.ok and result.resumed_from == 10_000
    assert result.received == signed_bundle.stat().st_size - 10_000
    blob_gets = [h for m, p, h in proxy.log if m == "GET" and "/blobs/" in p]
    assert [h.get("Range") for h in blob_gets] == ["bytes=10000-"]
    assert out.read_bytes() == signed_bundle.read_bytes()
    assert not partial.exists()


def test_an_interrupted_push_resumes_its_upload(registry, signed_bundle, trust_file,
                                                tmp_path):
    size = signed_bundle.stat().st_size
    state = tmp_path / "state"
    with Proxy(registry.port) as proxy:
        ref = f"{proxy.host}/oemkit/upload:1"
        proxy.drop_patch = 2
        with pytest.raises(EnvironmentProblem) as info:
            oci.push(signed_bundle, ref, PLAIN, state_dir=state, chunk_bytes=8192)
        assert info.value.code == "E_OCI_UNREACHABLE"
        assert len(list(state.iterdir())) == 1
        proxy.log.clear()
        result = oci.push(signed_bundle, ref, PLAIN, state_dir=state, chunk_bytes=8192)
        methods = [(m, h.get("Content-Range")) for m, p, h in proxy.log
                   if "/blobs/uploads/" in p and m in ("GET", "PATCH")]
    # the second run asked how far the upload got, then sent only the rest
    assert methods[0] == ("GET", None)
    assert [r for m, r in methods[1:]] == [f"{o}-{min(o + 8192, size) - 1}"
                                           for o in range(8192, size, 8192)]
    assert result.sent == size - 8192
    assert list(state.iterdir()) == []
    pulled = oci.pull(f"{registry.host}/oemkit/upload:1", tmp_path / "o.oemb", trust_file,
                      PLAIN)
    assert pulled.report.ok


def test_hashing_while_sending_stops_once_the_registry_has_the_blob(registry, signed_bundle):
    """A large bundle is hashed while it is sent: the HEAD comes when the digest is known,
    and an upload of a blob the registry turns out to have is abandoned."""
    from concurrent.futures import Future

    size = signed_bundle.stat().st_size
    first = oci.push(signed_bundle, f"{registry.host}/oemkit/overlap:1", PLAIN)
    digest = next(iter(first.blobs))
    client = PLAIN.open(Reference.parse(f"{registry.host}/oemkit/overlap:1"))
    for repository, expected in (("oemkit/overlap", ("present", 8192)),
                                 ("oemkit/overlap-new", ("uploaded", size))):
        future: Future[str] = Future()

        def known(_: int, future: Future[str] = future) -> None:
            if not future.done():
                future.set_result(digest)  # the hash ends while the first chunk goes out

        assert client.upload_blob(repository, signed_bundle, future, size, progress=known,
                                  chunk=8192) == expected
    client.close()


def test_a_large_layer_is_verified_while_it_arrives(registry, signed_bundle, trust_file,
                                                    tmp_path, monkeypatch):
    """From OVERLAP_BYTES on (here: always) the verifier reads the partial file right
    behind the transfer, the bytes after the payload fetched ahead with a Range request;
    the outcome is the sequential path's: verified and written, or nothing written."""
    monkeypatch.setattr(oci, "OVERLAP_BYTES", 0)
    size = signed_bundle.stat().st_size
    oci.push(signed_bundle, f"{registry.host}/oemkit/overlap-pull:1", PLAIN)
    from oemkit.verify.bundle import Limits, scan_bundle

    with signed_bundle.open("rb") as handle:
        payload = next(m for m in scan_bundle(handle, Limits()) if m.name == "payload.tar.zst")
    with Proxy(registry.port) as proxy:
        ref = f"{proxy.host}/oemkit/overlap-pull:1"
        proxy.hold_at = payload.offset + payload.size - 100  # the transfer inside the payload
        result = oci.pull(ref, tmp_path / "a.oemb", trust_file, PLAIN)
        assert result.report.ok and (tmp_path / "a.oemb").read_bytes() == \
            signed_bundle.read_bytes()
        ranges = [h.get("Range") for m, p, h in proxy.log if m == "GET" and "/blobs/" in p]
        # the whole layer, and from the payload's end (its padding, the signatures) ahead
        assert ranges == [None, f"bytes={payload.offset + payload.size}-{size - 1}"]

        # bytes read ahead that are not the layer's own: refused, nothing written
        proxy.range_seen.clear()
        proxy.corrupt_ranges = True
        with pytest.raises(VerificationError) as info:
            oci.pull(ref, tmp_path / "z.oemb", trust_file, PLAIN)
        assert info.value.code == "E_OCI_DIGEST"
        assert not any(p.name.startswith((".z.", "z.")) for p in tmp_path.iterdir())
        proxy.corrupt_ranges = False
        proxy.hold_at = None

        # interrupted, then resumed: the same answer
        proxy.cut_after = 10_000
        with pytest.raises(EnvironmentProblem):
            oci.pull(ref, tmp_path / "b.oemb", trust_file, PLAIN)
        assert not (tmp_path / "b.oemb").exists()
        resumed = oci.pull(ref, tmp_path / "b.oemb", trust_file, PLAIN)
        assert resumed.report.ok and resumed.resumed_from == 10_000

    # a bundle altered before it was pushed: REJECTED, nothing written
    members = read_members(signed_bundle)
    changed = bytearray(dict(members)["payload.tar.zst"])
    changed[-100] ^= 0x01
    altered = write_members(tmp_path / "altered.oemb", [
        (n, bytes(changed) if n == "payload.tar.zst" else d) for n, d in members])
    oci.push(altered, f"{registry.host}/oemkit/overlap-altered:1", PLAIN)
    out = tmp_path / "dl" / "c.oemb"
    rejected = oci.pull(f"{registry.host}/oemkit/overlap-altered:1", out, trust_file, PLAIN)
    assert not rejected.report.ok and rejected.path is None
    assert list(out.parent.iterdir()) == []

    # a damaged layer: the digest is the verdict
    pushed = oci.push(signed_bundle, f"{registry.host}/oemkit/overlap-damaged:1", PLAIN)
    blob = registry.blob_file(next(iter(pushed.blobs)))
    good = blob.read_bytes()
    blob.write_bytes(good[:5000] + bytes([good[5000] ^ 1]) + good[5001:])
    try:
        with pytest.raises(VerificationError) as info:
            oci.pull(f"{registry.host}/oemkit/overlap-damaged:1", tmp_path / "dl" / "d.oemb",
                     trust_file, PLAIN)
    finally:
        blob.write_bytes(good)
    assert info.value.code == "E_OCI_DIGEST"
    assert list(out.parent.iterdir()) == []


# --------------------------------------------------------------------------- stub servers

class Stub:
    """A tiny HTTP server playing a registry that misbehaves as ``mode`` says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
        self.server.stub = self  # type: ignore[attr-defined]
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Stub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


USER, PASSWORD, TOKEN = "site", "s3cret", "tok-123"


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _any(self) -> None:
        stub: Stub = self.server.stub  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        stub.log.append((self.command, self.path, dict(self.headers)))
        auth = self.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if stub.mode == "500":
            body = json.dumps({"errors": [{"code": "UNKNOWN",
                                           "message": "storage backend down"}]}).encode()
            self._answer(500, body, {"Content-Type": "application/json"})
        elif stub.mode == "wrong-digest":
            self._answer(200, json.dumps({"schemaVersion": 2}).encode(),
                         {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        elif stub.mode == "not-a-bundle":
            doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                              "digest": "sha256:" + "2" * 64, "size": 10}, "layers": []}
            self._answer(200, json.dumps(doc).encode(),
                         {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        elif stub.mode == "basic":
            if auth != basic:
                self._answer(401, b"", {"WWW-Authenticate": 'Basic realm="oemkit-test"'})
            else:
                self._answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}')
        elif stub.mode == "bearer":
            if self.path.startswith("/token"):
                if auth == basic:
                    self._answer(200, json.dumps({"token": TOKEN}).encode(),
                                 {"Content-Type": "application/json"})
                else:
                    self._answer(401)
            elif auth != f"Bearer {TOKEN}":
                host = self.headers["Host"]
                self._answer(401, b"", {"WWW-Authenticate": f'Bearer realm="http://{host}'
                                        '/token",service="stub",scope="repository:a/b:pull"'})
            else:
                self._answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}')

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _any


def test_a_registry_answering_500_is_a_coded_error(signed_bundle, trust_file, tmp_path):
    with Stub("500") as stub:
        code, doc = cli_json("oci", "pull", f"{stub.host}/oemkit/x:1", "--out",
                             tmp_path / "x.oemb", "--trust", trust_file, "--plain-http")
        assert code == 4 and doc["error"]["code"] == "E_OCI_REGISTRY"
        assert "storage backend down" in doc["error"]["message"]
        assert "run the command again" in doc["error"]["hint"] or \
            "run the same command again" in doc["error"]["hint"]
        result = cli("oci", "push", signed_bundle, f"{stub.host}/oemkit/x:1", "--plain-http")
        assert result.exit_code == 4 and "E_OCI_REGISTRY" in result.output
        assert "hint" in result.output
        assert len(stub.log) == 2  # one request each: no retry loop, no sleeping
    assert not (tmp_path / "x.oemb").exists()


def test_a_closed_port_is_unreachable(trust_file, tmp_path):
    port = free_port()
    with pytest.raises(EnvironmentProblem) as info:
        oci.pull(f"127.0.0.1:{port}/oemkit/x:1", tmp_path / "x.oemb", trust_file, PLAIN)
    assert info.value.code == "E_OCI_UNREACHABLE"


# --------------------------------------------------------------------------- auth

def _auth_file(path: Path, host: str, user: str, password: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def test_credentials_come_from_the_podman_and_docker_files_in_order(home, tmp_path,
                                                                    monkeypatch):
    ref = Reference.parse("reg.site:5000/team/app:1")
    _auth_file(home / ".docker" / "config.json", "https://reg.site:5000/v1/", "docker", "d")
    assert find_credentials(ref) is not None and find_credentials(ref).username == "docker"
    _auth_file(tmp_path / "run" / "containers" / "auth.json", "reg.site:5000", "podman", "p")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert find_credentials(ref).username == "podman"  # type: ignore[union-attr]
    _auth_file(tmp_path / "explicit.json", "reg.site:5000/team", "team", "t")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "explicit.json"))
    found = find_credentials(ref)
    assert found is not None and (found.username, found.password) == ("team", "t")
    assert find_credentials(Reference.parse("other.site/x:1")) is None
    (tmp_path / "explicit.json").write_text("{not json")
    with pytest.raises(InputError) as info:
        find_credentials(ref)
    assert info.value.code == "E_OCI_AUTH_FILE"


def test_basic_auth_from_the_auth_file(trust_file, tmp_path, monkeypatch):
    with Stub("basic") as stub:
        ref = f"{stub.host}/a/b:1"
        with pytest.raises(InputError) as info:
            oci.pull(ref, tmp_path / "x.oemb", trust_file, PLAIN)
        assert info.value.code == "E_OCI_AUTH"
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(
            _auth_file(tmp_path / "auth.json", stub.host, USER, PASSWORD)))
        with pytest.raises(InputError) as info:
            oci.pull(ref, tmp_path / "x.oemb", trust_file, PLAIN)
        assert info.value.code == "E_OCI_NOT_FOUND"  # past the authentication
        _auth_file(tmp_path / "auth.json", stub.host, USER, "wrong")
        with pytest.raises(InputError) as info:
            oci.pull(ref, tmp_path / "x.oemb", trust_file, PLAIN)
        assert info.value.code == "E_OCI_AUTH" and "auth.json" in info.value.message


def test_bearer_token_with_username_and_password_stdin(trust_file, tmp_path):
    with Stub("bearer") as stub:
        ref = f"{stub.host}/a/b:1"
        code, doc = cli_json("oci", "pull", ref, "--out", tmp_path / "x.oemb", "--trust",
                             trust_file, "--plain-http", "--username", USER,
                             "--password-stdin", input=PASSWORD + "\n")
        assert code == 3 and doc["error"]["code"] == "E_OCI_NOT_FOUND"
        assert any(p.startswith("/token") for _, p, _ in stub.log)
        assert any(h.get("Authorization") == f"Bearer {TOKEN}" for _, _, h in stub.log)
        code, doc = cli_json("oci", "pull", ref, "--out", tmp_path / "x.oemb", "--trust",
                             trust_file, "--plain-http", "--username", USER,
                             "--password-stdin", input="wrong\n")
        assert code == 3 and doc["error"]["code"] == "E_OCI_AUTH"


def test_option_checks(signed_bundle, trust_file, tmp_path):
    code, doc = cli_json("oci", "pull", "10.0.0.7:5000/a/b:1", "--out", tmp_path / "x",
                         "--trust", trust_file, "--plain-http")
    assert code == 2 and doc["error"]["code"] == "E_OCI_PLAIN_HTTP"
    code, doc = cli_json("oci", "push", signed_bundle, "127.0.0.1:5000/a/b:1", "--username",
                         "u")
    assert code == 2 and doc["error"]["code"] == "E_USAGE"
    for bad in ("no-host/repo:1", "127.0.0.1:5000/UPPER:1", "127.0.0.1:5000/a/b"):
        with pytest.raises(UsageError) as info:
            Reference.parse(bad)
        assert info.value.code == "E_OCI_REF"
    ref = Reference.parse("[::1]:5000/a/b:1@sha256:" + "a" * 64)
    assert ref.hostname == "::1" and ref.target == "sha256:" + "a" * 64
    code, doc = cli_json("oci", "pull", "127.0.0.1:5000/a/b:1", "--out", tmp_path / "x",
                         "--trust", trust_file, "--ca-file", tmp_path / "missing.pem")
    assert code == 3 and doc["error"]["code"] == "E_NOT_FOUND"


# --------------------------------------------------------------------------- TLS

def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oemkit test registry")])
    now = dt.datetime.now(dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "ca.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@needs_registry
def test_tls_with_the_site_ca(signed_bundle, trust_file, tmp_path):
    cert, key = _self_signed(tmp_path)
    reg = RegistryProcess(tmp_path / "tls-registry", tls=(cert, key))
    try:
        ref = f"{reg.host}/oemkit/tls:1"
        with pytest.raises(EnvironmentProblem) as info:
            oci.push(signed_bundle, ref, oci.Connection())
        assert info.value.code == "E_OCI_TLS" and "--ca-file" in info.value.hint
        code, doc = cli_json("oci", "push", signed_bundle, ref, "--ca-file", cert)
        assert code == 0 and doc["ok"]
        out = tmp_path / "tls.oemb"
        code, doc = cli_json("oci", "pull", ref, "--out", out, "--trust", trust_file,
                             "--ca-file", cert)
        assert code == 0 and out.read_bytes() == signed_bundle.read_bytes()
    finally:
        reg.stop()


def test_a_missing_oci_extra_is_e_missing_extra(monkeypatch, tmp_path):
    """Without requests (or oras) installed, the registry commands say which extra to
    install (E_MISSING_EXTRA, exit 4), never an ImportError."""
    import sys

    from oemkit.site._registry import Registry

    monkeypatch.setitem(sys.modules, "requests", None)  # find_spec then reports it absent
    with pytest.raises(EnvironmentProblem) as caught:
        Registry("127.0.0.1:5000", plain_http=True)
    assert caught.value.code == "E_MISSING_EXTRA"
    assert caught.value.exit_code == 4
    assert caught.value.message == ("talking to the registry 127.0.0.1:5000 needs the 'oci' "
                                    "extra (oras, requests); not installed: requests")
    assert caught.value.hint == "pip install 'oemkit[oci]' (in a checkout: pip install -e '.[oci]')"
