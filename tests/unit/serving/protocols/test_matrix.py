"""Numeric matrices read straight into arrays: the same values as the general path, or None."""

from __future__ import annotations

import random
import threading

import numpy as np
import orjson
import pytest

from ferry.errors import BadRequest
from ferry.serving.protocols import envelope, matrix
from ferry.serving.protocols.envelope import rows_from_json_body
from ferry.serving.protocols.matrix import numeric_matrix
from ferry.serving.protocols.rows import rows_from_json
from ferry.types import Signature

WIDTH = Signature(n_features=4)
ANY_WIDTH = Signature()


def general(body: bytes, signature: Signature = ANY_WIDTH) -> np.ndarray:
    """What the general path (orjson, then rows_from_json) reads from a body."""
    data = orjson.loads(body)
    if isinstance(data, dict):
        data = data["instances"] if "instances" in data else data["inputs"]
    return rows_from_json(data, signature).values


def big(rows: list[str], width_padding: int = 0) -> bytes:
    """A body of the given row texts, repeated past the size where the shortcut is tried."""
    text = ", ".join(rows)
    body = f"[{text}]".encode()
    while len(body) < 4096:
        text = f"{text}, {', '.join(rows)}"
        body = f"[{text}]".encode()
    return body


NUMBERS = [
    b"[[1, 2.5, -3e-2, 4E+1], [5, 6, 7, 8]]",
    b"[[-0.0, 0, 9007199254740993, -9223372036854775808]]",
    b"[[1e308, -1e-308, 123456789012345678, 0.1]]",
    b"[[18446744073709551615, 4.9e-324, 2.2250738585072014e-308, 1.7976931348623157e308]]",
    b"  [ [1 ,2,\n3,\t4] ,[5,6,7,8]\r\n]  ",
    b"[[0.30000000000000004, 1.0000000000000002, 123.456e-7, 7]]",
    # underflow, exact halfway cases (round to even), a long mantissa, exponent spellings
    b"[[1e-400, 2.4703282292062327e-324, 1.00000000000000011102230246251565404236316680908203125]]",
    b"[[123456789012345678901234567890.5, 1E-5, 1e00005, 0.1e1]]",
]


@pytest.mark.parametrize("body", NUMBERS)
def test_numbers_read_exactly_as_the_general_path(body: bytes) -> None:
    read = numeric_matrix(body)
    assert read is not None
    values, key = read
    assert key is None
    assert values.dtype == np.float64
    assert values.tobytes() == general(body).tobytes()


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_envelopes_name_their_key(key: str) -> None:
    body = b'{"%s": [[1, 2, 3, 4], [5, 6, 7, 8.5]]}' % key.encode()
    read = numeric_matrix(body)
    assert read is not None
    assert read[1] == key
    assert read[0].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8.5]]


def test_random_matrices_in_many_spellings_match_the_general_path() -> None:
    rng = random.Random(20261122)
    spellings = [repr, lambda x: f"{x:.17g}", lambda x: f"{x:e}", lambda x: f"{x:.3E}"]
    for _ in range(300):
        n_rows, width = rng.randint(1, 60), rng.randint(1, 12)
        rows = []
        for _ in range(n_rows):
            cells = []
            for _ in range(width):
                kind = rng.random()
                if kind < 0.2:
                    cells.append(str(rng.randint(-(2**63), 2**63 - 1)))
                elif kind < 0.3:
                    cells.append(str(rng.randint(-1000, 1000)))
                else:
                    x = rng.uniform(-1, 1) * 10 ** rng.randint(-300, 300)
                    cells.append(rng.choice(spellings)(x))
            rows.append("[" + rng.choice([",", ", ", " ,\n"]).join(cells) + "]")
        body = ("[" + ",".join(rows) + "]").encode()
        read = numeric_matrix(body)
        assert read is not None, body[:200]
        assert read[0].tobytes() == general(body).tobytes(), body[:200]


@pytest.mark.parametrize(
    "body",
    [
        b"[[1, 2], [3]]",  # ragged
        b"[[1, 2], [3, 4, 5]]",
        b"[[1, [2]], [3, 4]]",  # nested list
        b"[[1, []], [2, [3, 4]]]",  # nested lists that flatten to a full count
        b"[[1, 2], 3]",  # a number among the rows
        b"[[1, [2, 3]], 4, [5, 6]]",
        b'[[1, "2"], [3, 4]]',
        b"[[1, null], [3, 4]]",
        b"[[1, true], [3, 4]]",
        b"[[1, false], [3, 4]]",
        b"[[1, {}], [3, 4]]",
        b'[[1, 2], {"a": 1, "b": 2}]',  # a record among the rows
        b'[[1, 2], {"a": [1], "b": 3}]',
        b"[[]]",
        b"[[], []]",
        b"[]",
        b"[1, 2, 3]",  # one flat row: the general path's business
        b'[{"a": 1}]',
        b'{"a": 1}',
        b'{"instances": [[1, 2]], "extra": 1}',
        b'{"rows": [[1, 2]]}',
        b'{"instances": [1, 2]}',
        b'{"instances": "[[1, 2]]"}',
        b"[[1, 2], [3, 4]",  # malformed
        b"[[1, 2]] trailing",
        b"[[1, 2,], [3, 4]]",
        b"[[NaN, 1]]",
        b"[[1e400, 1]]",  # beyond a double: the general path words it
        b"[[340282366920938463463374607431768211456, 1]]",  # beyond 64 bits
        b"",
        b"1",
        b'"[[1]]"',
        b"\xef\xbb\xbf[[1, 2], [3, 4]]",  # a byte order mark: orjson refuses it
    ],
)
def test_anything_but_a_plain_matrix_is_left_to_the_general_path(body: bytes) -> None:
    assert numeric_matrix(body) is None


