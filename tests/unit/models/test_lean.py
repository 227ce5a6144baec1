"""Lean first read: tree models read from their pickle without scikit-learn, same answers.

The dry read must flatten to exactly the layout the real trees give, answer bit for bit
what the estimator answers (NaN included, which restores the real trees from the file),
decline everything it does not reproduce, and never run what a pickle refers to.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn import datasets
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from ferry.models import lean
from ferry.models.compiled import FrozenBooster, FrozenForest
from ferry.models.forest import CompiledForest, compile_forest
from ferry.models.loaders.fast_path import fast_predict

Array = np.ndarray[Any, Any]


def _iris() -> tuple[Array, Array]:
    X, y = datasets.load_iris(return_X_y=True)
    return X, y


def _diabetes() -> tuple[Array, Array]:
    X, y = datasets.load_diabetes(return_X_y=True)
    return X, y


def _rows(data: Array, n: int, *, nan: bool = False) -> Array:
    rng = np.random.default_rng(n)
    rows = data[rng.integers(0, len(data), n)] + rng.normal(0, 0.05, (n, data.shape[1]))
    if nan:
        rows[rng.random(rows.shape) < 0.25] = np.nan
    return rows


ESTIMATORS = {
    "rf-classifier": (lambda: RandomForestClassifier(20, random_state=0), _iris),
    "extra-classifier": (lambda: ExtraTreesClassifier(15, random_state=0), _iris),
    "tree-classifier": (lambda: DecisionTreeClassifier(random_state=0), _iris),
    "rf-regressor": (lambda: RandomForestRegressor(15, random_state=0), _diabetes),
    "extra-regressor": (lambda: ExtraTreesRegressor(10, random_state=0), _diabetes),
    "tree-regressor": (lambda: DecisionTreeRegressor(random_state=0), _diabetes),
}


def _dump(estimator: object, path: Path, how: str) -> Path:
    if how == "pickle":
        with path.open("wb") as file:
            pickle.dump(estimator, file, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        joblib.dump(estimator, path, compress=3 if how == "joblib-zlib" else 0)
    return path


@pytest.mark.parametrize("how", ["joblib", "joblib-zlib", "pickle"])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_a_lean_read_flattens_to_the_same_layout_and_answers_bit_for_bit(
    tmp_path: Path, name: str, how: str
) -> None:
    make, data = ESTIMATORS[name]
    X, y = data()
    estimator: Any = make().fit(X, y)
    frozen = lean.read_lean(_dump(estimator, tmp_path / "model.bin", how))

    assert isinstance(frozen, FrozenForest)
    assert frozen.kind == type(estimator).__name__
    assert frozen.n_features_in_ == estimator.n_features_in_
    real = compile_forest(estimator)
    assert isinstance(real, CompiledForest)
    for field in ("feature", "threshold", "children", "offsets", "values", "walk_order"):
        assert np.array_equal(getattr(frozen.forest._layout, field), getattr(real._layout, field))
    assert not frozen.forest.trees_loaded
    classifier = name.endswith("classifier")
    if classifier:
        assert frozen.classes_ is not None
        assert frozen.classes_.tolist() == estimator.classes_.tolist()
    for proba in (True, False) if classifier else (False,):
        predict = fast_predict(frozen, proba=proba)
        assert predict is not None
        own = estimator.predict_proba if proba else estimator.predict
        for n in (1, 9, 1000):
            rows = _rows(X, n)
            assert predict(rows).tobytes() == np.asarray(own(rows)).tobytes()
    assert not frozen.forest.trees_loaded, "NaN-free batches never need the real trees"


def test_nan_batches_restore_the_real_trees_from_the_model_file(tmp_path: Path) -> None:
    X, y = datasets.load_breast_cancer(return_X_y=True)
    X = X.copy()
    X[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    estimator = RandomForestClassifier(15, random_state=0).fit(X, y)
    frozen = lean.read_lean(_dump(estimator, tmp_path / "rf.joblib", "joblib"))
    assert isinstance(frozen, FrozenForest)
    predict = fast_predict(frozen, proba=True)
    assert predict is not None

    rows = _rows(np.nan_to_num(X), 40, nan=True)
    assert predict(rows).tobytes() == estimator.predict_proba(rows).tobytes()
    assert frozen.forest.trees_loaded
    with pytest.raises(ValueError, match="NaN is allowed, infinity is not"):
        predict(np.full((1, X.shape[1]), np.inf))
    big = _rows(np.nan_to_num(X), 1000)  # with the trees back, large batches may use them
    assert predict(big).tobytes() == estimator.predict_proba(big).tobytes()


def test_a_model_file_replaced_after_the_read_is_not_silently_mixed_in(tmp_path: Path) -> None:
    X, y = _iris()
    path = _dump(RandomForestClassifier(5, random_state=0).fit(X, y), tmp_path / "rf.joblib", "")
    frozen = lean.read_lean(path)
    assert isinstance(frozen, FrozenForest)
    _dump(RandomForestClassifier(6, random_state=1).fit(X, y), path, "joblib")
    predict = fast_predict(frozen, proba=True)
    assert predict is not None
    with pytest.raises(RuntimeError, match="no longer holds the model this server loaded"):
        predict(np.array([[5.0, np.nan, 1.0, 0.2]]))


def test_feature_names_come_through_for_models_fitted_on_data_frames(tmp_path: Path) -> None:
    X, y = _iris()
    frame = pd.DataFrame(X, columns=["sepal_l", "sepal_w", "petal_l", "petal_w"])
    estimator = RandomForestClassifier(5, random_state=0).fit(frame, y)
    frozen = lean.read_lean(_dump(estimator, tmp_path / "rf.joblib", "joblib"))
    assert isinstance(frozen, FrozenForest)
    assert frozen.feature_names_in_ is not None
    assert frozen.feature_names_in_.tolist() == ["sepal_l", "sepal_w", "petal_l", "petal_w"]


class _OwnForest(RandomForestClassifier):
    """A subclass may change predict; the lean read must not assume it does not."""


def _declined() -> dict[str, Any]:
    X, y = _iris()
    Xd, yd = _diabetes()
    return {
        "pipeline": make_pipeline(StandardScaler(), RandomForestClassifier(3)).fit(X, y),
        "linear": LogisticRegression(max_iter=300).fit(X, y),
        "multi-output": RandomForestRegressor(3).fit(Xd, np.c_[yd, yd]),
        "subclass": _OwnForest(3).fit(X, y),
        "xgboost-in-a-pipeline": make_pipeline(
            StandardScaler(), xgboost.XGBClassifier(n_estimators=3)
        ).fit(X, y),
        "unfitted": RandomForestClassifier(3),
        "plain-data": {"weights": np.arange(4.0)},
    }


@pytest.mark.parametrize("name", sorted(_declined()))
def test_anything_the_fast_path_does_not_reproduce_is_declined(tmp_path: Path, name: str) -> None:
    path = _dump(_declined()[name], tmp_path / "model.joblib", "joblib")
    assert lean.read_lean(path) is None


def test_a_pickle_from_another_scikit_learn_version_is_declined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = _iris()
    path = _dump(RandomForestClassifier(3).fit(X, y), tmp_path / "rf.joblib", "joblib")
    assert lean.read_lean(path) is not None
    monkeypatch.setattr(lean, "_installed_sklearn", lambda: "1.3.2")
    assert lean.read_lean(path) is None


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", b"\x80\x05\x95garbage"])
def test_unreadable_files_are_left_to_the_normal_read(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.joblib"
    path.write_bytes(content)
    assert lean.read_lean(path) is None


class _Trap:
    """Unpickling this removes a file: a dry read must record it, not run it."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.remove, (str(self.victim),))


