"""Pickled scikit-learn estimators and pipelines through the pickle loader."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from ferry.errors import BadRequest, ModelLoadError
from ferry.models.loaders import load_source
from ferry.types import Datatype, Rows, TensorSpec

from .conftest import MakeSource

Array = np.ndarray[Any, Any]


def _dump(model: object, path: Path) -> Path:
    joblib.dump(model, path)
    return path


@pytest.fixture(scope="module")
def forest(iris: tuple[Array, Array]) -> RandomForestClassifier:
    X, y = iris
    return RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, 60).astype(float),
            "colour": rng.choice(["red", "green", "blue"], 60),
            "income": rng.normal(50, 10, 60),
        }
    )


def test_iris_forest_predicts_like_scikit_learn(
    tmp_path: Path,
    make_source: MakeSource,
    forest: RandomForestClassifier,
    iris: tuple[Array, Array],
) -> None:
    X, _ = iris
    model = load_source(make_source(_dump(forest, tmp_path / "iris.joblib"), "sklearn"))
    prediction = model.predict_rows(Rows(X))
    assert prediction.name == "predict"
    assert prediction.values.tolist() == forest.predict(X).tolist()
    assert model.signature.n_features == 4
    assert model.signature.classes == (0, 1, 2)
    assert model.signature.outputs == (TensorSpec("predict", Datatype.INT64, (-1,)),)


def test_iris_forest_probabilities_name_their_classes(
    tmp_path: Path,
    make_source: MakeSource,
    forest: RandomForestClassifier,
    iris: tuple[Array, Array],
) -> None:
    X, _ = iris
    source = make_source(_dump(forest, tmp_path / "iris.pkl"), "pickle", predict_proba=True)
    prediction = load_source(source).predict_rows(Rows(X[:7]))
    assert prediction.name == "predict_proba"
    assert prediction.columns == (0, 1, 2)
    np.testing.assert_allclose(prediction.values, forest.predict_proba(X[:7]), atol=1e-6)


def test_labels_map_predictions_and_probability_columns(
    tmp_path: Path,
    make_source: MakeSource,
    forest: RandomForestClassifier,
    iris: tuple[Array, Array],
) -> None:
    X, _ = iris
    path = _dump(forest, tmp_path / "iris.pkl")
    labels = {0: "setosa", 1: "versicolor"}
    model = load_source(make_source(path, "pickle", labels=labels))
    expected = [labels.get(int(label), label) for label in forest.predict(X)]
    assert model.predict_rows(Rows(X)).values.tolist() == expected
    assert model.signature.classes == ("setosa", "versicolor", 2)
    assert model.signature.outputs[0].datatype is Datatype.BYTES
    proba = load_source(make_source(path, "pickle", labels=labels, predict_proba=True))
    assert proba.predict_rows(Rows(X[:1])).columns == ("setosa", "versicolor", 2)


def test_fast_path_gives_identical_answers_to_scikit_learn(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    pytest.importorskip("ferry.models.forest")
    X, y = iris
    rng = np.random.default_rng(1)
    probe = np.vstack([X, rng.normal(3, 2, size=(200, 4))])
    classifier = RandomForestClassifier(n_estimators=15, random_state=0).fit(X, y)
    regressor = RandomForestRegressor(n_estimators=15, random_state=0).fit(X, X[:, 0])
    for estimator, proba in ((classifier, False), (classifier, True), (regressor, False)):
        path = _dump(estimator, tmp_path / "m.pkl")
        model = load_source(make_source(path, "pickle", predict_proba=proba))
        expected = estimator.predict_proba(probe) if proba else estimator.predict(probe)
        got = model.predict_rows(Rows(probe)).values
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_pipeline_with_scaler(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, y = iris
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    path = _dump(pipeline, tmp_path / "pipe.joblib")
    model = load_source(make_source(path, "sklearn", predict_proba=True))
    assert model.signature.n_features == 4
    np.testing.assert_allclose(
        model.predict_rows(Rows(X)).values, pipeline.predict_proba(X), atol=1e-6
    )
    with pytest.raises(BadRequest, match=r"^expected 4 features per row, got 3$"):
        model.predict_rows(Rows(X[:2, :3]))


def test_model_fitted_on_a_data_frame_gets_one(
    tmp_path: Path, make_source: MakeSource, frame: pd.DataFrame
) -> None:
    numeric = frame[["age", "income"]]
    target = (numeric["income"] > 50).astype(int)
    estimator = make_pipeline(StandardScaler(), LogisticRegression()).fit(numeric, target)
    model = load_source(make_source(_dump(estimator, tmp_path / "df.pkl"), "pickle"))
    assert model.signature.feature_names == ("age", "income")
    assert model.signature.needs_dataframe
    expected = estimator.predict(numeric).tolist()
    # Records in another column order are put back in the fitted order by name.
    records = Rows(numeric[["income", "age"]].to_numpy(dtype=object), ("income", "age"))
    assert model.predict_rows(records).values.tolist() == expected
    assert model.predict_rows(Rows(numeric.to_numpy())).values.tolist() == expected


def test_column_transformer_with_a_string_column(
    tmp_path: Path, make_source: MakeSource, frame: pd.DataFrame
) -> None:
    target = (frame["colour"] == "red").astype(int)
    estimator = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [("onehot", OneHotEncoder(), ["colour"]), ("scale", StandardScaler(), ["age"])],
                    remainder="passthrough",
                ),
            ),
            ("model", LogisticRegression()),
        ]
    ).fit(frame, target)
    model = load_source(make_source(_dump(estimator, tmp_path / "ct.pkl"), "pickle"))
    assert model.signature.feature_names == ("age", "colour", "income")
    rows = Rows(frame.to_numpy(dtype=object), ("age", "colour", "income"))
    assert model.predict_rows(rows).values.tolist() == estimator.predict(frame).tolist()
    unseen = Rows(np.array([[30.0, "purple", 40.0]], dtype=object), rows.columns)
    with pytest.raises(BadRequest, match="unknown categories"):
        model.predict_rows(unseen)
    model.warmup()  # zeros are no colour: warm-up is skipped, the model stays usable


def test_nan_input_is_a_bad_request(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, y = iris
    estimator = make_pipeline(StandardScaler(), SVC()).fit(X, y)
    model = load_source(make_source(_dump(estimator, tmp_path / "svc.pkl"), "pickle"))
    with pytest.raises(BadRequest, match="NaN"):
        model.predict_rows(Rows(np.full((1, 4), np.nan)))


def test_predict_proba_without_the_method_is_a_load_error(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, _ = iris
    path = _dump(LinearRegression().fit(X, X[:, 0]), tmp_path / "lr.pkl")
    with pytest.raises(
        ModelLoadError, match=r"lr.pkl: the loaded LinearRegression has no predict_proba"
    ):
        load_source(make_source(path, "pickle", predict_proba=True))


def test_regressor_output_and_warmup(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, _ = iris
    estimator = LinearRegression().fit(X, X[:, 0])
    model = load_source(make_source(_dump(estimator, tmp_path / "lr.pkl"), "pickle"))
    model.warmup()
    model.set_threads(1)
    assert model.signature.classes is None
    np.testing.assert_allclose(model.predict_rows(Rows(X)).values, estimator.predict(X))


def test_set_threads_reaches_every_n_jobs(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, y = iris
    estimator = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3, n_jobs=-1))
    estimator.fit(X, y)
    path = _dump(estimator, tmp_path / "pipe.pkl")
    model = load_source(make_source(path, "pickle"), threads=1)
    assert model.predict_rows(Rows(X)).values.tolist() == estimator.predict(X).tolist()


def test_corrupt_file_is_one_readable_line(tmp_path: Path, make_source: MakeSource) -> None:
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(ModelLoadError, match=r"^broken.pkl: not a readable pickle") as caught:
        load_source(make_source(path, "pickle"))
    assert "\n" not in str(caught.value)
    assert caught.value.__cause__ is not None


def test_pickle_needing_a_missing_module(tmp_path: Path, make_source: MakeSource) -> None:
    # A pickle that refers to a class in a module that is not installed here.
    payload = (
        b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00"
        b"\x8c\x0bferry_nopes\x94\x8c\x05Model\x94\x93\x94."
    )
    path = tmp_path / "needs.pkl"
    path.write_bytes(payload)
    with pytest.raises(
        ModelLoadError, match=r"needs.pkl: the pickle needs the module 'ferry_nopes'"
    ):
        load_source(make_source(path, "pickle"))


def test_object_without_predict_is_refused(tmp_path: Path, make_source: MakeSource) -> None:
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(ModelLoadError, match=r"dict.pkl: the loaded dict has no predict method"):
        load_source(make_source(path, "pickle"))


def test_onnx_file_given_as_pickle_is_a_load_error(tmp_path: Path, make_source: MakeSource) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\x07skl2onnx")
    with pytest.raises(ModelLoadError, match=r"model.onnx: not a readable pickle"):
        load_source(make_source(path, "pickle"))
