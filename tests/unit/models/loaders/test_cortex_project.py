"""A Cortex project (tests/fixtures/cortex_project) loaded as ``ferry serve DIR`` loads it.

What Cortex users rely on: the predictor runs in the project directory (relative paths in
``config`` and ``open("labels.json")``), ``python_path`` imports, ``predictor.env`` over
the project's ``.env``, server-side batching, and ``ONNXPredictor`` with ``onnx_client``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ferry.apispec import serve_project
from ferry.errors import ModelError, ModelLoadError
from ferry.models.base import LoadedModel
from ferry.models.loaders.predictor import PredictorModel, project_dir
from ferry.models.loaders.predictor_onnx import ONNXClient
from ferry.models.source import open_source
from ferry.serving.protocols.payload import RequestHeaders
from ferry.types import PayloadRequest

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "cortex_project"
SETOSA = {"sepal_length": 5.2, "sepal_width": 3.6, "petal_length": 1.4, "petal_width": 0.3}
VIRGINICA = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture project, copied and trained (``python trainer.py``) as a user would."""
    pytest.importorskip("skl2onnx")
    root = tmp_path_factory.mktemp("cortex") / "project"
    shutil.copytree(FIXTURE, root)
    subprocess.run([sys.executable, "trainer.py"], cwd=root, check=True)
    return root


@pytest.fixture(autouse=True)
def _restore_cwd_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # loading a project predictor changes the directory and sets .env variables
    monkeypatch.chdir(tmp_path)
    for key in ("STAGE", "GREETING"):
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)


def load_api(root: Path, name: str, monkeypatch: pytest.MonkeyPatch, cache: Path) -> LoadedModel:
    found = serve_project(root, name)
    assert found is not None
    spec, _, env = found
    for key, value in env.items():  # what `ferry serve DIR` does before its workers start
        monkeypatch.setenv(key, value)
    return open_source(spec, cache_dir=cache).load()


def ask(model: LoadedModel, *requests: PayloadRequest) -> list[Any]:
    assert isinstance(model, PredictorModel)
    return model.predict_payloads(list(requests))


