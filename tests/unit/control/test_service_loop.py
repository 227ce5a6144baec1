"""The control plane's loop: a change through the API is reconciled at once, and replicas
that start or drain are watched closely, whatever the tick interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry.control.client import ControlClient
from ferry.control.service import ControlPlane, read_token

HOUR = 3600.0  # a tick interval no test waits for


class Running:
    def __init__(self, state_dir: Path, backend: Any) -> None:
        self.backend = backend
        self.plane = ControlPlane(state_dir, backend, tick_interval=HOUR)
        self.thread = threading.Thread(target=self.plane.serve, daemon=True)
        self.thread.start()
        assert self.plane.wait_ready()
        self.client = ControlClient(self.plane.url, read_token(state_dir) or "")

    def status(self, name: str) -> str:
        rows = {row["name"]: row for row in self.client.apis()}
        return str(rows[name]["status"]) if name in rows else "absent"

    def stop(self) -> None:
        self.client.close()
        self.plane.stop()
        self.thread.join(10)


@pytest.fixture
def running(tmp_path: Path, backend: Any) -> Iterator[Running]:
    backend.boot_ticks = 3  # a replica is ready on the third observation
    started = Running(tmp_path / "state", backend)
    yield started
    started.stop()


def eventually(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def test_a_deploy_goes_live_without_waiting_for_the_next_tick(
    running: Running, write_project: Callable[[str], Path]
) -> None:
    root = write_project(
        """
        - name: iris
          predictor: {type: python, model_path: model.joblib}
          autoscaling: {min_replicas: 2}
        """
    )
    running.client.deploy(root)
    eventually(lambda: running.status("iris") == "live", "iris live")
    assert len(running.backend.started) == 2


def test_a_delete_is_carried_out_at_once(
    running: Running, write_project: Callable[[str], Path]
) -> None:
    root = write_project(
        """
        - name: iris
          predictor: {type: python, model_path: model.joblib}
        """
    )
    running.client.deploy(root)
    eventually(lambda: running.status("iris") == "live", "iris live")
    running.client.delete("iris")
    eventually(lambda: running.status("iris") == "absent", "iris gone")
    assert running.backend.replicas == {}
