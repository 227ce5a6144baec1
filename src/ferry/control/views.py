"""The JSON the control plane's API returns for APIs, replicas and events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ferry.control.records import ApiRecord, Event
from ferry.control.store import Store
from ferry.runtime.base import ReplicaState, ReplicaStatus

__all__ = ["api_detail", "api_summary", "event_json", "replica_json"]


def api_summary(
    store: Store, record: ApiRecord, observed: Sequence[ReplicaStatus], gateway_url: str
) -> dict[str, Any]:
    """One row of ``ferry get``: status, replica counts, request counters."""
    mine = [r for r in observed if r.api == record.name]
    running = record.running_revision
    states = Counter(r.state.value for r in mine)
    up_to_date = sum(r.state == ReplicaState.READY and r.revision == running for r in mine)
    stale = sum(r.state == ReplicaState.READY and r.revision != running for r in mine)
    return {
        "name": record.name,
        "kind": record.kind,
        "status": record.status,
        "reason": record.reason,
        "endpoint": record.endpoint,
        "url": gateway_url.rstrip("/") + record.endpoint,
        "revision": record.target_revision,
        "running_revision": running,
        "previous_revision": record.previous_revision,
        "replicas": {
            "requested": record.desired if record.kind == "RealtimeAPI" else 0,
            "up_to_date": up_to_date,
            "stale": stale,
            **{state.value: states.get(state.value, 0) for state in ReplicaState},
        },
        "restarts": record.restarts,
        "created": record.created,
        "last_update": record.last_update,
        "requests": store.stats(record.name).to_json(),
    }


def api_detail(
    store: Store, record: ApiRecord, observed: Sequence[ReplicaStatus], gateway_url: str
) -> dict[str, Any]:
    """``ferry get API`` / ``describe``: the summary plus replicas, spec and autoscaler."""
    detail = api_summary(store, record, observed, gateway_url)
    detail["replica_list"] = [replica_json(r) for r in observed if r.api == record.name]
    revision = store.revision(record.name, record.running_revision or record.target_revision)
    detail["spec"] = revision.spec if revision else None
    scaler = store.autoscaler_state(record.name)
    detail["autoscaler"] = {"reason": scaler.reason if scaler else ""}
    return detail


def replica_json(status: ReplicaStatus) -> dict[str, Any]:
    return {
        "id": status.replica_id,
        "revision": status.revision,
        "state": status.state.value,
        "address": status.address,
        "pid": status.pid,
        "in_flight": status.in_flight,
        "started_at": status.started_at,
        "restarts": status.restarts,
        "cannot_boot": status.cannot_boot,
        "reason": status.reason,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {"at": event.at, "level": event.level, "message": event.message}
