"""What ``ferry get/describe --env sagemaker`` shows, read from SageMaker and its tags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ferry.runtime.aws import state
from ferry.runtime.aws.errors import AwsNotFoundError, translate
from ferry.runtime.aws.plan import TAG_API, TAG_REVISION

__all__ = ["EndpointStatus", "VariantStatus", "endpoint_status", "list_endpoints"]


@dataclass(frozen=True)
class VariantStatus:
    """One production variant as SageMaker reports it."""

    name: str
    weight: float | None
    desired_weight: float | None
    instances: int | None
    desired_instances: int | None


@dataclass(frozen=True)
class EndpointStatus:
    """An endpoint: SageMaker's status, ferry's revision and the last failed roll-forward."""

    name: str
    status: str
    revision: str | None
    config: str | None
    url: str
    variants: tuple[VariantStatus, ...] = ()
    failure: str | None = None
    failed_revision: str | None = None
    action: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for ``--output json``."""
        return asdict(self)


def _invoke_url(sm: Any, name: str) -> str:
    region = sm.meta.region_name
    return f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{name}/invocations"


def _variants(described: dict[str, Any]) -> tuple[VariantStatus, ...]:
    return tuple(
        VariantStatus(
            name=v["VariantName"],
            weight=v.get("CurrentWeight"),
            desired_weight=v.get("DesiredWeight"),
            instances=v.get("CurrentInstanceCount"),
            desired_instances=v.get("DesiredInstanceCount"),
        )
        for v in described.get("ProductionVariants", [])
    )


def endpoint_status(sm: Any, name: str, action: str | None = None) -> EndpointStatus:
    """The status of endpoint ``name``; AwsNotFoundError when there is none."""
    described = state.describe_endpoint(sm, name)
    if described is None:
        raise AwsNotFoundError(
            f"no SageMaker endpoint named {name!r} in {sm.meta.region_name} "
            "(`ferry get --env sagemaker` lists them)"
        )
    tags = state.tag_map(sm, described["EndpointArn"])
    config = described.get("EndpointConfigName")
    revision = None
    if config:
        with translate(f"describing endpoint config {config}"):
            arn = sm.describe_endpoint_config(EndpointConfigName=config)["EndpointConfigArn"]
        revision = state.tag_map(sm, arn).get(TAG_REVISION)
    return EndpointStatus(
        name=name,
        status=described["EndpointStatus"],
        revision=revision,
        config=config,
        url=_invoke_url(sm, name),
        variants=_variants(described),
        failure=described.get("FailureReason") or tags.get(state.TAG_FAILURE),
        failed_revision=tags.get(state.TAG_FAILED_REVISION),
        action=action,
    )


def list_endpoints(sm: Any) -> list[EndpointStatus]:
    """Every endpoint ferry deployed in this account and region."""
    found = []
    with translate("listing SageMaker endpoints"):
        pages = sm.get_paginator("list_endpoints").paginate()
        names = [e["EndpointName"] for page in pages for e in page["Endpoints"]]
    for name in names:
        described = state.describe_endpoint(sm, name)
        if described and state.tag_map(sm, described["EndpointArn"]).get(TAG_API) == name:
            found.append(endpoint_status(sm, name))
    return found
