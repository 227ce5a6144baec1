"""Request counters read from a replica's Prometheus ``/metrics`` text.

Counts ``ferry_requests_total`` by status class and ``ferry_request_duration_seconds``
sum and count, leaving out health and metrics routes so ``ferry get`` shows traffic only.
"""

from __future__ import annotations

import re

import httpx

from ferry.control.client import local_client
from ferry.control.records import RequestStats

__all__ = ["HttpScraper", "parse_request_stats"]

# Label values may hold "}" (routes such as /v2/models/{name}), so quoted values are
# matched as a whole inside the braces.
_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>(?:[^}"]|"(?:[^"\\]|\\.)*")*)\})?'
    r"\s+(?P<value>\S+)"
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_NOT_TRAFFIC = ("/metrics", "/ping", "/healthz", "/readyz", "/livez", "/v2/health")


def parse_request_stats(text: str) -> RequestStats:
    """The cumulative request counters in one exposition of a replica's metrics."""
    counts = {"2": 0, "4": 0, "5": 0}
    seconds, count = 0.0, 0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        if labels.get("route", "").startswith(_NOT_TRAFFIC):
            continue
        name, value = match["name"], float(match["value"])
        if name == "ferry_requests_total":
            status = labels.get("status", "")[:1]
            if status in counts:
                counts[status] += int(value)
        elif name == "ferry_request_duration_seconds_sum":
            seconds += value
        elif name == "ferry_request_duration_seconds_count":
            count += int(value)
    return RequestStats(counts["2"], counts["4"], counts["5"], seconds, count)


class HttpScraper:
    """``scrape(address)`` for the reconciler: GET http://ADDRESS/metrics, short timeout."""

    def __init__(self, timeout: float = 0.5) -> None:
        self._client = local_client(timeout)

    def __call__(self, address: str) -> RequestStats | None:
        try:
            response = self._client.get(f"http://{address}/metrics")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return parse_request_stats(response.text)

    def close(self) -> None:
        self._client.close()
