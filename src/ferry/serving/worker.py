"""One worker process: a uvicorn server on the shared socket, heartbeating to its supervisor."""

from __future__ import annotations

import asyncio
import gc
import logging
import mmap
import socket
import struct
import time
from pathlib import Path

import uvicorn

from ferry.config import ServerSettings
from ferry.models.base import LoadedModel, ModelSource
from ferry.serving.app import ServerApp, build_app

__all__ = ["EXIT_CANNOT_BOOT", "HeartbeatBoard", "run_worker"]

EXIT_CANNOT_BOOT = 3
ACCEPT_GRACE_S = 0.3
"""How long a stopping worker still reads requests on connections it already accepted."""
GC_YOUNG_THRESHOLD = 10_000
log = logging.getLogger("ferry.worker")
_SLOT = struct.Struct("d")


class HeartbeatBoard:
    """Shared memory with one monotonic timestamp per worker slot (created before fork).

    It also holds one "has been ready" byte per slot. The server is ready once every slot
    has been: workers that load their model after fork (Python predictors, ONNX, torch)
    get there one by one, and a health check that passed on the first of them would send
    traffic that the others answer with 503. The bytes are never cleared, so a worker
    replaced later does not make the whole server unready while the others serve.
    """

    def __init__(self, slots: int) -> None:
        self._memory = mmap.mmap(-1, _SLOT.size * slots + slots)
        self._ready_at = _SLOT.size * slots
        self.slots = slots
        self._all_ready = False

    def mark_ready(self, slot: int) -> None:
        self._memory[self._ready_at + slot] = 1

    def all_ready(self) -> bool:
        """True once every slot's worker has been ready at least once (then stays true)."""
        if not self._all_ready:
            start = self._ready_at
            self._all_ready = all(self._memory[start : start + self.slots])
        return self._all_ready

    def beat(self, slot: int) -> None:
        _SLOT.pack_into(self._memory, slot * _SLOT.size, time.monotonic())

    def last(self, slot: int) -> float:
        return float(_SLOT.unpack_from(self._memory, slot * _SLOT.size)[0])


class _Server(uvicorn.Server):
    """uvicorn's server, plus a heartbeat on every tick of its main loop.

    The tick (every 0.1 s) also writes out the access log and the tallied request metrics.
    """

    def __init__(
        self, config: uvicorn.Config, board: HeartbeatBoard, slot: int, app: ServerApp
    ) -> None:
        super().__init__(config)
        self._board = board
        self._slot = slot
        self._app = app

    def _flush(self) -> None:
        self._app.asgi.flush_metrics()
        if self._app.access_log is not None:
            self._app.access_log.flush()

    async def on_tick(self, counter: int) -> bool:
        self._board.beat(self._slot)
        self._flush()
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn closes every connection that has no request in progress at once, which
        # drops a connection accepted a moment ago whose request is still on its way.
        # Stop accepting first and give such requests a moment to arrive; they are then
        # in flight and are answered (with Connection: close) like any other.
        for server in self.servers:
            server.close()
        if self.server_state.connections:
            await asyncio.sleep(ACCEPT_GRACE_S)
        await super().shutdown(sockets)
        self._flush()


def _loop_and_http() -> tuple[str, str]:
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - both ship with uvicorn[standard]
        return "asyncio", "h11"
    return "uvloop", "httptools"


def _ready(board: HeartbeatBoard, slot: int) -> None:
    """The model is loaded and warm: tell the supervisor, and tune the garbage collector.

    Everything alive at this point (modules, the model, the app) lives as long as the
    process. Frozen, the garbage collector's full collections no longer walk it: under load
    they were several percent of a small prediction's CPU time, and each one wrote to every
    object's header, copying the pages this worker shares with the supervisor. ``freeze``
    itself touches no object.

    The youngest generation is collected after ``GC_YOUNG_THRESHOLD`` allocations instead
    of 700: a few dozen requests in flight hold about that many objects, so at 700 it was
    collected (walking them all) every few dozen requests.
    """
    board.mark_ready(slot)
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def run_worker(
    settings: ServerSettings,
    source: ModelSource,
    model: LoadedModel | None,
    sock: socket.socket,
    board: HeartbeatBoard,
    slot: int,
    failure_file: Path,
) -> int:
    """Serve until told to stop; the exit code tells the supervisor how it ended."""
    boot_error: list[BaseException] = []
    server: _Server | None = None

    def on_boot_failure(error: BaseException) -> None:
        boot_error.append(error)
        failure_file.write_text(str(error))
        if server is not None:
            server.should_exit = True

    app = build_app(
        settings,
        source,
        model=model,
        on_boot_failure=on_boot_failure,
        on_ready=lambda: _ready(board, slot),
        ready_gate=board.all_ready,
    )
    loop, http = _loop_and_http()
    config = uvicorn.Config(
        app.asgi,
        loop=loop,
        http=http,
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s) or None,
        timeout_keep_alive=5,
        server_header=False,
        proxy_headers=False,
        date_header=False,
        limit_concurrency=None,
        backlog=2048,
    )
    server = _Server(config, board, slot, app)
    board.beat(slot)
    server.run(sockets=[sock])
    return EXIT_CANNOT_BOOT if boot_error else 0
