"""Composition root of one model-server process: wires runner, adapters and middleware.

``build_app`` is the only place that knows every serving component; everything else gets
its collaborators through its constructor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry import __version__
from ferry.config import ServerSettings
from ferry.errors import BadRequest, FerryError, NotFound, status_for
from ferry.models.base import LoadedModel, ModelSource
from ferry.monitoring.logging import AccessLog
from ferry.monitoring.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from ferry.serving import health, openapi
from ferry.serving.middleware import REQUEST_ID_KEY, RequestMiddleware, error_body
from ferry.serving.protocols import predict, sagemaker, v2
from ferry.serving.protocols.sagemaker_runtime import RuntimeEndpoint
from ferry.serving.runner import ModelRunner

__all__ = ["ServerApp", "build_app"]

log = logging.getLogger("ferry.server")


@dataclass(frozen=True, slots=True)
class ServerApp:
    """The ASGI app of one worker and the runner behind it."""

    asgi: RequestMiddleware
    runner: ModelRunner
    access_log: AccessLog | None = None


def _request_id(request: Request) -> str:
    return str(request.scope.get(REQUEST_ID_KEY, "-"))


async def _ferry_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, FerryError)
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return Response(
        error_body(error, _request_id(request)),
        status_code=status_for(error),
        media_type="application/json",
        headers=headers,
    )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    method, path = request.method, request.url.path
    converted: FerryError
    if error.status_code == 404:
        converted = NotFound(f"no route for {method} {path}; see /docs for the routes")
    elif error.status_code == 405:
        converted = BadRequest(f"{method} is not allowed on {path}; see /docs")
    else:
        converted = FerryError(str(error.detail))
    body = error_body(converted, _request_id(request))
    return Response(body, status_code=error.status_code, media_type="application/json")


async def _unexpected(request: Request, error: Exception) -> Response:
    converted = FerryError("internal server error; see the server log for this request id")
    return Response(
        error_body(converted, _request_id(request)), status_code=500, media_type="application/json"
    )


def build_app(
    settings: ServerSettings,
    source: ModelSource,
    *,
    model: LoadedModel | None = None,
    metrics: ServerMetrics | None = None,
    on_boot_failure: Callable[[BaseException], None] | None = None,
    on_ready: Callable[[], None] | None = None,
    ready_gate: Callable[[], bool] | None = None,
) -> ServerApp:
    """Wire one worker's app. The model loads (if not given) and warms up at startup.

    ``on_ready`` is called when this worker's model is ready; ``ready_gate`` must also be
    true for the worker to report ready and take predictions (the supervisor's "every
    worker has been ready" latch, see ``worker.HeartbeatBoard``).
    """
    metrics = metrics or ServerMetrics(source.name)
    runner = ModelRunner(
        source, settings, metrics, model=model, on_ready=on_ready, ready_gate=ready_gate
    )
    endpoint = settings.endpoint
    default_accept = "application/json"
    invocations = sagemaker.invocations_app(runner, default_accept)

    async def metrics_endpoint(_: Request) -> Response:
        asgi.flush_metrics()  # this process's tallies; other workers flush on their tick
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        *predict.routes(runner, endpoint=endpoint),
        *sagemaker.routes(runner, default_accept=default_accept),
        *v2.routes(runner, server_name="ferry", server_version=__version__),
        *health.routes(runner, lambda: runner.failure),
        Route("/metrics", metrics_endpoint),
        *openapi.routes(runner, endpoint, __version__),
    ]
    lifespan = _lifespan(runner, on_boot_failure)
    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            FerryError: _ferry_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    access_log = AccessLog(settings.log_format) if settings.access_log else None
    asgi = RequestMiddleware(
        starlette,
        metrics=metrics,
        access_log=access_log,
        max_body_bytes=settings.max_body_bytes,
        max_inflight=settings.max_inflight,
        known_routes=frozenset(
            {endpoint, "/invocations", "/ping", "/healthz", "/readyz", "/metrics", "/v2"}
            | {"/v2/health/live", "/v2/health/ready", "/openapi.json", "/docs"}
        ),
        exempt=frozenset({"/ping", "/healthz", "/readyz", "/metrics", "/v2/health/live"}),
        direct_posts={
            endpoint: predict.endpoint_app(runner),
            "/invocations": invocations,
        },
        runtime_app=RuntimeEndpoint(runner, invocations),
    )
    return ServerApp(asgi=asgi, runner=runner, access_log=access_log)


def _lifespan(
    runner: ModelRunner, on_boot_failure: Callable[[BaseException], None] | None
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if runner.preloaded:
            # Loaded before fork: the warm-up takes milliseconds, and uvicorn accepts no
            # connection before startup ends, so this worker never answers "not ready"
            # while its siblings already serve.
            try:
                await runner.start()
            except Exception as error:
                log.error("model failed to warm up: %s", error)
                if on_boot_failure is not None:
                    on_boot_failure(error)
                raise
            try:
                yield
            finally:
                await runner.stop()
            return
        # Loading takes a while: answer at once (live, not ready); ready after warm-up.
        task = asyncio.get_running_loop().create_task(runner.start())

        def done(finished: asyncio.Task[None]) -> None:
            error = None if finished.cancelled() else finished.exception()
            if error is not None:
                log.error("model failed to load: %s", error)
                if on_boot_failure is not None:
                    on_boot_failure(error)

        task.add_done_callback(done)
        try:
            yield
        finally:
            if not task.done():
                task.cancel()
            await runner.stop()

    return lifespan
