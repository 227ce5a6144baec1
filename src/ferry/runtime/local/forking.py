"""Replica processes forked from a pre-warmed zygote, or started fresh when it cannot.

``PreforkProcesses`` is the ``ProcessHost`` of the local backend. It starts a zygote
(``zygote``) as soon as it is built, so by the time a replica is asked for, ``ferry serve``,
NumPy, scikit-learn and the other frameworks are already imported; forking a replica then
costs milliseconds instead of the seconds of a fresh interpreter (decision 0008). A
replica is started as a fresh process instead when its spec sets environment variables
(they may act at interpreter start-up, as ``LD_PRELOAD`` or ``OMP_NUM_THREADS`` do), when
its command is not ``python -m ferry``, or when the zygote is gone, refuses or does not
answer; nothing waits on the zygote for longer than ``timeout_s``.

Exit codes of forked replicas come from the files the zygote writes as it reaps them; a
replica whose exit nobody recorded (it ended while no zygote watched) reads as ``LOST``,
as does any replica adopted from an earlier control plane.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ferry.runtime.local.processes import (
    LOST,
    OsProcesses,
    is_running,
    is_zombie,
    parent_of,
)
from ferry.runtime.local.zygote import PROGRAM, LineReader

__all__ = ["FRAMEWORKS", "PRELOAD", "PreforkProcesses", "ZygoteHandle"]

log = logging.getLogger("ferry.runtime.local")

# What every `ferry serve` imports: the zygote forks replicas once these are in (under a
# second on this machine). A module that is missing is skipped.
PRELOAD: tuple[str, ...] = (
    "ferry.cli.main",
    "ferry.cli.serve",
    "ferry.serving.server",
    "ferry.serving.worker",
    "ferry.serving.app",
    "ferry.models.loaders.pickle",
    "ferry.models.forest",
    "joblib.numpy_pickle",  # the lean read of a pickle (ferry.models.lean) needs only this
    "threadpoolctl",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
)
# The model frameworks (scikit-learn alone is ~2 s: it imports SciPy and pandas), preloaded
# by the zygote's second stage, which forks replicas from the moment it is ready; a replica
# asked for before then is forked from the first stage and imports what it needs itself.
FRAMEWORKS: tuple[str, ...] = (
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.compose",
    "sklearn.tree",
    "sklearn.neighbors",
    "sklearn.svm",
    "xgboost",
    "lightgbm",
)
MODULE = "ferry"  # requests must be `python -m ferry ...`
# The second stage starts once the first has been ready (or has last forked) this long:
# a cold start's first replica and the control plane's own start-up get the CPU first.
SECOND_STAGE_AFTER_S = 2.0
RESPAWN_AFTER_S = 60.0  # a zygote that died is replaced at most this often
REAP_GRACE_S = 2.0  # how long a forked replica that is gone may wait for its exit file
EXIT_FILE_TTL_S = 86400.0  # an exit file unread this long belongs to a forgotten replica


class ZygoteHandle:
    """One zygote process and the pipe to it. ``spawn`` is thread-safe."""

    def __init__(
        self,
        directory: Path,
        *,
        preload: Sequence[str] = PRELOAD,
        later: Sequence[str] = FRAMEWORKS,
        executable: str = sys.executable,
        timeout_s: float = 30.0,
    ) -> None:
        self.directory = directory
        self.exits = directory / "exits"
        self.executable = executable
        self.timeout_s = timeout_s
        self.usable = True
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        argv = [executable, "-m", PROGRAM, "--module", MODULE, "--exits", str(self.exits)]
        argv += ["--preload", ",".join(preload), "--later", ",".join(later)]
        argv += ["--later-after", f"{SECOND_STAGE_AFTER_S:g}"]
        with open(directory / "zygote.log", "ab") as log_file:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                start_new_session=True,
                close_fds=True,
            )
        assert self._process.stdout is not None
        self._replies = LineReader(self._process.stdout.fileno())

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> tuple[int, int, int] | None:
        """Fork ``argv`` from the zygote: (pid, start ticks, parent pid: the zygote's first
        or second stage), or None (start it fresh)."""
        try:
            cwd = os.getcwd()
        except OSError:  # the control plane's directory was removed: start it fresh
            return None
        request = {"argv": list(argv), "env": dict(env), "log": str(log_path), "cwd": cwd}
        with self._lock:
            if not self.usable or not self.alive():
                return None
            answer = self._ask(json.dumps(request).encode() + b"\n")
        if answer is None:
            return None
        if "pid" not in answer:
            log.warning("the zygote cannot fork this replica: %s", answer.get("error"))
            if "threads" in str(answer.get("error")):
                self.usable = False  # it would refuse every later request too
            return None
        return int(answer["pid"]), int(answer.get("started", 0)), int(answer.get("parent", 0))

    def _ask(self, request: bytes) -> dict[str, Any] | None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(request)
            stdin.flush()
        except OSError as error:
            log.warning("the zygote is gone (%s); starting replicas fresh", error)
            self.usable = False
            return None
        answer = self._replies.read(self.timeout_s)
        if answer is None:
            why = "exited" if self._replies.closed else "did not answer in time"
            log.warning("the zygote %s; starting replicas fresh", why)
            self.usable = False
            self._kill()
        return answer

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            self._process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)

    def close(self, timeout: float = 5.0) -> None:
        """Close the pipe (the zygote exits; the replicas it forked run on) and reap it."""
        with self._lock:
            self.usable = False
            for stream in (self._process.stdin, self._process.stdout):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()


class PreforkProcesses:
    """A ``ProcessHost``: replicas forked from the zygote where safe, fresh otherwise."""

    def __init__(
        self,
        directory: Path,
        *,
        preload: Sequence[str] = PRELOAD,
        later: Sequence[str] = FRAMEWORKS,
        executable: str = sys.executable,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self._preload = tuple(preload)
        self._later = tuple(later)
        self._executable = executable
        self._timeout_s = timeout_s
        self._clock = clock
        self._fresh = OsProcesses()
        self._lock = threading.Lock()
        self._forked: dict[int, tuple[int, int]] = {}  # pid -> (start ticks, parent)
        self._gone_since: dict[int, float] = {}  # forked, gone, exit file not there yet
        self._zygote: ZygoteHandle | None = self._new_zygote()
        self._respawn_at = self._clock() + RESPAWN_AFTER_S
        self._prune_exits()

    def _prune_exits(self) -> None:
        """Drop exit files nobody read for a day (their replicas were forgotten)."""
        cutoff = time.time() - EXIT_FILE_TTL_S
        with contextlib.suppress(OSError):
            for path in self.exits.iterdir():
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()

    @property
    def exits(self) -> Path:
        return self.directory / "exits"

    def zygote_pid(self) -> int | None:
        """The pid of the running zygote, if any (tests, diagnostics)."""
        zygote = self._zygote
        return zygote.pid if zygote is not None and zygote.alive() else None

    def _new_zygote(self) -> ZygoteHandle | None:
        try:
            return ZygoteHandle(
                self.directory,
                preload=self._preload,
                later=self._later,
                executable=self._executable,
                timeout_s=self._timeout_s,
            )
        except OSError as error:
            log.warning("cannot start the zygote (%s); replicas start fresh", error)
            return None

    def _current_zygote(self) -> ZygoteHandle | None:
        with self._lock:
            zygote = self._zygote
            if zygote is not None and zygote.usable and zygote.alive():
                return zygote
            if zygote is not None and zygote.alive():
                return None  # it refuses to fork (threads): a new one would too
            if self._clock() < self._respawn_at:
                return None
            if zygote is not None:
                zygote.close(timeout=1.0)
            log.info("starting a new zygote")
            self._zygote = self._new_zygote()
            self._respawn_at = self._clock() + RESPAWN_AFTER_S
            return self._zygote

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, *, fresh: bool = False
    ) -> int:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        forkable = list(argv[:3]) == [self._executable, "-m", MODULE]
        zygote = self._current_zygote() if forkable and not fresh else None
        if zygote is not None:
            spawned = zygote.spawn(argv, env, log_path)
            if spawned is not None:
                pid, started, parent = spawned
                self._exit_file(pid, started).unlink(missing_ok=True)  # a reused pid's
                with self._lock:
                    self._forked[pid] = (started, parent)
                return pid
        return self._fresh.spawn(argv, env, log_path)

    def started(self, pid: int) -> int:
        with self._lock:
            forked = self._forked.get(pid)
        return forked[0] if forked is not None else self._fresh.started(pid)

    def poll(self, pid: int, marker: str, started: int = 0) -> int | None:
        if self._fresh.owns(pid):
            return self._fresh.poll(pid, marker, started)
        with self._lock:
            started = started or self._forked.get(pid, (0, 0))[0]
        code = self._recorded_exit(pid, started)
        if code is None and is_running(pid, marker, started):
            return None
        if code is None and self._exit_pending(pid):
            return None  # exited; the zygote records its code as it reaps it
        with self._lock:
            self._forked.pop(pid, None)
            self._gone_since.pop(pid, None)
        return LOST if code is None else code

    def signal(self, pid: int, signum: int, *, group: bool = False) -> None:
        self._fresh.signal(pid, signum, group=group)

    def close(self) -> None:
        """Stop the zygote; replicas keep running (the next control plane adopts them)."""
        with self._lock:
            zygote, self._zygote = self._zygote, None
            self._respawn_at = float("inf")
        if zygote is not None:
            zygote.close()
        self._fresh.close()

    def _exit_pending(self, pid: int) -> bool:
        """True while the zygote stage that forked ``pid`` has yet to reap it or to write
        its exit file."""
        with self._lock:
            forked = self._forked.get(pid)
        if forked is None:
            return False
        if is_zombie(pid):  # its parent reaps it soon, unless the parent died meanwhile
            return parent_of(pid) == forked[1]
        zygote = self._zygote
        if zygote is None or not zygote.alive():
            return False
        with self._lock:
            since = self._gone_since.setdefault(pid, self._clock())
        return self._clock() - since < REAP_GRACE_S  # reaped, file about to be written

    def _exit_file(self, pid: int, started: int) -> Path:
        return self.exits / f"{pid}-{started}"

    def _recorded_exit(self, pid: int, started: int) -> int | None:
        if not started:
            return None
        path = self._exit_file(pid, started)
        try:
            code = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        path.unlink(missing_ok=True)
        return code
