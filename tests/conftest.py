"""Shared fixtures: small real models trained in the test run, and ferry server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def iris_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An iris RandomForestClassifier (20 trees) saved with joblib."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    iris = load_iris()
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(iris.data, iris.target)
    path = tmp_path_factory.mktemp("models") / "iris.joblib"
    joblib.dump(model, path)
    return path


@pytest.fixture(scope="session")
def iris_model(iris_model_path: Path) -> object:
    return joblib.load(iris_model_path)


class ServerProcess:
    """A ``ferry serve`` subprocess on 127.0.0.1 with its combined output in a file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = dict(env or {})
        if env.get("SAGEMAKER_BIND_TO_PORT") == "PICK":
            env["SAGEMAKER_BIND_TO_PORT"] = str(self.port)
        self.log_path = log_path
        self.args = [sys.executable, "-m", "ferry", "serve", *args]
        if "--port" not in args and "SAGEMAKER_BIND_TO_PORT" not in env:
            self.args += ["--port", str(self.port)]
        if "--host" not in args:
            self.args += ["--host", "127.0.0.1"]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log}")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def stop(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
        self.client.close()
        self._log.close()
        return code


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    """Start ``ferry serve ARGS``; every server is stopped (and its group killed) afterwards."""
    servers: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> ServerProcess:
        server = ServerProcess(list(args), tmp_path / f"server-{len(servers)}.log", env)
        servers.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
        if server.process.poll() is None:  # pragma: no cover - defensive
            os.killpg(server.process.pid, signal.SIGKILL)
