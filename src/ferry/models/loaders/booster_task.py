"""What a native gradient-boosting model predicts, read from its objective.

A native XGBoost or LightGBM booster carries no class labels, only its objective. From it
we know whether the raw output is a probability of class 1, one probability per class, a
class index, or just a number, and so how to present ``predict`` and ``predict_proba``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import ModelLoadError
from ferry.models.loaders.labels import map_classes, map_labels
from ferry.types import Datatype, Prediction, TensorSpec

__all__ = ["BoosterTask", "TaskKind"]


class TaskKind(StrEnum):
    BINARY = "binary"  # raw output: probability of class 1
    MULTICLASS = "multiclass"  # raw output: (n, k) probabilities
    CLASS_INDEX = "class_index"  # raw output: the class index as a float (multi:softmax)
    OTHER = "other"  # regression, ranking, raw margins: passed through


@dataclass(frozen=True, slots=True)
class BoosterTask:
    """The kind of task and the number of classes, with how to present its outputs."""

    kind: TaskKind
    n_classes: int
    objective: str

    def check(self, path: Path, *, proba: bool) -> None:
        """Refuse ``predict_proba`` for objectives that give no probabilities."""
        if proba and self.kind not in (TaskKind.BINARY, TaskKind.MULTICLASS):
            raise ModelLoadError(
                f"{path.name}: predict_proba needs a classifier with probabilities, "
                f"but the model's objective is {self.objective!r}"
            )

    def classes(self, labels: dict[int, str]) -> tuple[Any, ...] | None:
        if self.kind is TaskKind.OTHER:
            return None
        return map_classes(range(self.n_classes), labels)

    def output_spec(self, *, proba: bool, labels: dict[int, str], floats: Datatype) -> TensorSpec:
        if proba:
            return TensorSpec("predict_proba", floats, (-1, self.n_classes))
        if self.kind in (TaskKind.MULTICLASS, TaskKind.CLASS_INDEX):
            return TensorSpec("predict", Datatype.BYTES if labels else Datatype.INT64, (-1,))
        return TensorSpec("predict", floats, (-1,))

    def prediction(
        self, raw: np.ndarray[Any, Any], *, proba: bool, labels: dict[int, str]
    ) -> Prediction:
        """Raw booster output as the ``predict`` or ``predict_proba`` a client expects."""
        if proba:
            values = np.vstack((1.0 - raw, raw)).T if self.kind is TaskKind.BINARY else raw
            return Prediction(values, "predict_proba", self.classes(labels))
        if self.kind is TaskKind.MULTICLASS:
            return Prediction(map_labels(np.argmax(raw, axis=1), labels), "predict")
        if self.kind is TaskKind.CLASS_INDEX:
            return Prediction(map_labels(raw.astype(np.int64), labels), "predict")
        return Prediction(raw, "predict")
