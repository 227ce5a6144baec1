"""JSON bodies of row models: envelopes, and booleans refused whatever the body looks like."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from ferry.errors import BadRequest
from ferry.serving.protocols.envelope import rows_from_json_body
from ferry.types import Signature

WIDTH = Signature(n_features=4)
NAMED = Signature(n_features=4, feature_names=("a", "b", "c", "d"))


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b"[[1, 2.5, -3e-2, 4E+1], [5, 6, 7, 8]]", None),
        (b'{"instances": [[1, 2.5, -3e-2, 4E+1], [5, 6, 7, 8]]}', "predictions"),
        (b'{"inputs": [[1, 2.5, -3e-2, 4E+1], [5, 6, 7, 8]]}', "outputs"),
    ],
)
def test_numbers_in_every_envelope(body: bytes, key: str | None) -> None:
    rows, answer_key = rows_from_json_body(body, WIDTH)
    assert answer_key == key
    assert rows.values.tolist() == [[1, 2.5, -0.03, 40], [5, 6, 7, 8]]


@pytest.mark.parametrize(
    "body",
    [
        b"[[1, 2, true, 4]]",
        b"[[1, 2, 3, false]]",
        b'{"instances": [[true, 2, 3, 4]]}',
        b'{"inputs": [[1, 2, 3, 4], [1, false, 3, 4]]}',
        b'[{"a": 1, "b": true, "c": 3, "d": 4}]',
    ],
)
def test_booleans_are_not_numbers(body: bytes) -> None:
    signature = NAMED if body.startswith(b"[{") else WIDTH
    with pytest.raises(BadRequest, match=r"(true|false) is not a number"):
        rows_from_json_body(body, signature)


@pytest.mark.parametrize(
    "body",
    [
        b"[[1, 2.5, -3e-2, 4E+1], [5, 6, 7, 8]]",
        b"[[-0.0, 0, 9007199254740993, -9223372036854775808]]",
        b"[[1e308, -1e-308, 123456789012345678, 0.1]]",
        b"[[1, 2, 3, 4]]",
    ],
)
def test_bodies_of_plain_numbers_convert_exactly_as_with_type_inference(body: bytes) -> None:
    rows, _ = rows_from_json_body(body, WIDTH)
    inferred = np.array(orjson.loads(body)).astype(np.float64)
    assert rows.values.dtype == np.float64
    assert rows.values.tobytes() == inferred.tobytes()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[[1, 2, "3.5", 4]]', "is not a number"),
        (b"[[1, 2, null, 4]]", "is not a number"),
        (b"[[1, 2, 3, 4], [1, 2, 3]]", "row 1 has 3 values, expected 4"),
        (b"[[1, 2, 3, 4], 5]", "row 1 is"),
        (b"[[[1, 2, 3, 4]]]", "nested too deeply"),
    ],
)
def test_strings_nulls_and_ragged_rows_are_still_refused(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        rows_from_json_body(body, WIDTH)
