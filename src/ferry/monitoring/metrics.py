"""Every Prometheus metric ferry exports, declared once.

Components receive a ``ServerMetrics`` and only record. With several worker processes the
values live in prometheus-client's multiprocess directory and ``render`` merges them.

Per-request figures (the request counter, the latency histogram, the in-flight gauge) are
tallied in process and written out by ``ServerMetrics.flush``: with several workers every
update is a write to a memory-mapped file, and two to four of them per request were a
visible share of a small prediction. The middleware flushes when no request is in flight,
at most ``FLUSH_INTERVAL_S`` after a request otherwise, on the server's tick and before
every scrape, so a scrape sees its own process exactly and other workers at most a tick
behind.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "CONTENT_TYPE_LATEST",
    "FLUSH_INTERVAL_S",
    "RequestTally",
    "ServerMetrics",
    "enable_multiprocess",
]

FLUSH_INTERVAL_S = 0.05
"""Longest time a finished request stays only in its worker's tally while others run."""

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


def enable_multiprocess(directory: Path) -> None:
    """Store metric values in ``directory`` so every worker's numbers can be merged.

    Must run before any metric is created; prometheus-client picks its value class from
    the environment at import time, so it is also set explicitly here.
    """
    from prometheus_client import values

    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class RequestTally:
    """Requests of one (route, method, status) counted in process until the next flush.

    ``add`` is all a request costs; ``ServerMetrics.flush`` adds the count to the request
    counter and the durations, bucket by bucket, to the latency histogram.
    """

    __slots__ = ("_bounds", "_buckets", "_counter", "_histogram", "_owner", "count", "total")

    def __init__(self, owner: ServerMetrics, counter: Counter, histogram: Histogram) -> None:
        self._owner = owner
        self._counter = counter
        self._histogram = histogram
        # prometheus-client counts a value in the first bucket whose bound is >= it
        self._bounds: tuple[float, ...] = tuple(histogram._upper_bounds)
        self._buckets = [0] * len(self._bounds)
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        if not self.count:
            self._owner._dirty.append(self)
        self.count += 1
        self.total += seconds
        self._buckets[bisect_left(self._bounds, seconds)] += 1

    def _write(self) -> None:
        self._counter.inc(self.count)
        # Histogram has no public "observe n values"; its child keeps one value per bucket
        # and one for the sum (tests/unit/monitoring/test_metrics_tally.py holds it to
        # what observe would have written).
        histogram = self._histogram
        histogram._sum.inc(self.total)
        buckets = self._buckets
        for index, n in enumerate(buckets):
            if n:
                histogram._buckets[index].inc(n)
                buckets[index] = 0
        self.count = 0
        self.total = 0.0


class ServerMetrics:
    """The model server's metrics, registered on their own registry."""

    def __init__(self, model_name: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "ferry_requests_total",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "ferry_request_duration_seconds",
            "Time from request start to the last byte of the response.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "ferry_requests_in_flight",
            "Requests being processed or queued.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.rejected = Counter(
            "ferry_requests_rejected_total",
            "Requests turned away before reaching the model, by reason.",
            ["reason"],
            registry=reg,
        )
        self.batch_rows = Histogram(
            "ferry_batch_size_rows",
            "Rows (or payloads) per model call.",
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.batch_requests = Histogram(
            "ferry_batch_size_requests",
            "Requests merged into one model call.",
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.predict_seconds = Histogram(
            "ferry_model_predict_seconds",
            "Time spent in the model's predict per batch.",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.load_seconds = Gauge(
            "ferry_model_load_seconds",
            "Time it took to load the model and warm it up.",
            ["model"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.ready = Gauge(
            "ferry_model_ready",
            "1 when this worker's model is loaded and warmed up.",
            ["model"],
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.model_name = model_name
        self._dirty: list[RequestTally] = []
        self._in_flight_written = 0

    def tally(self, route: str, method: str, status: str) -> RequestTally:
        """The in-process tally of requests with these labels (keep it: it is not cached)."""
        return RequestTally(
            self, self.requests.labels(route, method, status), self.latency.labels(route)
        )

    def flush(self, in_flight: int) -> None:
        """Write the tallied requests and the number of requests in flight now."""
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for tally in dirty:
                tally._write()
        if in_flight != self._in_flight_written:
            self.in_flight.set(in_flight)
            self._in_flight_written = in_flight

    def observe_batch(self, requests: int, rows: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)

    def render(self) -> bytes:
        """The exposition text, merged across worker processes when there are several."""
        directory = _multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
