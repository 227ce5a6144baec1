"""AWS errors the user meets first: no credentials at all, and no region."""

from __future__ import annotations

import os

import pytest
from tests.integration.s3_server import UNSET_AWS_ENV

from ferry.cli.aws_deploy import aws_get
from ferry.runtime.aws import AwsTarget
from ferry.runtime.aws import sagemaker as sm_deploy
from ferry.runtime.aws.errors import AwsCredentialsError

pytestmark = pytest.mark.integration


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*UNSET_AWS_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # nothing listens here: if a call were made it would fail differently
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")


def test_no_credentials_is_one_line_saying_what_to_do(no_credentials: None) -> None:
    with pytest.raises(AwsCredentialsError) as raised:
        sm_deploy.status("iris", AwsTarget(region="us-east-1"))
    text = str(raised.value)
    assert text == (
        "describing endpoint iris: no AWS credentials found: set AWS_PROFILE or "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run aws configure"
    )


def test_no_region(no_credentials: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(AwsCredentialsError, match="no AWS region set: pass --region"):
        aws_get("sagemaker", None, "json")
