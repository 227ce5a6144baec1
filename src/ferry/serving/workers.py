"""The pre-fork supervisor: keeps N worker processes serving one socket.

Signal handlers only enqueue; the main loop does the work. A crashed worker is replaced
with backoff; a worker that cannot boot (exit 3) stops the whole server instead of a
restart loop; a worker whose heartbeat stops is killed and replaced; stopping drains
(SIGTERM to workers, uvicorn finishes in-flight requests) before SIGKILL.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ferry.serving.worker import EXIT_CANNOT_BOOT, HeartbeatBoard

__all__ = ["EXIT_CANNOT_BOOT", "Supervisor"]

log = logging.getLogger("ferry.supervisor")

WorkerMain = Callable[[int, HeartbeatBoard, Path], int]


@dataclass(slots=True)
class _Slot:
    pid: int = 0
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0


@dataclass(slots=True)
class Supervisor:
    """Forks ``workers`` processes running ``worker_main(slot, board, failure_file)``."""

    worker_main: WorkerMain
    workers: int
    run_dir: Path
    graceful_timeout_s: float = 25.0
    heartbeat_timeout_s: float = 60.0
    _board: HeartbeatBoard = field(init=False)
    _slots: list[_Slot] = field(init=False)
    _signals: list[int] = field(default_factory=list)
    _wake_r: int = -1
    _wake_w: int = -1
    cannot_boot: str | None = None

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        self._board = HeartbeatBoard(self.workers)
        self._slots = [_Slot() for _ in range(self.workers)]
        self._install_signals()
        gc.freeze()  # keep objects loaded so far out of the children's copy-on-write pages
        for index in range(self.workers):
            self._spawn(index)
        try:
            return self._loop()
        finally:
            self._stop_all()

    # ------------------------------------------------------------------ signals

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, self._enqueue)

    def _enqueue(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    # ------------------------------------------------------------------ main loop

    def _loop(self) -> int:
        while True:
            with contextlib.suppress(InterruptedError):
                select.select([self._wake_r], [], [], 1.0)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
            while self._signals:
                signum = self._signals.pop(0)
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("stopping: draining %d worker(s)", self.workers)
                    return 0
                if signum == signal.SIGHUP:
                    self._restart_all()
            if self._reap():
                return 1
            self._check_heartbeats()
            self._respawn_due()

    def _reap(self) -> bool:
        """Collect exited workers; true when one could not boot."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return False
            index = self._index_of(pid)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code == EXIT_CANNOT_BOOT:
                self.cannot_boot = self._failure_reason(index)
                log.error("worker %d cannot boot: %s", index, self.cannot_boot)
                return True
            self._schedule_restart(index, code)

    def _index_of(self, pid: int) -> int | None:
        for index, slot in enumerate(self._slots):
            if slot.pid == pid:
                return index
        return None

    def _failure_reason(self, index: int) -> str:
        path = self._failure_file(index)
        try:
            return path.read_text().strip() or "unknown error"
        except OSError:
            return "unknown error (see the log above)"

    def _schedule_restart(self, index: int, code: int) -> None:
        slot = self._slots[index]
        lived = time.monotonic() - slot.started
        slot.failures = 0 if lived > 30 else slot.failures + 1
        delay = min(10.0, 0.1 * 2 ** max(0, slot.failures - 1)) if slot.failures else 0.0
        log.warning("worker %d (pid %d) exited with %s; restarting", index, slot.pid, code)
        slot.pid = 0
        slot.restart_at = time.monotonic() + delay

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for index, slot in enumerate(self._slots):
            if slot.pid == 0 and now >= slot.restart_at:
                self._spawn(index)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        for index, slot in enumerate(self._slots):
            if slot.pid and now - self._board.last(index) > self.heartbeat_timeout_s:
                log.error("worker %d (pid %d) stopped heartbeating; killing it", index, slot.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)

    def _restart_all(self) -> None:
        """Graceful restart (SIGHUP): every worker drains and is replaced.

        All workers get SIGTERM at once and finish their in-flight requests; the listening
        socket stays open here, so connections made meanwhile wait in its backlog until
        the replacements (forked again from this process) accept them: nothing is refused.
        """
        for index, slot in enumerate(self._slots):
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)
                self._slots[index].started = time.monotonic()

    # ------------------------------------------------------------------ processes

    def _failure_file(self, index: int) -> Path:
        return self.run_dir / f"worker-{index}.failure"

    def _spawn(self, index: int) -> None:
        failure_file = self._failure_file(index)
        failure_file.unlink(missing_ok=True)
        self._board.beat(index)
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(signum, signal.SIG_DFL)
                os.close(self._wake_r)
                os.close(self._wake_w)
                code = self.worker_main(index, self._board, failure_file)
            except BaseException:
                logging.getLogger("ferry.worker").exception("worker crashed")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        slot = self._slots[index]
        slot.pid = pid
        slot.started = time.monotonic()

    def _stop_all(self) -> None:
        pids = [slot.pid for slot in self._slots if slot.pid]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.graceful_timeout_s + 2
        remaining = set(pids)
        while remaining and time.monotonic() < deadline:
            for pid in list(remaining):
                with contextlib.suppress(ChildProcessError):
                    done, _ = os.waitpid(pid, os.WNOHANG)
                    if done == 0:
                        continue
                remaining.discard(pid)
            time.sleep(0.02)
        for pid in remaining:
            log.warning("worker pid %d did not drain in time; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket the workers share (before fork)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
