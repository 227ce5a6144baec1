"""A JSON matrix of numbers read straight into a float64 array, without Python objects.

The common large body is a list of rows of plain numbers, bare or in an ``instances`` /
``inputs`` envelope. Read the usual way, every cell becomes a Python float (orjson) that
numpy then copies into an array: for 1000 rows of 10 features that is about 1.2 ms of a
worker's time, as much as half of a tree model's predict. simdjson parses the same text
into its own tape and copies the numbers into one buffer in C, in about a fifth of that.

This is only a shortcut. It answers only when the body is exactly such a matrix (every
row a list of the same number of numbers, no nested lists, no strings, booleans, nulls or
objects among the cells) and returns None for everything else, malformed JSON included,
so that the general path (``rows.rows_from_json``) handles it and words any error. Both
paths give the same float64 values: both parsers round decimal text correctly, and an
integer is converted to the nearest double by both.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import numpy as np
import simdjson

__all__ = ["ENVELOPES", "MAX_BYTES", "REUSE_BYTES", "numeric_matrix"]

ENVELOPES = ("instances", "inputs")
"""Keys whose value is the rows (TF Serving / KServe v1 / SageMaker, and ``inputs``)."""

MAX_BYTES = 16 * 2**20
"""Larger bodies take the general path (a parser's buffers are several times the body)."""
REUSE_BYTES = 2**20

# What simdjson raises for input it will not turn into numbers: malformed text, a cell of
# another type, an integer beyond 64 bits, a missing key, or a proxy of another kind.
_NOT_A_MATRIX = (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError)

# Every byte but the brackets and commas, which alone carry a numeric matrix's shape.
_NOT_STRUCTURE = bytes(set(range(256)) - set(b"[],"))

# How a matrix body starts: a list whose first item is a list, bare or as the one envelope
# key's value. Checked before parsing, so that a large body of records, or one row, is not
# parsed twice; a byte order mark (which simdjson skips and orjson refuses) fails it too.
_MATRIX_START = re.compile(
    rb'\s*(?:\{\s*"(?:' + b"|".join(k.encode() for k in ENVELOPES) + rb')"\s*:\s*)?\[\s*\['
)

_local = threading.local()


def numeric_matrix(body: bytes) -> tuple[np.ndarray[Any, Any], str | None] | None:
    """The rows of ``body`` as a 2-D float64 array and the envelope key, or None.

    None means "not a plain numeric matrix here": the caller takes the general path.
    """
    if len(body) > MAX_BYTES or not _MATRIX_START.match(body):
        return None
    # A parser keeps buffers of about nine times the largest body it read: the worker's
    # own is kept for bodies up to REUSE_BYTES, a larger body gets one of its own.
    parser = _parser() if len(body) <= REUSE_BYTES else simdjson.Parser()
    try:
        return _read(parser, body)
    except _NOT_A_MATRIX as error:
        if isinstance(error, RuntimeError) and "re-use" in str(error):
            # A document of the thread's parser is still referenced somewhere (simdjson
            # will not reuse the parser then): give the thread a fresh one.
            _local.parser = simdjson.Parser()
        return None


def _parser() -> Any:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser


def _read(parser: Any, body: bytes) -> tuple[np.ndarray[Any, Any], str | None] | None:
    doc = parser.parse(body)
    key = None
    if isinstance(doc, simdjson.Object):
        if len(doc) != 1:
            return None
        key = next(iter(doc.keys()))
        if key not in ENVELOPES:
            return None
        doc = doc[key]
    if not isinstance(doc, simdjson.Array):
        return None
    n_rows = len(doc)
    if n_rows == 0:
        return None
    # Flattening refuses any cell that is not a number, and any object at any depth.
    flat = np.frombuffer(doc.as_buffer(of_type="d"), dtype=np.float64)
    width, rest = divmod(flat.size, n_rows)
    if width == 0 or rest:
        return None
    if not _rows_of_width(body, n_rows, width):
        return None
    return flat.reshape(n_rows, width), key


def _rows_of_width(body: bytes, n_rows: int, width: int) -> bool:
    """Whether the (valid, numbers-only) JSON text is ``n_rows`` lists of ``width`` numbers.

    Read from its brackets and commas, in one C pass and without visiting each row: those
    of an ``n_rows`` x ``width`` matrix come in exactly one order, ``[[,,],[,,]]``, whatever
    the spacing. Any other shape (a ragged row, a list in a row, a number among the rows)
    puts them in another order. The envelope's one key adds neither.
    """
    row = b"[" + b"," * (width - 1) + b"]"
    return body.translate(None, _NOT_STRUCTURE) == b"[" + b",".join([row] * n_rows) + b"]"
