"""Native XGBoost models (``.json``, ``.ubj`` or the legacy binary format).

Predictions go through ``Booster.inplace_predict`` on float32 rows, the element type
XGBoost itself converts to, so answers equal ``Booster.predict(DMatrix(rows))``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import ModelLoadError
from ferry.models.base import ModelSource
from ferry.models.imports import import_lean
from ferry.models.loaders.booster_model import BoosterModel
from ferry.models.loaders.booster_task import BoosterTask, TaskKind
from ferry.models.loaders.load_error import load_error
from ferry.types import Datatype

__all__ = ["XGBoostModel", "load", "task_of"]

_KINDS = {
    "binary:logistic": TaskKind.BINARY,
    "multi:softprob": TaskKind.MULTICLASS,
    "multi:softmax": TaskKind.CLASS_INDEX,
    "binary:hinge": TaskKind.CLASS_INDEX,
}


def load(source: ModelSource) -> XGBoostModel:
    """Read a native booster from ``source.path``."""
    return XGBoostModel(_read_booster(source.path), source)


def task_of(booster: Any) -> BoosterTask:
    """The booster's task, from the objective in its saved configuration."""
    learner = json.loads(booster.save_config())["learner"]
    objective = str(learner["objective"]["name"])
    kind = _KINDS.get(objective, TaskKind.OTHER)
    n_classes = int(learner["learner_model_param"].get("num_class", "0"))
    if objective.startswith("binary:"):
        n_classes = 2
    return BoosterTask(kind, n_classes, objective)


class XGBoostModel(BoosterModel):
    """A native ``xgboost.Booster``."""

    def __init__(self, booster: Any, source: ModelSource) -> None:
        names = booster.feature_names
        super().__init__(
            source,
            task=task_of(booster),
            n_features=int(booster.num_features()),
            feature_names=tuple(names) if names else None,
            datatype=Datatype.FP32,
        )
        self._booster = booster

    def set_threads(self, n: int) -> None:
        self._booster.set_param({"nthread": n})

    def _raw(self, inputs: np.ndarray[Any, Any]) -> Any:
        # Columns are already in the model's order, so name validation adds nothing.
        return self._booster.inplace_predict(inputs, validate_features=False)


def _read_booster(path: Path) -> Any:
    try:
        xgboost = import_lean("xgboost")  # a native booster needs no scikit-learn
    except ImportError as error:
        raise ModelLoadError(
            f"{path.name}: XGBoost models need xgboost: pip install 'ferry[xgboost]'"
        ) from error
    try:
        return xgboost.Booster(model_file=str(path))
    except Exception as error:  # XGBoostError, or whatever a foreign file triggers
        raise load_error(path, "not an XGBoost model", error) from error
