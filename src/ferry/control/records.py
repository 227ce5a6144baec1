"""The control plane's records: what the store keeps and the API returns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ferry.control.autoscaler import Recommendation, Sample

__all__ = [
    "ApiRecord",
    "AutoscalerState",
    "Event",
    "ReplicaRecord",
    "RequestStats",
    "Revision",
]


@dataclass(frozen=True)
class ApiRecord:
    """One deployed API (or traffic splitter) and where the reconciler has got it to.

    ``failed_revision`` is a target that cannot boot; while it is the target, the API runs
    ``fallback_revision`` instead (or nothing, on a first deploy).
    """

    name: str
    kind: str
    endpoint: str
    target_revision: str
    previous_revision: str | None
    failed_revision: str | None
    fallback_revision: str | None
    status: str
    reason: str
    desired: int
    restarts: int
    deleting: bool
    created: float
    updated: float
    last_update: float

    @property
    def running_revision(self) -> str | None:
        """The revision the reconciler drives replicas towards now."""
        if self.failed_revision is not None and self.failed_revision == self.target_revision:
            return self.fallback_revision
        return self.target_revision

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["deleting"] = bool(self.deleting)
        return data


@dataclass(frozen=True)
class Revision:
    """One spec of an API; ``spec`` is the API's entry of ferry.yaml, validated."""

    api: str
    revision: str
    spec: dict[str, Any]
    root: str
    created: float


@dataclass(frozen=True)
class ReplicaRecord:
    """A replica the control plane asked a backend for."""

    replica_id: str
    api: str
    revision: str
    created: float


@dataclass(frozen=True)
class Event:
    api: str
    at: float
    level: str
    message: str


@dataclass(frozen=True)
class RequestStats:
    """Request counters by status class, and the time spent answering them."""

    ok: int = 0  # 2XX
    client_errors: int = 0  # 4XX
    server_errors: int = 0  # 5XX
    seconds: float = 0.0
    count: int = 0  # requests whose duration is in ``seconds``

    @property
    def avg_seconds(self) -> float | None:
        return self.seconds / self.count if self.count else None

    def to_list(self) -> list[float]:
        return [self.ok, self.client_errors, self.server_errors, self.seconds, self.count]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> RequestStats:
        ok, client, server, seconds, count = values
        return cls(int(ok), int(client), int(server), float(seconds), int(count))

    def minus(self, last: RequestStats) -> RequestStats:
        """What was added since ``last``; all of self if a counter went backwards (restart)."""
        mine, theirs = self.to_list(), last.to_list()
        if any(now < before for now, before in zip(mine, theirs, strict=True)):
            return self
        pairs = zip(mine, theirs, strict=True)
        return RequestStats.from_list([now - before for now, before in pairs])

    def plus(self, other: RequestStats) -> RequestStats:
        mine, theirs = self.to_list(), other.to_list()
        return RequestStats.from_list([a + b for a, b in zip(mine, theirs, strict=True)])

    def to_json(self) -> dict[str, Any]:
        return {
            "2XX": self.ok,
            "4XX": self.client_errors,
            "5XX": self.server_errors,
            "avg_request_seconds": self.avg_seconds,
        }


@dataclass(frozen=True)
class AutoscalerState:
    """What the autoscaler remembers between decisions about one API."""

    started_at: float
    history: tuple[Recommendation, ...] = ()
    samples: tuple[Sample, ...] = field(default=())
    last_decision_at: float | None = None
    reason: str = ""

    def to_json(self) -> tuple[float, str, str]:
        history = [[r.at, r.replicas] for r in self.history]
        extra = {"last_decision_at": self.last_decision_at, "reason": self.reason}
        samples = {"samples": [[s.at, s.in_flight] for s in self.samples], **extra}
        return self.started_at, json.dumps(history), json.dumps(samples)

    @classmethod
    def from_json(cls, started_at: float, history: str, samples: str) -> AutoscalerState:
        extra = json.loads(samples)
        return cls(
            started_at,
            tuple(Recommendation(at, int(n)) for at, n in json.loads(history)),
            tuple(Sample(at, value) for at, value in extra["samples"]),
            extra.get("last_decision_at"),
            extra.get("reason", ""),
        )
