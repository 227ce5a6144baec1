"""The middleware tallies request metrics and writes them out when nothing else is running.

A scrape writes out its own process's tally first, so /metrics is exact; while other
requests are in flight a finished one is written at most ``FLUSH_INTERVAL_S`` later (or on
the server's tick, which calls ``flush_metrics``).
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from tests.unit.serving.gated import GatedSumModel

from ferry.config import ModelSpec, ServerSettings
from ferry.models.base import ModelSource
from ferry.monitoring.metrics import FLUSH_INTERVAL_S, ServerMetrics
from ferry.serving import middleware
from ferry.serving.app import ServerApp, build_app

PREDICT_200 = {"route": "/predict", "method": "POST", "status": "200"}
HEALTHZ_200 = {"route": "/healthz", "method": "GET", "status": "200"}


def _app(model: GatedSumModel) -> tuple[ServerApp, ServerMetrics]:
    spec = ModelSpec(uri="gated.joblib")
    source = ModelSource(spec, Path("gated.joblib"), "pickle", "gated", False)
    metrics = ServerMetrics("gated", registry=CollectorRegistry())
    settings = ServerSettings(model=spec, access_log=False)
    return build_app(settings, source, model=model, metrics=metrics), metrics


async def _call(app: ServerApp, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    messages: list[MutableMapping[str, Any]] = []
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": headers,
        "query_string": b"",
        "client": ("127.0.0.1", 1234),
    }

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    await app.asgi(scope, receive, send)
    body_out = b"".join(m.get("body", b"") for m in messages[1:])
    return int(messages[0]["status"]), body_out


def _value(metrics: ServerMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def test_metrics_scrape_counts_every_finished_request_exactly() -> None:
    app, _ = _app(GatedSumModel())
    await app.runner.start()
    for _ in range(7):
        assert (await _call(app, "POST", "/predict", b"[[1, 2]]"))[0] == 200
    assert (await _call(app, "POST", "/predict", b"[[1]]"))[0] == 400
    status, text = await _call(app, "GET", "/metrics")
    assert status == 200
    lines = text.decode().splitlines()
    assert 'ferry_requests_total{method="POST",route="/predict",status="200"} 7.0' in lines
    assert 'ferry_requests_total{method="POST",route="/predict",status="400"} 1.0' in lines
    assert 'ferry_request_duration_seconds_count{route="/predict"} 8.0' in lines
    assert "ferry_requests_in_flight 1.0" in lines  # the scrape itself
    await app.runner.stop()


async def test_a_request_is_written_out_when_nothing_else_is_in_flight() -> None:
    app, metrics = _app(GatedSumModel())
    await app.runner.start()
    await _call(app, "POST", "/predict", b"[[1, 2]]")
    assert _value(metrics, "ferry_requests_total", PREDICT_200) == 1
    assert _value(metrics, "ferry_requests_in_flight") == 0
    await app.runner.stop()


async def _one_request_held() -> tuple[
    GatedSumModel, ServerApp, ServerMetrics, asyncio.Future[tuple[int, bytes]]
]:
    """A started app with one /predict held inside the model, and metrics just flushed."""
    model = GatedSumModel()
    app, metrics = _app(model)
    await app.runner.start()
    model.gate.clear()
    slow = asyncio.ensure_future(_call(app, "POST", "/predict", b"[[1, 2]]"))
    await asyncio.sleep(0.01)
    app.asgi.flush_metrics()
    return model, app, metrics, slow


async def test_while_others_run_a_finished_request_waits_for_the_next_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(middleware, "FLUSH_INTERVAL_S", 60.0)  # however slow this machine is
    model, app, metrics, slow = await _one_request_held()  # the interval starts now
    assert _value(metrics, "ferry_requests_in_flight") == 1
    assert (await _call(app, "GET", "/healthz"))[0] == 200
    assert _value(metrics, "ferry_requests_total", HEALTHZ_200) == 0
    app.asgi.flush_metrics()  # what the server's tick does
    assert _value(metrics, "ferry_requests_total", HEALTHZ_200) == 1
    model.gate.set()
    assert (await slow)[0] == 200
    assert _value(metrics, "ferry_requests_total", PREDICT_200) == 1
    assert _value(metrics, "ferry_requests_in_flight") == 0
    await app.runner.stop()


async def test_while_others_run_a_request_is_written_once_the_interval_passed() -> None:
    model, app, metrics, slow = await _one_request_held()
    await asyncio.sleep(FLUSH_INTERVAL_S + 0.01)
    await _call(app, "GET", "/healthz")
    assert _value(metrics, "ferry_requests_total", HEALTHZ_200) == 1
    model.gate.set()
    await slow
    await app.runner.stop()
