"""The operating-system side of supervision: spawn, poll, signal (a fake replaces it in tests).

Replicas run in their own session (``start_new_session``), so a replica's pid is also its
process group: signalling the group reaches its workers too. A process this object did not
spawn (one adopted from an earlier control plane) is recognised by its start time (pid and
start time name one process for the machine's uptime) or, for records written before start
times were kept, by the marker variable in ``/proc/<pid>/environ``; so a pid reused by an
unrelated process is never mistaken for it.
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
_DEAD = ("Z", "X")  # zombie, dead: exited, whether or not reaped yet
_DETACHED: list[subprocess.Popen[bytes]] = []  # children of closed hosts, still running


class ProcessHost(Protocol):
    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, *, fresh: bool = False
    ) -> int:
        """Start ``argv`` in a new session with output appended to ``log_path``; its pid.

        ``fresh``: run a new interpreter even where a pre-warmed one could fork it."""
        ...

    def started(self, pid: int) -> int:
        """The start time of ``pid`` (clock ticks after boot) as spawned; 0 if unknown."""
        ...

    def poll(self, pid: int, marker: str, started: int = 0) -> int | None:
        """None while the process runs; its exit status once it ended (``LOST`` if unknown).

        ``started`` (from ``started``) identifies the process; without it, ``marker``."""
        ...

    def signal(self, pid: int, signum: int, *, group: bool = False) -> None:
        """Send ``signum`` to the process (or its whole group); a gone process is fine."""
        ...

    def close(self) -> None:
        """Release what the host holds; the processes it started keep running."""
        ...


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name, from the state on
    (field 3); empty when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # the command name is parenthesised and may itself hold spaces and parentheses
    return stat.rpartition(")")[2].split()


def start_ticks(pid: int) -> int:
    """When ``pid`` started, in clock ticks after boot (field 22); 0 if it is gone. With
    the pid, it names one process: a reused pid has another start time."""
    fields = _stat(pid)
    return int(fields[19]) if len(fields) > 19 else 0


def parent_of(pid: int) -> int:
    """The parent pid of ``pid`` (field 4); 0 if it is gone."""
    fields = _stat(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def is_zombie(pid: int) -> bool:
    """True when ``pid`` has exited and waits for its parent to reap it."""
    fields = _stat(pid)
    return bool(fields) and fields[0] in _DEAD


def is_running(pid: int, marker: str, started: int = 0) -> bool:
    """True when ``pid`` runs and is the process meant: same start time when ``started`` is
    known, else ``marker`` in its environment. A zombie does not run."""
    if not started:
        return has_marker(pid, marker)
    fields = _stat(pid)
    return len(fields) > 19 and int(fields[19]) == started and fields[0] not in _DEAD


def has_marker(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its environment holds ``marker`` (``NAME=value``)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    fields = _stat(pid)
    return marker.encode() + b"\0" in environ + b"\0" and bool(fields) and fields[0] not in _DEAD


class OsProcesses:
    """Real processes. Children are kept so their exit status can be read (and reaped)."""

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, *, fresh: bool = False
    ) -> int:
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

    def owns(self, pid: int) -> bool:
        """True for a child this object spawned and has not yet seen exit."""
        return pid in self._children

    def started(self, pid: int) -> int:
        return start_ticks(pid)  # a child of ours: nobody else can reap it meanwhile

    def poll(self, pid: int, marker: str, started: int = 0) -> int | None:
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()
            if code is not None:
                del self._children[pid]
            return code
        return None if is_running(pid, marker, started) else LOST

    def close(self) -> None:
        """Let go of the children (they run on): kept out of the garbage collector's way
        until they end, and reaped then, like ``subprocess`` does for lost ``Popen``s."""
        _DETACHED.extend(self._children.values())
        self._children.clear()
        _DETACHED[:] = [child for child in _DETACHED if child.poll() is None]

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
