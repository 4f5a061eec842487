"""The serving runtime in one process: the wire format, the license policy, and every
route through Starlette's TestClient (no socket) on the real example model.

tests/test_serve_process.py starts the real server and talks to it with outside clients.
"""

from __future__ import annotations

import datetime as dt
import json
import struct

import numpy as np
import pytest

import oemkit.license
from helpers import EXAMPLE, zipmap_model
from oemkit.models.serving import LicensePolicy, decide
from oemkit.release.trust import add_key
from oemkit.serve.model import SessionSettings, classify
from oemkit.serve.runtime import Settings
from oemkit.serve.server import build_runtime, worker_app
from oemkit.serve.target import open_bundle
from oemkit.serve.tensors import HEADER, ProtocolError, decode_request, encode_response
from oemkit.verify.trust import parse_root

UTC = dt.timezone.utc
GOLDEN_IN = json.loads((EXAMPLE / "golden" / "inputs.json").read_text())["x"]
GOLDEN_OUT = json.loads((EXAMPLE / "golden" / "expected.json").read_text())["y"]
X = np.asarray(GOLDEN_IN["data"], dtype=np.float32).reshape(GOLDEN_IN["shape"])
Y = np.asarray(GOLDEN_OUT["data"], dtype=np.float32).reshape(GOLDEN_OUT["shape"])


def _infer_body(x: np.ndarray = X, name: str = "x", **extra) -> dict:
    return {"inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape),
                        "data": x.ravel().tolist()}], **extra}


# --------------------------------------------------------------------------- wire format


def test_json_request_nested_or_flat_data_decode_to_the_same_array():
    flat = decode_request(json.dumps(_infer_body()).encode(), {})
    nested = decode_request(json.dumps({"inputs": [{"name": "x", "datatype": "FP32",
                                                    "shape": [4, 4],
                                                    "data": X.tolist()}]}).encode(), {})
    assert np.array_equal(flat.inputs["x"], X) and np.array_equal(nested.inputs["x"], X)
    assert flat.outputs is None and flat.binary_output_default is False


def test_binary_request_with_bytes_and_fp32_tensors():
    head = json.dumps({"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [4, 4],
         "parameters": {"binary_data_size": 64}},
        {"name": "s", "datatype": "BYTES", "shape": [2],
         "parameters": {"binary_data_size": 4 + 2 + 4 + 3}}],
        "parameters": {"binary_data_output": True}}).encode()
    strings = struct.pack("<I", 2) + b"ab" + struct.pack("<I", 3) + b"cde"
    body = head + X.astype("<f4").tobytes() + strings
    req = decode_request(body, {HEADER: str(len(head))})
    assert np.array_equal(req.inputs["x"], X)
    assert req.inputs["s"].tolist() == [b"ab", b"cde"]
    assert req.binary_output_default is True


_SHORT = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], ' \
    b'"parameters": {"binary_data_size": 8}}]}'


@pytest.mark.parametrize(("body", "headers", "status", "message"), [
    (b"{not json", {}, 400, "the request body is not valid JSON"),
    # strict JSON (orjson): no NaN literal, UTF-8 only; a 65-bit integer is not an INT64
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}', {}, 400,
     "the request body is not valid JSON: unexpected character"),
    (b'{"id": "\xff"}', {}, 400, "the request body is not valid JSON: str is not valid UTF-8"),
    (b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], '
     b'"data": [36893488147419103232]}]}', {}, 400, "input 'x': INT64 data must be integers"),
    (b"[]", {}, 400, "the request must be a JSON object"),
    (b'{"inputs": []}', {}, 400, "the request needs 'inputs': a non-empty list of tensors"),
    (b'{"inputs": [{"name": "x", "datatype": "FP33", "shape": [1], "data": [1]}]}', {}, 400,
     "input 'x': unknown datatype 'FP33'"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}', {}, 400,
     "input 'x': 'data' has 1 elements, shape [2] needs 2"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}', {}, 400,
     "input 'x': 'shape' must hold integers >= 0, not -1"),
    (b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1.5]}]}', {},
     400, "input 'x': INT32 data must be integers"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [65536, 65536], "data": []}]}',
     {}, 413, "input 'x': shape [65536, 65536] holds more than"),
    (_SHORT + b"xxxx", {HEADER: str(len(_SHORT))}, 400,
     "input 'x': binary_data_size 8 runs past the 4 bytes of binary data"),
    (b'{}', {HEADER: "99"}, 400, "the inference-header-content-length header must be"),
    # str.isdigit() is true for a superscript one; int() is not (found by hypothesis)
    (b'{}', {HEADER: "\u00b9"}, 400, "the inference-header-content-length header must be"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},'
     b'{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}', {}, 400,
     "input 'x' is given twice"),
])
def test_malformed_requests_are_refused_with_status_and_tensor(body, headers, status, message):
    with pytest.raises(ProtocolError) as err:
        decode_request(body, headers)
    assert err.value.status == status
    assert err.value.message.startswith(message), err.value.message


