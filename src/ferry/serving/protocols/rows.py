"""Decode JSON-ish data and arrays into ``Rows`` checked against the model's ``Signature``.

Every protocol adapter funnels its input through here, so a client meets the same rules
and the same messages whichever protocol it speaks. Accepted shapes: a list of rows, a
single row, a record (a dict of feature name to value) or a list of records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from ferry.errors import BadRequest
from ferry.types import Datatype, Rows, Signature

__all__ = ["check_width", "rows_from_array", "rows_from_columns", "rows_from_json"]

_NUMBER_TYPES: frozenset[type] = frozenset((int, float))
# JSON can only produce these scalars; anything else in a cell is a nested list or dict.
_FRAME_SCALAR_TYPES: frozenset[type] = frozenset((int, float, str, bool, type(None)))
_NUMERIC_KINDS = frozenset("iuf")


def rows_from_json(
    data: Any, signature: Signature, *, may_hold_bools: bool = True, only_numbers: bool = False
) -> Rows:
    """Rows from parsed JSON: a list of rows, one row, one record or a list of records.

    ``may_hold_bools=False`` (the raw body has no ``true``/``false``) allows a fast path
    for numeric rows: numpy would silently read booleans as 0/1. ``only_numbers=True``
    (the raw body has no string and no null either) lets that path skip numpy's type
    inference: numpy would read a string like "1.5" as a number and null as NaN.
    """
    if isinstance(data, dict):
        return _rows_from_records([data], signature)
    if not isinstance(data, list):
        raise BadRequest(
            f"expected a list of rows, a single row, a record or a list of records; "
            f"got {_json_kind(data)}"
        )
    if not data:
        raise BadRequest(f"empty input: expected at least one row{_of_features(signature)}")
    first = data[0]
    if isinstance(first, list):
        if not may_hold_bools and not signature.needs_dataframe:
            fast = _numeric_rows(data, signature, only_numbers=only_numbers)
            if fast is not None:
                return fast
        return _rows_from_lists(data, signature)
    if isinstance(first, dict):
        return _rows_from_records(data, signature)
    # A flat list is one row: the cheapest shape and the most common one on the hot path.
    return _rows_from_lists([data], signature)


def rows_from_array(array: np.ndarray[Any, Any], signature: Signature) -> Rows:
    """Rows from a decoded array (npy, CSV, v2 tensor): 1-D is one row, 2-D is rows."""
    if array.ndim == 1:
        array = array.reshape(1, -1)
    elif array.ndim != 2:
        raise BadRequest(
            f"expected a 1-D row or a 2-D array of rows, got {array.ndim} dimensions "
            f"with shape {list(array.shape)}"
        )
    if array.shape[0] == 0:
        raise BadRequest(f"empty input: expected at least one row{_of_features(signature)}")
    check_width(int(array.shape[1]), signature)
    kind = array.dtype.kind
    if signature.needs_dataframe:
        columns = _frame_columns(int(array.shape[1]), signature)
        return Rows(array.astype(object, copy=False), columns)
    if kind in _NUMERIC_KINDS or (kind == "b" and signature.input_datatype is Datatype.BOOL):
        return Rows(array)
    raise BadRequest(f"expected numbers, got an array of {_dtype_words(array.dtype)}")


def rows_from_columns(columns: Mapping[str, np.ndarray[Any, Any]], signature: Signature) -> Rows:
    """Rows from named 1-D columns of equal length (several v2 inputs, a DataFrame)."""
    names = tuple(columns)
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise BadRequest(f"columns must have the same number of rows, got {sizes}")
    if signature.feature_names is not None:
        _check_names(names, signature.feature_names, "the input", noun="inputs")
        names = signature.feature_names
    if next(iter(lengths.values()), 0) == 0:
        raise BadRequest(f"empty input: expected at least one row{_of_features(signature)}")
    check_width(len(names), signature)
    if signature.needs_dataframe:
        stacked = np.empty((lengths[names[0]], len(names)), dtype=object)
        for index, name in enumerate(names):
            stacked[:, index] = columns[name]
        return Rows(stacked, names)
    parts = [columns[name] for name in names]
    for name, part in zip(names, parts, strict=True):
        if part.dtype.kind not in _NUMERIC_KINDS:
            raise BadRequest(f"column '{name}': expected numbers, got {_dtype_words(part.dtype)}")
    return Rows(np.column_stack(parts), names)


# --- lists of rows ------------------------------------------------------------------------


def _numeric_rows(data: list[Any], signature: Signature, *, only_numbers: bool) -> Rows | None:
    """Rows of plain numbers, converted in one C pass; None sends the caller the long way.

    Without a dtype numpy infers one: strings, nulls and ragged rows come out as another
    kind (or raise), and then the careful path names the offending cell. When the body
    holds only numbers, converting straight to float64 gives the same values.
    """
    try:
        values = np.array(data, dtype=np.float64) if only_numbers else np.array(data)
    except ValueError:
        return None
    if values.ndim != 2 or values.dtype.kind not in "if" or values.shape[1] == 0:
        return None
    check_width(int(values.shape[1]), signature)
    return Rows(values.astype(np.float64, copy=False))


def _rows_from_lists(data: list[Any], signature: Signature) -> Rows:
    try:
        cell_types = set(map(type, chain.from_iterable(data)))
    except TypeError:  # a scalar among the rows
        _uniform_width(data, signature)
        raise
    if signature.needs_dataframe:
        if not cell_types <= _FRAME_SCALAR_TYPES:
            _raise_bad_cell(data, _FRAME_SCALAR_TYPES, "a scalar")
        width = _uniform_width(data, signature)
        return Rows(_object_array(data, width), _frame_columns(width, signature))
    if not cell_types <= _NUMBER_TYPES:
        _raise_bad_cell(data, _NUMBER_TYPES, "a number")
    try:
        values = np.array(data, dtype=np.float64)
    except ValueError:
        _uniform_width(data, signature)  # raises the message naming the ragged row
        raise
    if values.ndim != 2 or values.shape[1] == 0:
        _uniform_width(data, signature)
    check_width(int(values.shape[1]), signature)
    return Rows(values)


def _uniform_width(data: list[Any], signature: Signature) -> int:
    """The common row width; raises naming the first row that differs."""
    expected = signature.n_features if signature.n_features is not None else len(data[0])
    for index, row in enumerate(data):
        if not isinstance(row, list):
            raise BadRequest(f"row {index} is {_json_kind(row)}; expected a list of values")
        if len(row) != expected:
            raise BadRequest(f"row {index} has {len(row)} values, expected {expected}")
    if expected == 0:
        raise BadRequest("rows have no values: expected at least one feature per row")
    return expected


def _raise_bad_cell(data: list[Any], allowed: frozenset[type], wanted: str) -> None:
    for row_index, row in enumerate(data):
        if not isinstance(row, list):
            raise BadRequest(f"row {row_index} is {_json_kind(row)}; expected a list of values")
        for column, value in enumerate(row):
            if type(value) not in allowed:
                raise BadRequest(f"row {row_index}, column {column}: {_cell_error(value, wanted)}")


def _cell_error(value: Any, wanted: str) -> str:
    expected = "numbers" if wanted == "a number" else "scalars"
    if isinstance(value, list | dict):
        return (
            f"{_json_kind(value)} is not {wanted}; the input is nested too deeply "
            f"(expected a list of rows of {expected})"
        )
    if value is None:
        return f"null is not {wanted}; expected {expected} (missing values are not accepted)"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} is not {wanted}; expected {expected}"
    return f"{value!r} is not {wanted}; expected {expected}"


# --- records ------------------------------------------------------------------------------


def _rows_from_records(records: list[Any], signature: Signature) -> Rows:
    first = records[0]
    names = signature.feature_names or tuple(first)
    if not names:
        raise BadRequest("record 0 is empty: expected at least one feature")
    expected = frozenset(names)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise BadRequest(
                f"record {index} is {_json_kind(record)}; expected every item to be a record"
            )
        if record.keys() != expected:
            _check_names(record.keys(), names, f"record {index}")
    check_width(len(names), signature)
    data = [[record[name] for name in names] for record in records]
    if signature.needs_dataframe:
        _check_record_cells(data, names, _FRAME_SCALAR_TYPES, "a scalar")
        return Rows(_object_array(data, len(names)), names)
    _check_record_cells(data, names, _NUMBER_TYPES, "a number")
    return Rows(np.array(data, dtype=np.float64), names)


def _check_names(
    keys: Iterable[str], expected: Sequence[str], where: str, noun: str = "keys"
) -> None:
    got = set(keys)
    listed = ", ".join(expected)
    missing = [name for name in expected if name not in got]
    if missing:
        raise BadRequest(f"{where} is missing feature '{missing[0]}' (expected {noun}: {listed})")
    extra = sorted(got.difference(expected))
    if extra:
        unknown = ", ".join(f"'{name}'" for name in extra)
        features = "feature" if len(extra) == 1 else "features"
        raise BadRequest(f"{where} has unknown {features} {unknown} (expected {noun}: {listed})")


def _check_record_cells(
    data: list[list[Any]], names: Sequence[str], allowed: frozenset[type], wanted: str
) -> None:
    if set(map(type, chain.from_iterable(data))) <= allowed:
        return
    for index, row in enumerate(data):
        for name, value in zip(names, row, strict=True):
            if type(value) not in allowed:
                raise BadRequest(f"record {index}, feature '{name}': {_cell_error(value, wanted)}")


# --- shared checks ------------------------------------------------------------------------


def check_width(width: int, signature: Signature) -> None:
    """Raises ``BadRequest`` unless rows of ``width`` values fit the model."""
    if signature.n_features is not None and width != signature.n_features:
        raise BadRequest(f"expected {signature.n_features} features per row, got {width}")


def _frame_columns(width: int, signature: Signature) -> tuple[str, ...] | None:
    names = signature.feature_names
    return names if names is not None and len(names) == width else None


def _object_array(data: list[list[Any]], width: int) -> np.ndarray[Any, Any]:
    # Filled row by row so that numpy never tries to infer a shape from the cells.
    values = np.empty((len(data), width), dtype=object)
    for index, row in enumerate(data):
        values[index, :] = row
    return values


def _of_features(signature: Signature) -> str:
    return f" of {signature.n_features} features" if signature.n_features is not None else ""


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _dtype_words(dtype: np.dtype[Any]) -> str:
    if dtype.kind == "b":
        return "booleans"
    if dtype.kind in "USO":
        return "strings or objects"
    return f"values of type {dtype}"
