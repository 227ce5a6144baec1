"""The README's main job: train a model, serve it with ferry, send real predictions.

Run with ``scripts/demo``. Everything happens on 127.0.0.1 and is cleaned up at the end.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import joblib
import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

console = Console()
WORKDIR = Path(os.environ.get("FERRY_DEMO_DIR", ".ferry-demo"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def train() -> tuple[Path, RandomForestClassifier]:
    iris = load_iris()
    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(iris.data, iris.target)
    WORKDIR.mkdir(exist_ok=True)
    path = WORKDIR / "iris.joblib"
    joblib.dump(model, path)
    console.print(f"[bold]1. trained[/] RandomForestClassifier(100 trees) on iris -> {path}")
    return path, model


def start_server(model_path: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "ferry", "serve", str(model_path), "--port", str(port),
        "--labels", "0=setosa,1=versicolor,2=virginica", "--workers", "2",
    ]  # fmt: skip
    console.print(f"[bold]2. serving[/] {' '.join(command[2:])}")
    log = open(WORKDIR / "server.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(client: httpx.Client, server: subprocess.Popen[bytes]) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < 60:
        if server.poll() is not None:
            raise SystemExit(f"server exited early:\n{(WORKDIR / 'server.log').read_text()}")
        try:
            if client.get("/readyz").status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit("server did not become ready within 60 s")


def show_predictions(client: httpx.Client, model: RandomForestClassifier) -> None:
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    names = ["setosa", "versicolor", "virginica"]
    expected = [names[i] for i in model.predict(np.array(rows))]
    table = Table("protocol", "request", "answer")
    answer = client.post("/predict", json=rows).json()
    table.add_row("POST /predict", "3 rows (JSON list)", str(answer))
    assert answer == expected, (answer, expected)
    instances = client.post("/predict", json={"instances": rows[:1]}).json()
    table.add_row("POST /predict", '{"instances": [1 row]}', str(instances))
    csv = "\n".join(",".join(str(v) for v in row) for row in rows)
    sm = client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    table.add_row("POST /invocations (SageMaker)", "text/csv, 3 rows", sm.text.strip())
    flat = [v for row in rows[:2] for v in row]
    v2 = client.post(
        "/v2/models/iris/infer",
        json={"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": flat}]},
    ).json()
    table.add_row("POST /v2/models/iris/infer", "FP64 tensor [2,4]", str(v2["outputs"][0]["data"]))
    bad = client.post("/predict", json=[[5.1, 3.5, 1.4]])
    error = f"{bad.status_code} {bad.json()['error']}"
    table.add_row("bad input", "3 features instead of 4", error)
    console.print("[bold]3. predictions[/] (answers match the model's own predict)")
    console.print(table)


def show_throughput(client: httpx.Client) -> None:
    body = io.BytesIO()
    np.save(body, np.random.default_rng(0).uniform(0, 7, size=(1000, 4)))
    started = time.perf_counter()
    for _ in range(20):
        response = client.post(
            "/invocations",
            content=body.getvalue(),
            headers={"content-type": "application/x-npy", "accept": "application/json"},
        )
        response.raise_for_status()
    seconds = time.perf_counter() - started
    console.print(f"[bold]4. batch scoring[/]: 20 x 1000-row npy requests in {seconds:.2f} s")


def show_metrics(client: httpx.Client) -> None:
    lines = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith(("ferry_requests_total", "ferry_model_load_seconds"))
    ]
    console.print("[bold]5. metrics[/] (/metrics, Prometheus)")
    for line in lines[:8]:
        console.print(f"   {line}")


EXAMPLE = Path(__file__).resolve().parent / "cortex"


def ferry(*args: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ferry", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"ferry {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def deploy_cluster() -> int:
    """Part two: a Cortex project with a traffic splitter on the local cluster."""
    project = WORKDIR / "project"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(EXAMPLE, project)
    subprocess.run([sys.executable, "train.py"], cwd=project, check=True, capture_output=True)
    port = free_port()
    env = {**os.environ, "FERRY_STATE_DIR": str((WORKDIR / "state").resolve())}
    env["FERRY_GATEWAY_PORT"] = str(port)
    console.print(f"[bold]7. deploying[/] {project}/cortex.yaml (3 APIs + a traffic splitter)")
    started = time.perf_counter()
    try:
        print(ferry("deploy", ".", env=env, cwd=project).rstrip())
        console.print(f"   live in {time.perf_counter() - started:.1f} s")
        return send_through_gateway(project, port, env)
    finally:
        ferry("cluster", "down", env=env, cwd=project)
        console.print(
            "[bold]10. cluster down[/]: replicas drained, gateway and control plane stopped"
        )


def wait_for_counts(project: Path, env: dict[str, str], sent: int, timeout: float = 20) -> None:
    """Until ``ferry get`` counts every request sent, so that its table shows them all
    (``ferry get`` has the replicas' counters read at most once a second, and a worker's
    own counters reach its metrics within 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        apis = json.loads(ferry("get", "--output", "json", env=env, cwd=project))["apis"]
        if sum(api["requests"]["2XX"] for api in apis if api["name"] != "iris-knn") >= sent:
            return
        time.sleep(0.5)


def send_through_gateway(project: Path, port: int, env: dict[str, str]) -> int:
    body = (project / "sample.json").read_bytes()
    answers: dict[str, int] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for _ in range(100):
            response = client.post(
                "/iris", content=body, headers={"content-type": "application/json"}
            )
            response.raise_for_status()
            answers[response.text] = answers.get(response.text, 0) + 1
    console.print(f"[bold]8. 100 requests[/] through the gateway to /iris: {answers}")
    wait_for_counts(project, env, 100)
    console.print("[bold]9. ferry get[/]")
    print(ferry("get", env=env, cwd=project).rstrip())
    apis = json.loads(ferry("get", "--output", "json", env=env, cwd=project))["apis"]
    return 0 if all(api["status"] == "live" for api in apis) else 1


def main() -> int:
    model_path, model = train()
    port = free_port()
    server = start_server(model_path, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            ready_in = wait_ready(client, server)
            console.print(f"   ready in {ready_in:.2f} s on http://127.0.0.1:{port}")
            show_predictions(client, model)
            show_throughput(client)
            show_metrics(client)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=40)
    console.print(f"[bold]6. stopped[/] with SIGTERM: drained and exited with code {code}")
    console.print(f"   server log: {WORKDIR / 'server.log'}")
    if code != 0:
        return 1
    return deploy_cluster()


if __name__ == "__main__":
    sys.exit(main())