def test_response_binary_outputs_follow_the_json_header():
    body, json_len = encode_response("m", "1", [("y", Y, True), ("z", Y, False)])
    assert json_len is not None
    head = json.loads(body[:json_len])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == Y.nbytes
    assert np.array_equal(np.frombuffer(body[json_len:], "<f4").reshape(Y.shape), Y)
    # FP32 as JSON: the shortest text that reads back as the same FP32
    data = head["outputs"][1]["data"]
    assert np.array_equal(np.asarray(data, np.float32), Y.ravel())
    assert len(json.dumps(data)) < len(json.dumps(Y.ravel().tolist()))


def test_nonfinite_outputs_are_written_as_nan_and_infinity():
    out = np.array([[1.5, np.nan], [np.inf, -np.inf]], dtype=np.float32)
    body, json_len = encode_response("m", "1", [("y", out, False),
                                                ("n", np.arange(2, dtype=np.int64), False)],
                                     request_id="null")
    assert json_len is None
    assert b'"data":[1.5,NaN,Infinity,-Infinity]' in body and b'"data":[0,1]' in body
    got = json.loads(body)["outputs"][0]["data"]
    assert np.array_equal(np.asarray(got, np.float32), out.ravel(), equal_nan=True)
    # a request id of "null" alone does not switch writers
    body, _ = encode_response("m", "1", [("y", Y, False)], request_id="null")
    assert b"NaN" not in body and json.loads(body)["id"] == "null"


def test_classification_extension_ranks_and_applies_the_threshold():
    scores = np.asarray([[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]], dtype=np.float32)
    out = classify(scores, 2, ["a", "b", "c"], None)
    assert out.tolist() == [[b"0.700000:1:b", b"0.200000:2:c"],
                            [b"0.400000:2:c", b"0.300000:0:a"]]
    assert classify(scores, 2, ["a", "b", "c"], 0.5).tolist() == [[b"0.700000:1:b", b""],
                                                                  [b"", b""]]


# --------------------------------------------------------------------------- policy


def test_policy_defaults_serve_without_a_license():
    standing = decide(LicensePolicy(), status=None)
    assert standing.state == "none" and standing.ready


@pytest.mark.parametrize(("section", "message"), [
    ({"grace": "maybe"}, "license policy: 'grace' must be serve or refuse, not 'maybe'"),
    ({"invalid": "degrade", "degrade_features": "x"},
     "license policy: 'degrade_features' must be a list of non-empty strings"),
    ({"limits": {"threads": "t"}}, "license policy: 'limits' may cap max_batch, workers, "
                                   "not 'threads'"),
    ({"check_interval_s": 0}, "license policy: 'check_interval_s' must be an integer from 1"),
    ({"requires": True}, "license policy: unknown field(s) requires"),
])
def test_policy_errors_name_the_field(section, message):
    with pytest.raises(Exception) as err:
        LicensePolicy.from_dict(section)
    assert err.value.code == "E_SPEC_INVALID"
    assert err.value.message.startswith(message), err.value.message


def test_policy_states():
    strict = LicensePolicy(required=True, features=["serve"], grace="refuse",
                           limits={"max_batch": "batch"})
    none = decide(strict, status=None)
    assert (none.state, none.ready, none.error["code"]) == ("invalid", False,
                                                            "E_LICENSE_REQUIRED")
    missing = decide(strict, status="valid", features=("other",))
    assert missing.error["code"] == "E_ENTITLEMENT" and not missing.ready
    grace = decide(strict, status="grace", features=("serve",))
    assert grace.error["code"] == "E_EXPIRED" and not grace.ready
    valid = decide(strict, status="valid", features=("serve",), limits={"batch": 2})
    assert valid.ready and valid.caps == {"max_batch": 2}
    degrade = LicensePolicy(required=True, invalid="degrade", degrade_features=("x",))
    low = decide(degrade, status=None)
    assert low.ready and low.state == "invalid" and low.features == frozenset({"x"})
    assert not low.allows("batching") and valid.allows("batching")
    soft = decide(LicensePolicy(), status="grace", license_id="L")
    assert soft.ready and soft.state == "grace" and "in grace" in soft.warning


# --------------------------------------------------------------------------- the app


@pytest.fixture
def target(signed_bundle, trust_file):
    opened = open_bundle(signed_bundle, trust_file, state_path=None)
    yield opened
    opened.close()


def _client(target, **settings):
    from starlette.testclient import TestClient

    runtime = build_runtime(target.source, Settings(session=SessionSettings(), **settings))
    return runtime, TestClient(worker_app(runtime))


