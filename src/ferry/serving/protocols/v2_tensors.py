"""Tensors of the Open Inference Protocol: JSON and Triton binary data to numpy, and back.

Binary tensor data (Triton's extension): the request's first ``Inference-Header-Content-Length``
bytes are JSON, the rest are raw little-endian tensors in input order, each claimed by an
input's ``parameters.binary_data_size``. BYTES elements are 4-byte little-endian
length-prefixed strings.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ferry.errors import BadRequest
from ferry.types import Datatype, datatype_of, numpy_dtype_of

__all__ = ["Tensor", "decode_inputs", "encode_output", "split_body"]

_DATATYPES = ", ".join(Datatype)
_LENGTH = struct.Struct("<I")
_NUMBER_KINDS = frozenset("biuf")


@dataclass(frozen=True, slots=True)
class Tensor:
    """One decoded input; binary arrays share the request body and are read-only."""

    name: str
    array: np.ndarray[Any, Any]


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part of an infer body and the binary data after it."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequest(
            f"Inference-Header-Content-Length must be an integer, got {header_length!r}"
        ) from None
    if not 0 <= length <= len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes"
        )
    view = memoryview(body)
    return body[:length], view[length:]


def decode_inputs(specs: Any, binary: memoryview) -> list[Tensor]:
    """The request's ``inputs``, checked against their shapes and datatypes."""
    if not isinstance(specs, list) or not specs:
        raise BadRequest("infer request needs a non-empty 'inputs' list")
    tensors, offset = [], 0
    for index, spec in enumerate(specs):
        tensor, offset = _decode_input(spec, index, binary, offset)
        tensors.append(tensor)
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary) - offset} bytes of binary data follow the JSON header "
            f"that no input claims with parameters.binary_data_size"
        )
    return tensors


def _decode_input(spec: Any, index: int, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise BadRequest(f"inputs[{index}] must be an object with name, shape, datatype, data")
    name: str = spec["name"]
    shape = _shape(spec.get("shape"), name)
    datatype = _datatype(spec.get("datatype"), name)
    parameters = spec.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise BadRequest(
                f"input '{name}': binary_data_size {size!r} does not fit the "
                f"{len(binary) - offset} bytes of binary data left"
            )
        array = _from_binary(binary[offset : offset + size], datatype, shape, name)
        return Tensor(name, array), offset + size
    if "data" not in spec:
        raise BadRequest(f"input '{name}' has no 'data' (nor parameters.binary_data_size)")
    return Tensor(name, _from_json(spec["data"], datatype, shape, name)), offset


def _shape(shape: Any, name: str) -> tuple[int, ...]:
    if isinstance(shape, list) and all(type(dim) is int and dim >= 0 for dim in shape):
        return tuple(shape)
    raise BadRequest(
        f"input '{name}': shape must be a list of non-negative integers, got {shape!r}"
    )


def _datatype(datatype: Any, name: str) -> Datatype:
    try:
        return Datatype(datatype)
    except ValueError:
        raise BadRequest(
            f"input '{name}': unsupported datatype {datatype!r}; expected one of {_DATATYPES}"
        ) from None


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def _from_json(data: Any, datatype: Datatype, shape: tuple[int, ...], name: str) -> Any:
    if datatype is Datatype.BYTES:
        array = np.array(data, dtype=object)
        if not all(type(value) is str for value in array.flat):
            raise BadRequest(f"input '{name}': BYTES data must be a list of strings")
    else:
        try:
            array = np.asarray(data)
        except ValueError:
            raise BadRequest(f"input '{name}': data is ragged; expected a row-major list") from None
        if array.dtype.kind not in _NUMBER_KINDS:
            raise BadRequest(f"input '{name}': {datatype} data must be numbers (no nulls)")
    expected = math.prod(shape)
    if array.size != expected:
        raise BadRequest(
            f"input '{name}': shape {_shape_text(shape)} needs {expected} values, got {array.size}"
        )
    return array.astype(numpy_dtype_of(datatype), copy=False).reshape(shape)


def _from_binary(
    chunk: memoryview, datatype: Datatype, shape: tuple[int, ...], name: str
) -> np.ndarray[Any, Any]:
    expected = math.prod(shape)
    if datatype is Datatype.BYTES:
        array = np.array(_unpack_strings(chunk, name), dtype=object)
        if array.size != expected:
            raise BadRequest(
                f"input '{name}': shape {_shape_text(shape)} needs {expected} values, "
                f"got {array.size}"
            )
        return array.reshape(shape)
    dtype = numpy_dtype_of(datatype).newbyteorder("<")
    if len(chunk) != expected * dtype.itemsize:
        raise BadRequest(
            f"input '{name}': shape {_shape_text(shape)} needs {expected * dtype.itemsize} "
            f"bytes of {datatype}, got {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def _unpack_strings(chunk: memoryview, name: str) -> list[str | bytes]:
    values: list[str | bytes] = []
    offset, end = 0, len(chunk)
    while offset < end:
        if offset + 4 > end:
            raise BadRequest(f"input '{name}': truncated BYTES element length")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += 4
        if offset + length > end:
            raise BadRequest(f"input '{name}': BYTES element runs past its binary data")
        raw = bytes(chunk[offset : offset + length])
        offset += length
        try:
            values.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(raw)
    return values


# --- outputs ------------------------------------------------------------------------------


def encode_output(
    name: str, values: np.ndarray[Any, Any], binary: bool
) -> tuple[dict[str, Any], bytes]:
    """The output's JSON object and, when ``binary``, its raw bytes (else b"")."""
    values = _typed(values)
    datatype = datatype_of(values.dtype)
    output: dict[str, Any] = {
        "name": name,
        "datatype": datatype.value,
        "shape": list(values.shape),
    }
    if binary:
        raw = _to_binary(values, datatype)
        output["parameters"] = {"binary_data_size": len(raw)}
        return output, raw
    if datatype is Datatype.BYTES:
        output["data"] = [_text(value) for value in values.reshape(-1).tolist()]
    else:
        output["data"] = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("=")).reshape(
            -1
        )
    return output, b""


def _typed(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # Labels often come back as an object array of ints; the protocol wants INT64 then.
    if values.dtype.kind != "O" or values.size == 0:
        return values
    converted = np.asarray(values.tolist())
    return converted if converted.dtype.kind in _NUMBER_KINDS else values


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)


def _to_binary(values: np.ndarray[Any, Any], datatype: Datatype) -> bytes:
    if datatype is not Datatype.BYTES:
        return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in values.reshape(-1).tolist():
        raw = value if isinstance(value, bytes) else _text(value).encode()
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)
