"""What a scikit-learn-style estimator says about its inputs and outputs.

Covers scikit-learn estimators and Pipelines and the XGBoost/LightGBM scikit-learn
wrappers: everything is read from fitted attributes (``n_features_in_``,
``feature_names_in_``, ``classes_``), never from a prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferry.errors import ModelLoadError
from ferry.models.compiled import FrozenBooster, FrozenForest
from ferry.models.loaders.labels import map_classes
from ferry.types import Datatype, Signature, TensorSpec, datatype_of

__all__ = ["fitted_feature_names", "is_classifier", "n_features_of", "output_spec", "signature"]


def n_features_of(estimator: object) -> int | None:
    """Input width from ``n_features_in_`` of the estimator, or of a pipeline's first step."""
    for candidate in (estimator, _first_step(estimator)):
        value = getattr(candidate, "n_features_in_", None)
        if isinstance(value, int | np.integer):
            return int(value)
    return None


def fitted_feature_names(estimator: object) -> tuple[str, ...] | None:
    """Column names the estimator was fitted with (``feature_names_in_``), if any."""
    from ferry.models.loaders.lightgbm import generated_names

    for candidate in (estimator, _first_step(estimator)):
        names = getattr(candidate, "feature_names_in_", None)
        if names is not None:
            found = tuple(str(name) for name in names)
            # LightGBM invents Column_0..n for arrays; those name no real column.
            return None if generated_names(found) else found
    return None


def is_classifier(estimator: object) -> bool:
    """True when the estimator has a 1-D ``classes_`` (single-output classifier)."""
    return _classes(estimator) is not None


def signature(
    estimator: object,
    *,
    spec_feature_names: tuple[str, ...] | None,
    labels: dict[int, str],
    proba: bool,
    needs_dataframe: bool,
) -> Signature:
    """The Signature of ``estimator`` served with ``predict`` or ``predict_proba``."""
    n_features = n_features_of(estimator)
    names = fitted_feature_names(estimator)
    if names is not None and spec_feature_names is not None and names != spec_feature_names:
        raise ModelLoadError(
            f"feature_names {list(spec_feature_names)} differ from the names the model was "
            f"fitted with {list(names)}"
        )
    names = names or spec_feature_names
    width = n_features if n_features is not None else (len(names) if names else -1)
    classes = map_classes(_classes(estimator), labels)
    return Signature(
        n_features=n_features,
        feature_names=names,
        needs_dataframe=needs_dataframe,
        classes=classes,
        inputs=(TensorSpec("input", Datatype.FP64, (-1, width)),),
        outputs=(output_spec(estimator, labels=labels, proba=proba),),
    )


def output_spec(estimator: object, *, labels: dict[int, str], proba: bool) -> TensorSpec:
    """Name, element type and shape of what ``predict``/``predict_proba`` returns."""
    floats = Datatype.FP32 if _framework(estimator) == "xgboost" else Datatype.FP64
    classes = _classes(estimator)
    if proba:
        n_classes = -1 if classes is None else len(classes)
        return TensorSpec("predict_proba", floats, (-1, n_classes))
    if classes is None:
        return TensorSpec("predict", floats, (-1,))
    label_type = Datatype.BYTES if labels else datatype_of(classes.dtype)
    return TensorSpec("predict", label_type, (-1,))


def _classes(estimator: object) -> np.ndarray[Any, Any] | None:
    classes = getattr(estimator, "classes_", None)
    if isinstance(classes, np.ndarray) and classes.ndim == 1:
        return classes
    return None


def _first_step(estimator: object) -> object:
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:
        return steps[0][1]
    return None


def _framework(estimator: object) -> str:
    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else estimator
    if isinstance(final, FrozenForest | FrozenBooster):  # from the compiled cache
        return final.framework
    return type(final).__module__.partition(".")[0]
