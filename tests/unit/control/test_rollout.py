"""Rolling updates walked step by step, with the bounds checked after every plan."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace

import pytest

from ferry.apispec import UpdateStrategy
from ferry.control.rollout import (
    Plan,
    Replica,
    ReplicaState,
    Target,
    next_step,
    resolve_bounds,
)


class Cluster:
    """A fake backend: applies plans, then lets time pass (drain, boot)."""

    def __init__(self, replicas: Iterable[Replica] = (), broken: frozenset[str] = frozenset()):
        self.replicas = list(replicas)
        self.broken = broken  # revisions whose replicas exit with "cannot boot"
        self._ids = itertools.count(len(self.replicas))

    def apply(self, plan: Plan) -> None:
        # a failed replica has exited already: stopping it only forgets it
        self.replicas = [
            replace(r, state="terminating") if r.id in plan.stop else r
            for r in self.replicas
            if not (r.id in plan.stop and r.state == "failed")
        ]
        for _ in range(plan.start):
            self.replicas.append(Replica(f"r{next(self._ids)}", plan.revision, "starting"))

    def advance(self) -> None:
        """Terminating replicas finish draining; starting ones become ready (or fail)."""
        booted = []
        for r in self.replicas:
            if r.state == "terminating":
                continue
            if r.state == "starting" and r.revision in self.broken:
                r = replace(r, state="failed", cannot_boot=True, reason="exit code 3")
            elif r.state == "starting":
                r = replace(r, state="ready")
            booted.append(r)
        self.replicas = booted

    def count(self, state: str, revision: str | None = None) -> int:
        return sum(
            r.state == state and (revision is None or r.revision == revision) for r in self.replicas
        )

    @property
    def present(self) -> int:
        return sum(r.state != "failed" for r in self.replicas)


def running(revision: str, count: int, state: ReplicaState = "ready") -> list[Replica]:
    return [Replica(f"{revision}-{i}", revision, state) for i in range(count)]


def roll(cluster: Cluster, target: Target, policy: UpdateStrategy, limit: int = 60) -> list[Plan]:
    """Reconcile until the plan is empty and live, checking the bounds after each plan."""
    surge, unavailable = resolve_bounds(policy, target.replicas)
    plans = []
    for _ in range(limit):
        ready_before, present_before = cluster.count("ready"), cluster.present
        plan = next_step(cluster.replicas, target, policy)
        plans.append(plan)
        if plan.empty and plan.status == "live":
            return plans
        cluster.apply(plan)
        # starting replicas never takes the total over desired + max_surge
        cap = (
            target.replicas + surge if plan.start else max(target.replicas + surge, present_before)
        )
        assert cluster.present <= cap, (plan, cluster.replicas)
        floor = min(ready_before, target.replicas - unavailable)
        assert cluster.count("ready") >= floor, (plan, cluster.replicas)
        if plan.status == "error":
            return plans
        cluster.advance()
    raise AssertionError(f"no convergence in {limit} steps: {cluster.replicas}")


@dataclass(frozen=True)
class Combo:
    desired: int
    surge: int | str
    unavailable: int | str


COMBOS = [
    Combo(1, "25%", "25%"),
    Combo(4, "25%", "25%"),
    Combo(10, "25%", "25%"),
    Combo(3, 1, 0),
    Combo(3, 0, 1),
    Combo(5, 0, "40%"),
    Combo(4, "100%", 0),
    Combo(6, 2, 2),
    Combo(2, "0%", "10%"),
    Combo(7, "10%", "10%"),
]


@pytest.mark.parametrize(
    "combo", COMBOS, ids=[f"d{c.desired}-s{c.surge}-u{c.unavailable}" for c in COMBOS]
)
def test_rolling_update_keeps_bounds_and_converges(combo: Combo) -> None:
    policy = UpdateStrategy(max_surge=combo.surge, max_unavailable=combo.unavailable)
    cluster = Cluster(running("v1", combo.desired))
    plans = roll(cluster, Target("v2", combo.desired), policy)
    assert cluster.count("ready", "v2") == combo.desired
    assert len(cluster.replicas) == combo.desired
    assert all(plan.status == "updating" for plan in plans[:-1])
    assert plans[-1] == Plan("v2")


@pytest.mark.parametrize(
    ("policy", "desired", "bounds"),
    [
        (UpdateStrategy(), 4, (1, 1)),
        (UpdateStrategy(), 1, (1, 0)),
        (UpdateStrategy(), 10, (3, 2)),
        (UpdateStrategy(max_surge="0%", max_unavailable="10%"), 2, (0, 1)),
        (UpdateStrategy(max_surge=0, max_unavailable="30%"), 10, (0, 3)),
        (UpdateStrategy(max_surge="30%", max_unavailable=2), 10, (3, 2)),
        (UpdateStrategy(max_surge=5, max_unavailable=0), 0, (5, 0)),
    ],
    ids=["default-4", "default-1", "default-10", "both-round-to-0", "pct", "mixed", "desired-0"],
)
def test_resolve_bounds_like_kubernetes(
    policy: UpdateStrategy, desired: int, bounds: tuple[int, int]
) -> None:
    assert resolve_bounds(policy, desired) == bounds


def test_surge_update_starts_new_before_stopping_old() -> None:
    cluster = Cluster(running("v1", 2))
    policy = UpdateStrategy(max_surge=1, max_unavailable=0)
    first = next_step(cluster.replicas, Target("v2", 2), policy)
    assert (first.revision, first.start, first.stop) == ("v2", 1, ())
    cluster.apply(first)
    # the new replica is still starting: nothing more may happen
    assert next_step(cluster.replicas, Target("v2", 2), policy).empty
    cluster.advance()
    second = next_step(cluster.replicas, Target("v2", 2), policy)
    assert second.start == 0
    assert len(second.stop) == 1


def test_in_place_update_stops_first() -> None:
    cluster = Cluster(running("v1", 3))
    plan = next_step(
        cluster.replicas, Target("v2", 3), UpdateStrategy(max_surge=0, max_unavailable=1)
    )
    assert (plan.start, len(plan.stop)) == (0, 1)


def test_new_revision_that_cannot_boot_keeps_old_serving() -> None:
    policy = UpdateStrategy(max_surge=0, max_unavailable=1)
    cluster = Cluster(running("v1", 3), broken=frozenset({"v2"}))
    plans = roll(cluster, Target("v2", 3), policy)
    error = plans[-1]
    assert error.status == "error"
    assert error.rollback_to == "v1"
    assert "revision v2 cannot boot: exit code 3" in error.reason
    # the failed replica is stopped and v1 is topped back up to the desired count
    assert error.revision == "v1"
    assert error.start == 1
    cluster.advance()
    assert cluster.count("ready", "v1") == 3
    assert cluster.count("failed") == 0
    # the caller now targets rollback_to: nothing left to do, no restart loop
    assert next_step(cluster.replicas, Target("v1", 3), policy) == Plan("v1")


def test_surge_rollout_that_cannot_boot_never_drops_old() -> None:
    policy = UpdateStrategy(max_surge=1, max_unavailable=0)
    cluster = Cluster(running("v1", 2), broken=frozenset({"v2"}))
    plans = roll(cluster, Target("v2", 2), policy)
    assert plans[-1].status == "error"
    assert plans[-1].start == 0
    assert cluster.count("ready", "v1") == 2


def test_first_deploy_that_cannot_boot_reports_error_without_rollback() -> None:
    failed = Replica("r0", "v1", "failed", cannot_boot=True, reason="ImportError: no torch")
    plan = next_step([failed, *running("v1", 1, "starting")], Target("v1", 2), UpdateStrategy())
    assert plan.status == "error"
    assert plan.rollback_to is None
    assert plan.start == 0
    assert set(plan.stop) == {"r0", "v1-0"}
    assert "ImportError: no torch" in plan.reason


@pytest.mark.parametrize(
    ("before", "desired", "start", "stopped"),
    [
        (3, 5, 2, 0),
        (5, 2, 0, 3),
        (0, 3, 3, 0),
        (2, 0, 0, 2),
    ],
    ids=["scale-up", "scale-down", "initial", "to-zero"],
)
def test_scaling_without_a_revision_change(
    before: int, desired: int, start: int, stopped: int
) -> None:
    cluster = Cluster(running("v1", before))
    plan = next_step(cluster.replicas, Target("v1", desired), UpdateStrategy())
    assert (plan.revision, plan.start, len(plan.stop)) == ("v1", start, stopped)
    assert plan.status == "updating"
    roll(cluster, Target("v1", desired), UpdateStrategy())
    assert cluster.count("ready", "v1") == desired


def test_scale_down_stops_starting_replicas_first() -> None:
    replicas = [*running("v1", 2), *running("new", 2, "starting")]
    replicas = [replace(r, revision="v1") for r in replicas]
    plan = next_step(replicas, Target("v1", 2), UpdateStrategy())
    assert set(plan.stop) == {"new-0", "new-1"}


def test_nothing_to_do_is_an_empty_live_plan() -> None:
    plan = next_step(running("v1", 3), Target("v1", 3), UpdateStrategy())
    assert plan == Plan("v1")
    assert plan.empty
    assert plan.status == "live"


def test_crashed_replica_is_replaced() -> None:
    replicas = [*running("v1", 2), Replica("x", "v1", "failed", reason="killed")]
    plan = next_step(replicas, Target("v1", 3), UpdateStrategy())
    assert (plan.start, plan.stop, plan.status) == (1, ("x",), "updating")


def test_old_replicas_still_starting_are_stopped_at_once() -> None:
    replicas = [*running("v1", 2), *running("v0", 1, "starting")]
    plan = next_step(replicas, Target("v1", 2), UpdateStrategy())
    assert plan.stop == ("v0-0",)


def test_update_during_update_converges() -> None:
    policy = UpdateStrategy(max_surge=1, max_unavailable=1)
    cluster = Cluster(running("v1", 4))
    for _ in range(2):
        cluster.apply(next_step(cluster.replicas, Target("v2", 4), policy))
        cluster.advance()
    roll(cluster, Target("v3", 4), policy)
    assert cluster.count("ready", "v3") == 4
    assert len(cluster.replicas) == 4
