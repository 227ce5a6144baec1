"""The model runner: readiness, batching across requests, error isolation, timeouts."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from ferry.config import ModelSpec, ServerSettings
from ferry.errors import BadRequest, ModelError, ModelNotReady, RequestTimeout
from ferry.models.base import LoadedModel, ModelSource
from ferry.monitoring.metrics import ServerMetrics
from ferry.serving.runner import ModelRunner
from ferry.types import InputKind, PayloadRequest, Prediction, Rows, Signature


class SumModel(LoadedModel):
    """Predicts the row sum; rejects rows containing 13; can be told to misbehave."""

    name = "sum"
    framework = "pickle"
    signature = Signature(n_features=2)

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.drop_one = False
        self.warmed = False

    def predict_rows(self, rows: Rows) -> Prediction:
        self.gate.wait(5)
        self.calls.append(len(rows))
        if (rows.values == 13).any():
            raise ValueError("unlucky row")
        if (rows.values == -1).any():
            raise BadRequest("negative one is not allowed")
        sums = rows.values.sum(axis=1)
        return Prediction(sums[:-1] if self.drop_one else sums)

    def warmup(self) -> None:
        self.warmed = True


class EchoPredictor(LoadedModel):
    name = "echo"
    framework = "python"
    signature = Signature(input_kind=InputKind.PAYLOAD)

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict_payloads(self, requests: list[PayloadRequest]) -> list[Any]:
        self.batches.append(len(requests))
        if any(r.payload == "fail" for r in requests):
            raise RuntimeError("predictor failed")
        return [{"echo": r.payload} for r in requests]

    def warmup(self) -> None:
        pass


def make_runner(model: LoadedModel, framework: str = "pickle", **settings: Any) -> ModelRunner:
    spec = ModelSpec(uri="model.joblib")
    source = ModelSource(spec, Path("model.joblib"), framework, model.name, False)
    config = ServerSettings(model=spec, **settings)
    metrics = ServerMetrics(model.name, registry=CollectorRegistry())
    return ModelRunner(source, config, metrics, model=model)


def rows(*values: list[float]) -> Rows:
    return Rows(np.array(values, dtype=float))


async def test_not_ready_until_started_and_warmed_up() -> None:
    model = SumModel()
    runner = make_runner(model)
    assert not runner.is_ready()
    with pytest.raises(ModelNotReady, match="loading"):
        await runner.predict_rows(rows([1, 2]))
    await runner.start()
    assert runner.is_ready()
    assert model.warmed
    assert runner.info.signature.n_features == 2
    await runner.stop()


async def test_concurrent_requests_share_one_model_call_and_split_back() -> None:
    model = SumModel()
    runner = make_runner(model)
    await runner.start()
    model.gate.clear()
    first = asyncio.ensure_future(runner.predict_rows(rows([1, 1])))
    await asyncio.sleep(0.05)  # the first call is now blocked inside the model
    others = [asyncio.ensure_future(runner.predict_rows(rows([i, i], [i, 0]))) for i in range(5)]
    await asyncio.sleep(0.05)
    model.gate.set()
    results = await asyncio.gather(first, *others)
    assert results[0].values.tolist() == [2]
    assert [r.values.tolist() for r in results[1:]] == [[2 * i, i] for i in range(5)]
    assert model.calls == [1, 10]  # 5 requests x 2 rows merged into one call
    await runner.stop()


async def test_a_failing_request_does_not_fail_its_batch_neighbours() -> None:
    model = SumModel()
    runner = make_runner(model)
    await runner.start()
    model.gate.clear()
    blocker = asyncio.ensure_future(runner.predict_rows(rows([0, 0])))
    await asyncio.sleep(0.05)
    good = asyncio.ensure_future(runner.predict_rows(rows([1, 2])))
    bad = asyncio.ensure_future(runner.predict_rows(rows([13, 0])))
    client_bad = asyncio.ensure_future(runner.predict_rows(rows([-1, 0])))
    await asyncio.sleep(0.05)
    model.gate.set()
    await blocker
    assert (await good).values.tolist() == [3]
    with pytest.raises(ModelError, match="raised ValueError"):
        await bad
    with pytest.raises(BadRequest, match="negative one"):
        await client_bad
    await runner.stop()


async def test_a_model_returning_the_wrong_number_of_rows_is_a_model_error() -> None:
    model = SumModel()
    model.drop_one = True
    runner = make_runner(model)
    await runner.start()
    with pytest.raises(ModelError, match="1 outputs for 2 rows"):
        await runner.predict_rows(rows([1, 2], [3, 4]))
    await runner.stop()


async def test_a_slow_prediction_times_out() -> None:
    model = SumModel()
    runner = make_runner(model, timeout_s=0.05)
    await runner.start()
    model.gate.clear()
    with pytest.raises(RequestTimeout, match=r"within 0\.05 s"):
        await runner.predict_rows(rows([1, 2]))
    model.gate.set()
    await runner.stop()


async def test_batching_off_sends_one_request_per_call() -> None:
    model = SumModel()
    runner = make_runner(model, batching=False)
    await runner.start()
    model.gate.clear()
    futures = [asyncio.ensure_future(runner.predict_rows(rows([i, i]))) for i in range(4)]
    await asyncio.sleep(0.05)
    model.gate.set()
    await asyncio.gather(*futures)
    assert model.calls == [1, 1, 1, 1]
    await runner.stop()


async def test_payload_predictions_are_isolated_per_request() -> None:
    model = EchoPredictor()
    runner = make_runner(model, framework="python")
    await runner.start()
    assert await runner.predict_payload(PayloadRequest({"a": 1})) == {"echo": {"a": 1}}
    with pytest.raises(ModelError, match="RuntimeError"):
        await runner.predict_payload(PayloadRequest("fail"))
    assert model.batches == [1, 1]
    await runner.stop()


async def test_load_failure_is_reported_and_keeps_the_runner_unready() -> None:
    class Broken(SumModel):
        def warmup(self) -> None:
            raise RuntimeError("weights are corrupt")

    runner = make_runner(Broken())
    with pytest.raises(RuntimeError, match="corrupt"):
        await runner.start()
    assert not runner.is_ready()
    assert runner.failure == "weights are corrupt"
    with pytest.raises(ModelNotReady, match="failed to load: weights are corrupt"):
        await runner.predict_rows(rows([1, 2]))
