"""SageMaker Runtime's ``InvokeEndpoint`` on a ferry server, so boto3 talks to it unchanged.

``sagemaker-runtime``'s ``invoke_endpoint`` sends ``POST /endpoints/{EndpointName}/invocations``
to the SageMaker Runtime service, which passes the body and a few headers to the container's
``/invocations`` and wraps the container's answer. Serving that route lets code written for
a SageMaker endpoint run against ``ferry serve`` (or the local cluster's gateway) by setting
``endpoint_url``:

- the answer is ``/invocations``' answer, with ``x-Amzn-Invoked-Production-Variant`` (and the
  container's ``X-Amzn-SageMaker-Custom-Attributes``, if it set one);
- an error of the model or its input (a 4xx or 5xx of ``/invocations``) becomes SageMaker's
  ``ModelError``: HTTP 424 with ``OriginalStatusCode`` and ``OriginalMessage``, which boto3
  raises as ``client.exceptions.ModelError``;
- an endpoint name that is not the served model's is a ``ValidationError`` (400), a model
  still loading is ``ModelNotReadyException`` (429), as the service answers them.

Request signatures are not checked: the server trusts its network, as ``/invocations`` does.
"""

from __future__ import annotations

from typing import Any

import orjson

from ferry.errors import FerryError, ModelNotReady, status_for
from ferry.serving.protocols.asgi import ASGIApp, Message, Receive, Scope, Send
from ferry.serving.protocols.base import Inference

__all__ = ["PATH_PREFIX", "VARIANT", "RuntimeEndpoint", "endpoint_name"]

PATH_PREFIX = "/endpoints/"
VARIANT = "AllTraffic"
"""The production variant name SageMaker gives a single-variant endpoint's answers."""

_SUFFIX = "/invocations"
_PASSED_HEADERS = (b"content-type", b"x-amzn-sagemaker-custom-attributes")


def endpoint_name(path: str) -> str | None:
    """``NAME`` of ``/endpoints/NAME/invocations``, or None for any other path."""
    if not (path.startswith(PATH_PREFIX) and path.endswith(_SUFFIX)):
        return None
    name = path[len(PATH_PREFIX) : -len(_SUFFIX)]
    return name if name and "/" not in name else None


class RuntimeEndpoint:
    """``POST /endpoints/{name}/invocations``: ``invocations`` answers, wrapped as SageMaker."""

    __slots__ = ("_inference", "_invocations")

    def __init__(self, inference: Inference, invocations: ASGIApp) -> None:
        self._inference = inference
        self._invocations = invocations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = endpoint_name(scope["path"]) or ""
        served = self._inference.info.name
        if name != served:
            message = f"Endpoint {name} not found; this server serves the endpoint {served}"
            await _service_error(send, 400, "ValidationError", message)
            return
        answer = _Captured()
        try:
            await self._invocations(scope, receive, answer.send)
        except ModelNotReady as error:
            await _service_error(send, 429, "ModelNotReadyException", str(error))
            return
        except FerryError as error:
            body = orjson.dumps({"error": str(error), "code": error.code})
            await _model_error(send, status_for(error), body)
            return
        if answer.status >= 400:
            await _model_error(send, answer.status, answer.body)
            return
        headers = [(k, v) for k, v in answer.headers if k.lower() in _PASSED_HEADERS]
        headers.append((b"x-amzn-invoked-production-variant", VARIANT.encode()))
        await _respond(send, answer.status, headers, answer.body)


class _Captured:
    """The container's answer, held back so it can be wrapped."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            self.chunks.append(bytes(message.get("body", b"")))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


async def _model_error(send: Send, status: int, original: bytes) -> None:
    text = original.decode("utf-8", errors="replace")
    kind = "client" if status < 500 else "server"
    body: dict[str, Any] = {
        "Message": f'Received {kind} error ({status}) from primary with message "{text}".',
        "OriginalStatusCode": status,
        "OriginalMessage": text,
    }
    await _respond(send, 424, [(b"x-amzn-errortype", b"ModelError:"), _JSON], orjson.dumps(body))


async def _service_error(send: Send, status: int, kind: str, message: str) -> None:
    body = orjson.dumps({"message": message})
    await _respond(send, status, [(b"x-amzn-errortype", f"{kind}:".encode()), _JSON], body)


_JSON = (b"content-type", b"application/json")


Headers = list[tuple[bytes, bytes]]


async def _respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
