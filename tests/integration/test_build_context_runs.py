"""`ferry build` of an API works without Docker: the context's pinned requirements install
into a fresh venv (ferry from the context's own wheel), and the image's command, run with
/opt/ml laid out by the Dockerfile's own COPY lines, serves the API as ferry.yaml says.

Two APIs: a Cortex predictor (its code and the generated ferry.yaml) and a model served
without code (``model_path``) whose ferry.yaml sets labels, feature names or
probabilities, which the image must answer with. tests/integration/test_docker_context.py
does the same for a rendered context with a bare model.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.image import Container, install, run

from ferry.cli.main import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cortex"
VIRGINICA = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
# ferry's own model fields, no predictor class: the image gets them only through the
# ferry.yaml that `ferry build` writes next to the model
MODEL_PATH_YAML = """\
- name: iris-named
  kind: RealtimeAPI
  predictor:
    type: python
    model_path: models/iris.joblib
    labels: {0: setosa, 1: versicolor, 2: virginica}
    feature_names: [sepal_length, sepal_width, petal_length, petal_width]
- name: iris-proba
  kind: RealtimeAPI
  predictor:
    model_path: models/iris.joblib
    predict_proba: true
"""


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory, iris_model_path: Path) -> dict[str, Path]:
    """examples/cortex (models trained) and a project serving a model file without code."""
    cortex = tmp_path_factory.mktemp("project") / "cortex"
    shutil.copytree(EXAMPLE, cortex, ignore=shutil.ignore_patterns("models", "__pycache__"))
    run([sys.executable, "train.py"], cwd=cortex)
    plain = tmp_path_factory.mktemp("project") / "plain"
    (plain / "models").mkdir(parents=True)
    shutil.copy(iris_model_path, plain / "models" / "iris.joblib")
    (plain / "ferry.yaml").write_text(MODEL_PATH_YAML)
    return {"cortex": cortex, "plain": plain}


@pytest.fixture(scope="module")
def venv_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """A fresh venv with a context's requirements.txt (and wheels) installed, per content."""
    made: dict[str, Path] = {}

    def venv(context: Path) -> Path:
        digest = hashlib.sha256((context / "requirements.txt").read_bytes())
        for wheel in sorted((context / "wheels").glob("*.whl")):
            digest.update(wheel.read_bytes())
        key = digest.hexdigest()
        if key not in made:
            made[key] = install(context, tmp_path_factory.mktemp("venv") / "venv")
        return made[key]

    return venv


@pytest.fixture
def serve_context(
    projects: dict[str, Path], venv_for: Callable[[Path], Path], tmp_path: Path
) -> Iterator[Callable[[str, str], httpx.Client]]:
    """Build API of a project with `ferry build`, run the image's command, yield a client."""
    running: list[Container] = []

    def start(project: str, api: str) -> httpx.Client:
        context = tmp_path / "build" / api
        argv = ["build", api, "--project", str(projects[project]), "--out", str(context),
                "--target", "sagemaker"]  # fmt: skip
        assert main(argv) == 0
        container = Container(context, venv_for(context), tmp_path / api, "--workers", "1")
        running.append(container)
        assert container.command == ["ferry", "serve"]
        container.wait_ready()
        return container.client

    yield start
    for container in running:
        assert container.stop() == 0, container.log.read_text()


def _answer(client: httpx.Client, path: str, body: Any) -> Any:
    answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_built_context_installs_and_serves_the_predictor(
    serve_context: Callable[[str, str], httpx.Client],
) -> None:
    client = serve_context("cortex", "iris-forest")
    answer = client.post("/invocations", json=VIRGINICA)
    assert answer.status_code == 200, answer.text
    assert answer.text.strip('"') == "virginica"


def test_a_model_path_api_is_served_with_its_labels_and_feature_names(
    serve_context: Callable[[str, str], httpx.Client],
) -> None:
    client = serve_context("plain", "iris-named")
    # feature names let a record name its columns; labels name the classes
    assert _answer(client, "/invocations", VIRGINICA) == ["virginica"]
    assert _answer(client, "/predict", [[5.1, 3.5, 1.4, 0.2]]) == ["setosa"]
    metadata = client.get("/v2/models/iris-named")  # the API's name, not the file's
    assert metadata.status_code == 200, metadata.text


def test_a_model_path_api_is_served_with_probabilities(
    serve_context: Callable[[str, str], httpx.Client],
) -> None:
    client = serve_context("plain", "iris-proba")
    [probabilities] = _answer(client, "/predict", [[6.7, 3.0, 5.2, 2.3]])
    assert len(probabilities) == 3
    assert sum(probabilities) == pytest.approx(1.0)
    assert max(range(3), key=probabilities.__getitem__) == 2
