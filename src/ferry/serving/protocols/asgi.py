"""Plain ASGI plumbing for the prediction routes: bytes in, bytes out.

The prediction routes are the hot path; building framework request and response objects
for every small request costs more than the rest of the request's Python work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["ASGIApp", "Handler", "RawEndpoint", "header", "request_for"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# (body, scope) -> (content, media type); or a Starlette response for payload models
Handler = Callable[[bytes, Scope, Receive], Awaitable[tuple[bytes, str] | Response]]


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes), decoded as latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class RawEndpoint:
    """An ASGI app answering a POST with whatever ``handler`` makes of the body."""

    __slots__ = ("_handler",)

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        answer = await self._handler(body, scope, receive)
        if isinstance(answer, Response):
            await answer(scope, receive, send)
            return
        content, media = answer
        if media.startswith("text/"):
            media += "; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", media.encode()),
                    (b"content-length", str(len(content)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def request_for(scope: Scope, body: bytes) -> Request:
    """A Starlette request whose body has already been read (for payload models)."""

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(scope, replay)
    request._body = body  # what request.body() would have cached
    return request
