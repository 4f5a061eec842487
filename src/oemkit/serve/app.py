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

from oemkit.serve.metrics import OUTCOMES
from oemkit.serve.tensors import InferRequest, ProtocolError, decode_request, encode_response

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from oemkit.serve.batcher import Done
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
    if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
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


class _Routes:
    """The route handlers of one worker, over its runtime."""

    def __init__(self, runtime: Runtime) -> None:
        from oemkit import __version__

        self.runtime = runtime
        self.model = runtime.model
        self.metrics = runtime.metrics
        self.token = runtime.settings.token
        self.version = __version__
        # the labelled children, looked up once (a labels() call takes a lock each time)
        name = runtime.model.name
        m = runtime.metrics
        self._outcomes = {o: m.requests.labels(name, o) for o in OUTCOMES}
        self._inflight = m.inflight.labels(name)
        self._latency = m.latency.labels(name)
        self._queue = m.queue.labels(name)
        self._compute = m.compute.labels(name)
        self._batch = m.batch.labels(name)

    # ------------------------------------------------------------------ checks

    def authorize(self, request: Request) -> None:
        """Raise 401 unless the request carries the configured bearer token."""
        if self.token is None:
            return
        given = request.headers.get("authorization", "")
        if not (given.startswith("Bearer ") and hmac.compare_digest(
                given[7:].strip().encode(), self.token)):
            raise ProtocolError("a valid bearer token is needed (Authorization: Bearer ...)",
                                401, "E_UNAUTHORIZED")

    def find_model(self, request: Request) -> None:
        """Raise 404 unless the path names the served model (and version)."""
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != self.model.name:
            raise ProtocolError(f"unknown model '{name}' (this server serves "
                                f"'{self.model.name}')", 404, "E_MODEL_NOT_FOUND")
        if version is not None and version != self.model.version:
            raise ProtocolError(f"unknown version '{version}' of model '{name}' (serving "
                                f"{self.model.version})", 404, "E_MODEL_NOT_FOUND")

    def refused(self, request: Request) -> Response | None:
        """The error answer for a request without the token or for another model."""
        try:
            self.authorize(request)
            self.find_model(request)
        except ProtocolError as exc:
            return _error(exc)
        return None

    def not_ready(self) -> ProtocolError:
        """Why the runtime does not serve: draining, or its license standing."""
        if self.runtime.draining:
            return ProtocolError("the server is shutting down", 503, "E_NOT_READY")
        error = self.runtime.standing.error or {}
        return ProtocolError(error.get("message", "the model is not ready"), 503,
                             error.get("code", "E_NOT_READY"))

    # ------------------------------------------------------------------ routes

    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        standing = self.runtime.standing
        if self.runtime.ready:
            return _json({"ready": True, "license_state": standing.state})
        return _error(self.not_ready(), {"ready": False, "license_state": standing.state,
                                         "hint": (standing.error or {}).get("hint", "")})

    async def server(self, request: Request) -> Response:
        try:
            self.authorize(request)
        except ProtocolError as exc:
            return _error(exc)
        return _json({"name": "oemkit", "version": self.version, "extensions": EXTENSIONS})

    async def metadata(self, request: Request) -> Response:
        return self.refused(request) or _json(self.model.metadata())

    async def model_ready(self, request: Request) -> Response:
        answer = self.refused(request)
        if answer is not None:
            return answer
        if self.runtime.ready:
            return _json({"name": self.model.name, "ready": True})
        return _error(self.not_ready(), {"name": self.model.name, "ready": False})

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        self._inflight.inc()
        try:
            response, done = await self._infer(request)
        except ProtocolError as exc:
            outcome = "not_ready" if exc.code == "E_NOT_READY" else _OUTCOME.get(exc.status,
                                                                                   "error")
            self._outcomes[outcome].inc()
            if exc.code == "E_RUNTIME_CRASH":
                log.error(exc.message, extra={"fields": {"code": exc.code}})
            return _error(exc)
        finally:
            self._inflight.dec()
        self._outcomes["success"].inc()
        self._latency.observe(time.perf_counter() - started)
        self._queue.observe(done.queue_s)
        self._compute.observe(done.compute_s)
        self._batch.observe(done.batch_rows)
        return response

    async def _infer(self, request: Request) -> tuple[Response, Done]:
        from starlette.responses import Response

        self.authorize(request)
        self.find_model(request)
        runtime = self.runtime
        if not runtime.ready:
            raise self.not_ready()
        body = await _body(request, runtime.settings.max_body,
                           runtime.settings.request_timeout_s)
        req = decode_request(body, request.headers)
        rows = self.model.check_inputs(req.inputs)
        self._check_outputs(req)
        assert runtime.batcher is not None
        done = await runtime.batcher.submit(req.inputs, rows)
        payload, json_len = encode_response(self.model.name, self.model.version,
                                            self._outputs(req, done), req.id)
        headers = {}
        if runtime.standing.state == "grace":
            headers["OEMKit-License"] = "grace"
        elif runtime.standing.state == "invalid":
            headers["OEMKit-License"] = "degraded"
        if json_len is None:
            return Response(payload, media_type="application/json", headers=headers), done
        headers["Inference-Header-Content-Length"] = str(json_len)
        return Response(payload, media_type="application/octet-stream", headers=headers), done

    def _check_outputs(self, req: InferRequest) -> None:
        for item in req.outputs or ():
            self.model.output_spec(item.name)
            if item.classification and not self.runtime.standing.allows("classification"):
                raise ProtocolError("the classification extension is not licensed on this "
                                    "runtime", 403, "E_ENTITLEMENT")

    def _outputs(self, req: InferRequest, done: Done) -> list[tuple[str, Any, bool]]:
        """(name, array, binary) of each output the request asked for (all by default)."""
        if req.outputs is None:
            return [(n, a, req.binary_output_default) for n, a in done.outputs.items()]
        from oemkit.serve.model import classify

        result = []
        for item in req.outputs:
            array = done.outputs[item.name]
            if item.classification:
                array = classify(array, item.classification, self.runtime.labels,
                                 self.runtime.score_threshold)
            binary = req.binary_output_default if item.binary is None else item.binary
            result.append((item.name, array, binary))
        return result

    async def prometheus(self, request: Request) -> Response:
        from starlette.responses import Response

        try:
            self.authorize(request)
        except ProtocolError as exc:
            return _error(exc)
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return _error(ProtocolError(f"no such endpoint: {request.method} {request.url.path}",
                                    404, "E_NOT_FOUND"))

    async def bad_method(self, request: Request, exc: Exception) -> Response:
        return _error(ProtocolError(f"{request.method} is not allowed on {request.url.path}",
                                    405, "E_REQUEST_INVALID"))


