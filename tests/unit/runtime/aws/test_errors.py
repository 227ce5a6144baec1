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
