"""Run the recipe pages (docs/recipes/*.md) as written, as far as this machine allows.

Only blocks right after an ``<!-- test -->`` comment run: a ``python`` or ``yaml`` block
whose first line is ``# NAME`` is written to NAME (an unnamed python block is executed),
and ``console`` blocks run as in docs/quickstart.md (see tests/e2e/test_docs.py, whose
helpers this reuses): ``$ cmd`` lines, their expected output, ``<any>`` wildcards, ``&``
for a background server (which must name its ``--port``). Every 8xxx port in a command
is swapped for a free one (expected output keeps the page's numbers); the local cluster
keeps its state in the test's directory.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import IO

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"
PAGES = ("flask-gunicorn-ecs", "beanstalk", "ec2-nginx-gunicorn", "sagemaker-byoc", "cortex")
MARKED = re.compile(r"<!-- test -->\s*\n```(console|python|yaml)\n(.*?)```", re.DOTALL)
PORT = re.compile(r"\b8[0-9]{3}\b")


def _docs_helpers() -> ModuleType:
    name = "ferry_tests_e2e_docs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("test_docs.py")
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


DOCS = _docs_helpers()


def blocks(text: str) -> list[tuple[str, str]]:
    """(kind, body) of the marked blocks, in page order."""
    return [(kind, body) for kind, body in MARKED.findall(text)]


def commands(body: str) -> list[tuple[str, str]]:
    steps = []
    for chunk in re.split(r"^\$ ", body, flags=re.MULTILINE)[1:]:
        command, _, output = chunk.partition("\n")
        steps.append((command.strip(), output.strip()))
    return steps


class Page:
    """One page being run: its directory, environment, ports and background servers."""

    def __init__(self, root: Path, text: str) -> None:
        self.root = root
        self.ports = {port: str(DOCS.free_port()) for port in set(PORT.findall(text))}
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "FERRY_STATE_DIR": str(root / ".state"),
            "XDG_CACHE_HOME": str(root / ".cache"),
        }
        self.servers: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []

    def swap(self, text: str) -> str:
        return PORT.sub(lambda match: self.ports.get(match.group(0), match.group(0)), text)

    def file(self, kind: str, body: str) -> None:
        first = body.splitlines()[0]
        if first.startswith("# ") and "." in first:
            (self.root / first[2:].strip()).write_text(body)
        elif kind == "python":
            subprocess.run([sys.executable, "-c", body], cwd=self.root, env=self.env, check=True)

    def background(self, command: str) -> None:
        assert "--port" in command, f"a background server must name its --port: {command}"
        log = self.root / f"server-{len(self.servers)}.log"
        self.logs.append(log.open("wb"))
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=self.root, env=self.env,
            stdout=self.logs[-1], stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.servers.append(process)
        DOCS.wait_ready(int(command.split("--port")[1].split()[0]), process, log)

    def run(self, command: str, expected: str) -> None:
        command = self.swap(command)  # files keep the page's ports: outputs are not swapped
        if command.endswith("&"):
            self.background(command[:-1].strip())
            return
        result = subprocess.run(
            ["bash", "-c", command], cwd=self.root, env=self.env, capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert DOCS.matches(expected, result.stdout), (command, expected, result.stdout)

    def close(self) -> list[int]:
        for process in self.servers:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=40) for process in self.servers]
        for handle in self.logs:
            handle.close()
        if (self.root / ".state").exists():  # a page that started the local cluster
            subprocess.run(["ferry", "cluster", "down"], env=self.env, capture_output=True,
                           timeout=60, check=False)  # fmt: skip
        return codes


@pytest.mark.parametrize("page", PAGES)
def test_recipe_runs_as_written(page: str, tmp_path: Path) -> None:
    text = (RECIPES / f"{page}.md").read_text()
    marked = blocks(text)
    assert any(kind == "console" for kind, _ in marked), f"{page}.md has no tested commands"
    runner = Page(tmp_path, text)
    try:
        for kind, body in marked:
            if kind != "console":
                runner.file(kind, body)
                continue
            for command, expected in commands(body):
                runner.run(command, expected)
    finally:
        codes = runner.close()
    assert codes == [0] * len(codes), "servers must drain and exit 0 on SIGTERM"


def test_every_recipe_page_is_run() -> None:
    assert sorted(path.stem for path in RECIPES.glob("*.md")) == sorted(PAGES)
