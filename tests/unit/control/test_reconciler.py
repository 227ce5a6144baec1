"""The reconcile loop against the in-memory backend, driven by a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ferry.control.deployments import deploy_project
from ferry.control.reconciler import Reconciler
from ferry.control.records import RequestStats
from ferry.control.store import Store
from ferry.runtime.base import ReplicaState

FAST = {
    "min_replicas": 1,
    "max_replicas": 6,
    "target_replica_concurrency": 1,
    "window": "10s",
    "upscale_stabilization_period": "0s",
    "downscale_stabilization_period": "30s",
}


class World:
    """A store, a fake backend, a clock and a reconciler, ticking one second at a time."""

    def __init__(self, store: Store, backend: Any, clock: Any, write: Callable[[str], Path]):
        self.store, self.backend, self.clock, self.write = store, backend, clock, write
        self.reconciler = Reconciler(store, backend, clock)

    def deploy(self, text: str) -> None:
        deploy_project(self.store, self.write(text), self.clock())

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            self.reconciler.tick()
            self.clock.advance(1)

    def status(self, name: str = "iris") -> str:
        return self.store.api(name).status

    def addresses(self, name: str = "iris") -> tuple[str, ...]:
        table = self.backend.routes
        assert table is not None
        return next(route.addresses for route in table.apis if route.api == name)

    def revisions(self, name: str = "iris", state: ReplicaState | None = None) -> list[str]:
        return sorted(r.revision for r in self.backend.of(name, state))


@pytest.fixture
def world(store: Store, backend: Any, clock: Any, write_project: Any) -> World:
    return World(store, backend, clock, write_project)


def test_a_deployed_api_starts_its_replicas_and_goes_live(world: World, api_entry: Any) -> None:
    world.deploy(api_entry(autoscaling={"min_replicas": 2}))
    assert world.status() == "updating"
    world.tick()
    assert len(world.backend.of("iris", ReplicaState.STARTING)) == 2
    assert world.addresses() == ()  # routed, but nothing ready: the gateway answers 503
    world.tick(2)
    assert world.status() == "live"
    assert len(world.addresses()) == 2
    spec = world.backend.replicas[world.backend.started[0]].spec
    assert spec.env == {"VERSION": "v1"}
    assert spec.model.uri.endswith("project/model.joblib")
    assert spec.server["max_inflight"] == 1024
    assert [r.replica_id for r in world.store.replicas("iris")] == sorted(world.backend.started)


def test_deploying_the_same_spec_again_changes_nothing(world: World, api_entry: Any) -> None:
    world.deploy(api_entry())
    world.tick(3)
    started = list(world.backend.started)
    outcome = deploy_project(world.store, world.write(api_entry()), world.clock())
    assert [o.action for o in outcome] == ["unchanged"]
    world.tick(3)
    assert world.backend.started == started


def test_load_scales_up_then_down_after_stabilization(world: World, api_entry: Any) -> None:
    world.deploy(api_entry(autoscaling=FAST))
    world.tick(3)
    world.backend.set_in_flight("iris", 4)
    world.tick(12)
    assert world.store.api("iris").desired == 2  # one step of max(1.5x, +1)
    world.tick(30)
    assert world.store.api("iris").desired == 4
    assert len(world.addresses()) == 4
    world.backend.set_in_flight("iris", 0)
    world.tick(20)
    assert world.store.api("iris").desired == 4  # held by the 30 s stabilization period
    world.tick(150)  # steps of max_downscale_factor, each held 30 s
    assert world.store.api("iris").desired == 1
    world.tick(3)
    assert len(world.backend.of("iris")) == 1
    messages = [e.message for e in world.store.events("iris", 100)]
    assert any(m.startswith("scaling from 1 to 2") for m in messages)


def test_a_rolling_update_keeps_serving_within_surge_and_unavailable(
    world: World, api_entry: Any
) -> None:
    bounds = {"min_replicas": 4}
    strategy = {"max_surge": 1, "max_unavailable": 0}
    world.deploy(api_entry(autoscaling=bounds, update_strategy=strategy))
    world.tick(3)
    old = world.store.api("iris").target_revision
    world.deploy(api_entry(env="v2", autoscaling=bounds, update_strategy=strategy))
    new = world.store.api("iris").target_revision
    assert new != old
    for _ in range(30):
        world.tick()
        assert len(world.addresses()) >= 4
        assert len(world.backend.of("iris")) <= 5
    assert world.revisions(state=ReplicaState.READY) == [new] * 4
    assert world.status() == "live"
    assert world.store.api("iris").previous_revision == old


def test_a_revision_that_cannot_boot_is_an_error_and_the_old_one_keeps_serving(
    world: World, api_entry: Any
) -> None:
    world.deploy(api_entry(autoscaling={"min_replicas": 2}))
    world.tick(3)
    old = world.store.api("iris").target_revision
    world.deploy(api_entry(env="broken", autoscaling={"min_replicas": 2}))
    bad = world.store.api("iris").target_revision
    world.backend.break_revision(bad, "ModelLoadError: model.joblib is not a model")
    world.tick(10)
    record = world.store.api("iris")
    assert record.status == "error"
    assert "cannot boot: ModelLoadError: model.joblib is not a model" in record.reason
    assert world.revisions(state=ReplicaState.READY) == [old, old]
    assert len(world.addresses()) == 2
    started = len(world.backend.started)
    world.tick(20)
    assert len(world.backend.started) == started  # no restart loop
    assert world.store.api("iris").status == "error"


def test_a_first_deploy_that_cannot_boot_stops_without_a_restart_loop(
    world: World, api_entry: Any
) -> None:
    world.deploy(api_entry())
    world.backend.break_revision(world.store.api("iris").target_revision, "ImportError: nope")
    world.tick(10)
    assert world.status() == "error"
    assert "ImportError: nope" in world.store.api("iris").reason
    assert len(world.backend.started) == 1
    assert world.backend.of("iris") == []
    world.deploy(api_entry(env="fixed"))  # the next deploy reconciles again
    world.tick(3)
    assert world.status() == "live"


def test_a_crashed_replica_is_replaced_with_backoff(world: World, api_entry: Any) -> None:
    world.deploy(api_entry())
    world.tick(3)
    first = world.backend.started[0]
    world.backend.crash(first)
    world.tick()
    assert world.store.api("iris").restarts == 1
    world.tick(3)
    assert len(world.backend.of("iris", ReplicaState.READY)) == 1
    second = world.backend.started[-1]
    world.backend.crash(second)
    world.tick()  # second crash: the replacement waits 2 s
    assert world.backend.started[-1] == second
    world.tick(4)
    assert world.backend.started[-1] != second
    assert world.store.api("iris").restarts == 2
    assert any("crashed" in e.message for e in world.store.events("iris"))


def test_delete_stops_replicas_removes_the_route_and_forgets_the_api(
    world: World, api_entry: Any
) -> None:
    world.deploy(api_entry())
    world.tick(3)
    world.store.mark_deleting("iris", world.clock())
    world.tick()
    assert world.backend.routes is not None
    assert world.backend.routes.apis == ()
    world.tick(3)
    assert world.backend.of("iris") == []
    assert world.store.find("iris") is None
    assert world.store.replicas() == []


def test_a_restarted_control_plane_adopts_running_replicas(
    world: World, api_entry: Any, tmp_path: Path
) -> None:
    world.deploy(api_entry(autoscaling={"min_replicas": 2}))
    world.tick(3)
    started = list(world.backend.started)
    addresses = world.addresses()
    world.store.close()
    reopened = Store(tmp_path / "state" / "ferry.db")
    again = Reconciler(reopened, world.backend, world.clock)
    for _ in range(5):
        again.tick()
        world.clock.advance(1)
    assert world.backend.started == started
    assert world.backend.stopped == []
    assert again.routes is not None
    assert again.routes.apis[0].addresses == addresses
    assert reopened.api("iris").status == "live"
    reopened.close()


def test_replicas_of_unknown_apis_are_stopped(world: World, api_entry: Any) -> None:
    world.deploy(api_entry())
    world.tick(3)
    world.store.drop("iris")  # as if deleted by an older control plane
    world.tick(2)
    assert world.backend.of("iris") == []


def test_a_tick_never_raises(world: World, api_entry: Any) -> None:
    world.deploy(api_entry())

    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("backend gone")

    world.backend.start_replica = explode
    world.tick()
    assert any("backend gone" in e.message for e in world.store.events("iris"))
    world.backend.observe = explode
    world.tick()  # nothing raised


def test_a_traffic_splitter_routes_by_weight_with_a_shadow(world: World, api_entry: Any) -> None:
    splitter = """\
