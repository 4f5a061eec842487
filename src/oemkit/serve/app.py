"""The HTTP face of a worker: Open Inference Protocol v2 routes, a pure-ASGI fast path
for the hot ones (infer, live, ready) in front of Starlette for the rest (:class:`App`).

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
import time
from collections.abc import Coroutine
from types import CoroutineType
from typing import TYPE_CHECKING, Any

import orjson

from oemkit.serve.tensors import (
    HEADER,
    InferRequest,
    ProtocolError,
    decode_request,
    encode_response,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator, MutableMapping

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from oemkit.serve.batcher import Done
    from oemkit.serve.runtime import Runtime

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("oemkit.serve")
EXTENSIONS = ["binary_tensor_data", "classification"]
_OUTCOME = {400: "bad_request", 401: "unauthorized", 404: "not_found", 408: "timeout",
            413: "too_large", 503: "overloaded"}

class _Answer:
    """One response, as Starlette's ``Response`` would write it (same status, header order
    and bytes), sendable either through Starlette or straight on the ASGI ``send``: the
    fast path and the Starlette routes build every answer, error JSON included, here."""

    __slots__ = ("body", "headers", "media_type", "status")

    def __init__(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None,
                 media_type: str = "application/json") -> None:
        self.body = body
        self.status = status
        self.headers = headers
        self.media_type = media_type

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """Starlette's order: the given headers (lower-cased), content-length,
        content-type."""
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1"))
               for k, v in (self.headers or {}).items()]
        raw.append((b"content-length", str(len(self.body)).encode("latin-1")))
        raw.append((b"content-type", self.media_type.encode("latin-1")))
        return raw

    def response(self) -> Response:
        """The answer as a Starlette response (for the routes behind the fast path)."""
        from starlette.responses import Response

        return Response(self.body, self.status, self.headers, self.media_type)

    async def send(self, send: Send) -> None:
        """Write the answer on the ASGI connection."""
        await send({"type": "http.response.start", "status": self.status,
                    "headers": self.raw_headers()})
        await send({"type": "http.response.body", "body": self.body})


def _dumps(data: Any) -> bytes:
    """JSON as Starlette's JSONResponse renders it (compact, UTF-8, not ASCII-escaped),
    by orjson."""
    return orjson.dumps(data)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(_dumps(data), status, headers)


def _error(exc: ProtocolError, extra: dict[str, Any] | None = None) -> _Answer:
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


class _Disconnected(Exception):
    """The client went away before its body was complete (nothing to answer)."""


def _too_large(limit: int, length: str | None = None) -> ProtocolError:
    if length is None:
        return ProtocolError(f"the request body is over the {limit}-byte limit", 413,
                             "E_REQUEST_TOO_LARGE")
    return ProtocolError(f"the request body is {length} bytes, over the {limit}-byte limit",
                         413, "E_REQUEST_TOO_LARGE")


class _Resume:
    """Await the rest of a coroutine that was started by hand and suspended, as ``yield
    from`` would: every value it yields goes to the task, everything the task sends or
    throws goes back into it."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Message], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Message]:
        coro, value = self.coro, self.pending
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # handed on to the coroutine, as yield from
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]


async def _body(receive: Receive, length: str | None, limit: int, timeout_s: float) -> bytes:
    """The request body read off ``receive`` (at most ``limit`` bytes, within
    ``timeout_s``): the Content-Length is checked before anything is read, and a body
    without one (chunked) is counted as it comes.

    Raises:
        ProtocolError: 413 (E_REQUEST_TOO_LARGE) over the limit; 408 (E_REQUEST_TIMEOUT)
            when the client stalls.
        _Disconnected: the client closed the connection.
    """
    if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
        raise _too_large(limit, length)
    # A body that came with the headers (nearly every one) is there at once: the first
    # receive() is started by hand and, when it completes without waiting, no timer is
    # armed at all (asyncio.timeout costs about 8 us a request under uvloop)
    coro = receive()
    if type(coro) is not CoroutineType and not isinstance(coro, Coroutine):
        # an awaitable of another kind: no shortcut
        return await _rest(receive, None, coro, limit, timeout_s)
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        message: Message = stop.value
        if message["type"] == "http.request" and not message.get("more_body", False):
            body: bytes = message.get("body", b"")
            if len(body) > limit:
                raise _too_large(limit) from None
            return body
        return await _rest(receive, message, None, limit, timeout_s)
    return await _rest(receive, None, _Resume(coro, pending), limit, timeout_s)


async def _rest(receive: Receive, message: Message | None,
                resume: _Resume | Awaitable[Message] | None, limit: int,
                timeout_s: float) -> bytes:
    """The rest of :func:`_body`, under one timer: the suspended first receive() (or its
    message) and every further one."""
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(timeout_s, expire)
    try:
        if message is None:
            assert resume is not None
            message = await resume
        chunks: list[bytes] = []
        size = 0
        while True:
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > limit:
                raise _too_large(limit)
            if not message.get("more_body", False):
                return b"".join(chunks)
            message = await receive()
    except asyncio.CancelledError:
        if not expired:
            raise
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
        raise ProtocolError(f"the client sent no complete body within {timeout_s:g} s", 408,
                            "E_REQUEST_TIMEOUT") from None
    finally:
        handle.cancel()
        if isinstance(resume, _Resume):
            resume.coro.close()  # a no-op once finished; releases one cut short


