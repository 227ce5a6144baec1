"""Pickled and joblib-dumped models: anything with ``predict``.

scikit-learn estimators and Pipelines and the XGBoost/LightGBM scikit-learn wrappers are
the common case. Estimators fitted on DataFrames get a DataFrame with their own column
names; known tree models get a faster, answer-identical predict (see ``fast_path``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import BadRequest, ModelLoadError
from ferry.models import compiled, lean
from ferry.models.base import LoadedModel, ModelSource
from ferry.models.loaders import estimator as estimators
from ferry.models.loaders.bad_input import input_errors
from ferry.models.loaders.fast_path import fast_predict
from ferry.models.loaders.labels import map_labels
from ferry.models.loaders.load_error import first_line, load_error
from ferry.models.loaders.rows import as_dtype, data_frame, feature_matrix, zeros_row
from ferry.types import Prediction, Rows

__all__ = ["PickleModel", "load", "read_pickle"]

_log = logging.getLogger(__name__)


def load(source: ModelSource) -> PickleModel:
    """Unpickle ``source.path`` and wrap the object as a row model.

    With ``source.compiled_cache`` set, a tree model frozen by an earlier load of the same
    file is served instead of the pickle (no scikit-learn import); a first load reads the
    file lean where it can (``ferry.models.lean``, no scikit-learn import either) and
    stores the frozen form for the next one (see ``ferry.models.compiled``).
    """
    cache_dir = source.compiled_cache
    if cache_dir is None:
        return PickleModel(read_pickle(source.path), source)
    entry = compiled.entry_path(cache_dir, source.path)
    frozen = compiled.lookup(entry)
    if frozen is not None and fast_predict(frozen, proba=source.spec.predict_proba):
        _log.info("%s: serving the compiled form cached for this file", source.path.name)
        _rebind(frozen, source.path)
        return PickleModel(frozen, source)
    frozen = lean.read_lean(source.path)
    if frozen is not None and fast_predict(frozen, proba=source.spec.predict_proba):
        _log.info("%s: read without importing %s", source.path.name, frozen.package)
        compiled.store(entry, frozen)
        return PickleModel(frozen, source)
    estimator = read_pickle(source.path)
    model = PickleModel(estimator, source)
    if model.has_fast_path:
        frozen = compiled.freeze(estimator)
        if frozen is not None:
            compiled.store(entry, frozen)
    return model


def _rebind(frozen: compiled.Frozen, path: Path) -> None:
    # A forest read lean restores its trees from the model file: this one, same content.
    if isinstance(frozen, compiled.FrozenForest):
        frozen.forest.rebind(path)


def read_pickle(path: Path) -> Any:
    """The object in a joblib or pickle file; every failure is one readable ModelLoadError."""
    try:
        return _unpickle(path)
    except ModuleNotFoundError as error:
        raise ModelLoadError(
            f"{path.name}: the pickle needs the module {error.name!r}, which is not installed"
        ) from error
    except AttributeError as error:
        raise ModelLoadError(
            f"{path.name}: a class in the pickle cannot be found ({first_line(error)}); "
            "classes defined in a script's __main__ must move to an importable module"
        ) from error
    except Exception as error:
        raise load_error(path, "not a readable pickle or joblib file", error) from error


class PickleModel(LoadedModel):
    """A scikit-learn-style estimator served with ``predict`` or ``predict_proba``."""

    def __init__(self, model: object, source: ModelSource) -> None:
        spec = source.spec
        self.name = source.name
        self.framework = source.framework
        self._model = model
        self._proba = spec.predict_proba
        self._labels = dict(spec.labels)
        self._fast = fast_predict(model, proba=self._proba)
        self._predict = self._fast or _bound_method(model, source.path.name, proba=self._proba)
        fitted_names = estimators.fitted_feature_names(model)
        self.signature = estimators.signature(
            model,
            spec_feature_names=spec.feature_names,
            labels=self._labels,
            proba=self._proba,
            # The fast path only needs numbers, so it skips building a DataFrame.
            needs_dataframe=fitted_names is not None and self._fast is None,
        )
        self._classifier = estimators.is_classifier(model)

    @property
    def has_fast_path(self) -> bool:
        return self._fast is not None

    def predict_rows(self, rows: Rows) -> Prediction:
        signature = self.signature
        values = feature_matrix(rows, signature.n_features, signature.feature_names)
        inputs = self._model_input(values)
        with input_errors():
            outputs = np.asarray(self._predict(inputs))
        if self._proba:
            return Prediction(outputs, "predict_proba", signature.classes)
        if self._classifier:
            outputs = map_labels(outputs, self._labels)
        return Prediction(outputs, "predict")

    def warmup(self) -> None:
        """Predict one row of zeros; a model that refuses zeros is left cold, not broken."""
        width = self.signature.n_features
        if width is None and self.signature.feature_names is not None:
            width = len(self.signature.feature_names)
        if width is None:
            return
        try:
            self.predict_rows(zeros_row(width))
        except (BadRequest, TypeError, ValueError) as error:
            # Zeros are no valid category for a string column; real rows will be.
            _log.info("%s: skipped warm-up, the model refuses a row of zeros: %s", self.name, error)

    def set_threads(self, n: int) -> None:
        _set_n_jobs(self._model, n)
        _limit_native_threads(n)

    def _model_input(self, values: np.ndarray[Any, Any]) -> Any:
        if self._fast is not None:
            return as_dtype(values, np.dtype(np.float64))
        if self.signature.needs_dataframe and self.signature.feature_names is not None:
            return data_frame(values, self.signature.feature_names)
        return values


def _unpickle(path: Path) -> Any:
    try:
        import joblib
    except ImportError:  # joblib reads plain pickles too; pickle is only the fallback
        import pickle

        with path.open("rb") as file:
            return pickle.load(file)
    return joblib.load(path)


def _bound_method(model: object, filename: str, *, proba: bool) -> Callable[[Any], Any]:
    method_name = "predict_proba" if proba else "predict"
    method: Callable[[Any], Any] | None = getattr(model, method_name, None)
    if not callable(method):
        raise ModelLoadError(
            f"{filename}: the loaded {type(model).__name__} has no {method_name} method"
        )
    return method


def _set_n_jobs(model: object, n: int) -> None:
    """Set every ``n_jobs`` parameter, including those of a pipeline's steps."""
    get_params = getattr(model, "get_params", None)
    set_params = getattr(model, "set_params", None)
    if not callable(get_params) or not callable(set_params):
        return
    keys = [key for key in get_params(deep=True) if key == "n_jobs" or key.endswith("__n_jobs")]
    if keys:
        set_params(**dict.fromkeys(keys, n))


def _limit_native_threads(n: int) -> None:
    # OpenMP and BLAS pools (HistGradientBoosting, linear models) ignore n_jobs.
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        return
    threadpool_limits(limits=n)
