"""Neutral request, response and signature types shared by every layer.

Protocol adapters decode bytes into these types and encode them back; the batcher and the
model runner only ever see these types. Nothing here knows about HTTP or a framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Datatype",
    "InputKind",
    "PayloadRequest",
    "Prediction",
    "Rows",
    "Signature",
    "TensorSpec",
    "datatype_of",
    "numpy_dtype_of",
]


class Datatype(StrEnum):
    """Tensor element types of the Open Inference Protocol."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


_NUMPY_OF: dict[Datatype, npt.DTypeLike] = {
    Datatype.BOOL: np.bool_,
    Datatype.UINT8: np.uint8,
    Datatype.UINT16: np.uint16,
    Datatype.UINT32: np.uint32,
    Datatype.UINT64: np.uint64,
    Datatype.INT8: np.int8,
    Datatype.INT16: np.int16,
    Datatype.INT32: np.int32,
    Datatype.INT64: np.int64,
    Datatype.FP16: np.float16,
    Datatype.FP32: np.float32,
    Datatype.FP64: np.float64,
    Datatype.BYTES: np.object_,
}


def numpy_dtype_of(datatype: Datatype) -> np.dtype[Any]:
    """The numpy dtype that holds elements of ``datatype``."""
    return np.dtype(_NUMPY_OF[datatype])


def datatype_of(dtype: np.dtype[Any]) -> Datatype:
    """The protocol datatype for a numpy dtype; strings and objects are BYTES."""
    for datatype, np_type in _NUMPY_OF.items():
        if datatype is not Datatype.BYTES and dtype == np.dtype(np_type):
            return datatype
    return Datatype.BYTES


class InputKind(StrEnum):
    """What a model consumes.

    ``rows``: a 2-D table (one row per example); requests are merged row-wise.
    ``payload``: whatever the client sent, decoded by content type (Python predictors).
    """

    ROWS = "rows"
    PAYLOAD = "payload"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, element type and shape of one input or output; -1 marks a variable dim."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Signature:
    """What a loaded model accepts and returns, as far as it can be known.

    ``n_features`` and ``feature_names`` drive input validation and DataFrame building;
    ``classes`` are the labels a classifier returns (after label mapping).
    """

    input_kind: InputKind = InputKind.ROWS
    n_features: int | None = None
    feature_names: tuple[str, ...] | None = None
    needs_dataframe: bool = False
    input_datatype: Datatype = Datatype.FP64
    classes: tuple[Any, ...] | None = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Rows:
    """A batch of input rows: ``values`` is 2-D (n_rows x n_features).

    ``values`` is numeric for plain feature vectors, or an object array when records carry
    mixed types; ``columns`` names the features when the client sent records.
    """

    values: np.ndarray[Any, Any]
    columns: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True, slots=True)
class Prediction:
    """Model output for a batch of rows: ``values`` has one entry (or row) per input row.

    ``name`` is the output's name (``predict`` or ``predict_proba``); ``columns`` names the
    columns of a 2-D output (class labels for probabilities).
    """

    values: np.ndarray[Any, Any]
    name: str = "predict"
    columns: tuple[Any, ...] | None = None

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def slice(self, start: int, stop: int) -> Prediction:
        """The rows ``start:stop`` of this prediction, sharing memory."""
        return Prediction(self.values[start:stop], self.name, self.columns)


@dataclass(slots=True)
class PayloadRequest:
    """A request for a Python predictor: the decoded body plus query params and headers."""

    payload: Any
    query_params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
