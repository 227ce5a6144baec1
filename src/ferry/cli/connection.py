"""How deployment commands reach the local control plane."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ferry.control.launch import default_state_dir

if TYPE_CHECKING:
    from ferry.control.client import ControlClient

__all__ = ["connect", "state_dir"]


def state_dir() -> Path:
    """Where the local cluster keeps its state: ``$FERRY_STATE_DIR`` or ``~/.local/state/ferry``."""
    return default_state_dir()


def connect(*, start: bool = False) -> ControlClient:
    """A client of the running control plane (started on demand if ``start``)."""
    from ferry.control.client import ControlClient  # imported on use: it loads httpx

    return ControlClient.connect(state_dir(), start=start)
