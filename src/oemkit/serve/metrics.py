"""The runtime's Prometheus metrics (``GET /metrics``), with prometheus_client.

With several worker processes every worker writes its values to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (the supervisor makes that folder before any worker imports
prometheus_client, and removes it at exit) and ``/metrics`` on any worker aggregates them
all, prometheus_client's multiprocess mode; with the variable unset (one in-process
worker, unit tests) a private registry is used. Names and labels are listed in
docs/SERVE.md "Metrics".

A request's figures are not written into prometheus_client one by one: :class:`Metrics`
tallies them in plain Python values and hands them over in one go once per event-loop
pass, after the responses of that pass are sent (:meth:`Metrics.flush`, and always before
a scrape). Eleven locked value writes per request (memory-mapped in multiprocess mode)
were a fifth of a worker's time per request on the example model; batched, a busy worker
writes each bucket once per pass and the client never waits for any of it.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from typing import Any

#: Latency buckets, 50 us to 10 s: the example model answers in about 0.1 ms.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                   0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LICENSE_STATES = ("valid", "grace", "invalid", "none")
OUTCOMES = ("success", "bad_request", "not_found", "unauthorized", "too_large", "overloaded",
            "not_ready", "timeout", "error")


class Metrics:
    """Every metric the runtime exports, made once per process."""

    def __init__(self, model: str) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        disable_created_metrics()  # type: ignore[no-untyped-call]  # the _created series: noise for a scrape of a runtime

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = None if self.multiprocess else CollectorRegistry()
        kw: dict[str, Any] = {} if self.multiprocess else {"registry": self.registry}
        self.model = model
        self.requests = Counter("oemkit_requests", "Inference requests by outcome",
                                ["model", "outcome"], **kw)
        self.latency = Histogram("oemkit_request_duration_seconds",
                                 "Server-side time of an inference request, body read to "
                                 "response ready", ["model"], buckets=LATENCY_BUCKETS, **kw)
        self.queue = Histogram("oemkit_queue_duration_seconds",
                               "Time a request waited for its batch to start", ["model"],
                               buckets=LATENCY_BUCKETS, **kw)
        self.compute = Histogram("oemkit_compute_duration_seconds",
                                 "Model execution time of the batch a request ran in",
                                 ["model"], buckets=LATENCY_BUCKETS, **kw)
        self.batch = Histogram("oemkit_batch_size", "Rows per executed batch", ["model"],
                               buckets=BATCH_BUCKETS, **kw)
        self.inflight = Gauge("oemkit_inflight_requests", "Inference requests being served",
                              ["model"], multiprocess_mode="livesum", **kw)
        self.load = Gauge("oemkit_model_load_seconds", "Session creation time of the model",
                          ["model"], multiprocess_mode="livemax", **kw)
        self.license = Gauge("oemkit_license_state",
                             "1 for the runtime's license state (valid, grace, invalid, none)",
                             ["state"], multiprocess_mode="livemax", **kw)
        self.expiry = Gauge("oemkit_license_expiry_seconds",
                            "Seconds until the license stops being valid (grace end for a "
                            "license in grace); negative once past; NaN without a license",
                            multiprocess_mode="livemin", **kw)
        # the labelled children, looked up once (a labels() call takes a lock each time)
        self._outcome_values = {o: self.requests.labels(model, o) for o in OUTCOMES}
        self._inflight_value = self.inflight.labels(model)
        hists = [h.labels(model) for h in (self.latency, self.queue, self.compute, self.batch)]
        self._hists = hists
        # prometheus_client's own storage of a histogram child: one value per bucket (not
        # cumulative, +Inf last) and the sum; what Histogram.observe() increments
        self._bounds = [list(h._upper_bounds) for h in hists]
        #: Requests being served now (the in-flight gauge is set from it at each flush).
        self.inflight_now = 0
        self._pending_outcomes: dict[str, int] = {}
        self._pending_obs: list[tuple[float, float, float, int]] = []
        self._scheduled = False
        self._dirty = False
        self.set_license("none", None)

    # ------------------------------------------------------------------ per request

    def enter(self) -> None:
        """A request starts being served."""
        self.inflight_now += 1
        self._dirty = True

    def leave(self, outcome: str | None) -> None:
        """A request ended without a success: ``outcome`` is one of OUTCOMES, or None for
        one that was never answered (the client went away)."""
        self.inflight_now -= 1
        if outcome is not None:
            pending = self._pending_outcomes
            pending[outcome] = pending.get(outcome, 0) + 1
        self._schedule()

    def served(self, latency_s: float, queue_s: float, compute_s: float, rows: int) -> None:
        """A request succeeded: its server-side latency, queue and compute time, batch rows."""
        self.inflight_now -= 1
        pending = self._pending_outcomes
        pending["success"] = pending.get("success", 0) + 1
        self._pending_obs.append((latency_s, queue_s, compute_s, rows))
        self._schedule()

    def _schedule(self) -> None:
        self._dirty = True
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a direct call): write at once
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what was tallied since the last flush into prometheus_client."""
        self._scheduled = False
        if not self._dirty:
            return
        self._dirty = False
        pending, self._pending_outcomes = self._pending_outcomes, {}
        for outcome, count in pending.items():
            self._outcome_values[outcome].inc(count)
        self._inflight_value.set(self.inflight_now)
        observed, self._pending_obs = self._pending_obs, []
        if not observed:
            return
        for index, (hist, bounds) in enumerate(zip(self._hists, self._bounds, strict=True)):
            counts: dict[int, int] = {}
            total = 0.0
            for values in observed:
                value = values[index]
                total += value
                bucket = bisect_left(bounds, value)  # the first bound >= value, as observe()
                counts[bucket] = counts.get(bucket, 0) + 1
            hist._sum.inc(total)
            for bucket, count in counts.items():
                hist._buckets[bucket].inc(count)

    def set_license(self, state: str, seconds_left: float | None) -> None:
        """Set the license state gauges (one of LICENSE_STATES is 1) and the expiry."""
        for name in LICENSE_STATES:
            self.license.labels(name).set(1 if name == state else 0)
        self.expiry.set(float("nan") if seconds_left is None else seconds_left)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (after a flush of this worker's tally)."""
        self.flush()
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self.registry is not None
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def mark_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges (prometheus_client's multiprocess clean-up)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
