"""Tabular wire formats: CSV and numpy's npy/npz, read into ``Rows`` and written back."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

import numpy as np

from ferry.errors import BadRequest
from ferry.serving.protocols.rows import rows_from_array
from ferry.types import Rows, Signature

__all__ = [
    "array_from_numpy_bytes",
    "csv_bytes",
    "decode_text",
    "json_ready",
    "npy_bytes",
    "rows_from_csv",
]

# Kinds orjson writes natively with OPT_SERIALIZE_NUMPY (native byte order only).
_NATIVE_JSON_KINDS = frozenset("biuf")


def decode_text(body: bytes) -> str:
    """The body as UTF-8 text; a BOM is dropped."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadRequest(
            f"body is not valid UTF-8 text ({error.reason} at byte {error.start})"
        ) from None


def rows_from_csv(body: bytes, signature: Signature) -> Rows:
    """Rows from CSV without quoting: one row per line, a header row only if it names features."""
    lines = [line for line in decode_text(body).splitlines() if line.strip()]
    if lines and _is_header(lines[0], signature):
        lines = lines[1:]
    if not lines:
        return rows_from_array(np.empty((0, 0)), signature)
    if signature.needs_dataframe:
        return rows_from_array(_frame_cells(lines), signature)
    cells = [line.split(",") for line in lines]
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        _raise_csv_error(cells, signature)
        raise
    return rows_from_array(values, signature)


def _is_header(line: str, signature: Signature) -> bool:
    cells = [cell.strip().strip('"') for cell in line.split(",")]
    if all(_is_number(cell) for cell in cells):
        return False
    names = signature.feature_names
    return names is not None and tuple(cells) == names


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _raise_csv_error(cells: list[list[str]], signature: Signature) -> None:
    expected = signature.n_features or len(cells[0])
    for index, row in enumerate(cells):
        if len(row) != expected:
            raise BadRequest(f"row {index} has {len(row)} values, expected {expected}")
        for column, cell in enumerate(row):
            if not _is_number(cell):
                hint = ""
                if index == 0 and signature.feature_names:
                    names = ", ".join(signature.feature_names)
                    hint = f" (a header row is skipped only when it is exactly: {names})"
                raise BadRequest(
                    f"row {index}, column {column}: {cell!r} is not a number; "
                    f"expected numbers{hint}"
                )


def _frame_cells(lines: list[str]) -> np.ndarray[Any, Any]:
    rows = [[_frame_cell(cell) for cell in row] for row in csv.reader(lines)]
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        for index, row in enumerate(rows):
            if len(row) != len(rows[0]):
                raise BadRequest(f"row {index} has {len(row)} values, expected {len(rows[0])}")
    values = np.empty((len(rows), len(rows[0])), dtype=object)
    for index, row in enumerate(rows):
        values[index, :] = row
    return values


def _frame_cell(cell: str) -> Any:
    # CSV has no types: empty means missing, numbers become floats, the rest stays text.
    if cell == "":
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


def array_from_numpy_bytes(body: bytes) -> np.ndarray[Any, Any]:
    """The array in an npy body, or the only array in an npz body; pickles are refused."""
    try:
        loaded = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise BadRequest(
            f"malformed npy body: {error}; expected an array written by numpy.save"
        ) from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        names = list(loaded.files)
        if len(names) != 1:
            raise BadRequest(
                f"npz body holds {len(names)} arrays ({', '.join(names)}); expected one"
            )
        try:
            return np.asarray(loaded[names[0]])
        except ValueError as error:
            raise BadRequest(f"malformed npz body: {error}") from None


def json_ready(values: np.ndarray[Any, Any]) -> Any:
    """``values`` in a form orjson serialises with OPT_SERIALIZE_NUMPY, copying only if needed."""
    dtype = values.dtype
    if dtype.kind in _NATIVE_JSON_KINDS and dtype.isnative:
        return np.ascontiguousarray(values)
    return values.tolist()


def csv_bytes(values: np.ndarray[Any, Any]) -> bytes:
    """One line per prediction; the columns of a 2-D output are comma-separated."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if values.ndim == 1:
        writer.writerows([value] for value in values.tolist())
    else:
        writer.writerows(values.reshape(len(values), -1).tolist())
    return out.getvalue().encode()


def npy_bytes(values: np.ndarray[Any, Any]) -> bytes:
    """``values`` written by numpy.save; object arrays (string labels) become unicode arrays."""
    if values.dtype.kind == "O":
        values = values.astype(str)
    out = io.BytesIO()
    np.save(out, values, allow_pickle=False)
    return out.getvalue()
