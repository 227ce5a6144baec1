"""The one ASGI layer every request passes: ids, limits, metrics, access log, last-resort 500.

Written as plain ASGI: the per-request cost of a generic middleware base would be a
visible share of a small prediction.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from ferry.errors import FerryError, Overloaded, PayloadTooLarge, status_for
from ferry.monitoring.logging import AccessLog
from ferry.monitoring.metrics import FLUSH_INTERVAL_S, RequestTally, ServerMetrics
from ferry.serving.protocols.sagemaker_runtime import PATH_PREFIX as RUNTIME_PREFIX
from ferry.serving.protocols.sagemaker_runtime import endpoint_name

__all__ = ["REQUEST_ID_KEY", "RequestMiddleware", "error_body", "route_label"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_KEY = "ferry.request_id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_V2_MODEL = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?")
log = logging.getLogger("ferry.server")


def error_body(error: FerryError, request_id: str) -> bytes:
    """The JSON body of every error response."""
    return orjson.dumps({"error": error.message, "code": error.code, "request_id": request_id})


def route_label(path: str, known: frozenset[str]) -> str:
    """A low-cardinality label for a path: the path itself if known, a template for v2."""
    if path in known:
        return path
    if path.startswith("/v2/models/"):
        return _V2_MODEL.sub("/v2/models/{name}", path, count=1)
    if endpoint_name(path) is not None:
        return "/endpoints/{name}/invocations"
    return "other"


class _BodyLimit:
    """Wraps ``receive`` so a streamed body over the limit raises ``PayloadTooLarge``."""

    __slots__ = ("_limit", "_receive", "_seen")

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._seen = 0

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                raise PayloadTooLarge(_too_large(self._limit))
        return message


def _too_large(limit: int) -> str:
    return f"request body is over the limit of {limit} bytes; send smaller batches"


class RequestMiddleware:
    """Request id, in-flight limit, body limit, metrics and access log around ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServerMetrics,
        access_log: AccessLog | None,
        max_body_bytes: int,
        max_inflight: int,
        known_routes: frozenset[str],
        exempt: frozenset[str] = frozenset(),
        direct_posts: dict[str, ASGIApp] | None = None,
        runtime_app: ASGIApp | None = None,
    ) -> None:
        self._app = app
        # the prediction routes skip the framework's routing and exception layers
        self._direct = direct_posts or {}
        self._runtime = runtime_app  # POST /endpoints/{name}/invocations (SageMaker Runtime)
        self._metrics = metrics
        self._access_log = access_log
        self._max_body = max_body_bytes
        self._max_inflight = max_inflight
        self._known = known_routes
        self._exempt = exempt  # health and metrics answer even when overloaded
        self._inflight = 0
        self._prefix = os.urandom(3).hex()
        self._tallies: dict[tuple[str, str, int], RequestTally] = {}
        self._flushed_at = 0.0
        self._counter = 0

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text: str = value.decode("latin-1")
                if _VALID_ID.match(text):
                    return text
        self._counter += 1
        return f"{self._prefix}-{self._counter:x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self._request_id(scope)
        scope[REQUEST_ID_KEY] = request_id
        path: str = scope["path"]
        status = [0]  # 0 until the response starts
        rid_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        self._inflight += 1
        try:
            rejection, bounded = self._reject(scope, path)
            if rejection is not None:
                await _send_error(send_with_id, rejection, request_id)
            else:
                if not bounded:
                    receive = _BodyLimit(receive, self._max_body)
                await self._call_app(scope, receive, send_with_id, request_id, status)
        finally:
            self._inflight -= 1
            now = time.perf_counter()
            self._record(scope, path, status[0] or 500, now - started, request_id)
            if not self._inflight or now - self._flushed_at >= FLUSH_INTERVAL_S:
                self._metrics.flush(self._inflight)
                self._flushed_at = now

    def flush_metrics(self) -> None:
        """Write the tallied request metrics out (before a scrape, on the server's tick)."""
        self._metrics.flush(self._inflight)
        self._flushed_at = time.perf_counter()

    def _reject(self, scope: Scope, path: str) -> tuple[FerryError | None, bool]:
        """Why the request is turned away, if it is; and whether its body is known in size.

        A body with a ``Content-Length`` within the limit cannot grow past it (the HTTP
        server reads exactly that many bytes), so only other bodies are counted as they
        stream in.
        """
        if path in self._exempt:
            return None, False
        if self._inflight > self._max_inflight:
            self._metrics.rejected.labels("overloaded").inc()
            overloaded = Overloaded(
                f"server is at its limit of {self._max_inflight} requests in flight; retry later"
            )
            return overloaded, False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    return None, False
                if int(value) > self._max_body:
                    self._metrics.rejected.labels("too_large").inc()
                    return PayloadTooLarge(_too_large(self._max_body)), False
                return None, True
        return None, False

    async def _call_app(
        self, scope: Scope, receive: Receive, send: Send, rid: str, status: list[int]
    ) -> None:
        app = None
        if scope["method"] == "POST":
            path = scope["path"]
            app = self._direct.get(path)
            if app is None and path.startswith(RUNTIME_PREFIX):
                app = self._runtime
        try:
            await (app or self._app)(scope, receive, send)
        except Exception as error:
            if not isinstance(error, FerryError):
                log.exception("unhandled error (request id %s)", rid)
                error = FerryError("internal server error; see the server log for this request id")
            if not status[0]:  # nothing sent yet
                await _send_error(send, error, rid)

    def _record(self, scope: Scope, path: str, status: int, seconds: float, rid: str) -> None:
        method: str = scope["method"]
        key = (path, method, status)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._metrics.tally(route_label(path, self._known), method, str(status))
            if len(self._tallies) < 1024:  # unknown paths must not grow this without bound
                self._tallies[key] = tally
        tally.add(seconds)
        if self._access_log is not None:
            client = scope.get("client")
            self._access_log.write(method, path, status, seconds, rid, client[0] if client else "-")


async def _send_error(send: Send, error: FerryError, request_id: str) -> None:
    body = error_body(error, request_id)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status_for(error), "headers": headers})
    await send({"type": "http.response.body", "body": body})
