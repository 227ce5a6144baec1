"""The adaptive batcher, driven by a fake clock and a controllable model call."""

from __future__ import annotations

import asyncio

import pytest

from ferry.serving.batching import AdaptiveBatcher, BatchSizeMismatchError


class FakeTime:
    """A clock whose sleeps finish only when the test advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, future in list(self._sleepers):
            if deadline <= self.now and not future.done():
                future.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)


class GatedModel:
    """Records every batch; each call waits until the test opens the gate."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        return [item * 10 for item in items]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_lone_request_runs_at_once_without_waiting() -> None:
    model = GatedModel()
    batcher = AdaptiveBatcher(model, max_batch_size=8)
    assert await batcher.submit(3) == 30
    assert model.batches == [[3]]


async def test_requests_queued_while_the_model_is_busy_form_the_next_batch() -> None:
    model = GatedModel(gated=True)
    batcher = AdaptiveBatcher(model, max_batch_size=8)
    first = batcher.submit(1)
    await settle()
    rest = [batcher.submit(i) for i in range(2, 6)]
    await settle()
    assert model.batches == [[1]]  # the others wait for the busy model
    model.gate.set()
    results = await asyncio.gather(first, *rest)
    assert results == [10, 20, 30, 40, 50]
    assert model.batches == [[1], [2, 3, 4, 5]]


async def test_batches_never_exceed_max_batch_size_in_size_units() -> None:
    model = GatedModel(gated=True)
    batcher = AdaptiveBatcher(model, max_batch_size=5, size_of=lambda item: item)
    blocker = batcher.submit(1)
    await settle()
    futures = [batcher.submit(n) for n in (2, 2, 2, 9, 1)]
    model.gate.set()
    await asyncio.gather(blocker, *futures)
    assert model.batches == [[1], [2, 2], [2], [9], [1]]  # 9 is over the limit: alone


async def test_outputs_are_returned_in_request_order() -> None:
    async def reverse_aware(items: list[int]) -> list[int]:
        return [i + 100 for i in items]

    batcher = AdaptiveBatcher(reverse_aware, max_batch_size=64)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(50)))
    assert results == [i + 100 for i in range(50)]


async def test_a_wrong_number_of_outputs_fails_every_request_of_the_batch() -> None:
    async def drops_one(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = AdaptiveBatcher(drops_one, max_batch_size=8)
    futures = [batcher.submit(i) for i in range(3)]
    for future in futures:
        with pytest.raises(BatchSizeMismatchError, match="3 inputs produced 2 outputs"):
            await future


async def test_an_exception_reaches_every_waiter_and_the_batcher_keeps_working() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom")
        return items

    batcher = AdaptiveBatcher(flaky, max_batch_size=8)
    with pytest.raises(ValueError, match="boom"):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2


async def test_a_cancelled_request_is_dropped_before_its_batch_runs() -> None:
    model = GatedModel(gated=True)
    batcher = AdaptiveBatcher(model, max_batch_size=8)
    blocker = batcher.submit(1)
    await settle()
    doomed = batcher.submit(2)
    kept = batcher.submit(3)
    doomed.cancel()
    model.gate.set()
    await blocker
    assert await kept == 30
    assert model.batches == [[1], [3]]


async def test_max_wait_holds_a_batch_open_until_the_deadline() -> None:
    fake = FakeTime()
    model = GatedModel()
    batcher = AdaptiveBatcher(
        model, max_batch_size=8, max_wait_s=0.010, clock=fake.clock, sleep=fake.sleep
    )
    first = batcher.submit(1)
    await settle()
    assert model.batches == []  # held open
    second = batcher.submit(2)
    await fake.advance(0.005)
    assert model.batches == []
    await fake.advance(0.006)
    assert await asyncio.gather(first, second) == [10, 20]
    assert model.batches == [[1, 2]]


async def test_max_wait_ends_early_when_the_batch_fills() -> None:
    fake = FakeTime()
    model = GatedModel()
    batcher = AdaptiveBatcher(
        model, max_batch_size=3, max_wait_s=5.0, clock=fake.clock, sleep=fake.sleep
    )
    futures = [batcher.submit(i) for i in range(3)]
    assert await asyncio.gather(*futures) == [0, 10, 20]
    assert fake.now == 0.0
    assert model.batches == [[0, 1, 2]]


async def test_concurrency_runs_several_batches_at_once() -> None:
    model = GatedModel(gated=True)
    batcher = AdaptiveBatcher(model, max_batch_size=1, concurrency=3)
    futures = [batcher.submit(i) for i in range(4)]
    await settle()
    assert len(model.batches) == 3  # the fourth waits for a free slot
    model.gate.set()
    assert await asyncio.gather(*futures) == [0, 10, 20, 30]


async def test_batch_observer_sees_request_and_size_counts() -> None:
    seen: list[tuple[int, int]] = []
    model = GatedModel(gated=True)
    batcher = AdaptiveBatcher(
        model, max_batch_size=100, size_of=lambda i: i, on_batch=lambda n, s: seen.append((n, s))
    )
    blocker = batcher.submit(1)
    await settle()
    others = [batcher.submit(5), batcher.submit(7)]
    model.gate.set()
    await asyncio.gather(blocker, *others)
    assert seen == [(1, 1), (2, 12)]


async def test_close_finishes_queued_work_then_refuses_new_items() -> None:
    model = GatedModel()
    batcher = AdaptiveBatcher(model, max_batch_size=4)
    pending = [batcher.submit(i) for i in range(6)]
    await batcher.close()
    assert [f.result() for f in pending] == [0, 10, 20, 30, 40, 50]
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(9)


def test_invalid_limits_are_rejected() -> None:
    async def run(items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError, match="at least 1"):
        AdaptiveBatcher(run, max_batch_size=0)