def _model_path(rest: str) -> tuple[str, str | None] | None:
    """``NAME`` or ``NAME/versions/VERSION`` (each one non-empty path segment, as the
    Starlette patterns ``{name}`` and ``{version}`` match), else None."""
    if "/" not in rest:
        return (rest, None) if rest else None
    name, sep, version = rest.partition("/versions/")
    if not sep or not name or not version or "/" in name or "/" in version:
        return None
    return name, version


class _Routes:
    """The route handlers of one worker, over its runtime: each builds an :class:`_Answer`
    from plain values (path parameters, header values), so that the fast path and the
    Starlette routes answer with the same code."""

    def __init__(self, runtime: Runtime) -> None:
        from oemkit import __version__

        self.runtime = runtime
        self.model = runtime.model
        self.metrics = runtime.metrics
        self.token = runtime.settings.token
        self.version = __version__

    # ------------------------------------------------------------------ checks

    def authorize(self, given: str | None) -> None:
        """Raise 401 unless ``given`` (the Authorization header) is the bearer token."""
        if self.token is None:
            return
        given = given or ""
        if not (given.startswith("Bearer ") and hmac.compare_digest(
                given[7:].strip().encode(), self.token)):
            raise ProtocolError("a valid bearer token is needed (Authorization: Bearer ...)",
                                401, "E_UNAUTHORIZED")

    def find_model(self, name: str, version: str | None) -> None:
        """Raise 404 unless the path names the served model (and version)."""
        if name != self.model.name:
            raise ProtocolError(f"unknown model '{name}' (this server serves "
                                f"'{self.model.name}')", 404, "E_MODEL_NOT_FOUND")
        if version is not None and version != self.model.version:
            raise ProtocolError(f"unknown version '{version}' of model '{name}' (serving "
                                f"{self.model.version})", 404, "E_MODEL_NOT_FOUND")

    def refused(self, request: Request) -> _Answer | None:
        """The error answer for a request without the token or for another model."""
        try:
            self.authorize(request.headers.get("authorization"))
            self.find_model(request.path_params["name"], request.path_params.get("version"))
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

    # ------------------------------------------------------------------ answers

    def live_answer(self) -> _Answer:
        return _json({"live": True})

    def ready_answer(self) -> _Answer:
        standing = self.runtime.standing
        if self.runtime.ready:
            return _json({"ready": True, "license_state": standing.state})
        return _error(self.not_ready(), {"ready": False, "license_state": standing.state,
                                         "hint": (standing.error or {}).get("hint", "")})

    async def infer_answer(self, name: str, version: str | None, authorization: str | None,
                           length: str | None, header_length: str | None,
                           receive: Receive) -> _Answer | None:
        """The answer to an infer request (None: the client went away mid-body), with its
        metrics. ``length`` and ``header_length``: the Content-Length and
        Inference-Header-Content-Length values (None: absent)."""
        started = time.perf_counter()
        metrics = self.metrics
        metrics.enter()
        try:
            answer, done = await self._infer(name, version, authorization, length,
                                             header_length, receive)
        except ProtocolError as exc:
            metrics.leave("not_ready" if exc.code == "E_NOT_READY"
                          else _OUTCOME.get(exc.status, "error"))
            if exc.code == "E_RUNTIME_CRASH":
                log.error(exc.message, extra={"fields": {"code": exc.code}})
            return _error(exc)
        except _Disconnected:  # nothing is answered, so no outcome is counted
            metrics.leave(None)
            return None
        except BaseException:
            metrics.leave(None)
            raise
        metrics.served(time.perf_counter() - started, done.queue_s, done.compute_s,
                       done.batch_rows)
        return answer

    async def _infer(self, name: str, version: str | None, authorization: str | None,
                     length: str | None, header_length: str | None,
                     receive: Receive) -> tuple[_Answer, Done]:
        from oemkit.serve.batcher import Done

        self.authorize(authorization)
        self.find_model(name, version)
        runtime = self.runtime
        if not runtime.ready:
            raise self.not_ready()
        settings = runtime.settings
        body = await _body(receive, length, settings.max_body, settings.request_timeout_s)
        req = decode_request(body, {} if header_length is None else {HEADER: header_length})
        rows = self.model.check_inputs(req.inputs)
        if req.outputs:
            self._check_outputs(req)
        batcher = runtime.batcher
        assert batcher is not None
        queued = batcher.submit_nowait(req.inputs, rows)
        done = queued if isinstance(queued, Done) else await queued
        payload, json_len = encode_response(self.model.name, self.model.version,
                                            self._outputs(req, done), req.id)
        meter = runtime.meter
        if meter is not None:  # usage metering: a dictionary increment, flushed off-path
            meter.count(rows, ("classification",) if req.outputs and any(
                item.classification for item in req.outputs) else ())
        headers = {}
        state = runtime.standing.state
        if state == "grace":
            headers["OEMKit-License"] = "grace"
        elif state == "invalid":
            headers["OEMKit-License"] = "degraded"
        if json_len is None:
            return _Answer(payload, 200, headers), done
        headers["Inference-Header-Content-Length"] = str(json_len)
        return _Answer(payload, 200, headers, "application/octet-stream"), done

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

    # ------------------------------------------------------------------ Starlette routes

    async def live(self, request: Request) -> Response:
        return self.live_answer().response()

    async def ready(self, request: Request) -> Response:
        return self.ready_answer().response()

    async def server(self, request: Request) -> Response:
        try:
            self.authorize(request.headers.get("authorization"))
        except ProtocolError as exc:
            return _error(exc).response()
        return _json({"name": "oemkit", "version": self.version,
                      "extensions": EXTENSIONS}).response()

    async def metadata(self, request: Request) -> Response:
        return (self.refused(request) or _json(self.model.metadata())).response()

    async def model_ready(self, request: Request) -> Response:
        answer = self.refused(request)
        if answer is None:
            if self.runtime.ready:
                answer = _json({"name": self.model.name, "ready": True})
            else:
                answer = _error(self.not_ready(), {"name": self.model.name, "ready": False})
        return answer.response()

    async def infer(self, request: Request) -> Response:
        headers = request.headers
        answer = await self.infer_answer(
            request.path_params["name"], request.path_params.get("version"),
            headers.get("authorization"), headers.get("content-length"), headers.get(HEADER),
            request.receive)
        if answer is None:  # the client is gone: nothing will be delivered
            from starlette.responses import Response

            return Response(status_code=400)
        return answer.response()

    async def prometheus(self, request: Request) -> Response:
        try:
            self.authorize(request.headers.get("authorization"))
        except ProtocolError as exc:
            return _error(exc).response()
        body, content_type = self.metrics.render()
        return _Answer(body, 200, None, content_type).response()

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return _error(ProtocolError(f"no such endpoint: {request.method} {request.url.path}",
                                    404, "E_NOT_FOUND")).response()

    async def bad_method(self, request: Request, exc: Exception) -> Response:
        return _error(ProtocolError(f"{request.method} is not allowed on {request.url.path}",
                                    405, "E_REQUEST_INVALID")).response()


