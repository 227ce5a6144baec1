"""A worker whose model turned ready tells the supervisor and tunes its garbage collector."""

from __future__ import annotations

import gc

from ferry.serving.worker import GC_YOUNG_THRESHOLD, HeartbeatBoard, _ready


def test_ready_marks_the_slot_and_tunes_the_garbage_collector() -> None:
    board = HeartbeatBoard(2)
    thresholds = gc.get_threshold()
    gc.unfreeze()
    try:
        _ready(board, 1)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *thresholds[1:])
        assert not board.all_ready()
        _ready(board, 0)
        assert board.all_ready()
    finally:  # this test process goes on collecting as usual
        gc.unfreeze()
        gc.set_threshold(*thresholds)
