"""Named, versioned models loaded on first use: what Cortex's model clients share.

Both ``python_client`` (``predictor_python``) and ``onnx_client`` (``predictor_onnx``) map
``get_model(model_name, model_version)`` to one artifact per (name, version), load it once
under a lock, and answer the same errors for an unknown name or version.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ferry.errors import ModelError

__all__ = ["SINGLE", "VersionedModels"]

SINGLE = "_cortex_default"  # the name of the one model of ``path`` / ``model_path``


class VersionedModels:
    """``versions[name][version]`` is a model's artifact; ``loaded`` builds each once."""

    def __init__(self, versions: Mapping[str, dict[int, Path]]) -> None:
        self._versions = dict(versions)
        self._loaded: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def _get(
        self, model_name: str | None, model_version: str | None, build: Callable[[Path], Any]
    ) -> Any:
        """The model ``build`` made of the artifact of (name, version), built on first use."""
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
        with self._lock:
            key = (name, version)
            if key not in self._loaded:
                self._loaded[key] = build(available[version])
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
