"""Run docs/quickstart.md as written: its python blocks, then its console sessions.

A ``$ ... &`` line starts a background server; other ``$`` lines run in a shell and their
output must equal the lines that follow (``<any>`` matches any JSON value or text).
Ports in the page are swapped for free ones so the test never collides with anything.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```(console|python)\n(.*?)```", re.DOTALL)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def matches(expected: str, actual: str) -> bool:
    try:
        want, got = json.loads(expected), json.loads(actual)
    except ValueError:
        pattern = re.escape(expected.strip()).replace(re.escape("<any>"), ".*")
        return re.fullmatch(pattern, actual.strip(), re.DOTALL) is not None
    return json_matches(want, got)


def json_matches(want: Any, got: Any) -> bool:
    if want == "<any>":
        return True
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and want.keys() == got.keys()
            and all(json_matches(want[k], got[k]) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(want) == len(got)
            and all(json_matches(w, g) for w, g in zip(want, got, strict=True))
        )
    return bool(want == got)


def sessions(text: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs from the console blocks, in page order."""
    steps: list[tuple[str, str]] = []
    for kind, body in BLOCK.findall(text):
        if kind != "console":
            continue
        for chunk in re.split(r"^\$ ", body, flags=re.MULTILINE)[1:]:
            command, _, output = chunk.partition("\n")
            steps.append((command.strip(), output.strip()))
    return steps


def python_blocks(text: str) -> list[tuple[str | None, str]]:
    """Python blocks, with the file name from a leading ``# name.py`` comment if present."""
    blocks = []
    for kind, body in BLOCK.findall(text):
        if kind == "python":
            first = body.splitlines()[0]
            name = first[2:].strip() if first.startswith("# ") and first.endswith(".py") else None
            blocks.append((name, body))
    return blocks


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server on {port} never became ready:\n{log.read_text()}")


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    text = (DOCS / "quickstart.md").read_text()
    for name, body in python_blocks(text):
        if name:
            (tmp_path / name).write_text(body)
        else:
            subprocess.run([sys.executable, "-c", body], cwd=tmp_path, check=True)
    ports = {port: str(free_port()) for port in set(re.findall(r"\b80[0-9]{2}\b", text))}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    servers: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for command, expected in sessions(text):
            for old, new in ports.items():
                command = command.replace(old, new)
            if command.endswith("&"):
                command = command[:-1].strip()
                if "--port" not in command:
                    command += f" --port {ports['8080']}"
                log = tmp_path / f"server-{len(servers)}.log"
                logs.append(log.open("wb"))
                process = subprocess.Popen(
                    ["bash", "-c", f"exec {command}"],
                    cwd=tmp_path,
                    env=env,
                    stdout=logs[-1],
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                servers.append(process)
                wait_ready(int(command.split("--port")[1].split()[0]), process, log)
                continue
            result = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=60, check=False,
            )  # fmt: skip
            assert result.returncode == 0, (command, result.stderr)
            assert matches(expected, result.stdout), (command, expected, result.stdout)
    finally:
        for process in servers:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=40) for process in servers]
        for handle in logs:
            handle.close()
    assert codes == [0] * len(servers)
