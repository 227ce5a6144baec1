"""Upstream slots: a fixed set of 127.0.0.1 ports per API that replicas take turns on.

The gateway lists every slot of an API in its upstream, always, so a replica starting,
becoming ready, draining or crashing never changes nginx's configuration: an empty slot
just refuses connections and nginx moves on to the next one. Slots are allocated once per
API (``MIN_SLOTS`` at first use, one more whenever every slot is taken, which is the only
change that needs a reload) and persisted in ``<state_dir>/slots.json`` so a new control
plane renders the same upstreams. Ports come from below Linux's ephemeral range, so the
kernel never hands a slot out as the source port of some outgoing connection.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
from collections.abc import Callable
from pathlib import Path

__all__ = ["MIN_SLOTS", "SlotPool", "port_is_free", "slot_port"]

log = logging.getLogger("ferry.runtime.local")

MIN_SLOTS = 4  # two replicas plus a surge of two: a rolling update of a 2-replica API
_LOW, _HIGH = 20000, 32767  # below the default ephemeral range (32768-60999)


def port_is_free(port: int) -> bool:
    """True when a listener could bind ``port`` now (as ``ferry serve`` does)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def slot_port(taken: set[int] | None = None) -> int:
    """A free port outside the ephemeral range and outside ``taken``."""
    taken = taken or set()
    for _ in range(200):
        port = random.SystemRandom().randint(_LOW, _HIGH)
        if port not in taken and port_is_free(port):
            return port
    raise OSError("no free port for a gateway slot between 20000 and 32767")


class SlotPool:
    """The slots of every API, durable. Not thread-safe: the supervisor's lock guards it."""

    def __init__(
        self,
        path: Path,
        port_finder: Callable[[], int] | None = None,
        is_free: Callable[[int], bool] = port_is_free,
    ) -> None:
        self.path = path
        self._finder = port_finder
        self._is_free = is_free
        self._slots: dict[str, list[int]] = self._load()

    def ports(self, api: str) -> tuple[int, ...]:
        return tuple(self._slots.get(api, ()))

    def snapshot(self) -> dict[str, tuple[int, ...]]:
        return {api: tuple(ports) for api, ports in self._slots.items()}

    def assign(self, api: str, busy: set[int], prefer: int = 0) -> int:
        """A slot of ``api`` not in ``busy`` (``prefer`` if possible); grows when full."""
        ports = self._slots.setdefault(api, [])
        while len(ports) < MIN_SLOTS:
            ports.append(self._new_port())
        candidates = [p for p in ports if p not in busy]
        if prefer in candidates:
            candidates.insert(0, prefer)
        for port in candidates:
            if self._is_free(port):
                self._save()
                return port
        ports.append(self._new_port())
        log.info("api %s needs another gateway slot: %d in all", api, len(ports))
        self._save()
        return ports[-1]

    def release(self, api: str) -> None:
        """Forget the slots of an API that is gone."""
        if self._slots.pop(api, None) is not None:
            self._save()

    def _new_port(self) -> int:
        taken = {port for ports in self._slots.values() for port in ports}
        if self._finder is not None:
            return self._finder()
        return slot_port(taken)

    def _load(self) -> dict[str, list[int]]:
        try:
            data = json.loads(self.path.read_text())
            return {str(api): [int(p) for p in ports] for api, ports in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as error:
            log.warning("ignoring unreadable gateway slots %s: %s", self.path, error)
            return {}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".tmp{os.getpid()}")
        temporary.write_text(json.dumps(self._slots, sort_keys=True))
        os.replace(temporary, self.path)
