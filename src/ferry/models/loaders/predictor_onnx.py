"""Cortex's ``onnx_client`` for ``ONNXPredictor`` classes (``predictor.type: onnx`` with a path).

Cortex handed ``ONNXPredictor.__init__(self, onnx_client, config)`` a client whose
``predict(model_input, model_name=None, model_version="latest")`` turns the input into the
model's input tensors and returns ``session.run`` as is (a list of outputs). The input is a
list or array for a model with one input, or a mapping of input names to values; each is
converted to the input's dtype and reshaped to its shape when at most one dimension is
unknown. ``get_model`` returns ``{"session", "signatures"}`` as Cortex's did.

The models are those of the API's ``predictor.models`` (``path``, ``paths`` or ``dir``) or
``model_path``: an ``.onnx`` file, or a folder holding one, or numbered version folders
(``1/``, ``2/``...) that each hold one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import ModelError, ModelLoadError
from ferry.models.loaders.versioned import SINGLE, VersionedModels

__all__ = ["ONNXClient", "model_versions"]


_DTYPES = {
    "tensor(float16)": "float16", "tensor(float)": "float32", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
    "tensor(string)": "object",
}  # fmt: skip


def model_versions(path: Path) -> dict[int, Path]:
    """The ``.onnx`` file of each version under ``path`` (a file alone is version 1)."""
    if path.is_file():
        return {1: path}
    if not path.is_dir():
        raise ModelLoadError(f"ONNX model {path} does not exist")
    versions = {
        int(child.name): _one_file(child)
        for child in path.iterdir()
        if child.is_dir() and child.name.isdigit()
    }
    return versions or {1: _one_file(path)}


def _one_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.onnx"))
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise ModelLoadError(f"{folder}: expected one .onnx file, found {found}")
    return files[0]


class ONNXClient(VersionedModels):
    """Named, versioned onnxruntime sessions, built when first used."""

    def __init__(self, models: Mapping[str, Path], threads: int | None = None) -> None:
        super().__init__({name: model_versions(path) for name, path in models.items()})
        self._threads = threads
        if list(self._versions) == [SINGLE]:
            self.get_model()  # one model: load it now, so a bad file fails the start

    def predict(
        self, model_input: Any, model_name: str | None = None, model_version: str = "latest"
    ) -> Any:
        """Run the model on ``model_input``; the outputs of ``session.run``, in order."""
        model = self.get_model(model_name, model_version)
        feeds = _feeds(model_input, model["signatures"], model_name or "the model")
        return model["session"].run([], feeds)

    def get_model(self, model_name: str | None = None, model_version: str = "latest") -> Any:
        """``{"session": InferenceSession, "signatures": [input metadata]}``."""
        return self._get(model_name, model_version, self._build)

    def _build(self, path: Path) -> dict[str, Any]:
        session = _session(path, self._threads)
        return {"session": session, "signatures": session.get_inputs()}


def _session(path: Path, threads: int | None) -> Any:
    from ferry.models.loaders.onnx import _session as build

    return build(path, threads)


def _feeds(model_input: Any, inputs: list[Any], model: str) -> dict[str, Any]:
    if len(inputs) == 1 and not isinstance(model_input, Mapping):
        return {inputs[0].name: _tensor(model_input, inputs[0], model)}
    if not isinstance(model_input, Mapping):
        names = ", ".join(repr(i.name) for i in inputs)
        raise ModelError(f"{model} has several inputs: pass a dict with keys {names}")
    feeds = {}
    for meta in inputs:
        if model_input.get(meta.name) is None:
            raise ModelError(f"missing key {meta.name!r} for {model}")
        feeds[meta.name] = _tensor(model_input[meta.name], meta, model)
    return feeds


def _tensor(value: Any, meta: Any, model: str) -> np.ndarray[Any, Any]:
    dtype = _DTYPES.get(meta.type, "float32")
    shape = [d if isinstance(d, int) else (-1 if isinstance(d, str) or d is None else 1)
             for d in meta.shape]  # fmt: skip
    try:
        array = np.asarray(value)
        if array.dtype != dtype:
            array = array.astype(dtype)
        if shape.count(-1) <= 1:
            array = array.reshape(shape)
    except (ValueError, TypeError) as error:
        raise ModelError(
            f"input {meta.name!r} of {model}: cannot make a {dtype} tensor of shape "
            f"{shape} from it ({error})"
        ) from None
    return array
