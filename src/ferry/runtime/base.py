"""The interface between the control plane and wherever replicas run.

Every call into processes, Ray or a cloud goes through one ``RuntimeBackend``. Calls are
idempotent: starting a replica that exists, stopping one that is gone, or applying the
same routes twice changes nothing. Tests drive the control plane with an in-memory fake.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ferry.config import ModelSpec

__all__ = [
    "ApiRoute",
    "ReplicaSpec",
    "ReplicaState",
    "ReplicaStatus",
    "RoutingTable",
    "RuntimeBackend",
    "SplitRoute",
]


class ReplicaState(StrEnum):
    STARTING = "starting"  # process up, model loading or warming up
    READY = "ready"  # answers /readyz with 200
    FAILED = "failed"  # exited; ``cannot_boot`` tells a bad revision from a crash
    TERMINATING = "terminating"  # draining after a stop


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """What to run for one replica of one revision of an API.

    ``server`` holds ``ServerSettings`` fields (workers, predictor_threads, batching, ...);
    the backend chooses host and port.
    """

    replica_id: str
    api: str
    revision: str
    model: ModelSpec
    server: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """One observation of a replica."""

    replica_id: str
    api: str
    revision: str
    state: ReplicaState
    address: str | None = None  # "127.0.0.1:PORT" once listening
    pid: int | None = None
    in_flight: int = 0
    started_at: float = 0.0
    restarts: int = 0
    cannot_boot: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """Where the gateway sends ``endpoint``: the ready replicas of one API."""

    api: str
    endpoint: str
    addresses: tuple[str, ...]
    max_concurrency: int = 1024  # per replica, then 503


@dataclass(frozen=True, slots=True)
class SplitRoute:
    """A traffic splitter: weighted APIs (weights sum to 100) and an optional shadow that
    gets a copy of ``shadow_weight`` % of the requests (its answers are discarded)."""

    name: str
    endpoint: str
    weights: tuple[tuple[str, int], ...]
    shadow: str | None = None
    shadow_weight: int = 100


@dataclass(frozen=True, slots=True)
class RoutingTable:
    apis: tuple[ApiRoute, ...] = ()
    splitters: tuple[SplitRoute, ...] = ()


class RuntimeBackend(Protocol):
    """Where replicas run. Every method is idempotent and safe to call on every tick."""

    def observe(self) -> list[ReplicaStatus]:
        """Every replica the backend knows of, including failed ones not yet removed."""
        ...

    def start_replica(self, spec: ReplicaSpec) -> None:
        """Start ``spec`` unless a replica with its id exists."""
        ...

    def stop_replica(self, replica_id: str, *, drain: bool = True) -> None:
        """Stop a replica (draining in-flight requests first) and forget it."""
        ...

    def apply_routes(self, table: RoutingTable) -> None:
        """Make the gateway route exactly as ``table`` says (graceful reload)."""
        ...

    def logs(self, api: str, *, follow: bool = False, tail: int = 100) -> Iterator[str]:
        """Log lines of every replica of ``api``, each prefixed with its replica id."""
        ...

    def close(self) -> None:
        """Release what the backend holds; replicas keep running (they are re-adopted)."""
        ...
