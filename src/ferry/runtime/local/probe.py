"""Ask a running replica whether it is ready and how many requests it holds.

``GET /readyz`` (200 once loaded and warm) and, when ready, ``GET /metrics`` for the
``ferry_requests_in_flight`` gauge, with short timeouts. Answers are cached for ``ttl_s``
so several observations within one reconcile tick cost one round of requests.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

__all__ = ["Probe", "Prober", "local_client", "parse_in_flight"]

_GAUGE = "ferry_requests_in_flight"


@dataclass(frozen=True, slots=True)
class Probe:
    ready: bool
    in_flight: int = 0
    error: str = ""


def local_client(timeout: float) -> httpx.Client:
    """A client for plain HTTP on 127.0.0.1: no proxy from the environment, and a TLS
    context that trusts nothing instead of loading the CA bundle (~0.1 s per client)."""
    no_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return httpx.Client(timeout=timeout, verify=no_tls, trust_env=False)


def parse_in_flight(text: str) -> int:
    """Sum of every ``ferry_requests_in_flight`` sample in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(_GAUGE) and line[len(_GAUGE)] in " {":
            try:
                total += float(line.rsplit(None, 1)[-1])
            except ValueError:
                continue
    return max(0, round(total))


class Prober:
    """Thread-safe; one keep-alive HTTP client for every replica."""

    def __init__(
        self,
        timeout_s: float = 0.5,
        ttl_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout_s
        self._client: httpx.Client | None = None  # created on first use, again after close
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[int, tuple[float, Probe]] = {}
        self._lock = threading.Lock()

    def probe(self, port: int) -> Probe:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(port)
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        result = self._ask(port)
        with self._lock:
            self._cache[port] = (now, result)
        return result

    def forget(self, port: int) -> None:
        with self._lock:
            self._cache.pop(port, None)

    def _ask(self, port: int) -> Probe:
        base = f"http://127.0.0.1:{port}"
        with self._lock:
            if self._client is None:
                self._client = local_client(self._timeout)
            client = self._client
        try:
            ready = client.get(f"{base}/readyz")
            if ready.status_code != 200:
                return Probe(ready=False, error=ready.text[:200])
            metrics = client.get(f"{base}/metrics")
        except httpx.HTTPError as error:
            return Probe(ready=False, error=f"{type(error).__name__}: {error}")
        if metrics.status_code != 200:
            return Probe(ready=True)
        # the gauge counts every request, the /metrics request reading it included
        return Probe(ready=True, in_flight=max(0, parse_in_flight(metrics.text) - 1))

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
