"""Dispatch from ModelSource.framework to a loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ferry.errors import ModelLoadError
from ferry.models.loaders import FRAMEWORKS, load_source

from .conftest import MakeSource


def test_every_framework_of_the_config_has_a_loader() -> None:
    assert set(FRAMEWORKS) == {
        "pickle",
        "sklearn",
        "xgboost",
        "lightgbm",
        "onnx",
        "torchscript",
        "python",
    }


def test_undetected_framework_is_a_load_error(tmp_path: Path, make_source: MakeSource) -> None:
    with pytest.raises(ModelLoadError, match=r"model.bin: unknown framework 'auto'"):
        load_source(make_source(tmp_path / "model.bin", "auto"))


def test_model_source_load_goes_through_the_loaders(
    tmp_path: Path, make_source: MakeSource
) -> None:
    path = tmp_path / "p.py"
    path.write_text("class P:\n    def predict(self, payload):\n        return payload\n")
    assert make_source(path, "python").load().predict_payloads([]) == []


def test_importing_the_loaders_imports_no_framework() -> None:
    code = (
        "import sys, ferry.models.loaders;"
        "heavy = {'sklearn', 'xgboost', 'lightgbm', 'onnxruntime', 'torch', 'pandas'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
