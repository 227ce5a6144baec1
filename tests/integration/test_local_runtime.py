"""The local runtime for real: `ferry serve` replicas behind ferry's own nginx gateway."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.e2e.cluster import KeepAliveLoad

from ferry.config import ModelSpec
from ferry.runtime.base import ApiRoute, ReplicaSpec, ReplicaState, ReplicaStatus, RoutingTable
from ferry.runtime.local import LocalBackend

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROW = [[5.1, 3.5, 1.4, 0.2]]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
SLOW = """
import pathlib
import time

class PythonPredictor:
    def __init__(self, config):
        pass

    def predict(self, payload):
        pathlib.Path(__file__).with_suffix(".predicting").touch()  # tests wait for it
        time.sleep(1.5)
        return {"slept": True}
"""


GATED = """
import time
from pathlib import Path

class PythonPredictor:
    def __init__(self, config):
        self.gate = Path(config["gate"])

    def predict(self, payload):
        while not self.gate.exists():  # held until the test opens the gate
            time.sleep(0.02)
        return {"gated": True}
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(
    backend: LocalBackend, done: Callable[[dict[str, ReplicaStatus]], bool], timeout: float = 60
) -> dict[str, ReplicaStatus]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = {s.replica_id: s for s in backend.observe()}
        if done(statuses):
            return statuses
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last observation: {statuses}")
        time.sleep(0.1)


def all_ready(ids: list[str]) -> Callable[[dict[str, ReplicaStatus]], bool]:
    return lambda s: all(rid in s and s[rid].state is ReplicaState.READY for rid in ids)


def replica(rid: str, api: str, model: ModelSpec, **server: Any) -> ReplicaSpec:
    return ReplicaSpec(rid, api, "r1", model, server={"graceful_timeout_s": 5, **server})


class Cluster:
    def __init__(
        self, backend: LocalBackend, statuses: dict[str, ReplicaStatus], root: Path
    ) -> None:
        self.root = root
        self.backend = backend
        self.statuses = statuses
        self.client = httpx.Client(base_url=backend.gateway_url, timeout=10)

    def addresses(self, api: str) -> tuple[str, ...]:
        found = [s.address for s in self.backend.observe() if s.api == api and s.state == "ready"]
        return tuple(a for a in found if a)

    def routes(self, **extra: Any) -> RoutingTable:
        apis = [ApiRoute(api, f"/{api}", self.addresses(api)) for api in ("iris", "a", "b")]
        return RoutingTable(apis=(*apis, *extra.get("apis", ())), splitters=extra.get("split", ()))


REPLICAS = {
    "iris-0": "iris",
    "iris-1": "iris",
    "a-0": "a",
    "b-0": "b",
    "shadow-0": "shadow",
    "crashy-0": "crashy",
    "slow-0": "slow",
    "gated-0": "gated",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, iris_model_path: Path) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("local-runtime")
    (root / "slow.py").write_text(SLOW)
    (root / "gated.py").write_text(GATED)
    backend = LocalBackend(root / "state", gateway_port=free_port())
    uri = str(iris_model_path)
    models = {
        "iris": ModelSpec(uri=uri),
        "a": ModelSpec(uri=uri, labels={0: "a", 1: "a", 2: "a"}),
        "b": ModelSpec(uri=uri, labels={0: "b", 1: "b", 2: "b"}),
        "shadow": ModelSpec(uri=uri),
        "crashy": ModelSpec(uri=uri),
        "slow": ModelSpec(uri=f"{root / 'slow.py'}:PythonPredictor", framework="python"),
        "gated": ModelSpec(
            uri=f"{root / 'gated.py'}:PythonPredictor",
            framework="python",
            config={"gate": str(root / "gate")},
        ),
    }
    try:
        for rid, api in REPLICAS.items():
            extra = {"warmup": False} if api == "gated" else {}  # its predict waits
            backend.start_replica(replica(rid, api, models[api], **extra))
        statuses = wait_for(backend, all_ready(list(REPLICAS)))
        cluster = Cluster(backend, statuses, root)
        yield cluster
        cluster.client.close()
    finally:
        pids = [s.pid for s in backend.observe() if s.pid]
        backend.shutdown(timeout=10)
        assert backend.observe() == []
        backend.close()
        for pid in pids:  # no orphans: every replica process group is gone
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)


