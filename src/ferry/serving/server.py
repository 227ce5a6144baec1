"""``ferry serve`` as a process: resolve the model, bind, fork workers, supervise.

The model is loaded once here, before fork, when its framework allows it, so extra
workers share its memory; frameworks that start threads on load are loaded per worker.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from ferry.config import ServerSettings
from ferry.errors import ConfigError, FerryError, ModelLoadError
from ferry.models import open_source
from ferry.models.base import LoadedModel, ModelSource
from ferry.monitoring.metrics import enable_multiprocess
from ferry.serving.worker import HeartbeatBoard, run_worker
from ferry.serving.workers import Supervisor, bind_socket

__all__ = ["prepare", "serve", "usable_cores"]

log = logging.getLogger("ferry.server")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _limit_threads(settings: ServerSettings, workers: int) -> ServerSettings:
    """Give each worker its share of cores; frameworks' thread pools fight otherwise."""
    threads = settings.model_threads or max(1, usable_cores() // workers)
    for name in _THREAD_VARS:  # read by OpenMP/BLAS when the framework is first imported
        os.environ.setdefault(name, str(threads))
    return settings.model_copy(update={"model_threads": threads})


def prepare(settings: ServerSettings) -> tuple[ServerSettings, ModelSource, LoadedModel | None]:
    """Fetch and (where safe) load the model; raises FerryError with a readable message."""
    workers = settings.workers or usable_cores()
    settings = _limit_threads(settings.model_copy(update={"workers": workers}), workers)
    source = open_source(
        settings.model, cache_dir=settings.cache_dir, s3_endpoint_url=settings.s3_endpoint_url
    )
    if settings.compiled_cache:
        source = dataclasses.replace(source, compiled_cache=settings.cache_dir)
    model = None
    if not source.load_after_fork:
        try:
            model = source.load()
        except FerryError:
            raise
        except Exception as error:  # a loader bug must still read as one line
            raise ModelLoadError(f"{source.path}: {type(error).__name__}: {error}") from error
    return settings, source, model


def serve(settings: ServerSettings) -> int:
    """Run the server until SIGTERM; returns the exit code."""
    settings, source, model = prepare(settings)
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror}; "
            "pass another --port"
        ) from error
    run_dir = Path(tempfile.mkdtemp(prefix="ferry-serve-"))
    enable_multiprocess(run_dir / "metrics")
    host, port = sock.getsockname()[:2]
    log.info(
        "serving %s model %r on http://%s:%d with %d worker(s)",
        source.framework,
        source.name,
        host,
        port,
        settings.workers,
    )
    assert settings.workers is not None

    def worker_main(slot: int, board: HeartbeatBoard, failure_file: Path) -> int:
        return run_worker(settings, source, model, sock, board, slot, failure_file)

    supervisor = Supervisor(
        worker_main=worker_main,
        workers=settings.workers,
        run_dir=run_dir,
        graceful_timeout_s=settings.graceful_timeout_s,
        heartbeat_timeout_s=max(60.0, settings.timeout_s + 30),
    )
    try:
        code = supervisor.run()
    finally:
        sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    if supervisor.cannot_boot:
        raise ModelLoadError(f"cannot start: {supervisor.cannot_boot}")
    return code


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now (for tests and the demo)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
