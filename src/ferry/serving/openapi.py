"""The OpenAPI document of a running server, and a self-contained docs page.

The page embeds no third-party assets, so it works on machines without internet access.
"""

from __future__ import annotations

import html
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ferry.serving.protocols.base import Inference
from ferry.types import InputKind

__all__ = ["openapi_document", "routes"]

_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {"type": "string"},
                    "code": {"type": "string"},
                    "request_id": {"type": "string"},
                },
                "required": ["error"],
            }
        }
    },
}


def _example_row(n_features: int | None) -> list[float]:
    return [0.0] * (n_features or 4)


def _operation(summary: str, body: dict[str, Any] | None, ok: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": ok},
            "400": _ERROR,
            "413": _ERROR,
            "415": _ERROR,
            "503": _ERROR,
            "504": _ERROR,
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    return operation


def _predict_body(inference: Inference) -> dict[str, Any]:
    signature = inference.info.signature
    if signature.input_kind is InputKind.PAYLOAD:
        return {
            "application/json": {"schema": {}},
            "text/plain": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }
    row = _example_row(signature.n_features)
    rows_schema = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    return {
        "application/json": {
            "schema": {
                "oneOf": [
                    rows_schema,
                    {"type": "object", "properties": {"instances": rows_schema}},
                    {"type": "object", "properties": {"inputs": rows_schema}},
                ]
            },
            "example": [row],
        }
    }


def openapi_document(inference: Inference, endpoint: str, version: str) -> dict[str, Any]:
    """OpenAPI 3.1 description of every route this server answers."""
    info = inference.info
    name = info.name
    v2 = f"/v2/models/{name}"
    paths: dict[str, Any] = {
        endpoint: {"post": _operation("Predict", _predict_body(inference), "predictions")},
        "/invocations": {
            "post": _operation("SageMaker invocations", _invocation_body(), "predictions")
        },
        "/ping": {"get": {"summary": "SageMaker health: 200 when ready", "responses": {}}},
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "live"}}}},
        "/readyz": {"get": {"summary": "Readiness", "responses": {"200": {"description": "ok"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {}}},
        "/v2": {"get": {"summary": "Open Inference Protocol server metadata", "responses": {}}},
        "/v2/health/live": {"get": {"summary": "OIP liveness", "responses": {}}},
        "/v2/health/ready": {"get": {"summary": "OIP readiness", "responses": {}}},
        v2: {"get": {"summary": "OIP model metadata", "responses": {}}},
        f"{v2}/ready": {"get": {"summary": "OIP model readiness", "responses": {}}},
        f"{v2}/infer": {"post": _operation("OIP inference", _v2_body(inference), "outputs")},
    }
    for item in paths.values():
        for operation in item.values():
            operation.setdefault("responses", {}).setdefault("200", {"description": "ok"})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"ferry: {name}",
            "version": version,
            "description": f"{info.platform} model {name!r} version {info.version}",
        },
        "paths": paths,
    }


def _invocation_body() -> dict[str, Any]:
    return {
        "text/csv": {"schema": {"type": "string"}},
        "application/json": {"schema": {}},
        "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
    }


def _v2_body(inference: Inference) -> dict[str, Any]:
    n = inference.info.signature.n_features or 4
    example = {
        "inputs": [{"name": "input-0", "shape": [1, n], "datatype": "FP64", "data": [0.0] * n}]
    }
    return {"application/json": {"schema": {"type": "object"}, "example": example}}


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
code,pre{{background:#f4f4f4;padding:.2rem .4rem}}
td{{padding:.3rem .8rem;border-bottom:1px solid #ddd}}
</style></head><body><h1>{title}</h1><p>{description}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a></p>
<table><tr><th>method</th><th>path</th><th>what</th></tr>{rows}</table>
<h2>Try it</h2><pre>{example}</pre></body></html>"""


def _page(document: dict[str, Any], endpoint: str) -> str:
    rows = "".join(
        f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
        f"<td>{html.escape(op.get('summary', ''))}</td></tr>"
        for path, item in document["paths"].items()
        for method, op in item.items()
    )
    body = document["paths"][endpoint]["post"]["requestBody"]["content"]
    sample = body.get("application/json", {}).get("example", {"your": "payload"})
    example = (
        f"curl -s -X POST http://HOST:PORT{endpoint} -H 'Content-Type: application/json' "
        f"-d '{orjson.dumps(sample).decode()}'"
    )
    return _PAGE.format(
        title=html.escape(document["info"]["title"]),
        description=html.escape(document["info"]["description"]),
        rows=rows,
        example=html.escape(example),
    )


def routes(inference: Inference, endpoint: str, version: str) -> list[BaseRoute]:
    """``/openapi.json`` and ``/docs``."""

    async def openapi(_: Request) -> Response:
        document = openapi_document(inference, endpoint, version)
        return Response(orjson.dumps(document), media_type="application/json")

    async def docs(_: Request) -> Response:
        return HTMLResponse(_page(openapi_document(inference, endpoint, version), endpoint))

    return [Route("/openapi.json", openapi), Route("/docs", docs)]
