"""Supervise replicas: ``ferry serve`` processes that outlive the control plane.

Each replica has a durable record (see ``records``); on construction the supervisor
re-adopts the replicas still running (same pid, marker in its environment) and restarts
the ones that died meanwhile. ``tick()`` does the bookkeeping (crash -> restart with
back-off, exit code 3 -> "cannot boot" and no restart, drain deadline -> SIGKILL) and is
cheap; ``observe()`` ticks and then probes each live replica over HTTP. Thread-safe.
"""

from __future__ import annotations

import copy
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ferry.runtime.base import ReplicaSpec, ReplicaState, ReplicaStatus
from ferry.runtime.local.command import (
    MARKER,
    graceful_timeout,
    serve_argv,
    serve_env,
    spec_from_json,
    spec_to_json,
)
from ferry.runtime.local.probe import Probe
from ferry.runtime.local.processes import OsProcesses, ProcessHost, describe_exit
from ferry.runtime.local.records import RecordStore, ReplicaRecord
from ferry.runtime.local.slots import SlotPool, port_is_free

__all__ = ["EXIT_CANNOT_BOOT", "ReplicaSupervisor", "free_port"]

log = logging.getLogger("ferry.runtime.local")

EXIT_CANNOT_BOOT = 3  # `ferry serve`'s code for "the model cannot load": never restart
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
HEALTHY_RESET_S = 60.0  # running this long since the last start resets the back-off
KEEP_OLD_LOGS = 20  # log files of removed replicas kept per API


class ProberLike(Protocol):
    def probe(self, port: int) -> Probe: ...

    def forget(self, port: int) -> None: ...

    def close(self) -> None: ...


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def last_error(log_path: Path) -> str:
    """The last ``ferry: error:`` line of a replica's log (what made it exit)."""
    try:
        with open(log_path, "rb") as stream:
            stream.seek(0, 2)
            stream.seek(max(0, stream.tell() - 65536))
            text = stream.read().decode(errors="replace")
    except OSError:
        return ""
    errors = [line for line in text.splitlines() if "ferry: error:" in line]
    return errors[-1].split("ferry: error:", 1)[1].strip() if errors else ""


