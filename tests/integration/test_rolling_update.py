"""Rolling updates and a crash under continuous keep-alive load: no request may fail.

A real ``LocalBackend`` (``ferry serve`` replicas behind ferry's nginx) and client threads
posting without pause over kept-alive connections, while the test does what the
reconciler does: start the new revision's replicas, wait until they are ready, route to
them, and stop (drain) the old ones. Replicas live on fixed upstream slots, so none of
this reloads nginx (decision 0007).
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ferry.config import ModelSpec
from ferry.runtime.base import ApiRoute, ReplicaSpec, ReplicaState, RoutingTable
from ferry.runtime.local import LocalBackend

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROW = [[5.1, 3.5, 1.4, 0.2]]
CLIENTS = 4


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Load:
    """``CLIENTS`` threads posting ``ROW`` to ``path`` over kept-alive connections."""

    def __init__(self, url: str, path: str) -> None:
        self.url, self.path = url, path
        self.answers: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def sent(self) -> int:
        with self._lock:
            return sum(self.answers.values()) + len(self.failures)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=20) as client:  # never retries
            while not self._stop.is_set():
                try:
                    answer = client.post(self.path, json=ROW)
                    outcome = answer.json()[0] if answer.status_code == 200 else None
                    failure = None if outcome else f"{answer.status_code} {answer.text}"
                except httpx.HTTPError as error:
                    outcome, failure = None, repr(error)
                with self._lock:
                    if failure is None:
                        self.answers[str(outcome)] += 1
                    else:
                        self.failures.append(failure)


class Cluster:
    def __init__(self, backend: LocalBackend, model_path: Path) -> None:
        self.backend = backend
        self.model_path = model_path
        self.routes: dict[str, ApiRoute] = {}

    def start(self, api: str, revision: str, ids: list[str]) -> None:
        labels = dict.fromkeys(range(3), revision)
        model = ModelSpec(uri=str(self.model_path), labels=labels)
        for rid in ids:
            server = {"graceful_timeout_s": 5}
            self.backend.start_replica(ReplicaSpec(rid, api, revision, model, server=server))
        self.wait_ready(ids)

    def wait_ready(self, ids: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            ready = {s.replica_id for s in self.backend.observe() if s.state is ReplicaState.READY}
            if set(ids) <= ready:
                return
            assert time.monotonic() < deadline, f"{ids} not ready in time"
            time.sleep(0.1)

    def route(self, api: str, ids: list[str]) -> None:
        """What the reconciler applies: the API's ready replicas, less those stopping."""
        addresses = tuple(
            s.address for s in self.backend.observe() if s.replica_id in ids and s.address
        )
        self.routes[api] = ApiRoute(api, f"/{api}", addresses)
        self.backend.apply_routes(RoutingTable(apis=tuple(self.routes.values())))

    def stop(self, ids: list[str]) -> None:
        for rid in ids:
            self.backend.stop_replica(rid, drain=True)
        assert self.backend.wait_stopped(ids, timeout=30)

    def nginx_state(self) -> tuple[int | None, int, int]:
        """The master's pid, the config's mtime and the backend's reload count."""
        conf = self.backend.state_dir / "gateway" / "nginx.conf"
        master = int((self.backend.state_dir / "gateway" / "nginx.pid").read_text())
        return master, conf.stat().st_mtime_ns, self.backend.gateway_reloads()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, iris_model_path: Path) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("rolling")
    backend = LocalBackend(root / "state", gateway_port=free_port())
    try:
        yield Cluster(backend, iris_model_path)
    finally:
        backend.shutdown(timeout=15)
        backend.close()


def test_two_rolling_updates_under_load_fail_no_request_and_never_reload(cluster: Cluster) -> None:
    cluster.start("roll", "r0", ["r0-a", "r0-b"])
    cluster.route("roll", ["r0-a", "r0-b"])
    before = cluster.nginx_state()
    old = ["r0-a", "r0-b"]
    with Load(cluster.backend.gateway_url, "/roll") as load:
        time.sleep(1.0)
        for revision in ("r1", "r2"):
            new = [f"{revision}-a", f"{revision}-b"]
            cluster.start("roll", revision, new)  # surge: both revisions serve a moment
            cluster.route("roll", new)
            cluster.stop(old)  # drain, at once: nginx may not have tried the new slots yet
            old = new
            time.sleep(1.0)
    print(
        f"rolling update: {load.sent} requests, {dict(load.answers)}, {len(load.failures)} failed"
    )
    assert load.failures == []
    assert load.sent > 200
    assert all(load.answers[revision] > 0 for revision in ("r0", "r1", "r2"))
    assert cluster.nginx_state() == before  # the same master, config and reload count


def test_a_replica_killed_under_load_fails_at_most_its_in_flight_requests(
    cluster: Cluster,
) -> None:
    cluster.start("kill", "k0", ["k0-a", "k0-b"])
    cluster.route("kill", ["k0-a", "k0-b"])
    before = cluster.nginx_state()
    (victim,) = [s for s in cluster.backend.observe() if s.replica_id == "k0-a"]
    assert victim.pid is not None
    with Load(cluster.backend.gateway_url, "/kill") as load:
        time.sleep(1.0)
        os.killpg(victim.pid, signal.SIGKILL)  # the server and its worker, mid-request
        time.sleep(1.0)
        cluster.wait_ready(["k0-a"])  # restarted by the supervisor, on the same slot
        time.sleep(1.0)
    print(f"replica SIGKILL: {load.sent} requests, {len(load.failures)} failed: {load.failures}")
    assert len(load.failures) <= CLIENTS  # at most the requests in flight on the victim
    assert load.sent > 100
    restarted = {s.replica_id: s for s in cluster.backend.observe()}["k0-a"]
    assert (restarted.address, restarted.restarts) == (victim.address, 1)
    assert cluster.nginx_state() == before
