"""A process is named by its pid and start time; zombies and reused pids do not count."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ferry.runtime.local.processes import (
    LOST,
    OsProcesses,
    is_running,
    is_zombie,
    parent_of,
    start_ticks,
)


def test_pid_and_start_time_identify_a_running_process() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as child:
        try:
            started = start_ticks(child.pid)
            assert started > 0
            assert parent_of(child.pid) == os.getpid()
            assert is_running(child.pid, "NO=marker", started)
            assert not is_running(child.pid, "NO=marker", started + 1)  # another process
            assert not is_running(child.pid, "NO=marker")  # no start time: marker, absent
        finally:
            child.kill()
        deadline = time.monotonic() + 30
        while not is_zombie(child.pid):  # killed, not yet reaped
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not is_running(child.pid, "NO=marker", started)
    assert start_ticks(child.pid) == 0  # reaped: gone


def test_a_spawned_replica_reports_its_exit_code_and_an_adopted_one_lost(tmp_path: Path) -> None:
    host = OsProcesses()
    argv = [sys.executable, "-c", "import sys; sys.exit(3)"]
    pid = host.spawn(argv, dict(os.environ), tmp_path / "a.log")
    codes: list[int | None] = []
    deadline = time.monotonic() + 30
    while not codes or codes[-1] is None:
        assert time.monotonic() < deadline
        codes.append(host.poll(pid, "NO=marker"))
        time.sleep(0.01)
    assert codes[-1] == 3
    assert OsProcesses().poll(pid, "NO=marker", 12345) == LOST  # not its child, not running
