"""A row model for serving tests: sums each row, and can be held inside predict."""

from __future__ import annotations

import threading

import numpy as np

from ferry.models.base import LoadedModel
from ferry.types import Prediction, Rows, Signature

__all__ = ["GatedSumModel"]


class GatedSumModel(LoadedModel):
    """Sums each row of two features; ``gate.clear()`` holds predictions until ``set()``."""

    name = "gated"
    framework = "pickle"
    signature = Signature(n_features=2)

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()

    def predict_rows(self, rows: Rows) -> Prediction:
        self.gate.wait(5)
        return Prediction(np.asarray(rows.values).sum(axis=1))

    def warmup(self) -> None:
        pass
