"""Faster stand-ins for ``predict``/``predict_proba`` of estimators we know well.

Each stand-in takes a float64 2-D array in the model's column order and gives the same
answers as the estimator's own method, without its per-call validation overhead (which
dominates small batches). Anything unusual about an estimator means "no fast path".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["FastPredict", "fast_predict", "xgboost_iteration_range"]

FastPredict = Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]

_log = logging.getLogger(__name__)

_TREE_MODELS = (
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
)


def fast_predict(estimator: object, *, proba: bool) -> FastPredict | None:
    """A drop-in for ``estimator.predict`` (or ``predict_proba``), or None if none applies.

    ``estimator`` may also be a frozen model from the compiled cache (``models.compiled``),
    which gets the same fast path as the estimator it was frozen from.
    """
    from ferry.models.compiled import FrozenBooster, FrozenForest

    if isinstance(estimator, FrozenForest):
        return _forest_predict(estimator.forest, estimator.classes_, proba=proba)
    if isinstance(estimator, FrozenBooster):
        return _frozen_booster(estimator, proba=proba)
    module = type(estimator).__module__
    if module.startswith("sklearn."):
        return _forest(estimator, proba=proba)
    if module.startswith("xgboost."):
        return _xgboost(estimator, proba=proba)
    return None


def _forest(estimator: Any, *, proba: bool) -> FastPredict | None:
    """Compiled trees from ``ferry.models.forest`` for scikit-learn forests and trees."""
    if type(estimator).__name__ not in _TREE_MODELS or getattr(estimator, "n_outputs_", 1) != 1:
        return None
    try:
        from ferry.models.forest import compile_forest
    except ImportError:
        return None
    try:
        compiled = compile_forest(estimator)
    except Exception:  # an optimisation must never stop a model from loading
        _log.warning("could not compile %s; using its own predict", type(estimator).__name__)
        return None
    if compiled is None:
        return None
    return _forest_predict(compiled, getattr(estimator, "classes_", None), proba=proba)


def _forest_predict(
    compiled: FastPredict, classes: np.ndarray[Any, Any] | None, *, proba: bool
) -> FastPredict | None:
    if classes is None:
        # A regressor has no predict_proba: no fast path, so its own (missing) method is
        # looked up and the load fails saying so.
        return None if proba else compiled
    return compiled if proba else _argmax_labels(compiled, classes)


def _argmax_labels(compiled: FastPredict, classes: np.ndarray[Any, Any]) -> FastPredict:
    def predict(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        # Exactly scikit-learn's ForestClassifier.predict for a single output.
        labels: np.ndarray[Any, Any] = classes.take(np.argmax(compiled(x), axis=1), axis=0)
        return labels

    return predict


def _xgboost(estimator: Any, *, proba: bool) -> FastPredict | None:
    """``Booster.inplace_predict`` with the arguments ``XGBModel.predict`` would pass."""
    import xgboost

    kind = type(estimator)
    if kind not in (xgboost.XGBClassifier, xgboost.XGBRegressor):
        return None
    booster = estimator.get_booster()
    if estimator.booster == "gblinear" or "c" in (booster.feature_types or ()):
        return None
    raw = _inplace(booster, xgboost_iteration_range(estimator), estimator.missing)
    if kind is xgboost.XGBRegressor:
        return None if proba else raw
    return _xgboost_classifier(raw, estimator.objective, estimator.n_classes_, proba=proba)


def _frozen_booster(frozen: Any, *, proba: bool) -> FastPredict | None:
    raw = _inplace(frozen.booster(), frozen.iteration_range, frozen.missing)
    if frozen.kind == "XGBRegressor":
        return None if proba else raw
    return _xgboost_classifier(raw, frozen.objective, frozen.n_classes_, proba=proba)


def _inplace(booster: Any, iteration_range: tuple[int, int], missing: float) -> FastPredict:
    def raw(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        # Columns are already in the fitted order, so name validation adds nothing.
        result: np.ndarray[Any, Any] = booster.inplace_predict(
            x, iteration_range=iteration_range, missing=missing, validate_features=False
        )
        return result

    return raw


def _xgboost_classifier(
    raw: FastPredict, objective: object, n_classes: int, *, proba: bool
) -> FastPredict | None:
    """XGBClassifier's own post-processing, for the two objectives it documents."""
    if objective == "binary:logistic" and n_classes == 2:
        if proba:
            return lambda x: _two_columns(raw(x))
        return lambda x: (raw(x) > 0.5).astype(np.int64)
    if objective == "multi:softprob" and n_classes > 2:
        if proba:
            return raw
        return lambda x: np.argmax(raw(x), axis=1)
    return None


def _two_columns(p: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.vstack((1.0 - p, p)).transpose()


def xgboost_iteration_range(estimator: Any) -> tuple[int, int]:
    # As XGBModel._get_iteration_range: early-stopped models predict up to best_iteration.
    try:
        return (0, int(estimator.best_iteration) + 1)
    except AttributeError:
        return (0, 0)
