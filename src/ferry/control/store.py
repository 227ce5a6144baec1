"""Durable control-plane state in one SQLite file (WAL), written in transactions.

What survives a control-plane restart (even a SIGKILL): every deployed API with its target
and previous revision, the revisions' specs, the replicas the control plane asked for (so
they are re-adopted, not restarted), events, the autoscaler's history and request counters.
The store is thread-safe: the reconciler thread and the API handlers share one connection.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.control.launch import default_state_dir
from ferry.control.records import (
    ApiRecord,
    AutoscalerState,
    Event,
    ReplicaRecord,
    RequestStats,
    Revision,
)
from ferry.errors import BadRequest, NotFound

__all__ = ["SCHEMA_VERSION", "DeployOutcome", "Store", "default_state_dir", "revision_id"]

SCHEMA_VERSION = 1
EVENTS_PER_API = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS apis (
    name TEXT PRIMARY KEY, kind TEXT NOT NULL, endpoint TEXT NOT NULL,
    target_revision TEXT NOT NULL, previous_revision TEXT,
    failed_revision TEXT, fallback_revision TEXT,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    desired INTEGER NOT NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0,
    deleting INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, updated REAL NOT NULL, last_update REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revisions (
    api TEXT NOT NULL, revision TEXT NOT NULL, spec TEXT NOT NULL, root TEXT NOT NULL,
    created REAL NOT NULL, PRIMARY KEY (api, revision)
);
CREATE TABLE IF NOT EXISTS replicas (
    replica_id TEXT PRIMARY KEY, api TEXT NOT NULL, revision TEXT NOT NULL,
    created REAL NOT NULL, counts TEXT NOT NULL DEFAULT '[0, 0, 0, 0.0, 0]'
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, api TEXT NOT NULL, at REAL NOT NULL,
    level TEXT NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_api ON events (api, id);
CREATE TABLE IF NOT EXISTS autoscaling (
    api TEXT PRIMARY KEY, started_at REAL NOT NULL, history TEXT NOT NULL, samples TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stats (
    api TEXT PRIMARY KEY, counts TEXT NOT NULL
);
"""

_API_COLUMNS = (
    "name, kind, endpoint, target_revision, previous_revision, failed_revision, "
    "fallback_revision, status, reason, desired, restarts, deleting, created, updated, last_update"
)


_RECONCILER_COLUMNS = frozenset(
    {"status", "reason", "desired", "restarts", "failed_revision", "fallback_revision"}
)


