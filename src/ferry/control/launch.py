"""The control-plane process from its first line: the lock, the backend, then the server.

``run_control_plane`` is what ``ferry cluster up --foreground`` runs. It imports nothing
heavy before the backend is built: the lock file says whether this process may run at all,
then ``backend_factory`` builds the backend (the local one starts its zygote, which
preloads the model frameworks for a couple of seconds), and only then come the server's
own imports (uvicorn, the store, the reconciler), which overlap that preloading. The
backend is injected because the control plane never imports a concrete backend; the CLI,
which may import every layer, builds the local one.

This module stays light (standard library only) for that reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ferry.errors import FerryError

if TYPE_CHECKING:
    from ferry.runtime.base import RuntimeBackend

__all__ = ["LOCK_FILE", "default_state_dir", "exclusive", "run_control_plane"]

log = logging.getLogger("ferry.control")

LOCK_FILE = "control.lock"


def default_state_dir() -> Path:
    """``$FERRY_STATE_DIR``, else ``$XDG_STATE_HOME/ferry``, else ``~/.local/state/ferry``."""
    if os.environ.get("FERRY_STATE_DIR"):
        return Path(os.environ["FERRY_STATE_DIR"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ferry"


@contextlib.contextmanager
def exclusive(state_dir: Path) -> Iterator[TextIO]:
    """Hold the state directory's lock, or raise: one control plane per state directory."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "r+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FerryError(
                f"a control plane is already running for {state_dir} (see `ferry cluster info`)"
            ) from None
        yield lock


def run_control_plane(
    state_dir: Path,
    backend_factory: Callable[[], RuntimeBackend],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> int:
    """Run the control plane in this process until it is stopped; the exit code."""
    with exclusive(state_dir):
        backend = backend_factory()
        try:
            from ferry.control.scrape import HttpScraper
            from ferry.control.service import ControlPlane

            scraper = HttpScraper()
        except BaseException:
            backend.close()
            raise
        try:
            plane = ControlPlane(state_dir, backend, host=host, port=port, scrape=scraper)
        except BaseException:
            backend.close()
            scraper.close()
            raise
        try:
            log.info("control plane listening on %s", plane.url)
            plane.serve()  # closes the backend on its way out
        finally:
            scraper.close()
    return 0
