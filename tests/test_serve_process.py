"""The real server in its own process, driven by clients nobody here wrote: tritonclient
(the Triton/KServe v2 HTTP client) and prometheus_client's text-format parser; SIGTERM
drains, SIGHUP reloads, a stalled client times out, two workers share the socket and
their metrics. Servers bind 127.0.0.1 on a free port and are stopped by the test."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import EXAMPLE

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]

GOLDEN_IN = json.loads((EXAMPLE / "golden" / "inputs.json").read_text())["x"]
GOLDEN_OUT = json.loads((EXAMPLE / "golden" / "expected.json").read_text())["y"]
X = np.asarray(GOLDEN_IN["data"], dtype=np.float32).reshape(GOLDEN_IN["shape"])
Y = np.asarray(GOLDEN_OUT["data"], dtype=np.float32).reshape(GOLDEN_OUT["shape"])


class Server:
    """``oemkit serve`` in a child process; ``port`` once listening and ready."""

    def __init__(self, args: list[str], tmp: Path) -> None:
        self.port_file = tmp / f"port-{time.monotonic_ns()}"
        self.log = tmp / f"serve-{time.monotonic_ns()}.log"
        self._log = self.log.open("wb")
        env = {**os.environ, "OEMKIT_STATE": str(tmp / "state.json")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oemkit", "serve", *args, "--port", "0", "--port-file",
             str(self.port_file), "--state", str(tmp / "state.json")],
            stdout=subprocess.DEVNULL, stderr=self._log, env=env)
        deadline = time.monotonic() + 60
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start: {self.log.read_text()}")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        while self.get("/v2/health/live")[0] != 200:
            if time.monotonic() > deadline:
                raise AssertionError(self.log.read_text())
            time.sleep(0.05)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("GET", path)
            res = conn.getresponse()
            return res.status, res.read()
        except OSError:
            return 0, b""

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        res = conn.getresponse()
        return res.status, json.loads(res.read())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self._log.close()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


@pytest.fixture
def served(signed_bundle, trust_file, tmp_path):
    server = Server([str(signed_bundle), "--trust", str(trust_file), "--workers", "1"],
                    tmp_path)
    yield server
    assert server.stop() == 0, server.log.read_text()


def _reply(sock: socket.socket) -> bytes:
    """One whole HTTP response read off a raw socket (headers and Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                        "data": x.ravel().tolist()}]}


def test_tritonclient_talks_to_the_server(served):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(f"127.0.0.1:{served.port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("example")
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data",
                                                              "classification"]
        meta = client.get_model_metadata("example")
        assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]
        for binary in (True, False):
            tensor = triton.InferInput("x", list(X.shape), "FP32")
            tensor.set_data_from_numpy(X, binary_data=binary)
            result = client.infer("example", [tensor], outputs=[
                triton.InferRequestedOutput("y", binary_data=binary)])
            assert np.allclose(result.as_numpy("y"), Y, atol=1e-5, rtol=1e-4)
            # the client's default: every output, as binary data
            assert np.allclose(client.infer("example", [tensor]).as_numpy("y"), Y, atol=1e-5)
        with pytest.raises(Exception, match="unknown model 'nope'"):
            client.get_model_metadata("nope")
    finally:
        client.close()


