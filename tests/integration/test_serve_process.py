"""``ferry serve`` as a real process: protocols, limits, drain, crashes, bad models."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

pytestmark = pytest.mark.integration

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]

SLOW_PREDICTOR = """
import time

class PythonPredictor:
    def __init__(self, config):
        self.delay = float(config.get("delay", 1.0))

    def predict(self, payload):
        if payload == "crash":
            raise ZeroDivisionError("the predictor divided by zero")
        time.sleep(self.delay)
        return {"slept": self.delay, "got": payload}
"""


@pytest.fixture
def slow_predictor(tmp_path: Path) -> str:
    path = tmp_path / "slow.py"
    path.write_text(SLOW_PREDICTOR)
    return f"{path}:PythonPredictor"


def test_predictions_match_the_model_over_every_protocol(
    start_server: Any, iris_model_path: Path, iris_model: Any
) -> None:
    server = start_server(str(iris_model_path), "--workers", "2")
    expected = iris_model.predict(np.array(ROWS)).tolist()
    client = server.client
    assert client.post("/predict", json=ROWS).json() == expected
    assert client.post("/predict", json={"instances": ROWS}).json() == {"predictions": expected}
    csv = "\n".join(",".join(map(str, row)) for row in ROWS)
    answer = client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert answer.status_code == 200
    assert answer.json() == expected
    assert client.get("/ping").status_code == 200
    flat = [v for row in ROWS for v in row]
    v2 = client.post(
        "/v2/models/iris/infer",
        json={"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": flat}]},
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == expected


def test_large_bodies_of_rows_match_the_model_and_get_the_same_errors(
    start_server: Any, iris_model_path: Path, iris_model: Any
) -> None:
    """1000-row bodies are read by the matrix shortcut; answers and errors are unchanged."""
    rows = np.random.default_rng(7).uniform(0, 8, size=(1000, 4)).round(3)
    expected = iris_model.predict(rows).tolist()
    server = start_server(str(iris_model_path), "--workers", "1")
    client = server.client
    body = orjson.dumps(rows.tolist())
    assert client.post("/predict", content=body).json() == expected
    wrapped = b'{"instances": ' + body + b"}"
    assert client.post("/predict", content=wrapped).json() == {"predictions": expected}
    answer = client.post("/invocations", content=body, headers={"content-type": "application/json"})
    assert answer.json() == expected
    ragged = rows.tolist()
    ragged[500] = ragged[500][:3]
    for bad, message in [
        (ragged, "row 500 has 3 values, expected 4"),
        ([row[:3] for row in rows.tolist()], "expected 4 features per row, got 3"),
        ([*rows.tolist()[:-1], [1, 2, 3, True]], "true is not a number"),
    ]:
        response = client.post("/predict", content=orjson.dumps(bad))
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]


def test_labels_map_class_indexes_to_names(start_server: Any, iris_model_path: Path) -> None:
    server = start_server(str(iris_model_path), "--labels", "0=setosa,1=versicolor,2=virginica")
    assert server.client.post("/predict", json=ROWS[:2]).json() == ["setosa", "virginica"]


def test_request_ids_are_echoed_and_generated(start_server: Any, iris_model_path: Path) -> None:
    server = start_server(str(iris_model_path), "--log-format", "json")
    echoed = server.client.post("/predict", json=ROWS, headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = server.client.post("/predict", json=ROWS)
    assert generated.headers["x-request-id"]
    time.sleep(0.2)
    assert '"request_id":"abc-123"' in server.log
    assert '"type":"access"' in server.log


def test_metrics_count_requests_across_workers(start_server: Any, iris_model_path: Path) -> None:
    server = start_server(str(iris_model_path), "--workers", "2")
    for _ in range(20):
        assert server.client.post("/predict", json=ROWS).status_code == 200
    server.client.post("/predict", json=[[1, 2]])
    text = server.client.get("/metrics").text
    assert 'ferry_requests_total{method="POST",route="/predict",status="200"} 20.0' in text
    assert 'ferry_requests_total{method="POST",route="/predict",status="400"} 1.0' in text
    assert "ferry_request_duration_seconds_bucket" in text
    assert "ferry_batch_size_rows_bucket" in text
    assert 'ferry_model_load_seconds{model="iris"}' in text


def test_openapi_and_docs_describe_the_routes(start_server: Any, iris_model_path: Path) -> None:
    server = start_server(str(iris_model_path), "--endpoint", "/recms")
    document = server.client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {"/recms", "/invocations", "/v2/models/iris/infer"} <= set(document["paths"])
    page = server.client.get("/docs")
    assert page.status_code == 200
    assert "/recms" in page.text
    assert server.client.post("/recms", json=ROWS).status_code == 200
    assert server.client.post("/predict", json=ROWS).status_code == 404


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"[[1, 2, 3]]", "application/json", 400, "expected 4 features per row, got 3"),
        (b"[[1, 2, 3, 4", "application/json", 400, "JSON"),
        (b"[]", "application/json", 400, "empty"),
        (b'[["a", 1, 2, 3]]', "application/json", 400, "not a number"),
        (b"<xml/>", "application/xml", 415, "application/json"),
        (b"null", "application/json", 400, ""),
        (b'{"foo": 1}', "application/json", 400, ""),
    ],
)
def test_bad_input_gets_a_4xx_json_error(
    start_server: Any,
    iris_model_path: Path,
    body: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    server = start_server(str(iris_model_path), "--workers", "1")
    response = server.client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_an_oversized_body_gets_413(start_server: Any, iris_model_path: Path) -> None:
    server = start_server(str(iris_model_path), "--max-body-size", "2KiB", "--workers", "1")
    big = [[5.1, 3.5, 1.4, 0.2]] * 200
    response = server.client.post("/predict", json=big)
    assert response.status_code == 413
    assert "2048 bytes" in response.json()["error"]
    assert server.client.post("/predict", json=ROWS).status_code == 200


def test_a_model_that_raises_gets_500_with_the_traceback_only_in_the_log(
    start_server: Any, slow_predictor: str
) -> None:
    server = start_server(slow_predictor, "--workers", "1", "--config", "delay=0")
    response = server.client.post("/predict", json="crash")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "model_error"
    assert "ZeroDivisionError" in body["error"]
    assert "Traceback" not in response.text
    time.sleep(0.2)
    assert "Traceback" in server.log
    assert server.client.post("/predict", json="fine").json() == {"slept": 0, "got": "fine"}


def test_a_slow_prediction_gets_504(start_server: Any, slow_predictor: str) -> None:
    server = start_server(slow_predictor, "--workers", "1", "--timeout", "0.3")
    response = server.client.post("/predict", json="hello")
    assert response.status_code == 504
    assert "0.3 s" in response.json()["error"]


def test_over_max_inflight_gets_503_with_retry_after(
    start_server: Any, slow_predictor: str
) -> None:
    server = start_server(
        slow_predictor, "--workers", "1", "--max-inflight", "2", "--config", "delay=0.5"
    )
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda _: httpx.post(f"{server.url}/predict", json=1, timeout=30), range(8))
        )
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses
    assert 503 in statuses
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1"
    assert "limit of 2 requests in flight" in rejected.json()["error"]


def test_sigterm_drains_in_flight_requests_and_exits_zero(
    start_server: Any, slow_predictor: str
) -> None:
    server = start_server(slow_predictor, "--workers", "1", "--config", "delay=1.5")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, f"{server.url}/predict", json="x", timeout=30)
        time.sleep(0.4)
        server.process.send_signal(signal.SIGTERM)
        response = pending.result()
    assert response.status_code == 200
    assert response.json() == {"slept": 1.5, "got": "x"}
    assert server.process.wait(timeout=30) == 0


def test_a_killed_worker_is_replaced(start_server: Any, iris_model_path: Path) -> None:
    server = start_server(str(iris_model_path), "--workers", "2")
    before = server.worker_pids()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = server.worker_pids()
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"worker not replaced: {server.worker_pids()}")
    for _ in range(10):
        assert server.client.post("/predict", json=ROWS).status_code == 200


def test_sighup_replaces_every_worker_and_refuses_nothing(
    start_server: Any, iris_model_path: Path
) -> None:
    server = start_server(str(iris_model_path), "--workers", "2")
    before = set(server.worker_pids())
    statuses: list[int] = []
    after_hup: list[int] = []
    hup_sent = threading.Event()
    done = threading.Event()

    def fire() -> None:
        # A new connection per request: a kept-alive one may be closed by its draining
        # worker between two requests, which HTTP leaves to the client to retry.
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not done.is_set():
                sent_after_hup = hup_sent.is_set()
                answer = client.post("/predict", json=ROWS, headers={"Connection": "close"})
                statuses.append(answer.status_code)
                if sent_after_hup:
                    after_hup.append(answer.status_code)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(fire) for _ in range(4)]
        while len(statuses) < 20:  # load is flowing
            time.sleep(0.05)
        server.process.send_signal(signal.SIGHUP)
        hup_sent.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until both replacements serve
            now = set(server.worker_pids())
            if len(now) == 2 and not before & now and len(after_hup) >= 40:
                break
            time.sleep(0.05)
        done.set()
        for future in futures:
            future.result()
    after = set(server.worker_pids())
    assert len(after) == 2
    assert not before & after, "every worker was replaced"
    assert len(after_hup) >= 40, "requests were sent across the restart"
    assert set(statuses) == {200}


UNEVEN_PREDICTOR = """
import os
import time