_LIVE = "/v2/health/live"
_READY = "/v2/health/ready"
_MODELS = "/v2/models/"


class App:
    """A worker's ASGI application: a pure-ASGI fast path for the hot routes (``POST
    .../infer``, ``GET /v2/health/live`` and ``/ready``) in front of the Starlette app,
    which gets everything else (lifespan, the other routes and methods, 404 and 405).

    The fast path matches ``scope["path"]`` by plain string tests, reads the body straight
    from ``receive`` and writes the answer itself: Starlette's routing, Request and
    Response cost more per request than the protocol's own work on a small model
    (benchmarks/RESULTS.md "Serving runtime"). Both paths build their answers with the
    same :class:`_Routes` code, so status, headers and body are the same either way.
    """

    def __init__(self, routes: _Routes, starlette: Starlette) -> None:
        self.routes = routes
        #: The Starlette app behind the fast path (tests call it directly to compare).
        self.starlette = starlette

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            method = scope["method"]
            path: str = scope["path"]
            if method == "POST":
                if path.startswith(_MODELS) and path.endswith("/infer"):
                    where = _model_path(path[len(_MODELS):-6])
                    if where is not None:
                        await self._infer(scope, receive, send, *where)
                        return
            elif method == "GET":
                if path == _LIVE:
                    await self.routes.live_answer().send(send)
                    return
                if path == _READY:
                    await self.routes.ready_answer().send(send)
                    return
        await self.starlette(scope, receive, send)

    async def _infer(self, scope: Scope, receive: Receive, send: Send, name: str,
                     version: str | None) -> None:
        authorization = length = header_length = None
        for key, value in scope["headers"]:  # the first of each, as Starlette's Headers
            if key == b"content-length":
                if length is None:
                    length = value.decode("latin-1")
            elif key == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif key == b"inference-header-content-length" and header_length is None:
                header_length = value.decode("latin-1")
        answer = await self.routes.infer_answer(name, version, authorization, length,
                                                header_length, receive)
        if answer is not None:
            await answer.send(send)


def create_app(runtime: Runtime, *, on_startup: Callable[[], Awaitable[None]] | None = None,
               on_shutdown: Callable[[], Awaitable[None]] | None = None) -> App:
    """The ASGI application for ``runtime`` (its batcher is started by ``on_startup``):
    the fast path in front of the Starlette app."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.routing import Route

    r = _Routes(runtime)
    model = "/v2/models/{name}"
    version = "/v2/models/{name}/versions/{version}"
    routes = [  # behind the fast path: reached with a root_path, or from tests
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

    return App(r, Starlette(routes=routes, lifespan=lifespan,
                            exception_handlers={404: r.not_found, 405: r.bad_method}))
