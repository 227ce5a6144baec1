"""The control plane's HTTP API through ASGI, with the fake backend and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry.control.api import ControlApi, build_app
from ferry.control.deployments import deploy_project
from ferry.control.reconciler import Reconciler
from ferry.control.records import RequestStats
from ferry.control.store import Store

TOKEN = "s3cret"


class Plane:
    def __init__(self, store: Store, backend: Any, clock: Any) -> None:
        self.reconciler = Reconciler(store, backend, clock)
        self.stopped: list[bool] = []
        info = {"gateway_url": "http://127.0.0.1:8888", "pid": 1}
        api = ControlApi(store, self.reconciler, backend, info, clock, self.stopped.append)
        self.app = build_app(api, TOKEN)
        self.clock = clock

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            self.reconciler.tick()
            self.clock.advance(1)


@pytest.fixture
def plane(store: Store, backend: Any, clock: Any) -> Plane:
    return Plane(store, backend, clock)


@pytest.fixture
async def client(plane: Plane) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=plane.app)
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://control", headers=headers
    ) as http:
        yield http


async def test_every_route_needs_the_token(plane: Plane) -> None:
    transport = httpx.ASGITransport(app=plane.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as anonymous:
        for method, path in [("GET", "/v1/apis"), ("POST", "/v1/deploy"), ("GET", "/nope")]:
            response = await anonymous.request(method, path)
            assert response.status_code == 401
            assert response.json() == {
                "error": "missing or wrong bearer token",
                "code": "unauthorized",
            }
        wrong = await anonymous.get("/v1/apis", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401


async def test_deploy_get_and_delete(
    client: httpx.AsyncClient, plane: Plane, write_project: Any, api_entry: Any
) -> None:
    root: Path = write_project(api_entry(autoscaling={"min_replicas": 2}))
    deployed = await client.post("/v1/deploy", json={"path": str(root)})
    assert deployed.status_code == 200
    assert deployed.json()["apis"][0]["action"] == "created"
    plane.tick(3)
    (row,) = (await client.get("/v1/apis")).json()["apis"]
    assert row["name"] == "iris"
    assert row["status"] == "live"
    assert row["url"] == "http://127.0.0.1:8888/iris"
    assert row["replicas"]["requested"] == 2
    assert row["replicas"]["up_to_date"] == 2
    assert row["requests"] == {"2XX": 0, "4XX": 0, "5XX": 0, "avg_request_seconds": None}
    detail = (await client.get("/v1/apis/iris")).json()
    assert {r["state"] for r in detail["replica_list"]} == {"ready"}
    assert detail["spec"]["name"] == "iris"
    events = (await client.get("/v1/apis/iris/events")).json()["events"]
    assert any(e["message"].startswith("starting replica") for e in events)
    logs = await client.get("/v1/apis/iris/logs")
    assert "] ready\n" in logs.text
    deleted = await client.delete("/v1/apis/iris")
    assert deleted.status_code == 202
    plane.tick(3)
    assert (await client.get("/v1/apis")).json()["apis"] == []


async def test_errors_are_json_with_a_code(client: httpx.AsyncClient, write_project: Any) -> None:
    missing = await client.get("/v1/apis/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "api 'nope' is not deployed (see `ferry get`)",
        "code": "not_found",
    }
    relative = await client.post("/v1/deploy", json={"path": "project"})
    assert relative.status_code == 400
    assert relative.json()["code"] == "bad_request"
    root = write_project("- name: iris\n  predictor: {type: python, model_path: m, typo: 1}\n")
    broken = await client.post("/v1/deploy", json={"path": str(root)})
    assert broken.status_code == 400
    body = broken.json()
    assert body["code"] == "config_error"
    assert "unknown field 'typo'" in body["error"]
    assert (await client.post("/v1/apis/nope/rollback")).status_code == 404
    assert (await client.get("/v2/other")).json()["code"] == "not_found"


async def test_rollback_refresh_cluster_and_shutdown(
    client: httpx.AsyncClient, plane: Plane, write_project: Any, api_entry: Any
) -> None:
    await client.post("/v1/deploy", json={"path": str(write_project(api_entry()))})
    plane.tick(2)
    no_previous = await client.post("/v1/apis/iris/rollback")
    assert no_previous.status_code == 400
    refreshed = (await client.post("/v1/apis/iris/refresh")).json()
    back = (await client.post("/v1/apis/iris/rollback")).json()
    assert back["revision"] != refreshed["revision"]
    info = (await client.get("/v1/cluster")).json()
    assert info["apis"] == 1
    assert info["gateway_url"] == "http://127.0.0.1:8888"
    assert (await client.post("/v1/shutdown", json={"stop_replicas": True})).status_code == 202
    assert plane.stopped == [True]


async def test_listing_reads_the_replicas_counters_first_when_asked(
    store: Store, backend: Any, clock: Any, write_project: Any, api_entry: Any
) -> None:
    served = {"n": 0}

    def scrape(address: str) -> RequestStats:
        return RequestStats(ok=served["n"], client_errors=1, seconds=0.5, count=served["n"] + 1)

    reconciler = Reconciler(store, backend, clock, scrape=scrape)
    api = ControlApi(store, reconciler, backend, {"gateway_url": "http://127.0.0.1:8888"}, clock)
    transport = httpx.ASGITransport(app=build_app(api, TOKEN))
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://control", headers=headers
    ) as http:
        deploy_project(store, write_project(api_entry()), clock())
        for _ in range(3):
            reconciler.tick()
            clock.advance(1)
        served["n"] = 9  # sent since the loop's last read (it reads every 10 s)
        # a poller (ferry deploy waiting for "live") does not have the replicas read ...
        (row,) = (await http.get("/v1/apis")).json()["apis"]
        assert row["requests"]["2XX"] == 0
        # ... ferry get does
        (row,) = (await http.get("/v1/apis", params={"stats": "fresh"})).json()["apis"]
        assert row["requests"]["2XX"] == 9
        assert row["requests"]["4XX"] == 1
        served["n"] = 12
        clock.advance(1)
        assert (await http.get("/v1/apis/iris")).json()["requests"]["2XX"] == 9
        detail = (await http.get("/v1/apis/iris", params={"stats": "fresh"})).json()
        assert detail["requests"]["2XX"] == 12
