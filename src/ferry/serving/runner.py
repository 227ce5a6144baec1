"""The model runner: owns the model, its readiness, and every call into it.

Predictions run on the runner's own thread, never on the event loop: run inline, a batch
would block the loop, and measured it also shrank batches so much that throughput fell by
a third. Row requests go through an ``AdaptiveBatcher`` so concurrent requests share one
model call; a batch that fails is retried request by request so one bad request cannot
fail its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from ferry.config import ServerSettings
from ferry.errors import FerryError, ModelError, ModelNotReady, RequestTimeout
from ferry.models.base import LoadedModel, ModelSource
from ferry.monitoring.metrics import ServerMetrics
from ferry.serving.batching import AdaptiveBatcher
from ferry.serving.protocols.base import ModelInfo
from ferry.types import PayloadRequest, Prediction, Rows, Signature

__all__ = ["ModelRunner"]

log = logging.getLogger("ferry.runner")

_Outcome = Prediction | FerryError
_PayloadOutcome = tuple[Any] | FerryError  # (result,) or the error


def _rows_of(rows: Rows) -> int:
    return len(rows)


class ModelRunner:
    """Loads the model, warms it up, then serves batched predictions.

    ``model`` may be given already loaded (loaded before the worker processes forked).
    """

    def __init__(
        self,
        source: ModelSource,
        settings: ServerSettings,
        metrics: ServerMetrics,
        *,
        model: LoadedModel | None = None,
        version: str = "1",
        on_ready: Callable[[], None] | None = None,
        ready_gate: Callable[[], bool] | None = None,
    ) -> None:
        self._source = source
        self._settings = settings
        self._metrics = metrics
        self._model = model
        self._preloaded = model is not None
        self._on_ready = on_ready
        self._gate = ready_gate
        self._version = version
        self._ready = False
        self._failure: str | None = None
        self._info = self._make_info(model.signature if model else Signature())
        self._deadlines = _Deadlines(settings.timeout_s)
        spec = source.spec
        threads = settings.predictor_threads if source.framework == "python" else 1
        self._calls: _Calls = _ModelThread() if threads == 1 else _PoolCalls(threads)
        row_batch = settings.max_batch_size if settings.batching else 1
        self._row_batcher: AdaptiveBatcher[Rows, _Outcome] = AdaptiveBatcher(
            self._run_rows,
            max_batch_size=row_batch,
            max_wait_s=settings.max_batch_wait_ms / 1000,
            size_of=_rows_of,
            on_batch=metrics.observe_batch,
        )
        payload_batch = settings.max_batch_size if spec.predictor_batching else 1
        self._payload_batcher: AdaptiveBatcher[PayloadRequest, _PayloadOutcome] = AdaptiveBatcher(
            self._run_payloads,
            max_batch_size=payload_batch,
            max_wait_s=settings.max_batch_wait_ms / 1000 if spec.predictor_batching else 0,
            concurrency=threads,
            on_batch=metrics.observe_batch,
        )

    # ------------------------------------------------------------------ state

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def failure(self) -> str | None:
        """Why loading failed, if it did."""
        return self._failure

    def is_ready(self) -> bool:
        return self._ready and (self._gate is None or self._gate())

    @property
    def preloaded(self) -> bool:
        """True when the model was given loaded (before fork), so only a warm-up is left."""
        return self._preloaded

    def _make_info(self, signature: Signature) -> ModelInfo:
        return ModelInfo(
            name=self._source.name,
            version=self._version,
            platform=self._source.framework,
            signature=signature,
        )

    async def start(self) -> None:
        """Load (unless given) and warm up the model off the event loop, then turn ready.

        Raises the load error; the worker turns it into its "cannot boot" exit.
        """
        started = time.perf_counter()
        try:
            self._model = await self._calls.run(self._load_and_warm)
        except Exception as error:
            self._failure = str(error)
            raise
        self._info = self._make_info(self._model.signature)
        self._metrics.load_seconds.labels(self._source.name).set(time.perf_counter() - started)
        self._metrics.ready.labels(self._source.name).set(1)
        self._ready = True
        if self._on_ready is not None:
            self._on_ready()

    def _load_and_warm(self) -> LoadedModel:
        threads = self._settings.model_threads
        model = self._model
        if model is None:
            model = self._source.load(threads=threads)
        elif threads is not None:  # loaded before fork: this worker's share of the cores
            model.set_threads(threads)
        if self._settings.warmup:
            model.warmup()
        return model

    async def stop(self) -> None:
        """Finish queued work, then release the thread pool."""
        self._ready = False
        await self._row_batcher.close()
        await self._payload_batcher.close()
        self._calls.shutdown()

    # ------------------------------------------------------------------ requests

    async def predict_rows(self, rows: Rows) -> Prediction:
        if not self.is_ready():
            raise ModelNotReady(self.not_ready_message())
        outcome: _Outcome = await self._with_timeout(self._row_batcher.submit(rows))
        if isinstance(outcome, FerryError):
            raise outcome
        return outcome

    async def predict_payload(self, request: PayloadRequest) -> Any:
        if not self.is_ready():
            raise ModelNotReady(self.not_ready_message())
        outcome = await self._with_timeout(self._payload_batcher.submit(request))
        if isinstance(outcome, FerryError):
            raise outcome
        result = outcome[0]
        model = self._model
        if model is not None and model.has_post_predict:
            self._calls.run(self._post_predict, model, result, request)
        return result

    def not_ready_message(self) -> str:
        if self._failure:
            return f"model {self._source.name!r} failed to load: {self._failure}"
        if self._ready:  # this worker is, others are still loading
            return f"model {self._source.name!r} is still loading in other workers; retry shortly"
        return f"model {self._source.name!r} is loading; retry shortly"

    async def _with_timeout(self, future: asyncio.Future[Any]) -> Any:
        slot = self._deadlines.watch(future)
        try:
            return await future
        finally:
            slot.discard(future)

    @staticmethod
    def _post_predict(model: LoadedModel, result: Any, request: PayloadRequest) -> None:
        try:
            model.post_predict(result, request)
        except Exception:
            log.exception("post_predict raised")

    # ------------------------------------------------------------------ batches

    async def _run_rows(self, batch: list[Rows]) -> list[_Outcome]:
        outcomes: list[_Outcome] = await self._calls.run(self._predict_rows_batch, batch)
        return outcomes

    async def _run_payloads(self, batch: list[PayloadRequest]) -> list[_PayloadOutcome]:
        outcomes: list[_PayloadOutcome] = await self._calls.run(self._predict_payload_batch, batch)
        return outcomes

    def _predict_rows_batch(self, batch: list[Rows]) -> list[_Outcome]:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, rows in enumerate(batch):
            key = (rows.values.shape[1:], rows.columns, rows.values.dtype.kind == "O")
            groups.setdefault(key, []).append(index)
        outcomes: list[_Outcome] = [ModelError("not predicted")] * len(batch)
        for indexes in groups.values():
            members = [batch[i] for i in indexes]
            for i, outcome in zip(indexes, self._predict_group(members), strict=True):
                outcomes[i] = outcome
        return outcomes

    def _predict_group(self, members: list[Rows]) -> list[_Outcome]:
        try:
            return self._predict_merged(members)
        except Exception as error:
            if len(members) == 1:
                return [self._as_ferry_error(error)]
        # Something in the merged batch failed: find out which request it was.
        return [self._predict_alone(rows) for rows in members]

    def _predict_alone(self, rows: Rows) -> _Outcome:
        try:
            return self._predict_merged([rows])[0]
        except Exception as error:
            return self._as_ferry_error(error)

    def _predict_merged(self, members: list[Rows]) -> list[_Outcome]:
        model = self._model
        assert model is not None
        if len(members) == 1:
            merged = members[0]
        else:
            merged = Rows(np.concatenate([m.values for m in members]), members[0].columns)
        started = time.perf_counter()
        prediction = model.predict_rows(merged)
        self._metrics.predict_seconds.observe(time.perf_counter() - started)
        if len(prediction) != len(merged):
            raise ModelError(f"the model returned {len(prediction)} outputs for {len(merged)} rows")
        if len(members) == 1:
            return [prediction]
        outcomes: list[_Outcome] = []
        start = 0
        for rows in members:
            outcomes.append(prediction.slice(start, start + len(rows)))
            start += len(rows)
        return outcomes

    def _predict_payload_batch(self, batch: list[PayloadRequest]) -> list[_PayloadOutcome]:
        model = self._model
        assert model is not None
        started = time.perf_counter()
        try:
            results = model.predict_payloads(batch)
        except Exception as error:
            if len(batch) == 1:
                return [self._as_ferry_error(error)]
            return [self._predict_payload_alone(request) for request in batch]
        finally:
            self._metrics.predict_seconds.observe(time.perf_counter() - started)
        if len(results) != len(batch):
            mismatch = ModelError(
                f"predict returned {len(results)} results for {len(batch)} payloads"
            )
            return [mismatch] * len(batch)
        return [(result,) for result in results]

    def _predict_payload_alone(self, request: PayloadRequest) -> _PayloadOutcome:
        model = self._model
        assert model is not None
        try:
            return (model.predict_payloads([request])[0],)
        except Exception as error:
            return self._as_ferry_error(error)

    def _as_ferry_error(self, error: Exception) -> FerryError:
        if isinstance(error, FerryError):
            return error
        log.error("model %r raised while predicting", self._source.name, exc_info=error)
        return ModelError(
            f"the model raised {type(error).__name__} while predicting; "
            "the traceback is in the server log under this request id"
        )


class _Deadlines:
    """Request timeouts without a timer per request.

    Requests are grouped by arrival into slots of ``granularity`` seconds, and one timer per
    slot fails whatever of it is still waiting ``timeout`` after the slot closed. A request
    therefore times out between ``timeout`` and ``timeout + granularity`` after it started,
    never earlier. A timer (created and cancelled) per request was a visible share of a
    small prediction.
    """

    __slots__ = ("_granularity", "_slot", "_slot_ends", "_timeout")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._granularity = min(0.05, timeout / 20)
        self._slot: set[asyncio.Future[Any]] = set()
        self._slot_ends = float("-inf")

    def watch(self, future: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
        """Fail ``future`` if it is not done in time; discard it from the set returned once done."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._slot_ends:
            self._slot = set()
            self._slot_ends = now + self._granularity
            loop.call_at(self._slot_ends + self._timeout, _expire, self._slot, self._timeout)
        self._slot.add(future)
        return self._slot


