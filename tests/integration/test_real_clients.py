"""The adapters behind a real uvicorn server, spoken to by unmodified clients.

The official ``tritonclient.http`` drives the V2 routes (JSON and binary tensors both
ways); plain HTTP drives the SageMaker routes with CSV and npy round trips. The model is
a real scikit-learn iris classifier.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ferry.errors import FerryError, status_for
from ferry.serving.protocols import sagemaker, v2
from ferry.serving.protocols.base import ModelInfo
from ferry.types import PayloadRequest, Prediction, Rows, Signature

pytestmark = pytest.mark.integration


class SklearnInference:
    """Just enough of the server: the model's ``predict`` on the rows, nothing batched."""

    def __init__(self, model: Any) -> None:
        self.model = model
        classes = tuple(int(label) for label in model.classes_)
        signature = Signature(n_features=4, classes=classes)
        self.info = ModelInfo("iris", "1", "sklearn", signature)

    def is_ready(self) -> bool:
        return True

    def not_ready_message(self) -> str:
        raise AssertionError("always ready")

    async def predict_rows(self, rows: Rows) -> Prediction:
        return Prediction(self.model.predict(rows.values))

    async def predict_payload(self, request: PayloadRequest) -> Any:
        raise AssertionError("not a payload model")


@pytest.fixture(scope="module")
def classifier() -> Any:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    iris = load_iris()
    return DecisionTreeClassifier(random_state=0).fit(iris.data, iris.target)


async def _ferry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FerryError)
    return JSONResponse({"error": exc.message, "code": exc.code}, status_code=status_for(exc))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server_url(classifier: Any) -> Iterator[str]:
    inference = SklearnInference(classifier)
    app = Starlette(
        routes=[*v2.routes(inference), *sagemaker.routes(inference)],
        exception_handlers={FerryError: _ferry_error},
    )
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def test_tritonclient_health_and_metadata(server_url: str) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server_url)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        assert not client.is_model_ready("wine")
        metadata = client.get_model_metadata("iris")
        assert metadata["name"] == "iris"
        assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        assert metadata["outputs"][0]["datatype"] == "INT64"
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    finally:
        client.close()


@pytest.mark.parametrize("binary_input", [False, True])
@pytest.mark.parametrize("binary_output", [False, True, None])
def test_tritonclient_infer(
    server_url: str, classifier: Any, binary_input: bool, binary_output: bool | None
) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server_url)
    try:
        tensor = triton.InferInput("input-0", list(ROWS.shape), "FP32")
        tensor.set_data_from_numpy(ROWS, binary_data=binary_input)
        outputs = None
        if binary_output is not None:  # None: no outputs named, so all come back binary
            outputs = [triton.InferRequestedOutput("predict", binary_data=binary_output)]
        result = client.infer("iris", [tensor], outputs=outputs, request_id="r-1")
        labels = result.as_numpy("predict")
        assert labels is not None
        assert labels.tolist() == classifier.predict(ROWS).tolist()
        assert result.get_response()["id"] == "r-1"
    finally:
        client.close()


def test_tritonclient_sees_protocol_errors(server_url: str) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(server_url)
    try:
        tensor = triton.InferInput("input-0", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
        with pytest.raises(InferenceServerException, match="expected 4 features per row, got 3"):
            client.infer("iris", [tensor])
    finally:
        client.close()


@pytest.mark.parametrize("accept", ["text/csv", "application/x-npy", "application/json"])
def test_sagemaker_csv_round_trip(server_url: str, classifier: Any, accept: str) -> None:
    body = "\n".join(",".join(str(value) for value in row) for row in ROWS.tolist())
    response = httpx.post(
        f"http://{server_url}/invocations",
        content=body,
        headers={"content-type": "text/csv", "accept": accept},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(accept)
    assert _labels(response, accept) == classifier.predict(ROWS).tolist()


@pytest.mark.parametrize("accept", ["text/csv", "application/x-npy"])
def test_sagemaker_npy_round_trip(server_url: str, classifier: Any, accept: str) -> None:
    out = io.BytesIO()
    np.save(out, ROWS)
    response = httpx.post(
        f"http://{server_url}/invocations",
        content=out.getvalue(),
        headers={"content-type": "application/x-npy", "accept": accept},
    )
    assert response.status_code == 200
    assert _labels(response, accept) == classifier.predict(ROWS).tolist()


def test_sagemaker_ping(server_url: str) -> None:
    response = httpx.get(f"http://{server_url}/ping")
    assert response.status_code == 200
    assert response.content == b""


def _labels(response: httpx.Response, accept: str) -> list[Any]:
    if accept == "text/csv":
        return [int(line) for line in response.text.splitlines()]
    if accept == "application/x-npy":
        return list(np.load(io.BytesIO(response.content), allow_pickle=False).tolist())
    return list(response.json())
