"""Per-request metrics are tallied in process and written out exactly on flush."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from ferry.monitoring.metrics import ServerMetrics

# on every bucket bound, between bounds, under the first and over the last finite one
DURATIONS = [0.0, 0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.01, 0.2, 0.5, 2.5, 59.0, 60.0, 61.0]


def _lines(metrics: ServerMetrics, prefix: str) -> list[str]:
    text = generate_latest(metrics.registry).decode()
    return [line for line in text.splitlines() if line.startswith(prefix)]


def _sample(metrics: ServerMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def test_a_flushed_tally_writes_what_observing_each_request_would_have() -> None:
    direct = ServerMetrics("m", registry=CollectorRegistry())
    tallied = ServerMetrics("m", registry=CollectorRegistry())
    tally = tallied.tally("/predict", "POST", "200")
    for seconds in DURATIONS:
        direct.requests.labels("/predict", "POST", "200").inc()
        direct.latency.labels("/predict").observe(seconds)
        tally.add(seconds)
    tallied.flush(0)
    assert _lines(tallied, "ferry_requests_total") == _lines(direct, "ferry_requests_total")
    buckets = "ferry_request_duration_seconds_bucket"
    assert _lines(tallied, buckets) == _lines(direct, buckets)
    name = "ferry_request_duration_seconds_sum"
    assert abs(_sample(tallied, name, {"route": "/predict"}) - sum(DURATIONS)) < 1e-9


def test_nothing_is_written_before_a_flush_and_nothing_twice() -> None:
    metrics = ServerMetrics("m", registry=CollectorRegistry())
    labels = {"route": "/predict", "method": "POST", "status": "200"}
    tally = metrics.tally("/predict", "POST", "200")
    tally.add(0.001)
    tally.add(0.002)
    assert _sample(metrics, "ferry_requests_total", labels) == 0
    metrics.flush(0)
    assert _sample(metrics, "ferry_requests_total", labels) == 2
    metrics.flush(0)
    assert _sample(metrics, "ferry_requests_total", labels) == 2
    tally.add(0.003)
    metrics.flush(0)
    assert _sample(metrics, "ferry_requests_total", labels) == 3
    count = "ferry_request_duration_seconds_count"
    assert _sample(metrics, count, {"route": "/predict"}) == 3


def test_tallies_for_the_same_labels_add_up() -> None:
    metrics = ServerMetrics("m", registry=CollectorRegistry())
    first = metrics.tally("other", "GET", "404")
    second = metrics.tally("other", "GET", "404")
    first.add(0.001)
    second.add(0.001)
    second.add(0.001)
    metrics.flush(0)
    labels = {"route": "other", "method": "GET", "status": "404"}
    assert _sample(metrics, "ferry_requests_total", labels) == 3


def test_flush_sets_the_in_flight_gauge() -> None:
    metrics = ServerMetrics("m", registry=CollectorRegistry())
    metrics.flush(5)
    assert _sample(metrics, "ferry_requests_in_flight") == 5
    metrics.flush(0)
    assert _sample(metrics, "ferry_requests_in_flight") == 0


def test_tallies_of_two_processes_merge_in_multiprocess_mode(tmp_path: Path) -> None:
    # multiprocess mode is process-wide (prometheus-client picks its value class once), so
    # it runs in child processes: two "workers" write, a third renders the merge
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from ferry.monitoring.metrics import ServerMetrics, enable_multiprocess

        enable_multiprocess(Path(sys.argv[1]))
        metrics = ServerMetrics("m")
        if sys.argv[2] == "render":
            sys.stdout.write(metrics.render().decode())
        else:
            tally = metrics.tally("/predict", "POST", "200")
            for _ in range(int(sys.argv[2])):
                tally.add(0.002)
            metrics.flush(int(sys.argv[3]))
        """
    )
    directory = str(tmp_path / "metrics")

    def run(*args: str) -> str:
        argv = [sys.executable, "-c", script, directory, *args]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    run("7", "0")
    run("5", "0")
    text = run("render")
    assert 'ferry_requests_total{method="POST",route="/predict",status="200"} 12.0' in text
    assert 'ferry_request_duration_seconds_bucket{le="0.0025",route="/predict"} 12.0' in text
    assert 'ferry_request_duration_seconds_bucket{le="0.001",route="/predict"} 0.0' in text
    assert 'ferry_request_duration_seconds_count{route="/predict"} 12.0' in text
