"""Resolving files, predictors, project dirs and SageMaker model dirs into a ModelSource."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from ferry.config import ModelSpec
from ferry.errors import ConfigError, ModelLoadError
from ferry.models import ModelSource, open_source

PREDICTOR = """
class PythonPredictor:
    def __init__(self, config):
        self.config = config

    def predict(self, payload):
        return payload
"""


def _open(uri: str | Path, tmp_path: Path, **spec: object) -> ModelSource:
    return open_source(ModelSpec(uri=str(uri), **spec), cache_dir=tmp_path / "cache")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def iris(tmp_path: Path, iris_model_path: Path) -> Path:
    return Path(shutil.copy(iris_model_path, tmp_path / "iris.joblib"))


# --- model files ---------------------------------------------------------------------------


def test_model_file_is_detected_and_named_after_its_stem(tmp_path: Path, iris: Path) -> None:
    source = _open(iris, tmp_path)
    assert (source.path, source.framework, source.name) == (iris, "pickle", "iris")
    assert source.load_after_fork is False
    assert source.predictor_class is None


def test_explicit_sklearn_counts_as_pickle(tmp_path: Path, iris: Path) -> None:
    assert _open(iris, tmp_path, framework="sklearn").framework == "pickle"


def test_explicit_framework_wins_over_detection(tmp_path: Path, iris: Path) -> None:
    source = _open(iris, tmp_path, framework="onnx")
    assert (source.framework, source.load_after_fork) == ("onnx", True)


def test_name_is_sanitised_and_spec_name_wins(tmp_path: Path, iris: Path) -> None:
    odd = Path(shutil.copy(iris, tmp_path / "my model (v2)!.joblib"))
    assert _open(odd, tmp_path).name == "my-model-v2"
    assert _open(iris, tmp_path, name="flowers/prod").name == "flowers-prod"


def test_missing_model_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.joblib"
    with pytest.raises(ModelLoadError) as caught:
        _open(missing, tmp_path)
    assert str(caught.value) == f"model file {missing} does not exist"


def test_unrecognised_file_says_how_to_choose(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="pass --framework to choose"):
        _open(_write(tmp_path / "model.dat", "??"), tmp_path)


# --- Python predictors ---------------------------------------------------------------------


def test_file_and_class_give_a_python_source(tmp_path: Path) -> None:
    file = _write(tmp_path / "app" / "predictor.py", PREDICTOR + "\nclass Other:\n    pass\n")
    source = _open(f"{file}:Other", tmp_path)
    assert (source.framework, source.predictor_class, source.name) == (
        "python",
        "Other",
        "predictor",
    )
    assert source.path == file
    assert source.load_after_fork is True
    assert source.spec.python_path == str(file.parent)


def test_python_predictor_class_is_found_without_a_name(tmp_path: Path) -> None:
    file = _write(tmp_path / "handler.py", "class Helper:\n    pass\n" + PREDICTOR)
    assert _open(file, tmp_path).predictor_class == "PythonPredictor"


def test_the_one_class_with_predict_is_found(tmp_path: Path) -> None:
    text = "class Util:\n    pass\n\nclass Scorer:\n    def predict(self, p):\n        return 1\n"
    assert _open(_write(tmp_path / "s.py", text), tmp_path).predictor_class == "Scorer"


def test_two_candidate_classes_must_be_named(tmp_path: Path) -> None:
    text = "class A:\n    def predict(self, p): ...\n\nclass B:\n    def predict(self, p): ...\n"
    with pytest.raises(ModelLoadError, match=r"found: A, B\); name it as two.py:ClassName"):
        _open(_write(tmp_path / "two.py", text), tmp_path)


def test_named_class_must_exist(tmp_path: Path) -> None:
    file = _write(tmp_path / "p.py", PREDICTOR)
    with pytest.raises(ModelLoadError, match=r"defines no class Missing \(classes found: Python"):
        _open(f"{file}:Missing", tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "from collections import OrderedDict as Model\n",
        "try:\n    import json\nexcept ImportError:\n    pass\nelse:\n    class Model: ...\n",
        "Model = type('Model', (), {})\n",
    ],
)
def test_class_made_other_ways_may_be_named(tmp_path: Path, text: str) -> None:
    file = _write(tmp_path / "p.py", text)
    assert _open(f"{file}:Model", tmp_path).predictor_class == "Model"


def test_predictor_with_syntax_error_points_at_the_line(tmp_path: Path) -> None:
    file = _write(tmp_path / "broken.py", "class P:\n    def predict(self:\n")
    with pytest.raises(ModelLoadError, match=r"broken.py:2: syntax error"):
        _open(file, tmp_path)


def test_missing_predictor_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"predictor file .*gone.py does not exist"):
        _open(f"{tmp_path / 'gone.py'}:P", tmp_path)


def test_remote_predictor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="must be a local file"):
        _open("https://example.com/predictor.py:P", tmp_path)


def test_predictor_code_is_not_run_while_resolving(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"open({str(marker)!r}, 'w').close()\n" + PREDICTOR
    _open(_write(tmp_path / "side_effect.py", text), tmp_path)
    assert not marker.exists()


# --- project directories (ferry.yaml / cortex.yaml) ----------------------------------------

CORTEX = """
- name: text-generator
  kind: RealtimeAPI
  predictor:
    type: python
    path: src/predictor.py
    config:
      greeting: hello
      threshold: 0.5
    server_side_batching:
      max_batch_size: 8
      batch_interval: 0.1s
