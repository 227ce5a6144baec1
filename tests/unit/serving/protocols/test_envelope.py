"""JSON bodies of row models: envelopes, and booleans refused whatever the body looks like."""

from __future__ import annotations

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
