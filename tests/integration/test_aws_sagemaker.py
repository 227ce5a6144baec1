"""``ferry deploy --env sagemaker`` against moto's standalone server (a real HTTP endpoint).

moto 5.2.5 answers UpdateEndpoint with HTTP 500 ("The update_endpoint action has not
been implemented"; moto/sagemaker/responses.py has no update_endpoint), so the
roll-forward is exercised up to that call here: the new EndpointConfig and models exist,
the previous config keeps serving and the endpoint records the failure. The successful
roll-forward is covered with botocore's Stubber in tests/unit/runtime/aws/test_stubbed.py,
and the strict xfail below turns into a failure the day moto implements the call.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.s3_server import moto_s3_server, use_fake_aws

from ferry.apispec import load_project
from ferry.cli.main import main
from ferry.cli.packaging_spec import model_packager
from ferry.config import ModelSpec
from ferry.models import open_source
from ferry.runtime.aws import AwsTarget, EndpointStatus, SageMakerOptions
from ferry.runtime.aws import sagemaker as sm_deploy
from ferry.runtime.aws.artifact import split_s3_url
from ferry.runtime.aws.cleanup import delete
from ferry.runtime.aws.errors import (
    AwsConflictError,
    AwsError,
    AwsNotFoundError,
    AwsUnsupportedError,
)

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/ferry-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ferry-iris:1"
BUCKET = "ferry-models"

SPLIT_YAML = """\
- name: iris-a
  predictor: {type: python, model_path: iris.joblib}
  autoscaling: {min_replicas: 1, max_replicas: 3}
- name: iris-b
  predictor: {type: python, model_path: iris-b.joblib}
  autoscaling: {min_replicas: 2, max_replicas: 5}
- name: iris
  kind: TrafficSplitter
  apis: [{name: iris-a, weight: 80}, {name: iris-b, weight: 20}]
"""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with moto_s3_server() as running:
        yield running.endpoint_url


@pytest.fixture
def aws(server: str, monkeypatch: pytest.MonkeyPatch) -> AwsTarget:
    use_fake_aws(monkeypatch, server)
    target = AwsTarget(region="us-east-1")
    buckets = [b["Name"] for b in target.client("s3").list_buckets()["Buckets"]]
    if BUCKET not in buckets:
        target.client("s3").create_bucket(Bucket=BUCKET)
    return target


@pytest.fixture
def project_dir(tmp_path: Path, iris_model_path: Path) -> Path:
    shutil.copy(iris_model_path, tmp_path / "iris.joblib")
    shutil.copy(iris_model_path, tmp_path / "iris-b.joblib")
    (tmp_path / "ferry.yaml").write_text(SPLIT_YAML)
    return tmp_path


@pytest.fixture
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., EndpointStatus]:
    """``sm_deploy.deploy`` with the archives ``ferry deploy --env sagemaker`` uploads."""
    cache = tmp_path_factory.mktemp("cache")

    def run(root: Path, name: str, opts: SageMakerOptions, aws: AwsTarget, *more: Any) -> Any:
        project = load_project(root)
        return sm_deploy.deploy(project, name, opts, model_packager(project, cache), aws, *more)

    return run


def options(**overrides: Any) -> SageMakerOptions:
    values: dict[str, Any] = {"image_uri": IMAGE, "role_arn": ROLE, "bucket": BUCKET}
    return SageMakerOptions(**{**values, "poll_interval_s": 0.05, **overrides})


def leftovers(aws: AwsTarget) -> dict[str, list[Any]]:
    sm, s3 = aws.client("sagemaker"), aws.client("s3")
    aas = aws.client("application-autoscaling")
    return {
        "endpoints": sm.list_endpoints()["Endpoints"],
        "configs": sm.list_endpoint_configs()["EndpointConfigs"],
        "models": sm.list_models()["Models"],
        "objects": s3.list_objects_v2(Bucket=BUCKET).get("Contents", []),
        "targets": aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"],
        "policies": aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"],
    }


def test_split_deploys_variants_with_weights_and_autoscaling(
    aws: AwsTarget, project_dir: Path, deploy: Callable[..., EndpointStatus]
) -> None:
    seen: list[str] = []
    result = deploy(project_dir, "iris", options(), aws, seen.append)
    assert (result.status, result.action) == ("InService", "created")
    weights = {v.name: v.weight for v in result.variants}
    assert weights == {"iris-a": 0.8, "iris-b": 0.2}
    assert any("uploaded s3://ferry-models/ferry/iris/" in line for line in seen)
    assert "iris: InService" in seen
    sm = aws.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=result.config)
    variants = {v["VariantName"]: v for v in config["ProductionVariants"]}
    assert variants["iris-b"]["InitialInstanceCount"] == 2
    assert variants["iris-a"]["InstanceType"] == "ml.m5.large"
    model = sm.describe_model(ModelName=variants["iris-a"]["ModelName"])
    container = model["PrimaryContainer"]
    assert container["Image"] == IMAGE
    assert container["ModelDataUrl"].startswith("s3://ferry-models/ferry/iris/")
    assert container["Environment"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    targets = leftovers(aws)["targets"]
    bounds = {t["ResourceId"]: (t["MinCapacity"], t["MaxCapacity"]) for t in targets}
    assert bounds == {
        "endpoint/iris/variant/iris-a": (1, 3),
        "endpoint/iris/variant/iris-b": (2, 5),
    }
    policies = leftovers(aws)["policies"]
    metric = policies[0]["TargetTrackingScalingPolicyConfiguration"]
    assert metric["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    # the same project again is the same revision: nothing changes, nothing is uploaded
    again = deploy(project_dir, "iris", options(), aws, seen.append)
    assert (again.action, again.revision) == ("unchanged", result.revision)

    removed = delete("iris", aws, poll_interval_s=0.05)
    assert removed["endpoint"] == ["iris"]
    assert len(removed["models"]) == 2
    assert leftovers(aws) == {key: [] for key in leftovers(aws)}


LABELLED_YAML = """\
- name: iris-named
  predictor:
    model_path: iris.joblib
    predict_proba: true
    labels: {0: setosa, 1: versicolor, 2: virginica}
    feature_names: [sepal_length, sepal_width, petal_length, petal_width]