- name: batch-job
  kind: BatchAPI
  predictor:
    type: python
    path: src/predictor.py
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    _write(tmp_path / "proj" / "src" / "predictor.py", PREDICTOR)
    _write(tmp_path / "proj" / "cortex.yaml", CORTEX)
    return tmp_path / "proj"


def test_cortex_project_gives_its_predictor_with_config(tmp_path: Path, project: Path) -> None:
    source = _open(project, tmp_path, config={"threshold": 0.9})
    assert source.framework == "python"
    assert source.predictor_class == "PythonPredictor"
    assert source.path == project / "src" / "predictor.py"
    assert source.name == "text-generator"
    assert source.spec.python_path == str(project)
    # the CLI's config overrides the file's, key by key
    assert source.spec.config == {"greeting": "hello", "threshold": 0.9}
    assert source.spec.predictor_batching is True


def test_project_api_is_picked_by_name(tmp_path: Path, project: Path) -> None:
    text = CORTEX.replace("- name: batch-job\n  kind: BatchAPI", "- name: second")
    _write(project / "cortex.yaml", text)
    source = _open(project, tmp_path, name="second")
    assert source.name == "second"
    assert source.spec.config == {}
    assert source.spec.predictor_batching is False
    with pytest.raises(ConfigError, match=r"no RealtimeAPI named 'third' \(found: text-gen"):
        _open(project, tmp_path, name="third")


