"""Decoding JSON-ish data and arrays into Rows: accepted shapes and every refusal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ferry.errors import BadRequest
from ferry.serving.protocols.rows import rows_from_array, rows_from_columns, rows_from_json
from ferry.types import Datatype, Signature

FEATURES = ("a", "b", "c", "d")
NAMED = Signature(n_features=4, feature_names=FEATURES)
WIDTH = Signature(n_features=4)
ANY = Signature()
FRAME = Signature(n_features=2, feature_names=("city", "rooms"), needs_dataframe=True)


def test_list_of_rows_is_a_float64_matrix() -> None:
    rows = rows_from_json([[1, 2, 3, 4], [5.5, 6, 7, 8]], WIDTH)
    assert rows.values.dtype == np.float64
    assert rows.values.tolist() == [[1, 2, 3, 4], [5.5, 6, 7, 8]]
    assert rows.columns is None


def test_flat_list_is_one_row() -> None:
    rows = rows_from_json([1, 2, 3, 4], WIDTH)
    assert rows.values.shape == (1, 4)


def test_records_are_reordered_into_feature_order() -> None:
    rows = rows_from_json(
        [{"d": 4, "c": 3, "b": 2, "a": 1}, {"a": 5, "b": 6, "c": 7, "d": 8}], NAMED
    )
    assert rows.values.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert rows.columns == FEATURES


def test_single_record_without_known_names_keeps_its_key_order() -> None:
    rows = rows_from_json({"x": 1, "y": 2}, ANY)
    assert rows.columns == ("x", "y")
    assert rows.values.tolist() == [[1.0, 2.0]]


def test_dataframe_records_keep_strings_and_nulls() -> None:
    rows = rows_from_json([{"rooms": 3, "city": "Oslo"}, {"city": None, "rooms": 2.5}], FRAME)
    assert rows.columns == ("city", "rooms")
    assert rows.values.dtype == object
    assert rows.values.tolist() == [["Oslo", 3], [None, 2.5]]


def test_dataframe_rows_get_the_feature_names() -> None:
    rows = rows_from_json([["Oslo", 3]], FRAME)
    assert rows.columns == ("city", "rooms")


@pytest.mark.parametrize(
    ("data", "signature", "message"),
    [
        ([], WIDTH, "empty input: expected at least one row of 4 features"),
        ([], ANY, "empty input: expected at least one row"),
        ([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3]], WIDTH, "row 2 has 3 values, expected 4"),
        ([[1, 2], [1, 2, 3]], ANY, "row 1 has 3 values, expected 2"),
        ([[1, 2, 3], [4, 5, 6]], WIDTH, "expected 4 features per row, got 3"),
        ([1, 2, 3], WIDTH, "expected 4 features per row, got 3"),
        ([[1, 2, "abc", 4]], WIDTH, "row 0, column 2: 'abc' is not a number; expected numbers"),
        ([[1, 2, "3", 4]], WIDTH, "row 0, column 2: '3' is not a number"),
        ([1, 2, None, 4], WIDTH, "row 0, column 2: null is not a number"),
        ([[1, 2, True, 4]], WIDTH, "row 0, column 2: true is not a number"),
        ([[False, 2, 3, 4]], WIDTH, "row 0, column 0: false is not a number"),
        ([[[1, 2, 3, 4]]], WIDTH, "nested too deeply"),
        ([1, [2, 3], 4, 5], WIDTH, "row 0, column 1: a list is not a number"),
        ([[1, 2, 3, 4], 5], WIDTH, "row 1 is a number; expected a list of values"),
        ([[1, 2, 3, 4], "abcd"], WIDTH, "row 1 is a string; expected a list of values"),
        ([[]], ANY, "rows have no values"),
        ("rows", WIDTH, "expected a list of rows, a single row, a record or a list of records"),
        (None, WIDTH, "got null"),
        (
            [{"a": 1, "b": 2, "c": 3}],
            NAMED,
            "record 0 is missing feature 'd' (expected keys: a, b, c, d)",
        ),
        (
            [{"a": 1, "b": 2, "c": 3, "d": 4, "z": 0, "y": 0}],
            NAMED,
            "record 0 has unknown features 'y', 'z' (expected keys: a, b, c, d)",
        ),
        ([{"x": 1}, {"x": 1, "y": 2}], ANY, "record 1 has unknown feature 'y' (expected keys: x)"),
        ([{"x": 1}, [1]], ANY, "record 1 is a list; expected every item to be a record"),
        ([{"a": 1, "b": "2", "c": 3, "d": 4}], NAMED, "record 0, feature 'b': '2' is not a number"),
        ([{}], ANY, "record 0 is empty"),
        (
            [{"city": {"name": "Oslo"}, "rooms": 1}],
            FRAME,
            "record 0, feature 'city': an object is not a scalar",
        ),
        ([["Oslo"]], FRAME, "row 0 has 1 values, expected 2"),
    ],
)
def test_refusals_say_what_was_wrong_and_what_was_expected(
    data: Any, signature: Signature, message: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        rows_from_json(data, signature)
    assert message in caught.value.message


def test_large_integers_become_floats() -> None:
    assert rows_from_json([2**70, 1, 2, 3], WIDTH).values[0, 0] == float(2**70)


def test_array_1d_is_one_row_and_2d_is_rows() -> None:
    assert rows_from_array(np.arange(4.0), WIDTH).values.shape == (1, 4)
    assert rows_from_array(np.ones((3, 4), dtype=np.float32), WIDTH).values.dtype == np.float32


@pytest.mark.parametrize(
    ("array", "signature", "message"),
    [
        (np.ones((2, 3)), WIDTH, "expected 4 features per row, got 3"),
        (np.ones((0, 4)), WIDTH, "empty input"),
        (np.ones((1, 2, 4)), WIDTH, "got 3 dimensions with shape [1, 2, 4]"),
        (np.array(5.0), WIDTH, "got 0 dimensions"),
        (np.array([["a", "b", "c", "d"]]), WIDTH, "expected numbers, got an array of strings"),
        (np.ones((1, 4), dtype=bool), WIDTH, "expected numbers, got an array of booleans"),
    ],
)
def test_array_refusals(array: np.ndarray, signature: Signature, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        rows_from_array(array, signature)
    assert message in caught.value.message


def test_booleans_pass_when_the_model_takes_booleans() -> None:
    signature = Signature(n_features=2, input_datatype=Datatype.BOOL)
    assert rows_from_array(np.ones((1, 2), dtype=bool), signature).values.dtype == bool


def test_dataframe_arrays_become_objects_with_feature_names() -> None:
    rows = rows_from_array(np.array([["Oslo", "3"]]), FRAME)
    assert rows.values.dtype == object
    assert rows.columns == ("city", "rooms")


def test_columns_are_stacked_in_feature_order() -> None:
    columns = {
        name: np.array([index, index + 10.0]) for index, name in enumerate(reversed(FEATURES))
    }
    rows = rows_from_columns(columns, NAMED)
    assert rows.columns == FEATURES
    assert rows.values.tolist() == [[3, 2, 1, 0], [13, 12, 11, 10]]


def test_columns_for_a_dataframe_keep_their_types() -> None:
    rows = rows_from_columns(
        {"city": np.array(["Oslo"], dtype=object), "rooms": np.array([3])}, FRAME
    )
    assert rows.values.tolist() == [["Oslo", 3]]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (
            {"a": np.ones(2), "b": np.ones(3)},
            "columns must have the same number of rows, got a=2, b=3",
        ),
        (
            {"a": np.ones(1), "b": np.ones(1), "c": np.ones(1)},
            "missing feature 'd' (expected inputs: a, b, c, d)",
        ),
        ({name: np.ones(0) for name in FEATURES}, "empty input"),
        (
            {**{name: np.ones(1) for name in "abc"}, "d": np.array(["x"])},
            "column 'd': expected numbers",
        ),
    ],
)
def test_column_refusals(columns: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        rows_from_columns(columns, NAMED)
    assert message in caught.value.message
