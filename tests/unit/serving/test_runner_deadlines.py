"""Request timeouts share one timer per arrival slot instead of one timer per request."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from tests.unit.serving.gated import GatedSumModel

from ferry.config import ModelSpec, ServerSettings
from ferry.errors import RequestTimeout
from ferry.models.base import LoadedModel, ModelSource
from ferry.monitoring.metrics import ServerMetrics
from ferry.serving.runner import ModelRunner, _Deadlines
from ferry.types import Rows


def make_runner(model: LoadedModel, **settings: Any) -> ModelRunner:
    spec = ModelSpec(uri="model.joblib")
    source = ModelSource(spec, Path("model.joblib"), "pickle", model.name, False)
    metrics = ServerMetrics(model.name, registry=CollectorRegistry())
    return ModelRunner(source, ServerSettings(model=spec, **settings), metrics, model=model)


def rows(*values: list[float]) -> Rows:
    return Rows(np.array(values, dtype=float))


async def _expired_after(deadlines: _Deadlines) -> float:
    """Seconds from ``watch`` until the watched future failed."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    deadlines.watch(future)
    with pytest.raises(RequestTimeout, match=r"within 0\.2 s"):
        await future
    return time.monotonic() - started


async def test_a_request_never_times_out_early_and_late_by_at_most_a_slot() -> None:
    deadlines = _Deadlines(0.2)  # slots of 10 ms
    first = asyncio.ensure_future(_expired_after(deadlines))
    await asyncio.sleep(0.006)  # the same slot, later in it
    second = asyncio.ensure_future(_expired_after(deadlines))
    await asyncio.sleep(0.03)  # another slot
    third = asyncio.ensure_future(_expired_after(deadlines))
    for elapsed in await asyncio.gather(first, second, third):
        assert 0.2 <= elapsed < 0.2 + 0.01 + 0.5  # + scheduling slack on a busy machine


async def test_a_future_done_in_time_is_left_alone() -> None:
    deadlines = _Deadlines(0.05)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    slow: asyncio.Future[int] = loop.create_future()
    slot = deadlines.watch(done)
    assert deadlines.watch(slow) is slot
    done.set_result(1)
    slot.discard(done)
    await asyncio.sleep(0.1)
    assert done.result() == 1
    assert isinstance(slow.exception(), RequestTimeout)
    assert not slot


async def test_finished_requests_leave_their_slot() -> None:
    runner = make_runner(GatedSumModel(), timeout_s=0.2)
    await runner.start()
    predictions = [runner.predict_rows(rows([i, i])) for i in range(50)]
    await asyncio.gather(*predictions)
    assert not runner._deadlines._slot
    await runner.stop()


async def test_only_the_request_that_overran_times_out() -> None:
    model = GatedSumModel()
    runner = make_runner(model, timeout_s=0.5, batching=False)  # room for a busy machine
    await runner.start()
    assert (await runner.predict_rows(rows([1, 2]))).values.tolist() == [3]
    model.gate.clear()
    with pytest.raises(RequestTimeout):
        await runner.predict_rows(rows([3, 4]))
    model.gate.set()
    assert (await runner.predict_rows(rows([5, 6]))).values.tolist() == [11]
    await runner.stop()
