"""boto3's ``invoke_endpoint`` through the local cluster's gateway: real nginx, real
``ferry serve`` replicas, real boto3, every API and TrafficSplitter called by its name."""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry.config import ModelSpec
from ferry.runtime.base import (
    ApiRoute,
    ReplicaSpec,
    ReplicaState,
    RoutingTable,
    SplitRoute,
)
from ferry.runtime.local import LocalBackend

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROW = "5.1,3.5,1.4,0.2"
APIS = ("a", "b", "shadow")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Gateway:
    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.url = backend.gateway_url

    def addresses(self, api: str) -> tuple[str, ...]:
        ready = [s for s in self.backend.observe() if s.api == api and s.state == "ready"]
        return tuple(s.address for s in ready if s.address)

    def route(self, *splitters: SplitRoute, extra: tuple[ApiRoute, ...] = ()) -> None:
        apis = tuple(ApiRoute(api, f"/{api}", self.addresses(api)) for api in APIS)
        self.backend.apply_routes(RoutingTable(apis=(*apis, *extra), splitters=splitters))

    def runtime(self, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(**config),
        )

    def shadow_invocations(self) -> float:
        """The runtime requests the shadow's replica answered, from its own metrics."""
        (address,) = self.addresses("shadow")
        text = httpx.get(f"http://{address}/metrics").text
        return sum(
            float(line.rsplit(None, 1)[1])
            for line in text.splitlines()
            if line.startswith("ferry_requests_total{")
            and 'route="/endpoints/{name}/invocations"' in line
            and 'status="200"' in line
        )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, iris_model_path: Path) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("gateway-runtime")
    backend = LocalBackend(root / "state", gateway_port=free_port())
    uri = str(iris_model_path)
    labels = {"a": {0: "a", 1: "a", 2: "a"}, "b": {0: "b", 1: "b", 2: "b"}, "shadow": {}}
    try:
        for api in APIS:  # served under the API's name, as the control plane starts them
            model = ModelSpec(uri=uri, name=api, labels=labels[api])
            server = {"workers": 1, "graceful_timeout_s": 5}
            backend.start_replica(ReplicaSpec(f"{api}-0", api, "r1", model, server=server))
        deadline = time.monotonic() + 90
        while True:
            states = {s.api: s.state for s in backend.observe()}
            if all(states.get(api) is ReplicaState.READY for api in APIS):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.1)
        yield Gateway(backend)
    finally:
        pids = [s.pid for s in backend.observe() if s.pid]
        backend.shutdown(timeout=10)
        backend.close()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)


def test_an_api_answers_invoke_endpoint_under_its_name(gateway: Gateway) -> None:
    gateway.route()
    runtime = gateway.runtime()
    answer = runtime.invoke_endpoint(
        EndpointName="a", Body=ROW, ContentType="text/csv", Accept="application/json"
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["ContentType"] == "application/json"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert json.loads(answer["Body"].read()) == ["a"]
    as_csv = runtime.invoke_endpoint(
        EndpointName="b", Body=json.dumps([[5.1, 3.5, 1.4, 0.2]] * 2), Accept="text/csv"
    )
    assert as_csv["Body"].read().decode().split() == ["b", "b"]
    assert httpx.post(f"{gateway.url}/a", json=[[5.1, 3.5, 1.4, 0.2]]).json() == ["a"]


def test_a_body_over_the_limit_is_refused_as_sagemaker_does(gateway: Gateway) -> None:
    from botocore.exceptions import ClientError

    gateway.route(SplitRoute("ab", "/ab", (("a", 50), ("b", 50))))
    runtime = gateway.runtime(retries={"total_max_attempts": 1})
    body = b"1" * (6 * 1024 * 1024 + 1)
    for name in ("a", "ab", "nope"):
        with pytest.raises(ClientError) as raised:
            runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="text/csv")
        response = raised.value.response
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert response["Error"] == {
            "Code": "413",
            "Message": "HTTP content length exceeded 6291456 bytes.",
        }


def test_a_model_error_comes_through_the_gateway_as_sagemakers(gateway: Gateway) -> None:
    gateway.route(SplitRoute("ab", "/ab", (("a", 50), ("b", 50))))
    runtime = gateway.runtime()
    for name in ("a", "ab"):
        with pytest.raises(runtime.exceptions.ModelError) as raised:
            runtime.invoke_endpoint(EndpointName=name, Body="5.1,3.5", ContentType="text/csv")
        error = raised.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
        assert error["OriginalStatusCode"] == 400
        assert "expected 4 features per row, got 2" in error["OriginalMessage"]
        assert "Received client error (400) from primary" in error["Error"]["Message"]


