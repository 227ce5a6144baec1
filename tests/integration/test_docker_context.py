"""The Docker build context works without Docker: its requirements install into a fresh
venv and its ENTRYPOINT + CMD, run as the image would run them, serve the SageMaker
contract from a model directory."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from ferry.packaging import PackageSpec, render_docker_context

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def _pins(*names: str) -> tuple[str, ...]:
    # the versions this venv already has, so uv installs them from its cache
    return tuple(f"{name}=={importlib.metadata.version(name)}" for name in names)


def _run(argv: list[str | Path], cwd: Path) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"


def _image_env(dockerfile: str) -> dict[str, str]:
    """The final stage's ENV, as the container would see it."""
    final = dockerfile.rsplit("\nFROM ", 1)[1].replace("\\\n", " ")
    env_line = next(line for line in final.splitlines() if line.startswith("ENV "))
    pairs = env_line[4:].split()
    return {key: json.loads(value) for key, value in (pair.split("=", 1) for pair in pairs)}


def _command(dockerfile: str) -> list[str]:
    lines = dockerfile.splitlines()
    entrypoint = next(line for line in lines if line.startswith("ENTRYPOINT "))
    cmd = next(line for line in lines if line.startswith("CMD "))
    return [*json.loads(entrypoint[11:]), *json.loads(cmd[4:])]


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, iris_model_path: Path) -> Path:
    """The rendered context with the model and a wheel of this checkout in it."""
    root = tmp_path_factory.mktemp("context")
    wheels = root / "wheels"
    _run([UV, "build", "--wheel", "--out-dir", wheels, ROOT], cwd=ROOT)
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


def _wait_ready(client: httpx.Client, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ferry exited with {process.returncode}:\n{log.read_text()}")
        try:
            if client.get("/ping").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not ready after 60 s:\n{log.read_text()}")


def test_context_installs_and_serves_the_sagemaker_contract(
    context: Path, tmp_path: Path, iris_model: object
) -> None:
    venv = tmp_path / "venv"
    _run([UV, "venv", "--quiet", "--python", sys.executable, venv], cwd=context)
    # from the context directory, as `pip wheel -r requirements.txt` runs in the builder
    _run([UV, "pip", "install", "--python", venv / "bin" / "python", "-r", "requirements.txt"],
         cwd=context)  # fmt: skip
    installed = subprocess.run(
        [venv / "bin" / "python", "-c", "import ferry.packaging.docker as d; print(d.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(venv) in installed, "ferry must come from the context's wheel"

    # /opt/ml of the image, here: SageMaker unpacks the model into <base>/model
    base = tmp_path / "opt-ml"
    (base / "model").mkdir(parents=True)
    (base / "model" / "iris.joblib").write_bytes((context / "model" / "iris.joblib").read_bytes())
    dockerfile = (context / "Dockerfile").read_text()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        **_image_env(dockerfile),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
    }
    argv = _command(dockerfile)
    assert argv == ["ferry", "serve"]
    log = tmp_path / "ferry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_ready(client, process, log)
            csv = "\n".join(",".join(map(str, row)) for row in ROWS)
            answer = client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
            assert answer.status_code == 200, answer.text
            assert answer.json() == iris_model.predict(np.array(ROWS)).tolist()  # type: ignore[attr-defined]
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=40)
    assert code == 0, log.read_text()
