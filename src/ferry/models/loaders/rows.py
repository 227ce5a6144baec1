"""Turn incoming ``Rows`` into the table a row model expects, before the framework sees it.

Checks here run before any framework call so that a wrong request gets a precise 400
("expected 4 features per row, got 3") instead of a framework's stack trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ferry.errors import BadRequest
from ferry.types import Rows

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["as_dtype", "data_frame", "feature_matrix", "zeros_row"]


def feature_matrix(
    rows: Rows, n_features: int | None, feature_names: tuple[str, ...] | None
) -> np.ndarray[Any, Any]:
    """``rows.values`` in the model's column order, checked for shape and width.

    Records (``rows.columns`` given) are reordered by name when the model knows its
    feature names; otherwise columns are taken in the order they arrive.
    """
    values = rows.values
    if values.ndim != 2:
        raise BadRequest(f"expected a 2-D table of rows, got shape {list(values.shape)}")
    if feature_names is not None and rows.columns is not None:
        values = _reorder(values, rows.columns, feature_names)
    expected = n_features if n_features is not None else _len_or_none(feature_names)
    if expected is not None and values.shape[1] != expected:
        raise BadRequest(f"expected {expected} features per row, got {values.shape[1]}")
    return values


def as_dtype(values: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """``values`` as a C-contiguous array of ``dtype``; a cell that is no number is a 400."""
    if values.dtype == dtype and values.flags.c_contiguous:
        return values
    try:
        return np.ascontiguousarray(values, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise BadRequest(f"expected numbers: {error}") from error


def data_frame(values: np.ndarray[Any, Any], feature_names: tuple[str, ...]) -> pd.DataFrame:
    """A DataFrame with the model's column names, for models fitted on DataFrames."""
    import pandas as pd

    frame = pd.DataFrame(values, columns=list(feature_names), copy=False)
    if values.dtype == object:
        # Records arrive as object cells; numeric columns must become numeric dtypes again
        # or scalers and trees would see "object" columns they were never fitted on.
        frame = frame.infer_objects()
    return frame


def zeros_row(width: int) -> Rows:
    """One row of zeros: the warm-up input when the model says nothing better."""
    return Rows(np.zeros((1, width), dtype=np.float64))


def _reorder(
    values: np.ndarray[Any, Any], columns: tuple[str, ...], names: tuple[str, ...]
) -> np.ndarray[Any, Any]:
    if columns == names:
        return values
    position = {column: index for index, column in enumerate(columns)}
    missing = [name for name in names if name not in position]
    if missing:
        raise BadRequest(f"missing features: {', '.join(missing)}")
    expected = set(names)
    unknown = [column for column in columns if column not in expected]
    if unknown:
        raise BadRequest(f"unknown features: {', '.join(unknown)}; expected: {', '.join(names)}")
    return values[:, [position[name] for name in names]]


def _len_or_none(names: tuple[str, ...] | None) -> int | None:
    return None if names is None else len(names)
