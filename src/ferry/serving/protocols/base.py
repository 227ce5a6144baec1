"""What a protocol adapter may use: a narrow view of the model server.

Adapters translate bytes and headers into the neutral types of ``ferry.types`` and back.
They receive an ``Inference`` and never see the batcher, the runner or the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ferry.errors import ModelNotReady
from ferry.types import PayloadRequest, Prediction, Rows, Signature

__all__ = ["Inference", "ModelInfo", "require_ready"]


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

    def not_ready_message(self) -> str:
        """Why requests are refused while ``is_ready()`` is false."""
        ...


def require_ready(inference: Inference) -> None:
    """Refuse a request with ``ModelNotReady`` (503) before its body is even decoded.

    Until the model has loaded its signature is not known (a Python predictor looks like a
    row model), so decoding first could answer a good request with a 400 that no client or
    gateway retries; a 503 sends it on to a ready replica.
    """
    if not inference.is_ready():
        raise ModelNotReady(inference.not_ready_message())
