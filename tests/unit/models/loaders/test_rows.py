"""Checking and ordering incoming rows before a framework sees them."""

from __future__ import annotations

import numpy as np
import pytest

from ferry.errors import BadRequest
from ferry.models.loaders.rows import as_dtype, data_frame, feature_matrix
from ferry.types import Rows


def test_wrong_width_is_a_bad_request_naming_both_widths() -> None:
    with pytest.raises(BadRequest, match=r"^expected 4 features per row, got 3$"):
        feature_matrix(Rows(np.zeros((2, 3))), 4, None)


def test_width_comes_from_feature_names_when_the_count_is_unknown() -> None:
    with pytest.raises(BadRequest, match="expected 2 features per row, got 3"):
        feature_matrix(Rows(np.zeros((1, 3))), None, ("a", "b"))


def test_records_are_reordered_by_name() -> None:
    rows = Rows(np.array([[2.0, 1.0]]), columns=("b", "a"))
    assert feature_matrix(rows, 2, ("a", "b")).tolist() == [[1.0, 2.0]]


def test_rows_without_names_are_taken_in_order() -> None:
    rows = Rows(np.array([[2.0, 1.0]]))
    assert feature_matrix(rows, 2, ("a", "b")).tolist() == [[2.0, 1.0]]


def test_missing_and_unknown_features_are_named() -> None:
    with pytest.raises(BadRequest, match="missing features: b"):
        feature_matrix(Rows(np.zeros((1, 2)), columns=("a", "c")), 2, ("a", "b"))
    with pytest.raises(BadRequest, match="unknown features: c; expected: a, b"):
        feature_matrix(Rows(np.zeros((1, 3)), columns=("a", "b", "c")), 2, ("a", "b"))


def test_a_one_dimensional_table_is_refused() -> None:
    with pytest.raises(BadRequest, match="2-D"):
        feature_matrix(Rows(np.zeros(3)), None, None)


def test_cells_that_are_not_numbers_are_a_bad_request() -> None:
    values = np.array([[1.0, "x"]], dtype=object)
    with pytest.raises(BadRequest, match="expected numbers"):
        as_dtype(values, np.dtype(np.float32))


def test_as_dtype_keeps_an_array_that_already_fits() -> None:
    values = np.zeros((2, 2), dtype=np.float32)
    assert as_dtype(values, np.dtype(np.float32)) is values


def test_data_frame_restores_numeric_columns_from_object_cells() -> None:
    values = np.array([[1.5, "red", 3]], dtype=object)
    frame = data_frame(values, ("x", "colour", "n"))
    assert list(frame.columns) == ["x", "colour", "n"]
    assert frame["x"].dtype == np.float64
    assert frame["n"].dtype == np.int64
