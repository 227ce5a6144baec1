"""Read an API's replica logs: the last lines of each file, then optionally follow them all.

Each line is prefixed ``[replica_id] ``. Following polls the directory, so replicas that
start later are picked up; it stops when the caller stops iterating (closes the generator).
A poll that finds nothing new yields an empty string: a caller reading in a worker thread
gets it back every ``poll_s`` and can stop once its reader has gone (and the control plane
sends it as an empty line, which ``ferry logs`` skips, so a gone reader is noticed).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["read_logs"]

# the supervisor's own health probes: noise in a user's view of the logs
_PROBES = ('"GET /readyz"', '"GET /metrics"')


def _shown(lines: list[str]) -> list[str]:
    return [line for line in lines if not any(probe in line for probe in _PROBES)]


def _tail(path: Path, count: int) -> tuple[list[str], int]:
    """The last ``count`` complete lines of ``path`` and the offset just past them."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError:
        return [], 0
    end = data.rfind(b"\n") + 1  # a partial last line is read later, once complete
    lines = _shown(data[:end].decode(errors="replace").splitlines())
    return (list(deque(lines, maxlen=count)) if count > 0 else []), end


def _read_new(path: Path, offset: int) -> tuple[list[str], int]:
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            data = stream.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    return _shown(data[:end].decode(errors="replace").splitlines()), offset + end


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.log"), key=lambda p: (p.stat().st_mtime, p.name))


def read_logs(
    directory: Path,
    *,
    follow: bool = False,
    tail: int = 100,
    poll_s: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """Lines of every ``*.log`` in ``directory``, prefixed with the file's stem."""
    offsets: dict[Path, int] = {}
    for path in _files(directory):
        lines, offsets[path] = _tail(path, tail)
        yield from (f"[{path.stem}] {line}" for line in lines)
    while follow:
        sleep(poll_s)
        found = False
        for path in _files(directory):
            lines, offsets[path] = _read_new(path, offsets.get(path, 0))
            found = found or bool(lines)
            yield from (f"[{path.stem}] {line}" for line in lines)
        if not found:
            yield ""  # nothing new: hand control back to the caller
