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
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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


@dataclass
class _Job:
    inputs: dict[str, np.ndarray]
    rows: int
    key: tuple[Any, ...]
    future: asyncio.Future[Done]
    enqueued: float = field(default_factory=time.perf_counter)


def _key(inputs: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """Requests can share a batch when every input agrees on dtype and on every dimension
    but the first."""
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items()))


class Batcher:
    """Queue, batch and run requests on the worker's model."""

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
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="oemkit-model")
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def start(self) -> None:
        """Start the batch loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop, refuse what is still queued (503), join the model thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(ProtocolError("the server is shutting down", 503,
                                                       "E_NOT_READY"))
        self._pending.clear()
        self._pool.shutdown(wait=True)

    @property
    def depth(self) -> int:
        """Requests waiting for a batch now."""
        return len(self._pending)

    async def submit(self, inputs: dict[str, np.ndarray], rows: int) -> Done:
        """Queue one request and wait for its outputs.

        Raises:
            ProtocolError: 503 (E_OVERLOADED) when the queue is full; 400 when the request
                has more rows than ``max_batch``.
        """
        if self.max_batch > 1 and rows > self.max_batch:
            raise ProtocolError(f"batch size {rows} exceeds max_batch {self.max_batch}")
        if len(self._pending) >= self.max_queue:
            raise ProtocolError(f"the queue is full ({self.max_queue} requests waiting)", 503,
                                "E_OVERLOADED")
        if (self.inline_s > 0 and self.max_delay_s == 0 and not self._pending
                and not self._busy and self._ewma is not None and self._ewma < self.inline_s):
            started = time.perf_counter()
            try:
                outputs = self.model.run(inputs)
            except Exception as exc:  # onnxruntime raises several unrelated types
                raise ProtocolError(f"the model failed: {exc}", 500, "E_RUNTIME_CRASH") from None
            compute = time.perf_counter() - started
            self._observe(compute)
            return Done(outputs, 0.0, compute, rows)
        job = _Job(inputs, rows, _key(inputs), asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wake.set()
        return await job.future

    def _observe(self, compute: float) -> None:
        self.batches += 1
        self._ewma = compute if self._ewma is None else 0.8 * self._ewma + 0.2 * compute

    def _take(self) -> list[_Job]:
        first = self._pending.popleft()
        jobs, rows = [first], first.rows
        if self.max_batch <= 1:
            return jobs
        keep: collections.deque[_Job] = collections.deque()
        while self._pending and rows < self.max_batch:
            job = self._pending.popleft()
            if job.key == first.key and rows + job.rows <= self.max_batch:
                jobs.append(job)
                rows += job.rows
            else:
                keep.append(job)
        keep.extend(self._pending)
        self._pending = keep
        return jobs

    async def _gather(self, jobs: list[_Job]) -> list[_Job]:
        """Wait up to max_delay for more compatible rows (only when batching)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay_s
        rows = sum(j.rows for j in jobs)
        while rows < self.max_batch:
            left = deadline - loop.time()
            if left <= 0:
                break
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
            if self._pending:
                more = [j for j in self._pending
                        if j.key == jobs[0].key]
                for job in more:
                    if rows + job.rows > self.max_batch:
                        break
                    self._pending.remove(job)
                    jobs.append(job)
                    rows += job.rows
        return jobs

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            jobs = self._take()
            if self.max_delay_s > 0 and self.max_batch > 1:
                jobs = await self._gather(jobs)
            jobs = [j for j in jobs if not j.future.done()]  # a client that went away
            if not jobs:
                continue
            started = time.perf_counter()
            self._busy = True
            try:
                feeds = jobs[0].inputs if len(jobs) == 1 else _stack(jobs)
                outputs = await loop.run_in_executor(self._pool, self.model.run, feeds)
            except Exception as exc:  # onnxruntime raises several unrelated types
                error = ProtocolError(f"the model failed: {exc}", 500, "E_RUNTIME_CRASH")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            finally:
                self._busy = False
            compute = time.perf_counter() - started
            self._observe(compute)
            rows = sum(j.rows for j in jobs)
            parts = [outputs] if len(jobs) == 1 else _split(outputs, jobs)
            for job, part in zip(jobs, parts, strict=True):
                if not job.future.done():
                    job.future.set_result(Done(part, started - job.enqueued, compute, rows))


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