def revision_id(spec: Mapping[str, Any], root: str, salt: str = "") -> str:
    """A short content hash of the normalised spec: equal specs give equal revisions."""
    text = json.dumps({"spec": spec, "root": root, "salt": salt}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class DeployOutcome:
    """What a deploy did to one API: ``created``, ``updated`` or ``unchanged``."""

    api: str
    action: str
    revision: str


class Store:
    """The control plane's SQLite database; every method is one transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # private before SQLite opens it
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self._db.executescript(_SCHEMA)
            with self._tx() as db:
                row = db.execute("SELECT version FROM schema_version").fetchone()
                if row is None:
                    db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                elif row[0] > SCHEMA_VERSION:
                    raise BadRequest(
                        f"{self.path} was written by a newer ferry (schema {row[0]}); upgrade ferry"
                    )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- APIs and revisions -------------------------------------------------------------

    def deploy(
        self, name: str, kind: str, endpoint: str, spec: Mapping[str, Any], root: str, now: float
    ) -> DeployOutcome:
        """Make ``spec`` the target of ``name``; unchanged when it already is (and healthy)."""
        revision = revision_id(spec, root)
        with self._tx() as db:
            current = self._api(db, name)
            self._put_revision(db, name, revision, spec, root, now)
            if current is None:
                db.execute(
                    f"INSERT INTO apis ({_API_COLUMNS}) VALUES "  # noqa: S608
                    "(?, ?, ?, ?, NULL, NULL, NULL, 'updating', '', 0, 0, 0, ?, ?, ?)",
                    (name, kind, endpoint, revision, now, now, now),
                )
                return DeployOutcome(name, "created", revision)
            same = current.target_revision == revision and not current.deleting
            if same and current.failed_revision != revision:
                return DeployOutcome(name, "unchanged", revision)
            previous = current.previous_revision if same else current.target_revision
            db.execute(
                "UPDATE apis SET kind = ?, endpoint = ?, target_revision = ?, "
                "previous_revision = ?, failed_revision = NULL, fallback_revision = NULL, "
                "status = 'updating', reason = '', deleting = 0, restarts = 0, updated = ?, "
                "last_update = ? WHERE name = ?",
                (kind, endpoint, revision, previous, now, now, name),
            )
            return DeployOutcome(name, "updated", revision)

    def refresh(self, name: str, now: float) -> str:
        """A new revision with the same spec, so every replica is replaced by a rolling update."""
        with self._tx() as db:
            api = self._require(db, name)
            current = self._revision(db, name, api.target_revision)
            assert current is not None
            revision = revision_id(current.spec, current.root, salt=f"refresh {now}")
            self._put_revision(db, name, revision, current.spec, current.root, now)
            self._retarget(db, name, revision, api.target_revision, now)
            return revision

    def rollback(self, name: str, now: float) -> str:
        """Target the previous revision again; the current one becomes the previous."""
        with self._tx() as db:
            api = self._require(db, name)
            if api.previous_revision is None:
                raise BadRequest(f"api {name!r} has no previous revision to roll back to")
            self._retarget(db, name, api.previous_revision, api.target_revision, now)
            return api.previous_revision

    def _retarget(
        self, db: sqlite3.Connection, name: str, target: str, previous: str, now: float
    ) -> None:
        db.execute(
            "UPDATE apis SET target_revision = ?, previous_revision = ?, failed_revision = NULL, "
            "fallback_revision = NULL, status = 'updating', reason = '', restarts = 0, "
            "updated = ?, last_update = ? WHERE name = ?",
            (target, previous, now, now, name),
        )

    def _put_revision(
        self,
        db: sqlite3.Connection,
        api: str,
        revision: str,
        spec: Mapping[str, Any],
        root: str,
        now: float,
    ) -> None:
        db.execute(
            "INSERT OR IGNORE INTO revisions VALUES (?, ?, ?, ?, ?)",
            (api, revision, json.dumps(spec, sort_keys=True), root, now),
        )

    def apis(self) -> list[ApiRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_API_COLUMNS} FROM apis ORDER BY name").fetchall()  # noqa: S608
        return [ApiRecord(*row) for row in rows]

    def api(self, name: str) -> ApiRecord:
        """The API called ``name``; ``NotFound`` if there is none."""
        with self._lock:
            return self._require(self._db, name)

    def find(self, name: str) -> ApiRecord | None:
        with self._lock:
            return self._api(self._db, name)

    def revision(self, api: str, revision: str) -> Revision | None:
        with self._lock:
            return self._revision(self._db, api, revision)

    def _api(self, db: sqlite3.Connection, name: str) -> ApiRecord | None:
        row = db.execute(f"SELECT {_API_COLUMNS} FROM apis WHERE name = ?", (name,)).fetchone()  # noqa: S608
        return ApiRecord(*row) if row else None

    def _require(self, db: sqlite3.Connection, name: str) -> ApiRecord:
        api = self._api(db, name)
        if api is None or api.deleting:
            raise NotFound(f"api {name!r} is not deployed (see `ferry get`)")
        return api

    def _revision(self, db: sqlite3.Connection, api: str, revision: str) -> Revision | None:
        row = db.execute(
            "SELECT api, revision, spec, root, created FROM revisions "
            "WHERE api = ? AND revision = ?",
            (api, revision),
        ).fetchone()
        if row is None:
            return None
        return Revision(row[0], row[1], json.loads(row[2]), row[3], row[4])

    def update_api(self, name: str, now: float, **fields: Any) -> None:
        """Set reconciler-owned columns (status, reason, desired, restarts, failed/fallback)."""
        unknown = set(fields) - _RECONCILER_COLUMNS
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        if not fields:
            return
        assignments = ", ".join(f"{key} = ?" for key in fields)
        with self._tx() as db:
            db.execute(
                f"UPDATE apis SET {assignments}, updated = ? WHERE name = ?",  # noqa: S608
                (*fields.values(), now, name),
            )

    def mark_deleting(self, name: str, now: float) -> None:
        with self._tx() as db:
            self._require(db, name)
            db.execute(
                "UPDATE apis SET deleting = 1, status = 'deleting', reason = '', updated = ? "
                "WHERE name = ?",
                (now, name),
            )

    def drop(self, name: str) -> None:
        """Forget ``name`` and everything recorded about it."""
        with self._tx() as db:
            for table in ("apis", "revisions", "replicas", "events", "autoscaling", "stats"):
                column = "name" if table == "apis" else "api"
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))  # noqa: S608

    # --- replicas -----------------------------------------------------------------------

    def add_replica(self, replica_id: str, api: str, revision: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO replicas (replica_id, api, revision, created) "
                "VALUES (?, ?, ?, ?)",
                (replica_id, api, revision, now),
            )

    def remove_replica(self, replica_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM replicas WHERE replica_id = ?", (replica_id,))

    def replicas(self, api: str | None = None) -> list[ReplicaRecord]:
        query = "SELECT replica_id, api, revision, created FROM replicas"
        args: tuple[str, ...] = ()
        if api is not None:
            query, args = query + " WHERE api = ?", (api,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created, replica_id", args).fetchall()
        return [ReplicaRecord(*row) for row in rows]

    # --- events -------------------------------------------------------------------------

    def add_event(self, api: str, level: str, message: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO events (api, at, level, message) VALUES (?, ?, ?, ?)",
                (api, now, level, message),
            )
            db.execute(
                "DELETE FROM events WHERE api = ? AND id <= "
                "(SELECT id FROM events WHERE api = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (api, api, EVENTS_PER_API),
            )

    def events(self, api: str, limit: int = 50) -> list[Event]:
        """The last ``limit`` events of ``api``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT api, at, level, message FROM events WHERE api = ? ORDER BY id DESC LIMIT ?",
                (api, limit),
            ).fetchall()
        return [Event(*row) for row in reversed(rows)]

    # --- autoscaler ---------------------------------------------------------------------

    def autoscaler_state(self, api: str) -> AutoscalerState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT started_at, history, samples FROM autoscaling WHERE api = ?", (api,)
            ).fetchone()
        if row is None:
            return None
        return AutoscalerState.from_json(row[0], row[1], row[2])

    def save_autoscaler_state(self, api: str, state: AutoscalerState) -> None:
        started, history, samples = state.to_json()
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO autoscaling VALUES (?, ?, ?, ?)",
                (api, started, history, samples),
            )

    # --- request counters ---------------------------------------------------------------

    def record_counts(self, replica_id: str, api: str, totals: RequestStats) -> None:
        """Add what a replica served since it was last scraped to its API's counters.

        ``totals`` are the replica's cumulative counters; a total below the last one means
        the replica's process restarted, so all of it is new.
        """
        with self._tx() as db:
            row = db.execute(
                "SELECT counts FROM replicas WHERE replica_id = ?", (replica_id,)
            ).fetchone()
            if row is None:
                return
            last = RequestStats.from_list(json.loads(row[0]))
            delta = totals.minus(last)
            db.execute(
                "UPDATE replicas SET counts = ? WHERE replica_id = ?",
                (json.dumps(totals.to_list()), replica_id),
            )
            current = self._stats(db, api).plus(delta)
            db.execute(
                "INSERT OR REPLACE INTO stats VALUES (?, ?)", (api, json.dumps(current.to_list()))
            )

    def stats(self, api: str) -> RequestStats:
        with self._lock:
            return self._stats(self._db, api)

    def _stats(self, db: sqlite3.Connection, api: str) -> RequestStats:
        row = db.execute("SELECT counts FROM stats WHERE api = ?", (api,)).fetchone()
        return RequestStats.from_list(json.loads(row[0])) if row else RequestStats()
