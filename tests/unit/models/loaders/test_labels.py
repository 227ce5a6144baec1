"""Label mapping of classifier outputs."""

from __future__ import annotations

import numpy as np

from ferry.models.loaders.labels import map_classes, map_labels

LABELS = {0: "wiener dog", 1: "german shepherd"}


def test_labels_are_mapped_and_unknown_values_kept() -> None:
    mapped = map_labels(np.array([0, 1, 2]), LABELS)
    assert mapped.tolist() == ["wiener dog", "german shepherd", 2]
    assert mapped.dtype == object


def test_no_mapping_leaves_values_untouched() -> None:
    values = np.array([0, 1])
    assert map_labels(values, {}) is values


def test_class_columns_are_mapped() -> None:
    assert map_classes(np.array([0, 1, 2]), LABELS) == ("wiener dog", "german shepherd", 2)
    assert map_classes(["setosa"], LABELS) == ("setosa",)
    assert map_classes(None, LABELS) is None
