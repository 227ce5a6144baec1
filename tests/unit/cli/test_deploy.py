"""The deployment commands against an in-process control plane with the fake backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ferry.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_deploy_get_predict_delete(
    cluster: Any, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "deploy", str(project))
    assert (code, err) == (0, "")
    assert "creating iris (revision " in out
    assert f"iris is live at {cluster.backend.gateway_url}/iris" in out

    code, out, _ = run(capsys, "get")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split() == [
        "api", "status", "up-to-date", "requested", "last", "update", "avg", "request",
        "2XX", "4XX", "5XX",
    ]  # fmt: skip
    assert row.split()[:4] == ["iris", "live", "2", "2"]

    code, out, _ = run(capsys, "get", "-o", "json")
    (api,) = json.loads(out)["apis"]
    assert api["status"] == "live"
    assert api["replicas"]["up_to_date"] == 2
    assert set(api["requests"]) == {"2XX", "4XX", "5XX", "avg_request_seconds"}

    code, out, _ = run(capsys, "get", "iris")
    assert f"endpoint: {cluster.backend.gateway_url}/iris" in out
    assert f"curl {cluster.backend.gateway_url}/iris -X POST" in out

    code, out, _ = run(capsys, "predict", "iris", "--data", "[[5.1, 3.5, 1.4, 0.2]]")
    assert code == 0
    assert json.loads(out) == {"endpoint": "/iris", "payload": [[5.1, 3.5, 1.4, 0.2]]}

    code, out, _ = run(capsys, "delete", "iris", "-y")
    assert (code, out.strip()) == (0, "deleting iris")


def test_deploy_again_is_up_to_date(
    cluster: Any, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "deploy", str(project))[0] == 0
    code, out, _ = run(capsys, "deploy", str(project), "-o", "json")
    assert code == 0
    assert [a["name"] for a in json.loads(out)["apis"]] == ["iris"]
    code, out, _ = run(capsys, "deploy", str(project))
    assert "up to date: iris" in out


def test_an_api_that_cannot_boot_fails_the_deploy_with_its_reason(
    cluster: Any, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.backend.break_api("iris", "ModelLoadError: model.joblib is not a model")
    code, _, err = run(capsys, "deploy", str(project))
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("ferry: error: api iris failed: revision ")
    assert "cannot boot: ModelLoadError: model.joblib is not a model" in err


def test_describe_logs_and_events(
    cluster: Any, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "deploy", str(project))
    code, out, _ = run(capsys, "describe", "iris")
    assert code == 0
    assert "replica" in out
    assert "ready" in out
    assert "starting replica iris-" in out
    code, out, _ = run(capsys, "describe", "iris", "-o", "json")
    detail = json.loads(out)
    assert len(detail["replica_list"]) == 2
    assert detail["events"]
    code, out, _ = run(capsys, "logs", "iris")
    assert code == 0
    assert "] loading " in out


def test_rollback_and_refresh(
    cluster: Any, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "deploy", str(project))
    code, _, err = run(capsys, "rollback", "iris")
    assert code == 1
    assert err == "ferry: error: api 'iris' has no previous revision to roll back to\n"
    code, out, _ = run(capsys, "refresh", "iris", "-o", "json")
    assert code == 0
    assert json.loads(out)["api"] == "iris"
    code, out, _ = run(capsys, "rollback", "iris")
    assert code == 0
    assert out.startswith("rolling iris back to revision ")


def test_errors_are_one_line(
    cluster: Any, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "describe", "nope")
    assert (code, err) == (1, "ferry: error: api 'nope' is not deployed (see `ferry get`)\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ferry.yaml").write_text("- name: iris\n  predictr: {}\n")
    code, _, err = run(capsys, "deploy", str(tmp_path / "bad"))
    assert code == 2
    assert err.startswith("ferry: error: ")
    assert "did you mean 'predictor'?" in err
    assert err.count("\n") == 1
    code, _, err = run(capsys, "predict", "iris", "--data", "{not json")
    assert code == 2
    assert "--data is not valid JSON" in err


def test_predict_shows_the_gateway_error(
    cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "p2"
    root.mkdir()
    (root / "ferry.yaml").write_text(
        "- name: broken\n"
        "  predictor: {type: python, model_path: m.joblib}\n"
        "  networking: {endpoint: /broken}\n"
    )
    run(capsys, "deploy", str(root), "--no-wait")
    payload = tmp_path / "payload.json"
    payload.write_text("[[1, 2]]")
    code, _, err = run(capsys, "predict", "broken", "--data", f"@{payload}")
    assert (code, err) == (1, "ferry: error: broken answered 503: no replica is ready\n")


def test_cluster_info_and_down(cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "cluster", "info", "-o", "json")
    info = json.loads(out)
    assert code == 0
    assert info["backend"] == "FakeBackend"
    assert info["apis"] == 0
    code, out, _ = run(capsys, "cluster", "info")
    assert "gateway url" in out
    code, out, _ = run(capsys, "cluster", "down")
    assert code == 0
    assert out.startswith("stopped the local cluster")
    cluster.thread.join(10)
    assert not cluster.thread.is_alive()


def test_commands_say_when_the_cluster_is_not_running(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["get"], ["describe", "iris"], ["logs", "iris"], ["cluster", "info"]):
        code, out, err = run(capsys, *argv)
        assert code == 1
        assert err == (
            "ferry: error: the local cluster is not running; start it with `ferry cluster up`\n"
        )
    code, out, _ = run(capsys, "cluster", "down")
    assert (code, out) == (0, "the local cluster is not running\n")


def test_init_scaffolds_a_project_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "My Service"
    code, out, _ = run(capsys, "init", str(target))
    assert code == 0
    assert "name: my-service" in (target / "ferry.yaml").read_text()
    assert "created" in out
    assert "ferry deploy" in out
    code, _, err = run(capsys, "init", str(target), "--name", "other")
    assert code == 2
    assert "already exists" in err
