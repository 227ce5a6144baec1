"""What a SageMaker deploy creates, decided before any AWS call."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.apispec import load_project
from ferry.errors import ConfigError
from ferry.runtime.aws.plan import (
    TAG_API,
    SageMakerOptions,
    config_name,
    model_name,
    plan_endpoint,
    production_variants,
    resource_id,
    revision_of,
    tags,
)
from ferry.runtime.aws.sagemaker import container_env

OPTIONS = SageMakerOptions(
    image_uri="1.dkr.ecr.us-east-1.amazonaws.com/x:1",
    role_arn="arn:aws:iam::123456789012:role/r",
    bucket="models",
)
YAML = """\
- name: iris-a
  predictor: {type: python, model_path: a.joblib, processes_per_replica: 2, env: {K: v}}
  autoscaling: {min_replicas: 2, max_replicas: 6}
- name: iris-b
  predictor: {type: python, model_path: b.joblib}
- name: iris
  kind: TrafficSplitter
  apis: [{name: iris-a, weight: 75}, {name: iris-b, weight: 25}]
"""


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "ferry.yaml").write_text(YAML)
    return load_project(tmp_path)


def test_a_splitter_becomes_weighted_variants(project) -> None:  # type: ignore[no-untyped-def]
    plan = plan_endpoint(project, "iris", OPTIONS)
    assert [v.variant.name for v in plan.variants] == ["iris-a", "iris-b"]
    assert plan.weights() == {"iris-a": 0.75, "iris-b": 0.25}
    variants = production_variants(plan, "abc123")
    assert variants[0] == {
        "VariantName": "iris-a",
        "ModelName": "iris-iris-a-abc123",
        "InitialInstanceCount": 2,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": 0.75,
        "ContainerStartupHealthCheckTimeoutInSeconds": 600,
    }
    assert (plan.variants[0].min_instances, plan.variants[0].max_instances) == (2, 6)


def test_a_single_api_is_one_primary_variant(project) -> None:  # type: ignore[no-untyped-def]
    plan = plan_endpoint(project, "iris-b", OPTIONS)
    assert [(v.variant.name, v.variant.weight) for v in plan.variants] == [("primary", 1.0)]
    assert plan.weights() == {"primary": 1.0}


def test_container_env_reuses_the_packaging(project) -> None:  # type: ignore[no-untyped-def]
    variant = plan_endpoint(project, "iris-a", OPTIONS).variants[0]
    env = container_env(variant, OPTIONS)
    assert env["SAGEMAKER_MODEL_SERVER_WORKERS"] == "2"
    assert env["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == "60"
    assert env["K"] == "v"


def test_revision_changes_with_what_is_served(project) -> None:  # type: ignore[no-untyped-def]
    plan = plan_endpoint(project, "iris", OPTIONS)
    urls = {"iris-a": "s3://m/a.tar.gz", "iris-b": "s3://m/b.tar.gz"}
    first = revision_of(plan, OPTIONS, urls)
    assert first == revision_of(plan, OPTIONS, dict(urls))
    assert first != revision_of(plan, OPTIONS, {**urls, "iris-b": "s3://m/c.tar.gz"})
    assert len(first) == 10


def test_names_fit_sagemaker_limits() -> None:
    assert config_name("iris", "abc") == "iris-abc"
    long = model_name("a" * 40, "b" * 40, "0123456789")
    assert len(long) <= 63
    assert long.endswith("-0123456789")
    assert resource_id("iris", "primary") == "endpoint/iris/variant/primary"
    assert {"Key": TAG_API, "Value": "iris"} in tags("iris", "r1", "primary")


def test_bad_input_is_a_config_error(project) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="no API named 'nope'"):
        plan_endpoint(project, "nope", OPTIONS)
    with pytest.raises(ConfigError, match="is not an IAM role ARN"):
        SageMakerOptions(image_uri="i", role_arn="role", bucket="b")
    with pytest.raises(ConfigError, match="without s3://"):
        SageMakerOptions(image_uri="i", role_arn="arn:aws:iam::1:role/r", bucket="s3://b/x")


def test_shadow_targets_are_refused(tmp_path: Path) -> None:
    (tmp_path / "ferry.yaml").write_text(
        YAML.replace(
            "{name: iris-b, weight: 25}", "{name: iris-b, weight: 25, shadow: true}"
        ).replace("weight: 75", "weight: 100")
    )
    with pytest.raises(ConfigError, match="shadow APIs are not deployed to SageMaker"):
        plan_endpoint(load_project(tmp_path), "iris", OPTIONS)
