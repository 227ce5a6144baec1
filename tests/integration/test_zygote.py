"""Replicas forked from the zygote, for real: environment, exit codes, adoption, fallbacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry.config import ModelSpec
from ferry.runtime.base import ReplicaSpec, ReplicaState, ReplicaStatus
from ferry.runtime.local.forking import PreforkProcesses
from ferry.runtime.local.processes import is_zombie, parent_of
from ferry.runtime.local.replicas import ReplicaSupervisor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PREDICTOR = """
import os
import sys

import zygote_helper  # found through the API's python_path only


class PythonPredictor:
    def __init__(self, config):
        pass

    def predict(self, payload):
        with open("/proc/self/cmdline", "rb") as stream:
            cmdline = [part.decode() for part in stream.read().split(b"\\0") if part]
        return {
            "marker": os.environ.get("FERRY_REPLICA_ID"),
            "extra": os.environ.get("ZYGOTE_TEST_EXTRA"),
            "helper": zygote_helper.NAME,
            "path": sys.path,
            "cwd": os.getcwd(),
            "cmdline": cmdline,
        }
"""

THREADED = """
import threading
import time

threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
"""


def wait_until(condition: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}") or is_zombie(pid)


def ask(status: ReplicaStatus) -> dict[str, Any]:
    answer = httpx.post(f"http://{status.address}/predict", json={"x": 1}, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.lib = root / "lib"
        self.lib.mkdir()
        (self.lib / "zygote_helper.py").write_text('NAME = "helper"\n')
        (root / "predictor.py").write_text(PREDICTOR)
        self.supervisor = self.new_supervisor()

    def new_supervisor(self) -> ReplicaSupervisor:
        self.processes = PreforkProcesses(self.state / "zygote")
        return ReplicaSupervisor(self.state, processes=self.processes)

    def spec(self, replica_id: str, **env: str) -> ReplicaSpec:
        model = ModelSpec(
            uri=f"{self.root / 'predictor.py'}:PythonPredictor",
            framework="python",
            python_path=str(self.lib),
        )
        server = {"graceful_timeout_s": 2, "warmup": False}
        return ReplicaSpec(replica_id, "probe", "r1", model, server=server, env=env)

    def status(self, replica_id: str) -> ReplicaStatus | None:
        found = [s for s in self.supervisor.observe() if s.replica_id == replica_id]
        return found[0] if found else None

    def ready(self, replica_id: str) -> ReplicaStatus:
        def check() -> ReplicaStatus | None:
            status = self.status(replica_id)
            return status if status and status.state is ReplicaState.READY else None

        return wait_until(check, what=f"{replica_id} ready")  # type: ignore[no-any-return]

    def failed(self, replica_id: str) -> ReplicaStatus:
        def check() -> ReplicaStatus | None:
            status = self.status(replica_id)
            return status if status and status.state is ReplicaState.FAILED else None

        return wait_until(check, what=f"{replica_id} failed")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = World(tmp_path_factory.mktemp("zygote"))
    yield made
    supervisor = made.supervisor
    ids = supervisor.ids()
    pids = [s.pid for s in supervisor.observe() if s.pid]
    for replica_id in ids:
        supervisor.stop(replica_id, drain=False)
    supervisor.wait_gone(ids, 20)
    supervisor.close()
    for pid in pids:
        wait_until(lambda pid=pid: gone(pid), 20, f"pid {pid} to exit")


def zygote_stages(world: World) -> set[int]:
    """The zygote's pid and its second stage's (its children that are zygotes too)."""
    first = world.processes.zygote_pid()
    assert first is not None
    children = Path(f"/proc/{first}/task/{first}/children").read_text().split()
    stages = {first}
    for child in map(int, children):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"ferry.runtime.local.zygote" in cmdline:
            stages.add(child)
    return stages


def test_a_forked_replica_has_its_own_environment_path_and_command_line(world: World) -> None:
    world.supervisor.start(world.spec("probe-0"))
    status = world.ready("probe-0")
    assert status.pid is not None
    assert parent_of(status.pid) in zygote_stages(world)  # forked, not a fresh interpreter
    answer = ask(status)
    assert answer["marker"] == "probe-0"
    assert answer["extra"] is None
    assert answer["helper"] == "helper"
    path = answer["path"]
    site = min(i for i, entry in enumerate(path) if entry.endswith("site-packages"))
    assert path.index(str(world.lib)) < site  # PYTHONPATH before the libraries, as usual
    assert os.getcwd() in path[: path.index(str(world.lib))]  # `python -m` puts cwd first
    assert answer["cwd"] == os.getcwd()
    assert answer["cmdline"][:4] == [sys.executable, "-m", "ferry", "serve"]
    assert f"{world.root / 'predictor.py'}:PythonPredictor" in answer["cmdline"]
    # a forked child shows the zygote's environment in /proc, so the pid and start time
    # are what identify it
    environ = Path(f"/proc/{status.pid}/environ").read_bytes()
    assert b"FERRY_REPLICA_ID=probe-0" not in environ


def test_a_crash_of_a_forked_replica_is_seen_with_its_signal_and_restarted(world: World) -> None:
    pid = world.ready("probe-0").pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    status = world.failed("probe-0")
    assert "was killed by SIGKILL" in status.reason
    assert not status.cannot_boot
    restarted = world.ready("probe-0")
    assert restarted.pid != pid
    assert restarted.restarts == 1


def test_a_forked_replica_that_cannot_boot_reports_exit_code_3(world: World) -> None:
    model = ModelSpec(uri=str(world.root / "missing.joblib"))
    world.supervisor.start(ReplicaSpec("broken-0", "broken", "r1", model))
    status = world.failed("broken-0")
    assert status.cannot_boot
    assert "missing.joblib" in status.reason


def test_a_spec_with_its_own_variables_starts_a_fresh_interpreter(world: World) -> None:
    world.supervisor.start(world.spec("fresh-0", ZYGOTE_TEST_EXTRA="yes"))
    status = world.ready("fresh-0")
    assert status.pid is not None
    assert parent_of(status.pid) == os.getpid()
    answer = ask(status)
    assert (answer["marker"], answer["extra"]) == ("fresh-0", "yes")
    environ = Path(f"/proc/{status.pid}/environ").read_bytes()
    assert b"FERRY_REPLICA_ID=fresh-0" in environ


def test_forked_replicas_outlive_the_zygote_and_are_adopted(world: World) -> None:
    before = world.ready("probe-0")
    stages = zygote_stages(world)
    world.supervisor.close()  # what a control plane does on its way out
    for pid in stages:
        wait_until(lambda pid=pid: gone(pid), 30, f"zygote stage {pid} to exit")
    assert not gone(before.pid or 0)
    world.supervisor = world.new_supervisor()
    adopted = world.ready("probe-0")
    assert (adopted.pid, adopted.restarts) == (before.pid, before.restarts)
    assert ask(adopted)["marker"] == "probe-0"
    assert adopted.pid is not None
    os.kill(adopted.pid, signal.SIGKILL)  # no zygote watched it: its exit status is lost
    status = world.failed("probe-0")
    assert "not watching" in status.reason
    assert world.ready("probe-0").pid != adopted.pid


def test_the_zygote_exits_when_its_control_plane_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from ferry.runtime.local.forking import PreforkProcesses
        processes = PreforkProcesses(Path({str(tmp_path)!r}) / "zygote")
        print(processes.zygote_pid(), flush=True)
        time.sleep(3600)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as plane:
        try:
            assert plane.stdout is not None
            zygote = int(plane.stdout.readline())
            assert not gone(zygote)
            wait_until(lambda: child_pids(zygote), 60, "the second stage to start")
        finally:
            plane.kill()
    wait_until(lambda: not processes_under(tmp_path), 30, "both zygote stages to exit")


def processes_under(directory: Path) -> list[int]:
    """Live processes whose command line names ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(directory).encode() in cmdline and not gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def exit_code(processes: PreforkProcesses, pid: int) -> int:
    """Poll ``pid`` until it has ended; its exit code."""
    started = processes.started(pid)
    codes: list[int | None] = []
    wait_until(
        lambda: codes.append(processes.poll(pid, "NO=marker", started)) or codes[-1] is not None
    )
    code = codes[-1]
    assert code is not None
    return code