def test_a_splitter_splits_by_weight_and_names_the_api_that_answered(gateway: Gateway) -> None:
    split = SplitRoute("ab", "/ab", (("a", 50), ("b", 50)), shadow="shadow", shadow_weight=100)
    gateway.route(split)
    runtime = gateway.runtime()
    before = gateway.shadow_invocations()
    variants: Counter[str] = Counter()
    for _ in range(200):
        answer = runtime.invoke_endpoint(EndpointName="ab", Body=ROW, ContentType="text/csv")
        variant = answer["InvokedProductionVariant"]
        assert json.loads(answer["Body"].read()) == [variant]  # the API that answered
        variants[variant] += 1
    assert set(variants) == {"a", "b"}
    # Binomial(200, 0.5): standard deviation 7.1; 65..135 is over 4.9 of them
    assert 65 <= variants["a"] <= 135, variants
    deadline = time.monotonic() + 10  # every request is copied to the shadow's runtime path
    while gateway.shadow_invocations() - before < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.shadow_invocations() - before == 200


def test_an_unknown_name_is_a_validation_error(gateway: Gateway) -> None:
    from botocore.exceptions import ClientError

    gateway.route(SplitRoute("ab", "/ab", (("a", 50), ("b", 50))))
    runtime = gateway.runtime()
    with pytest.raises(ClientError) as unknown:
        runtime.invoke_endpoint(EndpointName="nope", Body=ROW, ContentType="text/csv")
    response = unknown.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "ValidationError"
    message = response["Error"]["Message"]
    assert message == "Endpoint nope not found; the gateway serves the endpoints: a, ab, b, shadow"


def test_an_api_without_a_ready_replica_is_service_unavailable(gateway: Gateway) -> None:
    ghost = ApiRoute("ghost", "/ghost", ())  # no slot at all
    closed = ApiRoute("closed", "/closed", (f"127.0.0.1:{free_port()}",))  # nothing listens
    gateway.route(extra=(ghost, closed))
    runtime = gateway.runtime(retries={"total_max_attempts": 1})
    for name, message in (
        ("ghost", "api ghost has no ready replica"),
        ("closed", "no replica could take the request (at capacity or unreachable)"),
    ):
        with pytest.raises(runtime.exceptions.ServiceUnavailable) as raised:
            runtime.invoke_endpoint(EndpointName=name, Body=ROW, ContentType="text/csv")
        assert raised.value.response["Error"]["Message"] == message
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


LOADING = """
import time
from pathlib import Path

class PythonPredictor:
    def __init__(self, config):
        gate = Path(config["gate"])
        while not gate.exists():  # loading until the test opens the gate
            time.sleep(0.05)

    def predict(self, payload):
        return ["loaded"]
"""


def test_a_replica_still_loading_is_skipped_like_on_the_endpoint(
    gateway: Gateway, tmp_path: Path
) -> None:
    """A loading replica answers the runtime path with 429 (``ModelNotReadyException``)
    before the model runs; nginx goes on to the next slot, so no call sees it."""
    (tmp_path / "loading.py").write_text(LOADING)
    model = ModelSpec(
        uri=f"{tmp_path / 'loading.py'}:PythonPredictor",
        framework="python",
        name="a",
        config={"gate": str(tmp_path / "gate")},
    )
    server = {"workers": 1, "graceful_timeout_s": 5, "warmup": False}
    gateway.backend.start_replica(ReplicaSpec("a-loading", "a", "r2", model, server=server))
    try:
        deadline = time.monotonic() + 60
        while True:  # listening on its slot, not ready
            (status,) = [s for s in gateway.backend.observe() if s.replica_id == "a-loading"]
            try:
                if status.address and httpx.get(f"http://{status.address}/readyz").status_code:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert status.state is not ReplicaState.READY
        gateway.route()
        runtime = gateway.runtime(retries={"total_max_attempts": 1})
        # nginx tries the loading slot again once its fail_timeout (1 s) has passed, so
        # call until it has (the replica logged a 429) and check every call was answered.
        tried, calls = False, 0
        deadline = time.monotonic() + 30
        while not tried and time.monotonic() < deadline:
            for _ in range(10):
                answer = runtime.invoke_endpoint(EndpointName="a", Body=ROW, ContentType="text/csv")
                assert json.loads(answer["Body"].read()) == ["a"]
                calls += 1
            time.sleep(0.2)  # the replica's access log is flushed on its next tick
            lines = list(gateway.backend.logs("a", tail=1000))
            tried = any("[a-loading]" in line and " 429 " in line for line in lines)
        assert tried, f"the loading replica was never tried in {calls} calls"
    finally:
        (tmp_path / "gate").touch()
        gateway.backend.stop_replica("a-loading", drain=False)
        gateway.backend.wait_stopped(["a-loading"], timeout=10)
