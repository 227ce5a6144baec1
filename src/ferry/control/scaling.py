"""Feeds the pure autoscaler: in-flight samples every tick, a decision every interval."""

from __future__ import annotations

from collections.abc import Sequence

from ferry.apispec import Autoscaling
from ferry.control.autoscaler import Sample, desired_replicas
from ferry.control.records import ApiRecord, AutoscalerState
from ferry.control.store import Store
from ferry.runtime.base import ReplicaState, ReplicaStatus

__all__ = ["Scaler"]


class Scaler:
    """Keeps each API's samples and recommendation history; persists them with decisions."""

    def __init__(self, store: Store, interval: float) -> None:
        self._store = store
        self._interval = interval
        self._states: dict[str, AutoscalerState] = {}

    def desired(
        self,
        record: ApiRecord,
        policy: Autoscaling,
        replicas: Sequence[ReplicaStatus],
        now: float,
    ) -> int:
        """The replica count to request for ``record`` now (recorded in the store)."""
        state = self._state(record.name, now)
        in_flight = sum(r.in_flight for r in replicas if r.state == ReplicaState.READY)
        samples = tuple(s for s in state.samples if now - s.at < policy.window)
        state = AutoscalerState(
            state.started_at, state.history, (*samples, Sample(now, float(in_flight))),
            state.last_decision_at, state.reason,
        )  # fmt: skip
        self._states[record.name] = state
        current = record.desired or policy.init_replicas
        due = state.last_decision_at is None or now - state.last_decision_at >= self._interval
        if not due and record.desired:
            return current
        return self._decide(record, policy, state, current, now)

    def _decide(
        self,
        record: ApiRecord,
        policy: Autoscaling,
        state: AutoscalerState,
        current: int,
        now: float,
    ) -> int:
        decision = desired_replicas(
            policy, state.samples, current, now, state.history, started_at=state.started_at
        )
        state = AutoscalerState(
            state.started_at, decision.history, state.samples, now, decision.reason
        )
        self._states[record.name] = state
        self._store.save_autoscaler_state(record.name, state)
        if decision.replicas != record.desired:
            self._store.update_api(record.name, now, desired=decision.replicas)
            if record.desired:
                message = (
                    f"scaling from {record.desired} to {decision.replicas} replicas: "
                    f"{decision.reason}"
                )
                self._store.add_event(record.name, "info", message, now)
        return decision.replicas

    def _state(self, name: str, now: float) -> AutoscalerState:
        state = self._states.get(name) or self._store.autoscaler_state(name)
        return state if state is not None else AutoscalerState(started_at=now)
