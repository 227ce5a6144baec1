"""AWS errors the user meets, each one readable line from the `ferry` command that says
what to do: no credentials, no region, access denied (moto's server enforcing IAM for a
user without policies), throttling (a proxy in front of moto answering as AWS does when
it throttles), a name already taken, a missing model.

This module starts its own moto server: turning IAM enforcement on is server-wide.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from tests.integration.s3_server import UNSET_AWS_ENV, moto_s3_server, use_fake_aws
from tests.integration.throttling_proxy import ThrottlingProxy, throttling_proxy

from ferry.cli.main import main
from ferry.runtime.aws import AwsTarget
from ferry.runtime.aws import sagemaker as sm_deploy
from ferry.runtime.aws.errors import AwsCredentialsError

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/ferry-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ferry-iris:1"
SAGEMAKER = ["--env", "sagemaker", "--image", IMAGE, "--role", ROLE, "--bucket", "models",
             "--region", "us-east-1"]  # fmt: skip
ECS = ["--env", "ecs", "--image", IMAGE, "--vpc", "vpc-1", "--subnets", "subnet-a,subnet-b",
       "--region", "us-east-1"]  # fmt: skip
DENIED_HINT = "grant the IAM permission it names to your credentials, or use a profile that has it"


def ferry(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the CLI; (exit code, stderr), and stderr is at most one line."""
    capsys.readouterr()
    code = main(list(argv))
    err = capsys.readouterr().err
    assert err.count("\n") <= 1, err
    return code, err.strip()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with moto_s3_server() as running:
        yield running.endpoint_url


@pytest.fixture
def aws(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fake credentials and moto's endpoint in the environment; the endpoint URL."""
    use_fake_aws(monkeypatch, server)
    return server


@pytest.fixture
def project(tmp_path: Path, iris_model_path: Path) -> Path:
    shutil.copy(iris_model_path, tmp_path / "iris.joblib")
    (tmp_path / "ferry.yaml").write_text("- name: iris\n  predictor: {model_path: iris.joblib}\n")
    return tmp_path


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*UNSET_AWS_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # nothing listens here: if a call were made it would fail differently
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")


def test_no_credentials_is_one_line_saying_what_to_do(
    no_credentials: None, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AwsCredentialsError) as raised:
        sm_deploy.status("iris", AwsTarget(region="us-east-1"))
    assert str(raised.value) == (
        "describing endpoint iris: no AWS credentials found: set AWS_PROFILE or "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run aws configure"
    )
    code, err = ferry(capsys, "deploy", str(project), *SAGEMAKER)
    assert code == 2  # a set-up problem, like any configuration error
    assert err == f"ferry: error: {raised.value}"


def test_no_region(
    no_credentials: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    code, err = ferry(capsys, "get", "--env", "sagemaker")
    assert code == 2
    assert "no AWS region set: pass --region, set AWS_REGION, or run aws configure" in err


@pytest.fixture
def denied(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Credentials of an IAM user without policies, with moto enforcing IAM."""
    admin = boto3.session.Session(region_name="us-east-1").client("iam", endpoint_url=aws)
    # the next two calls (the user and its key) are let through, every later one checked
    httpx.post(f"{aws}/moto-api/reset-auth", content=b"2").raise_for_status()
    try:
        admin.create_user(UserName="nobody")
        key = admin.create_access_key(UserName="nobody")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        yield
    finally:
        httpx.post(f"{aws}/moto-api/reset-auth", content=b"inf").raise_for_status()


def test_access_denied_names_the_permission(
    denied: None, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = "arn:aws:iam::123456789012:user/nobody"
    code, err = ferry(capsys, "get", "--env", "sagemaker", "--region", "us-east-1")
    assert code == 1
    assert err == (
        f"ferry: error: listing SageMaker endpoints: access denied (User: {user} is not "
        f"authorized to perform: sagemaker:ListEndpoints); {DENIED_HINT}"
    )
    code, err = ferry(capsys, "deploy", str(project), *ECS)
    assert code == 1
    assert err == (
        f"ferry: error: describing stack ferry-iris: access denied (User: {user} is not "
        f"authorized to perform: cloudformation:DescribeStacks); {DENIED_HINT}"
    )


@pytest.fixture
def proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThrottlingProxy]:
    with throttling_proxy(aws) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore's backoff, kept short
        yield running


def test_throttling_is_retried_then_reported(
    proxy: ThrottlingProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy.throttle(1)
    code, err = ferry(capsys, "get", "--env", "sagemaker", "--region", "us-east-1")
    assert (code, err) == (0, "")
    assert (proxy.throttled, proxy.forwarded) == (1, 1)  # botocore tried again, and got it

    proxy.throttle(1000)
    code, err = ferry(capsys, "get", "--env", "sagemaker", "--region", "us-east-1")
    assert code == 1
    assert err == (
        "ferry: error: listing SageMaker endpoints: AWS is throttling requests "
        "(ThrottlingException); retry in a minute"
    )
    assert (proxy.throttled, proxy.forwarded) == (2, 0)  # AWS_MAX_ATTEMPTS attempts


def test_a_name_taken_by_someone_else(
    aws: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sm = boto3.session.Session(region_name="us-east-1").client("sagemaker", endpoint_url=aws)
    sm.create_model(ModelName="other", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(
        EndpointConfigName="other",
        ProductionVariants=[{"VariantName": "v", "ModelName": "other",
                             "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
    )  # fmt: skip
    sm.create_endpoint(EndpointName="iris", EndpointConfigName="other")
    try:
        code, err = ferry(capsys, "deploy", str(project), *SAGEMAKER)
        assert code == 1
        assert err == (
            "ferry: error: SageMaker endpoint 'iris' already exists and was not created by "
            "ferry (no ferry:api tag); rename the API or delete that endpoint first"
        )
        code, err = ferry(capsys, "delete", "iris", "--env", "sagemaker", "--yes",
                          "--region", "us-east-1")  # fmt: skip
        assert code == 1
        assert "not created by ferry" in err
        assert sm.describe_endpoint(EndpointName="iris")["EndpointConfigName"] == "other"
    finally:
        sm.delete_endpoint(EndpointName="iris")
        sm.delete_endpoint_config(EndpointConfigName="other")
        sm.delete_model(ModelName="other")


def test_a_missing_model_is_named_before_anything_is_created(
    aws: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "iris.joblib").unlink()
    code, err = ferry(capsys, "deploy", str(project), *SAGEMAKER)
    assert code == 3
    assert err == f"ferry: error: model file {project / 'iris.joblib'} does not exist"
    sm = boto3.session.Session(region_name="us-east-1").client("sagemaker", endpoint_url=aws)
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoints()["Endpoints"] == []
