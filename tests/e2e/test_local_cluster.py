"""A Cortex project deployed unchanged on the local cluster, as a user would drive it.

Real processes throughout: the control plane, `ferry serve` replicas, and nginx as the
gateway, each on free ports under a temporary state directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.cluster import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cortex"
LABELS = {"setosa", "versicolor", "virginica"}


class Cluster(LocalCluster):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        shutil.copytree(EXAMPLE, self.project)


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    made = Cluster(tmp_path)
    subprocess.run([sys.executable, "train.py"], cwd=made.project, check=True, capture_output=True)
    yield made
    made.ferry("cluster", "down", check=False)


def replica_ids(cluster: Cluster, api: str) -> set[str]:
    return cluster.replica_ids(api)


def test_deploy_predict_survive_a_control_plane_kill_and_tear_down(cluster: Cluster) -> None:
    deployed = cluster.ferry("deploy", ".")
    assert "iris is live" in deployed.stdout

    answers = [
        httpx.post(
            f"{cluster.gateway}/iris", content=(cluster.project / "sample.json").read_bytes()
        )
        for _ in range(40)
    ]
    assert {a.status_code for a in answers} == {200}
    assert {a.text.strip() for a in answers} <= LABELS

    apis = {api["name"]: api for api in cluster.json("get")["apis"]}
    assert {"iris", "iris-forest", "iris-logreg", "iris-knn"} <= set(apis)
    assert {apis[name]["status"] for name in apis} == {"live"}

    before = replica_ids(cluster, "iris-forest")
    os.kill(cluster.control_pid(), signal.SIGKILL)
    time.sleep(0.5)
    assert httpx.post(f"{cluster.gateway}/iris-forest", json={
        "sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2,
    }).text.strip() == "setosa"  # fmt: skip  # the data plane does not need the control plane
    cluster.ferry("cluster", "up")
    assert replica_ids(cluster, "iris-forest") == before  # re-adopted, not restarted

    bad = httpx.post(f"{cluster.gateway}/nowhere", json=[1])
    assert bad.status_code == 404
    assert "error" in bad.json()

    cluster.ferry("delete", "iris", "--yes")
    cluster.ferry("cluster", "down")
    leftovers = subprocess.run(
        ["pgrep", "-f", str(cluster.state)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == ""


VERSIONED_PREDICTOR = """
class PythonPredictor:
    def __init__(self, config):
        self.version = config["version"]

    def predict(self, payload):
        return {"version": self.version, "echo": payload}
"""

VERSIONED_SPEC = """
- name: echo
  predictor:
    type: python
    path: predictor.py
    config: {{version: {version}}}
  autoscaling: {{min_replicas: 2, max_replicas: 2}}
  update_strategy: {{max_surge: 1, max_unavailable: 0}}
"""


class Load:
    """Client threads sending keep-alive requests until stopped; every answer is kept."""

    def __init__(self, url: str, threads: int = 4) -> None:
        import threading

        self.url = url
        self.versions: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json={"n": 1})
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text}")
                else:
                    self.versions.append(response.json()["version"])

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_rolling_update_and_rollback_under_load_fail_no_request(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    (cluster.project / "predictor.py").write_text(VERSIONED_PREDICTOR)
    (cluster.project / "cortex.yaml").unlink()
    spec = cluster.project / "ferry.yaml"
    spec.write_text(VERSIONED_SPEC.format(version=1))
    try:
        cluster.ferry("deploy", ".")
        load = Load(f"{cluster.gateway}/echo")
        try:
            time.sleep(1)
            spec.write_text(VERSIONED_SPEC.format(version=2))
            cluster.ferry("deploy", ".")  # waits until every replica runs the new revision
            time.sleep(1)
            cluster.ferry("rollback", "echo")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                api = cluster.json("get", "echo")
                if api["status"] == "live" and api["replicas"]["stale"] == 0:
                    break
                time.sleep(0.5)
            time.sleep(1)
        finally:
            load.stop()
        assert load.failures == []
        assert len(load.versions) > 100
        assert {1, 2} <= set(load.versions)
        assert load.versions[-1] == 1  # rolled back
    finally:
        cluster.ferry("cluster", "down", check=False)
