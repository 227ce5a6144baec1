"""Adaptive batching: merge concurrent requests into one model call.

The batcher knows nothing of HTTP or models. While a batch runs, new items queue up; the
moment a slot frees, everything queued (up to ``max_batch_size``) goes as the next batch.
So a lone request is never delayed, and under load batches grow by themselves. An optional
``max_wait_s`` holds a batch open to collect more items (Cortex's ``batch_interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["AdaptiveBatcher", "BatchSizeMismatchError"]

T = TypeVar("T")
R = TypeVar("R")


class BatchSizeMismatchError(RuntimeError):
    """``run_batch`` returned a different number of outputs than it got inputs."""


def _one(_: object) -> int:
    return 1


class AdaptiveBatcher(Generic[T, R]):
    """Queue items and run them through ``run_batch`` in batches.

    ``size_of`` measures an item in the units of ``max_batch_size`` (rows, by default 1 per
    item); an item larger than the limit still runs, alone. ``concurrency`` batches may run
    at the same time. ``on_batch(items, size)`` is told of every batch, for metrics.
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch_size: int,
        max_wait_s: float = 0.0,
        concurrency: int = 1,
        size_of: Callable[[T], int] = _one,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_batch_size < 1 or concurrency < 1:
            raise ValueError("max_batch_size and concurrency must be at least 1")
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._size_of = size_of
        self._clock = clock
        self._sleep = sleep
        self._on_batch = on_batch
        self._queue: deque[tuple[T, asyncio.Future[R], float]] = deque()
        self._queued_size = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        """Items waiting for a batch."""
        return len(self._queue)

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; the returned future resolves to its output.

        Cancelling the future (a timed-out request) drops the item if its batch has not
        started yet.
        """
        if self._closed:
            raise RuntimeError("batcher is closed")
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future, self._clock()))
        self._queued_size += self._size_of(item)
        self._wakeup.set()
        if self._queued_size >= self._max_batch_size:
            self._full.set()
        return future

    async def close(self) -> None:
        """Stop taking items, let queued and running batches finish."""
        self._closed = True
        while self._queue or self._running:
            self._wakeup.set()
            await asyncio.sleep(0.001)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher

    async def _dispatch(self) -> None:
        while True:
            await self._wakeup.wait()
            while self._queue:
                await self._slots.acquire()
                if self._max_wait_s > 0:
                    await self._hold_open()
                batch = self._take_batch()
                if not batch:
                    self._slots.release()
                    continue
                task = asyncio.get_running_loop().create_task(self._run(batch))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            self._wakeup.clear()

    async def _hold_open(self) -> None:
        """Wait until the batch is full or the oldest item has waited ``max_wait_s``."""
        while self._queue and self._queued_size < self._max_batch_size:
            remaining = self._queue[0][2] + self._max_wait_s - self._clock()
            if remaining <= 0:
                return
            self._full.clear()
            full = asyncio.ensure_future(self._full.wait())
            timer = asyncio.ensure_future(self._sleep(remaining))
            await asyncio.wait({full, timer}, return_when=asyncio.FIRST_COMPLETED)
            full.cancel()
            timer.cancel()

    def _take_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        size = 0
        while self._queue:
            item, future, _ = self._queue[0]
            item_size = self._size_of(item)
            if batch and size + item_size > self._max_batch_size:
                break
            self._queue.popleft()
            self._queued_size -= item_size
            if future.done():  # cancelled or timed out while queued
                continue
            batch.append((item, future))
            size += item_size
        if self._queued_size < self._max_batch_size:
            self._full.clear()
        if batch and self._on_batch is not None:
            self._on_batch(len(batch), size)
        return batch

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outputs = await self._run_batch([item for item, _ in batch])
            if len(outputs) != len(batch):
                raise BatchSizeMismatchError(
                    f"batch of {len(batch)} inputs produced {len(outputs)} outputs"
                )
        except BaseException as error:  # every waiter must hear about it
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            for (_, future), output in zip(batch, outputs, strict=True):
                if not future.done():
                    future.set_result(output)
        finally:
            self._slots.release()