def _expire(slot: set[asyncio.Future[Any]], timeout: float) -> None:
    for future in slot:
        if not future.done():
            future.set_exception(RequestTimeout(f"prediction did not finish within {timeout:g} s"))
    slot.clear()


_Call = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]


class _Calls(Protocol):
    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]: ...

    def shutdown(self) -> None: ...


class _ModelThread:
    """One thread for every call into the model: load, warm-up, predictions.

    Cheaper to hand a batch to than a pool: ``run_in_executor`` wraps each call in a
    concurrent future chained to an asyncio future, a queue and ``call_soon_threadsafe``
    cost less than half of that (48 against 20 us a round trip on the benchmark machine).
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="predict", daemon=True)
        self._started = False

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``fn(*args)`` on the model thread; the future resolves on the calling loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._started:
            self._started = True
            self._thread.start()
        self._queue.put((loop, future, fn, args))
        return future

    def shutdown(self) -> None:
        """Finish the queued calls and end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            loop, future, fn, args = item
            try:
                result = fn(*args)
            except BaseException as error:  # the caller hears of everything
                with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                    loop.call_soon_threadsafe(_fail, future, error)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, future, result)


class _PoolCalls:
    """Several concurrent calls (Python predictors' ``threads_per_process``)."""

    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict")

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # a cancelled request
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
