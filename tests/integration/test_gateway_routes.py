"""The gateway's routing, against a real nginx with its Lua module and stand-in replicas
(small HTTP servers in this process that record what reaches them).

What the routes say is tested through what a client and the replicas see: endpoints and
their query strings, splitting by weight, shadow copies, SageMaker Runtime paths and
errors, slots that refuse or are full, limits, and that changing the routes, even under
continuous keep-alive load, never reloads nginx or fails a request."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from tests.e2e.cluster import KeepAliveLoad, free_port

from ferry.runtime.base import ApiRoute, RoutingTable, SplitRoute
from ferry.runtime.local.gateway import NginxGateway
from ferry.runtime.local.nginx_conf import GatewayOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@dataclass
class Seen:
    path: str
    body: bytes
    request_id: str | None


@dataclass
class Replica:
    """A stand-in replica: answers its port's number, or ``status``; waits on ``gate``."""

    port: int
    status: int = 200
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Replica:
        replica = self
        self.gate.set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                replica.seen.append(Seen(self.path, body, self.headers.get("x-request-id")))
                replica.gate.wait(10)
                time.sleep(replica.delay)
                answer = json.dumps({"port": replica.port, "path": self.path}).encode()
                self.send_response(replica.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                if self.path.startswith("/endpoints/"):  # as a replica's InvokeEndpoint does
                    self.send_header("x-Amzn-Invoked-Production-Variant", "AllTraffic")
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.gate.set()
            self.server.shutdown()
            self.server.server_close()


class Gateway:
    def __init__(self, root: Path) -> None:
        options = GatewayOptions(port=free_port(), upstream_timeout_s=2, max_body_bytes=1 << 20)
        self.nginx = NginxGateway(root / "gateway", options)
        self.client = httpx.Client(base_url=self.nginx.url, timeout=10)
        self.replicas: list[Replica] = []

    def replica(self, **kwargs: object) -> Replica:
        replica = Replica(free_port(), **kwargs).start()  # type: ignore[arg-type]
        self.replicas.append(replica)
        return replica

    def route(self, *apis: ApiRoute, splitters: tuple[SplitRoute, ...] = ()) -> bool:
        return self.nginx.apply(RoutingTable(apis=apis, splitters=splitters))

    def post(self, path: str, body: bytes = b"[1]", **kwargs: object) -> httpx.Response:
        return self.client.post(path, content=body, **kwargs)  # type: ignore[arg-type]

    def workers(self) -> set[str]:
        master = self.nginx.pid()
        return set(Path(f"/proc/{master}/task/{master}/children").read_text().split())

    def close(self) -> None:
        self.client.close()
        self.nginx.stop()
        for replica in self.replicas:
            replica.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("routes"))
    try:
        yield gw
    finally:
        gw.close()


def dead_address() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there: connections are refused


def test_an_endpoint_reaches_predict_with_its_query_body_and_request_id(gateway: Gateway) -> None:
    replica = gateway.replica()
    gateway.route(ApiRoute("a", "/deep/a", (replica.address,)))
    answer = gateway.post("/deep/a?debug=1&k=v", b"[[1,2]]", headers={"x-request-id": "r-1"})
    assert answer.status_code == 200
    assert answer.json() == {"port": replica.port, "path": "/predict?debug=1&k=v"}
    assert replica.seen[-1] == Seen("/predict?debug=1&k=v", b"[[1,2]]", "r-1")
    generated = gateway.post("/deep/a")
    assert generated.status_code == 200
    assert replica.seen[-1].request_id


def test_unknown_paths_and_apis_without_replicas_answer_json(gateway: Gateway) -> None:
    gateway.route(ApiRoute("empty", "/empty", ()))
    missing = gateway.post("/nowhere")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    empty = gateway.post("/empty")
    assert empty.status_code == 503
    assert empty.json() == {"error": "api empty has no ready replica", "code": "unavailable"}
    assert empty.headers["content-type"] == "application/json"