def test_routes_speak_the_protocol(target):
    _, client = _client(target)
    with client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True, "license_state": "none"}
        meta = client.get("/v2/models/example").json()
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        assert client.get("/v2/models/example/versions/0.2.0").json() == meta
        assert client.get("/v2/models/example/ready").json() == {"name": "example",
                                                                  "ready": True}
        assert client.get("/v2").json()["extensions"] == ["binary_tensor_data",
                                                          "classification"]
        res = client.post("/v2/models/example/infer", json=_infer_body(id="r1"))
        doc = res.json()
        assert res.status_code == 200 and doc["id"] == "r1" and doc["model_version"] == "0.2.0"
        got = np.asarray(doc["outputs"][0]["data"], dtype=np.float32).reshape(Y.shape)
        assert np.allclose(got, Y, atol=1e-5)
        text = client.get("/metrics").text
        assert 'oemkit_requests_total{model="example",outcome="success"} 1.0' in text
        assert 'oemkit_license_state{state="none"} 1.0' in text


def test_the_example_config_takes_effect(target):
    runtime, client = _client(target)
    with client:
        assert runtime.max_batch == 8  # config/config.json's max_batch
        body = _infer_body(outputs=[{"name": "y", "parameters": {"classification": 1}}])
        top = client.post("/v2/models/example/infer", json=body).json()["outputs"][0]
        # score_threshold 0.5 of the config: only rows whose best class reaches it
        assert top["data"] == ["", "0.523621:1:b", "", "0.506945:0:a"]
        big = np.zeros((9, 4), dtype=np.float32)
        res = client.post("/v2/models/example/infer", json=_infer_body(big))
        assert res.status_code == 400
        assert res.json() == {"error": "batch size 9 exceeds max_batch 8",
                              "code": "E_REQUEST_INVALID"}
    runtime, client = _client(target, max_batch=16)
    assert runtime.max_batch == 16


@pytest.mark.parametrize(("path", "body", "status", "error"), [
    ("/v2/models/nope/infer", _infer_body(), 404,
     "unknown model 'nope' (this server serves 'example')"),
    ("/v2/models/example/versions/9/infer", _infer_body(), 404,
     "unknown version '9' of model 'example' (serving 0.2.0)"),
    ("/v2/models/example/infer", {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 4],
                                              "data": [1, 2, 3, 4]}]}, 400,
     "missing input(s) x for model 'example'"),
    ("/v2/models/example/infer", {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 4],
                                              "data": [1, 2, 3, 4]}]}, 400,
     "input 'x': datatype FP64, the model expects FP32"),
    ("/v2/models/example/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2],
                                              "data": [1, 2, 3, 4]}]}, 400,
     "input 'x': shape [2, 2], the model expects [-1, 4] (-1: any)"),
    ("/v2/models/example/infer", _infer_body(outputs=[{"name": "q"}]), 400,
     "unknown output 'q' for model 'example' (outputs: y)"),
])
def test_bad_requests_get_the_protocol_error(target, path, body, status, error):
    _, client = _client(target)
    with client:
        res = client.post(path, json=body)
        assert res.status_code == status
        assert res.json()["error"] == error
        assert client.get("/v2/health/live").status_code == 200  # still up


def test_body_limit_and_unknown_routes(target):
    _, client = _client(target, max_body=1024)
    with client:
        res = client.post("/v2/models/example/infer", content=b"x" * 2048)
        assert res.status_code == 413 and res.json()["code"] == "E_REQUEST_TOO_LARGE"
        res = client.get("/v3/nothing")
        assert res.status_code == 404 and res.json() == {
            "error": "no such endpoint: GET /v3/nothing", "code": "E_NOT_FOUND"}
        assert client.get("/v2/models/example/infer").status_code == 405
        text = client.get("/metrics").text
        assert 'oemkit_requests_total{model="example",outcome="too_large"} 1.0' in text


def test_bearer_token_guards_all_but_health(target):
    _, client = _client(target, token=b"s3cret-token-0123456789")
    with client:
        assert client.get("/v2/health/ready").status_code == 200
        res = client.post("/v2/models/example/infer", json=_infer_body())
        assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
        assert res.json()["code"] == "E_UNAUTHORIZED"
        assert client.get("/metrics").status_code == 401
        ok = client.post("/v2/models/example/infer", json=_infer_body(),
                         headers={"Authorization": "Bearer s3cret-token-0123456789"})
        assert ok.status_code == 200


