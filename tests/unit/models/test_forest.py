"""compile_forest must give scikit-learn's answers bit for bit, on both walks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import datasets
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from ferry.models.forest import CompiledForest, compile_forest

WALKS = ("auto", "levels", "trees")
ROWS = (1, 7, 64, 1000)


@cache
def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    loader = {
        "iris": datasets.load_iris,
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
        "cancer": datasets.load_breast_cancer,
    }[name]
    X, y = loader(return_X_y=True)
    return X.astype(np.float64), y


def _with_nans(name: str, fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    X, y = _data(name)
    X = X.copy()
    X[np.random.default_rng(1).random(X.shape) < fraction] = np.nan
    return X, y


# id -> (dataset, factory, fit on data with NaN)
MODELS: dict[str, tuple[str, Callable[[], Any], bool]] = {
    "rf100-iris": ("iris", lambda: RandomForestClassifier(100, random_state=0), False),
    "rf10-iris-depth3": (
        "iris",
        lambda: RandomForestClassifier(10, max_depth=3, random_state=0),
        False,
    ),
    "rf1-iris": ("iris", lambda: RandomForestClassifier(1, random_state=0), False),
    "et10-iris": ("iris", lambda: ExtraTreesClassifier(10, random_state=0), False),
    "dt-iris": ("iris", lambda: DecisionTreeClassifier(random_state=0), False),
    "rf10-digits-leaf3-balanced": (
        "digits",
        lambda: RandomForestClassifier(
            10, min_samples_leaf=3, class_weight="balanced", random_state=0
        ),
        False,
    ),
    "et10-digits-bootstrap-depth8": (
        "digits",
        lambda: ExtraTreesClassifier(10, bootstrap=True, max_depth=8, random_state=0),
        False,
    ),
    "rf100-digits": ("digits", lambda: RandomForestClassifier(100, random_state=0), False),
    "rf10-cancer-nobootstrap-subsample": (
        "cancer",
        lambda: RandomForestClassifier(
            10, bootstrap=False, class_weight="balanced_subsample", random_state=0
        ),
        False,
    ),
    "rf10-cancer-monotonic": (
        "cancer",
        lambda: RandomForestClassifier(
            10, monotonic_cst=[1, -1] + [0] * 28, max_depth=6, random_state=0
        ),
        False,
    ),
    "dt-cancer-pruned": (
        "cancer",
        lambda: DecisionTreeClassifier(min_samples_leaf=5, ccp_alpha=0.005, random_state=0),
        False,
    ),
    "rfr10-diabetes": ("diabetes", lambda: RandomForestRegressor(10, random_state=0), False),
    "rfr100-diabetes-leaf2": (
        "diabetes",
        lambda: RandomForestRegressor(100, min_samples_leaf=2, random_state=0),
        False,
    ),
    "etr10-diabetes": ("diabetes", lambda: ExtraTreesRegressor(10, random_state=0), False),
    "dtr-diabetes": ("diabetes", lambda: DecisionTreeRegressor(random_state=0), False),
    "dtr-diabetes-depth4": (
        "diabetes",
        lambda: DecisionTreeRegressor(max_depth=4, random_state=0),
        False,
    ),
    "rf10-iris-nan": ("iris", lambda: RandomForestClassifier(10, random_state=0), True),
    "et10-cancer-nan": ("cancer", lambda: ExtraTreesClassifier(10, random_state=0), True),
    "dt-iris-nan": ("iris", lambda: DecisionTreeClassifier(random_state=0), True),
    "rfr10-diabetes-nan": ("diabetes", lambda: RandomForestRegressor(10, random_state=0), True),
}


@cache
def _fitted(model_id: str) -> tuple[Any, np.ndarray]:
    name, factory, nans = MODELS[model_id]
    X, y = _with_nans(name) if nans else _data(name)
    return factory().fit(X, y), X


def _thresholds(model: Any) -> list[tuple[int, float]]:
    members = getattr(model, "estimators_", [model])
    splits = []
    for member in members:
        tree = member.tree_
        inner = tree.children_left != -1
        splits += zip(tree.feature[inner].tolist(), tree.threshold[inner].tolist(), strict=True)
    return splits


def _edge_values(threshold: float) -> list[float]:
    """The threshold and its neighbours in float64 and float32, where rounding decides."""
    if not abs(threshold) < np.finfo(np.float32).max:
        # Splits that only separate missing values have an infinite threshold.
        # (Far values, but not so far that sklearn's own finiteness sum overflows.)
        return [1e30, -1e30]
    as32 = np.float32(threshold)
    return [
        threshold,
        float(np.nextafter(threshold, np.inf)),
        float(np.nextafter(threshold, -np.inf)),
        float(as32),
        float(np.nextafter(as32, np.float32(np.inf))),
        float(np.nextafter(as32, np.float32(-np.inf))),
    ]


def _probes(model: Any, data: np.ndarray, n_rows: int, seed: int = 0) -> np.ndarray:
    """Training-like rows whose features often sit exactly on a split's edge."""
    rng = np.random.default_rng(seed)
    rows = data[rng.integers(0, len(data), n_rows)].copy()
    spread = np.nanstd(data, axis=0)
    rows += rng.normal(0.0, 0.05, rows.shape) * spread
    splits = _thresholds(model)
    for _ in range(n_rows * 3):
        feature, threshold = splits[rng.integers(len(splits))]
        rows[rng.integers(n_rows), feature] = rng.choice(_edge_values(threshold))
    return rows


