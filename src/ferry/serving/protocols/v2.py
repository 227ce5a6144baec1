"""The Open Inference Protocol ("V2") over HTTP, as KServe, Triton and MLServer speak it.

One model per server: ``{name}`` and ``{version}`` in paths must match ``inference.info``.
Row models take one 2-D input (or one 1-D row), or several column inputs named after the
features (also MLServer's ``parameters.content_type: "pd"``). Payload models receive a dict
of input name to array and answer an array, a list, or a dict of output name to array.
"""

from __future__ import annotations

import uuid
from importlib import metadata
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ferry.errors import BadRequest, ModelError, ModelNotFound
from ferry.serving.protocols.base import Inference, ModelInfo, require_ready
from ferry.serving.protocols.envelope import load_json
from ferry.serving.protocols.media import JSON, OCTET_STREAM
from ferry.serving.protocols.rows import rows_from_array, rows_from_columns
from ferry.serving.protocols.v2_tensors import Tensor, decode_inputs, encode_output, split_body
from ferry.types import (
    InputKind,
    PayloadRequest,
    Rows,
    Signature,
    TensorSpec,
    datatype_of,
)

__all__ = ["routes"]

_HEADER_LENGTH = "inference-header-content-length"


def routes(
    inference: Inference, server_name: str = "ferry", server_version: str | None = None
) -> list[BaseRoute]:
    """The V2 health, metadata and infer routes serving ``inference``."""
    endpoints = _Endpoints(inference, server_name, server_version or _ferry_version())
    model_routes: list[BaseRoute] = []
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        model_routes += [
            Route(prefix, endpoints.model_metadata, methods=["GET"]),
            Route(f"{prefix}/ready", endpoints.model_ready, methods=["GET"]),
            Route(f"{prefix}/infer", endpoints.infer, methods=["POST"]),
        ]
    return [
        Route("/v2", endpoints.server_metadata, methods=["GET"]),
        Route("/v2/health/live", endpoints.live, methods=["GET"]),
        Route("/v2/health/ready", endpoints.ready, methods=["GET"]),
        *model_routes,
    ]


class _Endpoints:
    def __init__(self, inference: Inference, server_name: str, server_version: str) -> None:
        self._inference = inference
        extensions = ["binary_tensor_data"]
        self._server = orjson.dumps(
            {"name": server_name, "version": server_version, "extensions": extensions}
        )

    async def server_metadata(self, request: Request) -> Response:
        return Response(self._server, media_type=JSON)

    async def live(self, request: Request) -> Response:
        # The protocol reads the status only and asks for an empty body.
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200 if self._inference.is_ready() else 503)

    async def model_metadata(self, request: Request) -> Response:
        info = _served(self._inference, request)
        return Response(orjson.dumps(_metadata(info)), media_type=JSON)

    async def model_ready(self, request: Request) -> Response:
        _served(self._inference, request)
        return Response(status_code=200 if self._inference.is_ready() else 503)

    async def infer(self, request: Request) -> Response:
        return await _infer(self._inference, _served(self._inference, request), request)


def _ferry_version() -> str:
    try:
        return metadata.version("ferry")
    except metadata.PackageNotFoundError:
        return "unknown"


def _served(inference: Inference, request: Request) -> ModelInfo:
    info = inference.info
    name = request.path_params["name"]
    version = request.path_params.get("version")
    if name != info.name:
        raise ModelNotFound(f"model '{name}' is not served here (served: {info.name})")
    if version is not None and version != info.version:
        raise ModelNotFound(
            f"model '{name}' version '{version}' is not served here "
            f"(served: {info.name} version {info.version})"
        )
    return info


# --- metadata -----------------------------------------------------------------------------


def _metadata(info: ModelInfo) -> dict[str, Any]:
    signature = info.signature
    return {
        "name": info.name,
        "versions": [info.version],
        "platform": info.platform,
        "inputs": [_spec_json(spec) for spec in _input_specs(signature)],
        "outputs": [_spec_json(spec) for spec in _output_specs(signature)],
    }


def _input_specs(signature: Signature) -> tuple[TensorSpec, ...]:
    if signature.inputs or signature.input_kind is InputKind.PAYLOAD:
        return signature.inputs
    width = signature.n_features if signature.n_features is not None else -1
    return (TensorSpec("input-0", signature.input_datatype, (-1, width)),)


