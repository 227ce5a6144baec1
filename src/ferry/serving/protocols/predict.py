"""ferry's own ``POST /predict``: JSON (or CSV) rows in, JSON predictions out.

Payload models (Python predictors) get the body decoded by content type and answer as
they like, exactly as under Cortex.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry.serving.protocols.asgi import RawEndpoint, Receive, Scope, header, request_for
from ferry.serving.protocols.base import Inference, require_ready
from ferry.serving.protocols.envelope import json_answer, rows_from_json_body
from ferry.serving.protocols.formats import rows_from_csv
from ferry.serving.protocols.media import CSV, FORM, JSON, is_json, media_type, unsupported
from ferry.serving.protocols.payload import answer_payload
from ferry.types import InputKind

__all__ = ["endpoint_app", "routes"]

_ROW_TYPES = (JSON, CSV)


def endpoint_app(inference: Inference) -> RawEndpoint:
    """The ASGI app of ``POST {endpoint}`` (also dispatched directly by the server)."""

    async def predict(body: bytes, scope: Scope, _: Receive) -> tuple[bytes, str] | Response:
        require_ready(inference)
        media = media_type(header(scope, b"content-type"))
        signature = inference.info.signature
        if signature.input_kind is InputKind.PAYLOAD:
            return await answer_payload(inference, request_for(scope, body), body, media)
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
        return json_answer(prediction, answer_key), JSON

    return RawEndpoint(predict)


def routes(inference: Inference, endpoint: str = "/predict") -> list[BaseRoute]:
    """The ``POST {endpoint}`` route serving ``inference``."""
    return [Route(endpoint, endpoint_app(inference), methods=["POST"])]


def _is_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True
