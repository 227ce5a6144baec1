"""A Cortex project deployed unchanged on the local cluster, as a user would drive it.

Real processes throughout: the control plane, `ferry serve` replicas, and nginx as the
gateway, each on free ports under a temporary state directory.
"""

from __future__ import annotations

import json
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

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cortex"
LABELS = {"setosa", "versicolor", "virginica"}


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    def __init__(self, root: Path) -> None:
        self.project = root / "project"
        shutil.copytree(EXAMPLE, self.project)
        self.state = root / "state"
        self.port = free_port()
        self.env = {
            **os.environ,
            "FERRY_STATE_DIR": str(self.state),
            "FERRY_GATEWAY_PORT": str(self.port),
        }
        self.gateway = f"http://127.0.0.1:{self.port}"

    def ferry(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "ferry", *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ferry(*args, "--output", "json").stdout)

    def control_pid(self) -> int:
        return int(json.loads((self.state / "control.json").read_text())["pid"])


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    made = Cluster(tmp_path)
    subprocess.run([sys.executable, "train.py"], cwd=made.project, check=True, capture_output=True)
    yield made
    made.ferry("cluster", "down", check=False)


def replica_ids(cluster: Cluster, api: str) -> set[str]:
    described = cluster.json("describe", api)
    return {replica["id"] for replica in described["replica_list"]}


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
