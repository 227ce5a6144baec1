"""SageMaker /invocations with binary bodies (npy, npz) and the Accept encoders."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from ferry.serving.protocols import sagemaker
from ferry.types import Rows

Clients = Callable[[str, str], httpx.AsyncClient]
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _load(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


async def test_npy_in_npy_out_with_string_labels(client_for: Clients, models: dict) -> None:
    client = client_for("sagemaker", "iris")
    response = await client.post(
        "/invocations",
        content=_npy(ROWS.astype(np.float32)),
        headers={"content-type": "application/x-npy", "accept": "application/x-npy"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-npy"
    labels = _load(response.content)
    assert labels.dtype.kind == "U"
    assert labels.tolist() == ["setosa", "virginica", "versicolor"]
    seen: Rows = models["iris"].seen[0]
    assert seen.values.dtype == np.float32  # the array reaches the model as sent


async def test_npy_one_dimensional_is_one_row(client_for: Clients) -> None:
    response = await client_for("sagemaker", "iris_int").post(
        "/invocations", content=_npy(ROWS[1]), headers={"content-type": "application/x-npy"}
    )
    assert response.json() == [2]


async def test_npy_probabilities_round_trip_as_floats(client_for: Clients) -> None:
    response = await client_for("sagemaker", "iris_proba").post(
        "/invocations",
        content=_npy(ROWS),
        headers={"content-type": "application/x-npy", "accept": "application/x-npy"},
    )
    assert _load(response.content).tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]


async def test_npz_with_one_array(client_for: Clients) -> None:
    out = io.BytesIO()
    np.savez(out, rows=ROWS)
    response = await client_for("sagemaker", "iris").post(
        "/invocations", content=out.getvalue(), headers={"content-type": "application/x-npz"}
    )
    assert response.json() == ["setosa", "virginica", "versicolor"]


async def test_csv_in_npy_out(client_for: Clients) -> None:
    response = await client_for("sagemaker", "iris_int").post(
        "/invocations",
        content=b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n",
        headers={"content-type": "text/csv", "accept": "application/x-npy"},
    )
    labels = _load(response.content)
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 2]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not npy at all", "malformed npy body"),
        (_npy(np.array([{"a": 1}], dtype=object)), "malformed npy body"),
        (_npy(np.ones((2, 3))), "expected 4 features per row, got 3"),
        (_npy(np.array([["a", "b", "c", "d"]])), "expected numbers, got an array of strings"),
    ],
)
async def test_npy_refusals(client_for: Clients, body: bytes, message: str) -> None:
    response = await client_for("sagemaker", "iris").post(
        "/invocations", content=body, headers={"content-type": "application/x-npy"}
    )
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_npz_with_several_arrays_is_refused(client_for: Clients) -> None:
    out = io.BytesIO()
    np.savez(out, a=ROWS, b=ROWS)
    response = await client_for("sagemaker", "iris").post(
        "/invocations", content=out.getvalue(), headers={"content-type": "application/x-npz"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "npz body holds 2 arrays (a, b); expected one"


async def test_invalid_utf8_csv_is_a_bad_request(client_for: Clients) -> None:
    response = await client_for("sagemaker", "iris").post(
        "/invocations", content=b"\xff\xfe1,2", headers={"content-type": "text/csv"}
    )
    assert response.status_code == 400
    assert "not valid UTF-8" in response.json()["error"]


async def test_payload_model_gets_npy_as_an_array(client_for: Clients) -> None:
    response = await client_for("sagemaker", "payload").post(
        "/invocations", content=_npy(np.arange(3)), headers={"content-type": "application/x-npy"}
    )
    assert response.json()["type"] == "ndarray"
    assert response.json()["payload"] == [0, 1, 2]


def test_default_accept_must_be_supported(models: dict) -> None:
    with pytest.raises(ValueError, match="default_accept"):
        sagemaker.routes(models["iris"], default_accept="application/xml")


async def test_default_accept_answers_requests_without_accept(models: dict) -> None:
    from starlette.applications import Starlette

    app = Starlette(routes=sagemaker.routes(models["iris"], default_accept="text/csv"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post("/invocations", json=ROWS[:2].tolist())
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text == "setosa\nvirginica\n"
