"""The gateway's routing table, computed from the store and one observation."""

from __future__ import annotations

from collections.abc import Sequence

from ferry.apispec import RealtimeAPI, TrafficSplitter
from ferry.control.records import ApiRecord
from ferry.control.store import Store
from ferry.runtime.base import ApiRoute, ReplicaState, ReplicaStatus, RoutingTable, SplitRoute

__all__ = ["routing_table"]


def routing_table(
    store: Store,
    records: Sequence[ApiRecord],
    observed: Sequence[ReplicaStatus],
    stopping: set[str],
) -> RoutingTable:
    """Every API's ready replicas (less those being stopped) and every splitter.

    An API with no ready replica keeps its route with no address, so the gateway answers
    503 rather than 404 while it boots or recovers.
    """
    apis: list[ApiRoute] = []
    splitters: list[SplitRoute] = []
    for record in records:
        if record.deleting:
            continue
        if record.kind == "TrafficSplitter":
            splitters.append(_split_route(store, record))
            continue
        addresses = sorted(
            s.address
            for s in observed
            if s.api == record.name
            and s.state == ReplicaState.READY
            and s.address is not None
            and s.replica_id not in stopping
        )
        apis.append(
            ApiRoute(record.name, record.endpoint, tuple(addresses), _concurrency(store, record))
        )
    return RoutingTable(tuple(apis), tuple(splitters))


def _concurrency(store: Store, record: ApiRecord) -> int:
    revision = store.revision(record.name, record.running_revision or record.target_revision)
    if revision is None:
        return 1024
    return RealtimeAPI.model_validate(revision.spec).autoscaling.max_replica_concurrency


def _split_route(store: Store, record: ApiRecord) -> SplitRoute:
    revision = store.revision(record.name, record.target_revision)
    assert revision is not None
    splitter = TrafficSplitter.model_validate(revision.spec)
    weights = tuple((t.name, t.weight) for t in splitter.apis if not t.shadow)
    shadow = splitter.shadow
    if shadow is None:
        return SplitRoute(record.name, record.endpoint, weights)
    return SplitRoute(record.name, record.endpoint, weights, shadow.name, shadow.weight)