def test_metrics_parse_with_prometheus_client_and_promtool(served, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    for _ in range(3):
        assert served.post("/v2/models/example/infer", _body(X))[0] == 200
    assert served.post("/v2/models/example/infer", {"inputs": []})[0] == 400
    status, text = served.get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    requests = {s.labels["outcome"]: s.value for s in families["oemkit_requests"].samples
                if s.name == "oemkit_requests_total"}
    assert requests["success"] == 3 and requests["bad_request"] == 1
    for name in ("oemkit_request_duration_seconds", "oemkit_queue_duration_seconds",
                 "oemkit_compute_duration_seconds", "oemkit_batch_size",
                 "oemkit_inflight_requests", "oemkit_model_load_seconds",
                 "oemkit_license_state", "oemkit_license_expiry_seconds"):
        assert name in families, name
    count = [s.value for s in families["oemkit_request_duration_seconds"].samples
             if s.name.endswith("_count")]
    assert count == [3.0]
    promtool = shutil.which("promtool")
    if promtool:  # Debian's prometheus package, where installed
        checked = subprocess.run([promtool, "check", "metrics"], input=text,
                                 capture_output=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_logs_are_json_lines_and_sigterm_drains_an_inflight_request(served):
    body = json.dumps(_body(X)).encode()
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    sock.sendall(b"POST /v2/models/example/infer HTTP/1.1\r\nHost: t\r\n"
                 b"Content-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
    time.sleep(0.3)
    served.proc.send_signal(signal.SIGTERM)  # while the request is half sent
    time.sleep(0.3)
    sock.sendall(body[10:])
    reply = _reply(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert served.proc.wait(30) == 0
    lines = served.lines()
    assert any(line["msg"] == "ready" and line["model"] == "example" for line in lines)
    assert all({"ts", "level", "msg", "pid"} <= set(line) for line in lines)


def test_a_stalled_client_gets_408(signed_bundle, trust_file, tmp_path):
    server = Server([str(signed_bundle), "--trust", str(trust_file), "--workers", "1",
                     "--request-timeout", "0.5"], tmp_path)
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"POST /v2/models/example/infer HTTP/1.1\r\nHost: t\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        reply = _reply(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b'"code":"E_REQUEST_TIMEOUT"' in reply
        assert server.get("/v2/health/live")[0] == 200
    finally:
        assert server.stop() == 0


def test_serve_a_prefix_and_sighup_rereads_the_live_config(signed_bundle, trust_file,
                                                           tmp_path):
    prefix = tmp_path / "opt"
    installed = subprocess.run(
        [sys.executable, "-m", "oemkit", "install", str(signed_bundle), "--prefix",
         str(prefix), "--trust", str(trust_file), "--skip-smoke", "--state",
         str(tmp_path / "state.json")], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    server = Server([str(prefix), "--workers", "1"], tmp_path)
    try:
        nine = np.zeros((9, 4), dtype=np.float32)
        status, doc = server.post("/v2/models/example/infer", _body(nine))
        assert (status, doc["error"]) == (400, "batch size 9 exceeds max_batch 8")
        live = prefix / "current" / "config.json"
        config = json.loads(live.read_text())
        live.write_text(json.dumps({**config, "max_batch": 16}))
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while server.post("/v2/models/example/infer", _body(nine))[0] != 200:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.1)
        assert any("SIGHUP" in line["msg"] for line in server.lines())
    finally:
        assert server.stop() == 0


def test_two_workers_share_the_socket_and_the_metrics(signed_bundle, trust_file, tmp_path):
    server = Server([str(signed_bundle), "--trust", str(trust_file), "--workers", "2"],
                    tmp_path)
    try:
        deadline = time.monotonic() + 30
        while sum(1 for line in server.lines() if line["msg"] == "ready") < 2:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.05)
        for _ in range(10):
            assert server.post("/v2/models/example/infer", _body(X))[0] == 200
        from prometheus_client.parser import text_string_to_metric_families

        text = server.get("/metrics")[1].decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        success = [s.value for s in families["oemkit_requests"].samples
                   if s.name == "oemkit_requests_total" and s.labels["outcome"] == "success"]
        assert success == [10.0]
        pids = {line["pid"] for line in server.lines() if line["msg"] == "ready"}
        assert len(pids) == 2 and server.proc.pid not in pids
    finally:
        assert server.stop() == 0


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_and_a_bearer_token(signed_bundle, trust_file, tmp_path):
    import ssl

    cert, key = _self_signed(tmp_path)
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    port_file = tmp_path / "tls-port"
    log = (tmp_path / "tls.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "oemkit", "serve", str(signed_bundle), "--trust",
         str(trust_file), "--workers", "1", "--port", "0", "--port-file", str(port_file),
         "--tls-cert", str(cert), "--tls-key", str(key), "--token-file", str(token),
         "--state", str(tmp_path / "state.json")], stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        port = int(port_file.read_text())
        context = ssl.create_default_context(cafile=str(cert))

        def request(method: str, path: str, headers: dict | None = None,
                    body: bytes | None = None) -> tuple[int, bytes]:
            for _ in range(100):
                try:
                    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                                       context=context)
                    conn.request(method, path, body, headers or {})
                    res = conn.getresponse()
                    return res.status, res.read()
                except ConnectionError:
                    time.sleep(0.05)
            raise AssertionError("no TLS answer")

        assert request("GET", "/v2/health/live")[0] == 200  # probes need no token
        body = json.dumps(_body(X)).encode()
        assert request("POST", "/v2/models/example/infer", body=body)[0] == 401
        status, answer = request("POST", "/v2/models/example/infer",
                                 {"Authorization": "Bearer 0123456789abcdef0123"}, body)
        assert status == 200 and json.loads(answer)["outputs"][0]["shape"] == [4, 3]
        with pytest.raises(ssl.SSLError):  # a client not trusting the certificate: real TLS
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                               context=ssl.create_default_context())
            conn.request("GET", "/v2/health/live")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.close()


def _serve_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oemkit", "serve", *args],
                          capture_output=True, text=True, timeout=120)


