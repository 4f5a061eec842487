"""The runtime's Prometheus metrics (``GET /metrics``), with prometheus_client.

With several worker processes every worker writes its values to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (the supervisor makes that folder before any worker imports
prometheus_client, and removes it at exit) and ``/metrics`` on any worker aggregates them
all, prometheus_client's multiprocess mode; with the variable unset (one in-process
worker, unit tests) a private registry is used. Names and labels are listed in
docs/SERVE.md "Metrics".
"""

from __future__ import annotations

import os
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
        for outcome in OUTCOMES:
            self.requests.labels(model, outcome)
        self.set_license("none", None)

    def set_license(self, state: str, seconds_left: float | None) -> None:
        """Set the license state gauges (one of LICENSE_STATES is 1) and the expiry."""
        for name in LICENSE_STATES:
            self.license.labels(name).set(1 if name == state else 0)
        self.expiry.set(float("nan") if seconds_left is None else seconds_left)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
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