def test_ferry_project_with_model_path(tmp_path: Path, iris: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copy(iris, _write(proj / "models" / "placeholder", "").parent / "iris.joblib")
    (proj / "models" / "placeholder").unlink()
    _write(
        proj / "ferry.yaml",
        "- name: iris-api\n  predictor:\n    model_path: models/iris.joblib\n"
        "    config: {labels: flowers}\n",
    )
    source = _open(proj, tmp_path)
    assert (source.framework, source.name) == ("pickle", "iris-api")
    assert source.path == proj / "models" / "iris.joblib"
    assert source.spec.config == {"labels": "flowers"}
    assert source.load_after_fork is False


def test_project_output_settings_reach_the_spec(tmp_path: Path, iris: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(iris, proj / "iris.joblib")
    _write(
        proj / "ferry.yaml",
        "- name: iris\n  predictor:\n    model_path: iris.joblib\n    predict_proba: true\n"
        "    labels: {0: setosa, 1: versicolor, 2: virginica}\n"
        "    feature_names: [a, b, c, d]\n",
    )
    source = _open(proj, tmp_path)
    assert source.spec.predict_proba is True
    assert source.spec.labels == {0: "setosa", 1: "versicolor", 2: "virginica"}
    assert source.spec.feature_names == ("a", "b", "c", "d")
    flagged = _open(proj, tmp_path, labels={0: "zero"})
    assert flagged.spec.labels == {0: "zero"}  # the command line wins


def test_project_model_path_must_exist(tmp_path: Path) -> None:
    _write(tmp_path / "p" / "ferry.yaml", "- name: a\n  predictor: {model_path: m.joblib}\n")
    with pytest.raises(ModelLoadError, match=r"model file .*m.joblib does not exist"):
        _open(tmp_path / "p", tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- name: a\n  predictor: [1\n", r"cortex.yaml: invalid YAML at line \d"),
        ("just a string\n", r"cortex.yaml: expected a list of APIs"),
        ("- name: a\n", r"cortex.yaml: \[0\].predictor: missing"),
        ("- name: a\n  predictor: {path: p.py, config: [1]}\n",
         r"\[0\].predictor.config: expected a mapping"),
        ("- kind: RealtimeAPI\n", r"cortex.yaml: \[0\].name: missing"),
        ("- name: a\n  predictor: {type: tensorflow, model_path: m}\n",
         r"\[0\].predictor.type: 'tensorflow' is not supported"),
        ("- name: a\n  kind: BatchAPI\n  predictor: {path: p.py}\n", r"no API of kind RealtimeAPI"),
        ("- name: a\n  predictor: {type: onnx}\n", r"\[0\].predictor.model_path: missing"),
    ],
)  # fmt: skip
def test_project_file_errors_name_the_file_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    _write(tmp_path / "p" / "cortex.yaml", text)
    with pytest.raises(ConfigError, match=message):
        _open(tmp_path / "p", tmp_path)


# --- SageMaker-style model directories -----------------------------------------------------


def test_sagemaker_dir_with_one_model(tmp_path: Path, iris: Path) -> None:
    model_dir = tmp_path / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    shutil.copy(iris, model_dir / "model.joblib")
    _write(model_dir / ".hidden.pkl", "not a model")
    _write(model_dir / "code" / "requirements.txt", "scikit-learn\n")
    _write(model_dir / "README.txt", "notes")
    source = _open(model_dir, tmp_path)
    assert (source.path, source.framework, source.name) == (
        model_dir / "model.joblib",
        "pickle",
        "model",
    )


def test_sagemaker_dir_model_one_level_down(tmp_path: Path, iris: Path) -> None:
    shutil.copy(iris, _write(tmp_path / "m" / "sub" / "x", "").parent / "clf.joblib")
    (tmp_path / "m" / "sub" / "x").unlink()
    shutil.copy(iris, _write(tmp_path / "m" / "code" / "x", "").parent / "ignored.joblib")
    source = _open(tmp_path / "m", tmp_path)
    assert source.path == tmp_path / "m" / "sub" / "clf.joblib"


def test_sagemaker_dir_prefers_the_file_named_model(tmp_path: Path, iris: Path) -> None:
    (tmp_path / "m").mkdir()
    shutil.copy(iris, tmp_path / "m" / "encoder.joblib")
    shutil.copy(iris, tmp_path / "m" / "model.joblib")
    assert _open(tmp_path / "m", tmp_path).path == tmp_path / "m" / "model.joblib"


def test_ambiguous_sagemaker_dir_lists_the_candidates(tmp_path: Path, iris: Path) -> None:
    (tmp_path / "m").mkdir()
    shutil.copy(iris, tmp_path / "m" / "a.joblib")
    shutil.copy(iris, tmp_path / "m" / "b.joblib")
    with pytest.raises(ModelLoadError, match=r"several model files \(a.joblib, b.joblib\)"):
        _open(tmp_path / "m", tmp_path)


def test_sagemaker_dir_with_model_tar_gz_is_unpacked(tmp_path: Path, iris: Path) -> None:
    (tmp_path / "m").mkdir()
    with tarfile.open(tmp_path / "m" / "model.tar.gz", "w:gz") as archive:
        archive.add(iris, arcname="model.joblib")
        info = tarfile.TarInfo("code/inference.py")
        info.size = 6
        archive.addfile(info, io.BytesIO(b"x = 1\n"))
    source = _open(tmp_path / "m", tmp_path)
    assert source.framework == "pickle"
    assert source.path.name == "model.joblib"
    assert source.path.is_relative_to(tmp_path / "cache")
    assert source.path.read_bytes() == iris.read_bytes()


def test_sagemaker_dir_with_inference_predictor(tmp_path: Path, iris: Path) -> None:
    (tmp_path / "m").mkdir()
    shutil.copy(iris, tmp_path / "m" / "model.joblib")
    file = _write(tmp_path / "m" / "code" / "inference.py", PREDICTOR)
    source = _open(tmp_path / "m", tmp_path)
    assert (source.framework, source.path, source.predictor_class) == (
        "python",
        file,
        "PythonPredictor",
    )
    assert source.spec.python_path == str(file.parent)


def test_inference_py_without_predictor_class_is_not_a_predictor(
    tmp_path: Path, iris: Path
) -> None:
    (tmp_path / "m").mkdir()
    shutil.copy(iris, tmp_path / "m" / "model.joblib")
    _write(tmp_path / "m" / "code" / "inference.py", "def model_fn(model_dir): ...\n")
    assert _open(tmp_path / "m", tmp_path).framework == "pickle"


def test_empty_dir_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelLoadError, match=r"no model file found in .*m: expected one"):
        _open(tmp_path / "m", tmp_path)
