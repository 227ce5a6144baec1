"""Autoscaling on the local cluster, driven by real load through the gateway.

A PythonPredictor that sleeps 0.2 s per request is deployed with a small policy (window
10 s, no upscale stabilization, 20 s downscale stabilization). Twelve concurrent clients
keep about 12 requests in flight, 6x the target of 2 per replica, so the next decision
(the autoscaler decides every 10 s) asks for more replicas, up to max_replicas 3; once
the load stops, the count comes back to 1 after the downscale stabilization period.

Only the public surface is used: ``python -m ferry`` with FERRY_STATE_DIR and
FERRY_GATEWAY_PORT, ``--output json``, and HTTP through the gateway.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.cluster import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PREDICTOR = """\
import time


class PythonPredictor:
    def __init__(self, config):
        self.delay = float(config.get("delay", 0.2))

    def predict(self, payload):
        time.sleep(self.delay)  # slow on purpose, so requests pile up in flight
        return {"ok": True}
"""

SPEC = """\
- name: sleepy
  kind: RealtimeAPI
  predictor:
    type: python
    path: predictor.py
    config:
      delay: 0.2
    threads_per_process: 4
  autoscaling:
    min_replicas: 1
    max_replicas: 3
    target_replica_concurrency: 2
    window: 10s
    upscale_stabilization_period: 0s
    downscale_stabilization_period: 20s
    max_upscale_factor: 3
    max_downscale_factor: 0.3
"""

CLIENTS = 12
UP_WITHIN_S = 60.0  # a decision every 10 s; the first full window of load is ~10-20 s in
DOWN_WITHIN_S = 75.0  # window 10 s + stabilization 20 s + decision ticks + draining


class Cluster(LocalCluster):
    timeout_s = 120.0

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.project.mkdir()
        (self.project / "predictor.py").write_text(PREDICTOR)
        (self.project / "ferry.yaml").write_text(SPEC)

    def replicas(self) -> dict[str, int]:
        apis = {api["name"]: api for api in self.json("get")["apis"]}
        return dict(apis["sleepy"]["replicas"])

    def reason(self) -> str:
        return str(self.json("describe", "sleepy").get("autoscaler", {}).get("reason", ""))


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    made = Cluster(tmp_path)
    yield made
    leftovers = made.down()
    assert leftovers == "", f"processes left behind after `ferry cluster down`: {leftovers}"


class Load:
    """``CLIENTS`` threads posting through the gateway back to back until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.codes: Counter[int | str] = Counter()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=CLIENTS)

    def __enter__(self) -> Load:
        for _ in range(CLIENTS):
            self._pool.submit(self._client)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._pool.shutdown(wait=True)

    def _client(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                try:
                    code: int | str = http.post(self.url, json={"x": 1}).status_code
                except httpx.HTTPError as error:
                    code = type(error).__name__
                with self._lock:
                    self.codes[code] += 1


def wait_for(condition: Any, within: float, every: float = 2.0) -> tuple[bool, float]:
    start = time.monotonic()
    while time.monotonic() - start < within:
        if condition():
            return True, time.monotonic() - start
        time.sleep(every)
    return bool(condition()), time.monotonic() - start


def test_replicas_follow_in_flight_load_up_and_back_down(cluster: Cluster) -> None:
    deployed = cluster.ferry("deploy", ".")
    assert "sleepy is live" in deployed.stdout, deployed.stdout
    assert httpx.post(f"{cluster.gateway}/sleepy", json={"x": 1}, timeout=10).json() == {"ok": True}
    assert cluster.replicas()["requested"] == 1

    seen: list[dict[str, int]] = []

    def scaled_up_and_ready() -> bool:
        seen.append(cluster.replicas())
        return seen[-1]["requested"] > 1 and seen[-1]["ready"] > 1

    with Load(f"{cluster.gateway}/sleepy") as load:
        up, _took = wait_for(scaled_up_and_ready, UP_WITHIN_S)
    assert up, f"no scale-up within {UP_WITHIN_S:g}s: {seen[-3:]}; autoscaler: {cluster.reason()}"
    assert max(s["requested"] for s in seen) <= 3  # max_replicas
    served = load.codes[200]
    assert served > 0, load.codes
    assert served >= 0.99 * sum(load.codes.values()), load.codes

    peak = max(s["requested"] for s in seen)
    down_seen: list[dict[str, int]] = []

    def back_to_one() -> bool:
        down_seen.append(cluster.replicas())
        counts = down_seen[-1]
        return counts["requested"] == 1 and counts["ready"] == 1

    down, took_down = wait_for(back_to_one, DOWN_WITHIN_S)
    assert down, (
        f"still {down_seen[-1]} {DOWN_WITHIN_S:g}s after the load stopped (peak {peak}); "
        f"autoscaler: {cluster.reason()}"
    )
    # the downscale stabilization period (20 s) held the count for a while: not instant
    assert took_down >= 10, f"scaled down after {took_down:.0f}s, before stabilization"
    events = [e["message"] for e in cluster.json("describe", "sleepy", "--events", "100")["events"]]
    assert any(m.startswith("scaling from 1 to") for m in events), events
    assert any(m.startswith("scaling from") and m.split()[4] == "1" for m in events), events
    assert httpx.post(f"{cluster.gateway}/sleepy", json={"x": 1}, timeout=10).status_code == 200
