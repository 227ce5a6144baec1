"""Liveness and readiness: live while the process answers, ready once the model can serve."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry.serving.protocols.base import Inference

__all__ = ["routes"]


def routes(inference: Inference, failure: object) -> list[BaseRoute]:
    """``/healthz`` (live) and ``/readyz`` (ready after load and warm-up).

    ``failure`` is a zero-argument callable giving the load error, if loading failed.
    """

    async def healthz(_: Request) -> Response:
        return Response(b'{"status":"live"}', media_type="application/json")

    async def readyz(_: Request) -> Response:
        info = inference.info
        if inference.is_ready():
            body = {"status": "ready", "model": info.name, "version": info.version}
            return Response(orjson.dumps(body), media_type="application/json")
        error = failure() if callable(failure) else None
        body = {"status": "failed" if error else "loading", "model": info.name}
        if error:
            body["error"] = str(error)
        return Response(
            orjson.dumps(body),
            status_code=503,
            media_type="application/json",
            headers={"retry-after": "1"},
        )

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
    ]