def test_predictions_through_the_gateway_equal_the_model(cluster: Cluster, iris_model: Any) -> None:
    cluster.backend.apply_routes(cluster.routes())
    answer = cluster.client.post("/iris", json=ROWS, headers={"x-request-id": "req-42"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == iris_model.predict(np.array(ROWS)).tolist()
    assert answer.headers["x-request-id"] == "req-42"
    missing = cluster.client.post("/nowhere", json=ROWS)
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    deadline = time.monotonic() + 5
    while True:
        lines = list(cluster.backend.logs("iris", tail=50))
        if any("POST /predict" in line and "req-42" in line for line in lines):
            break
        assert time.monotonic() < deadline, lines
        time.sleep(0.1)
    assert any(line.startswith("[iris-0] ") for line in lines)


def test_an_api_without_ready_replicas_answers_503_json(cluster: Cluster) -> None:
    cluster.backend.apply_routes(cluster.routes(apis=(ApiRoute("ghost", "/ghost", ()),)))
    answer = cluster.client.post("/ghost", json=ROW)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "api ghost has no ready replica", "code": "unavailable"}


def shadow_requests(cluster: Cluster) -> float:
    (address,) = cluster.addresses("shadow")
    text = httpx.get(f"http://{address}/metrics").text
    return sum(
        float(line.rsplit(None, 1)[1])
        for line in text.splitlines()
        if line.startswith("ferry_requests_total{") and 'route="/predict"' in line
    )


def test_a_splitter_splits_by_weight_and_copies_to_its_shadow(cluster: Cluster) -> None:
    from ferry.runtime.base import SplitRoute

    split = SplitRoute("ab", "/ab", (("a", 80), ("b", 20)), shadow="shadow")
    shadow = ApiRoute("shadow", "/shadow", cluster.addresses("shadow"))
    cluster.backend.apply_routes(cluster.routes(apis=(shadow,), split=(split,)))
    before = shadow_requests(cluster)
    answers = [cluster.client.post("/ab", json=ROW) for _ in range(200)]
    assert all(a.status_code == 200 for a in answers)
    share_a = sum(a.json() == ["a"] for a in answers) / len(answers)
    assert 0.68 <= share_a <= 0.92, share_a
    deadline = time.monotonic() + 5
    while shadow_requests(cluster) - before < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shadow_requests(cluster) - before == 200


def request_ids(cluster: Cluster, api: str, prefix: str) -> set[str]:
    """The request ids (starting with ``prefix``) that ``api``'s replicas answered."""
    pattern = re.compile(r'"POST /predict" 200 \S+ rid=(' + re.escape(prefix) + r"\S*)$")
    lines = cluster.backend.logs(api, tail=1_000_000)
    return {match.group(1) for line in lines if (match := pattern.search(line))}


def wait_for_ids(cluster: Cluster, api: str, ids: set[str], prefix: str) -> set[str]:
    """Every id starting with ``prefix`` that ``api`` answered, once ``ids`` are among them."""
    deadline = time.monotonic() + 30
    while True:
        seen = request_ids(cluster, api, prefix)
        if ids <= seen:
            return seen
        assert time.monotonic() < deadline, f"{len(ids - seen)} copies never reached {api}"
        time.sleep(0.1)


def test_a_shadow_gets_a_copy_of_its_weight_percent_of_the_requests(cluster: Cluster) -> None:
    from ferry.runtime.base import SplitRoute

    shadow = ApiRoute("shadow", "/shadow", cluster.addresses("shadow"))
    sent: dict[int, set[str]] = {}
    for weight in (0, 25, 100):  # 100 last: once its copies are in, the earlier ones are too
        split = SplitRoute("ab", "/ab", (("a", 80), ("b", 20)), "shadow", weight)
        cluster.backend.apply_routes(cluster.routes(apis=(shadow,), split=(split,)))
        sent[weight] = {f"w{weight}-{index}" for index in range(400)}
        for request_id in sorted(sent[weight]):
            answer = cluster.client.post("/ab", json=ROW, headers={"x-request-id": request_id})
            assert answer.status_code == 200, answer.text
            assert answer.json() in (["a"], ["b"])  # the shadow's answer is never returned
    wait_for_ids(cluster, "shadow", sent[100], "w100-")  # every request copied, exactly
    copied = {weight: request_ids(cluster, "shadow", f"w{weight}-") for weight in sent}
    assert copied[100] == sent[100]
    assert copied[0] == set()
    assert copied[25] <= sent[25]
    # Binomial(400, 0.25): mean 100, standard deviation 8.7; 55..145 is over 5 of them
    assert 55 <= len(copied[25]) <= 145, len(copied[25])


def test_a_slow_shadow_never_holds_up_the_client(cluster: Cluster) -> None:
    """The shadow's replica answers nothing until the gate opens, yet every request on one
    kept-alive client connection is answered: nothing waits for the copies."""
    from ferry.runtime.base import SplitRoute

    gated = ApiRoute("gated", "/gated", cluster.addresses("gated"))
    split = SplitRoute("held", "/held", (("a", 100),), "gated", 100)
    cluster.backend.apply_routes(cluster.routes(apis=(gated,), split=(split,)))
    ids = {f"held-{index}" for index in range(5)}
    try:
        with httpx.Client(base_url=cluster.backend.gateway_url, timeout=30) as client:
            for request_id in sorted(ids):
                answer = client.post("/held", json=ROW, headers={"x-request-id": request_id})
                assert (answer.status_code, answer.json()) == (200, ["a"])
        assert request_ids(cluster, "gated", "held-") == set()  # all still held
    finally:
        (cluster.root / "gate").touch()
    assert wait_for_ids(cluster, "gated", ids, "held-") == ids  # then every copy lands


def test_new_apis_under_continuous_load_reload_nothing_and_fail_no_request(
    cluster: Cluster,
) -> None:
    cluster.backend.apply_routes(cluster.routes())
    master = (cluster.backend.state_dir / "gateway" / "nginx.pid").read_text()
    reloads = cluster.backend.gateway_reloads()
    iris = cluster.addresses("iris")
    body = json.dumps(ROW).encode()
    with KeepAliveLoad(f"{cluster.backend.gateway_url}/iris", body) as load:
        for index in range(5):  # a new api each time, and the last one gone
            subset = iris[index % 2 :] if index % 2 else iris
            extra = (ApiRoute(f"extra{index}", f"/extra{index}", ()),)
            table = cluster.routes(apis=extra)
            table = RoutingTable(
                apis=(ApiRoute("iris", "/iris", subset), *table.apis[1:]), splitters=()
            )
            cluster.backend.apply_routes(table)
            time.sleep(0.4)
    assert load.sent > 50
    assert load.failures == []
    after = (cluster.backend.state_dir / "gateway" / "nginx.pid").read_text()
    assert (after, cluster.backend.gateway_reloads()) == (master, reloads)


def test_replica_route_changes_never_reload_nginx(cluster: Cluster) -> None:
    cluster.backend.apply_routes(cluster.routes())
    gateway = cluster.backend.state_dir / "gateway"
    before = ((gateway / "nginx.pid").read_text(), (gateway / "nginx.conf").stat().st_mtime_ns)
    reloads = cluster.backend.gateway_reloads()
    iris = cluster.addresses("iris")
    for subset in (iris[:1], iris[1:], (), iris):  # as replicas come, go and drain
        table = cluster.routes()
        table = RoutingTable(apis=(ApiRoute("iris", "/iris", subset), *table.apis[1:]))
        cluster.backend.apply_routes(table)
        assert cluster.client.post("/iris", json=ROW).status_code == 200  # slots, not routes
    after = ((gateway / "nginx.pid").read_text(), (gateway / "nginx.conf").stat().st_mtime_ns)
    assert (after, cluster.backend.gateway_reloads()) == (before, reloads)


def test_a_killed_replica_is_restarted_and_ready_again(cluster: Cluster) -> None:
    old = cluster.statuses["crashy-0"]
    assert old.pid is not None
    os.kill(old.pid, signal.SIGKILL)
    failed = wait_for(cluster.backend, lambda s: s["crashy-0"].state is ReplicaState.FAILED, 5)
    assert "SIGKILL" in failed["crashy-0"].reason
    assert not failed["crashy-0"].cannot_boot
    statuses = wait_for(cluster.backend, all_ready(["crashy-0"]))
    assert statuses["crashy-0"].pid != old.pid
    assert statuses["crashy-0"].restarts == 1


def test_a_replica_that_cannot_boot_fails_with_the_reason_and_is_not_restarted(
    cluster: Cluster, tmp_path: Path
) -> None:
    spec = replica("broken-0", "broken", ModelSpec(uri=str(tmp_path / "missing.joblib")))
    cluster.backend.start_replica(spec)
    statuses = wait_for(cluster.backend, lambda s: s["broken-0"].state is ReplicaState.FAILED, 30)
    broken = statuses["broken-0"]
    assert broken.cannot_boot
    assert "missing.joblib" in broken.reason
    time.sleep(1.5)
    again = {s.replica_id: s for s in cluster.backend.observe()}["broken-0"]
    assert (again.pid, again.restarts, again.state) == (broken.pid, 0, ReplicaState.FAILED)
    cluster.backend.stop_replica("broken-0")
    assert "broken-0" not in {s.replica_id for s in cluster.backend.observe()}


def test_a_new_backend_over_the_same_state_adopts_running_replicas(cluster: Cluster) -> None:
    before = {s.replica_id: s.pid for s in cluster.backend.observe()}
    second = LocalBackend(cluster.backend.state_dir, gateway_port=0)
    try:
        after = {s.replica_id: s.pid for s in second.observe()}
    finally:
        second.close()
    assert after == before


def test_stop_replica_drains_an_in_flight_request(cluster: Cluster) -> None:
    (address,) = cluster.addresses("slow")
    result: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: result.append(httpx.post(f"http://{address}/predict", json=1, timeout=10))
    )
    marker = cluster.root / "slow.predicting"
    marker.unlink(missing_ok=True)
    worker.start()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), "the request never reached predict"
    cluster.backend.stop_replica("slow-0")
    states = {s.replica_id: s.state for s in cluster.backend.observe()}
    assert states.get("slow-0") in (ReplicaState.TERMINATING, None)
    worker.join()
    assert result[0].status_code == 200
    assert result[0].json() == {"slept": True}
    assert cluster.backend.wait_stopped(["slow-0"], timeout=10)
