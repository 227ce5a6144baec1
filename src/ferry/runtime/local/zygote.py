"""The zygote: a pre-warmed interpreter that forks replica processes on request.

The local backend starts one per control plane (``python -m ferry.runtime.local.zygote``,
see ``forking``) with a pipe on stdin for requests and one on stdout for replies, one JSON
object per line. It works in two stages. The first imports the ``--preload`` modules (what
every ``ferry serve`` imports, under a second; requests sent meanwhile wait in the pipe)
and then answers requests. Once it has been ready, or has last forked, ``--later-after``
seconds ago, it forks a second stage that imports the ``--later`` modules (the model
frameworks: seconds that every fresh replica would spend again), says so on its own pipe,
and from then on gets every request passed on to it. A request names the argv (``python
-m MODULE ...``), environment, log file and working directory of a replica; the stage
that takes it forks, and the child turns into that process:

- a session of its own (its pid is its process group, as with ``start_new_session``);
- stdin from /dev/null, stdout and stderr appended to the log file, no other descriptor;
- the request's environment, and ``sys.path`` as a fresh interpreter would build it from
  that environment's ``PYTHONPATH``; new random seeds;
- its command line (``/proc/<pid>/cmdline``, what ``ps`` shows) rewritten to the
  request's argv, as far as the zygote's own command line leaves room;
- ``MODULE`` run as ``__main__`` (``runpy``), then the process exits with its exit code.

The reply is the child's pid and start time (``/proc/<pid>/stat``), which together name
the process for the control plane (a forked child has the zygote's ``/proc/<pid>/environ``,
so the replica marker variable cannot identify it), and the pid of the stage that forked
it (its parent until reaped).

Fork safety: the zygote never starts a thread. OpenBLAS starts its thread pool when loaded,
so the zygote holds it to one thread (``OPENBLAS_NUM_THREADS=1`` while preloading; each
replica's server sets its own limits when it loads the model) and checks before every fork
that it is still the only thread; when it is not, it refuses and the backend starts a
fresh interpreter instead.

Each stage reaps its children and writes each exit status to ``--exits/<pid>-<start>``,
so the control plane learns the exit code of a process it did not fork (code 3, "cannot
boot", must stop restarts). The first stage exits when stdin closes (the control plane
stopped or died), the second with it (its pipe closes; ``PR_SET_PDEATHSIG`` too); their
children run on, re-parented, and the next control plane re-adopts them as it does any
replica.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import json
import os
import runpy
import select
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ferry.runtime.local.processes import start_ticks

__all__ = ["PROGRAM", "LineReader", "main"]

PROGRAM = "ferry.runtime.local.zygote"
_POOL_VARIABLES = ("OPENBLAS_NUM_THREADS",)  # pools that start threads when loaded


def _say(message: str) -> None:
    """One line on the zygote's own log (stderr)."""
    sys.stderr.write(f"[ferry zygote {os.getpid()}] {message}\n")
    sys.stderr.flush()