def test_serve_refuses_bad_targets_and_options(signed_bundle, trust_file, tmp_path):
    missing = _serve_cli(str(tmp_path / "nope.oemb"))
    assert missing.returncode == 3 and "E_NOT_FOUND" in missing.stderr
    no_trust = _serve_cli(str(signed_bundle))
    assert no_trust.returncode == 3 and "E_TRUST_REQUIRED" in no_trust.stderr
    assert "needs --trust ROOT to verify it first" in no_trust.stderr
    empty = tmp_path / "prefix"
    empty.mkdir()
    not_installed = _serve_cli(str(empty))
    assert not_installed.returncode == 3 and "E_NOT_INSTALLED" in not_installed.stderr
    short = tmp_path / "short-token"
    short.write_text("abc")
    token = _serve_cli(str(signed_bundle), "--trust", str(trust_file), "--token-file",
                       str(short))
    assert token.returncode == 3 and "E_TOKEN_INVALID" in token.stderr
    half_tls = _serve_cli(str(signed_bundle), "--trust", str(trust_file), "--tls-cert",
                          str(short))
    assert half_tls.returncode == 2 and "--tls-cert and --tls-key go together" in \
        half_tls.stderr


def test_a_port_in_use_is_an_environment_problem(signed_bundle, trust_file, tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        res = _serve_cli(str(signed_bundle), "--trust", str(trust_file), "--port",
                         str(holder.getsockname()[1]), "--state", str(tmp_path / "s.json"))
    finally:
        holder.close()
    assert res.returncode == 4 and "E_BIND" in res.stderr
    assert "choose another --port" in res.stderr


def test_a_bad_tls_pair_is_a_coded_input_error(signed_bundle, trust_file, tmp_path):
    cert, _ = _self_signed(tmp_path)
    res = _serve_cli(str(signed_bundle), "--trust", str(trust_file), "--tls-cert", str(cert),
                     "--tls-key", str(tmp_path / "missing.pem"), "--state",
                     str(tmp_path / "s.json"))
    assert res.returncode == 3 and "E_TLS_INVALID" in res.stderr
    assert "pass a PEM certificate and the unencrypted PEM private key" in res.stderr


def test_body_limits_on_the_real_server(signed_bundle, trust_file, tmp_path):
    server = Server([str(signed_bundle), "--trust", str(trust_file), "--workers", "1",
                     "--max-body", "1024"], tmp_path)
    try:
        def ask(raw: bytes) -> bytes:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(raw)
            reply = _reply(sock)
            sock.close()
            return reply

        head = b"POST /v2/models/example/infer HTTP/1.1\r\nHost: t\r\n"
        # announced too large: refused before a byte of the body is read
        reply = ask(head + b"Content-Length: 2048\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert reply.endswith(b'{"error":"the request body is 2048 bytes, over the 1024-byte '
                              b'limit","code":"E_REQUEST_TOO_LARGE"}')
        chunk = b"258\r\n" + b"x" * 600 + b"\r\n"  # 0x258 = 600 bytes
        reply = ask(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk + chunk + b"0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert reply.endswith(b'{"error":"the request body is over the 1024-byte limit",'
                              b'"code":"E_REQUEST_TOO_LARGE"}')
        reply = ask(b"GET /v2/models/example/infer HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 405"), reply[:200]
        assert server.post("/v2/models/example/infer", _body(X))[0] == 200
    finally:
        assert server.stop() == 0
