"""The interface every loaded model presents to the serving layer.

A loader turns a local artifact into a ``LoadedModel``. The runner calls ``predict_rows``
(row models) or ``predict_payloads`` (Python predictors) from a worker thread, never on the
event loop, always with a whole batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.config import ModelSpec
from ferry.types import InputKind, PayloadRequest, Prediction, Rows, Signature

__all__ = ["LoadedModel", "ModelSource"]


class LoadedModel(ABC):
    """A model in memory, ready to predict.

    ``predict_rows`` must return exactly one output row per input row; the runner checks.
    """

    name: str
    framework: str
    signature: Signature

    @property
    def input_kind(self) -> InputKind:
        return self.signature.input_kind

    def predict_rows(self, rows: Rows) -> Prediction:
        """Predict a batch of rows (row models)."""
        raise NotImplementedError(f"{self.framework} models take payloads, not rows")

    def predict_payloads(self, requests: list[PayloadRequest]) -> list[Any]:
        """Predict a batch of payloads (Python predictors); one result per request."""
        raise NotImplementedError(f"{self.framework} models take rows, not payloads")

    def post_predict(self, response: Any, request: PayloadRequest) -> None:  # noqa: B027
        """Hook run after the response is sent (Cortex ``post_predict``); default: nothing."""

    @property
    def has_post_predict(self) -> bool:
        return False

    @abstractmethod
    def warmup(self) -> None:
        """Run one real prediction so the first request pays no lazy-init cost."""

    def set_threads(self, n: int) -> None:  # noqa: B027
        """Limit the framework's own threads for this worker (default: nothing to set)."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A model artifact fetched to local disk, with what is known before loading it.

    ``load_after_fork`` is true when the framework starts threads or holds handles on load
    (onnxruntime, torch, user predictors), so each worker process loads its own copy.
    """

    spec: ModelSpec
    path: Path
    framework: str
    name: str
    load_after_fork: bool
    predictor_class: str | None = None
    compiled_cache: Path | None = None
    """Where loaders may keep a compiled form of the model (``models.compiled``); None: off."""

    def load(self, threads: int | None = None) -> LoadedModel:
        """Load the model; ``threads`` caps the framework's own threads from the start."""
        from ferry.models.loaders import load_source

        return load_source(self, threads=threads)