def child_pids(pid: int | None) -> set[int]:
    if pid is None:
        return set()
    try:
        return set(map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split()))
    except OSError:
        return set()


def test_forked_commands_report_their_exit_codes(tmp_path: Path) -> None:
    processes = PreforkProcesses(tmp_path / "zygote")
    try:
        log = tmp_path / "command.log"
        ferry = [sys.executable, "-m", "ferry"]
        pid = processes.spawn([*ferry, "--version"], dict(os.environ), log)
        zygote = processes.zygote_pid()
        assert parent_of(pid) in {zygote, *child_pids(zygote)}
        assert exit_code(processes, pid) == 0
        assert "ferry, version" in log.read_text()
        pid = processes.spawn([*ferry, "serve", str(tmp_path / "nope.joblib")], {}, log)
        assert exit_code(processes, pid) == 3  # cannot boot
        assert "nope.joblib" in log.read_text()
    finally:
        processes.close()


def test_a_zygote_that_runs_a_thread_refuses_to_fork_and_replicas_start_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "zygote_threads.py").write_text(THREADED)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    processes = PreforkProcesses(tmp_path / "zygote", preload=("zygote_threads",), later=())
    try:
        log = tmp_path / "command.log"
        pid = processes.spawn([sys.executable, "-m", "ferry", "--version"], dict(os.environ), log)
        assert parent_of(pid) == os.getpid()  # started fresh, by this process
        assert exit_code(processes, pid) == 0
        assert "ferry, version" in log.read_text()
    finally:
        processes.close()


