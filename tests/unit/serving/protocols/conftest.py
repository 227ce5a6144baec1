"""Fake models behind the ``Inference`` protocol, and a minimal app around the adapters.

The app maps ``FerryError`` to ``{"error", "code"}`` with ``status_for``, as the real app
does, so the tests see what a client sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ferry.errors import FerryError, status_for
from ferry.serving.protocols import predict, sagemaker, v2
from ferry.serving.protocols.base import ModelInfo
from ferry.types import InputKind, PayloadRequest, Prediction, Rows, Signature

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_CLASSES = ("setosa", "versicolor", "virginica")


@dataclass
class FakeInference:
    """A deterministic model; ``seen`` keeps what the adapter handed over."""

    info: ModelInfo
    rows_fn: Callable[[Rows], Prediction] | None = None
    payload_fn: Callable[[PayloadRequest], Any] | None = None
    ready: bool = True
    seen: list[Any] = field(default_factory=list)

    def is_ready(self) -> bool:
        return self.ready

    def not_ready_message(self) -> str:
        return f"model {self.info.name!r} is loading; retry shortly"

    async def predict_rows(self, rows: Rows) -> Prediction:
        assert self.rows_fn is not None, "a payload model got rows"
        self.seen.append(rows)
        return self.rows_fn(rows)

    async def predict_payload(self, request: PayloadRequest) -> Any:
        assert self.payload_fn is not None, "a row model got a payload"
        self.seen.append(request)
        return self.payload_fn(request)


def iris_rule(values: np.ndarray) -> np.ndarray:
    """The two-split tree that classifies iris almost perfectly: class index per row."""
    values = values.astype(np.float64)
    return np.where(values[:, 2] < 2.5, 0, np.where(values[:, 3] < 1.75, 1, 2))


def _labels(rows: Rows) -> Prediction:
    return Prediction(np.array(IRIS_CLASSES, dtype=object)[iris_rule(rows.values)])


def _indices(rows: Rows) -> Prediction:
    return Prediction(iris_rule(rows.values).astype(np.int64))


def _proba(rows: Rows) -> Prediction:
    return Prediction(np.eye(3)[iris_rule(rows.values)], "predict_proba", IRIS_CLASSES)


def _sums(rows: Rows) -> Prediction:
    return Prediction(rows.values.sum(axis=1))


def _frame(rows: Rows) -> Prediction:
    assert rows.columns == ("city", "rooms")
    return Prediction(np.array([f"{city}/{rooms}" for city, rooms in rows.values], dtype=object))


def _describe(payload: Any) -> Any:
    if isinstance(payload, FormData):
        return {
            key: (f"file:{value.filename}" if isinstance(value, UploadFile) else value)
            for key, value in payload.multi_items()
        }
    if isinstance(payload, bytes):
        return payload.hex()
    if isinstance(payload, np.ndarray):
        return payload.tolist()
    return payload


_REPLIES: dict[str, Callable[[], Any]] = {
    "text": lambda: "plain answer",
    "bytes": lambda: b"\x00\x01",
    "response": lambda: Response("custom", status_code=201, media_type="text/x-custom"),
    "numpy": lambda: {"mean": np.float64(1.5), "values": np.arange(3), "labels": np.array(["a"])},
    "set": lambda: {"not", "json"},
}


def _echo(request: PayloadRequest) -> Any:
    payload = request.payload
    if (
        isinstance(payload, dict)
        and payload
        and all(isinstance(value, np.ndarray) for value in payload.values())
    ):
        return {f"{name}_doubled": value * 2 for name, value in payload.items()}
    if isinstance(payload, dict) and payload.get("reply") in _REPLIES:
        return _REPLIES[payload["reply"]]()
    return {
        "type": type(payload).__name__,
        "payload": _describe(payload),
        "query": dict(request.query_params),
        "content_type": request.headers.get("content-type"),
    }


def _info(name: str, signature: Signature, platform: str = "sklearn") -> ModelInfo:
    return ModelInfo(name=name, version="1", platform=platform, signature=signature)


IRIS = Signature(n_features=4, feature_names=IRIS_FEATURES, classes=IRIS_CLASSES)


def fake_models() -> dict[str, FakeInference]:
    """Fresh fakes, by the name golden files use in their ``model`` field."""
    frame = Signature(n_features=2, feature_names=("city", "rooms"), needs_dataframe=True)
    return {
        "iris": FakeInference(_info("iris", IRIS), _labels),
        "iris_int": FakeInference(
            _info("iris", Signature(n_features=4, feature_names=IRIS_FEATURES, classes=(0, 1, 2))),
            _indices,
        ),
        "iris_proba": FakeInference(_info("iris", IRIS), _proba),
        "loading": FakeInference(_info("iris", IRIS), _labels, ready=False),
        "numeric": FakeInference(_info("sums", Signature()), _sums),
        "frame": FakeInference(_info("houses", frame), _frame),
        "payload": FakeInference(
            _info("echo", Signature(input_kind=InputKind.PAYLOAD), "python"), payload_fn=_echo
        ),
    }


async def _ferry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FerryError)
    return JSONResponse({"error": exc.message, "code": exc.code}, status_code=status_for(exc))


def build_app(protocol: str, inference: FakeInference) -> Starlette:
    """A Starlette app serving one adapter's routes, with ferry's error mapping."""
    routes = {
        "predict": predict.routes,
        "sagemaker": sagemaker.routes,
        "v2": lambda i: v2.routes(i, server_version="0.1.0"),
    }[protocol](inference)
    return Starlette(routes=routes, exception_handlers={FerryError: _ferry_error})


@pytest.fixture
def models() -> dict[str, FakeInference]:
    return fake_models()


@pytest.fixture
async def client_for(
    models: dict[str, FakeInference],
) -> AsyncIterator[Callable[[str, str], httpx.AsyncClient]]:
    """``client_for(protocol, model)``: an HTTP client for that adapter over that fake."""
    clients: list[httpx.AsyncClient] = []

    def make(protocol: str, model: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=build_app(protocol, models[model]))
        client = httpx.AsyncClient(transport=transport, base_url="http://ferry.test")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
