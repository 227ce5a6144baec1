"""An in-memory ``RuntimeBackend``: replicas boot after a number of observations.

Every ``observe`` call is one step of time for the replicas: a starting replica becomes
ready after ``boot_ticks`` observations (or fails with ``cannot_boot`` if its revision is
marked broken), a terminating one is gone after ``drain_ticks``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ferry.runtime.base import ReplicaSpec, ReplicaState, ReplicaStatus, RoutingTable


@dataclass
class FakeReplica:
    spec: ReplicaSpec
    status: ReplicaStatus
    age: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.status.state == ReplicaState.READY


class FakeBackend:
    def __init__(
        self,
        boot_ticks: int = 1,
        drain_ticks: int = 1,
        gateway_url: str = "http://127.0.0.1:8888",
    ) -> None:
        self.boot_ticks = boot_ticks
        self.drain_ticks = drain_ticks
        self.gateway_url = gateway_url
        self.replicas: dict[str, FakeReplica] = {}
        self.broken: dict[str, str] = {}  # revision (or api name) -> reason
        self.routes: RoutingTable | None = None
        self.route_updates = 0
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.closed = False
        self._ports = itertools.count(20000)
        self._lock = threading.Lock()

    # --- RuntimeBackend -------------------------------------------------------------------

    def observe(self) -> list[ReplicaStatus]:
        with self._lock:
            for replica_id in list(self.replicas):
                self._advance(replica_id)
            return [replica.status for replica in self.replicas.values()]

    def start_replica(self, spec: ReplicaSpec) -> None:
        with self._lock:
            if spec.replica_id in self.replicas:
                return
            status = ReplicaStatus(
                spec.replica_id, spec.api, spec.revision, ReplicaState.STARTING, pid=1000
            )
            self.replicas[spec.replica_id] = FakeReplica(
                spec, status, log=[f"loading {spec.model.uri}"]
            )
            self.started.append(spec.replica_id)

    def stop_replica(self, replica_id: str, *, drain: bool = True) -> None:
        with self._lock:
            replica = self.replicas.get(replica_id)
            if replica is None or replica.status.state == ReplicaState.TERMINATING:
                return
            self.stopped.append(replica_id)
            if replica.status.state == ReplicaState.FAILED or not drain:
                del self.replicas[replica_id]
                return
            replica.status = replace(replica.status, state=ReplicaState.TERMINATING)
            replica.age = 0

    def apply_routes(self, table: RoutingTable) -> None:
        with self._lock:
            self.routes = table
            self.route_updates += 1

    def logs(self, api: str, *, follow: bool = False, tail: int = 100) -> Iterator[str]:
        with self._lock:
            lines = [
                f"[{replica_id}] {line}"  # as the local backend prefixes them
                for replica_id, replica in self.replicas.items()
                if replica.spec.api == api
                for line in replica.log
            ]
        yield from lines[-tail:]

    def close(self) -> None:
        self.closed = True

    # --- test controls --------------------------------------------------------------------

    def break_revision(self, revision: str, reason: str = "ModelLoadError: no such file") -> None:
        self.broken[revision] = reason

    def break_api(self, api: str, reason: str = "ModelLoadError: no such file") -> None:
        """Every revision of ``api`` cannot boot."""
        self.broken[api] = reason

    def crash(self, replica_id: str, reason: str = "exited with signal 9") -> None:
        with self._lock:
            replica = self.replicas[replica_id]
            replica.status = replace(
                replica.status, state=ReplicaState.FAILED, reason=reason, address=None
            )

    def set_in_flight(self, api: str, total: int) -> None:
        """Spread ``total`` requests in flight over ``api``'s ready replicas."""
        with self._lock:
            ready = [r for r in self.replicas.values() if r.status.api == api and r.ready]
            for index, replica in enumerate(ready):
                share = total // len(ready) + (index < total % len(ready))
                replica.status = replace(replica.status, in_flight=share)

    def of(self, api: str, state: ReplicaState | None = None) -> list[ReplicaStatus]:
        with self._lock:
            return [
                r.status
                for r in self.replicas.values()
                if r.status.api == api and (state is None or r.status.state == state)
            ]

    def _advance(self, replica_id: str) -> None:
        replica = self.replicas[replica_id]
        replica.age += 1
        state = replica.status.state
        if state == ReplicaState.TERMINATING and replica.age >= self.drain_ticks:
            del self.replicas[replica_id]
        elif state == ReplicaState.STARTING and replica.age >= self.boot_ticks:
            reason = self.broken.get(replica.spec.revision) or self.broken.get(replica.spec.api)
            if reason is not None:
                replica.status = replace(
                    replica.status, state=ReplicaState.FAILED, cannot_boot=True, reason=reason
                )
            else:
                address = f"127.0.0.1:{next(self._ports)}"
                replica.status = replace(replica.status, state=ReplicaState.READY, address=address)
                replica.log.append("ready")