def test_a_cortex_predictor_runs_in_its_project_with_env_over_dotenv(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = load_api(project, "iris-classifier", monkeypatch, tmp_path / "cache")
    assert Path.cwd() == project.resolve()
    assert ask(model, PayloadRequest(SETOSA)) == ["setosa"]
    answer = ask(
        model, PayloadRequest(VIRGINICA, {"debug": "1"}, RequestHeaders({"x-tenant": "acme"}))
    )
    assert answer == [
        {"label": "virginica", "greeting": "hello", "stage": "test", "tenant": "acme"}
    ]


def test_server_side_batching_hands_predict_lists(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = load_api(project, "iris-batch", monkeypatch, tmp_path / "cache")
    assert ask(model, PayloadRequest(SETOSA), PayloadRequest(VIRGINICA)) == [
        "setosa",
        "virginica",
    ]


def test_an_onnx_predictor_gets_an_onnx_client_over_named_models(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = load_api(project, "iris-onnx", monkeypatch, tmp_path / "cache")
    for name in ("logreg", "tree"):
        answers = ask(
            model,
            PayloadRequest(SETOSA, {"model": name}),
            PayloadRequest(VIRGINICA, {"model": name}),
        )
        assert answers == ["setosa", "virginica"]
    with pytest.raises(ModelError, match="no model 'knn'; the models are logreg, tree"):
        ask(model, PayloadRequest(SETOSA, {"model": "knn"}))


def test_the_api_settings_become_the_server_settings(project: Path) -> None:
    found = serve_project(project, "iris-classifier")
    assert found is not None
    spec, overrides, env = found
    assert spec.uri == f"{project.resolve() / 'src' / 'predictor.py'}:PythonPredictor"
    assert spec.python_path == str(project.resolve() / "src")
    assert spec.config == {"model": "model.pkl", "labels": "labels.json"}
    assert (overrides["workers"], overrides["predictor_threads"]) == (1, 2)
    assert overrides["log_level"] == "debug"
    assert env == {"GREETING": "hello"}
    batch = serve_project(project, "iris-batch")
    assert batch is not None
    assert batch[0].predictor_batching is True
    assert (batch[1]["max_batch_size"], batch[1]["max_batch_wait_ms"]) == (4, 50.0)
    onnx = serve_project(project, "iris-onnx")
    assert onnx is not None
    assert onnx[0].uri.endswith("onnx_predictor.py:ONNXPredictor")
    first = serve_project(project)  # the first RealtimeAPI
    assert first is not None
    assert first[0].name == "iris-classifier"
    assert serve_project(project / "cortex.yaml") == first  # the file, as `cortex deploy` took it
    assert serve_project(project / "src") is None  # no project file there


def test_project_dir_stops_at_the_python_path(tmp_path: Path) -> None:
    (tmp_path / "cortex.yaml").write_text("[]")
    (tmp_path / "src").mkdir()
    predictor = tmp_path / "src" / "predictor.py"
    predictor.write_text("")
    assert project_dir(predictor, str(tmp_path / "src")) == tmp_path.resolve()
    assert project_dir(predictor, None) is None  # no project file beside a lone predictor
    assert project_dir(tmp_path / "predictor.py", None) == tmp_path.resolve()


def test_a_bad_dotenv_line_names_the_file_and_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(project, broken)
    (broken / ".env").write_text("# comment\nSTAGE=test\nnot a variable\n")
    with pytest.raises(ModelLoadError, match=r"\.env:3: expected VARIABLE=value"):
        load_api(broken, "iris-classifier", monkeypatch, tmp_path / "cache")


def test_an_onnx_predictor_outside_a_project_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry.config import ModelSpec

    (tmp_path / "p.py").write_text(
        "class ONNXPredictor:\n"
        "    def __init__(self, onnx_client, config):\n        pass\n"
        "    def predict(self, payload):\n        return 1\n"
    )
    spec = ModelSpec(uri=f"{tmp_path / 'p.py'}:ONNXPredictor")
    with pytest.raises(ModelLoadError, match="takes onnx_client, which needs the API's"):
        open_source(spec, cache_dir=tmp_path / "cache").load()


def test_the_onnx_client_converts_inputs_and_picks_versions(project: Path) -> None:
    client = ONNXClient({"logreg": project / "onnx" / "logreg"})
    assert client.metadata == {"logreg": {"versions": ["1"]}}
    # a flat row is reshaped to the input's [None, 4]; ints become float32
    (labels, _probabilities) = client.predict([6, 3, 5, 2], "logreg")
    assert labels.tolist() == [2]
    assert client.predict({"input": [SETOSA_ROW]}, "logreg", "1")[0].tolist() == [0]
    with pytest.raises(ModelError, match="has no version '7'"):
        client.predict([SETOSA_ROW], "logreg", "7")
    with pytest.raises(ModelError, match="model_name was not given"):
        client.predict([SETOSA_ROW])
    with pytest.raises(ModelError, match="cannot make a float32 tensor"):
        client.predict([[1.0, 2.0, 3.0]], "logreg")


SETOSA_ROW = [5.2, 3.6, 1.4, 0.3]


def test_a_missing_onnx_model_fails_the_load(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"expected one \.onnx file, found none"):
        ONNXClient({"m": tmp_path / "empty"})
    with pytest.raises(ModelLoadError, match="does not exist"):
        ONNXClient({"m": tmp_path / "nope.onnx"})


def test_cwd_is_left_alone_for_a_predictor_without_a_project(
    tmp_path: Path, make_source: Any
) -> None:
    before = os.getcwd()
    (tmp_path / "lone.py").write_text(
        "class P:\n    def predict(self, payload):\n        return 1\n"
    )
    make_source(tmp_path / "lone.py", "python", predictor_class="P").load()
    assert os.getcwd() == before


def test_cortex_structured_logger_is_provided(
    tmp_path: Path, make_source: Any, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "logs.py").write_text(
        "from cortex_internal.lib.log import logger as cortex_logger\n\n"
        "class PythonPredictor:\n"
        "    def predict(self, payload):\n"
        "        cortex_logger.info('received payload', extra={'payload': payload})\n"
        "        return payload\n"
    )
    model = make_source(tmp_path / "logs.py", "python", predictor_class="PythonPredictor").load()
    with caplog.at_level("INFO", logger="ferry.predictor"):
        assert ask(model, PayloadRequest({"a": 1})) == [{"a": 1}]
    (record,) = [r for r in caplog.records if r.name == "ferry.predictor"]
    assert (record.getMessage(), record.__dict__["payload"]) == ("received payload", {"a": 1})


MULTI_MODEL = """
import os
import pickle


class PythonPredictor:
    def __init__(self, config, python_client):
        self.client = python_client
        self.loads = []

    def load_model(self, model_path):
        self.loads.append(os.path.relpath(model_path))
        with open(os.path.join(model_path, "model.pkl"), "rb") as f:
            return pickle.load(f)

    def predict(self, payload, query_params):
        model = self.client.get_model(query_params["model"], query_params.get("version", "latest"))
        return {"y": model["y"], "loads": list(self.loads)}
"""


@pytest.mark.parametrize("layout", ["dir", "paths"])
def test_multi_model_reloading_gives_a_python_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    import pickle

    root = tmp_path / "project"
    for name, version in (("a", 1), ("a", 2), ("b", 1)):
        folder = root / "models" / name / str(version)
        folder.mkdir(parents=True)
        (folder / "model.pkl").write_bytes(pickle.dumps({"y": f"{name}{version}"}))
    (root / "predictor.py").write_text(MULTI_MODEL)
    models = (
        "dir: models/"
        if layout == "dir"
        else "paths: [{name: a, path: models/a}, {name: b, path: models/b}]"
    )
    (root / "cortex.yaml").write_text(
        "- name: mm\n  predictor:\n    path: predictor.py\n"
        f"    multi_model_reloading:\n      {models}\n      cache_size: 1\n"
    )
    model = load_api(root, "mm", monkeypatch, tmp_path / "cache")
    assert ask(model, PayloadRequest({}, {"model": "a"})) == [{"y": "a2", "loads": ["models/a/2"]}]
    assert ask(model, PayloadRequest({}, {"model": "a", "version": "1"}))[0]["y"] == "a1"
    again = ask(model, PayloadRequest({}, {"model": "a"}))[0]
    assert again["loads"] == ["models/a/2", "models/a/1"]  # loaded once each, then kept
    with pytest.raises(ModelError, match="no model 'c'; the models are a, b"):
        ask(model, PayloadRequest({}, {"model": "c"}))


def test_cortex_v0_24_model_path_beside_a_predictor_feeds_its_python_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    root = tmp_path / "mpg"
    (root / "linreg" / "1").mkdir(parents=True)
    (root / "linreg" / "1" / "model.pkl").write_bytes(pickle.dumps({"y": "v1"}))
    (root / "linreg" / "2").mkdir()
    (root / "linreg" / "2" / "model.pkl").write_bytes(pickle.dumps({"y": "v2"}))
    (root / "predictor.py").write_text(
        MULTI_MODEL.replace(
            'self.client.get_model(query_params["model"], query_params.get("version", "latest"))',
            'self.client.get_model(model_version=query_params.get("version"))',
        )
    )
    (root / "cortex.yaml").write_text(
        "- name: mpg\n  predictor:\n    type: python\n    path: predictor.py\n"
        "    model_path: linreg/\n"
    )
    model = load_api(root, "mpg", monkeypatch, tmp_path / "cache")
    assert ask(model, PayloadRequest({}))[0]["y"] == "v2"
    assert ask(model, PayloadRequest({}, {"version": "1"}))[0]["y"] == "v1"


def test_a_project_directory_opened_as_a_model_serves_its_onnx_predictor(
    project: Path, tmp_path: Path
) -> None:
    # what a SageMaker-style model directory holding the project goes through
    from ferry.config import ModelSpec

    source = open_source(ModelSpec(uri=str(project), name="iris-onnx"), cache_dir=tmp_path)
    assert (source.framework, source.predictor_class) == ("python", "ONNXPredictor")
    assert ask(source.load(), PayloadRequest(VIRGINICA, {"model": "tree"})) == ["virginica"]
