"""model.tar.gz: SageMaker's layout, byte-reproducible, content-addressed key."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ferry.apispec import load_project
from ferry.errors import ArtifactError, ConfigError
from ferry.runtime.aws.artifact import build_archive


def _api(tmp_path: Path, predictor: str):  # type: ignore[no-untyped-def]
    (tmp_path / "ferry.yaml").write_text(f"- name: iris\n  predictor: {predictor}\n")
    return load_project(tmp_path).get("iris")


def test_model_file_at_the_archive_root(tmp_path: Path) -> None:
    (tmp_path / "iris.joblib").write_bytes(b"model bytes")
    api = _api(tmp_path, "{model_path: iris.joblib}")
    first = build_archive(api, tmp_path)
    with tarfile.open(fileobj=io.BytesIO(first.data), mode="r:gz") as tar:
        assert tar.getnames() == ["iris.joblib"]
        assert tar.getmember("iris.joblib").mtime == 0
    assert build_archive(api, tmp_path).data == first.data  # reproducible
    assert first.key("iris") == f"ferry/iris/{first.sha256[:16]}/model.tar.gz"


def test_python_predictor_project_as_a_tree(tmp_path: Path) -> None:
    (tmp_path / "predictor.py").write_text("class PythonPredictor: ...\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"")
    api = _api(tmp_path, "{path: predictor.py}")
    with tarfile.open(fileobj=io.BytesIO(build_archive(api, tmp_path).data)) as tar:
        assert tar.getnames() == ["ferry.yaml", "predictor.py"]


def test_missing_or_remote_models(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        build_archive(_api(tmp_path, "{model_path: gone.joblib}"), tmp_path)
    with pytest.raises(ConfigError, match="upload a local model file"):
        build_archive(_api(tmp_path, "{model_path: 's3://b/m.joblib'}"), tmp_path)
