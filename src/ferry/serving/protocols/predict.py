"""ferry's own ``POST /predict``: JSON (or CSV) rows in, JSON predictions out.

Payload models (Python predictors) get the body decoded by content type and answer as
they like, exactly as under Cortex.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry.serving.protocols.base import Inference
from ferry.serving.protocols.envelope import json_answer, rows_from_json_body
from ferry.serving.protocols.formats import rows_from_csv
from ferry.serving.protocols.media import CSV, FORM, JSON, is_json, media_type, unsupported
from ferry.serving.protocols.payload import answer_payload
from ferry.types import InputKind

__all__ = ["routes"]

_ROW_TYPES = (JSON, CSV)


def routes(inference: Inference, endpoint: str = "/predict") -> list[BaseRoute]:
    """The ``POST {endpoint}`` route serving ``inference``."""

    async def predict(request: Request) -> Response:
        body = await request.body()
        media = media_type(request.headers.get("content-type"))
        signature = inference.info.signature
        if signature.input_kind is InputKind.PAYLOAD:
            return await answer_payload(inference, request, body, media)
        if not media or is_json(media):
            rows, answer_key = rows_from_json_body(body, signature)
        elif media == CSV:
            rows, answer_key = rows_from_csv(body, signature), None
        elif media == FORM and _is_json(body):
            # `curl -d '[[...]]'` labels JSON as a form; take it as the JSON it is.
            rows, answer_key = rows_from_json_body(body, signature)
        else:
            raise unsupported(media, _ROW_TYPES)
        prediction = await inference.predict_rows(rows)
        return Response(json_answer(prediction, answer_key), media_type=JSON)

    return [Route(endpoint, predict, methods=["POST"])]


def _is_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True
