"""Framework loaders: turn a fetched model file into a ``LoadedModel``.

One module per framework, imported only when a model of that framework is loaded, so that
importing ferry never imports scikit-learn, XGBoost, onnxruntime or torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ferry.errors import ModelLoadError

if TYPE_CHECKING:
    from ferry.models.base import LoadedModel, ModelSource

__all__ = ["FRAMEWORKS", "load_source"]

_MODULES: dict[str, str] = {
    "pickle": "ferry.models.loaders.pickle",
    "sklearn": "ferry.models.loaders.pickle",
    "xgboost": "ferry.models.loaders.xgboost",
    "lightgbm": "ferry.models.loaders.lightgbm",
    "onnx": "ferry.models.loaders.onnx",
    "torchscript": "ferry.models.loaders.torchscript",
    "python": "ferry.models.loaders.predictor",
}

FRAMEWORKS: tuple[str, ...] = tuple(_MODULES)
"""The values of ``ModelSource.framework`` that ``load_source`` accepts."""


def load_source(source: ModelSource, *, threads: int | None = None) -> LoadedModel:
    """Load ``source`` with the loader of ``source.framework``.

    ``threads`` limits the framework's own threads from the start, which saves building
    an ONNX session twice; it is the same as calling ``set_threads`` after loading.
    Every failure to read the model is a ``ModelLoadError`` naming the file.
    """
    module = _MODULES.get(source.framework)
    if module is None:
        raise ModelLoadError(
            f"{source.path.name}: unknown framework {source.framework!r}; "
            f"expected one of {', '.join(FRAMEWORKS)}"
        )
    load: Callable[..., LoadedModel] = importlib.import_module(module).load
    if source.framework == "onnx":
        return load(source, threads=threads)
    model = load(source)
    if threads is not None:
        model.set_threads(threads)
    return model
