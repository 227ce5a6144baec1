"""Native XGBoost boosters (.json, .ubj)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost

from ferry.errors import BadRequest, ModelLoadError
from ferry.models.loaders import load_source
from ferry.types import Datatype, Rows

from .conftest import MakeSource

Array = np.ndarray[Any, Any]


def _train(x: Array, y: Array, **params: Any) -> xgboost.Booster:
    data = xgboost.DMatrix(x, y, feature_names=params.pop("feature_names", None))
    return xgboost.train({"max_depth": 3, **params}, data, num_boost_round=5)


def _raw(booster: xgboost.Booster, x: Array) -> Array:
    names = booster.feature_names
    result: Array = booster.predict(xgboost.DMatrix(x, feature_names=names))
    return result


@pytest.mark.parametrize("suffix", ["json", "ubj"])
def test_binary_booster_predicts_its_raw_probability(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array], suffix: str
) -> None:
    X, y = iris
    booster = _train(X, (y == 2).astype(int), objective="binary:logistic")
    path = tmp_path / f"model.{suffix}"
    booster.save_model(path)
    model = load_source(make_source(path, "xgboost"))
    assert model.signature.n_features == 4
    assert model.signature.input_datatype is Datatype.FP32
    np.testing.assert_array_equal(model.predict_rows(Rows(X)).values, _raw(booster, X))

    proba = load_source(make_source(path, "xgboost", predict_proba=True, labels={1: "yes"}))
    prediction = proba.predict_rows(Rows(X))
    p = _raw(booster, X)
    np.testing.assert_allclose(prediction.values, np.column_stack([1 - p, p]), atol=1e-6)
    assert prediction.columns == (0, "yes")


def test_softprob_booster_gives_labels_and_probabilities(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, y = iris
    booster = _train(X, y, objective="multi:softprob", num_class=3)
    path = tmp_path / "model.json"
    booster.save_model(path)
    model = load_source(make_source(path, "xgboost", labels={0: "setosa"}))
    expected = np.argmax(_raw(booster, X), axis=1)
    got = model.predict_rows(Rows(X)).values.tolist()
    assert got == ["setosa" if label == 0 else label for label in expected.tolist()]
    assert model.signature.classes == ("setosa", 1, 2)
    proba = load_source(make_source(path, "xgboost", predict_proba=True))
    np.testing.assert_array_equal(proba.predict_rows(Rows(X)).values, _raw(booster, X))
    assert proba.signature.outputs[0].shape == (-1, 3)


def test_softmax_booster_labels_and_no_probabilities(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, y = iris
    booster = _train(X, y, objective="multi:softmax", num_class=3)
    path = tmp_path / "model.json"
    booster.save_model(path)
    model = load_source(make_source(path, "xgboost"))
    assert model.predict_rows(Rows(X)).values.tolist() == _raw(booster, X).astype(int).tolist()
    with pytest.raises(ModelLoadError, match="objective is 'multi:softmax'"):
        load_source(make_source(path, "xgboost", predict_proba=True))


def test_regression_with_feature_names_reorders_records(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, _ = iris
    names = ["sw", "pl", "pw"]
    booster = _train(X[:, 1:], X[:, 0], objective="reg:squarederror", feature_names=names)
    path = tmp_path / "model.ubj"
    booster.save_model(path)
    model = load_source(make_source(path, "xgboost"), threads=1)
    model.warmup()
    assert model.signature.feature_names == ("sw", "pl", "pw")
    assert model.signature.classes is None
    records = Rows(X[:, [3, 1, 2]].astype(object), ("pw", "sw", "pl"))
    np.testing.assert_array_equal(model.predict_rows(records).values, _raw(booster, X[:, 1:]))
    with pytest.raises(BadRequest, match="expected 3 features per row, got 4"):
        model.predict_rows(Rows(X))


def test_not_an_xgboost_file(tmp_path: Path, make_source: MakeSource) -> None:
    path = tmp_path / "model.json"
    path.write_text('{"hello": "world"}')
    with pytest.raises(ModelLoadError, match=r"^model.json: not an XGBoost model \(") as caught:
        load_source(make_source(path, "xgboost"))
    assert "\n" not in str(caught.value)