def test_full_queue_answers_503_with_retry_after(target):
    import asyncio

    runtime, client = _client(target, max_queue=1)
    with client:
        # hold the model thread so that queued requests wait
        assert runtime.batcher is not None
        gate = __import__("threading").Event()
        real = runtime.model.run
        runtime.model.run = lambda feeds: (gate.wait(5), real(feeds))[1]  # type: ignore

        async def burst():
            import httpx2 as httpx

            transport = httpx.ASGITransport(app=client.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                first = asyncio.ensure_future(c.post("/v2/models/example/infer",
                                                     json=_infer_body()))
                await asyncio.sleep(0.2)
                second = asyncio.ensure_future(c.post("/v2/models/example/infer",
                                                      json=_infer_body()))
                await asyncio.sleep(0.2)
                third = await c.post("/v2/models/example/infer", json=_infer_body())
                gate.set()
                return await first, await second, third

        first, second, third = client.portal.call(burst)
        assert first.status_code == 200 and second.status_code == 200
        assert third.status_code == 503 and third.headers["retry-after"] == "1"
        assert third.json() == {"error": "the queue is full (1 requests waiting)",
                                "code": "E_OVERLOADED"}


def test_dynamic_batching_stacks_waiting_requests(target):
    runtime, client = _client(target, max_delay_s=0.2)
    with client:
        import asyncio

        import httpx2 as httpx

        async def burst():
            transport = httpx.ASGITransport(app=client.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                rows = [X[i:i + 1] for i in range(4)]
                return await asyncio.gather(*[
                    c.post("/v2/models/example/infer", json=_infer_body(r)) for r in rows])

        results = client.portal.call(burst)
        got = np.concatenate([np.asarray(r.json()["outputs"][0]["data"],
                                         dtype=np.float32).reshape(1, 3) for r in results])
        assert np.allclose(got, Y, atol=1e-5)
        assert runtime.batcher.batches < 4  # at least two requests shared a batch
        text = client.get("/metrics").text
        assert 'oemkit_batch_size_count{model="example"} 4.0' in text


# --------------------------------------------------------------------------- licenses


@pytest.fixture
def license_root(keys, trust_v2, tmp_path):
    v3 = add_key(parse_root(trust_v2), keys["license"].public, ["license"], [keys["root"]],
                 name="license")
    path = tmp_path / "trust-v3.json"
    path.write_bytes(v3)
    return path


def _license(keys, tmp_path, *, expires, grace="0", features=("serve",), name="a.lic"):
    data = oemkit.license.issue(key=keys["license"], issuer="license", customer="acme",
                                customer_name="ACME", product="example", expires=expires,
                                issued_at=dt.datetime(2026, 1, 1, tzinfo=UTC), grace=grace,
                                features=list(features))
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_required_license_missing_means_never_ready(signed_bundle, license_root):
    opened = open_bundle(signed_bundle, license_root)
    try:
        opened.source.policy = LicensePolicy(required=True)
        _, client = _client(opened)
        with client:
            res = client.get("/v2/health/ready")
            assert res.status_code == 503 and res.headers["retry-after"] == "1"
            assert res.json() == {
                "error": "this runtime needs a license and none was found",
                "code": "E_LICENSE_REQUIRED", "ready": False, "license_state": "invalid",
                "hint": "attach one (oemkit license attach) or pass --license"}
            res = client.post("/v2/models/example/infer", json=_infer_body())
            assert res.status_code == 503 and res.json()["code"] == "E_LICENSE_REQUIRED"
            assert 'oemkit_license_state{state="invalid"} 1.0' in client.get("/metrics").text
    finally:
        opened.close()


def test_license_valid_then_grace_then_invalid_without_restart(signed_bundle, license_root,
                                                               keys, tmp_path, monkeypatch):
    lic = _license(keys, tmp_path, expires="2099-01-01T00:00:00Z", grace="30d")
    opened = open_bundle(signed_bundle, license_root, licenses=[lic],
                         state_path=tmp_path / "state.json")
    try:
        opened.source.policy = LicensePolicy(required=True, features=("serve",))
        runtime, client = _client(opened)
        with client:
            assert client.get("/v2/health/ready").json()["license_state"] == "valid"
            assert runtime.standing.license_id == "acme-example"
            # the clock moves past expiry: grace (serve, header, metric) at the next check
            import oemkit._time

            later = dt.datetime(2099, 1, 10, tzinfo=UTC)
            monkeypatch.setattr(oemkit._time, "now", lambda: later)
            monkeypatch.setattr("oemkit.host.license_state.utc_now", lambda: later)
            runtime.check_license()
            res = client.post("/v2/models/example/infer", json=_infer_body())
            assert res.status_code == 200 and res.headers["oemkit-license"] == "grace"
            assert 'oemkit_license_state{state="grace"} 1.0' in client.get("/metrics").text
            past = dt.datetime(2099, 3, 1, tzinfo=UTC)
            monkeypatch.setattr(oemkit._time, "now", lambda: past)
            monkeypatch.setattr("oemkit.host.license_state.utc_now", lambda: past)
            runtime.check_license()
            res = client.get("/v2/health/ready")
            assert res.status_code == 503 and res.json()["code"] == "E_EXPIRED"
    finally:
        opened.close()


def test_license_without_needed_feature_is_refused(signed_bundle, license_root, keys,
                                                   tmp_path):
    lic = _license(keys, tmp_path, expires="2099-01-01T00:00:00Z", features=("other",))
    opened = open_bundle(signed_bundle, license_root, licenses=[lic])
    try:
        opened.source.policy = LicensePolicy(required=True, features=("serve",))
        _, client = _client(opened)
        with client:
            res = client.get("/v2/health/ready")
            assert res.status_code == 503 and res.json()["code"] == "E_ENTITLEMENT"
    finally:
        opened.close()


def test_degraded_runtime_serves_without_the_extensions(signed_bundle, license_root):
    opened = open_bundle(signed_bundle, license_root)
    try:
        opened.source.policy = LicensePolicy(required=True, invalid="degrade")
        runtime, client = _client(opened)
        with client:
            assert client.get("/v2/health/ready").status_code == 200
            assert runtime.max_batch == 1  # batching is not among the degraded features
            res = client.post("/v2/models/example/infer", json=_infer_body())
            assert res.status_code == 200 and res.headers["oemkit-license"] == "degraded"
            body = _infer_body(outputs=[{"name": "y", "parameters": {"classification": 1}}])
            res = client.post("/v2/models/example/infer", json=body)
            assert res.status_code == 403 and res.json()["code"] == "E_ENTITLEMENT"
    finally:
        opened.close()


# --------------------------------------------------------------------------- non-tensor outputs


def test_a_zipmap_output_is_served_as_json_text_per_row(tmp_path):
    from starlette.testclient import TestClient

    from oemkit.serve.runtime import Source

    model = zipmap_model(tmp_path / "model.onnx")
    source = Source(root_dir=tmp_path, model=model, name="iris", version="1")
    runtime = build_runtime(source, Settings(session=SessionSettings(), max_batch=4,
                                             max_delay_s=0.05))
    with TestClient(worker_app(runtime)) as client:
        meta = client.get("/v2/models/iris").json()
        assert meta["outputs"][1] == {
            "name": "output_probability", "datatype": "BYTES", "shape": [-1],
            "parameters": {"onnx_type": "seq(map(int64,tensor(float)))", "encoding": "json"}}
        assert runtime.max_batch == 4  # the tensor inputs and outputs are batchable
        x = np.asarray([[1, 2, 3, 4], [0, 0, 0, 0]], dtype=np.float32)
        doc = client.post("/v2/models/iris/infer", json=_infer_body(x, "X")).json()
        outputs = {o["name"]: o for o in doc["outputs"]}
        rows = [json.loads(text) for text in outputs["output_probability"]["data"]]
        assert outputs["output_probability"]["shape"] == [2]
        assert [sorted(r) for r in rows] == [["0", "1", "2"], ["0", "1", "2"]]
        assert all(abs(sum(r.values()) - 1) < 1e-5 for r in rows)
        best = [max(r, key=r.get) for r in rows]
        assert [str(v) for v in outputs["label"]["data"]] == best


# --------------------------------------------------------------------------- hostile input

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=5), max_leaves=30)
_tensors = st.fixed_dictionaries({
    "name": st.sampled_from(["x", "", 3]), "datatype": st.sampled_from(
        ["FP32", "INT64", "BOOL", "BYTES", "FP16", "X"]),
    "shape": st.lists(st.integers(-2, 5), max_size=4),
    "data": _json_values}, optional={"parameters": st.fixed_dictionaries(
        {"binary_data_size": st.integers(-1, 64)})})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.none() | st.text(max_size=4))
