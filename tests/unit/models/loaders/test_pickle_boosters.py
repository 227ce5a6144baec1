"""XGBoost and LightGBM scikit-learn wrappers, pickled with joblib."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.datasets import load_breast_cancer

from ferry.models.loaders import load_source
from ferry.types import Datatype, Rows

from .conftest import MakeSource

Array = np.ndarray[Any, Any]


@pytest.fixture(scope="module")
def cancer() -> tuple[Array, Array]:
    X, y = load_breast_cancer(return_X_y=True)
    return X, y


def _load(model: object, tmp_path: Path, make_source: MakeSource, **spec: Any) -> Any:
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    return load_source(make_source(path, "pickle", **spec))


@pytest.mark.parametrize("proba", [False, True])
def test_xgb_binary_classifier_matches_its_own_predict(
    tmp_path: Path, make_source: MakeSource, cancer: tuple[Array, Array], proba: bool
) -> None:
    X, y = cancer
    estimator = xgboost.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(X, y)
    model = _load(estimator, tmp_path, make_source, predict_proba=proba)
    got = model.predict_rows(Rows(X)).values
    expected = estimator.predict_proba(X) if proba else estimator.predict(X)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert model.signature.classes == (0, 1)


@pytest.mark.parametrize("proba", [False, True])
def test_xgb_multiclass_classifier_matches_its_own_predict(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array], proba: bool
) -> None:
    X, y = iris
    estimator = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X, y)
    model = _load(estimator, tmp_path, make_source, predict_proba=proba, labels={2: "virginica"})
    got = model.predict_rows(Rows(X)).values
    if proba:
        np.testing.assert_array_equal(got, estimator.predict_proba(X))
        assert model.signature.outputs[0].datatype is Datatype.FP32
    else:
        expected = ["virginica" if label == 2 else label for label in estimator.predict(X)]
        assert got.tolist() == expected


def test_xgb_regressor_and_early_stopping(
    tmp_path: Path, make_source: MakeSource, cancer: tuple[Array, Array]
) -> None:
    X, _ = cancer
    estimator = xgboost.XGBRegressor(n_estimators=50, early_stopping_rounds=2, n_jobs=1)
    estimator.fit(X[:400], X[:400, 0], eval_set=[(X[400:], X[400:, 0])], verbose=False)
    assert estimator.best_iteration < 49
    model = _load(estimator, tmp_path, make_source)
    np.testing.assert_array_equal(model.predict_rows(Rows(X)).values, estimator.predict(X))


def test_xgb_fitted_on_a_data_frame(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, y = iris
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    estimator = xgboost.XGBClassifier(n_estimators=5, n_jobs=1).fit(frame, y)
    model = _load(estimator, tmp_path, make_source, predict_proba=True)
    assert model.signature.feature_names == ("sl", "sw", "pl", "pw")
    records = Rows(frame[["pw", "pl", "sw", "sl"]].to_numpy(dtype=object), ("pw", "pl", "sw", "sl"))
    np.testing.assert_array_equal(
        model.predict_rows(records).values, estimator.predict_proba(frame)
    )
    model.set_threads(1)
    model.warmup()


@pytest.mark.parametrize("proba", [False, True])
def test_lgbm_classifier_matches_its_own_predict(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array], proba: bool
) -> None:
    X, y = iris
    estimator = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1, n_jobs=1).fit(X, y)
    model = _load(estimator, tmp_path, make_source, predict_proba=proba)
    model.set_threads(1)
    assert model.signature.feature_names is None  # LightGBM's made-up Column_i names
    got = model.predict_rows(Rows(X)).values
    if proba:
        np.testing.assert_allclose(got, estimator.predict_proba(X), atol=1e-6)
    else:
        assert got.tolist() == estimator.predict(X).tolist()


def test_lgbm_regressor_fitted_on_a_data_frame(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, _ = iris
    frame = pd.DataFrame(X[:, 1:], columns=["sw", "pl", "pw"])
    estimator = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1, n_jobs=1).fit(frame, X[:, 0])
    model = _load(estimator, tmp_path, make_source)
    assert model.signature.feature_names == ("sw", "pl", "pw")
    rows = Rows(frame.to_numpy(dtype=object), ("sw", "pl", "pw"))
    np.testing.assert_allclose(model.predict_rows(rows).values, estimator.predict(frame))
