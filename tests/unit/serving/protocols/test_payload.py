"""Payload models (Python predictors): multipart forms, empty bodies, what reaches predict."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ferry.types import PayloadRequest

Clients = Callable[[str, str], httpx.AsyncClient]


async def test_multipart_form_reaches_the_predictor_as_form_data(client_for: Clients) -> None:
    response = await client_for("predict", "payload").post(
        "/predict", data={"name": "ferry"}, files={"image": ("cat.png", b"\x89PNG", "image/png")}
    )
    assert response.status_code == 200
    assert response.json()["type"] == "FormData"
    assert response.json()["payload"] == {"name": "ferry", "image": "file:cat.png"}


async def test_query_params_and_headers_reach_the_predictor(
    client_for: Clients, models: dict
) -> None:
    await client_for("predict", "payload").post(
        "/predict?k=v", json={"a": 1}, headers={"X-Trace": "abc"}
    )
    request: PayloadRequest = models["payload"].seen[0]
    assert request.payload == {"a": 1}
    assert request.query_params == {"k": "v"}
    assert request.headers["x-trace"] == request.headers["X-Trace"] == "abc"


async def test_empty_body_without_content_type_is_none(client_for: Clients) -> None:
    response = await client_for("predict", "payload").post("/predict")
    assert response.json()["type"] == "NoneType"


async def test_json_suffix_types_are_json(client_for: Clients) -> None:
    response = await client_for("predict", "payload").post(
        "/predict", content=b'{"a": 1}', headers={"content-type": "application/vnd.ferry+json"}
    )
    assert response.json()["payload"] == {"a": 1}


async def test_row_model_on_predict_only_allows_post(client_for: Clients) -> None:
    response = await client_for("predict", "iris").get("/predict")
    assert response.status_code == 405


def test_answers_encode_as_cortex_did() -> None:
    import numpy as np

    from ferry.serving.protocols.payload import payload_response

    # dicts keyed by class index, as json.dumps writes them
    assert (
        payload_response({0: "setosa", 1.5: np.float32(0.25)}).body == b'{"0":"setosa","1.5":0.25}'
    )
    assert payload_response(np.int64(2)).body == b"2"
    assert payload_response("setosa").media_type == "text/plain"
    assert payload_response(b"\x00").media_type == "application/octet-stream"


def test_headers_are_looked_up_in_any_case_and_stay_a_dict() -> None:
    import orjson

    from ferry.serving.protocols.payload import RequestHeaders

    headers = RequestHeaders({"content-type": "application/json", "x-tenant": "acme"})
    assert headers["Content-Type"] == "application/json"
    assert headers.get("X-Tenant") == "acme"
    assert headers.get("X-Missing", "none") == "none"
    assert "X-TENANT" in headers
    assert orjson.loads(orjson.dumps(headers)) == {
        "content-type": "application/json",
        "x-tenant": "acme",
    }
