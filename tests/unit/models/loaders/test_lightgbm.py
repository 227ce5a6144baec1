"""Native LightGBM boosters (text model files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest

from ferry.errors import BadRequest, ModelLoadError
from ferry.models.loaders import load_source
from ferry.types import Rows

from .conftest import MakeSource

Array = np.ndarray[Any, Any]


def _save(tmp_path: Path, x: Array, y: Array, **params: Any) -> tuple[lightgbm.Booster, Path]:
    names = params.pop("feature_names", "auto")
    data = lightgbm.Dataset(x, y, feature_name=names)
    booster = lightgbm.train({"verbose": -1, "num_threads": 1, **params}, data, 5)
    path = tmp_path / "model.txt"
    booster.save_model(path)
    return booster, path


def test_binary_booster(tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]) -> None:
    X, y = iris
    booster, path = _save(tmp_path, X, (y == 1).astype(int), objective="binary")
    model = load_source(make_source(path, "lightgbm"))
    np.testing.assert_allclose(model.predict_rows(Rows(X)).values, booster.predict(X), atol=1e-12)
    assert model.signature.feature_names is None
    proba = load_source(make_source(path, "lightgbm", predict_proba=True))
    p = booster.predict(X)
    np.testing.assert_allclose(proba.predict_rows(Rows(X)).values, np.column_stack([1 - p, p]))
    assert proba.signature.classes == (0, 1)


def test_multiclass_booster(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, y = iris
    booster, path = _save(tmp_path, X, y, objective="multiclass", num_class=3)
    model = load_source(make_source(path, "lightgbm", labels={1: "versicolor"}), threads=1)
    model.warmup()
    expected = np.argmax(booster.predict(X), axis=1).tolist()
    got = model.predict_rows(Rows(X)).values.tolist()
    assert got == ["versicolor" if label == 1 else label for label in expected]
    proba = load_source(make_source(path, "lightgbm", predict_proba=True))
    np.testing.assert_allclose(proba.predict_rows(Rows(X)).values, booster.predict(X), atol=1e-6)
    assert proba.signature.outputs[0].shape == (-1, 3)


def test_regression_with_names(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, _ = iris
    booster, path = _save(
        tmp_path, X[:, 1:], X[:, 0], objective="regression", feature_names=["sw", "pl", "pw"]
    )
    model = load_source(make_source(path, "lightgbm"))
    assert model.signature.feature_names == ("sw", "pl", "pw")
    records = Rows(X[:, [3, 2, 1]], ("pw", "pl", "sw"))
    np.testing.assert_allclose(model.predict_rows(records).values, booster.predict(X[:, 1:]))
    with pytest.raises(BadRequest, match="expected 3 features per row, got 2"):
        model.predict_rows(Rows(X[:, :2]))
    with pytest.raises(ModelLoadError, match="objective is 'regression'"):
        load_source(make_source(path, "lightgbm", predict_proba=True))


def test_not_a_lightgbm_file(tmp_path: Path, make_source: MakeSource) -> None:
    path = tmp_path / "model.txt"
    path.write_text("hello\n")
    with pytest.raises(ModelLoadError, match=r"^model.txt: not a LightGBM model"):
        load_source(make_source(path, "lightgbm"))
