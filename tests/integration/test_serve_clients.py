"""Real clients against a real ``ferry serve``: tritonclient, boto3-uploaded S3 models,
DataFrame pipelines fed with records, and the SageMaker model.tar.gz layout."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from tests.integration.s3_server import FAKE_AWS_ENV, moto_s3_server

pytestmark = pytest.mark.integration

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def test_tritonclient_works_unchanged_against_ferry_serve(
    start_server: Any, iris_model_path: Path, iris_model: Any
) -> None:
    import tritonclient.http as triton

    server = start_server(str(iris_model_path), "--workers", "2")
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    metadata = client.get_model_metadata("iris")
    assert metadata["inputs"][0]["shape"] == [-1, 4]
    for binary in (False, True):
        tensor = triton.InferInput("input-0", list(ROWS.shape), "FP32")
        tensor.set_data_from_numpy(ROWS.astype(np.float32), binary_data=binary)
        output = triton.InferRequestedOutput("predict", binary_data=binary)
        result = client.infer("iris", [tensor], outputs=[output])
        expected = iris_model.predict(ROWS.astype(np.float32))
        assert result.as_numpy("predict").tolist() == expected.tolist()
    with pytest.raises(triton.InferenceServerException, match="not served here"):
        client.get_model_metadata("resnet")
    client.close()


def test_a_model_on_s3_is_fetched_once_and_served(
    start_server: Any, iris_model_path: Path, iris_model: Any, tmp_path: Path
) -> None:
    with moto_s3_server() as s3:
        bucket = s3.client()
        bucket.create_bucket(Bucket="models")
        bucket.upload_file(str(iris_model_path), "models", "prod/iris.joblib")
        env = {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": s3.endpoint_url}
        cache = tmp_path / "cache"
        uri = "s3://models/prod/iris.joblib"
        server = start_server(uri, "--cache-dir", str(cache), "--workers", "1", env=env)
        answer = server.client.post("/predict", json=ROWS.tolist()).json()
        assert answer == iris_model.predict(ROWS).tolist()
        assert list(cache.rglob("iris.joblib"))
        server.stop()
    # the endpoint is gone now: a second start must come from the cache
    again = start_server(uri, "--cache-dir", str(cache), "--workers", "1", env=env)
    assert again.client.post("/predict", json=ROWS.tolist()).json() == answer


def test_records_feed_a_dataframe_pipeline(start_server: Any, tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame(
        {
            "size_sqft": [120.0, 900.0, 150.0, 1000.0, 130.0, 950.0],
            "coat": ["short", "long", "short", "long", "short", "long"],
        }
    )
    target = [0, 1, 0, 1, 0, 1]
    pipeline = make_pipeline(
        ColumnTransformer(
            [("num", StandardScaler(), ["size_sqft"]), ("cat", OneHotEncoder(), ["coat"])]
        ),
        LogisticRegression(),
    ).fit(frame, target)
    path = tmp_path / "dogs.joblib"
    joblib.dump(pipeline, path)
    server = start_server(str(path), "--labels", "0=wiener dog,1=german shepherd")
    records = [{"coat": "short", "size_sqft": 110.0}, {"size_sqft": 980.0, "coat": "long"}]
    assert server.client.post("/predict", json=records).json() == ["wiener dog", "german shepherd"]
    missing = server.client.post("/predict", json=[{"size_sqft": 100.0}])
    assert missing.status_code == 400
    assert "coat" in missing.json()["error"]


def test_a_sagemaker_model_tarball_is_unpacked_and_served(
    start_server: Any, iris_model_path: Path, iris_model: Any, tmp_path: Path
) -> None:
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(iris_model_path, arcname="model.joblib")
    server = start_server(str(tarball), "--workers", "1")
    body = io.BytesIO()
    np.save(body, ROWS)
    answer = server.client.post(
        "/invocations",
        content=body.getvalue(),
        headers={"content-type": "application/x-npy", "accept": "application/x-npy"},
    )
    assert answer.status_code == 200
    assert np.load(io.BytesIO(answer.content)).tolist() == iris_model.predict(ROWS).tolist()


CUSTOM_ATTRIBUTES_PREDICTOR = """
from starlette.responses import Response


class PythonPredictor:
    def __init__(self, config):
        pass

    def predict(self, payload, headers):
        seen = headers.get("x-amzn-sagemaker-custom-attributes", "none")
        if payload == "fail":
            return Response("the model refused", status_code=422, media_type="text/plain")
        return Response(
            payload.upper(),
            media_type="text/plain",
            headers={"X-Amzn-SageMaker-Custom-Attributes": f"echo={seen}"},
        )
"""


def _runtime_client(url: str) -> Any:
    import boto3

    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_boto3_invoke_endpoint_works_unchanged_against_ferry_serve(
    start_server: Any, iris_model_path: Path, iris_model: Any
) -> None:
    from botocore.exceptions import ClientError

    server = start_server(str(iris_model_path), "--workers", "2")
    runtime = _runtime_client(server.url)
    csv = "\n".join(",".join(map(str, row)) for row in ROWS.tolist())
    answer = runtime.invoke_endpoint(
        EndpointName="iris", Body=csv, ContentType="text/csv", Accept="application/json"
    )
    assert answer["ContentType"] == "application/json"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert json.loads(answer["Body"].read()) == iris_model.predict(ROWS).tolist()
    as_csv = runtime.invoke_endpoint(
        EndpointName="iris",
        Body=json.dumps(ROWS.tolist()),
        ContentType="application/json",
        Accept="text/csv",
    )
    assert as_csv["Body"].read().decode().split() == [str(c) for c in iris_model.predict(ROWS)]

    with pytest.raises(runtime.exceptions.ModelError) as model_error:
        runtime.invoke_endpoint(
            EndpointName="iris", Body="[[1, 2, 3]]", ContentType="application/json"
        )
    error = model_error.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert "expected 4 features per row, got 3" in error["OriginalMessage"]
    assert "Received client error (400) from primary" in error["Error"]["Message"]

    with pytest.raises(ClientError) as unknown:
        runtime.invoke_endpoint(EndpointName="nope", Body=csv, ContentType="text/csv")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    assert "Endpoint nope not found" in unknown.value.response["Error"]["Message"]


def test_boto3_custom_attributes_reach_a_predictor_and_come_back(
    start_server: Any, tmp_path: Path
) -> None:
    predictor = tmp_path / "echo.py"
    predictor.write_text(CUSTOM_ATTRIBUTES_PREDICTOR)
    server = start_server(f"{predictor}:PythonPredictor")
    runtime = _runtime_client(server.url)
    answer = runtime.invoke_endpoint(
        EndpointName="echo", Body=b"hello", ContentType="text/plain", CustomAttributes="trace=7"
    )
    assert answer["Body"].read() == b"HELLO"
    assert answer["CustomAttributes"] == "echo=trace=7"
    with pytest.raises(runtime.exceptions.ModelError) as refused:
        runtime.invoke_endpoint(EndpointName="echo", Body=b"fail", ContentType="text/plain")
    assert refused.value.response["OriginalStatusCode"] == 422
    assert refused.value.response["OriginalMessage"] == "the model refused"
