"""Native LightGBM models (the text format written by ``Booster.save_model``)."""

from __future__ import annotations

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

__all__ = ["LightGBMModel", "generated_names", "load", "task_of"]

_KINDS = {
    "binary": TaskKind.BINARY,
    "multiclass": TaskKind.MULTICLASS,
    "multiclassova": TaskKind.MULTICLASS,
}


def load(source: ModelSource) -> LightGBMModel:
    """Read a native booster from ``source.path``."""
    return LightGBMModel(_read_booster(source.path), source)


def task_of(booster: Any) -> BoosterTask:
    """The booster's task, from the objective among the parameters saved with it."""
    objective = str(booster.params.get("objective", "unknown"))
    kind = _KINDS.get(objective, TaskKind.OTHER)
    n_classes = 2 if kind is TaskKind.BINARY else int(booster.num_model_per_iteration())
    return BoosterTask(kind, n_classes, objective)


def generated_names(names: tuple[str, ...]) -> bool:
    """True for the ``Column_0..n`` names LightGBM makes up for unnamed columns."""
    return names == tuple(f"Column_{index}" for index in range(len(names)))


class LightGBMModel(BoosterModel):
    """A native ``lightgbm.Booster``."""

    def __init__(self, booster: Any, source: ModelSource) -> None:
        names = tuple(booster.feature_name())
        super().__init__(
            source,
            task=task_of(booster),
            n_features=int(booster.num_feature()),
            feature_names=None if generated_names(names) else names,
            datatype=Datatype.FP64,
        )
        self._booster = booster
        self._threads: dict[str, int] = {}

    def set_threads(self, n: int) -> None:
        self._threads = {"num_threads": n}

    def _raw(self, inputs: np.ndarray[Any, Any]) -> Any:
        return self._booster.predict(inputs, **self._threads)


def _read_booster(path: Path) -> Any:
    try:
        # A native booster predicting NumPy rows needs neither scikit-learn nor pandas.
        lightgbm = import_lean("lightgbm", hide=("sklearn", "pandas"))
    except ImportError as error:
        raise ModelLoadError(
            f"{path.name}: LightGBM models need lightgbm: pip install 'ferry[lightgbm]'"
        ) from error
    try:
        return lightgbm.Booster(model_file=str(path))
    except Exception as error:  # LightGBMError, or whatever a foreign file triggers
        raise load_error(path, "not a LightGBM model", error) from error
