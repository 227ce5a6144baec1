"""TorchScript modules saved with torch.jit.save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ferry.errors import BadRequest, ModelLoadError
from ferry.models.loaders import load_source
from ferry.types import Rows

from .conftest import MakeSource

pytestmark = [
    pytest.mark.torch,
    # torch 2.13 deprecates TorchScript in favour of torch.export; users still bring .pt files.
    pytest.mark.filterwarnings(
        r"ignore:`torch\.jit\.(script|save)` is deprecated:DeprecationWarning"
    ),
]
torch = pytest.importorskip("torch")


def _save(tmp_path: Path) -> tuple[Any, Path]:
    torch.manual_seed(0)
    module = torch.jit.script(
        torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    )
    path = tmp_path / "mlp.pt"
    torch.jit.save(module, str(path))
    return module, path


def test_scripted_module_predicts_like_itself(
    tmp_path: Path, make_source: MakeSource, iris: tuple[Any, Any]
) -> None:
    X, _ = iris
    module, path = _save(tmp_path)
    model = load_source(make_source(path, "torchscript"), threads=1)
    model.warmup()
    with torch.inference_mode():
        expected = module(torch.from_numpy(X.astype(np.float32))).numpy()
    prediction = model.predict_rows(Rows(X))
    assert prediction.values.dtype == np.float32
    np.testing.assert_allclose(prediction.values, expected, atol=1e-6)


def test_wrong_width_is_a_bad_request(tmp_path: Path, make_source: MakeSource) -> None:
    _, path = _save(tmp_path)
    model = load_source(make_source(path, "torchscript"))
    with pytest.raises(BadRequest, match="shapes cannot be multiplied"):
        model.predict_rows(Rows(np.zeros((2, 3))))
    named = load_source(make_source(path, "torchscript", feature_names=("a", "b", "c", "d")))
    with pytest.raises(BadRequest, match="expected 4 features per row, got 3"):
        named.predict_rows(Rows(np.zeros((2, 3))))


def test_not_a_torchscript_file(tmp_path: Path, make_source: MakeSource) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"nope")
    with pytest.raises(ModelLoadError, match=r"^model.pt: not a TorchScript archive"):
        load_source(make_source(path, "torchscript"))