def test_any_bytes_are_a_protocol_error_or_a_request(body, header):
    headers = {} if header is None else {HEADER: header}
    try:
        decode_request(body, headers)
    except ProtocolError as exc:
        assert exc.status in (400, 413) and exc.message


@settings(max_examples=300, deadline=None)
@given(st.lists(_tensors, min_size=1, max_size=3), st.binary(max_size=64),
       _json_values)
def test_any_tensor_list_is_a_protocol_error_or_arrays(tensors, blob, outputs):
    head = json.dumps({"inputs": tensors, "outputs": outputs}).encode()
    for body, headers in ((head, {}), (head + blob, {HEADER: str(len(head))})):
        try:
            req = decode_request(body, headers)
        except ProtocolError as exc:
            assert exc.status in (400, 413) and exc.message
        else:
            assert all(isinstance(a, np.ndarray) for a in req.inputs.values())


def test_licensed_limits_cap_max_batch_and_workers(signed_bundle, license_root, keys,
                                                   tmp_path):
    from oemkit.serve.server import _licensed_workers

    data = oemkit.license.issue(key=keys["license"], issuer="license", customer="acme",
                                customer_name="ACME", product="example",
                                expires="2099-01-01T00:00:00Z",
                                issued_at=dt.datetime(2026, 1, 1, tzinfo=UTC),
                                limits={"batch": 2, "instances": 1})
    lic = tmp_path / "limits.lic"
    lic.write_bytes(data)
    opened = open_bundle(signed_bundle, license_root, licenses=[lic])
    try:
        opened.source.policy = LicensePolicy(limits={"max_batch": "batch",
                                                     "workers": "instances"})
        capped = _licensed_workers(opened.source, Settings(session=SessionSettings(),
                                                           workers=4))
        assert capped.workers == 1
        runtime, client = _client(opened, max_batch=16)
        with client:
            assert runtime.standing.caps == {"max_batch": 2, "workers": 1}
            assert runtime.max_batch == 2  # --max-batch 16, the license caps it
            three = _infer_body(np.zeros((3, 4), dtype=np.float32))
            res = client.post("/v2/models/example/infer", json=three)
            assert res.json() == {"error": "batch size 3 exceeds max_batch 2",
                                  "code": "E_REQUEST_INVALID"}
    finally:
        opened.close()


