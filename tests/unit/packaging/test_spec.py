"""PackageSpec: bad values fail when the spec is built, not when a cloud rejects a file."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.packaging import Autoscaling, Compute, PackageSpec, UpdateStrategy, Variant
from ferry.packaging.spec import number


def _spec(**changes: Any) -> PackageSpec:
    return PackageSpec(**{"app_name": "iris", "model_file": "iris.joblib", **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"app_name": "Iris"}, "app_name"),
        ({"app_name": "a-very-long-application-name"}, "app_name"),
        ({"model_file": "/abs/iris.joblib"}, "model_file"),
        ({"model_file": "../iris.joblib"}, "model_file"),
        ({"predictor_dir": "code/../.."}, "predictor_dir"),
        ({"python_version": "3.8"}, "python_version"),
        ({"env": {"1BAD": "x"}}, "env name"),
        ({"env": {"OK": "two\nlines"}}, "span lines"),
        ({"local_wheels": ("dist/ferry.whl",)}, "local wheel"),
        ({"port": 0}, "port"),
        ({"workers": 0}, "workers"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"health_path": "readyz"}, "health path"),
        ({"log_format": "xml"}, "log_format"),
        ({"user": "root", "uid": 0}, "user"),
        ({"variants": ()}, "at least one variant"),
        ({"variants": (Variant("a"), Variant("a"))}, "unique"),
        ({"variants": (Variant("a-b"), Variant("Ab"))}, "unique"),
        ({"variants": (Variant("a", weight=0),)}, "weights"),
    ],
)
def test_invalid_specs_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(**changes)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Compute(cpu=0), "compute.cpu"),
        (lambda: Compute(mem_bytes=1024), "64 MiB"),
        (lambda: Compute(gpu=-1), "gpu"),
        (lambda: Autoscaling(min_replicas=0), "min_replicas"),
        (lambda: Autoscaling(min_replicas=3, max_replicas=2), "max_replicas"),
        (lambda: Autoscaling(target_concurrency=0), "positive"),
        (lambda: Autoscaling(target_cpu_percent=0), "target_cpu_percent"),
        (lambda: UpdateStrategy(max_surge="25"), "percentage"),
        (lambda: UpdateStrategy(max_surge="101%"), "percentage"),
        (lambda: UpdateStrategy(max_surge=-1), "negative"),
        (lambda: UpdateStrategy(max_surge=True), "int or a percentage"),
        (lambda: UpdateStrategy(max_surge=0, max_unavailable="0%"), "both be 0"),
        (lambda: Variant("bad_name"), "variant name"),
        (lambda: Variant("a", instance_type="m5.large"), "instance_type"),
        (lambda: Variant("a", initial_instance_count=0), "initial_instance_count"),
        (lambda: Variant("a", model_data_url="s3://b/model.zip"), "model_data_url"),
        (lambda: Variant("a", weight=-1), "weight"),
    ],
)
def test_invalid_parts_are_refused(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_spec_is_frozen_and_env_is_sorted_and_read_only() -> None:
    spec = _spec(env={"B": "2", "A": "1"})
    assert list(spec.env) == ["A", "B"]
    with pytest.raises(TypeError):
        spec.env["C"] = "3"  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.port = 1  # type: ignore[misc]


def test_derived_values() -> None:
    spec = _spec(timeout_s=30.5, graceful_timeout_s=20.2, max_body_bytes=1536 * 1024)
    assert spec.base_image == "python:3.11.11-slim-bookworm"
    assert spec.model_path == "/opt/ml/model/iris.joblib"
    assert spec.image_uri == "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/iris:latest"
    assert (spec.timeout_seconds, spec.drain_seconds) == (31, 21)
    assert spec.sagemaker_env() == {
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30.5",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1.5",
    }
    flags = spec.serve_flags()
    assert flags[flags.index("--max-body-size") + 1] == "1572864"
    assert Compute(cpu=0.1).millicores == 100
    assert Compute(cpu=1.0005).millicores == 1001


def test_number_formatting() -> None:
    assert (number(60.0), number(2.5), number(7)) == ("60", "2.5", "7")