class ReplicaSupervisor:
    """Start, watch, restart and stop replica processes; state survives restarts."""

    def __init__(
        self,
        state_dir: Path,
        *,
        processes: ProcessHost | None = None,
        prober: ProberLike | None = None,
        clock: Callable[[], float] = time.time,
        port_finder: Callable[[], int] | None = None,
        port_free: Callable[[int], bool] = port_is_free,
        executable: str = sys.executable,
    ) -> None:
        from ferry.runtime.local.probe import Prober

        self._store = RecordStore(state_dir / "replicas")
        self._log_dir = state_dir / "logs"
        self._processes: ProcessHost = processes or OsProcesses()
        self._prober: ProberLike = prober or Prober()
        self._clock = clock
        self._slots = SlotPool(state_dir / "slots.json", port_finder, port_free)
        self._executable = executable
        self._lock = threading.RLock()
        self._records: dict[str, ReplicaRecord] = {}
        self._adopt()

    # ------------------------------------------------------------------ public
    def log_path(self, api: str, replica_id: str) -> Path:
        return self._log_dir / api / f"{replica_id}.log"

    def log_dir(self, api: str) -> Path:
        return self._log_dir / api

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._records)

    def pid(self, replica_id: str) -> int | None:
        with self._lock:
            record = self._records.get(replica_id)
            return record.pid if record else None

    def slots(self) -> dict[str, tuple[int, ...]]:
        """Every API's gateway slots: its allocated ports plus any port a replica holds."""
        with self._lock:
            ports = {api: set(slots) for api, slots in self._slots.snapshot().items()}
            for record in self._records.values():
                if record.port:
                    ports.setdefault(record.api, set()).add(record.port)
            return {api: tuple(sorted(found)) for api, found in ports.items() if found}

    def release_slots(self, keep: set[str]) -> None:
        """Forget the slots of APIs not in ``keep`` that have no replica left (deleted)."""
        with self._lock:
            held = {record.api for record in self._records.values()}
            for api in set(self._slots.snapshot()) - keep - held:
                self._slots.release(api)

    def start(self, spec: ReplicaSpec) -> None:
        """Start ``spec`` unless its replica exists; raises ValueError on bad settings."""
        with self._lock:
            if spec.replica_id in self._records:
                return
            record = ReplicaRecord(
                replica_id=spec.replica_id,
                api=spec.api,
                revision=spec.revision,
                pid=0,
                port=0,
                spec=spec_to_json(spec),
                started_at=self._clock(),
                graceful_s=graceful_timeout(spec),
            )
            self._prune_logs(spec.api)
            self._spawn(record)
            self._records[spec.replica_id] = record

    def stop(self, replica_id: str, *, drain: bool = True) -> None:
        """SIGTERM (drain) or SIGKILL; ``tick`` finishes the job. Returns at once."""
        with self._lock:
            record = self._records.get(replica_id)
            if record is None:
                return
            if record.cannot_boot or record.restart_at is not None:
                self._forget(record)  # no process to stop
                return
            if record.stopping_since is None:
                record.stopping_since = self._clock()
                if drain:
                    self._processes.signal(record.pid, signal.SIGTERM)
            if not drain:
                record.graceful_s = 0.0
                self._processes.signal(record.pid, signal.SIGKILL, group=True)
            self._store.save(record)

    def tick(self) -> None:
        """Reap, restart and kill as due; no network calls."""
        with self._lock:
            now = self._clock()
            for record in list(self._records.values()):
                self._tick_one(record, now)

    def observe(self) -> list[ReplicaStatus]:
        self.tick()
        with self._lock:
            snapshot = [copy.deepcopy(record) for record in self._records.values()]
        return [self._status(record) for record in snapshot]  # probes outside the lock

    def wait_gone(self, replica_ids: list[str], timeout: float) -> bool:
        """Tick until none of ``replica_ids`` is known any more (stops finished)."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            with self._lock:
                if not any(rid in self._records for rid in replica_ids):
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        """Release the HTTP client and the process host; the processes keep running."""
        self._prober.close()
        self._processes.close()

    # ------------------------------------------------------------------ internals
    def _marker(self, record: ReplicaRecord) -> str:
        return f"{MARKER}={record.replica_id}"

    def _poll(self, record: ReplicaRecord) -> int | None:
        return self._processes.poll(record.pid, self._marker(record), record.start_ticks)

    def _adopt(self) -> None:
        now = self._clock()
        for record in self._store.load_all():
            self._records[record.replica_id] = record
            running = record.stopping_since is None and record.restart_at is None
            if running and not record.cannot_boot:
                code = self._poll(record)
                if code is not None:
                    log.info("replica %s died while unwatched", record.replica_id)
                    self._exited(record, code, now)
                    record.restart_at = now  # restart it right away
                    self._store.save(record)

    def _spawn(self, record: ReplicaRecord) -> None:
        spec = spec_from_json(record.spec)
        busy = {
            other.port
            for other in self._records.values()
            if other.api == record.api and other.replica_id != record.replica_id
        }
        port = self._slots.assign(record.api, busy, prefer=record.port)
        argv = serve_argv(spec, port, self._executable)
        log_path = self.log_path(record.api, record.replica_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as stream:
            stream.write(
                f"[ferry] starting replica {record.replica_id} (api {record.api}, "
                f"revision {record.revision}) on 127.0.0.1:{port}\n"
            )
        # variables of the spec's own may act at interpreter start-up: a fresh one then
        record.pid = self._processes.spawn(argv, serve_env(spec), log_path, fresh=bool(spec.env))
        record.start_ticks = self._processes.started(record.pid)
        record.port = port
        record.started_at = self._clock()
        record.restart_at = None
        self._store.save(record)

    def _tick_one(self, record: ReplicaRecord, now: float) -> None:
        if record.stopping_since is not None:
            self._tick_stopping(record, now)
        elif record.cannot_boot:
            return
        elif record.restart_at is not None:
            if now >= record.restart_at:
                self._spawn(record)
        else:
            code = self._poll(record)
            if code is not None:
                self._exited(record, code, now)
            elif now - record.started_at >= HEALTHY_RESET_S and record.backoff_s > BACKOFF_START_S:
                record.backoff_s = BACKOFF_START_S
                self._store.save(record)

    def _exited(self, record: ReplicaRecord, code: int, now: float) -> None:
        # the master is gone; its workers must not linger on as orphans
        self._processes.signal(record.pid, signal.SIGKILL, group=True)
        self._prober.forget(record.port)
        if code == EXIT_CANNOT_BOOT:
            record.cannot_boot = True
            reason = last_error(self.log_path(record.api, record.replica_id))
            record.reason = reason or "the model cannot be loaded (exit code 3)"
            log.warning("replica %s cannot boot: %s", record.replica_id, record.reason)
        else:
            record.restarts += 1
            delay = record.backoff_s
            record.restart_at = now + delay
            record.backoff_s = min(delay * 2, BACKOFF_MAX_S)
            record.reason = f"{describe_exit(code)}; restart {record.restarts} in {delay:g} s"
            log.warning("replica %s %s", record.replica_id, record.reason)
        self._store.save(record)

    def _tick_stopping(self, record: ReplicaRecord, now: float) -> None:
        code = self._poll(record)
        if code is not None:
            self._processes.signal(record.pid, signal.SIGKILL, group=True)
            self._forget(record)
        elif record.stopping_since is not None and now >= record.stopping_since + record.graceful_s:
            self._processes.signal(record.pid, signal.SIGKILL, group=True)

    def _forget(self, record: ReplicaRecord) -> None:
        self._records.pop(record.replica_id, None)
        self._store.delete(record.replica_id)
        self._prober.forget(record.port)

    def _prune_logs(self, api: str) -> None:
        directory = self.log_dir(api)
        if not directory.is_dir():
            return
        live = {rid for rid, rec in self._records.items() if rec.api == api}
        old = [p for p in directory.glob("*.log") if p.stem not in live]
        old.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for path in old[KEEP_OLD_LOGS:]:
            path.unlink(missing_ok=True)

    def _status(self, record: ReplicaRecord) -> ReplicaStatus:
        base = ReplicaStatus(
            replica_id=record.replica_id,
            api=record.api,
            revision=record.revision,
            state=ReplicaState.STARTING,
            address=f"127.0.0.1:{record.port}",
            pid=record.pid,
            started_at=record.started_at,
            restarts=record.restarts,
        )
        if record.stopping_since is not None:
            return _with(base, state=ReplicaState.TERMINATING)
        if record.cannot_boot or record.restart_at is not None:
            return _with(
                base,
                state=ReplicaState.FAILED,
                address=None,
                cannot_boot=record.cannot_boot,
                reason=record.reason,
            )
        probe = self._prober.probe(record.port)
        if probe.ready:
            return _with(base, state=ReplicaState.READY, in_flight=probe.in_flight)
        return base


def _with(status: ReplicaStatus, **changes: object) -> ReplicaStatus:
    from dataclasses import replace

    return replace(status, **changes)  # type: ignore[arg-type]