- name: split
  kind: TrafficSplitter
  networking: {endpoint: /classify}
  apis:
    - {name: iris, weight: 100}
    - {name: iris-b, weight: 30, shadow: true}
"""
    world.deploy(api_entry() + api_entry("iris-b") + splitter)
    world.tick(3)
    assert world.status("split") == "live"
    table = world.backend.routes
    assert table is not None
    (route,) = table.splitters
    assert (route.endpoint, route.weights, route.shadow, route.shadow_weight) == (
        "/classify",
        (("iris", 100),),
        "iris-b",
        30,  # the share of requests copied to it
    )


def test_rollback_and_refresh_roll_replicas(world: World, api_entry: Any) -> None:
    world.deploy(api_entry())
    world.tick(3)
    first = world.store.api("iris").target_revision
    world.deploy(api_entry(env="v2"))
    world.tick(5)
    assert world.store.rollback("iris", world.clock()) == first
    world.tick(5)
    assert world.revisions() == [first]
    refreshed = world.store.refresh("iris", world.clock())
    world.tick(5)
    assert world.revisions() == [refreshed]
    assert world.status() == "live"


def test_request_counters_are_scraped_from_ready_replicas(
    store: Store, backend: Any, clock: Any, write_project: Any, api_entry: Any
) -> None:
    totals = {"n": 0}

    def scrape(address: str) -> RequestStats:
        totals["n"] += 10
        return RequestStats(ok=totals["n"], seconds=totals["n"] * 0.01, count=totals["n"])

    reconciler = Reconciler(store, backend, clock, scrape=scrape, scrape_interval=0)
    deploy_project(store, write_project(api_entry()), clock())
    for _ in range(4):
        reconciler.tick()
    stats = store.stats("iris")
    assert stats.ok == 30  # the last cumulative total, counted once
    assert stats.avg_seconds == pytest.approx(0.01)


def test_a_reader_gets_counters_read_now_not_at_the_next_scrape(
    store: Store, backend: Any, clock: Any, write_project: Any, api_entry: Any
) -> None:
    served = {"n": 0}
    reads: list[float] = []

    def scrape(address: str) -> RequestStats:
        reads.append(clock())
        return RequestStats(ok=served["n"], seconds=served["n"] * 0.01, count=served["n"])

    reconciler = Reconciler(store, backend, clock, scrape=scrape)  # every 10 s on its own
    deploy_project(store, write_project(api_entry()), clock())
    for _ in range(3):
        reconciler.tick()
        clock.advance(1)
    assert reconciler.observed  # the replica is up; the loop read no counters since
    served["n"] = 25
    assert store.stats("iris").ok == 0
    reconciler.refresh_stats()
    assert store.stats("iris").ok == 25
    served["n"] = 40
    reconciler.refresh_stats()  # read less than a second ago: not again
    assert store.stats("iris").ok == 25
    clock.advance(1)
    reconciler.refresh_stats()
    assert store.stats("iris").ok == 40
    reconciler.tick()  # the loop's own read, right after, adds nothing twice
    clock.advance(10)
    reconciler.tick()
    assert store.stats("iris").ok == 40
    assert len(reads) >= 3
