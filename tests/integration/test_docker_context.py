"""The Docker build context works without Docker: its requirements install into a fresh
venv and its ENTRYPOINT + CMD, run as the image would run them, serve the SageMaker
contract from a model directory (tests/integration/image.py does the running)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
from tests.integration.image import UV, Container, install, run

from ferry.packaging import PackageSpec, render_docker_context

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def _pins(*names: str) -> tuple[str, ...]:
    # the versions this venv already has, so uv installs them from its cache
    return tuple(f"{name}=={importlib.metadata.version(name)}" for name in names)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, iris_model_path: Path) -> Path:
    """The rendered context with the model and a wheel of this checkout in it."""
    root = tmp_path_factory.mktemp("context")
    wheels = root / "wheels"
    run([UV, "build", "--wheel", "--out-dir", wheels, ROOT], cwd=ROOT)
    wheel = next(wheels.glob("ferry-*.whl"))
    spec = PackageSpec(
        app_name="iris",
        model_file="iris.joblib",
        ferry_requirement=f"ferry=={importlib.metadata.version('ferry')}",
        requirements=_pins("scikit-learn", "scipy", "numpy", "joblib", "threadpoolctl"),
        local_wheels=(wheel.name,),
        workers=1,
    )
    for name, text in render_docker_context(spec, "sagemaker").items():
        (root / name).write_text(text)
    (root / "model").mkdir()
    (root / "model" / "iris.joblib").write_bytes(iris_model_path.read_bytes())
    return root


def test_context_installs_and_serves_the_sagemaker_contract(
    context: Path, tmp_path: Path, iris_model: object
) -> None:
    venv = install(context, tmp_path / "venv")
    container = Container(context, venv, tmp_path)
    assert container.command == ["ferry", "serve"]
    try:
        container.wait_ready()
        csv = "\n".join(",".join(map(str, row)) for row in ROWS)
        answer = container.client.post(
            "/invocations", content=csv, headers={"content-type": "text/csv"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == iris_model.predict(np.array(ROWS)).tolist()  # type: ignore[attr-defined]
    finally:
        code = container.stop()
    assert code == 0, container.log.read_text()