def test_the_parser_is_reused_after_refusals() -> None:
    good = b"[[1, 2], [3, 4]]"
    for bad in (
        b"[[1, true]]",
        b"[[1, 2], [3]]",
        b"[[1, 2]",
        b"[[340282366920938463463374607431768211456]]",
    ):
        assert numeric_matrix(bad) is None
        read = numeric_matrix(good)
        assert read is not None
        assert read[0].tolist() == [[1, 2], [3, 4]]


def test_arrays_outlive_the_next_parse() -> None:
    first = numeric_matrix(b"[[1.5, 2], [3, 4]]")
    numeric_matrix(b"[[9, 9], [9, 9]]")
    assert first is not None
    assert first[0].tolist() == [[1.5, 2], [3, 4]]
    first[0][0, 0] = 7  # the caller owns a writable copy
    assert first[0][0, 0] == 7


def test_threads_read_side_by_side() -> None:
    bodies = [big([f"[{i}, {i + 0.5}, {-i}, 1e{i % 300}]"]) for i in range(8)]
    wanted = [general(b) for b in bodies]
    errors: list[str] = []

    def work(index: int) -> None:
        for _ in range(200):
            read = numeric_matrix(bodies[index])
            if read is None or read[0].tobytes() != wanted[index].tobytes():
                errors.append(f"thread {index}")
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- through rows_from_json_body: large bodies take the shortcut, and errors read the same ---


def test_a_large_matrix_body_takes_the_shortcut_with_the_same_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken: list[bool] = []

    def spy(body: bytes) -> object:
        read = numeric_matrix(body)
        taken.append(read is not None)
        return read

    monkeypatch.setattr(envelope, "numeric_matrix", spy)
    body = big(["[5.1, 3.5, 1.4, 0.2]", "[6.7, 3.0, 5.2, 2.3]"])
    rows, key = rows_from_json_body(body, WIDTH)
    assert taken == [True]
    assert key is None
    assert rows.columns is None
    assert rows.values.tobytes() == general(body, WIDTH).tobytes()
    wrapped = b'{"instances": ' + body + b"}"
    rows, key = rows_from_json_body(wrapped, WIDTH)
    assert key == "predictions"
    assert rows.values.tobytes() == general(body, WIDTH).tobytes()
    assert taken == [True, True]
    rows_from_json_body(b"[[5.1, 3.5, 1.4, 0.2]]", WIDTH)  # a small body: orjson reads it
    assert taken == [True, True]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["[1, 2, 3]"], "expected 4 features per row, got 3"),
        (["[1, 2, 3, 4]", "[1, 2, 3]"], r"row 1 has 3 values, expected 4"),
        (["[1, 2, 3, true]"], "true is not a number"),
        (["[1, 2, 3, null]"], "null"),
        (['[1, 2, 3, "x"]'], "x"),
    ],
)
def test_large_bodies_get_the_same_errors(rows: list[str], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        rows_from_json_body(big(rows), WIDTH)


def test_large_malformed_body_is_malformed_json() -> None:
    body = big(["[1, 2, 3, 4]"])[:-1]
    with pytest.raises(BadRequest, match="malformed JSON"):
        rows_from_json_body(body, WIDTH)


def test_a_feature_named_like_an_envelope_stays_a_record() -> None:
    named = Signature(n_features=1, feature_names=("instances",))
    body = b'{"instances": ' + big(["[1]"]) + b"}"
    # A record whose one feature is a list of lists: not rows to predict, an error.
    with pytest.raises(BadRequest):
        rows_from_json_body(body, named)


def test_bodies_past_the_reuse_size_get_a_parser_of_their_own() -> None:
    row = "[0.125, 1.5, -2.25, 3e-5]"
    body = ("[" + ",".join([row] * (matrix.REUSE_BYTES // len(row) + 10)) + "]").encode()
    assert len(body) > matrix.REUSE_BYTES
    read = numeric_matrix(body)
    assert read is not None
    assert read[0].tobytes() == general(body).tobytes()
    small = numeric_matrix(b"[[1, 2], [3, 4]]")  # the thread's own parser is still usable
    assert small is not None


def test_bodies_past_the_limit_take_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    body = big(["[1, 2, 3, 4]"])
    assert numeric_matrix(body) is not None
    monkeypatch.setattr(matrix, "MAX_BYTES", len(body) - 1)
    assert numeric_matrix(body) is None
    rows, _ = rows_from_json_body(body, WIDTH)  # and the general path reads it
    assert rows.values.tobytes() == general(body, WIDTH).tobytes()
