"""How ferry feeds an ONNX graph rows and reads its answer, from the graph's own metadata.

Inputs: one 2-D tensor takes the whole table; several ``[N, 1]`` tensors (skl2onnx's
one-input-per-column form) take one column each, named by the input names.
Outputs: a skl2onnx-style classifier (label, then probabilities as a tensor or a ZipMap
list of dicts) serves ``predict``/``predict_proba``; any other graph serves its first
output under that output's own name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import ModelLoadError
from ferry.models.loaders.labels import map_classes, map_labels
from ferry.models.loaders.rows import as_dtype
from ferry.types import Datatype, Prediction, TensorSpec, datatype_of

__all__ = ["GraphLayout", "graph_classes", "layout_of", "tensor_specs"]

_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(object),
}


@dataclass(frozen=True, slots=True)
class GraphLayout:
    """Which inputs take which columns and which output answers."""

    input_names: tuple[str, ...]
    input_dtypes: tuple[np.dtype[Any], ...]
    per_column: bool
    n_features: int | None
    output_name: str
    classifier: bool
    proba: bool
    classes: tuple[Any, ...] | None

    def feeds(self, values: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
        """The ``session.run`` inputs for a table already checked for width."""
        if not self.per_column:
            return {self.input_names[0]: as_dtype(values, self.input_dtypes[0])}
        return {
            name: as_dtype(values[:, index : index + 1], dtype)
            for index, (name, dtype) in enumerate(
                zip(self.input_names, self.input_dtypes, strict=True)
            )
        }

    def prediction(self, output: Any, labels: dict[int, str]) -> Prediction:
        """The chosen output as a Prediction, labels mapped for classifiers."""
        if not self.classifier:
            return Prediction(np.asarray(output), self.output_name)
        if not self.proba:
            return Prediction(map_labels(np.asarray(output), labels), "predict")
        if isinstance(output, list):  # ZipMap: one {class: probability} per row
            return _from_zipmap(output, self.classes, labels)
        return Prediction(np.asarray(output), "predict_proba", map_classes(self.classes, labels))


def layout_of(
    session: Any, *, proba: bool, classes: tuple[Any, ...] | None, path: Path
) -> GraphLayout:
    """Read the layout from an ``onnxruntime.InferenceSession``; refuse graphs we can't feed."""
    inputs = session.get_inputs()
    per_column = len(inputs) > 1
    if per_column and not all(_dims(node.shape) == (-1, 1) for node in inputs):
        raise ModelLoadError(
            f"{path.name}: the graph has {len(inputs)} inputs; ferry feeds one [N, F] "
            "tensor or one [N, 1] tensor per column"
        )
    outputs = session.get_outputs()
    classifier = _looks_like_classifier(outputs)
    if proba and not classifier:
        raise ModelLoadError(
            f"{path.name}: predict_proba needs a classifier with label and probability "
            f"outputs; the graph's outputs are {[node.name for node in outputs]}"
        )
    n_features = len(inputs) if per_column else _width(inputs[0].shape)
    return GraphLayout(
        input_names=tuple(node.name for node in inputs),
        input_dtypes=tuple(_dtype(node.type, path) for node in inputs),
        per_column=per_column,
        n_features=n_features,
        output_name=outputs[1 if proba else 0].name,
        classifier=classifier,
        proba=proba,
        classes=classes if classifier else None,
    )


def tensor_specs(nodes: list[Any]) -> tuple[TensorSpec, ...]:
    """TensorSpecs of session inputs or outputs; symbolic dims are -1."""
    return tuple(TensorSpec(node.name, _datatype(node.type), _dims(node.shape)) for node in nodes)


def graph_classes(path: Path) -> tuple[Any, ...] | None:
    """Class labels stored in a classifier node, read with the ``onnx`` package if present.

    onnxruntime does not expose node attributes; without ``onnx`` the probability columns
    are named by the ZipMap keys when there is a ZipMap, else left unnamed.
    """
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_int64s", "classlabels_ints"):
                return tuple(int(value) for value in attribute.ints)
            if attribute.name == "classlabels_strings":
                return tuple(value.decode() for value in attribute.strings)
    return None


def _looks_like_classifier(outputs: list[Any]) -> bool:
    if len(outputs) < 2 or outputs[0].type not in ("tensor(int64)", "tensor(string)"):
        return False
    second = outputs[1].type
    return second.startswith("seq(map(") or (
        second in ("tensor(float)", "tensor(double)") and len(outputs[1].shape) == 2
    )


def _from_zipmap(
    rows: list[dict[Any, float]], classes: tuple[Any, ...] | None, labels: dict[int, str]
) -> Prediction:
    keys = list(rows[0]) if rows else []
    if classes is not None and set(classes) == set(keys):
        keys = list(classes)  # the graph's class order, as ZipMap's keys need not keep it
    values = np.array([[row[key] for key in keys] for row in rows], dtype=np.float32)
    return Prediction(
        values.reshape(len(rows), len(keys)), "predict_proba", map_classes(keys, labels)
    )


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape)


def _width(shape: list[Any]) -> int | None:
    dims = _dims(shape)
    return dims[1] if len(dims) == 2 and dims[1] >= 0 else None


def _dtype(onnx_type: str, path: Path) -> np.dtype[Any]:
    dtype = _DTYPES.get(onnx_type)
    if dtype is None:
        raise ModelLoadError(f"{path.name}: ferry cannot feed an input of type {onnx_type}")
    return dtype


def _datatype(onnx_type: str) -> Datatype:
    dtype = _DTYPES.get(onnx_type)
    return Datatype.BYTES if dtype is None else datatype_of(dtype)
