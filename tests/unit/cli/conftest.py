"""An in-process control plane (fake backend) and a stub gateway for the CLI tests."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ferry.control.service import ControlPlane


def load_fake_backend() -> ModuleType:
    name = "ferry_tests_fake_backend"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "control" / "fake_backend.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


async def _echo(request: Request) -> JSONResponse:
    if request.url.path == "/broken":
        return JSONResponse({"error": "no replica is ready", "code": "unavailable"}, 503)
    return JSONResponse({"endpoint": request.url.path, "payload": json.loads(await request.body())})


class Threaded:
    """A uvicorn server for ``app`` on a free port, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def gateway() -> Iterator[Threaded]:
    server = Threaded(Starlette(routes=[Route("/{path:path}", _echo, methods=["POST"])]))
    yield server
    server.stop()


class Cluster:
    def __init__(self, state_dir: Path, backend: Any) -> None:
        self.backend = backend
        self.plane = ControlPlane(state_dir, backend, tick_interval=0.02)
        self.thread = threading.Thread(target=self.plane.serve, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not (state_dir / "control.json").exists():
            assert time.monotonic() < deadline, "the control plane did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.plane.stop()
        self.thread.join(10)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv("FERRY_STATE_DIR", str(directory))
    return directory


@pytest.fixture
def cluster(state_dir: Path, gateway: Threaded) -> Iterator[Cluster]:
    backend = load_fake_backend().FakeBackend(gateway_url=gateway.url)
    running = Cluster(state_dir, backend)
    yield running
    running.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "ferry.yaml").write_text(
        "- name: iris\n"
        "  predictor: {type: python, model_path: model.joblib}\n"
        "  autoscaling: {min_replicas: 2}\n",
        encoding="utf-8",
    )
    return root
