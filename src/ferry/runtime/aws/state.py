"""Deploy state, read back from AWS: which endpoint configs and models belong to an API.

Nothing is stored locally. Every resource ferry creates is tagged ``ferry:api`` and
``ferry:revision``; an endpoint whose roll-forward failed also carries
``ferry:failed-revision`` and ``ferry:failure`` until the next successful deploy.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ferry.runtime.aws.errors import AwsConflictError, translate
from ferry.runtime.aws.plan import TAG_API, TAG_REVISION

__all__ = [
    "TAG_FAILED_REVISION",
    "TAG_FAILURE",
    "check_owner",
    "clear_failure",
    "describe_endpoint",
    "owned",
    "record_failure",
    "tag_map",
]

TAG_FAILED_REVISION = "ferry:failed-revision"
TAG_FAILURE = "ferry:failure"
_MAX_TAG_VALUE = 256

# list call, result key, name key, ARN key for each kind of SageMaker resource
_KINDS = {
    "model": ("list_models", "Models", "ModelName", "ModelArn"),
    "endpoint_config": (
        "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", "EndpointConfigArn"
    ),
    "endpoint": ("list_endpoints", "Endpoints", "EndpointName", "EndpointArn"),
}  # fmt: skip


def tag_map(sm: Any, arn: str) -> dict[str, str]:
    """The tags of a SageMaker resource as a dict."""
    with translate(f"reading the tags of {arn}"):
        tags = sm.list_tags(ResourceArn=arn)["Tags"]
    return {tag["Key"]: tag["Value"] for tag in tags}


def _missing(error: ClientError) -> bool:
    message = str(error.response.get("Error", {}).get("Message", ""))
    return "Could not find" in message or "does not exist" in message


def describe_endpoint(sm: Any, name: str) -> dict[str, Any] | None:
    """``describe_endpoint``, or None when there is no such endpoint."""
    with translate(f"describing endpoint {name}"):
        try:
            return dict(sm.describe_endpoint(EndpointName=name))
        except ClientError as error:
            if _missing(error):
                return None
            raise


def check_owner(sm: Any, endpoint: dict[str, Any], name: str) -> dict[str, str]:
    """The endpoint's tags; AwsConflictError when ferry did not create it for ``name``."""
    tags = tag_map(sm, endpoint["EndpointArn"])
    if tags.get(TAG_API) != name:
        raise AwsConflictError(
            f"SageMaker endpoint {name!r} already exists and was not created by ferry "
            "(no ferry:api tag); rename the API or delete that endpoint first"
        )
    return tags


def owned(sm: Any, kind: str, api: str) -> list[dict[str, Any]]:
    """Resources of ``kind`` tagged ``ferry:api=api``: name, arn, revision, created."""
    method, key, name_key, arn_key = _KINDS[kind]
    found = []
    with translate(f"listing SageMaker {kind.replace('_', ' ')}s of {api}"):
        for page in sm.get_paginator(method).paginate(NameContains=api):
            for item in page[key]:
                tags = tag_map(sm, item[arn_key])
                if tags.get(TAG_API) == api:
                    found.append({
                        "name": item[name_key],
                        "arn": item[arn_key],
                        "revision": tags.get(TAG_REVISION),
                        "created": item.get("CreationTime"),
                    })  # fmt: skip
    return found


def record_failure(sm: Any, arn: str, revision: str, reason: str) -> None:
    """Tag the endpoint with the revision that failed to roll out and why."""
    with translate("recording the failure on the endpoint"):
        sm.add_tags(
            ResourceArn=arn,
            Tags=[
                {"Key": TAG_FAILED_REVISION, "Value": revision},
                {"Key": TAG_FAILURE, "Value": _tag_value(reason)},
            ],
        )


def clear_failure(sm: Any, arn: str) -> None:
    """Drop the failure tags after a successful deploy."""
    with translate("clearing the failure tags of the endpoint"):
        sm.delete_tags(ResourceArn=arn, TagKeys=[TAG_FAILED_REVISION, TAG_FAILURE])


def _tag_value(text: str) -> str:
    # tag values: at most 256 characters of letters, digits, spaces and _.:/=+-@
    allowed = {c for c in " _.:/=+-@"}
    cleaned = "".join(c if c.isalnum() or c in allowed else " " for c in text)
    return " ".join(cleaned.split())[:_MAX_TAG_VALUE]