def create_app(runtime: Runtime, *, on_startup: Callable[[], Awaitable[None]] | None = None,
               on_shutdown: Callable[[], Awaitable[None]] | None = None) -> Starlette:
    """The ASGI application for ``runtime`` (its batcher is started by ``on_startup``)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.routing import Route

    r = _Routes(runtime)
    model = "/v2/models/{name}"
    version = "/v2/models/{name}/versions/{version}"
    routes = [  # the hot route first: Starlette tries the patterns in order
        Route(f"{model}/infer", r.infer, methods=["POST"]),
        Route(f"{version}/infer", r.infer, methods=["POST"]),
        Route("/v2/health/live", r.live, methods=["GET"]),
        Route("/v2/health/ready", r.ready, methods=["GET"]),
        Route("/v2", r.server, methods=["GET"]),
        Route(model, r.metadata, methods=["GET"]),
        Route(version, r.metadata, methods=["GET"]),
        Route(f"{model}/ready", r.model_ready, methods=["GET"]),
        Route(f"{version}/ready", r.model_ready, methods=["GET"]),
        Route("/metrics", r.prometheus, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        if on_startup is not None:
            await on_startup()
        yield
        if on_shutdown is not None:
            await on_shutdown()

    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={404: r.not_found, 405: r.bad_method})