def test_a_dry_read_never_runs_what_the_pickle_refers_to(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    path = _dump([_Trap(victim), np.arange(3)], tmp_path / "trap.joblib", "joblib")
    assert lean.read_lean(path) is None
    assert victim.read_text() == "still here"


@pytest.mark.parametrize("kind", ["binary", "multi", "regressor"])
def test_xgboost_wrappers_read_lean_answer_like_the_estimator(tmp_path: Path, kind: str) -> None:
    if kind == "regressor":
        X, y = _diabetes()
        estimator: Any = xgboost.XGBRegressor(n_estimators=20, max_depth=3).fit(X, y)
    else:
        X, y = datasets.load_breast_cancer(return_X_y=True) if kind == "binary" else _iris()
        estimator = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)
    frozen = lean.read_lean(_dump(estimator, tmp_path / "xgb.joblib", "joblib"))
    assert isinstance(frozen, FrozenBooster)
    predict = fast_predict(frozen, proba=False)
    assert predict is not None
    rows = _rows(X, 200)
    assert predict(rows).tolist() == estimator.predict(rows).tolist()
    if kind != "regressor":
        proba = fast_predict(frozen, proba=True)
        assert proba is not None
        assert proba(rows).tobytes() == estimator.predict_proba(rows).tobytes()


def test_a_pickle_of_another_kind_is_declined_before_its_arrays_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from joblib.numpy_pickle import NumpyArrayWrapper

    X, y = _iris()
    path = _dump(LogisticRegression(max_iter=300).fit(X, y), tmp_path / "lr.joblib", "joblib")
    reads: list[object] = []
    original = NumpyArrayWrapper.read

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NumpyArrayWrapper, "read", counting)
    assert lean.read_lean(path) is None
    assert reads == []
    forest = _dump(RandomForestClassifier(2).fit(X, y), tmp_path / "rf.joblib", "joblib")
    assert lean.read_lean(forest) is not None
    assert reads, "a forest's arrays are read"
