"""ONNX models converted with skl2onnx, run by onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ferry.errors import BadRequest, ModelLoadError
from ferry.models.loaders import load_source
from ferry.types import Datatype, Rows, TensorSpec

from .conftest import MakeSource

Array = np.ndarray[Any, Any]


def _save(model: object, x: Array, path: Path, **options: Any) -> Path:
    onnx_model = to_onnx(model, x[:1].astype(np.float32), options=options or None)
    path.write_bytes(onnx_model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def forest(iris: tuple[Array, Array]) -> RandomForestClassifier:
    X, y = iris
    return RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y)


@pytest.mark.parametrize("zipmap", [True, False])
def test_classifier_labels_and_probabilities(
    tmp_path: Path,
    make_source: MakeSource,
    forest: RandomForestClassifier,
    iris: tuple[Array, Array],
    zipmap: bool,
) -> None:
    X, _ = iris
    options = {} if zipmap else {"zipmap": False}
    path = _save(forest, X, tmp_path / "rf.onnx", **options)
    model = load_source(make_source(path, "onnx"))
    assert model.predict_rows(Rows(X)).values.tolist() == forest.predict(X).tolist()
    assert model.signature.n_features == 4
    assert model.signature.input_datatype is Datatype.FP32
    assert model.signature.classes == (0, 1, 2)

    proba = load_source(make_source(path, "onnx", predict_proba=True, labels={0: "setosa"}))
    prediction = proba.predict_rows(Rows(X))
    assert prediction.name == "predict_proba"
    assert prediction.columns == ("setosa", 1, 2)
    assert prediction.values.shape == (150, 3)
    np.testing.assert_allclose(prediction.values, forest.predict_proba(X), atol=1e-6)
    assert proba.signature.outputs == (TensorSpec("predict_proba", Datatype.FP32, (-1, 3)),)


def test_labels_map_onnx_classifier_labels(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, y = iris
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    path = _save(estimator, X, tmp_path / "lr.onnx")
    labels = {0: "setosa", 1: "versicolor", 2: "virginica"}
    model = load_source(make_source(path, "onnx", labels=labels), threads=1)
    model.warmup()
    expected = [labels[label] for label in estimator.predict(X).tolist()]
    assert model.predict_rows(Rows(X)).values.tolist() == expected
    assert model.signature.outputs[0].datatype is Datatype.BYTES


def test_generic_graph_answers_with_its_first_output_name(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Array, Array]
) -> None:
    X, _ = iris
    estimator = LinearRegression().fit(X[:, 1:], X[:, 0])
    path = _save(estimator, X[:, 1:], tmp_path / "reg.onnx")
    model = load_source(make_source(path, "onnx"))
    model.set_threads(1)
    prediction = model.predict_rows(Rows(X[:, 1:]))
    assert prediction.name == model.signature.outputs[0].name
    assert prediction.values.shape == (150, 1)
    np.testing.assert_allclose(prediction.values[:, 0], estimator.predict(X[:, 1:]), atol=1e-4)
    assert model.signature.inputs[0].shape == (-1, 3)
    with pytest.raises(BadRequest, match=r"^expected 3 features per row, got 4$"):
        model.predict_rows(Rows(X))
    with pytest.raises(ModelLoadError, match="predict_proba needs a classifier"):
        load_source(make_source(path, "onnx", predict_proba=True))


def test_one_input_per_column(tmp_path: Path, make_source: MakeSource) -> None:
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 1])
    out = helper.make_tensor_value_info("difference", TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["difference"])], "g", [a, b], [out]
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx_model.ir_version = 8
    path = tmp_path / "sub.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    model = load_source(make_source(path, "onnx"))
    assert model.signature.feature_names == ("a", "b")
    records = Rows(np.array([[1.0, 5.0], [2.0, 3.0]]), ("b", "a"))
    prediction = model.predict_rows(records)
    assert prediction.name == "difference"
    assert prediction.values[:, 0].tolist() == [4.0, 1.0]


def test_not_an_onnx_file(tmp_path: Path, make_source: MakeSource) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match=r"^model.onnx: not a loadable ONNX model") as caught:
        load_source(make_source(path, "onnx"))
    assert "\n" not in str(caught.value)
