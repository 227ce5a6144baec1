"""A Cortex project as Cortex's docs had them (tests/fixtures/cortex_project), unchanged,
through `ferry serve DIR` and `ferry deploy` on the local cluster, called as its users did.

Real processes throughout: `ferry serve`, the control plane, replicas and nginx, on free
ports under a temporary state directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.cluster import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cortex_project"
SETOSA = {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}
VIRGINICA = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
LABELS = {"setosa", "versicolor", "virginica"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    pytest.importorskip("skl2onnx")
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    subprocess.run([sys.executable, "trainer.py"], cwd=root, check=True, capture_output=True)
    return root


def test_ferry_serve_dir_runs_the_api_with_its_settings(project: Path, start_server: Any) -> None:
    # started from elsewhere: the predictor still finds model.pkl, labels.json and .env
    server = start_server(str(project), "--name", "iris-classifier")
    answer = server.client.post("/predict", json=SETOSA)
    assert (answer.status_code, answer.text) == (200, "setosa")
    debug = server.client.post("/predict?debug=1", json=VIRGINICA, headers={"X-Tenant": "acme"})
    assert debug.json() == {
        "label": "virginica", "greeting": "hello", "stage": "test", "tenant": "acme",
    }  # fmt: skip
    log = server.log_path.read_text()
    assert "with 1 worker(s)" in log  # processes_per_replica, not one per core


def test_deploy_call_and_delete_a_cortex_project(project: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "FERRY_STATE_DIR": str(tmp_path / "state"),
        "FERRY_GATEWAY_PORT": str(port),
    }
    gateway = f"http://127.0.0.1:{port}"

    def ferry(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "ferry", *args], cwd=project, env=env,
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    try:
        deployed = ferry("deploy")
        for name in ("iris-classifier", "iris-batch", "iris-onnx", "iris"):
            assert f"{name} is live" in deployed
        # networking.endpoint: classifier
        answer = httpx.post(f"{gateway}/classifier", json=SETOSA)
        assert (answer.status_code, answer.text) == (200, "setosa")
        debug = httpx.post(
            f"{gateway}/classifier?debug=1", json=VIRGINICA, headers={"X-Tenant": "a"}
        )
        assert debug.json() == {
            "label": "virginica",
            "greeting": "hello",
            "stage": "test",
            "tenant": "a",
        }

        with ThreadPoolExecutor(8) as pool:  # server-side batching behind the gateway
            batch = list(
                pool.map(lambda _: httpx.post(f"{gateway}/iris-batch", json=VIRGINICA), range(8))
            )
        assert {(a.status_code, a.text) for a in batch} == {(200, "virginica")}

        split = [httpx.post(f"{gateway}/iris", json=SETOSA) for _ in range(10)]
        assert {(a.status_code, a.text) for a in split} == {(200, "setosa")}

        tree = httpx.post(f"{gateway}/iris-onnx?model=tree", json=VIRGINICA)
        assert (tree.status_code, tree.text) == (200, "virginica")
        predicted = ferry("predict", "iris-onnx", "--data", "@sample.json").strip()
        assert predicted == "setosa"

        apis = {api["name"]: api for api in json.loads(ferry("get", "--output", "json"))["apis"]}
        assert {apis[name]["status"] for name in apis} == {"live"}
        assert '"POST /predict" 200' in ferry("logs", "iris-classifier", "--tail", "20")

        ferry("delete", "iris", "--yes")
        for name in ("iris-classifier", "iris-batch", "iris-onnx"):
            ferry("delete", name, "--yes")
        deadline = time.monotonic() + 60  # replicas drain before an API is gone
        while json.loads(ferry("get", "--output", "json"))["apis"]:
            assert time.monotonic() < deadline, ferry("get")
            time.sleep(0.5)
    finally:
        subprocess.run(
            [sys.executable, "-m", "ferry", "cluster", "down"], env=env,
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
