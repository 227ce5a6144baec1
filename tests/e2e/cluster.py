"""A local cluster for end-to-end tests: its own state dir and gateway port, driven only
through the public CLI (``python -m ferry`` with FERRY_STATE_DIR and FERRY_GATEWAY_PORT).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["KeepAliveLoad", "LocalCluster", "free_port"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class KeepAliveLoad:
    """``threads`` clients posting ``body`` to ``url`` over kept-alive connections, without
    retries, while the ``with`` block runs; ``failures`` lists every request that did not
    get a 200 (its status and body, or the transport error)."""

    def __init__(self, url: str, body: bytes, threads: int = 4) -> None:
        self.url, self.body = url, body
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        headers = {"content-type": "application/json"}
        with httpx.Client(timeout=10, headers=headers) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post(self.url, content=self.body)
                    if answer.status_code != 200:
                        self.failures.append(f"{answer.status_code} {answer.text}")
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                self.sent += 1

    def __enter__(self) -> KeepAliveLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


class LocalCluster:
    """A state dir under ``root`` and a free gateway port; ``project`` is where commands run.

    ``project`` is ``root / "project"``; the caller fills it (a spec and predictor, or a
    copied example) before deploying.
    """

    timeout_s = 180.0

    def __init__(self, root: Path) -> None:
        self.project = root / "project"
        self.state = root / "state"
        self.port = free_port()
        self.env = {
            **os.environ,
            "FERRY_STATE_DIR": str(self.state),
            "FERRY_GATEWAY_PORT": str(self.port),
        }
        self.gateway = f"http://127.0.0.1:{self.port}"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ferry", *args]

    def ferry(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
            check=False,
        )
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ferry(*args, "--output", "json").stdout)

    def replica_ids(self, api: str) -> set[str]:
        return {replica["id"] for replica in self.json("describe", api)["replica_list"]}

    def control_pid(self) -> int:
        return int(json.loads((self.state / "control.json").read_text())["pid"])

    def down(self, *, within_s: float = 15.0) -> str:
        """``ferry cluster down``; returns what is still running under the state dir."""
        self.ferry("cluster", "down", check=False)
        deadline = time.monotonic() + within_s
        while True:
            leftovers = subprocess.run(
                ["pgrep", "-f", str(self.state)], capture_output=True, text=True, check=False
            ).stdout.strip()
            if not leftovers or time.monotonic() > deadline:
                return leftovers
            time.sleep(0.5)
