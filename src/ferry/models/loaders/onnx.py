"""ONNX models, run with onnxruntime on the CPU.

The session is built once with the worker's thread limit when ``load_source`` is given
one; ``set_threads`` with a different limit rebuilds it, because onnxruntime fixes its
thread pools when a session is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import ModelLoadError
from ferry.models.base import LoadedModel, ModelSource
from ferry.models.loaders.bad_input import input_errors
from ferry.models.loaders.labels import map_classes
from ferry.models.loaders.load_error import load_error
from ferry.models.loaders.onnx_graph import GraphLayout, graph_classes, layout_of, tensor_specs
from ferry.models.loaders.rows import feature_matrix
from ferry.types import Datatype, Prediction, Rows, Signature, TensorSpec, datatype_of

__all__ = ["OnnxModel", "load"]


def load(source: ModelSource, *, threads: int | None = None) -> OnnxModel:
    """Build an onnxruntime session for ``source.path``."""
    return OnnxModel(source, threads=threads)


class OnnxModel(LoadedModel):
    """An onnxruntime ``InferenceSession`` on the CPU execution provider."""

    def __init__(self, source: ModelSource, *, threads: int | None = None) -> None:
        spec = source.spec
        self.name = source.name
        self.framework = source.framework
        self._path = source.path
        self._threads = threads
        self._labels = dict(spec.labels)
        self._session = _session(source.path, threads)
        classes = _classes_if_classifier(self._session, source.path)
        self._layout = layout_of(
            self._session, proba=spec.predict_proba, classes=classes, path=source.path
        )
        self.signature = _signature(self._session, self._layout, spec.feature_names, self._labels)

    def predict_rows(self, rows: Rows) -> Prediction:
        values = feature_matrix(rows, self.signature.n_features, self.signature.feature_names)
        feeds = self._layout.feeds(values)
        with input_errors():
            (output,) = self._session.run([self._layout.output_name], feeds)
        return self._layout.prediction(output, self._labels)

    def warmup(self) -> None:
        """Run one row of zeros so onnxruntime allocates its buffers now."""
        width = self.signature.n_features
        if width is not None and all(d.kind in "fiub" for d in self._layout.input_dtypes):
            self.predict_rows(Rows(np.zeros((1, width))))

    def set_threads(self, n: int) -> None:
        if n != self._threads:
            self._session = _session(self._path, n)
            self._threads = n


def _session(path: Path, threads: int | None) -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ModelLoadError(
            f"{path.name}: ONNX models need onnxruntime: pip install 'ferry[onnx]'"
        ) from error
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: graph-optimiser notes are not ours to fix
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own classes for each way to fail
        raise load_error(path, "not a loadable ONNX model", error) from error


def _classes_if_classifier(session: Any, path: Path) -> tuple[Any, ...] | None:
    if len(session.get_outputs()) < 2:
        return None
    return graph_classes(path)


def _signature(
    session: Any, layout: GraphLayout, feature_names: tuple[str, ...] | None, labels: dict[int, str]
) -> Signature:
    return Signature(
        n_features=layout.n_features,
        feature_names=layout.input_names if layout.per_column else feature_names,
        input_datatype=datatype_of(layout.input_dtypes[0]),
        classes=map_classes(layout.classes, labels),
        inputs=tensor_specs(session.get_inputs()),
        outputs=(_output_spec(session, layout, labels),),
    )


def _output_spec(session: Any, layout: GraphLayout, labels: dict[int, str]) -> TensorSpec:
    (output,) = tensor_specs([o for o in session.get_outputs() if o.name == layout.output_name])
    if not layout.classifier:
        return output
    if not layout.proba:
        return TensorSpec("predict", Datatype.BYTES if labels else output.datatype, (-1,))
    # A ZipMap output is a sequence of maps, not a tensor; ferry turns it into FP32 columns.
    datatype = Datatype.FP32 if output.datatype is Datatype.BYTES else output.datatype
    n_classes = -1 if layout.classes is None else len(layout.classes)
    return TensorSpec("predict_proba", datatype, (-1, n_classes))
