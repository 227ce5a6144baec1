"""`ferry build` of a Cortex API works without Docker: the context's pinned requirements
install into a fresh venv (ferry from the context's own wheel), and the image's command,
run with /opt/ml laid out as the Dockerfile lays it out, serves the predictor.

tests/integration/test_docker_context.py does the same for a rendered context with a bare
model; this one goes through the CLI, with predictor code and its generated ferry.yaml.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ferry.cli.main import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cortex"
UV = Path(sys.executable).parent / "uv"


def _run(argv: list[str | Path], cwd: Path) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _command(dockerfile: str) -> list[str]:
    lines = dockerfile.splitlines()
    entrypoint = next(line for line in lines if line.startswith("ENTRYPOINT "))
    cmd = next(line for line in lines if line.startswith("CMD "))
    return [*json.loads(entrypoint[11:]), *json.loads(cmd[4:])]


def _wait_ready(client: httpx.Client, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ferry exited with {process.returncode}:\n{log.read_text()}")
        try:
            if client.get("/ping").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready after 90 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("project") / "cortex"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("models", "__pycache__"))
    _run([sys.executable, "train.py"], cwd=project)
    out = tmp_path_factory.mktemp("build") / "iris-forest"
    assert main(["build", "iris-forest", "--project", str(project), "--out", str(out),
                 "--target", "sagemaker"]) == 0  # fmt: skip
    return out


def test_built_context_installs_and_serves_the_predictor(context: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([UV, "venv", "--quiet", "--python", sys.executable, venv], cwd=context)
    _run([UV, "pip", "install", "--python", venv / "bin" / "python", "-r", "requirements.txt"],
         cwd=context)  # fmt: skip
    where = _run([venv / "bin" / "python", "-c", "import ferry; print(ferry.__file__)"], context)
    assert str(venv) in where, "ferry must come from the context's wheel"

    base = tmp_path / "opt-ml"  # COPY model/... and COPY code/ into /opt/ml/model
    shutil.copytree(context / "model", base / "model")
    shutil.copytree(context / "code", base / "model" / "code")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
    }
    argv = _command((context / "Dockerfile").read_text())
    assert argv == ["ferry", "serve"]
    log = tmp_path / "ferry.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen([*argv, "--host", "127.0.0.1", "--workers", "1"], env=env,
                                   stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_ready(client, process, log)
            row = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
            answer = client.post("/invocations", json=row)
            assert answer.status_code == 200, answer.text
            assert answer.text.strip('"') == "virginica"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=40)
    assert code == 0, log.read_text()
