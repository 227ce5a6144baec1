"""Label mapping (``labels: {0: "wiener dog", 1: "german shepherd"}``) applied to outputs.

Only classifier outputs are mapped: predicted labels value by value, and the class labels
that name the columns of probabilities. Values the mapping does not name stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["map_classes", "map_labels"]


def map_labels(values: np.ndarray[Any, Any], labels: Mapping[int, str]) -> np.ndarray[Any, Any]:
    """Predicted labels with each one the mapping names replaced by its text."""
    if not labels or values.ndim != 1:
        return values
    # tolist() turns numpy scalars into Python ones, whose hashes match the int keys.
    mapped = [labels.get(value, value) for value in values.tolist()]
    out = np.empty(len(mapped), dtype=object)
    out[:] = mapped
    return out


def map_classes(classes: Iterable[Any] | None, labels: Mapping[int, str]) -> tuple[Any, ...] | None:
    """Class labels (probability columns) with each one the mapping names replaced."""
    if classes is None:
        return None
    plain = np.asarray(list(classes)).tolist()
    return tuple(labels.get(value, value) for value in plain)
