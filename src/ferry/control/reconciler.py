"""The reconcile loop: observe the backend, plan each API, act, one tick at a time.

``Reconciler.tick`` never raises: a failure is logged, recorded as an event of the API it
concerns, and the next tick tries again. Every action is idempotent, so a tick that dies
half-way, or a control plane killed between two ticks, leaves nothing that the next tick
cannot pick up. Decisions come from the pure ``autoscaler`` and ``rollout`` functions.

Order within a tick matters for zero-downtime updates: replicas about to be stopped leave
the routing table first, the new table is applied, and only then are they stopped (the
backend drains them). New replicas are started before the table is applied, so a gateway
reload for a new API runs while its first replica boots.

``settling`` tells the loop that drives ``tick`` to come back soon (a replica is starting
or draining), so readiness shows up in a fraction of a second instead of a tick later.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ferry.apispec import RealtimeAPI, TrafficSplitter, to_server_settings
from ferry.control.records import ApiRecord, RequestStats
from ferry.control.rollout import Plan, Replica, Target, next_step
from ferry.control.rollout import ReplicaState as RolloutState
from ferry.control.routes import routing_table
from ferry.control.scaling import Scaler
from ferry.control.store import Store
from ferry.runtime.base import (
    ReplicaSpec,
    ReplicaState,
    ReplicaStatus,
    RoutingTable,
    RuntimeBackend,
)

__all__ = ["BACKOFF_MAX_S", "FRESH_STATS_S", "Reconciler", "Scrape"]

log = logging.getLogger("ferry.control")

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 30.0
FRESH_STATS_S = 1.0  # counters read for `ferry get` are at most this old (and no more often)
BACKOFF_RESET_S = 300.0  # a replica that ran this long without a crash starts over at 1 s

Scrape = Callable[[str], RequestStats | None]
"""Reads a replica's cumulative request counters from its address (None: unreachable)."""


@dataclass
class _Actions:
    """What one API needs this tick."""

    stop: list[str] = field(default_factory=list)
    start: list[ReplicaSpec] = field(default_factory=list)
    drop: bool = False