def _expected(model: Any, rows: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(rows))
    return np.asarray(model.predict(rows))


def _assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype == np.float64
    assert actual.shape == expected.shape
    same = np.ascontiguousarray(actual).view(np.int64) == np.ascontiguousarray(expected).view(
        np.int64
    )
    assert same.all(), f"{(~same).sum()} values differ, max {np.abs(actual - expected).max()}"


def _compiled(model: Any) -> CompiledForest:
    compiled = compile_forest(model)
    assert isinstance(compiled, CompiledForest)
    return compiled


@pytest.mark.parametrize("n_rows", ROWS)
@pytest.mark.parametrize("model_id", list(MODELS))
def test_matches_sklearn_bit_for_bit(model_id: str, n_rows: int) -> None:
    model, X = _fitted(model_id)
    compiled = _compiled(model)
    rows = _probes(model, X, n_rows)
    expected = _expected(model, rows)
    for walk in WALKS:
        _assert_same_bits(compiled(rows, walk=walk), expected)
    if hasattr(model, "classes_"):
        labels = model.classes_[np.argmax(compiled(rows), axis=1)]
        assert np.array_equal(labels, model.predict(rows))


@pytest.mark.parametrize("model_id", ["rf10-iris-nan", "dt-iris-nan", "rf100-iris", "dt-iris"])
def test_missing_values_follow_the_learnt_direction(model_id: str) -> None:
    model, X = _fitted(model_id)
    rows = _probes(model, X, 200, seed=3)
    rows[np.random.default_rng(4).random(rows.shape) < 0.3] = np.nan
    expected = _expected(model, rows)
    for walk in WALKS:
        _assert_same_bits(_compiled(model)(rows, walk=walk), expected)


def test_float32_overflow_and_infinity_are_rejected_like_sklearn() -> None:
    model, X = _fitted("rf10-iris-depth3")
    compiled = _compiled(model)
    for bad in (np.inf, -np.inf, 1e300):
        rows = X[:3].copy()
        rows[1, 2] = bad
        with pytest.raises(ValueError, match="infinity"), np.errstate(over="ignore"):
            model.predict_proba(rows)
        with pytest.raises(ValueError, match="NaN or infinity"):
            compiled(rows)


