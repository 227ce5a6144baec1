"""Durable replica records: one JSON file per replica under ``<state_dir>/replicas/``.

A record is everything needed to find a replica again after the control plane restarts
(its pid and port, the spec to restart it with) and to keep supervising it where the last
process left off (restart count, back-off, a drain in progress, a "cannot boot" verdict).
Writes are atomic (temporary file + rename), so a crash never leaves half a record.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RecordStore", "ReplicaRecord"]

log = logging.getLogger("ferry.runtime.local")


@dataclass(slots=True)
class ReplicaRecord:
    """The supervised state of one replica (mutable; saved after every change)."""

    replica_id: str
    api: str
    revision: str
    pid: int
    port: int
    spec: dict[str, Any]
    started_at: float
    start_ticks: int = 0  # the process's start time after boot: with the pid, its identity
    restarts: int = 0
    backoff_s: float = 0.5
    restart_at: float | None = None  # set while a crashed replica waits for its restart
    stopping_since: float | None = None  # set once a stop has been asked for
    graceful_s: float = 27.0  # drain time before SIGKILL
    reason: str = ""
    cannot_boot: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class RecordStore:
    """Load, save and delete records; the directory is created on first save."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, replica_id: str) -> Path:
        return self.directory / f"{replica_id}.json"

    def save(self, record: ReplicaRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(record.replica_id)
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        with open(temporary, "w") as stream:
            json.dump(asdict(record), stream, sort_keys=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)

    def delete(self, replica_id: str) -> None:
        self._path(replica_id).unlink(missing_ok=True)

    def load_all(self) -> list[ReplicaRecord]:
        """Every readable record; an unreadable file is logged and skipped, never fatal."""
        if not self.directory.is_dir():
            return []
        records = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                records.append(ReplicaRecord(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as error:
                log.warning("skipping unreadable replica record %s: %s", path, error)
        return records
