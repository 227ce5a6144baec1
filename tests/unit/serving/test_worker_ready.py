"""A worker whose model turned ready tells the supervisor and freezes its long-lived objects."""

from __future__ import annotations

import gc

from ferry.serving.worker import HeartbeatBoard, _ready


def test_ready_marks_the_slot_and_freezes_what_is_alive() -> None:
    board = HeartbeatBoard(2)
    gc.unfreeze()
    try:
        _ready(board, 1)
        assert gc.get_freeze_count() > 0
        assert not board.all_ready()
        _ready(board, 0)
        assert board.all_ready()
    finally:
        gc.unfreeze()  # this test process goes on collecting as usual
