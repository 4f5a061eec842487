"""The HTTP face of a worker: Open Inference Protocol v2 routes on Starlette.

Routes (docs/SERVE.md "Endpoints"): ``/v2/health/live``, ``/v2/health/ready``, ``/v2``,
``/v2/models/{name}[/versions/{version}]``, ``.../ready``, ``.../infer`` and
``/metrics``. Every refusal is the protocol's error JSON, ``{"error": message}``, with
oemkit's ``code`` and ``hint`` beside it and the right status: 400 a malformed request,
401 a missing or wrong bearer token, 404 an unknown model or version, 408 a client that
stalls while sending its body, 413 a body over the limit, 503 not ready or a full queue
(with ``Retry-After``), 500 a model that fails.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from oemkit.serve.tensors import ProtocolError, decode_request, encode_response

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from oemkit.serve.runtime import Runtime

log = logging.getLogger("oemkit.serve")
EXTENSIONS = ["binary_tensor_data", "classification"]
_OUTCOME = {400: "bad_request", 401: "unauthorized", 404: "not_found", 408: "timeout",
            413: "too_large", 503: "overloaded"}

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10
    import contextlib

    @contextlib.asynccontextmanager
    async def _timeout(seconds: float) -> Any:
        task = asyncio.current_task()
        assert task is not None
        handle = asyncio.get_running_loop().call_later(seconds, task.cancel)
        try:
            yield
        except asyncio.CancelledError:
            raise TimeoutError from None
        finally:
            handle.cancel()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status_code=status, headers=headers)


def _error(exc: ProtocolError, extra: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"error": exc.message, "code": exc.code}
    if exc.status == 503:
        headers = {"Retry-After": "1"}
    elif exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    else:
        headers = {}
    if extra:
        body.update(extra)
    return _json(body, exc.status, headers)


async def _body(request: Request, limit: int, timeout_s: float) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ProtocolError(f"the request body is {length} bytes, over the {limit}-byte limit",
                            413, "E_REQUEST_TOO_LARGE")
    chunks: list[bytes] = []
    size = 0
    try:
        async with _timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ProtocolError(f"the request body is over the {limit}-byte limit",
                                        413, "E_REQUEST_TOO_LARGE")
                chunks.append(chunk)
    except TimeoutError:
        raise ProtocolError(f"the client sent no complete body within {timeout_s:g} s", 408,
                            "E_REQUEST_TIMEOUT") from None
    return b"".join(chunks)


def create_app(runtime: Runtime, *, on_startup: Callable[[], Awaitable[None]] | None = None,
               on_shutdown: Callable[[], Awaitable[None]] | None = None) -> Starlette:
    """The ASGI application for ``runtime`` (its batcher is started by ``on_startup``)."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from oemkit import __version__

    model = runtime.model
    metrics = runtime.metrics
    token = runtime.settings.token

    def authorize(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not (given.startswith("Bearer ") and hmac.compare_digest(
                given[7:].strip().encode(), token)):
            raise ProtocolError("a valid bearer token is needed (Authorization: Bearer ...)",
                                401, "E_UNAUTHORIZED")

    def find_model(request: Request) -> None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != model.name:
            raise ProtocolError(f"unknown model '{name}' (this server serves "
                                f"'{model.name}')", 404, "E_MODEL_NOT_FOUND")
        if version is not None and version != model.version:
            raise ProtocolError(f"unknown version '{version}' of model '{name}' (serving "
                                f"{model.version})", 404, "E_MODEL_NOT_FOUND")

    def not_ready() -> ProtocolError:
        error = runtime.standing.error or {}
        if runtime.draining:
            return ProtocolError("the server is shutting down", 503, "E_NOT_READY")
        return ProtocolError(error.get("message", "the model is not ready"), 503,
                             error.get("code", "E_NOT_READY"))

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        if runtime.ready:
            return _json({"ready": True, "license_state": runtime.standing.state})
        exc = not_ready()
        return _error(exc, {"ready": False, "license_state": runtime.standing.state,
                            "hint": (runtime.standing.error or {}).get("hint", "")})

    async def server(request: Request) -> Response:
        try:
            authorize(request)
        except ProtocolError as exc:
            return _error(exc)
        return _json({"name": "oemkit", "version": __version__, "extensions": EXTENSIONS})

    def refused(request: Request) -> Response | None:
        """The error answer for a request without the token or for another model."""
        try:
            authorize(request)
            find_model(request)
        except ProtocolError as exc:
            return _error(exc)
        return None

    async def metadata(request: Request) -> Response:
        return refused(request) or _json(model.metadata())

    async def model_ready(request: Request) -> Response:
        answer = refused(request)
        if answer is not None:
            return answer
        if runtime.ready:
            return _json({"name": model.name, "ready": True})
        return _error(not_ready(), {"name": model.name, "ready": False})

    async def infer(request: Request) -> Response:
        started = time.perf_counter()
        metrics.inflight.labels(model.name).inc()
        try:
            authorize(request)
            find_model(request)
            if not runtime.ready:
                raise not_ready()
            body = await _body(request, runtime.settings.max_body,
                               runtime.settings.request_timeout_s)
            req = decode_request(body, request.headers)
            rows = model.check_inputs(req.inputs)
            wanted = req.outputs
            if wanted is not None:
                for item in wanted:
                    model.output_spec(item.name)
                    if item.classification and not runtime.standing.allows("classification"):
                        raise ProtocolError("the classification extension is not licensed "
                                            "on this runtime", 403, "E_ENTITLEMENT")
            assert runtime.batcher is not None
            done = await runtime.batcher.submit(req.inputs, rows)
            result = []
            if wanted is None:
                for name, array in done.outputs.items():
                    result.append((name, array, req.binary_output_default))
            else:
                from oemkit.serve.model import classify

                for item in wanted:
                    array = done.outputs[item.name]
                    if item.classification:
                        array = classify(array, item.classification, runtime.labels,
                                         runtime.score_threshold)
                    binary = req.binary_output_default if item.binary is None else item.binary
                    result.append((item.name, array, binary))
            payload, json_len = encode_response(model.name, model.version, result, req.id)
        except ProtocolError as exc:
            metrics.requests.labels(model.name, _OUTCOME.get(exc.status, "error")
                                    if exc.code != "E_NOT_READY" else "not_ready").inc()
            if exc.status >= 500 and exc.code == "E_RUNTIME_CRASH":
                log.error(exc.message, extra={"fields": {"code": exc.code}})
            return _error(exc)
        finally:
            metrics.inflight.labels(model.name).dec()
        metrics.requests.labels(model.name, "success").inc()
        metrics.latency.labels(model.name).observe(time.perf_counter() - started)
        metrics.queue.labels(model.name).observe(done.queue_s)
        metrics.compute.labels(model.name).observe(done.compute_s)
        metrics.batch.labels(model.name).observe(done.batch_rows)
        headers = {}
        if runtime.standing.state == "grace":
            headers["OEMKit-License"] = "grace"
        elif runtime.standing.state == "invalid":
            headers["OEMKit-License"] = "degraded"
        if json_len is None:
            return Response(payload, media_type="application/json", headers=headers)
        headers["Inference-Header-Content-Length"] = str(json_len)
        return Response(payload, media_type="application/octet-stream", headers=headers)

    async def prometheus(request: Request) -> Response:
        try:
            authorize(request)
        except ProtocolError as exc:
            return _error(exc)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    async def unknown(request: Request) -> Response:
        return _error(ProtocolError(f"no such endpoint: {request.method} {request.url.path}",
                                    404, "E_NOT_FOUND"))

    routes = [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server, methods=["GET"]),
        Route("/v2/models/{name}", metadata, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        if on_startup is not None:
            await on_startup()
        yield
        if on_shutdown is not None:
            await on_shutdown()

    async def not_found(request: Request, exc: Exception) -> Response:
        return await unknown(request)

    async def bad_method(request: Request, exc: Exception) -> Response:
        return _error(ProtocolError(f"{request.method} is not allowed on {request.url.path}",
                                    405, "E_REQUEST_INVALID"))

    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={404: not_found, 405: bad_method})