def test_a_fast_model_runs_on_the_event_loop_when_nothing_waits(target):
    import asyncio

    from oemkit.serve.batcher import Batcher

    runtime = build_runtime(target.source, Settings(session=SessionSettings()))

    async def twice(inline_s):
        batcher = Batcher(runtime.model, inline_s=inline_s)
        batcher.start()
        try:
            first = await batcher.submit({"x": X}, 4)
            second = await batcher.submit({"x": X}, 4)
        finally:
            await batcher.stop()
        return first, second

    first, second = asyncio.run(twice(1.0))
    assert first.queue_s > 0  # the first goes through the model thread: no estimate yet
    assert second.queue_s == 0.0  # inline: never queued
    assert np.allclose(second.outputs["y"], Y, atol=1e-5)
    first, second = asyncio.run(twice(0.0))
    assert second.queue_s > 0  # --inline-below 0: always the model thread


def test_an_unreadable_license_does_not_hide_a_good_one(signed_bundle, license_root, keys,
                                                        tmp_path):
    from oemkit.serve.runtime import check_licenses

    good = _license(keys, tmp_path, expires="2099-01-01T00:00:00Z")
    opened = open_bundle(signed_bundle, license_root,
                         licenses=[tmp_path / "gone.lic", good])
    try:
        opened.source.policy = LicensePolicy(required=True)
        assert check_licenses(opened.source).state == "valid"
        opened.source.license_files = [tmp_path / "gone.lic"]
        refused = check_licenses(opened.source)
        assert not refused.ready and refused.error["code"] == "E_NOT_FOUND"
    finally:
        opened.close()


# --------------------------------------------------------------------------- the fast path


def _both_ways(app):
    """One ASGI app over a worker's: a request with ``X-Via: starlette`` goes straight to
    the Starlette app behind the fast path, every other one through the fast path; what
    the fast path hands on to Starlette is counted (the hot routes must hand on nothing)."""
    calls = []
    real = app.starlette

    async def counted(scope, receive, send):
        calls.append(scope.get("path", scope["type"]))
        await real(scope, receive, send)

    app.starlette = counted

    async def asgi(scope, receive, send):
        if scope["type"] == "http" and (b"x-via", b"starlette") in scope["headers"]:
            await real(scope, receive, send)
        else:
            await app(scope, receive, send)

    return asgi, calls


def _binary_request():
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [4, 4],
                                   "parameters": {"binary_data_size": 64}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return head + X.astype("<f4").tobytes(), {HEADER: str(len(head)),
                                               "Content-Type": "application/octet-stream"}


def _compare(client, method, path, **kw):
    """The answer through the fast path and through Starlette, which must be the same:
    (status, headers, body)."""
    headers = kw.pop("headers", {})
    content = kw.get("content")
    answers = []
    for via in ({}, {"X-Via": "starlette"}):
        if callable(content):  # an iterator: a chunked body without Content-Length
            kw["content"] = content()
        res = client.request(method, path, headers={**headers, **via}, **kw)
        answers.append((res.status_code, list(res.headers.multi_items()), res.content))
    assert answers[0] == answers[1]
    return answers[0]


