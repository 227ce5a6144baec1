"""Replica supervision with fake processes and a fake clock: restarts, cannot-boot, adoption."""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from ferry.config import ModelSpec
from ferry.runtime.base import ReplicaSpec, ReplicaState, ReplicaStatus
from ferry.runtime.local.probe import Probe
from ferry.runtime.local.processes import LOST
from ferry.runtime.local.replicas import ReplicaSupervisor


class FakeProcesses:
    """Processes as a table: pid -> exit code (None while running)."""

    def __init__(self) -> None:
        self.running: dict[int, int | None] = {}
        self.env: dict[int, dict[str, str]] = {}
        self.argv: dict[int, list[str]] = {}
        self.signals: list[tuple[int, int, bool]] = []
        self.fresh: dict[int, bool] = {}
        self.closed = False
        self.next_pid = 1000

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, *, fresh: bool = False
    ) -> int:
        self.next_pid += 1
        self.running[self.next_pid] = None
        self.env[self.next_pid] = dict(env)
        self.argv[self.next_pid] = list(argv)
        self.fresh[self.next_pid] = fresh
        return self.next_pid

    def started(self, pid: int) -> int:
        return pid * 10  # a start time per process

    def poll(self, pid: int, marker: str, started: int = 0) -> int | None:
        if pid not in self.running:
            return LOST
        name, _, value = marker.partition("=")
        if self.env[pid].get(name) != value:
            return LOST  # a reused pid: not our replica
        if started and started != pid * 10:
            return LOST
        return self.running[pid]

    def close(self) -> None:
        self.closed = True

    def signal(self, pid: int, signum: int, *, group: bool = False) -> None:
        self.signals.append((pid, signum, group))

    def exit(self, pid: int, code: int) -> None:
        self.running[pid] = code


class FakeProber:
    def __init__(self) -> None:
        self.ready: set[int] = set()

    def probe(self, port: int) -> Probe:
        return Probe(ready=port in self.ready, in_flight=3 if port in self.ready else 0)

    def forget(self, port: int) -> None:
        pass

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


World = tuple[FakeProcesses, FakeProber, Clock]


@pytest.fixture
def world() -> World:
    return FakeProcesses(), FakeProber(), Clock()


def supervisor(tmp_path: Path, world: World) -> ReplicaSupervisor:
    processes, prober, clock = world
    ports = iter(range(20000, 21000))
    return ReplicaSupervisor(
        tmp_path,
        processes=processes,
        prober=prober,
        clock=clock,
        port_finder=lambda: next(ports),
        port_free=lambda port: True,
    )


def spec(replica_id: str = "iris-a", **server: object) -> ReplicaSpec:
    model = ModelSpec(uri="/models/iris.joblib", labels={0: "setosa"}, config={"k": [1, 2]})
    return ReplicaSpec(replica_id, "iris", "r1", model, server=server, env={"A": "b"})


def only(sup: ReplicaSupervisor) -> ReplicaStatus:
    (status,) = sup.observe()
    return status


def test_a_started_replica_is_recorded_and_becomes_ready(tmp_path: Path, world: World) -> None:
    processes, prober, _ = world
    sup = supervisor(tmp_path, world)
    sup.start(spec())
    sup.start(spec())  # idempotent
    assert len(processes.running) == 1
    status = only(sup)
    assert status.state is ReplicaState.STARTING
    env = processes.env[status.pid]
    assert env["FERRY_REPLICA_ID"] == "iris-a"
    assert env["A"] == "b"
    prober.ready.add(20000)
    status = only(sup)
    assert (status.state, status.address, status.in_flight) == ("ready", "127.0.0.1:20000", 3)
    record = json.loads((tmp_path / "replicas" / "iris-a.json").read_text())
    assert (record["pid"], record["port"], record["api"]) == (status.pid, 20000, "iris")


def test_a_crash_restarts_with_doubling_backoff_and_reports_failed_between(
    tmp_path: Path, world: World
) -> None:
    processes, _, clock = world
    sup = supervisor(tmp_path, world)
    sup.start(spec())
    delays = []
    for attempt in range(1, 5):
        pid = only(sup).pid
        processes.exit(pid, -9)
        status = only(sup)
        assert status.state is ReplicaState.FAILED
        assert not status.cannot_boot
        assert "killed by SIGKILL" in status.reason
        assert status.restarts == attempt
        assert (pid, signal.SIGKILL, True) in processes.signals  # no orphan workers
        start = clock.now
        while only(sup).state is ReplicaState.FAILED:
            clock.now += 0.25
        delays.append(clock.now - start)
        assert only(sup).pid != pid
    assert delays == [0.5, 1.0, 2.0, 4.0]


def test_backoff_resets_after_a_minute_of_health(tmp_path: Path, world: World) -> None:
    processes, _, clock = world
    sup = supervisor(tmp_path, world)
    sup.start(spec())
    for _ in range(3):
        processes.exit(only(sup).pid, 1)
        sup.tick()
        clock.now += 10
        sup.tick()
    clock.now += 61
    sup.tick()
    processes.exit(only(sup).pid, 1)
    assert "in 0.5 s" in only(sup).reason


