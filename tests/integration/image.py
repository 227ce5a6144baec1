"""Run what a Docker build context's image would run, without Docker.

The context's requirements install into a fresh venv (ferry from the context's own
wheel), ``/opt/ml`` is laid out by the final stage's own COPY lines under a temporary
directory (``SAGEMAKER_BASE_DIR`` points ferry there), and ENTRYPOINT + CMD run as a
process with the image's ENV. Used by test_docker_context.py and
test_build_context_runs.py.
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

UV = Path(sys.executable).parent / "uv"
SAGEMAKER_STOP_S = 30  # SageMaker's SIGKILL follows SIGTERM after this long


def run(argv: list[str | Path], cwd: Path) -> str:
    """Run ``argv`` in ``cwd``; its stdout, or a failed assertion with both outputs."""
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def final_stage(dockerfile: str) -> list[str]:
    """The lines of the last stage, continuation lines joined."""
    return dockerfile.replace("\\\n", " ").rsplit("\nFROM ", 1)[1].splitlines()


def image_env(dockerfile: str) -> dict[str, str]:
    """The final stage's ENV, as the container would see it."""
    env_line = next(line for line in final_stage(dockerfile) if line.startswith("ENV "))
    pairs = env_line[4:].split()
    return {key: json.loads(value) for key, value in (pair.split("=", 1) for pair in pairs)}


def command(dockerfile: str) -> list[str]:
    """ENTRYPOINT + CMD (both exec form)."""
    lines = final_stage(dockerfile)
    entrypoint = next(line for line in lines if line.startswith("ENTRYPOINT "))
    cmd = next(line for line in lines if line.startswith("CMD "))
    return [*json.loads(entrypoint[11:]), *json.loads(cmd[4:])]


def lay_out(context: Path, dockerfile: str, opt_ml: Path) -> None:
    """Do what the final stage's COPY lines do, with /opt/ml at ``opt_ml``."""
    copies = [line.split()[1:] for line in final_stage(dockerfile) if line.startswith("COPY ")]
    assert copies, "the image copies nothing"
    for source, target in copies:
        assert target.startswith("/opt/ml/"), target
        destination = opt_ml / target.removeprefix("/opt/ml/")
        if source.endswith("/"):
            shutil.copytree(context / source, destination, dirs_exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(context / source, destination)


def install(context: Path, venv: Path) -> Path:
    """A fresh venv at ``venv`` with the context's requirements.txt installed from there."""
    run([UV, "venv", "--quiet", "--python", sys.executable, venv], cwd=context)
    python = venv / "bin" / "python"
    # from the context directory, as `pip wheel -r requirements.txt` runs in the builder
    run([UV, "pip", "install", "--python", python, "-r", "requirements.txt"], cwd=context)
    where = run([python, "-c", "import ferry; print(ferry.__file__)"], cwd=context)
    assert str(venv) in where, "ferry must come from the context's wheel"
    return venv


class Container:
    """The image's command for ``context``, running from ``venv`` with /opt/ml at ``root``."""

    def __init__(self, context: Path, venv: Path, root: Path, *args: str) -> None:
        dockerfile = (context / "Dockerfile").read_text()
        self.command = command(dockerfile)
        lay_out(context, dockerfile, root / "opt-ml")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        env = {
            **os.environ,
            **image_env(dockerfile),
            "XDG_CACHE_HOME": str(root / "cache"),
            "SAGEMAKER_BASE_DIR": str(root / "opt-ml"),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        }
        self.log = root / "ferry.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [*self.command, "--host", "127.0.0.1", *args], env=env, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def wait_ready(self, timeout: float = 90) -> None:
        """Until ``GET /ping`` answers 200; fails at once if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"ferry exited with {self.process.returncode}:\n{self.log.read_text()}"
                )
            try:
                if self.client.get("/ping").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready after {timeout:g} s:\n{self.log.read_text()}")

    def stop(self) -> int:
        """SIGTERM, as `docker stop` and SageMaker send; the exit code after the drain.

        SageMaker sends SIGKILL 30 s after SIGTERM: the drain must end before that.
        """
        self.client.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=SAGEMAKER_STOP_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"still running {SAGEMAKER_STOP_S} s after SIGTERM:\n{self.log.read_text()}"
            ) from None
