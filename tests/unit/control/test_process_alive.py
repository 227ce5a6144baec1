"""Telling a running control plane from a dead one, zombies included."""

from __future__ import annotations

import os
import subprocess
import time

from ferry.control.client import process_alive


def test_a_running_process_is_alive() -> None:
    assert process_alive(os.getpid())


def test_an_unreaped_dead_child_is_not_alive() -> None:
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited, but not waited for: a zombie
        with open(f"/proc/{child.pid}/stat") as stat:
            if stat.read().rpartition(")")[2].split()[0] == "Z":
                break
        time.sleep(0.01)
    try:
        assert not process_alive(child.pid)
    finally:
        child.wait()
    assert not process_alive(child.pid)


def test_no_pid_is_not_alive() -> None:
    assert not process_alive(0)