def test_exit_code_3_is_cannot_boot_with_the_logged_reason_and_no_restart(
    tmp_path: Path, world: World
) -> None:
    processes, _, clock = world
    sup = supervisor(tmp_path, world)
    sup.start(spec())
    log = sup.log_path("iris", "iris-a")
    with open(log, "a") as stream:
        stream.write(
            "ferry: error: first\nTraceback...\nferry: error: model file x does not exist\n"
        )
    processes.exit(only(sup).pid, 3)
    status = only(sup)
    assert (status.state, status.cannot_boot) == (ReplicaState.FAILED, True)
    assert status.reason == "model file x does not exist"
    clock.now += 3600
    assert only(sup).state is ReplicaState.FAILED
    assert len(processes.running) == 1  # never restarted
    sup.stop("iris-a")
    assert sup.observe() == []


def test_a_new_supervisor_adopts_live_replicas_and_restarts_dead_ones(
    tmp_path: Path, world: World
) -> None:
    processes, _, _ = world
    first = supervisor(tmp_path, world)
    first.start(spec("live"))
    first.start(spec("dead"))
    first.start(spec("reused"))
    pids = {s.replica_id: s.pid for s in first.observe()}
    processes.exit(pids["dead"], LOST)
    processes.env[pids["reused"]] = {}  # the pid now belongs to someone else
    second = supervisor(tmp_path, world)
    assert len(processes.running) == 3
    second.tick()
    statuses = {s.replica_id: s for s in second.observe()}
    assert statuses["live"].pid == pids["live"]
    assert statuses["live"].restarts == 0
    for name in ("dead", "reused"):
        assert statuses[name].pid not in pids.values()
        assert statuses[name].restarts == 1
    assert len(processes.running) == 5


def test_stop_drains_then_kills_the_group_after_the_graceful_timeout(
    tmp_path: Path, world: World
) -> None:
    processes, _, clock = world
    sup = supervisor(tmp_path, world)
    sup.start(spec(graceful_timeout_s=5))
    pid = only(sup).pid
    sup.stop("iris-a")
    sup.stop("iris-a")
    assert processes.signals.count((pid, signal.SIGTERM, False)) == 1
    assert only(sup).state is ReplicaState.TERMINATING
    clock.now += 6.9
    sup.tick()
    assert (pid, signal.SIGKILL, True) not in processes.signals
    clock.now += 0.2  # graceful timeout + 2 s
    sup.tick()
    assert (pid, signal.SIGKILL, True) in processes.signals
    processes.exit(pid, -9)
    assert sup.observe() == []
    assert not (tmp_path / "replicas" / "iris-a.json").exists()


def test_a_stop_in_progress_survives_a_restart_of_the_control_plane(
    tmp_path: Path, world: World
) -> None:
    processes, _, _ = world
    first = supervisor(tmp_path, world)
    first.start(spec())
    pid = only(first).pid
    first.stop("iris-a")
    second = supervisor(tmp_path, world)
    assert only(second).state is ReplicaState.TERMINATING
    processes.exit(pid, 0)
    assert second.observe() == []


def test_bad_settings_fail_at_start_not_as_a_crashing_process(tmp_path: Path, world: World) -> None:
    sup = supervisor(tmp_path, world)
    with pytest.raises(ValueError, match="unknown server settings"):
        sup.start(spec(wokers=2))
    with pytest.raises(ValueError):
        sup.start(spec(workers=0))
    assert sup.observe() == []


def test_replicas_take_turns_on_fixed_slots_that_survive_a_restart(
    tmp_path: Path, world: World
) -> None:
    processes, _, _ = world
    sup = supervisor(tmp_path, world)
    for name in ("a", "b"):
        sup.start(spec(f"iris-{name}"))
    ports = {s.replica_id: s.address for s in sup.observe()}
    assert ports == {"iris-a": "127.0.0.1:20000", "iris-b": "127.0.0.1:20001"}
    assert sup.slots() == {"iris": (20000, 20001, 20002, 20003)}  # MIN_SLOTS at first use
    sup.start(spec("iris-c"))
    sup.stop("iris-a")
    processes.exit(sup.pid("iris-a") or 0, 0)
    sup.tick()
    sup.start(spec("iris-d"))  # a's slot is free again, but the lowest free one is first
    sup.start(spec("iris-e"))
    sup.start(spec("iris-f"))  # every slot is taken: one more
    addresses = {s.replica_id: s.address for s in sup.observe()}
    assert addresses == {
        "iris-b": "127.0.0.1:20001",
        "iris-c": "127.0.0.1:20002",
        "iris-d": "127.0.0.1:20000",
        "iris-e": "127.0.0.1:20003",
        "iris-f": "127.0.0.1:20004",
    }
    again = supervisor(tmp_path, world)
    assert again.slots() == {"iris": (20000, 20001, 20002, 20003, 20004)}
    again.release_slots(set())  # replicas still hold them
    assert set(again.slots()) == {"iris"}
    for rid in again.ids():
        again.stop(rid, drain=False)
        processes.exit(again.pid(rid) or 0, -9)
    again.tick()
    again.release_slots({"other"})  # iris is deleted and has no replica left
    assert again.slots() == {}


def test_a_crashed_replica_restarts_on_its_own_slot(tmp_path: Path, world: World) -> None:
    processes, _, clock = world
    sup = supervisor(tmp_path, world)
    sup.start(spec("iris-a"))
    sup.start(spec("iris-b"))
    processes.exit(sup.pid("iris-b") or 0, -9)
    sup.tick()
    clock.now += 1
    sup.tick()
    status = {s.replica_id: s for s in sup.observe()}["iris-b"]
    assert (status.address, status.restarts) == ("127.0.0.1:20001", 1)