@pytest.mark.parametrize("settings", [{}, {"max_batch": 1}])
def test_the_fast_path_answers_as_starlette_does(target, settings):
    from starlette.testclient import TestClient

    runtime = build_runtime(target.source, Settings(session=SessionSettings(), max_body=1024,
                                                    **settings))
    app = worker_app(runtime)
    asgi, calls = _both_ways(app)
    infer = "/v2/models/example/infer"
    with TestClient(asgi) as client:
        for _ in range(3):  # the first runs on the model thread, the next inline
            status, headers, body = _compare(client, "POST", infer, json=_infer_body(id="a"))
            assert status == 200 and dict(headers)["content-type"] == "application/json"
            doc = json.loads(body)
            assert doc["id"] == "a" and np.allclose(
                np.asarray(doc["outputs"][0]["data"]).reshape(Y.shape), Y, atol=1e-5)
        raw, extra = _binary_request()
        status, headers, body = _compare(client, "POST", infer, content=raw, headers=extra)
        fields = dict(headers)
        assert status == 200 and fields["content-type"] == "application/octet-stream"
        size = int(fields[HEADER])
        assert np.allclose(np.frombuffer(body[size:], "<f4").reshape(Y.shape), Y, atol=1e-5)
        for path, code in (("/v2/models/nope/infer", "E_MODEL_NOT_FOUND"),
                           ("/v2/models/example/versions/9/infer", "E_MODEL_NOT_FOUND")):
            status, _, body = _compare(client, "POST", path, json=_infer_body())
            assert status == 404 and json.loads(body)["code"] == code
        status, _, body = _compare(client, "POST", "/v2/models/example/versions/0.2.0/infer",
                                   json=_infer_body())
        assert status == 200
        status, _, body = _compare(client, "POST", infer, content=b"{not json")
        assert status == 400 and json.loads(body)["error"].startswith(
            "the request body is not valid JSON")
        status, _, body = _compare(client, "POST", infer, content=b"x" * 2048)
        assert (status, json.loads(body)) == (413, {
            "error": "the request body is 2048 bytes, over the 1024-byte limit",
            "code": "E_REQUEST_TOO_LARGE"})
        status, headers, body = _compare(client, "POST", infer,
                                         content=lambda: iter([b"x" * 600, b"x" * 600]))
        assert (status, json.loads(body)) == (413, {
            "error": "the request body is over the 1024-byte limit",
            "code": "E_REQUEST_TOO_LARGE"})
        status, headers, body = _compare(client, "GET", "/v2/health/live")
        assert (status, body) == (200, b'{"live":true}')
        status, headers, body = _compare(client, "GET", "/v2/health/ready")
        assert (status, json.loads(body)) == (200, {"ready": True, "license_state": "none"})
        assert calls == ["lifespan"]  # all on the fast path
        status, headers, body = _compare(client, "GET", infer)
        assert status == 405 and json.loads(body)["code"] == "E_REQUEST_INVALID"
        assert calls == ["lifespan", infer]  # what the fast path does not take falls through
        runtime.draining = True
        for method, path in (("POST", infer), ("GET", "/v2/health/ready")):
            status, headers, body = _compare(client, method, path, json=_infer_body())
            assert status == 503 and dict(headers)["retry-after"] == "1"
            assert json.loads(body)["code"] == "E_NOT_READY"
        runtime.draining = False
        text = client.get("/metrics").text
        assert 'oemkit_requests_total{model="example",outcome="too_large"} 4.0' in text


def test_the_fast_path_refuses_as_starlette_does(target):
    from starlette.testclient import TestClient

    target.source.policy = LicensePolicy(required=True)
    runtime = build_runtime(target.source, Settings(session=SessionSettings(),
                                                    token=b"s3cret-token-0123456789"))
    asgi, _ = _both_ways(worker_app(runtime))
    with TestClient(asgi) as client:
        infer = "/v2/models/example/infer"
        status, headers, body = _compare(client, "POST", infer, json=_infer_body())
        assert status == 401 and dict(headers)["www-authenticate"] == "Bearer"
        assert json.loads(body)["code"] == "E_UNAUTHORIZED"
        token = {"Authorization": "Bearer s3cret-token-0123456789"}
        status, headers, body = _compare(client, "POST", infer, json=_infer_body(),
                                         headers=token)
        assert status == 503 and json.loads(body)["code"] == "E_LICENSE_REQUIRED"
        status, headers, body = _compare(client, "GET", "/v2/health/ready")
        assert status == 503 and json.loads(body)["hint"].startswith("attach one")


