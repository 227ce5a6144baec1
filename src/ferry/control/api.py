"""The control plane's HTTP API (starlette), bearer-token protected on every route.

Errors are JSON like the model server's: ``{"error": message, "code": code}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ferry.control.deployments import deploy_project
from ferry.control.reconciler import Reconciler
from ferry.control.store import Store
from ferry.control.views import api_detail, api_summary, event_json
from ferry.errors import BadRequest, ConfigError, FerryError, status_for
from ferry.runtime.base import RuntimeBackend

__all__ = ["DEFAULT_GATEWAY_URL", "build_app"]

DEFAULT_GATEWAY_URL = "http://127.0.0.1:8888"

Handler = Callable[[Request], Awaitable[Response]]


def error_response(error: FerryError) -> JSONResponse:
    status = 400 if isinstance(error, ConfigError) else status_for(error)
    return JSONResponse({"error": error.message, "code": error.code}, status_code=status)


class _Auth:
    """Pure ASGI (streams pass through untouched): 401 unless the bearer token matches."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = {"error": "missing or wrong bearer token", "code": "unauthorized"}
                await JSONResponse(body, status_code=401)(scope, receive, send)
                return
        await self._app(scope, receive, send)


class ControlApi:
    """The route handlers; collaborators come in through the constructor."""

    def __init__(
        self,
        store: Store,
        reconciler: Reconciler,
        backend: RuntimeBackend,
        info: Mapping[str, Any],
        clock: Callable[[], float] = time.time,
        on_shutdown: Callable[[bool], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.store, self.reconciler, self.backend = store, reconciler, backend
        self.info, self.clock, self.on_shutdown = dict(info), clock, on_shutdown
        self.on_change = on_change  # the desired state changed: reconcile now
        self.gateway_url = str(info.get("gateway_url", DEFAULT_GATEWAY_URL))

    async def deploy(self, request: Request) -> Response:
        body = await _json(request)
        path = body.get("path")
        if not isinstance(path, str) or not Path(path).is_absolute():
            raise BadRequest('body must be {"path": <absolute path of the project>}')
        outcomes = deploy_project(self.store, Path(path), self.clock())
        self._changed()
        apis = [{"api": o.api, "action": o.action, "revision": o.revision} for o in outcomes]
        return JSONResponse({"apis": apis})

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def list_apis(self, request: Request) -> Response:
        await self._fresh_stats(request)
        observed = self.reconciler.observed
        rows = [
            api_summary(self.store, record, observed, self.gateway_url)
            for record in self.store.apis()
        ]
        return JSONResponse({"apis": rows})

    async def get_api(self, request: Request) -> Response:
        record = self.store.api(request.path_params["name"])
        await self._fresh_stats(request)
        return JSONResponse(
            api_detail(self.store, record, self.reconciler.observed, self.gateway_url)
        )

    async def _fresh_stats(self, request: Request) -> None:
        """With ``?stats=fresh`` (``ferry get``), have the replicas' counters read first.

        Pollers (``ferry deploy`` waiting for "live") leave it out: they need no counters,
        and a replica busy serving should not slow their every poll.
        """
        if request.query_params.get("stats") == "fresh":
            await asyncio.to_thread(self.reconciler.refresh_stats)

    async def events(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.store.api(name)
        limit = _int(request.query_params.get("limit", "50"), "limit")
        return JSONResponse({"events": [event_json(e) for e in self.store.events(name, limit)]})

    async def delete(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.store.mark_deleting(name, self.clock())
        self.store.add_event(name, "info", "deleting", self.clock())
        self._changed()
        return JSONResponse({"api": name, "status": "deleting"}, status_code=202)

    async def refresh(self, request: Request) -> Response:
        name = request.path_params["name"]
        revision = self.store.refresh(name, self.clock())
        self.store.add_event(
            name, "info", f"refresh: replacing every replica ({revision})", self.clock()
        )
        self._changed()
        return JSONResponse({"api": name, "revision": revision})

    async def rollback(self, request: Request) -> Response:
        name = request.path_params["name"]
        revision = self.store.rollback(name, self.clock())
        self.store.add_event(name, "info", f"rolling back to {revision}", self.clock())
        self._changed()
        return JSONResponse({"api": name, "revision": revision})

    async def logs(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.store.api(name)
        follow = request.query_params.get("follow", "0") in ("1", "true")
        tail = _int(request.query_params.get("tail", "100"), "tail")
        lines = self.backend.logs(name, follow=follow, tail=tail)
        return StreamingResponse(
            iterate_in_threadpool(_with_newlines(lines)), media_type="text/plain"
        )

    async def cluster(self, request: Request) -> Response:
        records = self.store.apis()
        return JSONResponse(
            {**self.info, "apis": len(records), "replicas": len(self.reconciler.observed)}
        )

    async def shutdown(self, request: Request) -> Response:
        body = await _json(request)
        if self.on_shutdown is None:
            raise BadRequest("this control plane cannot be shut down over the API")
        self.on_shutdown(bool(body.get("stop_replicas", False)))
        return JSONResponse({"status": "stopping"}, status_code=202)


def _with_newlines(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        yield line if line.endswith("\n") else line + "\n"


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise BadRequest(f"the body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


def _int(text: str, name: str) -> int:
    try:
        return max(0, int(text))
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {text!r}") from None


def _guard(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except FerryError as error:
            return error_response(error)

    return guarded


def build_app(api: ControlApi, token: str) -> Starlette:
    """The ASGI app: every route behind the bearer token."""
    routes = [
        Route("/v1/deploy", _guard(api.deploy), methods=["POST"]),
        Route("/v1/apis", _guard(api.list_apis), methods=["GET"]),
        Route("/v1/apis/{name}", _guard(api.get_api), methods=["GET"]),
        Route("/v1/apis/{name}", _guard(api.delete), methods=["DELETE"]),
        Route("/v1/apis/{name}/events", _guard(api.events), methods=["GET"]),
        Route("/v1/apis/{name}/logs", _guard(api.logs), methods=["GET"]),
        Route("/v1/apis/{name}/refresh", _guard(api.refresh), methods=["POST"]),
        Route("/v1/apis/{name}/rollback", _guard(api.rollback), methods=["POST"]),
        Route("/v1/cluster", _guard(api.cluster), methods=["GET"]),
        Route("/v1/shutdown", _guard(api.shutdown), methods=["POST"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_Auth, token=token)])
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_allowed)
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    body = {"error": f"no route {request.method} {request.url.path}", "code": "not_found"}
    return JSONResponse(body, status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    body = {"error": f"method {request.method} not allowed here", "code": "method_not_allowed"}
    return JSONResponse(body, status_code=405)
