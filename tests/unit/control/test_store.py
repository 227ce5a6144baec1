"""The SQLite store: durable across reopening, transactional, revisions by content."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ferry.control.records import RequestStats
from ferry.control.store import Store, default_state_dir, revision_id
from ferry.errors import BadRequest, NotFound

SPEC = {"name": "iris", "predictor": {"model_path": "model.joblib"}}


def test_everything_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "ferry.db"
    store = Store(path)
    outcome = store.deploy("iris", "RealtimeAPI", "/iris", SPEC, "/p", 10.0)
    store.add_replica("iris-a", "iris", outcome.revision, 11.0)
    store.add_event("iris", "info", "hello", 12.0)
    store.update_api("iris", 13.0, status="live", desired=3)
    store.close()
    again = Store(path)
    record = again.api("iris")
    assert (record.status, record.desired, record.target_revision) == ("live", 3, outcome.revision)
    assert [r.replica_id for r in again.replicas("iris")] == ["iris-a"]
    assert [e.message for e in again.events("iris")] == ["hello"]
    revision = again.revision("iris", outcome.revision)
    assert revision is not None
    assert revision.spec == SPEC
    again.close()


def test_revisions_are_content_hashes(tmp_path: Path) -> None:
    store = Store(tmp_path / "ferry.db")
    first = store.deploy("iris", "RealtimeAPI", "/iris", SPEC, "/p", 1.0)
    assert first.action == "created"
    assert first.revision == revision_id(SPEC, "/p")
    assert store.deploy("iris", "RealtimeAPI", "/iris", SPEC, "/p", 2.0).action == "unchanged"
    changed = store.deploy("iris", "RealtimeAPI", "/iris", {**SPEC, "x": 1}, "/p", 3.0)
    assert changed.action == "updated"
    record = store.api("iris")
    assert record.previous_revision == first.revision
    assert record.last_update == 3.0


def test_rollback_swaps_target_and_previous(tmp_path: Path) -> None:
    store = Store(tmp_path / "ferry.db")
    first = store.deploy("iris", "RealtimeAPI", "/iris", SPEC, "/p", 1.0).revision
    with pytest.raises(BadRequest, match="no previous revision"):
        store.rollback("iris", 2.0)
    second = store.deploy("iris", "RealtimeAPI", "/iris", {**SPEC, "x": 1}, "/p", 3.0).revision
    assert store.rollback("iris", 4.0) == first
    record = store.api("iris")
    assert (record.target_revision, record.previous_revision) == (first, second)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = Store(tmp_path / "ferry.db")
    store.deploy("iris", "RealtimeAPI", "/iris", SPEC, "/p", 1.0)

    def half_done() -> None:
        with store._tx() as db:
            db.execute("UPDATE apis SET status = 'live'")
            db.execute("INSERT INTO nowhere VALUES (1)")

    with pytest.raises(sqlite3.Error):
        half_done()
    assert store.api("iris").status == "updating"


def test_unknown_apis_are_not_found_and_deleting_ones_are_gone(tmp_path: Path) -> None:
    store = Store(tmp_path / "ferry.db")
    with pytest.raises(NotFound, match="'nope' is not deployed"):
        store.api("nope")
    store.deploy("iris", "RealtimeAPI", "/iris", SPEC, "/p", 1.0)
    store.mark_deleting("iris", 2.0)
    with pytest.raises(NotFound):
        store.api("iris")
    assert store.find("iris") is not None
    store.drop("iris")
    assert store.find("iris") is None


def test_events_are_capped_per_api(tmp_path: Path) -> None:
    store = Store(tmp_path / "ferry.db")
    for index in range(250):
        store.add_event("iris", "info", f"e{index}", float(index))
    events = store.events("iris", limit=1000)
    assert len(events) == 200
    assert events[-1].message == "e249"


def test_request_counters_add_deltas_and_survive_replica_restarts(tmp_path: Path) -> None:
    store = Store(tmp_path / "ferry.db")
    store.add_replica("r1", "iris", "rev", 1.0)
    store.record_counts("r1", "iris", RequestStats(ok=5, seconds=0.5, count=5))
    store.record_counts("r1", "iris", RequestStats(ok=8, client_errors=1, seconds=0.9, count=9))
    store.record_counts("r1", "iris", RequestStats(ok=2, seconds=0.2, count=2))  # restarted
    stats = store.stats("iris")
    assert (stats.ok, stats.client_errors, stats.count) == (10, 1, 11)


def test_the_state_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_STATE_DIR", "/tmp/elsewhere")
    assert default_state_dir() == Path("/tmp/elsewhere")
    monkeypatch.delenv("FERRY_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", "/tmp/xdg")
    assert default_state_dir() == Path("/tmp/xdg/ferry")


def test_the_database_uses_wal(tmp_path: Path) -> None:
    Store(tmp_path / "ferry.db").close()
    with sqlite3.connect(tmp_path / "ferry.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert os.path.getsize(tmp_path / "ferry.db") > 0
