"""Payload models (Python predictors): the body decoded by content type, the answer as is.

The decoding follows the Cortex Python predictor contract: JSON -> object, text -> str,
octet-stream -> bytes, forms -> starlette ``FormData``; ferry adds CSV -> str and
npy/npz -> numpy array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ferry.errors import ModelError, UnsupportedMediaType
from ferry.serving.protocols.base import Inference
from ferry.serving.protocols.envelope import load_json
from ferry.serving.protocols.formats import array_from_numpy_bytes, decode_text
from ferry.serving.protocols.media import (
    CSV,
    FORM,
    JSON,
    MULTIPART,
    NPY,
    NPZ,
    OCTET_STREAM,
    TEXT,
    is_json,
)
from ferry.types import PayloadRequest

__all__ = [
    "PAYLOAD_TYPES",
    "RequestHeaders",
    "answer_payload",
    "decode_payload",
    "payload_request",
    "payload_response",
]

PAYLOAD_TYPES = (JSON, TEXT, OCTET_STREAM, FORM, MULTIPART, CSV, NPY, NPZ)


async def answer_payload(
    inference: Inference, request: Request, body: bytes, media: str
) -> Response:
    """Decode, predict and encode one payload request."""
    payload = await decode_payload(request, body, media)
    try:
        result = await inference.predict_payload(payload_request(request, payload))
    finally:
        if isinstance(payload, FormData):
            # Uploaded files are spooled to temporary files that only close() releases.
            await payload.close()
    return payload_response(result)


async def decode_payload(request: Request, body: bytes, media: str) -> Any:
    """The body as the predictor receives it; an empty body without a type is None."""
    if is_json(media) or (not media and body):
        return load_json(body)
    if not media:
        return None
    if media in (TEXT, CSV):
        return decode_text(body)
    if media == OCTET_STREAM:
        return body
    if media in (FORM, MULTIPART):
        # request.form() re-reads the cached body, so the size limit still applies.
        return await request.form()
    if media in (NPY, NPZ):
        return array_from_numpy_bytes(body)
    raise UnsupportedMediaType(
        f"unsupported Content-Type '{media}'; supported: {', '.join(PAYLOAD_TYPES)}"
    )


def payload_request(request: Request, payload: Any) -> PayloadRequest:
    """The predictor's view of one request."""
    return PayloadRequest(payload, dict(request.query_params), RequestHeaders(request.headers))


class RequestHeaders(dict[str, str]):
    """The request's headers, lowercase, looked up in any case (``headers["Content-Type"]``)
    as Cortex's Starlette ``Headers`` were, and still a dict (JSON-serialisable)."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower() if isinstance(key, str) else key)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower() if isinstance(key, str) else key, default)


def payload_response(result: Any) -> Response:
    """A predictor's answer: a Response as is, str as text, bytes as octets, else JSON."""
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return Response(result, media_type=TEXT)
    if isinstance(result, bytes | bytearray | memoryview):
        return Response(bytes(result), media_type=OCTET_STREAM)
    try:
        content = _dumps(result)
    except TypeError as error:
        raise ModelError(
            f"predictor returned a {type(result).__name__} that is not JSON-serialisable ({error})"
        ) from None
    return Response(content, media_type=JSON)


def _dumps(result: Any) -> bytes:
    try:
        return orjson.dumps(result, default=_jsonable, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        # {0: "setosa"}: int (or float, bool, None) keys become strings, as json.dumps does;
        # tried second because the option costs time on every dict
        options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        return orjson.dumps(result, default=_jsonable, option=options)


def _jsonable(value: Any) -> Any:
    # Called by orjson only for what it cannot write itself: object arrays, odd scalars.
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError
