"""A worker whose model was loaded before fork starts accepting only once it is ready.

uvicorn accepts connections only after the lifespan startup returns, so readiness at that
moment is what decides whether the first requests a new worker takes can get a 503 while
its siblings already answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from ferry.config import ModelSpec, ServerSettings
from ferry.models.base import LoadedModel, ModelSource
from ferry.monitoring.metrics import ServerMetrics
from ferry.serving.app import build_app
from ferry.types import Prediction, Rows, Signature


class SlowWarmModel(LoadedModel):
    name = "slow"
    framework = "pickle"
    signature = Signature(n_features=2)

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def predict_rows(self, rows: Rows) -> Prediction:
        return Prediction(np.asarray(rows.values).sum(axis=1))

    def warmup(self) -> None:
        time.sleep(0.3)
        if self.fail:
            raise RuntimeError("the warm-up prediction crashed")


def _app(model: LoadedModel | None, failures: list[BaseException]):  # type: ignore[no-untyped-def]
    source = ModelSource(
        spec=ModelSpec(uri="slow.joblib"),
        path=Path("slow.joblib"),
        framework="pickle",
        name="slow",
        load_after_fork=model is None,
    )
    settings = ServerSettings(model=ModelSpec(uri="slow.joblib"), access_log=False)
    metrics = ServerMetrics("slow", registry=CollectorRegistry())
    return build_app(
        settings, source, model=model, metrics=metrics, on_boot_failure=failures.append
    )


def _run_lifespan(app) -> tuple[list[str], list[bool]]:  # type: ignore[no-untyped-def]
    """Start and stop ``app``'s lifespan; message types sent, and readiness at startup end."""
    sent: list[str] = []
    readiness: list[bool] = []

    async def run() -> None:
        inbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})

        async def send(message: dict[str, object]) -> None:
            sent.append(str(message["type"]))
            if message["type"] == "lifespan.startup.complete":
                readiness.append(app.runner.is_ready())
            await inbox.put({"type": "lifespan.shutdown"})

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
        with contextlib.suppress(RuntimeError):  # a failed startup re-raises its error
            await asyncio.wait_for(app.asgi(scope, inbox.get, send), 10)

    asyncio.run(run())
    return sent, readiness


def test_a_preloaded_model_is_ready_when_startup_completes() -> None:
    failures: list[BaseException] = []
    sent, readiness = _run_lifespan(_app(SlowWarmModel(), failures))
    assert sent[0] == "lifespan.startup.complete"
    assert readiness == [True]
    assert failures == []


def test_a_preloaded_model_whose_warm_up_crashes_fails_startup() -> None:
    failures: list[BaseException] = []
    sent, readiness = _run_lifespan(_app(SlowWarmModel(fail=True), failures))
    assert sent[0] == "lifespan.startup.failed"
    assert readiness == []
    assert [str(f) for f in failures] == ["the warm-up prediction crashed"]


def test_a_model_loaded_after_fork_answers_at_once_and_turns_ready_later() -> None:
    # Its load may take minutes, so the worker serves liveness meanwhile.
    failures: list[BaseException] = []
    sent, readiness = _run_lifespan(_app(None, failures))
    assert sent[0] == "lifespan.startup.complete"
    assert readiness == [False]