def test_a_body_over_the_limit_is_a_413_json(gateway: Gateway) -> None:
    replica = gateway.replica()
    gateway.route(ApiRoute("a", "/a", (replica.address,)))
    answer = gateway.post("/a", b"x" * (2 << 20))
    assert answer.status_code == 413
    assert answer.json()["code"] == "too_large"
    assert not any(len(seen.body) > 1 << 20 for seen in replica.seen)


def test_a_refusing_slot_is_passed_over_and_all_refusing_is_503_json(gateway: Gateway) -> None:
    replica = gateway.replica()
    gateway.route(ApiRoute("a", "/a", (dead_address(), replica.address, dead_address())))
    statuses = Counter(gateway.post("/a").status_code for _ in range(30))
    assert statuses == {200: 30}
    gateway.route(ApiRoute("a", "/a", (dead_address(), dead_address())))
    answer = gateway.post("/a")
    assert answer.status_code == 503
    assert answer.json()["code"] == "unavailable"


def test_a_replica_answering_503_sends_the_request_to_the_next(gateway: Gateway) -> None:
    loading = gateway.replica(status=503)
    ready = gateway.replica()
    gateway.route(ApiRoute("a", "/a", (loading.address, ready.address)))
    answers = [gateway.post("/a") for _ in range(20)]
    assert {answer.status_code for answer in answers} == {200}
    assert {answer.json()["port"] for answer in answers} == {ready.port}
    assert loading.seen  # tried, and the request went on


def wait_seen(replicas: list[Replica], count: int) -> None:
    deadline = time.monotonic() + 5
    while sum(len(r.seen) for r in replicas) < count:
        assert time.monotonic() < deadline, "the request did not reach a replica"
        time.sleep(0.01)


def test_least_connections_and_the_per_replica_limit(gateway: Gateway) -> None:
    one, two = gateway.replica(), gateway.replica()
    gateway.route(ApiRoute("a", "/a", (one.address, two.address), max_concurrency=1))
    one.gate.clear()
    two.gate.clear()
    held = [threading.Thread(target=gateway.post, args=("/a",)) for _ in range(2)]
    held[0].start()
    wait_seen([one, two], 1)
    held[1].start()  # goes to the replica with no request in flight
    wait_seen([one, two], 2)
    assert (len(one.seen), len(two.seen)) == (1, 1)
    full = gateway.post("/a")  # both at their limit of one
    assert full.status_code == 503
    assert full.json()["code"] == "unavailable"
    one.gate.set()
    two.gate.set()
    for thread in held:
        thread.join()
    assert gateway.post("/a").status_code == 200  # the slots are free again


def test_a_full_replica_is_not_reached_through_an_empty_slot(gateway: Gateway) -> None:
    held = gateway.replica()
    gateway.route(ApiRoute("a", "/a", (dead_address(), held.address, dead_address()), 1))
    held.gate.clear()
    first = threading.Thread(target=gateway.post, args=("/a",))
    first.start()
    wait_seen([held], 1)
    for _ in range(3):  # the empty slots refuse, and the held replica is at its limit
        answer = gateway.post("/a")
        assert (answer.status_code, answer.json()["code"]) == (503, "unavailable")
    assert len(held.seen) == 1
    held.gate.set()
    first.join()
    assert gateway.post("/a").status_code == 200


def test_a_slow_replica_is_a_504_json_and_frees_its_place(gateway: Gateway) -> None:
    slow = gateway.replica(delay=3)  # over the gateway's 2 s
    gateway.route(ApiRoute("a", "/a", (slow.address,), max_concurrency=1))
    answer = gateway.post("/a")
    assert (answer.status_code, answer.json()["code"]) == (504, "timeout")
    slow.delay = 0
    assert gateway.post("/a").status_code == 200  # the timed-out request is not counted


