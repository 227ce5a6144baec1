"""Framework detection on real model files trained in the test run."""

from __future__ import annotations

import pickle
import shutil
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest

from ferry.errors import ModelLoadError
from ferry.models.detect import detect_framework


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((60, 4))
    return x, (x[:, 0] > 0.5).astype(np.int64)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, data: tuple[np.ndarray, np.ndarray]) -> Path:
    """A directory with one small real model per supported format."""
    import lightgbm
    import skl2onnx
    import xgboost
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    x, y = data
    out = tmp_path_factory.mktemp("detect")
    sk = LogisticRegression().fit(x, y)
    joblib.dump(sk, out / "sk.joblib")
    joblib.dump(sk, out / "sk_zlib.joblib", compress=3)
    (out / "sk.pkl").write_bytes(pickle.dumps(sk, protocol=4))
    booster = xgboost.train({"objective": "binary:logistic"}, xgboost.DMatrix(x, label=y), 2)
    booster.save_model(out / "xgb.json")
    booster.save_model(out / "xgb.ubj")
    # XGBoost writes UBJSON under any other extension (and warns); copy to skip the warning
    for suffix in ("model", "bst"):
        shutil.copy(out / "xgb.ubj", out / f"xgb.{suffix}")
    lgb = lightgbm.train({"objective": "binary", "verbose": -1}, lightgbm.Dataset(x, y), 2)
    lgb.save_model(out / "lgb.txt")
    lgb.save_model(out / "lgb.model")
    onnx = skl2onnx.convert_sklearn(sk, initial_types=[("x", FloatTensorType([None, 4]))])
    (out / "sk.onnx").write_bytes(onnx.SerializeToString())
    _torchscript_like(out / "net.pt")
    return out


def _torchscript_like(path: Path) -> None:
    # the layout torch.jit.save writes; the loader, not detection, needs torch itself
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("net/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("net/code/__torch__/net.py", "class Net: ...\n")
        archive.writestr("net/constants.pkl", b"\x80\x02).")
        archive.writestr("net/version", "3\n")


@pytest.mark.parametrize(
    ("filename", "framework"),
    [
        ("sk.joblib", "pickle"),
        ("sk_zlib.joblib", "pickle"),
        ("sk.pkl", "pickle"),
        ("xgb.json", "xgboost"),
        ("xgb.ubj", "xgboost"),
        ("xgb.model", "xgboost"),
        ("xgb.bst", "xgboost"),
        ("lgb.txt", "lightgbm"),
        ("lgb.model", "lightgbm"),
        ("sk.onnx", "onnx"),
        ("net.pt", "torchscript"),
    ],
)
def test_detects_by_extension(models: Path, filename: str, framework: str) -> None:
    assert detect_framework(models / filename) == framework


@pytest.mark.parametrize(
    ("filename", "framework"),
    [
        ("sk.joblib", "pickle"),
        ("sk_zlib.joblib", "pickle"),
        ("xgb.json", "xgboost"),
        ("xgb.ubj", "xgboost"),
        ("lgb.txt", "lightgbm"),
        ("sk.onnx", "onnx"),
        ("net.pt", "torchscript"),
    ],
)
def test_sniffs_content_when_the_extension_says_nothing(
    models: Path, tmp_path: Path, filename: str, framework: str
) -> None:
    # SageMaker's built-in algorithms write files such as "xgboost-model" with no extension
    renamed = tmp_path / "model-artifact"
    shutil.copy(models / filename, renamed)
    assert detect_framework(renamed) == framework


def test_json_that_is_not_an_xgboost_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"threshold": 0.5}')
    with pytest.raises(ModelLoadError, match=r"cannot tell the framework of .*settings\.json"):
        detect_framework(path)


def test_zip_without_torchscript_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(ModelLoadError, match=r"weights\.pt"):
        detect_framework(path)


def test_text_that_is_not_lightgbm_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("scikit-learn\n")
    with pytest.raises(ModelLoadError):
        detect_framework(path)


def test_unknown_file_error_names_the_accepted_kinds_and_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "notes.bin"
    path.write_bytes(b"hello, world")
    with pytest.raises(ModelLoadError) as caught:
        detect_framework(path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"cannot tell the framework of {path}" in message
    for hint in (".joblib/.pkl", ".json/.ubj", ".txt", ".onnx", ".pt", "FILE.py:ClassName"):
        assert hint in message
    assert "pass --framework to choose" in message


def test_joblib_gzip_is_a_pickle_but_a_tar_gz_is_not_a_model(tmp_path: Path, models: Path) -> None:
    import tarfile

    joblib.dump(joblib.load(models / "sk.joblib"), tmp_path / "sk.pkl.gz")
    assert detect_framework(tmp_path / "sk.pkl.gz") == "pickle"
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        archive.add(models / "sk.joblib", arcname="model.joblib")
    with pytest.raises(ModelLoadError):
        detect_framework(tmp_path / "model.tar.gz")


def test_a_directory_is_not_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a file"):
        detect_framework(tmp_path)
