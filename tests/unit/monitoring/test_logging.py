"""Access log lines and structured log records."""

from __future__ import annotations

import io
import json
import logging

from ferry.monitoring.logging import AccessLog, JsonFormatter


def test_access_lines_are_buffered_until_flush() -> None:
    stream = io.StringIO()
    log = AccessLog("text", stream)
    log.write("POST", "/predict", 200, 0.0123, "abc-1", "127.0.0.1")
    assert stream.getvalue() == ""
    log.flush()
    line = stream.getvalue()
    assert line.endswith("\n")
    assert '"POST /predict" 200 12.30ms rid=abc-1' in line
    log.flush()  # nothing pending: nothing written twice
    assert stream.getvalue() == line


def test_json_access_lines_carry_every_field() -> None:
    stream = io.StringIO()
    log = AccessLog("json", stream)
    log.write("GET", "/readyz", 503, 0.001, "r-2", "10.0.0.1")
    log.flush()
    entry = json.loads(stream.getvalue())
    assert entry["type"] == "access"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/readyz", 503)
    assert entry["request_id"] == "r-2"
    assert entry["duration_ms"] == 1.0


def test_a_large_backlog_is_written_without_waiting_for_a_flush() -> None:
    stream = io.StringIO()
    log = AccessLog("text", stream)
    for i in range(2000):
        log.write("POST", "/predict", 200, 0.001, f"id-{i}", "127.0.0.1")
    assert stream.getvalue().count("\n") > 1000


def test_a_broken_stream_does_not_raise() -> None:
    stream = io.StringIO()
    stream.close()
    log = AccessLog("text", stream)
    log.write("POST", "/predict", 200, 0.001, "x", "-")
    log.flush()


def test_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "loaded %s",
            "args": ("iris",),
            "levelname": "INFO",
            "name": "ferry",
            "model": "iris",
        }
    )
    try:
        raise ValueError("bad weights")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "loaded iris"
    assert entry["model"] == "iris"
    assert "ValueError: bad weights" in entry["exception"]
