"""Every Prometheus metric ferry exports, declared once.

Components receive a ``ServerMetrics`` and only record. With several worker processes the
values live in prometheus-client's multiprocess directory and ``render`` merges them.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics", "enable_multiprocess"]

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
