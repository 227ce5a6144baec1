"""AWS failures become one readable FerryError line."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

from ferry.errors import ConfigError, FerryError
from ferry.runtime.aws.errors import (
    AwsAccessDeniedError,
    AwsConflictError,
    AwsCredentialsError,
    AwsError,
    AwsNotFoundError,
    AwsThrottledError,
    AwsUnsupportedError,
    aws_error,
    translate,
)


def client_error(code: str, message: str, operation: str = "CreateEndpoint") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    ("code", "message", "kind", "words"),
    [
        ("AccessDeniedException", "not authorized", AwsAccessDeniedError, "grant the IAM"),
        ("AccessDenied", "Access Denied", AwsAccessDeniedError, "access denied"),
        ("ThrottlingException", "Rate exceeded", AwsThrottledError, "retry in a minute"),
        ("ValidationException", "Cannot create already existing endpoint", AwsConflictError,
         "pick another name"),
        ("ResourceInUse", "Endpoint config is in use", AwsConflictError, "in use"),
        ("ValidationException", "Could not find endpoint 'x'", AwsNotFoundError, "Could not find"),
        ("ResourceNotFound", "gone", AwsNotFoundError, "gone"),
        ("InvalidClientTokenId", "bad token", AwsCredentialsError, "refresh them"),
        ("500", "<!doctype html><html>", AwsUnsupportedError, "HTML error page"),
        ("ValidationException", "bad value", AwsError, "ValidationException: bad value"),
    ],
)  # fmt: skip
def test_client_errors(code: str, message: str, kind: type[AwsError], words: str) -> None:
    error = aws_error(client_error(code, message), "creating endpoint iris")
    assert type(error) is kind
    text = str(error)
    assert text.startswith("creating endpoint iris: ")
    assert words in text
    assert "\n" not in text


def test_no_credentials_says_what_to_do() -> None:
    error = aws_error(NoCredentialsError(), "uploading the model")
    assert isinstance(error, ConfigError)
    assert isinstance(error, AwsCredentialsError)
    assert "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run aws configure" in (
        str(error)
    )


def test_no_region() -> None:
    assert "pass --region" in str(aws_error(NoRegionError(), "connecting"))


def test_translate_keeps_the_cause() -> None:
    with pytest.raises(FerryError) as raised, translate("deleting model m"):
        raise client_error("ThrottlingException", "slow down", "DeleteModel")
    assert isinstance(raised.value.__cause__, ClientError)
    assert str(raised.value).startswith("deleting model m: ")


def test_an_xml_error_document_is_read_for_its_code_and_message() -> None:
    # what moto's server answers a JSON service (SageMaker) that refuses a call: HTTP 403
    # with an XML body, which botocore cannot parse and files under the status code
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n<ErrorResponse><Errors><Error>'
        "<Code>AccessDenied</Code><Message>User: arn:aws:iam::1:user/u is not authorized "
        "to perform: sagemaker:ListEndpoints</Message><Type>Sender</Type></Error></Errors>"
        "</ErrorResponse>"
    )
    error = aws_error(client_error("403", body, "ListEndpoints"), "listing endpoints")
    assert type(error) is AwsAccessDeniedError
    assert str(error) == (
        "listing endpoints: access denied (User: arn:aws:iam::1:user/u is not authorized to "
        "perform: sagemaker:ListEndpoints); grant the IAM permission it names to your "
        "credentials, or use a profile that has it"
    )


def test_a_bare_403_is_access_denied() -> None:
    # S3's HEAD answers 403 without a body: botocore gives the status as the code
    error = aws_error(client_error("403", "Forbidden", "HeadObject"), "checking s3://b/k")
    assert type(error) is AwsAccessDeniedError
    assert "access denied (Forbidden)" in str(error)


def test_aws_max_attempts_sets_the_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from ferry.runtime.aws.session import RETRY_CONFIG, retry_config

    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    assert retry_config() is RETRY_CONFIG
    assert RETRY_CONFIG.retries == {"mode": "standard", "total_max_attempts": 8}
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    assert retry_config().retries == {"mode": "standard", "total_max_attempts": 3}
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "lots")
    with pytest.raises(ConfigError, match="AWS_MAX_ATTEMPTS='lots' must be a whole number"):
        retry_config()
