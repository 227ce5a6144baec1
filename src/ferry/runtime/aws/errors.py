"""AWS failures as one readable line that says what to do.

botocore raises a handful of exception types and a ``ClientError`` whose code and message
vary by service (SageMaker reports a missing endpoint as ``ValidationException: Could not
find endpoint ...``). ``translate`` turns each into a ``FerryError`` subclass so the CLI
prints ``ferry: error: <line>`` instead of a traceback. Throttling is retried by botocore
itself (``standard`` retry mode, see ``session.py``); it only surfaces here when the
retries ran out.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from ferry.errors import ConfigError, FerryError

__all__ = [
    "AwsAccessDeniedError",
    "AwsConflictError",
    "AwsCredentialsError",
    "AwsError",
    "AwsNotFoundError",
    "AwsThrottledError",
    "AwsUnsupportedError",
    "aws_error",
    "error_code",
    "translate",
]

NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
    "or run aws configure"
)
NO_REGION = "no AWS region set: pass --region, set AWS_REGION, or run aws configure"

_ACCESS_DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure"}
)
_BAD_CREDENTIALS = frozenset(
    {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
     "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId"}
)  # fmt: skip
_THROTTLED = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
     "SlowDown", "ProvisionedThroughputExceededException"}
)  # fmt: skip
_CONFLICT = frozenset({"ResourceInUse", "ResourceInUseException", "AlreadyExistsException",
                       "BucketAlreadyExists", "ConflictException"})  # fmt: skip
# an XML error document (<ErrorResponse><Error><Code>..</Code><Message>..</Message>)
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
_NOT_FOUND = frozenset(
    {"ResourceNotFound", "ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "404",
     "ObjectNotFoundException", "NotFound"}
)  # fmt: skip


class AwsError(FerryError):
    """An AWS call failed; the message names the call and what to do."""

    code = "aws_error"


class AwsCredentialsError(AwsError, ConfigError):
    """No usable credentials or region: a set-up problem (exit status 2 in the CLI)."""

    code = "aws_credentials"


class AwsAccessDeniedError(AwsError):
    """The credentials work but lack a permission."""

    code = "aws_access_denied"


class AwsThrottledError(AwsError):
    """AWS kept throttling after botocore's retries."""

    code = "aws_throttled"


class AwsConflictError(AwsError):
    """A name is already taken, or the resource is busy with another change."""

    code = "aws_conflict"


class AwsNotFoundError(AwsError):
    """The resource does not exist (in this account and region)."""

    code = "aws_not_found"


class AwsUnsupportedError(AwsError):
    """The endpoint does not implement the call (moto lacks some operations)."""

    code = "aws_unsupported"


def error_code(error: ClientError) -> str:
    """The ``Error.Code`` of a ClientError ("" when the response has none).

    When botocore could not parse the body it puts the HTTP status there ("403"); an XML
    ``<ErrorResponse>`` body in a JSON service's answer still names the code, which wins.
    """
    code = str(error.response.get("Error", {}).get("Code", ""))
    if code.isdigit():
        found = _XML_CODE.search(_raw_message(error))
        if found is not None:
            return found.group(1)
    return code


def _raw_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", "")).strip()


def _message(error: ClientError) -> str:
    message = _raw_message(error)
    if message.startswith("<"):
        found = _XML_MESSAGE.search(message)
        if found is None:  # an HTML error page, e.g. moto's 500 for a missing action
            return "an HTML error page (the call may be unsupported by this endpoint)"
        message = html.unescape(found.group(1)).strip()
    return message.splitlines()[0] if message else error_code(error)


def _client_error(error: ClientError, action: str) -> AwsError:
    code, message = error_code(error), _message(error)
    lowered = message.lower()
    if code in _ACCESS_DENIED or code == "403":
        return AwsAccessDeniedError(
            f"{action}: access denied ({message}); grant the IAM permission it names to "
            "your credentials, or use a profile that has it"
        )
    if code in _BAD_CREDENTIALS:
        return AwsCredentialsError(
            f"{action}: AWS rejected the credentials ({code}); refresh them or check "
            "AWS_PROFILE / AWS_ACCESS_KEY_ID"
        )
    if code in _THROTTLED:
        return AwsThrottledError(
            f"{action}: AWS is throttling requests ({code}); retry in a minute"
        )
    if code in _CONFLICT or "already exist" in lowered or "in use" in lowered:
        return AwsConflictError(f"{action}: {message}; pick another name or delete the old one")
    if code in _NOT_FOUND or "could not find" in lowered or "does not exist" in lowered:
        return AwsNotFoundError(f"{action}: {message}")
    if code.startswith("5") or "not been implemented" in lowered or code == "InternalFailure":
        return AwsUnsupportedError(f"{action}: the AWS endpoint failed ({code}: {message})")
    return AwsError(f"{action}: {code}: {message}")


def aws_error(error: Exception, action: str) -> FerryError:
    """The ``FerryError`` for a botocore exception raised while doing ``action``."""
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return AwsCredentialsError(f"{action}: {NO_CREDENTIALS}")
    if isinstance(error, NoRegionError):
        return AwsCredentialsError(f"{action}: {NO_REGION}")
    if isinstance(error, ClientError):
        return _client_error(error, action)
    if isinstance(error, EndpointConnectionError):
        return AwsError(
            f"{action}: cannot reach {error.kwargs.get('endpoint_url')}: check the "
            "network, the region and AWS_ENDPOINT_URL"
        )
    return AwsError(f"{action}: {error}")


@contextlib.contextmanager
def translate(action: str) -> Iterator[None]:
    """Re-raise botocore errors inside the block as ``FerryError`` (the cause is kept)."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise aws_error(error, action) from error
