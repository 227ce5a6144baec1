"""The body limit: by Content-Length before reading, or counted while a body streams in."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from ferry.config import ModelSpec, ServerSettings
from ferry.models.base import LoadedModel, ModelSource
from ferry.monitoring.metrics import ServerMetrics
from ferry.serving.app import ServerApp, build_app
from ferry.types import Prediction, Rows, Signature

LIMIT = 1024  # the smallest limit the settings allow
BIG = b"[" + b", ".join([b"[1, 2]"] * 200) + b"]"  # 1601 bytes


class SumModel(LoadedModel):
    name = "sum"
    framework = "pickle"
    signature = Signature(n_features=2)

    def predict_rows(self, rows: Rows) -> Prediction:
        return Prediction(np.asarray(rows.values).sum(axis=1))

    def warmup(self) -> None:
        pass


def _app() -> ServerApp:
    spec = ModelSpec(uri="sum.joblib")
    source = ModelSource(spec, Path("sum.joblib"), "pickle", "sum", False)
    metrics = ServerMetrics("sum", registry=CollectorRegistry())
    settings = ServerSettings(model=spec, access_log=False, max_body_bytes=LIMIT)
    return build_app(settings, source, model=SumModel(), metrics=metrics)


async def _post(app: ServerApp, chunks: list[bytes], length: bytes | None) -> tuple[int, Any]:
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", length))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": headers,
        "query_string": b"",
        "client": ("127.0.0.1", 1234),
    }
    pending = list(chunks)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app.asgi(scope, receive, send)
    return int(sent[0]["status"]), orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))


async def test_a_declared_body_within_the_limit_is_answered() -> None:
    app = _app()
    await app.runner.start()
    body = b"[[1, 2], [3, 4]]"
    assert await _post(app, [body], b"%d" % len(body)) == (200, [3.0, 7.0])
    await app.runner.stop()


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read() -> None:
    app = _app()
    status, answer = await _post(app, [], b"%d" % (LIMIT + 1))  # nothing to read: not read
    assert status == 413
    assert f"{LIMIT} bytes" in answer["error"]


async def test_a_streamed_body_is_counted_as_it_arrives() -> None:
    app = _app()
    await app.runner.start()
    chunks = [BIG[i : i + 100] for i in range(0, len(BIG), 100)]
    status, answer = await _post(app, chunks, None)
    assert status == 413
    assert f"{LIMIT} bytes" in answer["error"]
    assert await _post(app, [b"[[1, ", b"2]]"], None) == (200, [3.0])
    await app.runner.stop()


async def test_a_malformed_content_length_is_counted_as_the_body_arrives() -> None:
    app = _app()
    await app.runner.start()
    status, _ = await _post(app, [BIG], b"12 ")
    assert status == 413
    await app.runner.stop()
