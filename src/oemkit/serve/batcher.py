"""Server-side dynamic batching, as Triton's dynamic batcher: requests waiting for the
model are stacked along their first dimension up to ``max_batch`` rows, waiting at most
``max_delay`` for more to arrive (0: take what is already queued, never wait).

One batcher per worker owns the worker's session and runs it on one thread of its own, so
the event loop keeps reading requests while the model computes, and whatever arrives
meanwhile forms the next batch. The queue is bounded: a request beyond ``max_queue`` is
refused at once (503 with ``Retry-After``) instead of growing memory without bound.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oemkit.serve.tensors import ProtocolError

if TYPE_CHECKING:
    import numpy as np

    from oemkit.serve.model import Model


@dataclass
class Done:
    """What one request got back: its outputs and how long it queued and computed."""

    outputs: dict[str, Any]
    queue_s: float
    compute_s: float
    batch_rows: int


class _Job:
    __slots__ = ("enqueued", "future", "inputs", "key", "rows")

    def __init__(self, inputs: dict[str, np.ndarray], rows: int,
                 future: asyncio.Future[Done]) -> None:
        self.inputs = inputs
        self.rows = rows
        self.future = future
        self.key: tuple[Any, ...] | None = None  # computed when batching needs it
        self.enqueued = time.perf_counter()

    def batch_key(self) -> tuple[Any, ...]:
        if self.key is None:
            self.key = _key(self.inputs)
        return self.key


def _key(inputs: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """Requests can share a batch when every input agrees on dtype and on every dimension
    but the first."""
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items()))


_STOP = object()


class Batcher:
    """Queue, batch and run requests on the worker's model.

    Event-driven, without a loop task or wake-up events: a request that cannot run inline
    gets one future; when the model thread is idle the batch starts at once (or, with
    ``max_delay``, when the oldest queued request has waited that long or the batch is
    full), and the thread hands the outputs back with one ``call_soon_threadsafe``.
    """

    def __init__(self, model: Model, *, max_batch: int = 1, max_delay_s: float = 0.0,
                 max_queue: int = 256, inline_s: float = 0.0) -> None:
        self.model = model
        #: A model whose recent batches computed faster than this runs on the event loop
        #: when nothing waits (0: never): handing it to the model thread would cost more
        #: than it computes (docs/SERVE.md "Workers and batching").
        self.inline_s = inline_s
        self._ewma: float | None = None
        self._busy = False
        self.max_batch = max_batch if model.batchable else 1
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self._pending: collections.deque[_Job] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0

    def start(self) -> None:
        """Bind to the running event loop and start the model thread."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._worker, name="oemkit-model",
                                        daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Refuse what is still queued (503), stop and join the model thread."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(ProtocolError("the server is shutting down", 503,
                                                       "E_NOT_READY"))
        self._pending.clear()
        if self._thread is not None:
            self._work.put(_STOP)
            self._thread.join()
            self._thread = None

    @property
    def depth(self) -> int:
        """Requests waiting for a batch now."""
        return len(self._pending)

    async def submit(self, inputs: dict[str, np.ndarray], rows: int) -> Done:
        """Queue one request and wait for its outputs.

        Raises:
            ProtocolError: 503 (E_OVERLOADED) when the queue is full; 400 when the request
                has more rows than ``max_batch``; 500 (E_RUNTIME_CRASH) when the model fails.
        """
        done = self.submit_nowait(inputs, rows)
        if isinstance(done, Done):
            return done
        return await done

    def submit_nowait(self, inputs: dict[str, np.ndarray],
                      rows: int) -> Done | asyncio.Future[Done]:
        """:meth:`submit` without a coroutine: the outputs when the model ran inline (fast,
        nothing waiting), else the future of the queued request.

        Raises:
            ProtocolError: as :meth:`submit`.
        """
        max_batch = self.max_batch
        if max_batch > 1 and rows > max_batch:
            raise ProtocolError(f"batch size {rows} exceeds max_batch {max_batch}")
        pending = self._pending
        if len(pending) >= self.max_queue:
            raise ProtocolError(f"the queue is full ({self.max_queue} requests waiting)", 503,
                                "E_OVERLOADED")
        ewma = self._ewma
        if (not pending and not self._busy and ewma is not None and ewma < self.inline_s
                and self.max_delay_s == 0):
            started = time.perf_counter()
            try:
                outputs = self.model.run(inputs)
            except Exception as exc:  # onnxruntime raises several unrelated types
                raise ProtocolError(f"the model failed: {exc}", 500, "E_RUNTIME_CRASH") from None
            compute = time.perf_counter() - started
            self.batches += 1
            self._ewma = 0.8 * ewma + 0.2 * compute
            return Done(outputs, 0.0, compute, rows)
        loop = self._loop
        if loop is None:
            raise ProtocolError("the server is not started", 503, "E_NOT_READY")
        job = _Job(inputs, rows, loop.create_future())
        pending.append(job)
        if not self._busy:
            self._dispatch()
        return job.future

    # ------------------------------------------------------------------ the event loop side

    def _dispatch(self) -> None:
        """Start the next batch on the model thread (it is idle), or arm the timer that
        will when the oldest request has waited ``max_delay``."""
        while self._pending:
            if self.max_delay_s > 0 and self.max_batch > 1:
                assert self._loop is not None
                wait = self._pending[0].enqueued + self.max_delay_s - time.perf_counter()
                if wait > 0 and self._rows_ready() < self.max_batch:
                    if self._timer is None:
                        self._timer = self._loop.call_later(wait, self._on_timer)
                    return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            jobs = [j for j in self._take() if not j.future.done()]  # clients gone away
            if not jobs:
                continue
            try:
                feeds = jobs[0].inputs if len(jobs) == 1 else _stack(jobs)
            except Exception as exc:  # numpy refusing to stack: answer, go on
                self._fail(jobs, exc)
                continue
            ewma = self._ewma
            if ewma is not None and ewma < self.inline_s and self.max_delay_s == 0:
                # a fast model drains what queued behind the thread here, on the loop:
                # else a busy server would stay on the thread for good (every arrival
                # finds the queue non-empty) and pay the hand-off on every request
                started = time.perf_counter()
                try:
                    outputs = self.model.run(feeds)
                except Exception as exc:  # onnxruntime raises several unrelated types
                    self._fail(jobs, exc)
                    continue
                self._answer(jobs, started, time.perf_counter() - started, outputs)
                continue
            self._busy = True
            self._work.put((jobs, feeds))
            return

    def _on_timer(self) -> None:
        self._timer = None
        if not self._busy:
            self._dispatch()

    def _rows_ready(self) -> int:
        """Rows queued that could join the oldest request's batch."""
        first = self._pending[0]
        key = first.batch_key()
        return sum(j.rows for j in self._pending if j.batch_key() == key)

    def _take(self) -> list[_Job]:
        first = self._pending.popleft()
        jobs, rows = [first], first.rows
        if self.max_batch <= 1:
            return jobs
        key = first.batch_key()
        keep: collections.deque[_Job] = collections.deque()
        while self._pending and rows < self.max_batch:
            job = self._pending.popleft()
            if job.batch_key() == key and rows + job.rows <= self.max_batch:
                jobs.append(job)
                rows += job.rows
            else:
                keep.append(job)
        keep.extend(self._pending)
        self._pending = keep
        return jobs

    def _finish(self, jobs: list[_Job], started: float, compute: float, outputs: Any,
                error: BaseException | None) -> None:
        """On the event loop: the model thread's batch is done; answer its requests and
        start the next one."""
        self._busy = False
        if error is not None:
            self._fail(jobs, error)
        else:
            self._answer(jobs, started, compute, outputs)
        if self._pending:
            self._dispatch()

    def _answer(self, jobs: list[_Job], started: float, compute: float,
                outputs: Any) -> None:
        self.batches += 1
        self._ewma = compute if self._ewma is None else 0.8 * self._ewma + 0.2 * compute
        rows = sum(j.rows for j in jobs)
        parts = [outputs] if len(jobs) == 1 else _split(outputs, jobs)
        for job, part in zip(jobs, parts, strict=True):
            if not job.future.done():
                job.future.set_result(Done(part, started - job.enqueued, compute, rows))

    @staticmethod
    def _fail(jobs: list[_Job], error: BaseException) -> None:
        failure = ProtocolError(f"the model failed: {error}", 500, "E_RUNTIME_CRASH")
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(failure)

    # ------------------------------------------------------------------ the model thread

    def _worker(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            jobs, feeds = item
            started = time.perf_counter()
            outputs: Any = None
            error: BaseException | None = None
            try:
                outputs = self.model.run(feeds)
            except Exception as exc:  # onnxruntime raises several unrelated types
                error = exc
            compute = time.perf_counter() - started
            try:
                loop.call_soon_threadsafe(self._finish, jobs, started, compute, outputs, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return


def _stack(jobs: list[_Job]) -> dict[str, np.ndarray]:
    import numpy

    return {name: numpy.concatenate([j.inputs[name] for j in jobs], axis=0)
            for name in jobs[0].inputs}


def _split(outputs: dict[str, Any], jobs: list[_Job]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{} for _ in jobs]
    for name, array in outputs.items():
        start = 0
        for index, job in enumerate(jobs):
            parts[index][name] = array[start:start + job.rows]
            start += job.rows
    return parts
