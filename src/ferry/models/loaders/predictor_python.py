"""Cortex's ``python_client`` for multi-model Python predictors (``multi_model_reloading``).

Cortex handed ``PythonPredictor.__init__(self, config, python_client)`` a client whose
``get_model(model_name=None, model_version="latest")`` returns what the predictor's own
``load_model(self, model_path)`` returned for that model's folder, loading it on first use
and keeping it. A model is a folder (or a file) of ``multi_model_reloading.path``,
``paths`` or ``dir`` (or, as in Cortex v0.24-v0.25, ``models`` or ``model_path``);
numbered subfolders (``1/``, ``2/``...) are its versions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ferry.errors import ModelError, ModelLoadError
from ferry.models.loaders.versioned import SINGLE, VersionedModels

__all__ = ["SINGLE", "PythonClient", "versions"]


def versions(path: Path) -> dict[int, Path]:
    """The folder of each version of the model at ``path`` (unversioned: version 1)."""
    if not path.exists():
        raise ModelLoadError(f"model {path} does not exist")
    numbered = (
        {
            int(child.name): child
            for child in path.iterdir()
            if child.is_dir() and child.name.isdigit()
        }
        if path.is_dir()
        else {}
    )
    return numbered or {1: path}


class PythonClient(VersionedModels):
    """Named, versioned models loaded by the predictor's ``load_model``, once each."""

    def __init__(self, models: Mapping[str, Path]) -> None:
        super().__init__({name: versions(path) for name, path in models.items()})
        self._load: Callable[[str], Any] | None = None

    def bind(self, load_model: Callable[[str], Any]) -> None:
        """Set the predictor's ``load_model``, once it exists (after ``__init__``)."""
        self._load = load_model

    def get_model(self, model_name: str | None = None, model_version: str | None = "latest") -> Any:
        return self._get(model_name, model_version, self._build)

    def _build(self, path: Path) -> Any:
        if self._load is None:
            raise ModelError("get_model was called before the predictor's __init__ returned")
        return self._load(str(path))
