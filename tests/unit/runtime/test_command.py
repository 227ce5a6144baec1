"""ReplicaSpec -> `ferry serve` flags and environment."""

from __future__ import annotations

import json

from ferry.cli.serve import serve
from ferry.config import ModelSpec
from ferry.runtime.base import ReplicaSpec
from ferry.runtime.local.command import (
    serve_argv,
    serve_env,
    spec_from_json,
    spec_to_json,
)

MODEL = ModelSpec(
    uri="/m/predictor.py:Predictor",
    framework="python",
    name="iris",
    predict_proba=True,
    labels={0: "setosa", 1: "versicolor"},
    feature_names=("a", "b"),
    config={"threshold": 0.5, "name": "x", "nested": {"k": [1]}},
    python_path="/m/lib",
    predictor_batching=True,
)
SPEC = ReplicaSpec(
    "iris-1",
    "iris",
    "r3",
    MODEL,
    server={"batching": False, "max_batch_size": 8, "timeout_s": 2.5, "endpoint": "/x"},
    env={"TOKEN": "t"},
)


def test_every_setting_maps_to_a_flag_the_serve_cli_accepts() -> None:
    argv = serve_argv(SPEC, 4321, "python")
    assert argv[:5] == ["python", "-m", "ferry", "serve", "/m/predictor.py:Predictor"]
    joined = " ".join(argv)
    for part in (
        "--host 127.0.0.1 --port 4321",
        "--framework python",
        "--predict-proba",
        "--labels 0=setosa,1=versicolor",
        "--feature-names a,b",
        "--config threshold=0.5",
        '--config name="x"',
        "--no-batching",
        "--max-batch-size 8",
        "--timeout 2.5",
        "--workers 1",
        "--predictor-batching",
    ):
        assert part in joined
    assert "--endpoint" not in argv  # the gateway maps /<endpoint> onto /predict
    context = serve.make_context("serve", argv[4:])  # click parses what we produce
    assert context.params["max_batch_size"] == 8
    assert context.params["config_pairs"][2] == 'nested={"k": [1]}'


def test_the_environment_carries_the_marker_and_python_path() -> None:
    env = serve_env(SPEC, {"PATH": "/bin", "PYTHONPATH": "/old"})
    assert env["FERRY_REPLICA_ID"] == "iris-1"
    assert env["TOKEN"] == "t"
    assert env["PYTHONPATH"] == "/m/lib:/old"


def test_a_spec_survives_a_json_round_trip() -> None:
    assert spec_from_json(json.loads(json.dumps(spec_to_json(SPEC)))) == SPEC
