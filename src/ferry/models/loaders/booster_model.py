"""The row model shared by native XGBoost and LightGBM boosters.

Both take a float table, return a raw output whose meaning depends on the objective
(``BoosterTask``), and know their width and, sometimes, their feature names.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from ferry.errors import ModelLoadError
from ferry.models.base import LoadedModel, ModelSource
from ferry.models.loaders.bad_input import input_errors
from ferry.models.loaders.booster_task import BoosterTask
from ferry.models.loaders.rows import as_dtype, feature_matrix, zeros_row
from ferry.types import Datatype, Prediction, Rows, Signature, TensorSpec, numpy_dtype_of

__all__ = ["BoosterModel"]


class BoosterModel(LoadedModel):
    """A native booster; subclasses supply ``_raw`` (the framework's own predict)."""

    def __init__(
        self,
        source: ModelSource,
        *,
        task: BoosterTask,
        n_features: int,
        feature_names: tuple[str, ...] | None,
        datatype: Datatype,
    ) -> None:
        spec = source.spec
        task.check(source.path, proba=spec.predict_proba)
        names = _feature_names(feature_names, spec.feature_names)
        self.name = source.name
        self.framework = source.framework
        self._task = task
        self._proba = spec.predict_proba
        self._labels = dict(spec.labels)
        self._dtype = numpy_dtype_of(datatype)
        self.signature = Signature(
            n_features=n_features,
            feature_names=names,
            input_datatype=datatype,
            classes=task.classes(self._labels),
            inputs=(TensorSpec("input", datatype, (-1, n_features)),),
            outputs=(task.output_spec(proba=self._proba, labels=self._labels, floats=datatype),),
        )

    def predict_rows(self, rows: Rows) -> Prediction:
        values = feature_matrix(rows, self.signature.n_features, self.signature.feature_names)
        inputs = as_dtype(values, self._dtype)
        with input_errors():
            raw = np.asarray(self._raw(inputs))
        return self._task.prediction(raw, proba=self._proba, labels=self._labels)

    def warmup(self) -> None:
        """Predict one row of zeros so the booster's lazy set-up runs now."""
        if self.signature.n_features:
            self.predict_rows(zeros_row(self.signature.n_features))

    @abstractmethod
    def _raw(self, inputs: np.ndarray[Any, Any]) -> Any:
        """The framework's own prediction for a float table in the model's column order."""


def _feature_names(
    from_model: tuple[str, ...] | None, from_spec: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    if from_model is not None and from_spec is not None and from_model != from_spec:
        raise ModelLoadError(
            f"feature_names {list(from_spec)} differ from the model's own {list(from_model)}"
        )
    return from_model or from_spec