def test_requests_queued_behind_the_model_thread_drain_on_the_loop(target):
    import asyncio
    import threading

    from oemkit.serve.batcher import Batcher

    runtime = build_runtime(target.source, Settings(session=SessionSettings()))
    where = []
    real = runtime.model.run

    def run(feeds):
        where.append(threading.current_thread().name)
        return real(feeds)

    runtime.model.run = run  # type: ignore[method-assign]

    async def burst():
        batcher = Batcher(runtime.model, inline_s=1.0)
        batcher.start()
        try:
            first = batcher.submit_nowait({"x": X}, 4)  # no estimate yet: the thread
            queued = [batcher.submit_nowait({"x": X}, 4) for _ in range(3)]  # behind it
            assert batcher.depth == 3
            results = await asyncio.gather(first, *queued)
            again = batcher.submit_nowait({"x": X}, 4)  # nothing waits: inline
        finally:
            await batcher.stop()
        return results, again, batcher.batches

    results, again, batches = asyncio.run(burst())
    assert where == ["oemkit-model"] + [threading.current_thread().name] * 4
    assert batches == 5 and all(r.queue_s > 0 for r in results) and again.queue_s == 0.0
    assert all(np.allclose(r.outputs["y"], Y, atol=1e-5) for r in [*results, again])


def test_the_body_reader_waits_counts_and_times_out():
    import asyncio
    import sys

    from oemkit.serve.app import _body, _Disconnected

    async def run():
        parts = [{"type": "http.request", "body": b"ab", "more_body": True},
                 {"type": "http.request", "body": b"cd", "more_body": False}]

        async def slow():  # suspends before each message: the timed path
            await asyncio.sleep(0.01)
            return parts.pop(0)

        assert await _body(slow, None, 10, 5.0) == b"abcd"
        parts[:] = [{"type": "http.request", "body": b"x" * 8, "more_body": True},
                    {"type": "http.request", "body": b"x" * 8, "more_body": True}]
        with pytest.raises(ProtocolError) as err:
            await _body(slow, None, 10, 5.0)
        assert (err.value.status, err.value.message) == (
            413, "the request body is over the 10-byte limit")

        async def stall():
            await asyncio.sleep(60)

        with pytest.raises(ProtocolError) as err:
            await _body(stall, "4", 10, 0.05)
        assert (err.value.status, err.value.code) == (408, "E_REQUEST_TIMEOUT")
        if sys.version_info >= (3, 11):
            assert asyncio.current_task().cancelling() == 0  # the timer's cancel undone
        await asyncio.sleep(0)  # and the task goes on

        async def gone():
            return {"type": "http.disconnect"}

        with pytest.raises(_Disconnected):
            await _body(gone, None, 10, 5.0)

    asyncio.run(run())


# --------------------------------------------------------------------------- metrics tally


def _samples(registry) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples}


def test_the_metrics_tally_writes_what_observe_would():
    """The per-request tally, flushed once per event-loop pass, leaves prometheus_client
    with exactly the values that one observe()/inc() per request would: bucket edges (a
    value equal to a bound counts in that bucket), +Inf, sums, outcomes, in-flight."""
    import asyncio

    from prometheus_client import CollectorRegistry, Counter, Histogram

    from oemkit.serve.metrics import LATENCY_BUCKETS, Metrics

    metrics = Metrics("m")
    reference = CollectorRegistry()
    latency = Histogram("oemkit_request_duration_seconds", "", ["model"],
                        buckets=LATENCY_BUCKETS, registry=reference).labels("m")
    rows = Histogram("oemkit_batch_size", "", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64,
                                                                  128, 256),
                     registry=reference).labels("m")
    outcomes = Counter("oemkit_requests", "", ["model", "outcome"], registry=reference)
    values = [0.0, 0.00005, 0.00005000001, 0.001, 0.3, 10.0, 11.0, 1e9]

    async def serve_all() -> None:
        for i, value in enumerate(values):
            metrics.enter()
            metrics.served(value, 0.0, value, i + 1)
            latency.observe(value)
            rows.observe(i + 1)
            outcomes.labels("m", "success").inc()
        metrics.enter()
        metrics.leave("bad_request")
        outcomes.labels("m", "bad_request").inc()
        metrics.enter()
        metrics.leave(None)  # a client that went away: no outcome
        metrics.enter()  # still in flight at the scrape
        # nothing is written until the loop's next pass
        assert _samples(metrics.registry)[("oemkit_requests_total", (
            ("model", "m"), ("outcome", "success")))] == 0
        await asyncio.sleep(0)

    asyncio.run(serve_all())
    got = _samples(metrics.registry)
    want = _samples(reference)
    for key, value in want.items():
        if key[0].startswith(("oemkit_request_duration", "oemkit_batch_size",
                              "oemkit_requests_total")):
            assert got[key] == pytest.approx(value), key
    assert got[("oemkit_inflight_requests", (("model", "m"),))] == 1
    # render() flushes first: a tally made outside any event loop is written at once
    metrics.leave("timeout")
    assert b'oemkit_requests_total{model="m",outcome="timeout"} 1.0' in metrics.render()[0]
    assert b'oemkit_inflight_requests{model="m"} 0.0' in metrics.render()[0]
