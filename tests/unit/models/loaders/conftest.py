"""Fixtures for the loader tests: a way to name a model file as a ModelSource, and iris."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ferry.config import ModelSpec
from ferry.models.base import ModelSource

MakeSource = Callable[..., ModelSource]


@pytest.fixture
def make_source() -> MakeSource:
    """``make_source(path, framework, **spec_fields)`` -> ModelSource, as fetching would give."""

    def make(
        path: Path, framework: str, predictor_class: str | None = None, **spec: Any
    ) -> ModelSource:
        return ModelSource(
            spec=ModelSpec(uri=str(path), framework=framework, **spec),  # type: ignore[arg-type]
            path=path,
            framework=framework,
            name=path.stem,
            load_after_fork=False,
            predictor_class=predictor_class,
        )

    return make


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X, y
