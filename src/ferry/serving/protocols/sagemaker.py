"""The SageMaker bring-your-own-container contract: ``GET /ping`` and ``POST /invocations``.

Content-Type picks the decoder (JSON, CSV, npy/npz) and Accept the encoder (JSON, CSV,
npy); ``default_accept`` answers requests without Accept, like the inference toolkit's
SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry.serving.protocols.asgi import RawEndpoint, Receive, Scope, header, request_for
from ferry.serving.protocols.base import Inference, require_ready
from ferry.serving.protocols.envelope import json_answer, rows_from_json_body
from ferry.serving.protocols.formats import (
    array_from_numpy_bytes,
    csv_bytes,
    npy_bytes,
    rows_from_csv,
)
from ferry.serving.protocols.media import (
    CSV,
    JSON,
    NPY,
    NPZ,
    is_json,
    media_type,
    negotiate,
    unsupported,
)
from ferry.serving.protocols.payload import answer_payload
from ferry.serving.protocols.rows import rows_from_array
from ferry.types import InputKind, Prediction, Rows, Signature

__all__ = ["invocations_app", "routes"]

_CONTENT_TYPES = (JSON, CSV, NPY, NPZ)
_ACCEPT_TYPES = (JSON, CSV, NPY)


def routes(inference: Inference, default_accept: str = JSON) -> list[BaseRoute]:
    """``GET /ping`` and ``POST /invocations`` serving ``inference``."""
    default = media_type(default_accept)
    if default not in _ACCEPT_TYPES:
        raise ValueError(f"default_accept must be one of {', '.join(_ACCEPT_TYPES)}")

    async def ping(request: Request) -> Response:
        # SageMaker only reads the status; an empty body is what its samples return.
        return Response(status_code=200 if inference.is_ready() else 503)

    return [
        Route("/ping", ping, methods=["GET"]),
        Route("/invocations", invocations_app(inference, default_accept), methods=["POST"]),
    ]


def invocations_app(inference: Inference, default_accept: str = JSON) -> RawEndpoint:
    """The ASGI app of ``POST /invocations`` (also dispatched directly by the server)."""
    default = media_type(default_accept)

    async def invocations(body: bytes, scope: Scope, _: Receive) -> tuple[bytes, str] | Response:
        require_ready(inference)
        media = media_type(header(scope, b"content-type"))
        signature = inference.info.signature
        if signature.input_kind is InputKind.PAYLOAD:
            return await answer_payload(inference, request_for(scope, body), body, media)
        accept = negotiate(header(scope, b"accept"), _ACCEPT_TYPES, default)
        rows, answer_key = _decode(body, media, signature)
        prediction = await inference.predict_rows(rows)
        return _encode(prediction, accept, answer_key)

    return RawEndpoint(invocations)


def _decode(body: bytes, media: str, signature: Signature) -> tuple[Rows, str | None]:
    if not media or is_json(media):
        return rows_from_json_body(body, signature)
    if media == CSV:
        return rows_from_csv(body, signature), None
    if media in (NPY, NPZ):
        return rows_from_array(array_from_numpy_bytes(body), signature), None
    raise unsupported(media, _CONTENT_TYPES)


def _encode(prediction: Prediction, accept: str, answer_key: str | None) -> tuple[bytes, str]:
    if accept == CSV:
        return csv_bytes(prediction.values), CSV
    if accept == NPY:
        return npy_bytes(prediction.values), NPY
    return json_answer(prediction, answer_key), JSON
