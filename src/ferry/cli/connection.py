"""How deployment commands reach the local control plane."""

from __future__ import annotations

from pathlib import Path

from ferry.control.client import ControlClient
from ferry.control.store import default_state_dir

__all__ = ["connect", "state_dir"]


def state_dir() -> Path:
    """Where the local cluster keeps its state: ``$FERRY_STATE_DIR`` or ``~/.local/state/ferry``."""
    return default_state_dir()


def connect(*, start: bool = False) -> ControlClient:
    """A client of the running control plane (started on demand if ``start``)."""
    return ControlClient.connect(state_dir(), start=start)
