"""Every call into a model runs on the runner's one model thread, handed over by a queue."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from ferry.config import ModelSpec, ServerSettings
from ferry.models.base import LoadedModel, ModelSource
from ferry.monitoring.metrics import ServerMetrics
from ferry.serving.runner import ModelRunner, _ModelThread
from ferry.types import Prediction, Rows, Signature


class ThreadRecordingModel(LoadedModel):
    name = "threads"
    framework = "pickle"
    signature = Signature(n_features=2)

    def __init__(self) -> None:
        self.threads: dict[str, set[int]] = {"threads": set(), "warmup": set(), "predict": set()}

    def set_threads(self, threads: int) -> None:
        self.threads["threads"].add(threading.get_ident())

    def warmup(self) -> None:
        self.threads["warmup"].add(threading.get_ident())

    def predict_rows(self, rows: Rows) -> Prediction:
        self.threads["predict"].add(threading.get_ident())
        return Prediction(rows.values.sum(axis=1))


def _runner(model: LoadedModel) -> ModelRunner:
    spec = ModelSpec(uri="model.joblib")
    source = ModelSource(spec, Path("model.joblib"), "pickle", model.name, False)
    settings = ServerSettings(model=spec, model_threads=1)
    metrics = ServerMetrics(model.name, registry=CollectorRegistry())
    return ModelRunner(source, settings, metrics, model=model)


async def test_warm_up_and_predictions_share_one_thread_off_the_event_loop() -> None:
    model = ThreadRecordingModel()
    runner = _runner(model)
    await runner.start()
    batches = [runner.predict_rows(Rows(np.array([[i, 1.0]]))) for i in range(20)]
    answers = await asyncio.gather(*batches)
    assert [a.values.tolist() for a in answers] == [[i + 1.0] for i in range(20)]
    used = set().union(*model.threads.values())
    assert len(used) == 1
    assert threading.get_ident() not in used
    await runner.stop()


async def test_an_error_escaping_the_call_reaches_the_caller() -> None:
    thread = _ModelThread()

    def broken() -> None:
        raise KeyError("lost")

    with pytest.raises(KeyError, match="lost"):
        await thread.run(broken)
    assert await thread.run(lambda a, b: a + b, 2, 3) == 5  # and the thread goes on
    thread.shutdown()


async def test_a_result_for_a_cancelled_call_is_dropped() -> None:
    thread = _ModelThread()
    gate = threading.Event()
    future = thread.run(gate.wait, 5)
    future.cancel()
    gate.set()
    assert await thread.run(lambda: "next") == "next"
    thread.shutdown()


async def test_stop_finishes_queued_calls_and_ends_the_thread() -> None:
    thread = _ModelThread()
    done: list[int] = []
    futures: list[asyncio.Future[Any]] = [thread.run(done.append, i) for i in range(5)]
    thread.shutdown()
    assert done == [0, 1, 2, 3, 4]
    assert not thread._thread.is_alive()
    await asyncio.gather(*futures)


def test_a_thread_never_started_shuts_down_at_once() -> None:
    _ModelThread().shutdown()
