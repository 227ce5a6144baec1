"""Reading replica logs (tail, follow, prefixes) and parsing the in-flight gauge."""

from __future__ import annotations

from pathlib import Path

from ferry.runtime.local.logs import read_logs
from ferry.runtime.local.probe import parse_in_flight


def test_tail_prefixes_each_line_and_hides_health_probes(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("one\ntwo\n" + 'x "GET /readyz" 200\n' + "three\npartial")
    (tmp_path / "b.log").write_text("bee\n")
    lines = list(read_logs(tmp_path, tail=2))
    assert sorted(lines) == ["[a] three", "[a] two", "[b] bee"]


def test_follow_yields_new_lines_and_new_files(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("old\n")

    def append() -> None:
        with (tmp_path / "a.log").open("a") as stream:
            stream.write("new\n")

    steps = iter([append, lambda: (tmp_path / "b.log").write_text("born\n")])

    def sleep(_: float) -> None:
        next(steps, lambda: None)()

    stream = read_logs(tmp_path, follow=True, tail=10, sleep=sleep)
    assert [next(stream), next(stream), next(stream)] == ["[a] old", "[a] new", "[b] born"]
    stream.close()


def test_follow_hands_control_back_on_every_poll_that_finds_nothing(tmp_path: Path) -> None:
    """A reader in a worker thread must get control back while the replicas are quiet,
    or it could never stop once its client has gone."""
    (tmp_path / "a.log").write_text("old\n")
    polls: list[float] = []
    stream = read_logs(tmp_path, follow=True, tail=10, poll_s=0.5, sleep=polls.append)
    assert next(stream) == "[a] old"
    assert [next(stream), next(stream)] == ["", ""]  # one per quiet poll
    assert polls == [0.5, 0.5]
    with (tmp_path / "a.log").open("a") as log:
        log.write("new\n")
    assert next(stream) == "[a] new"  # a poll with news yields no empty string
    assert next(stream) == ""
    stream.close()


def test_in_flight_sums_every_sample() -> None:
    text = (
        "# HELP ferry_requests_in_flight Requests being processed or queued.\n"
        "# TYPE ferry_requests_in_flight gauge\n"
        "ferry_requests_in_flight 3.0\n"
        'ferry_requests_in_flight{pid="2"} 2.0\n'
        "ferry_requests_in_flight_other 100\n"
    )
    assert parse_in_flight(text) == 5
    assert parse_in_flight("") == 0