def test_a_backend_without_prefork_runs_no_zygote(tmp_path: Path) -> None:
    from ferry.runtime.local import LocalBackend

    backend = LocalBackend(tmp_path / "state", gateway_port=1, prefork=False)
    try:
        assert backend.zygote_pid() is None
        assert not (tmp_path / "state" / "zygote").exists()
    finally:
        backend.close()
    backend = LocalBackend(tmp_path / "other", gateway_port=1)
    try:
        zygote = backend.zygote_pid()
        assert zygote is not None
    finally:
        backend.close()
    wait_until(lambda: gone(zygote), 30, "the zygote to exit with its backend")


def test_through_the_control_plane_a_good_api_serves_and_a_broken_one_is_error(
    tmp_path: Path, iris_model_path: Path
) -> None:
    from ferry.control.client import ControlClient
    from ferry.control.service import ControlPlane, read_token
    from ferry.runtime.local import LocalBackend

    def project(name: str, model: bytes) -> Path:
        root = tmp_path / name
        root.mkdir()
        (root / "model.joblib").write_bytes(model)
        spec = f"- name: {name}\n  predictor: {{type: python, model_path: model.joblib}}\n"
        (root / "ferry.yaml").write_text(spec)
        return root

    port = free_port()
    backend = LocalBackend(tmp_path / "state" / "runtime", gateway_port=port)
    plane = ControlPlane(tmp_path / "state", backend)
    thread = threading.Thread(target=plane.serve, daemon=True)
    thread.start()
    assert plane.wait_ready()
    client = ControlClient(plane.url, read_token(tmp_path / "state") or "")

    def status(name: str) -> dict[str, Any]:
        return {row["name"]: row for row in client.apis()}[name]

    try:
        client.deploy(project("good", iris_model_path.read_bytes()))
        client.deploy(project("broken", b"not a pickle"))
        wait_until(lambda: status("good")["status"] == "live", what="good live")
        answer = httpx.post(f"http://127.0.0.1:{port}/good", json=[[5.1, 3.5, 1.4, 0.2]])
        assert answer.status_code == 200, answer.text
        wait_until(lambda: status("broken")["status"] == "error", what="broken in error")
        assert "model.joblib" in status("broken")["reason"]
        (replica,) = [s for s in backend.observe() if s.api == "good"]
        assert replica.pid is not None
        assert parent_of(replica.pid) in {backend.zygote_pid(), *child_pids(backend.zygote_pid())}
    finally:
        client.close()
        plane.stop(stop_replicas=True)
        thread.join(60)
    assert not thread.is_alive()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
