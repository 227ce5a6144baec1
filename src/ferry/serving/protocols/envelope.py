"""JSON bodies of row models: the accepted envelopes and the matching answers.

A bare list (or record) is answered with a bare list; ``{"instances": X}`` (TF Serving,
KServe v1, SageMaker) with ``{"predictions": [...]}``; ``{"inputs": X}`` with
``{"outputs": [...]}``.
"""

from __future__ import annotations

from typing import Any

import orjson

from ferry.errors import BadRequest
from ferry.serving.protocols.formats import json_ready
from ferry.serving.protocols.matrix import numeric_matrix
from ferry.serving.protocols.rows import check_width, rows_from_json
from ferry.types import Prediction, Rows, Signature

__all__ = ["json_answer", "load_json", "rows_from_json_body"]

_ANSWER_KEY = {"instances": "predictions", "inputs": "outputs"}

# Below this a body is a few rows, which orjson reads as fast; above it the rows are read
# straight into an array (``matrix``), several times faster than Python floats.
_MATRIX_MIN_BYTES = 2048


def load_json(body: bytes) -> Any:
    """The parsed body; malformed JSON is a ``BadRequest`` quoting the parser."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"malformed JSON: {error}; expected a JSON body") from None


def rows_from_json_body(body: bytes, signature: Signature) -> tuple[Rows, str | None]:
    """Rows from a JSON body and the key to wrap the answer in (None for a bare list)."""
    if len(body) >= _MATRIX_MIN_BYTES and not signature.needs_dataframe:
        matrix = numeric_matrix(body)
        if matrix is not None and not (matrix[1] and _is_feature(matrix[1], signature)):
            values, key = matrix
            check_width(int(values.shape[1]), signature)
            return Rows(values), None if key is None else _ANSWER_KEY[key]
    data = load_json(body)
    bools = _may_hold_bools(body)
    if isinstance(data, dict):
        for key, answer_key in _ANSWER_KEY.items():
            # A record may have a feature of that name; then it is a record, not an envelope.
            if key in data and not _is_feature(key, signature):
                return rows_from_json(data[key], signature, may_hold_bools=bools), answer_key
    numbers = not bools and _only_numbers(body)
    return rows_from_json(data, signature, may_hold_bools=bools, only_numbers=numbers), None


def _may_hold_bools(body: bytes) -> bool:
    """Whether the JSON text may contain ``true``/``false`` (then rows are checked cell by cell).

    Searching one byte is a ``memchr``, several times faster than searching a word, and a
    body of plain numbers has neither ``t`` nor ``f`` (nor does any number's text), so large
    numeric bodies pay almost nothing for the check.
    """
    if b"t" not in body and b"f" not in body:
        return False
    return b"true" in body or b"false" in body


def _only_numbers(body: bytes) -> bool:
    """Whether the JSON text (already without ``true``/``false``) can hold only numbers.

    Without a quote there is no string, and without an ``n`` no ``null`` (no number's
    text has one; JSON has no NaN or Infinity). Then every cell is a number and the rows
    convert to floats without numpy first inferring a type. Two more ``memchr`` calls.
    """
    return b'"' not in body and b"n" not in body


def _is_feature(key: str, signature: Signature) -> bool:
    return signature.feature_names is not None and key in signature.feature_names


def json_answer(prediction: Prediction, answer_key: str | None) -> bytes:
    """The predictions as JSON: a list of scalars (labels) or of lists (probabilities)."""
    values = json_ready(prediction.values)
    content = values if answer_key is None else {answer_key: values}
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
