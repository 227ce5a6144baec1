"""An HTTP proxy in front of moto's server that answers the next N requests as AWS does
when it throttles a JSON-protocol service (HTTP 400, ``ThrottlingException``).

moto never throttles; this lets the tests see botocore's own retries and what ferry says
once they run out, over real HTTP. Usage::

    with throttling_proxy(moto_url) as proxy:
        proxy.throttle(2)          # the next two requests are throttled
        ... AWS_ENDPOINT_URL=proxy.url ...
        proxy.throttled, proxy.forwarded
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_THROTTLED = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
_THROTTLED_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "x-amzn-ErrorType": "ThrottlingException",
}
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class ThrottlingProxy:
    """What the proxy has done, and how many of the next requests it throttles."""

    def __init__(self, target: str, server: ThreadingHTTPServer) -> None:
        self.target = target
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.throttled = 0
        self.forwarded = 0
        self._pending = 0
        self._lock = threading.Lock()

    def throttle(self, count: int) -> None:
        """Throttle the next ``count`` requests (a large number: every request)."""
        with self._lock:
            self._pending = count
            self.throttled = self.forwarded = 0

    def take(self) -> bool:
        """True when this request is to be throttled."""
        with self._lock:
            if self._pending > 0:
                self._pending -= 1
                self.throttled += 1
                return True
            self.forwarded += 1
            return False


def _handler(proxy_of: list[ThrottlingProxy]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            proxy = proxy_of[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if proxy.take():
                self._answer(400, _THROTTLED_HEADERS, _THROTTLED)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            answer = httpx.request(
                self.command, proxy.target + self.path, headers=headers, content=body, timeout=60
            )
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            kept.pop("content-encoding", None)  # httpx has decoded the body already
            self._answer(answer.status_code, kept, answer.content)

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def do_HEAD(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextlib.contextmanager
def throttling_proxy(target: str) -> Iterator[ThrottlingProxy]:
    """A proxy to ``target`` on a port the OS picks, serving in a daemon thread."""
    holder: list[ThrottlingProxy] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(holder))
    holder.append(ThrottlingProxy(target, server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