def test_requests_that_end_in_the_gateways_errors_free_their_place(gateway: Gateway) -> None:
    port = free_port()
    gateway.route(ApiRoute("a", "/a", (f"127.0.0.1:{port}",), max_concurrency=1))
    assert gateway.post("/a").status_code == 503  # refused: nothing listens yet
    replica = Replica(port).start()
    gateway.replicas.append(replica)
    time.sleep(1.1)  # the refusal kept the slot out of turn for a second
    assert gateway.post("/a").status_code == 200
    replica.status = 503
    runtime = gateway.post("/endpoints/a/invocations")
    assert runtime.headers["x-amzn-errortype"] == "ServiceUnavailable:"
    replica.status = 200
    for _ in range(3):
        assert gateway.post("/endpoints/a/invocations").status_code == 200


def test_a_splitter_splits_by_weight(gateway: Gateway) -> None:
    a, b = gateway.replica(), gateway.replica()
    gateway.route(
        ApiRoute("a", "/a", (a.address,)),
        ApiRoute("b", "/b", (b.address,)),
        splitters=(SplitRoute("ab", "/ab", (("a", 80), ("b", 20))),),
    )
    ports = Counter(gateway.post("/ab").json()["port"] for _ in range(400))
    assert 280 <= ports[a.port] <= 360  # 320 expected; 5 standard deviations either way
    assert ports[a.port] + ports[b.port] == 400