class Reconciler:
    """Drives the backend towards what the store says, one ``tick`` at a time."""

    def __init__(
        self,
        store: Store,
        backend: RuntimeBackend,
        clock: Callable[[], float] = time.time,
        *,
        scrape: Scrape | None = None,
        autoscale_interval: float = 10.0,
        scrape_interval: float = 10.0,
    ) -> None:
        self._store = store
        self._backend = backend
        self._clock = clock
        self._scrape = scrape
        self._scaler = Scaler(store, autoscale_interval)
        self._scrape_interval = scrape_interval
        self._last_scrape: float | None = None
        self._applied: RoutingTable | None = None
        self._observed: list[ReplicaStatus] = []
        self._seen_failures: set[str] = set()
        self._hold_until: dict[str, float] = {}
        self._last_crash: dict[str, float] = {}
        self._settling = False

    @property
    def routes(self) -> RoutingTable | None:
        """The routing table last applied to the backend."""
        return self._applied

    @property
    def observed(self) -> list[ReplicaStatus]:
        """The backend's replicas as the last tick saw them."""
        return list(self._observed)

    @property
    def settling(self) -> bool:
        """True when the last tick started or stopped replicas, saw some starting or
        draining, or had an API to delete: the next tick should come soon to see them
        ready (or gone)."""
        return self._settling

    def tick(self) -> None:
        """One observe -> plan -> act pass; never raises."""
        try:
            self._tick(self._clock())
        except Exception:
            log.exception("reconcile tick failed; retrying on the next tick")

    def _tick(self, now: float) -> None:
        observed = self._backend.observe()
        self._observed = observed
        by_api: dict[str, list[ReplicaStatus]] = defaultdict(list)
        for status in observed:
            by_api[status.api].append(status)
        records = self._store.apis()
        actions = {
            record.name: self._plan_safely(record, by_api.get(record.name, []), now)
            for record in records
        }
        self._adopt(records, observed, now)
        orphans = [
            s.replica_id
            for s in observed
            if s.api not in actions and s.state != ReplicaState.TERMINATING
        ]
        stopping = {rid for act in actions.values() for rid in act.stop} | set(orphans)
        for name, act in actions.items():
            self._start(name, act.start, now)
        self._apply_routes(self._store.apis(), observed, stopping)
        for name, act in actions.items():
            self._stop_and_drop(name, act, now)
        for replica_id in orphans:
            self._stop(None, replica_id, now)
        self._record_stats(observed, now)
        transient = (ReplicaState.STARTING, ReplicaState.TERMINATING)
        self._settling = (
            any(act.start or act.stop for act in actions.values())
            or any(status.state in transient for status in observed)
            or any(record.deleting for record in records)
        )

    # --- planning -----------------------------------------------------------------------

    def _plan_safely(
        self, record: ApiRecord, replicas: list[ReplicaStatus], now: float
    ) -> _Actions:
        try:
            return self._plan(record, replicas, now)
        except Exception as error:
            log.exception("planning %s failed", record.name)
            self._event(record.name, "error", f"reconcile failed: {error}", now)
            return _Actions()

    def _plan(self, record: ApiRecord, replicas: list[ReplicaStatus], now: float) -> _Actions:
        live = [r for r in replicas if r.state != ReplicaState.TERMINATING]
        if record.deleting:
            return _Actions(stop=[r.replica_id for r in live], drop=not replicas)
        if record.kind == "TrafficSplitter":
            self._splitter_status(record, now)
            return _Actions()
        running = record.running_revision
        if running is None:  # a first deploy that cannot boot: nothing to run
            return _Actions(stop=[r.replica_id for r in live])
        api = self._realtime(record.name, running)
        desired = self._scaler.desired(record, api.autoscaling, replicas, now)
        observed = [_as_rollout(r) for r in replicas]
        plan = next_step(observed, Target(running, desired), api.update_strategy)
        if plan.status == "error":
            self._cannot_boot(record, running, plan, now)
        start = self._after_backoff(record, replicas, plan.start, now)
        self._set_status(record, plan, now)
        specs = [self._replica_spec(record.name, plan.revision) for _ in range(start)]
        return _Actions(stop=list(plan.stop), start=specs)

    def _realtime(self, name: str, revision: str) -> RealtimeAPI:
        stored = self._store.revision(name, revision)
        if stored is None:
            raise LookupError(f"revision {revision} of {name} is not in the store")
        return RealtimeAPI.model_validate(stored.spec)

    def _replica_spec(self, name: str, revision: str) -> ReplicaSpec:
        stored = self._store.revision(name, revision)
        if stored is None:
            raise LookupError(f"revision {revision} of {name} is not in the store")
        api = RealtimeAPI.model_validate(stored.spec)
        model, server = to_server_settings(api, Path(stored.root))
        replica_id = f"{name}-{revision[:6]}-{secrets.token_hex(3)}"
        return ReplicaSpec(replica_id, name, revision, model, server, dict(api.predictor.env))

    def _cannot_boot(self, record: ApiRecord, running: str, plan: Plan, now: float) -> None:
        if record.failed_revision == running and running == record.target_revision:
            return  # recorded on an earlier tick; the plan is still stopping what is left
        if running == record.target_revision:
            fields = {"failed_revision": running, "fallback_revision": plan.rollback_to}
        else:  # the fallback cannot boot either: stop reconciling until the next deploy
            fields = {"fallback_revision": None}
        self._store.update_api(record.name, now, status="error", reason=plan.reason, **fields)
        self._event(record.name, "error", plan.reason, now)

    def _after_backoff(
        self, record: ApiRecord, replicas: Sequence[ReplicaStatus], start: int, now: float
    ) -> int:
        """Replacements for crashed replicas wait 1, 2, 4 ... 30 s; no restart storms."""
        crashed = [
            r for r in replicas
            if r.state == ReplicaState.FAILED and not r.cannot_boot
            and r.replica_id not in self._seen_failures
        ]  # fmt: skip
        if crashed:
            self._seen_failures.update(r.replica_id for r in crashed)
            if now - self._last_crash.get(record.name, now) > BACKOFF_RESET_S:
                self._store.update_api(record.name, now, restarts=0)
                record = _with_restarts(record, 0)
            restarts = record.restarts + len(crashed)
            self._store.update_api(record.name, now, restarts=restarts)
            delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (restarts - 1))
            self._hold_until[record.name] = now + delay
            self._last_crash[record.name] = now
            for replica in crashed:
                reason = replica.reason or "exited"
                message = f"replica {replica.replica_id} crashed ({reason}); replacing it in"
                self._event(record.name, "warning", f"{message} {delay:g}s", now)
        return 0 if now < self._hold_until.get(record.name, 0.0) else start

    def _set_status(self, record: ApiRecord, plan: Plan, now: float) -> None:
        current = self._store.api(record.name)
        if current.failed_revision == current.target_revision:
            return  # stays "error" with the reason recorded, until the next deploy
        if (current.status, current.reason) == (plan.status, plan.reason):
            return
        self._store.update_api(record.name, now, status=plan.status, reason=plan.reason)
        if current.status != plan.status:
            self._event(record.name, "info", f"status {plan.status} {plan.reason}".rstrip(), now)

    def _splitter_status(self, record: ApiRecord, now: float) -> None:
        stored = self._store.revision(record.name, record.target_revision)
        assert stored is not None
        splitter = TrafficSplitter.model_validate(stored.spec)
        known = {r.name for r in self._store.apis() if r.kind == "RealtimeAPI" and not r.deleting}
        missing = [t.name for t in splitter.apis if t.name not in known]
        status, reason = "live", ""
        if missing:
            status, reason = "error", f"api {missing[0]!r} is not deployed"
        if (record.status, record.reason) != (status, reason):
            self._store.update_api(record.name, now, status=status, reason=reason)
            self._event(record.name, "info", f"status {status} {reason}".rstrip(), now)

    # --- acting -------------------------------------------------------------------------

    def _apply_routes(
        self, records: Sequence[ApiRecord], observed: Sequence[ReplicaStatus], stopping: set[str]
    ) -> None:
        table = routing_table(self._store, records, observed, stopping)
        if table != self._applied:
            self._backend.apply_routes(table)
            self._applied = table

    def _start(self, name: str, specs: Sequence[ReplicaSpec], now: float) -> None:
        for spec in specs:
            try:
                self._store.add_replica(spec.replica_id, name, spec.revision, now)
                self._backend.start_replica(spec)
                self._event(name, "info", f"starting replica {spec.replica_id}", now)
            except Exception as error:
                log.exception("starting a replica of %s failed", name)
                self._event(name, "error", f"cannot start a replica: {error}", now)

    def _stop_and_drop(self, name: str, act: _Actions, now: float) -> None:
        for replica_id in act.stop:
            self._stop(name, replica_id, now)
        if act.drop:
            self._store.drop(name)
            log.info("api %s deleted", name)

    def _stop(self, name: str | None, replica_id: str, now: float) -> None:
        try:
            self._backend.stop_replica(replica_id, drain=True)
            self._store.remove_replica(replica_id)
            if name is not None:
                self._event(name, "info", f"stopping replica {replica_id}", now)
        except Exception as error:
            log.exception("stopping replica %s failed", replica_id)
            if name is not None:
                self._event(name, "error", f"cannot stop replica {replica_id}: {error}", now)

    def _adopt(
        self, records: Sequence[ApiRecord], observed: Sequence[ReplicaStatus], now: float
    ) -> None:
        """Keep the store's replica list equal to what the backend runs for known APIs."""
        known = {record.name for record in records}
        recorded = {r.replica_id for r in self._store.replicas()}
        running = {s.replica_id for s in observed}
        for status in observed:
            if status.api in known and status.replica_id not in recorded:
                self._store.add_replica(status.replica_id, status.api, status.revision, now)
        for replica_id in recorded - running:
            self._store.remove_replica(replica_id)

    def refresh_stats(self, max_age: float = FRESH_STATS_S) -> None:
        """Read the ready replicas' counters now, unless they were read ``max_age`` ago.

        For a reader of the counters (``ferry get``): the reconcile loop reads them only
        every ``scrape_interval`` (10 s), so requests sent just before would not show yet.
        Safe beside a tick: each replica's delta is computed and stored in one transaction.
        """
        self._record_stats(self._observed, self._clock(), interval=max_age)

    def _record_stats(
        self, observed: Sequence[ReplicaStatus], now: float, interval: float | None = None
    ) -> None:
        interval = self._scrape_interval if interval is None else interval
        due = self._last_scrape is None or now - self._last_scrape >= interval
        if self._scrape is None or not due:
            return
        self._last_scrape = now
        for status in observed:
            if status.state != ReplicaState.READY or status.address is None:
                continue
            try:
                totals = self._scrape(status.address)
            except Exception:
                log.debug("scraping %s failed", status.replica_id, exc_info=True)
                continue
            if totals is not None:
                self._store.record_counts(status.replica_id, status.api, totals)

    def _event(self, api: str, level: str, message: str, now: float) -> None:
        try:
            self._store.add_event(api, level, message, now)
        except Exception:
            log.exception("recording an event of %s failed", api)


_ROLLOUT_STATE: dict[ReplicaState, RolloutState] = {
    ReplicaState.STARTING: "starting",
    ReplicaState.READY: "ready",
    ReplicaState.FAILED: "failed",
    ReplicaState.TERMINATING: "terminating",
}


def _as_rollout(status: ReplicaStatus) -> Replica:
    state = _ROLLOUT_STATE[status.state]
    return Replica(status.replica_id, status.revision, state, status.cannot_boot, status.reason)


def _with_restarts(record: ApiRecord, restarts: int) -> ApiRecord:
    return replace(record, restarts=restarts)