"""


def test_the_uploaded_archive_carries_the_api_name_and_its_output_settings(
    aws: AwsTarget,
    tmp_path: Path,
    iris_model_path: Path,
    deploy: Callable[..., EndpointStatus],
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(iris_model_path, root / "iris.joblib")
    (root / "ferry.yaml").write_text(LABELLED_YAML)
    result = deploy(root, "iris-named", options(), aws)
    try:
        sm = aws.client("sagemaker")
        config = sm.describe_endpoint_config(EndpointConfigName=result.config)
        model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
        bucket, key = split_s3_url(model["PrimaryContainer"]["ModelDataUrl"])
        data = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        model_dir = tmp_path / "opt-ml" / "model"  # what SageMaker unpacks the archive into
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            assert sorted(tar.getnames()) == ["ferry.yaml", "iris.joblib"]
            tar.extractall(model_dir, filter="data")
        generated = yaml.safe_load((model_dir / "ferry.yaml").read_text())
        assert generated[0]["name"] == "iris-named"
        # what `ferry serve` (the image's command, no model argument) reads from there
        source = open_source(ModelSpec(uri=str(model_dir)), cache_dir=tmp_path / "cache")
        assert (source.name, source.framework) == ("iris-named", "pickle")
        assert source.spec.labels == {0: "setosa", 1: "versicolor", 2: "virginica"}
        assert source.spec.predict_proba
        assert source.spec.feature_names == (
            "sepal_length", "sepal_width", "petal_length", "petal_width",
        )  # fmt: skip
    finally:
        delete("iris-named", aws, poll_interval_s=0.05)
    assert leftovers(aws) == {key: [] for key in leftovers(aws)}


def test_update_creates_a_new_config_and_a_failed_update_keeps_the_old_one(
    aws: AwsTarget, project_dir: Path, deploy: Callable[..., EndpointStatus]
) -> None:
    first = deploy(project_dir, "iris-a", options(), aws)
    assert first.variants[0].name == "primary"
    with pytest.raises(AwsError) as raised:
        deploy(project_dir, "iris-a", options(instance_type="ml.c5.xlarge"), aws)
    assert f"still serving {first.config}" in str(raised.value)
    sm = aws.client("sagemaker")
    configs = {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
    assert len(configs) == 2
    assert first.config in configs
    after = sm_deploy.status("iris-a", aws)
    assert (after.status, after.config) == ("InService", first.config)
    assert after.failed_revision not in (None, first.revision)
    assert after.failure
    assert after.failure.startswith("updating endpoint iris-a to ")
    assert len(leftovers(aws)["targets"]) == 1  # autoscaling put back
    delete("iris-a", aws, poll_interval_s=0.05)
    assert leftovers(aws) == {key: [] for key in leftovers(aws)}


@pytest.mark.xfail(
    strict=True,
    raises=AwsUnsupportedError,
    reason="moto 5.2.5 has no UpdateEndpoint (moto/sagemaker/responses.py), and a changed "
    "instance type can only roll forward through it",
)
def test_update_rolls_forward_on_moto(
    aws: AwsTarget, project_dir: Path, deploy: Callable[..., EndpointStatus]
) -> None:
    try:
        deploy(project_dir, "iris-b", options(), aws)
        updated = deploy(project_dir, "iris-b", options(instance_type="ml.c5.xlarge"), aws)
        assert updated.action == "updated"
    finally:
        delete("iris-b", aws, poll_interval_s=0.05)


def test_name_taken_by_an_endpoint_ferry_did_not_create(
    aws: AwsTarget, project_dir: Path, deploy: Callable[..., EndpointStatus]
) -> None:
    sm = aws.client("sagemaker")
    sm.create_model(
        ModelName="someone-else", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    sm.create_endpoint_config(
        EndpointConfigName="someone-else",
        ProductionVariants=[{"VariantName": "v", "ModelName": "someone-else",
                             "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
    )  # fmt: skip
    sm.create_endpoint(EndpointName="iris-a", EndpointConfigName="someone-else")
    try:
        with pytest.raises(AwsConflictError, match="not created by ferry"):
            deploy(project_dir, "iris-a", options(), aws)
        with pytest.raises(AwsConflictError, match="not created by ferry"):
            delete("iris-a", aws)
        assert sm.describe_endpoint(EndpointName="iris-a")["EndpointConfigName"] == "someone-else"
    finally:
        sm.delete_endpoint(EndpointName="iris-a")
        sm.delete_endpoint_config(EndpointConfigName="someone-else")
        sm.delete_model(ModelName="someone-else")


def test_status_and_delete_of_a_missing_endpoint(aws: AwsTarget) -> None:
    with pytest.raises(AwsNotFoundError, match="no SageMaker endpoint named 'ghost'"):
        sm_deploy.status("ghost", aws)
    with pytest.raises(AwsNotFoundError, match="was deployed by ferry"):
        delete("ghost", aws)


def test_the_ferry_commands_deploy_get_describe_and_delete(
    aws: AwsTarget, project_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--env", "sagemaker", "--region", "us-east-1"]
    capsys.readouterr()
    # the project's one endpoint: the splitter iris, its two APIs as variants
    assert main(["deploy", str(project_dir), *flags, "--image", IMAGE, "--role", ROLE,
                 "--bucket", BUCKET, "--output", "json"]) == 0  # fmt: skip
    deployed = json.loads(capsys.readouterr().out)
    assert [(a["name"], a["status"]) for a in deployed["apis"]] == [("iris", "InService")]
    assert main(["get", *flags]) == 0
    assert "InService" in capsys.readouterr().out
    assert main(["describe", "iris", *flags]) == 0
    described = capsys.readouterr().out
    assert "variant iris-a: weight 0.8, 1/1 instances" in described
    assert "variant iris-b: weight 0.2, 2/2 instances" in described
    assert main(["delete", "iris", "--yes", *flags]) == 0
    assert "deleted iris from sagemaker" in capsys.readouterr().out
    assert leftovers(aws) == {key: [] for key in leftovers(aws)}