def test_a_shadow_gets_a_copy_without_delaying_the_answer(gateway: Gateway) -> None:
    a = gateway.replica()
    shadow = gateway.replica(delay=1.5)
    gateway.route(
        ApiRoute("a", "/a", (a.address,)),
        ApiRoute("shadow", "/shadow", (shadow.address,)),
        splitters=(SplitRoute("s", "/s", (("a", 100),), shadow="shadow"),),
    )
    started = time.monotonic()
    for index in range(3):
        answer = gateway.post(
            "/s?k=v", f"[{index}]".encode(), headers={"x-request-id": f"c-{index}"}
        )
        assert (answer.status_code, answer.json()["port"]) == (200, a.port)
    assert time.monotonic() - started < 1.5  # the slow shadow held none of them
    deadline = time.monotonic() + 5
    while len(shadow.seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    copies = sorted((seen.request_id, seen.body, seen.path) for seen in shadow.seen)
    assert copies == [(f"c-{i}", f"[{i}]".encode(), "/predict?k=v") for i in range(3)]
    time.sleep(1.2)  # the access log is flushed every second
    log = gateway.nginx.layout.access_log.read_text()
    assert "/_ferry/" not in log  # the gateway's own locations are not logged (nor a 404)


def test_a_shadow_weight_copies_that_share_of_the_requests(gateway: Gateway) -> None:
    a = gateway.replica()
    shadow = gateway.replica()
    gateway.route(
        ApiRoute("a", "/a", (a.address,)),
        ApiRoute("shadow", "/shadow", (shadow.address,)),
        splitters=(SplitRoute("s", "/s", (("a", 100),), shadow="shadow", shadow_weight=25),),
    )
    for _ in range(400):
        assert gateway.post("/s").status_code == 200
    time.sleep(0.5)
    assert 60 <= len(shadow.seen) <= 140  # 100 expected; 5 standard deviations either way


def test_sagemaker_runtime_by_api_and_by_splitter_name(gateway: Gateway) -> None:
    a, b = gateway.replica(), gateway.replica()
    shadow = gateway.replica()
    gateway.route(
        ApiRoute("a", "/a", (a.address,)),
        ApiRoute("b", "/b", (b.address,)),
        ApiRoute("shadow", "/shadow", (shadow.address,)),
        splitters=(SplitRoute("ab", "/ab", (("a", 50), ("b", 50)), shadow="shadow"),),
    )
    direct = gateway.post("/endpoints/a/invocations?x=1")
    assert direct.json() == {"port": a.port, "path": "/endpoints/a/invocations?x=1"}
    assert direct.headers["x-amzn-invoked-production-variant"] == "AllTraffic"  # the replica's
    variants = Counter()
    for _ in range(40):
        answer = gateway.post("/endpoints/ab/invocations")
        variant = answer.headers["x-amzn-invoked-production-variant"]  # the gateway's pick
        assert answer.json()["path"] == f"/endpoints/{variant}/invocations"
        variants[variant] += 1
    assert set(variants) == {"a", "b"}
    deadline = time.monotonic() + 5
    while len(shadow.seen) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {seen.path for seen in shadow.seen} == {"/endpoints/shadow/invocations"}


def test_the_gateways_runtime_errors_are_sagemakers(gateway: Gateway) -> None:
    slow = gateway.replica(delay=3)
    gateway.route(ApiRoute("a", "/a", ()), ApiRoute("slow", "/slow", (slow.address,)))
    unknown = gateway.post("/endpoints/nope/invocations")
    assert unknown.status_code == 400
    assert unknown.headers["x-amzn-errortype"] == "ValidationError:"
    assert unknown.json() == {
        "message": "Endpoint nope not found; the gateway serves the endpoints: a, slow"
    }
    odd = gateway.post("/endpoints/%22%3E/invocations")
    assert odd.status_code == 400
    assert odd.json()["message"].startswith("Endpoint not found;")
    empty = gateway.post("/endpoints/a/invocations")
    assert empty.status_code == 503
    assert empty.headers["x-amzn-errortype"] == "ServiceUnavailable:"
    late = gateway.post("/endpoints/slow/invocations")
    assert late.status_code == 424
    assert late.headers["x-amzn-errortype"] == "ModelError:"
    assert late.json()["OriginalStatusCode"] == 504
    large = gateway.post("/endpoints/slow/invocations", b"x" * (2 << 20))
    assert large.status_code == 413
    assert large.json() == {"message": f"HTTP content length exceeded {1 << 20} bytes."}


def test_an_endpoint_at_a_runtime_path_keeps_it(gateway: Gateway) -> None:
    a, b = gateway.replica(), gateway.replica()
    gateway.route(
        ApiRoute("a", "/endpoints/b/invocations", (a.address,)),
        ApiRoute("b", "/b", (b.address,)),
    )
    answer = gateway.post("/endpoints/b/invocations")
    assert answer.json() == {"port": a.port, "path": "/predict"}


def test_route_changes_under_keep_alive_load_never_reload_and_fail_nothing(
    gateway: Gateway,
) -> None:
    a = gateway.replica()
    base = ApiRoute("a", "/a", (a.address,))
    gateway.route(base)
    master, workers = gateway.nginx.pid(), gateway.workers()
    with KeepAliveLoad(f"{gateway.nginx.url}/a", b"[1]") as load:
        for index in range(20):  # APIs deployed and deleted, a splitter added and removed
            extra = ApiRoute(f"extra{index}", f"/extra{index}", (a.address,))
            split = SplitRoute(f"s{index}", f"/s{index}", (("a", 50), (extra.api, 50)))
            assert gateway.route(base, extra, splitters=(split,)) is False
            assert gateway.post(f"/s{index}").status_code == 200  # in force at once
            assert gateway.route(base) is False
            assert gateway.post(f"/extra{index}").status_code == 404
            time.sleep(0.05)
    assert load.sent > 100
    assert load.failures == []
    assert (gateway.nginx.pid(), gateway.workers()) == (master, workers)


def test_a_restarted_gateway_routes_from_the_file_at_once(gateway: Gateway) -> None:
    a = gateway.replica()
    gateway.route(ApiRoute("kept", "/kept", (a.address,)))
    digest = gateway.nginx.routes_in_force()
    gateway.nginx.stop()
    assert gateway.nginx.pid() is None
    gateway.nginx.ensure_running()
    assert gateway.nginx.routes_in_force() == digest
    with httpx.Client(base_url=gateway.nginx.url) as fresh:
        assert fresh.post("/kept", content=b"[1]").json()["port"] == a.port
