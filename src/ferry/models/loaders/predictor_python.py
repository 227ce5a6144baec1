"""Cortex's ``python_client`` for multi-model Python predictors (``multi_model_reloading``).

Cortex handed ``PythonPredictor.__init__(self, config, python_client)`` a client whose
``get_model(model_name=None, model_version="latest")`` returns what the predictor's own
``load_model(self, model_path)`` returned for that model's folder, loading it on first use
and keeping it. A model is a folder (or a file) of ``multi_model_reloading.path``,
``paths`` or ``dir`` (or, as in Cortex v0.24-v0.25, ``models`` or ``model_path``);
numbered subfolders (``1/``, ``2/``...) are its versions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ferry.errors import ModelError, ModelLoadError

__all__ = ["SINGLE", "PythonClient", "versions"]

SINGLE = "_cortex_default"  # the name of the one model of ``path``


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


class PythonClient:
    """Named, versioned models loaded by the predictor's ``load_model``, once each."""

    def __init__(self, models: Mapping[str, Path]) -> None:
        self._versions = {name: versions(path) for name, path in models.items()}
        self._loaded: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()
        self._load: Callable[[str], Any] | None = None

    def bind(self, load_model: Callable[[str], Any]) -> None:
        """Set the predictor's ``load_model``, once it exists (after ``__init__``)."""
        self._load = load_model

    def get_model(self, model_name: str | None = None, model_version: str | None = "latest") -> Any:
        name = self._name(model_name)
        available = self._versions[name]
        if model_version in ("latest", None):  # query_params.get("version") may be None
            version = max(available)
        elif str(model_version).isdigit() and int(model_version) in available:
            version = int(model_version)
        else:
            raise ModelError(
                f"model {name!r} has no version {model_version!r} "
                f"(versions: {', '.join(map(str, sorted(available)))})"
            )
        if self._load is None:
            raise ModelError("get_model was called before the predictor's __init__ returned")
        with self._lock:
            key = (name, version)
            if key not in self._loaded:
                self._loaded[key] = self._load(str(available[version]))
            return self._loaded[key]

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            name: {"versions": [str(v) for v in sorted(found)]}
            for name, found in self._versions.items()
        }

    def _name(self, model_name: str | None) -> str:
        if SINGLE in self._versions:
            return SINGLE
        if model_name is None or model_name not in self._versions:
            given = "model_name was not given" if model_name is None else f"no model {model_name!r}"
            raise ModelError(f"{given}; the models are {', '.join(sorted(self._versions))}")
        return model_name
