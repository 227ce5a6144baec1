"""Open Inference Protocol: Triton's binary tensor extension, ids, payload model answers."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from ferry.types import PayloadRequest

Clients = Callable[[str, str], httpx.AsyncClient]
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def _binary_request(header: dict[str, Any], *tensors: bytes) -> tuple[bytes, dict[str, str]]:
    json_part = orjson.dumps(header)
    headers = {"inference-header-content-length": str(len(json_part))}
    return json_part + b"".join(tensors), headers


def _split(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers["inference-header-content-length"])
    return orjson.loads(response.content[:length]), response.content[length:]


def _strings(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(value)) + value for value in values)


async def test_binary_input_and_binary_output(client_for: Clients) -> None:
    raw = ROWS.tobytes()
    header = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
    }
    body, headers = _binary_request(header, raw)
    response = await client_for("v2", "iris_int").post(
        "/v2/models/iris/infer", content=body, headers=headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    answer, tail = _split(response)
    (output,) = answer["outputs"]
    assert output == {
        "name": "predict",
        "datatype": "INT64",
        "shape": [2],
        "parameters": {"binary_data_size": 16},
    }
    assert np.frombuffer(tail, dtype="<i8").tolist() == [0, 2]


async def test_request_level_binary_output_and_bytes_labels(client_for: Clients) -> None:
    body = {
        "id": "b",
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROWS.tolist()}],
    }
    response = await client_for("v2", "iris").post("/v2/models/iris/infer", json=body)
    answer, tail = _split(response)
    assert answer["outputs"][0]["datatype"] == "BYTES"
    assert tail == _strings(b"setosa", b"virginica")
    assert answer["outputs"][0]["parameters"]["binary_data_size"] == len(tail)


async def test_per_output_binary_false_overrides_the_request_default(client_for: Clients) -> None:
    body = {
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0].tolist()}],
        "outputs": [{"name": "predict", "parameters": {"binary_data": False}}],
    }
    response = await client_for("v2", "iris").post("/v2/models/iris/infer", json=body)
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    assert response.json()["outputs"][0]["data"] == ["setosa"]


async def test_binary_bytes_inputs_become_columns(client_for: Clients, models: dict) -> None:
    cities = _strings(b"Oslo", "Tromsø".encode())
    rooms = np.array([3, 4], dtype="<i8").tobytes()
    header = {
        "inputs": [
            {
                "name": "city",
                "shape": [2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(cities)},
            },
            {
                "name": "rooms",
                "shape": [2, 1],
                "datatype": "INT64",
                "parameters": {"binary_data_size": len(rooms)},
            },
        ]
    }
    body, headers = _binary_request(header, cities, rooms)
    response = await client_for("v2", "frame").post(
        "/v2/models/houses/infer", content=body, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == ["Oslo/3", "Tromsø/4"]
    assert models["frame"].seen[0].columns == ("city", "rooms")


async def test_generated_id_when_the_request_has_none(client_for: Clients) -> None:
    body = {"inputs": [{"name": "x", "shape": [4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
    response = await client_for("v2", "iris").post("/v2/models/iris/infer", json=body)
    request_id = response.json()["id"]
    assert len(request_id) == 32
    int(request_id, 16)


def _fp32_input(size: int) -> dict[str, Any]:
    return {
        "name": "input-0",
        "shape": [2, 4],
        "datatype": "FP32",
        "parameters": {"binary_data_size": size},
    }


@pytest.mark.parametrize(
    ("header", "tail", "length", "message"),
    [
        ({"inputs": [_fp32_input(32)]}, ROWS.tobytes(), "abc", "must be an integer, got 'abc'"),
        ({"inputs": [_fp32_input(32)]}, ROWS.tobytes(), "100000", "the body has"),
        ({"inputs": [_fp32_input(64)]}, ROWS.tobytes(), None, "does not fit the 32 bytes"),
        (
            {"inputs": [_fp32_input(28)]},
            ROWS.tobytes()[:28],
            None,
            "shape [2,4] needs 32 bytes of FP32, got 28",
        ),
        ({"inputs": [_fp32_input(32)]}, ROWS.tobytes() + b"xx", None, "2 bytes of binary data"),
        (
            {
                "inputs": [
                    {
                        "name": "s",
                        "shape": [1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 6},
                    }
                ]
            },
            struct.pack("<I", 9) + b"ab",
            None,
            "BYTES element runs past",
        ),
        (
            {"inputs": [{"name": "i", "shape": [2, 4], "datatype": "FP32"}]},
            b"",
            None,
            "input 'i' has no 'data'",
        ),
        ({"inputs": [{"shape": [1]}]}, b"", None, "inputs[0] must be an object"),
        (
            {"inputs": [{"name": "i", "shape": [-1, 4], "datatype": "FP32", "data": []}]},
            b"",
            None,
            "shape must be a list of non-negative integers",
        ),
        ([1, 2], b"", None, "must be a JSON object"),
        (
            {
                "inputs": [{"name": "i", "shape": [2], "datatype": "FP32", "data": [1, 2]}],
                "outputs": "predict",
            },
            b"",
            None,
            "'outputs' must be a list",
        ),
        (
            {
                "inputs": [{"name": "i", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
                "parameters": [],
            },
            b"",
            None,
            "'parameters' must be an object",
        ),
        (
            {
                "inputs": [
                    {"name": "i", "shape": [1], "datatype": "FP32", "data": [1]},
                    {"name": "i", "shape": [1], "datatype": "FP32", "data": [1]},
                ]
            },
            b"",
            None,
            "input 'i' is given twice",
        ),
        (
            {
                "inputs": [
                    {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
                    {"name": "b", "shape": [1], "datatype": "FP32", "data": [1]},
                ]
            },
            b"",
            None,
            "input 'a' has shape [1, 2]; as one of several column inputs",
        ),
        (
            {"inputs": [{"name": "i", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3]]}]},
            b"",
            None,
            "data is ragged",
        ),
    ],
)
async def test_infer_refusals(
    client_for: Clients, header: Any, tail: bytes, length: str | None, message: str
) -> None:
    json_part = orjson.dumps(header)
    headers = {"inference-header-content-length": length or str(len(json_part))}
    response = await client_for("v2", "iris").post(
        "/v2/models/iris/infer", content=json_part + tail, headers=headers
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


async def test_payload_model_answering_a_scalar_is_a_model_error(
    client_for: Clients, models: dict
) -> None:
    models["payload"].payload_fn = lambda request: 42
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}]}
    response = await client_for("v2", "payload").post("/v2/models/echo/infer", json=body)
    assert response.status_code == 500
    assert "over V2 it must return an array" in response.json()["error"]


async def test_payload_model_answering_a_list_is_one_predict_output(
    client_for: Clients, models: dict
) -> None:
    def answer(request: PayloadRequest) -> list[float]:
        return [float(request.payload["x"].sum())]

    models["payload"].payload_fn = answer
    body = {"inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]}
    response = await client_for("v2", "payload").post("/v2/models/echo/infer", json=body)
    assert response.json()["outputs"] == [
        {"name": "predict", "datatype": "FP64", "shape": [1], "data": [6.0]}
    ]


async def test_object_label_arrays_of_ints_are_int64(client_for: Clients, models: dict) -> None:
    from ferry.types import Prediction

    models["iris"].rows_fn = lambda rows: Prediction(np.array([1, 2], dtype=object))
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROWS.tolist()}]}
    response = await client_for("v2", "iris").post("/v2/models/iris/infer", json=body)
    assert response.json()["outputs"][0]["datatype"] == "INT64"
