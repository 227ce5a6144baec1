"""``LocalBackend``: the ``RuntimeBackend`` of the local cluster (processes + nginx).

The composition root of this backend: a ``ReplicaSupervisor`` for the ``ferry serve``
processes (forked from a pre-warmed zygote by ``PreforkProcesses``), an ``NginxGateway``
for the one gateway port, and a small thread that ticks the supervisor (so a crash is
restarted even between reconcile ticks) and brings a dead gateway back. Constructing it
re-adopts what an earlier instance left running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from ferry.runtime.base import ReplicaSpec, ReplicaStatus, RoutingTable
from ferry.runtime.local.forking import PreforkProcesses
from ferry.runtime.local.gateway import GatewayError, NginxGateway
from ferry.runtime.local.logs import read_logs
from ferry.runtime.local.nginx_conf import GatewayOptions
from ferry.runtime.local.replicas import ReplicaSupervisor

__all__ = ["LocalBackend"]

log = logging.getLogger("ferry.runtime.local")


class LocalBackend:
    """Replicas as supervised local processes behind ferry's own nginx.

    Replicas are forked from a zygote that has ``ferry serve`` and the model frameworks
    imported already (``forking``; ``prefork=False`` starts each one fresh), so a new
    replica is ready in a fraction of a second rather than a few (decision 0008).

    Each API gets fixed upstream slots (ports its replicas take turns on) that the gateway
    always lists, so starting, stopping or losing a replica changes no route; an empty or
    draining slot refuses and the gateway tries the next (decision 0007). Routes live in
    the running nginx (decision 0010): deploying or deleting an API never reloads it.

    Every method is idempotent. ``stop_replica`` returns at once: the replica is reported
    ``TERMINATING`` while it drains (SIGTERM, then SIGKILL after its graceful timeout + 2 s)
    and disappears from ``observe()`` once gone. ``close()`` leaves replicas and gateway
    running for the next instance to adopt; ``shutdown()`` stops them all.
    """

    def __init__(
        self,
        state_dir: Path,
        gateway_port: int = 8888,
        *,
        gateway_workers: int = 1,
        upstream_timeout_s: float = 65.0,
        tick_s: float = 0.25,
        nginx: str | None = None,
        prefork: bool = True,
        processes: PreforkProcesses | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        options = GatewayOptions(
            port=gateway_port,
            worker_processes=gateway_workers,
            upstream_timeout_s=upstream_timeout_s,
        )
        self._gateway = NginxGateway(self.state_dir / "gateway", options, binary=nginx)
        self._gateway.check()  # nginx and its Lua module installed, or one clear error now
        # the zygote starts preloading now, while the control plane and gateway start
        if processes is None and prefork:
            processes = PreforkProcesses(self.state_dir / "zygote")
        self._processes = processes
        self._replicas = ReplicaSupervisor(self.state_dir, processes=processes)
        self._routes_applied = self._gateway.pid() is not None
        self._table: RoutingTable | None = None
        self._routes_lock = threading.Lock()  # one table at a time goes into nginx
        self._reloads = 0
        self._applied_slots: dict[str, tuple[int, ...]] = {}
        self._stop = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick_forever, args=(tick_s,), name="ferry-local-ticker", daemon=True
        )
        self._ticker.start()

    @property
    def gateway_url(self) -> str:
        """``http://127.0.0.1:PORT``: every API at ``/<endpoint>`` under it."""
        return self._gateway.url

    def observe(self) -> list[ReplicaStatus]:
        return self._replicas.observe()

    def start_replica(self, spec: ReplicaSpec) -> None:
        self._replicas.start(spec)
        self._apply_slots()  # the API's first replica, or one slot more: new routes

    def stop_replica(self, replica_id: str, *, drain: bool = True) -> None:
        self._replicas.stop(replica_id, drain=drain)

    def apply_routes(self, table: RoutingTable) -> None:
        """Route each API over all of its slots; nginx takes new routes without a reload
        (it is started or reloaded only when its own configuration changes)."""
        self._replicas.release_slots({route.api for route in table.apis})
        with self._routes_lock:
            self._apply(table)
            self._table = table
        self._routes_applied = True

    def _apply(self, table: RoutingTable) -> None:
        slots = self._replicas.slots()
        self._reloads += self._gateway.apply(table, slots)
        self._applied_slots = slots

    def _apply_slots(self) -> None:
        """Put new slots in the gateway (none is the rule); the ticker retries a failure.
        Under the routes lock: the table it re-renders must be the latest one applied, not
        one that ``apply_routes`` is replacing on another thread."""
        with self._routes_lock:
            if self._table is None or self._replicas.slots() == self._applied_slots:
                return
            try:
                self._apply(self._table)
            except (OSError, GatewayError, ValueError) as error:
                log.warning("cannot add gateway slots yet: %s", error)

    def zygote_pid(self) -> int | None:
        """The pid of the zygote that forks replicas, if one runs (tests, diagnostics)."""
        return self._processes.zygote_pid() if self._processes is not None else None

    def gateway_reloads(self) -> int:
        """How many times this backend started or reloaded nginx (tests, diagnostics)."""
        return self._reloads

    def logs(self, api: str, *, follow: bool = False, tail: int = 100) -> Iterator[str]:
        return read_logs(self._replicas.log_dir(api), follow=follow, tail=tail)

    def wait_stopped(self, replica_ids: list[str], timeout: float = 30.0) -> bool:
        """Block until the given replicas have stopped and been forgotten (tests, CLI)."""
        return self._replicas.wait_gone(replica_ids, timeout)

    def close(self) -> None:
        """Stop watching; replicas and the gateway keep running and are adopted next time."""
        self._stop_ticker()
        self._replicas.close()

    def _stop_ticker(self) -> None:
        self._stop.set()
        if self._ticker.is_alive() and threading.current_thread() is not self._ticker:
            self._ticker.join(timeout=5)

    def shutdown(self, timeout: float = 40.0) -> None:
        """Stop every replica (draining) and the gateway: ``ferry cluster down``."""
        self._stop_ticker()  # else it could bring the gateway back as it stops
        try:
            ids = self._replicas.ids()
            for replica_id in ids:
                self._replicas.stop(replica_id, drain=True)
            if not self._replicas.wait_gone(ids, timeout):
                for replica_id in self._replicas.ids():
                    self._replicas.stop(replica_id, drain=False)
                self._replicas.wait_gone(ids, 5.0)
        finally:
            self._gateway.stop()
            self.close()

    def _tick_forever(self, period: float) -> None:
        while not self._stop.wait(period):
            try:
                self._replicas.tick()
                if self._routes_applied:
                    self._gateway.ensure_running()
                self._apply_slots()  # a restart may have needed a new slot
            except (OSError, GatewayError, ValueError) as error:  # keep supervising
                log.warning("local runtime tick failed: %s", error)
