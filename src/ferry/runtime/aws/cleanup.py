"""``ferry delete --env sagemaker``: everything ferry created for an API, and nothing else.

Order matters: autoscaling first (it points at the variants), then the endpoint (and
wait until it is gone, since configs in use cannot be deleted), then every endpoint
config and model tagged ``ferry:api=<api>``, then the S3 objects under
``ferry/<api>/`` in the buckets those models read from.
"""

from __future__ import annotations

from typing import Any

from ferry.runtime.aws import scaling, state
from ferry.runtime.aws.artifact import PREFIX, delete_prefix, split_s3_url
from ferry.runtime.aws.errors import AwsError, AwsNotFoundError, translate
from ferry.runtime.aws.session import AwsTarget, Progress, no_progress, poll

__all__ = ["delete"]


def delete(
    name: str,
    target: AwsTarget | None = None,
    progress: Progress = no_progress,
    *,
    bucket: str | None = None,
    wait_timeout_s: float = 1800.0,
    poll_interval_s: float = 10.0,
) -> dict[str, list[str]]:
    """Delete endpoint ``name`` and all it owns; returns what was deleted, by kind.

    ``bucket`` adds a bucket to clean even when no model records it (after an
    interrupted delete). Raises AwsNotFoundError when ferry has nothing called ``name``.
    """
    target = target or AwsTarget()
    sm = target.client("sagemaker")
    endpoint = state.describe_endpoint(sm, name)
    if endpoint is not None:
        state.check_owner(sm, endpoint, name)
    configs = state.owned(sm, "endpoint_config", name)
    models = state.owned(sm, "model", name)
    if endpoint is None and not configs and not models and bucket is None:
        raise AwsNotFoundError(f"no SageMaker endpoint named {name!r} was deployed by ferry")
    buckets = _buckets(sm, models) | ({bucket} if bucket else set())
    removed: dict[str, list[str]] = {
        "scalable_targets": scaling.remove(target.client("application-autoscaling"), name)
    }
    if endpoint is not None:
        _delete_endpoint(sm, name, progress, wait_timeout_s, poll_interval_s)
    removed["endpoint"] = [name] if endpoint is not None else []
    removed["endpoint_configs"] = _delete_all(sm, "endpoint_config", configs)
    removed["models"] = _delete_all(sm, "model", models)
    s3 = target.client("s3")
    removed["s3"] = [
        f"s3://{b}/{PREFIX}/{name}/ ({delete_prefix(s3, b, f'{PREFIX}/{name}/')} objects)"
        for b in sorted(buckets)
    ]
    progress(f"{name}: deleted")
    return removed


def _buckets(sm: Any, models: list[dict[str, Any]]) -> set[str]:
    buckets = set()
    for model in models:
        with translate(f"describing model {model['name']}"):
            described = sm.describe_model(ModelName=model["name"])
        containers = [described.get("PrimaryContainer", {}), *described.get("Containers", [])]
        for container in containers:
            url = container.get("ModelDataUrl")
            if url and url.startswith("s3://"):
                buckets.add(split_s3_url(url)[0])
    return buckets


def _delete_endpoint(
    sm: Any, name: str, progress: Progress, timeout_s: float, interval_s: float
) -> None:
    with translate(f"deleting endpoint {name}"):
        sm.delete_endpoint(EndpointName=name)

    def gone() -> tuple[bool, str]:
        described = state.describe_endpoint(sm, name)
        if described is None:
            return True, f"{name}: deleted endpoint"
        return False, f"{name}: {described['EndpointStatus']}"

    try:
        poll(gone, timeout_s=timeout_s, interval_s=interval_s, progress=progress)
    except TimeoutError as error:
        raise AwsError(f"endpoint {name} is not gone: {error}; run delete again later") from None


def _delete_all(sm: Any, kind: str, items: list[dict[str, Any]]) -> list[str]:
    for item in items:
        with translate(f"deleting {kind.replace('_', ' ')} {item['name']}"):
            if kind == "model":
                sm.delete_model(ModelName=item["name"])
            else:
                sm.delete_endpoint_config(EndpointConfigName=item["name"])
    return [item["name"] for item in items]
