"""Request counters from a replica's Prometheus text; one control plane per state dir."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ferry.control.launch import exclusive
from ferry.control.scrape import parse_request_stats
from ferry.control.service import read_token
from ferry.errors import FerryError

METRICS = """\
# HELP ferry_requests_total HTTP requests by route, method and status code.
# TYPE ferry_requests_total counter
ferry_requests_total{method="POST",route="/predict",status="200"} 7.0
ferry_requests_total{method="POST",route="/invocations",status="200"} 3.0
ferry_requests_total{method="POST",route="/predict",status="400"} 2.0
ferry_requests_total{method="POST",route="/predict",status="503"} 1.0
ferry_requests_total{method="GET",route="/readyz",status="200"} 50.0
ferry_requests_total{method="GET",route="/metrics",status="200"} 9.0
ferry_request_duration_seconds_bucket{le="0.005",route="/predict"} 9.0
ferry_request_duration_seconds_count{route="/predict"} 10.0
ferry_request_duration_seconds_sum{route="/predict"} 0.05
ferry_request_duration_seconds_count{route="/invocations"} 3.0
ferry_request_duration_seconds_sum{route="/invocations"} 0.015
ferry_request_duration_seconds_count{route="/readyz"} 50.0
ferry_request_duration_seconds_sum{route="/readyz"} 5.0
"""


def test_routes_with_braces_in_their_label_are_counted() -> None:
    text = (
        'ferry_requests_total{method="POST",route="/v2/models/{name}",status="200"} 4.0\n'
        'ferry_requests_total{method="POST",route="/endpoints/{name}/invocations",status="424"}'
        " 2.0\n"
        'ferry_request_duration_seconds_count{route="/endpoints/{name}/invocations"} 2.0\n'
        'ferry_request_duration_seconds_sum{route="/endpoints/{name}/invocations"} 0.5\n'
        'ferry_requests_total{method="GET",route="/v2/health/ready",status="200"} 9.0\n'
    )
    stats = parse_request_stats(text)
    assert (stats.ok, stats.client_errors, stats.server_errors) == (4, 2, 0)
    assert (stats.count, stats.avg_seconds) == (2, 0.25)


def test_traffic_is_counted_by_status_class_without_health_checks() -> None:
    stats = parse_request_stats(METRICS)
    assert (stats.ok, stats.client_errors, stats.server_errors) == (10, 2, 1)
    assert stats.count == 13
    assert stats.avg_seconds == pytest.approx(0.065 / 13)


def test_an_empty_exposition_counts_nothing() -> None:
    assert parse_request_stats("").avg_seconds is None


def test_one_control_plane_per_state_dir(tmp_path: Path) -> None:
    with exclusive(tmp_path), pytest.raises(FerryError, match="already running"):  # noqa: SIM117
        with exclusive(tmp_path):
            pass


def test_the_token_is_private_and_stable(tmp_path: Path) -> None:
    token = read_token(tmp_path, create=True)
    assert token is not None
    assert len(token) > 30
    assert read_token(tmp_path) == token
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
