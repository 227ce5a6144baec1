"""Run the recipe pages (docs/recipes/*.md) as written, as far as this machine allows.

Only blocks right after an ``<!-- test -->`` comment run: a ``python`` or ``yaml`` block
whose first line is ``# NAME`` is written to NAME (an unnamed python block is executed),
and ``console`` blocks run as in docs/quickstart.md (see tests/e2e/test_docs.py, whose
helpers this reuses): ``$ cmd`` lines, their expected output, ``<any>`` wildcards, ``&``
for a background ``ferry serve`` (which must name its ``--port``). Every 8xxx port in a
command is swapped for one of this run (expected output keeps the page's numbers); the
local cluster keeps its state in the test's directory.

Ports and readiness, without races: a background server is started with ``--port 0`` and
the port it bound is read from its start-up line (``serving ... on http://HOST:PORT with
N worker(s)``), so no other process can take the port between a pick and the bind, and
nothing else can answer in its place. It counts as ready once every one of its N worker
processes has answered ``/readyz`` with 200, told apart by the worker part of their
``X-Request-ID`` (``<worker>-<n>``): each worker warms its model up on its own, so one
worker's 200 says nothing of the next request, which another worker may take while it
still answers 503 "loading". Other ports (``--gateway-port``) come from below Linux's
ephemeral range and are checked free, so no outgoing connection is handed one.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import IO

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"
PAGES = ("flask-gunicorn-ecs", "beanstalk", "ec2-nginx-gunicorn", "sagemaker-byoc", "cortex")
MARKED = re.compile(r"<!-- test -->\s*\n```(console|python|yaml)\n(.*?)```", re.DOTALL)
PORT = re.compile(r"\b8[0-9]{3}\b")
PORT_FLAG = re.compile(r"--port[ =](\S+)")
STARTED = re.compile(r"on http://[^\s:]+:(\d+) with (\d+) worker")
READY_TIMEOUT_S = 90.0


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


def unused_port() -> int:
    """A port below Linux's ephemeral range (32768-60999) that nothing listens on now.

    Ports from bind(("", 0)) are ephemeral ones, which the kernel hands out again as the
    source port of any outgoing connection on the machine; these it never does.
    """
    for _ in range(200):
        port = random.SystemRandom().randint(20000, 32767)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port between 20000 and 32767")


def started_line(process: subprocess.Popen[bytes], log: Path) -> tuple[int, int]:
    """(port, workers) from the server's start-up line, once it has bound its socket."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        found = STARTED.search(log.read_text(errors="replace"))
        if found is not None:
            return int(found.group(1)), int(found.group(2))
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"server never said where it listens:\n{log.read_text()}")


def wait_every_worker_ready(
    port: int, workers: int, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Until each of the server's worker processes has answered /readyz with 200."""
    ready: set[str] = set()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(ready) < workers:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(ready)} of {workers} workers ready on {port}:\n{log.read_text()}"
            )
        try:  # a new connection each time, so any worker may take it
            answer = httpx.get(f"http://127.0.0.1:{port}/readyz", headers={"Connection": "close"})
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 200:
            worker, _, _ = answer.headers["x-request-id"].rpartition("-")
            assert worker, f"X-Request-ID {answer.headers['x-request-id']!r} names no worker"
            ready.add(worker)
        else:
            time.sleep(0.05)


class Page:
    """One page being run: its directory, environment, ports and background servers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports: dict[str, str] = {}  # the page's port -> this run's
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "FERRY_STATE_DIR": str(root / ".state"),
            "XDG_CACHE_HOME": str(root / ".cache"),
        }
        self.servers: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []

    def port(self, page_port: str) -> str:
        if page_port not in self.ports:
            self.ports[page_port] = str(unused_port())
        return self.ports[page_port]

    def swap(self, text: str) -> str:
        return PORT.sub(lambda match: self.port(match.group(0)), text)

    def file(self, kind: str, body: str) -> None:
        first = body.splitlines()[0]
        if first.startswith("# ") and "." in first:
            (self.root / first[2:].strip()).write_text(body)
        elif kind == "python":
            subprocess.run([sys.executable, "-c", body], cwd=self.root, env=self.env, check=True)

    def background(self, command: str) -> None:
        """Start a ``ferry serve`` on a port it picks itself, then map the page's to it."""
        flag = PORT_FLAG.search(command)
        assert flag is not None, f"a background server must name its --port: {command}"
        assert re.search(r"\bferry serve\b", command), f"not a ferry server: {command}"
        page_port = flag.group(1)
        bind = self.ports.get(page_port, "0")  # 0 unless an earlier command used the port
        command = self.swap(command[: flag.start()] + f"--port {bind}" + command[flag.end() :])
        log = self.root / f"server-{len(self.servers)}.log"
        self.logs.append(log.open("wb"))
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=self.root, env=self.env,
            stdout=self.logs[-1], stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.servers.append(process)
        port, workers = started_line(process, log)
        self.ports[page_port] = str(port)
        wait_every_worker_ready(port, workers, process, log)

    def run(self, command: str, expected: str) -> None:
        if command.endswith("&"):
            self.background(command[:-1].strip())
            return
        command = self.swap(command)  # files keep the page's ports: outputs are not swapped
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
    runner = Page(tmp_path)
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
