"""Structured logs: a text or JSON line per event, and a cheap access log.

The access log writes one line per request straight to a stream: the logging module's
per-record machinery costs more than the rest of a small request.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any, TextIO

import orjson

__all__ = ["AccessLog", "JsonFormatter", "configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra`` keys become fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Set up the ``ferry`` loggers once per process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(process)d] %(message)s")
        )
    root = logging.getLogger("ferry")
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    root.propagate = False


class AccessLog:
    """One line per request: method, path, status, duration, request id.

    Lines are buffered and written at most every ``flush_interval_s`` (the server calls
    ``flush`` on its tick and at shutdown) or when 64 KiB are pending: a write call per
    request is a measurable share of a small prediction.
    """

    _MAX_PENDING = 64 * 1024

    def __init__(self, fmt: str, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._json = fmt == "json"
        self._pending: list[str] = []
        self._pending_size = 0
        self._stamp_second = -1
        self._stamp = ""

    def write(
        self, method: str, path: str, status: int, seconds: float, request_id: str, client: str
    ) -> None:
        now = time.time()
        if self._json:
            line = orjson.dumps(
                {
                    "time": round(now, 6),
                    "type": "access",
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "request_id": request_id,
                    "client": client,
                }
            ).decode()
        else:
            line = (
                f'{self._timestamp(now)} access {client} "{method} {path}" {status} '
                f"{seconds * 1000:.2f}ms rid={request_id}"
            )
        self._pending.append(line)
        self._pending_size += len(line)
        if self._pending_size > self._MAX_PENDING:
            self.flush()

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
        return self._stamp

    def flush(self) -> None:
        """Write out the pending lines."""
        if not self._pending:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        self._pending_size = 0
        # a closed or broken log stream must not fail requests
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(text)
            self._stream.flush()
