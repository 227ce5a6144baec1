"""TorchScript models (``torch.jit.save``), run on the CPU in inference mode.

A scripted module does not declare its input width. ferry takes it from the first
``Linear`` layer when there is one, for warm-up only: a wrong width is still caught, as
the 400 torch's "shapes cannot be multiplied" maps to.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ferry.errors import ModelError, ModelLoadError
from ferry.models.base import LoadedModel, ModelSource
from ferry.models.loaders.bad_input import input_errors
from ferry.models.loaders.labels import map_labels
from ferry.models.loaders.load_error import load_error
from ferry.models.loaders.rows import as_dtype, feature_matrix, zeros_row
from ferry.types import Datatype, Prediction, Rows, Signature, TensorSpec

__all__ = ["TorchScriptModel", "load"]

_INSTALL = "TorchScript models need torch: pip install torch==2.13.0"


def load(source: ModelSource) -> TorchScriptModel:
    """Load a TorchScript archive onto the CPU."""
    return TorchScriptModel(_read_module(source.path), source)


class TorchScriptModel(LoadedModel):
    """A ``torch.jit.ScriptModule`` called with one float32 tensor of rows."""

    def __init__(self, module: Any, source: ModelSource) -> None:
        spec = source.spec
        self.name = source.name
        self.framework = source.framework
        self._module = module
        self._labels = dict(spec.labels)
        names = spec.feature_names
        self._warmup_width = len(names) if names else _first_linear_width(module)
        width = len(names) if names else -1
        self.signature = Signature(
            n_features=len(names) if names else None,
            feature_names=names,
            input_datatype=Datatype.FP32,
            inputs=(TensorSpec("input", Datatype.FP32, (-1, width)),),
            outputs=(TensorSpec("predict", Datatype.FP32, (-1, -1)),),
        )

    def predict_rows(self, rows: Rows) -> Prediction:
        import torch

        values = feature_matrix(rows, self.signature.n_features, self.signature.feature_names)
        array = as_dtype(values, np.dtype(np.float32))
        # torch.from_numpy shares memory and warns on read-only arrays (decoded buffers).
        inputs = torch.from_numpy(array if array.flags.writeable else array.copy())
        with input_errors(), torch.inference_mode():
            output = self._module(inputs)
        return Prediction(map_labels(_to_numpy(output), self._labels))

    def warmup(self) -> None:
        """Run one row of zeros so the JIT profiles and optimises the graph now."""
        if self._warmup_width is not None:
            self.predict_rows(zeros_row(self._warmup_width))

    def set_threads(self, n: int) -> None:
        import torch

        # Process-wide in torch; a worker process serves one model, so that is the intent.
        torch.set_num_threads(n)


def _read_module(path: Path) -> Any:
    try:
        import torch
    except ImportError as error:
        raise ModelLoadError(_INSTALL) from error
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript for torch.export; serving a .pt file the
            # user already has is not the place to say so on every worker start.
            warnings.filterwarnings("ignore", "`torch.jit", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as error:  # torch raises RuntimeError or ValueError for foreign files
        raise load_error(path, "not a TorchScript archive", error) from error
    module.eval()
    return module


def _first_linear_width(module: Any) -> int | None:
    for _, child in module.named_modules():
        if getattr(child, "original_name", None) == "Linear":
            return int(child.weight.shape[1])
    return None


def _to_numpy(output: Any) -> np.ndarray[Any, Any]:
    import torch

    if isinstance(output, tuple | list) and output:
        output = output[0]  # models that also return auxiliary outputs lead with the answer
    if not isinstance(output, torch.Tensor):
        raise ModelError(f"the model returned {type(output).__name__}, expected a tensor")
    return output.detach().cpu().numpy()