def thread_count() -> int:
    """Threads of this process, native ones included."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover - Linux only
        return 0


class Zygote:
    """The request loop on stdin/stdout; ``run`` returns when stdin closes.

    With ``later`` modules, a second stage (forked once this one has been idle for
    ``later_after_s``) imports them while this one already answers; once it says it is
    ready, requests go on to it.
    """

    def __init__(
        self,
        module: str,
        preload: Sequence[str],
        exits: Path,
        later: Sequence[str] = (),
        later_after_s: float = 0.0,
    ) -> None:
        self.module = module
        self.preload = list(preload)
        self.later = list(later)
        self.later_after_s = later_after_s
        self.exits = exits
        self.children: dict[int, int] = {}  # pid -> start ticks, until reaped
        self.stage_two: _StageTwo | None = None
        self._stage_two_at: float | None = None  # when the second stage is due to start
        self._buffer = b""
        self._wake = (-1, -1)

    def run(self, *, announce: bool = False) -> None:
        started = time.perf_counter()
        for name in self.preload:
            _preload(name)
        gc.collect()
        gc.freeze()  # children share these pages instead of copying them
        elapsed = time.perf_counter() - started
        _say(f"preloaded {len(self.preload)} module(s) in {elapsed:.2f} s")
        if self.later:
            self._stage_two_at = time.monotonic() + self.later_after_s
        if announce:
            self._reply({"ready": True, "threads": thread_count()})
        self._serve()

    def _start_stage_two_when_due(self, now: float) -> None:
        """The second stage starts once the first has been ready, or has last forked,
        ``later_after_s`` ago: a cold start's first replica and the control plane's own
        start-up then have the CPU to themselves while they need it most."""
        if self._stage_two_at is None or now < self._stage_two_at:
            return
        self._stage_two_at = None
        self.stage_two = _StageTwo.start(self.module, self.later, self.exits, self._wake)

    def _serve(self) -> None:
        self._wake = os.pipe()
        for descriptor in self._wake:
            os.set_blocking(descriptor, False)
        signal.set_wakeup_fd(self._wake[1])
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes select
        while True:
            self._start_stage_two_when_due(time.monotonic())
            watched = [0, self._wake[0]]
            if self.stage_two is not None and not self.stage_two.ready:
                watched.append(self.stage_two.replies)
            timeout = 5.0
            if self._stage_two_at is not None:
                timeout = max(0.0, min(timeout, self._stage_two_at - time.monotonic()))
            with contextlib.suppress(InterruptedError):
                readable, _, _ = select.select(watched, [], [], timeout)
            if self._wake[0] in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake[0], 4096)
            self.reap()
            stage = self.stage_two
            if stage is not None and stage.replies in readable and stage.check_ready() is False:
                self._drop_stage_two("it failed while preloading")
            if 0 in readable and not self._read_requests():
                break
        if self.stage_two is not None:
            self.stage_two.close()
        self.reap()

    def _read_requests(self) -> bool:
        """Answer every complete request line on stdin; False once stdin is closed."""
        data = os.read(0, 65536)
        if not data:
            return False
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            if line.strip():
                self._reply(self._dispatch(line))
                if self._stage_two_at is not None:  # not while that replica boots
                    self._stage_two_at = time.monotonic() + self.later_after_s
        return True

    def _dispatch(self, line: bytes) -> dict[str, Any]:
        stage = self.stage_two
        if stage is not None and stage.ready:
            answer = stage.ask(line)
            if answer is not None:
                return answer
            self._drop_stage_two("it did not answer")
        return self._handle(line)

    def _drop_stage_two(self, why: str) -> None:
        _say(f"second stage dropped ({why}); forking from this one")
        if self.stage_two is not None:
            self.stage_two.close(kill=True)
        self.stage_two = None

    # ------------------------------------------------------------------ requests
    def _reply(self, answer: Mapping[str, Any]) -> None:
        os.write(1, json.dumps(answer).encode() + b"\n")

    def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            argv = [str(arg) for arg in request["argv"]]
            env = {str(k): str(v) for k, v in request["env"].items()}
            log_path, cwd = str(request["log"]), str(request["cwd"])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            return {"error": f"bad request: {error}"}
        if argv[:3] != [sys.executable, "-m", self.module]:
            return {"error": f"only `{sys.executable} -m {self.module} ...` can be forked"}
        threads = thread_count()
        if threads != 1:
            return {"error": f"the zygote runs {threads} threads; forking it is unsafe"}
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _become(self.module, argv[3:], env, log_path, cwd)
        started = start_ticks(pid)  # still ours: only this loop reaps it
        self.children[pid] = started
        return {"pid": pid, "started": started, "parent": os.getpid()}

    # ------------------------------------------------------------------ children
    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.stage_two is not None and pid == self.stage_two.pid:
                self.stage_two.pid = 0  # reaped: close() must not signal a reused pid
                self._drop_stage_two("it exited")
                continue
            started = self.children.pop(pid, 0)
            self._record_exit(pid, started, os.waitstatus_to_exitcode(status))

    def _record_exit(self, pid: int, started: int, code: int) -> None:
        try:
            self.exits.mkdir(parents=True, exist_ok=True)
            path = self.exits / f"{pid}-{started}"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(str(code))
            os.replace(temporary, path)
        except OSError as error:
            _say(f"cannot record the exit of {pid} ({code}): {error}")


def _preload(name: str) -> None:
    try:
        importlib.import_module(name)
    except Exception as error:  # a framework that is not installed is fine
        _say(f"not preloaded: {name} ({type(error).__name__}: {error})")


class LineReader:
    """JSON objects, one per line, read from a pipe with a deadline."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.closed = False  # the writer closed its end (or exited)
        self._buffer = b""

    def read(self, timeout: float) -> dict[str, Any] | None:
        """The next object; None when none came in time, the pipe closed (``closed``), or
        the line was not a JSON object."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if not select.select([self.descriptor], [], [], max(0.0, left))[0]:
                if left <= 0:
                    return None
                continue
            data = os.read(self.descriptor, 65536)
            if not data:
                self.closed = True
                return None
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None


class _StageTwo:
    """The second stage as its parent sees it: a pipe for requests, one for replies."""

    ASK_TIMEOUT_S = 10.0

    def __init__(self, pid: int, requests: int, replies: int) -> None:
        self.pid, self.requests, self.replies = pid, requests, replies
        self.ready = False
        self._reader = LineReader(replies)

    @classmethod
    def start(
        cls, module: str, later: Sequence[str], exits: Path, wake: tuple[int, int]
    ) -> _StageTwo:
        """Fork the second stage: the same loop on new pipes, preloading ``later``.
        ``wake`` is the first stage's signal pipe, which the second must not keep."""
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _die_with_parent()  # the first stage is single-threaded: this is safe
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.dup2(requests_r, 0)
                os.dup2(replies_w, 1)
                for descriptor in (requests_r, requests_w, replies_r, replies_w, *wake):
                    os.close(descriptor)
                Zygote(module, later, exits).run(announce=True)
                code = 0
            except BaseException:
                with contextlib.suppress(Exception):
                    traceback.print_exc()
            finally:
                os._exit(code)
        os.close(requests_r)
        os.close(replies_w)
        return cls(pid, requests_w, replies_r)

    def check_ready(self) -> bool | None:
        """Read what it wrote (the replies pipe is readable): True once it announced it is
        ready, None while the announcement is incomplete, False if it is gone or unsafe."""
        answer = self._reader.read(0.0)
        if answer is None:
            return False if self._reader.closed else None
        self.ready = answer.get("threads") == 1
        if self.ready:
            _say(f"second stage {self.pid} ready; it forks from now on")
        return self.ready

    def ask(self, line: bytes) -> dict[str, Any] | None:
        try:
            os.write(self.requests, line + b"\n")
        except OSError:
            return None
        return self._reader.read(self.ASK_TIMEOUT_S)

    def close(self, *, kill: bool = False) -> None:
        for descriptor in (self.requests, self.replies):
            with contextlib.suppress(OSError):
                os.close(descriptor)
        if kill and self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _become(
    module: str,
    args: Sequence[str],
    env: Mapping[str, str],
    log_path: str,
    cwd: str,
) -> NoReturn:
    """In the child: turn into ``python -m MODULE ARGS`` and exit with its code."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _redirect(log_path)
        _set_title([sys.executable, "-m", module, *args])
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        _set_path(cwd, env)
        _reseed()
        importlib.invalidate_caches()
        sys.argv = [module, *args]
        code = _run(module)
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _redirect(log_path: str) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, _max_fd())  # the pipes to the control plane, the zygote's log


def _die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the parent dies (``PR_SET_PDEATHSIG``); best effort.
    A fork clears it, so the replicas this process forks do not inherit it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return


def _set_title(argv: Sequence[str]) -> None:
    """Write ``argv`` over this process's command line (what ``ps`` and ``/proc/<pid>/
    cmdline`` show), cut to the room the original one takes; best effort."""
    try:
        import ctypes

        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end
        room = end - start
        if not 0 < room < 1 << 20:
            return
        title = b"\0".join(arg.encode(errors="replace") for arg in argv)[: room - 1]
        ctypes.memmove(start, title.ljust(room, b"\0"), room)
    except (OSError, ValueError, IndexError, ImportError):
        return


def _max_fd() -> int:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):  # pragma: no cover
        return 1024
    return 65536 if soft == resource.RLIM_INFINITY else min(int(soft), 1 << 20)


def _set_path(cwd: str, env: Mapping[str, str]) -> None:
    """``sys.path`` as ``python -m`` started in ``cwd`` with ``env`` would have it: the
    working directory first, then ``PYTHONPATH`` (absolute), then what the zygote had."""
    if sys.path:
        sys.path[0] = cwd
    position = 1
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        if not entry:
            continue
        path = os.path.abspath(os.path.join(cwd, entry))
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(position, path)
        position += 1


def _reseed() -> None:
    """``random`` reseeds itself after a fork; NumPy's global generator does not."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        with contextlib.suppress(Exception):
            numpy.random.seed()


def _run(module: str) -> int:
    """Run ``module`` as ``__main__``; its exit code as ``python -m`` would return it."""
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    atexit._run_exitfuncs()
    return code


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    sys.stderr.write(f"{value}\n")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument("--module", required=True, help="what requests may run (-m MODULE)")
    parser.add_argument("--preload", default="", help="modules to import, comma-separated")
    parser.add_argument("--later", default="", help="modules for the second stage")
    parser.add_argument(
        "--later-after", type=float, default=0.0, help="seconds before the second stage starts"
    )
    parser.add_argument("--exits", required=True, type=Path, help="where exit codes go")
    args = parser.parse_args(argv)
    for name in _POOL_VARIABLES:
        os.environ[name] = "1"
    preload = [name for name in args.preload.split(",") if name]
    later = [name for name in args.later.split(",") if name]
    _say(f"started; preloading {len(preload)} module(s), then {len(later)} in a second stage")
    Zygote(args.module, preload, args.exits, later, args.later_after).run()
    _say("stdin closed; exiting (children run on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