class PythonPredictor:
    def __init__(self, config):
        try:  # the first worker to get here loads fast, the other one slowly
            open(config["marker"], "x").close()
            time.sleep(0.1)
        except FileExistsError:
            time.sleep(3)

    def predict(self, payload):
        return {"pid": os.getpid()}
"""


def test_readiness_waits_for_every_worker_of_a_model_loaded_after_fork(
    start_server: Any, tmp_path: Path
) -> None:
    predictor = tmp_path / "uneven.py"
    predictor.write_text(UNEVEN_PREDICTOR)
    marker = tmp_path / "first-worker"
    server = start_server(
        f"{predictor}:PythonPredictor",
        "--workers",
        "2",
        "--config",
        f"marker={marker}",
        ready=False,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if server.client.get("/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    else:
        raise AssertionError(f"never ready:\n{server.log}")
    statuses, pids = [], set()
    for _ in range(40):  # a new connection each: the kernel spreads them over both workers
        answer = httpx.post(
            f"{server.url}/predict", json="x", headers={"Connection": "close"}, timeout=30
        )
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            pids.add(answer.json()["pid"])
    assert set(statuses) == {200}, statuses
    assert len(pids) == 2


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_corrupt_model_file_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"\x80\x04 this is not a pickle")
    result = _run_cli("serve", str(broken), "--port", "0")
    assert result.returncode == 3  # "cannot boot": supervisors must not restart it
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ferry: error:")
    assert "broken.joblib" in lines[0]


def test_a_missing_model_file_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    result = _run_cli("serve", str(tmp_path / "nope.joblib"), "--port", "0")
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "nope.joblib" in result.stderr


def test_a_predictor_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("class PythonPredictor:\n    def __init__(self, config):\n        1 / 0\n")
    result = _run_cli("serve", f"{path}:PythonPredictor", "--port", "0", "--workers", "2")
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ferry: error: cannot start:")
    assert "ZeroDivisionError" in last


def test_sagemaker_container_mode_serves_opt_ml_model(
    start_server: Any, iris_model_path: Path, iris_model: Any, tmp_path: Path
) -> None:
    model_dir = tmp_path / "opt_ml" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "model.joblib").write_bytes(iris_model_path.read_bytes())
    env = {
        "SAGEMAKER_BASE_DIR": str(tmp_path / "opt_ml"),
        "SAGEMAKER_BIND_TO_PORT": "PICK",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    }
    server = start_server("--host", "127.0.0.1", env=env)
    assert server.client.get("/ping").status_code == 200
    csv = "\n".join(",".join(map(str, row)) for row in ROWS)
    answer = server.client.post(
        "/invocations", content=csv, headers={"content-type": "text/csv", "accept": "text/csv"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    expected = iris_model.predict(np.array(ROWS)).tolist()
    assert [int(line) for line in answer.text.split()] == expected
    assert len(server.worker_pids()) == 1


def test_first_start_and_restart_serve_the_compiled_form_without_loading_scikit_learn(
    start_server: Any, iris_model_path: Path, iris_model: Any, tmp_path: Path
) -> None:
    cache = str(tmp_path / "cache")
    first = start_server(str(iris_model_path), "--cache-dir", cache, "--workers", "2")
    metadata = first.client.get("/v2/models/iris").json()
    assert first.client.post("/predict", json=ROWS).json() == iris_model.predict(ROWS).tolist()
    for pid in [first.process.pid, *first.worker_pids()]:  # the first start reads it lean
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "/sklearn/" not in maps, f"process {pid} loaded scikit-learn"
    assert first.stop() == 0
    assert "compiled form cached" not in first.log
    assert "read without importing scikit-learn" in first.log

    second = start_server(str(iris_model_path), "--cache-dir", cache, "--workers", "2")
    assert "serving the compiled form cached for this file" in second.log
    rows = np.random.default_rng(0).uniform(0, 8, (300, 4)).round(2)
    answer = second.client.post("/predict", json=rows.tolist())
    assert answer.json() == iris_model.predict(rows).tolist()
    proba = second.client.post("/invocations", json=rows[:64].tolist())
    assert proba.status_code == 200
    assert second.client.get("/v2/models/iris").json() == metadata
    for pid in [second.process.pid, *second.worker_pids()]:
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "/sklearn/" not in maps, f"process {pid} loaded scikit-learn"

    third = start_server(str(iris_model_path), "--cache-dir", cache, "--no-compiled-cache")
    assert third.client.post("/predict", json=ROWS).json() == iris_model.predict(ROWS).tolist()
    assert "compiled form cached" not in third.log
