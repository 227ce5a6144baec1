"""What `ferry get`, `describe`, `logs` and `predict` print, table and JSON, as a Cortex
user reads them: against an in-process control plane with the fake backend."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ferry.cli.main import main

SPLIT_PROJECT = """\
- name: iris
  predictor: {type: python, model_path: model.joblib}
  autoscaling: {min_replicas: 2}
- name: iris-b
  predictor: {type: python, model_path: model.joblib}
- name: iris-c
  predictor: {type: python, model_path: model.joblib}
- name: split
  kind: TrafficSplitter
  networking: {endpoint: /classify}
  apis:
    - {name: iris, weight: 70}
    - {name: iris-b, weight: 30}
    - {name: iris-c, weight: 25, shadow: true}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def deployed(cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    root = tmp_path / "split-project"
    root.mkdir()
    (root / "ferry.yaml").write_text(SPLIT_PROJECT)
    code, _, err = run(capsys, "deploy", str(root))
    assert (code, err) == (0, "")
    return cluster


def cells(out: str, first: str) -> list[str]:
    """The cells of the table row of ``out`` that starts with ``first``."""
    row = next(line for line in out.splitlines() if line.split()[:1] == [first])
    return row.split()


def test_get_lists_apis_then_splitters_with_their_weights(
    deployed: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "get")
    assert code == 0
    header = out.splitlines()[0]
    assert re.split(r"\s{2,}", header.strip()) == [
        "api", "status", "up-to-date", "requested", "last update", "avg request",
        "2XX", "4XX", "5XX",
    ]  # fmt: skip
    assert cells(out, "iris")[:4] == ["iris", "live", "2", "2"]
    assert cells(out, "iris-b")[:4] == ["iris-b", "live", "1", "1"]
    splitters = out[out.index("traffic splitter") :]
    assert re.split(r"\s{2,}", splitters.splitlines()[0].strip()) == [
        "traffic splitter", "status", "apis", "endpoint", "last update",
    ]  # fmt: skip
    row = splitters.splitlines()[1]
    assert row.split()[:2] == ["split", "live"]
    assert "iris:70 iris-b:30 iris-c:25 (shadow)" in row
    assert "/classify" in row


def test_get_api_shows_endpoint_replicas_revision_and_a_curl_example(
    deployed: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    detail = json.loads(run(capsys, "get", "iris", "-o", "json")[1])
    code, out, _ = run(capsys, "get", "iris")
    assert code == 0
    url = f"{deployed.backend.gateway_url}/iris"
    assert "status: live" in out
    assert f"endpoint: {url}" in out
    assert f"revision: {detail['revision']}" in out
    assert cells(out, "requested") == [
        "requested", "up-to-date", "stale", "starting", "ready", "failed", "terminating",
    ]  # fmt: skip
    counts = out.splitlines()[out.splitlines().index(_line(out, "requested")) + 1].split()
    assert counts == ["2", "2", "0", "0", "2", "0", "0"]
    assert f'example: curl {url} -X POST -H "Content-Type: application/json" -d @sample.json' in out


def _line(out: str, first: str) -> str:
    return next(line for line in out.splitlines() if line.split()[:1] == [first])


def test_get_splitter_shows_each_api_with_its_weight_and_counters(
    deployed: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "get", "split")
    assert code == 0
    assert f"endpoint: {deployed.backend.gateway_url}/classify" in out
    assert re.split(r"\s{2,}", _line(out, "api").strip()) == [
        "api", "weight", "status", "up-to-date", "requested", "avg request", "2XX", "4XX", "5XX",
    ]  # fmt: skip
    assert cells(out, "iris")[:5] == ["iris", "70", "live", "2", "2"]
    assert cells(out, "iris-b")[:5] == ["iris-b", "30", "live", "1", "1"]
    assert cells(out, "iris-c")[:6] == ["iris-c", "25", "(shadow)", "live", "1", "1"]
    assert f"curl {deployed.backend.gateway_url}/classify -X POST" in out
    detail = json.loads(run(capsys, "get", "split", "-o", "json")[1])
    assert {(t["name"], t["weight"], t.get("shadow", False)) for t in detail["spec"]["apis"]} == {
        ("iris", 70, False),
        ("iris-b", 30, False),
        ("iris-c", 25, True),
    }


def test_describe_shows_replica_states_and_recent_events(
    deployed: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "describe", "iris")
    assert code == 0
    replicas = [line.split() for line in out.splitlines() if line.startswith("iris-")]
    assert len(replicas) == 2
    assert {row[2] for row in replicas} == {"ready"}  # replica, revision, state, ...
    assert re.split(r"\s{2,}", _line(out, "time").strip()) == ["time", "level", "event"]
    assert "starting replica iris-" in out
    code, out, _ = run(capsys, "describe", "iris", "--events", "1", "-o", "json")
    detail = json.loads(out)
    assert len(detail["events"]) == 1
    assert {r["state"] for r in detail["replica_list"]} == {"ready"}
    code, out, _ = run(capsys, "describe", "split")
    assert code == 0
    assert cells(out, "iris-c")[:3] == ["iris-c", "25", "(shadow)"]


def test_logs_prefix_every_replica_and_json_names_it(
    deployed: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "logs", "iris")
    assert code == 0
    lines = out.splitlines()
    assert all(re.match(r"^\[iris-\S+\] ", line) for line in lines)
    replicas = {line[1:].split("]")[0] for line in lines}
    assert len(replicas) == 2
    code, out, _ = run(capsys, "logs", "iris", "-o", "json")
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == len(lines)
    assert all(set(r) == {"replica", "line"} for r in records)
    assert [f"[{r['replica']}] {r['line']}" for r in records] == lines
    assert {r["replica"] for r in records if r["line"].startswith("loading ")} == replicas


def test_predict_sends_json_or_a_file_and_prints_the_answer(
    deployed: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "predict", "split", "--data", '{"rows": [[1, 2]]}')
    assert code == 0
    assert json.loads(out) == {"endpoint": "/classify", "payload": {"rows": [[1, 2]]}}
    payload = tmp_path / "sample.json"
    payload.write_text("[[5.1, 3.5, 1.4, 0.2]]")
    code, out, _ = run(capsys, "predict", "iris", "-d", f"@{payload}", "-o", "json")
    assert code == 0
    assert out == '{"endpoint": "/iris", "payload": [[5.1, 3.5, 1.4, 0.2]]}\n'  # one line
    code, _, err = run(capsys, "predict", "iris", "-d", f"@{tmp_path / 'missing.json'}")
    assert code == 2
    assert err.startswith("ferry: error: --data @")
    assert "cannot read it" in err
    assert err.count("\n") == 1


def test_rollback_refresh_and_delete_say_what_they_do(
    deployed: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "rollback", "iris", "-o", "json")
    assert (code, err) == (1, "ferry: error: api 'iris' has no previous revision to roll back to\n")
    code, out, _ = run(capsys, "refresh", "iris")
    assert code == 0
    assert re.fullmatch(r"refreshing iris \(revision \S+\)\n", out)
    code, out, _ = run(capsys, "delete", "split", "--yes", "-o", "json")
    assert code == 0
    assert json.loads(out) == {"api": "split", "status": "deleting"}
    code, _, err = run(capsys, "delete", "nope", "--yes")
    assert (code, err) == (1, "ferry: error: api 'nope' is not deployed (see `ferry get`)\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "nope"],
        ["get", "nope", "-o", "json"],
        ["get", "nope", "--watch"],
        ["describe", "nope", "-o", "json"],
        ["logs", "nope", "-o", "json"],
        ["predict", "nope", "-d", "[1]", "-o", "json"],
    ],
)
def test_errors_are_one_line_whatever_the_output(
    deployed: Any, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == "ferry: error: api 'nope' is not deployed (see `ferry get`)\n"


def test_watch_is_for_the_local_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "get", "--watch", "--env", "sagemaker")
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == (
        "Error: --watch works on the local cluster, not with --env sagemaker"
    )
