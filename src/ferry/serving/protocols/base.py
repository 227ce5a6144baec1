"""What a protocol adapter may use: a narrow view of the model server.

Adapters translate bytes and headers into the neutral types of ``ferry.types`` and back.
They receive an ``Inference`` and never see the batcher, the runner or the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ferry.types import PayloadRequest, Prediction, Rows, Signature

__all__ = ["Inference", "ModelInfo"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Identity of the served model, as the protocols report it."""

    name: str
    version: str
    platform: str  # e.g. "sklearn", "xgboost", "onnx", "python"
    signature: Signature


class Inference(Protocol):
    """The server as an adapter sees it."""

    @property
    def info(self) -> ModelInfo: ...

    def is_ready(self) -> bool: ...

    async def predict_rows(self, rows: Rows) -> Prediction:
        """Validated rows in, one prediction row per input row out (batched underneath)."""
        ...

    async def predict_payload(self, request: PayloadRequest) -> Any:
        """A Python predictor's answer for one payload (batched underneath if configured)."""
        ...