def test_nan_is_rejected_when_the_trees_refuse_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sklearn.utils

    real_get_tags = sklearn.utils.get_tags

    def no_nan_tags(estimator: Any) -> Any:
        tags = copy.deepcopy(real_get_tags(estimator))
        tags.input_tags.allow_nan = False
        return tags

    monkeypatch.setattr(sklearn.utils, "get_tags", no_nan_tags)
    model, X = _fitted("rf10-iris-depth3")
    compiled = _compiled(model)
    rows = X[:2].copy()
    rows[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compiled(rows)


@pytest.mark.parametrize(
    "rows",
    [np.zeros((0, 4)), np.zeros((2, 5)), np.zeros(4), np.zeros((1, 2, 4))],
    ids=["empty", "wrong-width", "1-d", "3-d"],
)
def test_bad_shapes_raise_value_error(rows: np.ndarray) -> None:
    model, _ = _fitted("rf10-iris-depth3")
    with pytest.raises(ValueError, match="features"):
        _compiled(model)(rows)


def test_accepts_float32_and_integer_rows() -> None:
    model, X = _fitted("rf10-iris-depth3")
    for rows in (X[:20].astype(np.float32), np.rint(X[:20]).astype(np.int64)):
        _assert_same_bits(_compiled(model)(rows), model.predict_proba(rows))


def test_string_labels_keep_probability_columns_in_classes_order() -> None:
    X, y = _data("iris")
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = RandomForestClassifier(5, random_state=0).fit(X, names)
    rows = _probes(model, X, 64)
    _assert_same_bits(_compiled(model)(rows), model.predict_proba(rows))


def test_compiled_model_is_independent_of_later_refits() -> None:
    X, y = _data("iris")
    model = RandomForestClassifier(5, random_state=0).fit(X, y)
    rows = _probes(model, X, 64)
    before = model.predict_proba(rows)
    compiled = _compiled(model)
    model.set_params(random_state=1).fit(X, y)
    _assert_same_bits(compiled(rows), before)


class _CustomForest(RandomForestClassifier):
    def predict_proba(self, rows: Any) -> Any:
        return super().predict_proba(rows) * 0.5


def _two_targets() -> tuple[np.ndarray, np.ndarray]:
    X, y = _data("iris")
    return X, np.column_stack([y, y % 2])


UNSUPPORTED: dict[str, Callable[[], object]] = {
    "pipeline": lambda: make_pipeline(StandardScaler(), RandomForestClassifier(3)).fit(
        *_data("iris")
    ),
    "gradient-boosting": lambda: GradientBoostingClassifier(n_estimators=3).fit(*_data("iris")),
    "hist-gradient-boosting": lambda: HistGradientBoostingClassifier(max_iter=3).fit(
        *_data("iris")
    ),
    "multi-output-forest": lambda: RandomForestClassifier(3).fit(*_two_targets()),
    "multi-output-tree": lambda: DecisionTreeRegressor().fit(*_two_targets()),
    "unfitted": lambda: RandomForestClassifier(3),
    "subclass": lambda: _CustomForest(3).fit(*_data("iris")),
    "not-a-model": object,
    "numpy-array": lambda: _data("iris")[0],
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_returns_none_for_what_it_cannot_reproduce(name: str) -> None:
    assert compile_forest(UNSUPPORTED[name]()) is None


def test_trees_are_added_in_order_one_row_at_a_time() -> None:
    # One row through 100 regression trees is where np.sum would switch to pairwise
    # summation; scikit-learn adds tree by tree.
    model, X = _fitted("rfr100-diabetes-leaf2")
    compiled = _compiled(model)
    rows = _probes(model, X, 60, seed=5)
    for row in rows:
        for walk in WALKS:
            _assert_same_bits(compiled(row[np.newaxis], walk=walk), model.predict(row[np.newaxis]))


def test_trees_without_a_split() -> None:
    X, y = _data("iris")
    rows = _probes(RandomForestClassifier(1).fit(X, y), X, 7)
    one_class = RandomForestClassifier(3, random_state=0).fit(X, np.zeros(len(X), dtype=int))
    constant = DecisionTreeRegressor().fit(X, np.full(len(X), 2.5))
    stumps = RandomForestRegressor(5, max_depth=1, random_state=0).fit(X, y.astype(float))
    for model in (one_class, constant, stumps):
        for walk in WALKS:
            _assert_same_bits(_compiled(model)(rows, walk=walk), _expected(model, rows))
