"""The operating-system side of supervision: spawn, poll, signal (a fake replaces it in tests).

Replicas run in their own session (``start_new_session``), so a replica's pid is also its
process group: signalling the group reaches its workers too. A process this object did not
spawn (one adopted from an earlier control plane) is recognised by the marker variable in
``/proc/<pid>/environ``, so a pid reused by an unrelated process is never mistaken for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["LOST", "OsProcesses", "ProcessHost"]

LOST = -1000  # exit status of a process that ended while it was not our child


class ProcessHost(Protocol):
    def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> int:
        """Start ``argv`` in a new session with output appended to ``log_path``; its pid."""
        ...

    def poll(self, pid: int, marker: str) -> int | None:
        """None while the process runs; its exit status once it ended (``LOST`` if unknown)."""
        ...

    def signal(self, pid: int, signum: int, *, group: bool = False) -> None:
        """Send ``signum`` to the process (or its whole group); a gone process is fine."""
        ...


def has_marker(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its environment holds ``marker`` (``NAME=value``)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return marker.encode() + b"\0" in environ + b"\0" and _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class OsProcesses:
    """Real processes. Children are kept so their exit status can be read (and reaped)."""

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> int:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            child = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
                close_fds=True,
            )
        self._children[child.pid] = child
        return child.pid

    def poll(self, pid: int, marker: str) -> int | None:
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()
            if code is not None:
                del self._children[pid]
            return code
        return None if has_marker(pid, marker) else LOST

    def signal(self, pid: int, signum: int, *, group: bool = False) -> None:
        try:
            if group:
                os.killpg(pid, signum)
            else:
                os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def describe_exit(code: int) -> str:
    """``exited with code 1``, ``was killed by SIGKILL``, or the unknown case."""
    if code == LOST:
        return "exited while the control plane was not watching"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
