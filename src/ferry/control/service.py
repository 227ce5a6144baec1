"""The control-plane process: the composition root of store, reconciler, backend and API.

``launch.run_control_plane`` (what ``ferry cluster up --foreground`` runs) takes the state
directory's lock, builds the backend and then runs a ``ControlPlane``. The backend is
injected because the control plane never imports a concrete backend; the CLI, which may
import every layer, builds the local one. One control plane per state directory: a lock
file held for the process's lifetime makes a second one exit at once.

Files in the state directory (all 0600): ``ferry.db`` (the store), ``token`` (the bearer
token clients send), ``control.json`` (pid, URL; removed on a clean exit) and
``control.lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from ferry import __version__
from ferry.control.api import DEFAULT_GATEWAY_URL, ControlApi, build_app
from ferry.control.reconciler import Reconciler, Scrape
from ferry.control.store import Store
from ferry.runtime.base import RoutingTable, RuntimeBackend

__all__ = ["ControlPlane", "read_token"]

log = logging.getLogger("ferry.control")

CONTROL_FILE = "control.json"
TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret
DATABASE_FILE = "ferry.db"


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(path.with_suffix(".tmp"), path)


def read_token(state_dir: Path, *, create: bool = False) -> str | None:
    """The bearer token of the control plane in ``state_dir`` (made once if ``create``)."""
    path = state_dir / TOKEN_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    if not create:
        return None
    token = secrets.token_urlsafe(32)
    _write_private(path, token)
    return token


SETTLING_TICK_S = 0.1  # tick interval while replicas start or drain


class ControlPlane:
    """The API server and the reconcile loop in one event loop; ``serve`` blocks.

    The loop ticks every ``tick_interval``; every ``SETTLING_TICK_S`` while the reconciler
    is settling (replicas starting or draining); and at once after a change through the
    API (deploy, delete, refresh, rollback), so nothing waits for the next tick.
    """

    def __init__(
        self,
        state_dir: Path,
        backend: RuntimeBackend,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tick_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        scrape: Scrape | None = None,
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state_dir, self.backend, self.tick_interval = state_dir, backend, tick_interval
        self.token = read_token(state_dir, create=True) or ""
        self.store = Store(state_dir / DATABASE_FILE)
        self.reconciler = Reconciler(self.store, backend, clock, scrape=scrape)
        self._socket = socket.create_server((host, port))
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        self._stop_replicas = False
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._wake: asyncio.Event | None = None
        self.api = ControlApi(
            self.store, self.reconciler, backend, self._info(), clock, self.stop, self.wake
        )

    def _info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "url": self.url,
            "gateway_url": str(getattr(self.backend, "gateway_url", DEFAULT_GATEWAY_URL)),
            "backend": type(self.backend).__name__,
            "state_dir": str(self.state_dir),
            "version": __version__,
            "started": time.time(),
        }

    def app(self) -> Starlette:
        return build_app(self.api, self.token)

    def serve(self) -> None:
        """Serve until stopped (SIGTERM/SIGINT in the main thread, ``stop``, or the API)."""
        config = uvicorn.Config(
            self.app(),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        _write_private(self.state_dir / CONTROL_FILE, json.dumps(self.api.info))
        try:
            asyncio.run(self._run(self._server))
        finally:
            self._finish()

    async def _run(self, server: uvicorn.Server) -> None:
        self._wake = asyncio.Event()
        loop_task = asyncio.create_task(self._reconcile_forever())
        self._ready.set()
        try:
            await server.serve(sockets=[self._socket])
        finally:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task

    async def _reconcile_forever(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                await asyncio.to_thread(self.reconciler.tick)
            except Exception:  # tick never raises; this keeps the loop alive if it ever does
                log.exception("reconcile loop")
            interval = self.tick_interval
            if self.reconciler.settling:
                interval = min(interval, SETTLING_TICK_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    def wake(self) -> None:
        """Tick now (or right after the tick under way): the desired state changed.
        Called on the event loop's thread (the API's handlers)."""
        if self._wake is not None:
            self._wake.set()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return self._ready.wait(timeout)

    def stop(self, stop_replicas: bool = False) -> None:
        """Ask the server to exit; with ``stop_replicas``, stop every replica on the way out."""
        self._stop_replicas = self._stop_replicas or stop_replicas
        if self._server is not None:
            self._server.should_exit = True

    def _finish(self) -> None:
        control = self.state_dir / CONTROL_FILE
        with contextlib.suppress(OSError, ValueError):
            if json.loads(control.read_text(encoding="utf-8")).get("pid") == os.getpid():
                control.unlink()
        if self._stop_replicas:
            self._stop_everything()
        with contextlib.suppress(Exception):
            self.backend.close()
        self.store.close()
        self._socket.close()

    def _stop_everything(self) -> None:
        try:
            shutdown = getattr(self.backend, "shutdown", None)
            if callable(shutdown):  # the backend stops its replicas and gateway itself
                shutdown()
            else:
                self._stop_replicas_one_by_one()
            for record in self.store.replicas():
                self.store.remove_replica(record.replica_id)
        except Exception:
            log.exception("stopping the replicas failed")

    def _stop_replicas_one_by_one(self) -> None:
        self.backend.apply_routes(RoutingTable())
        for status in self.backend.observe():
            self.backend.stop_replica(status.replica_id, drain=True)