def _output_specs(signature: Signature) -> tuple[TensorSpec, ...]:
    if signature.outputs or signature.input_kind is InputKind.PAYLOAD:
        return signature.outputs
    labels = np.asarray(signature.classes if signature.classes else [0.0])
    return (TensorSpec("predict", datatype_of(labels.dtype), (-1,)),)


def _spec_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype.value, "shape": list(spec.shape)}


# --- infer --------------------------------------------------------------------------------


async def _infer(inference: Inference, info: ModelInfo, request: Request) -> Response:
    require_ready(inference)
    header, binary = split_body(await request.body(), request.headers.get(_HEADER_LENGTH))
    body = load_json(header)
    if not isinstance(body, dict):
        raise BadRequest("infer request must be a JSON object with an 'inputs' list")
    tensors = decode_inputs(body.get("inputs"), binary)
    parameters = _parameters(body)
    binary_default = parameters.get("binary_data_output") is True
    requested = _requested(body, binary_default)
    if info.signature.input_kind is InputKind.PAYLOAD:
        payload = {tensor.name: tensor.array for tensor in tensors}
        request_ = PayloadRequest(payload, dict(request.query_params), dict(request.headers))
        outputs = _payload_outputs(await inference.predict_payload(request_))
    else:
        as_columns = parameters.get("content_type") == "pd"
        rows = _rows(tensors, info.signature, as_columns)
        prediction = await inference.predict_rows(rows)
        outputs = {prediction.name: prediction.values}
    request_id = body.get("id")
    answer = {
        "model_name": info.name,
        "model_version": info.version,
        "id": str(request_id) if request_id is not None else uuid.uuid4().hex,
    }
    return _answer(answer, outputs, requested, binary_default)


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    parameters = body.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object")
    return parameters


def _rows(tensors: list[Tensor], signature: Signature, as_columns: bool) -> Rows:
    if len(tensors) == 1 and not as_columns:
        array = tensors[0].array
        if array.ndim == 1 and signature.n_features == 1:
            array = array.reshape(-1, 1)  # a single-feature model: [N] is N rows
        try:
            return rows_from_array(array, signature)
        except BadRequest as error:
            raise BadRequest(f"input '{tensors[0].name}': {error.message}") from None
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for tensor in tensors:
        array = tensor.array
        if array.ndim == 2 and array.shape[1] == 1:
            array = array.reshape(-1)
        if array.ndim != 1:
            raise BadRequest(
                f"input '{tensor.name}' has shape {list(tensor.array.shape)}; as one of "
                f"several column inputs it must have shape [N] or [N, 1]"
            )
        if tensor.name in columns:
            raise BadRequest(f"input '{tensor.name}' is given twice")
        columns[tensor.name] = array
    return rows_from_columns(columns, signature)


def _payload_outputs(result: Any) -> dict[str, np.ndarray[Any, Any]]:
    if isinstance(result, dict):
        return {str(name): np.asarray(values) for name, values in result.items()}
    if isinstance(result, np.ndarray | list | tuple):
        return {"predict": np.asarray(result)}
    raise ModelError(
        f"predictor returned a {type(result).__name__}; over V2 it must return an array, "
        f"a list, or a dict of output name to array"
    )


def _requested(body: dict[str, Any], binary_default: bool) -> list[tuple[str, bool]] | None:
    """(name, binary) of each requested output; None when the request names none."""
    specs = body.get("outputs")
    if specs is None:
        return None
    if not isinstance(specs, list):
        raise BadRequest("'outputs' must be a list of {name, parameters} objects")
    requested = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequest(f"outputs[{index}] must be an object with a name")
        output_parameters = spec.get("parameters") or {}
        if not isinstance(output_parameters, dict):
            raise BadRequest(f"outputs[{index}].parameters must be an object")
        binary = output_parameters.get("binary_data", binary_default)
        requested.append((spec["name"], binary is True))
    return requested


def _answer(
    answer: dict[str, Any],
    outputs: dict[str, np.ndarray[Any, Any]],
    requested: list[tuple[str, bool]] | None,
    binary_default: bool,
) -> Response:
    chosen = requested or [(name, binary_default) for name in outputs]
    for name, _ in chosen:
        if name not in outputs:
            raise BadRequest(
                f"output '{name}' is not available; available outputs: {', '.join(outputs)}"
            )
    encoded = [encode_output(name, outputs[name], binary) for name, binary in chosen]
    answer["outputs"] = [output for output, _ in encoded]
    header = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not any(binary for _, binary in chosen):
        return Response(header, media_type=JSON)
    return Response(
        header + b"".join(data for _, data in encoded),
        media_type=OCTET_STREAM,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
