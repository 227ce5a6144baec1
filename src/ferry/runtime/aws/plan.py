"""What a SageMaker deploy will create, decided before any AWS call (pure, unit-tested).

A RealtimeAPI becomes an endpoint with one production variant (``primary``); a
TrafficSplitter becomes an endpoint with one variant per target API, weighted by the
split. Every resource carries the tags ``ferry:api`` (the endpoint it belongs to) and
``ferry:revision``, so which configs and models belong to which API is read back from
AWS itself rather than kept in a local file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry.apispec import Project, RealtimeAPI, TrafficSplitter
from ferry.errors import ConfigError
from ferry.packaging.sagemaker import variant_weights
from ferry.packaging.spec import Variant

__all__ = [
    "SCALABLE_DIMENSION",
    "TAG_API",
    "TAG_REVISION",
    "TAG_VARIANT",
    "EndpointPlan",
    "SageMakerOptions",
    "VariantPlan",
    "config_name",
    "model_name",
    "plan_endpoint",
    "production_variants",
    "resource_id",
    "revision_of",
    "tags",
]

TAG_API = "ferry:api"
TAG_REVISION = "ferry:revision"
TAG_VARIANT = "ferry:variant"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_MAX_NAME = 63  # SageMaker model, endpoint-config and endpoint names


@dataclass(frozen=True)
class SageMakerOptions:
    """What the deploy flags say: image, role, bucket and instance type."""

    image_uri: str
    role_arn: str
    bucket: str
    instance_type: str = "ml.m5.large"
    timeout_s: float = 60.0
    wait_timeout_s: float = 3600.0
    poll_interval_s: float = 15.0

    def __post_init__(self) -> None:
        if not self.image_uri:
            raise ConfigError("--image is required: the URI of the ferry image in ECR")
        if not self.role_arn.startswith("arn:"):
            raise ConfigError(f"--role {self.role_arn!r} is not an IAM role ARN (arn:aws:iam::...)")
        if not self.bucket or "/" in self.bucket:
            raise ConfigError(f"--bucket {self.bucket!r} must be a bucket name, without s3://")


@dataclass(frozen=True)
class VariantPlan:
    """One production variant: the API it serves, its weight, its instances."""

    variant: Variant
    api: RealtimeAPI
    min_instances: int
    max_instances: int
    target_invocations: int = 1000
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointPlan:
    """The endpoint ``name`` with its variants, and where its files are."""

    name: str
    variants: tuple[VariantPlan, ...]
    root: Path

    def weights(self) -> dict[str, float]:
        """Each variant's share of traffic, as InitialVariantWeight."""
        return variant_weights(tuple(plan.variant for plan in self.variants))


def plan_endpoint(project: Project, name: str, options: SageMakerOptions) -> EndpointPlan:
    """The endpoint for the API or splitter ``name`` of ``project``."""
    try:
        entry = project.get(name)
    except KeyError:
        names = [api.name for api in project.apis] + [s.name for s in project.splitters]
        known = ", ".join(names)
        raise ConfigError(f"{project.path}: no API named {name!r} (known: {known})") from None
    if len(name) > 40:
        raise ConfigError(f"api {name!r}: SageMaker names derived from it need it <= 40 chars")
    if isinstance(entry, TrafficSplitter):
        variants = _split_variants(project, entry, options)
    else:
        variants = (_variant(entry, "primary", 1.0, options),)
    return EndpointPlan(name=name, variants=variants, root=project.root)


def _split_variants(
    project: Project, splitter: TrafficSplitter, options: SageMakerOptions
) -> tuple[VariantPlan, ...]:
    if any(target.shadow for target in splitter.apis):
        raise ConfigError(
            f"traffic splitter {splitter.name!r}: shadow APIs are not deployed to SageMaker; "
            "remove shadow: true or deploy the shadow as its own API"
        )
    plans = []
    for target in splitter.apis:
        api = project.get(target.name)
        if not isinstance(api, RealtimeAPI):
            raise ConfigError(f"traffic splitter {splitter.name!r}: {target.name!r} is no API")
        plans.append(_variant(api, target.name, float(target.weight), options))
    return tuple(plans)


def _variant(api: RealtimeAPI, name: str, weight: float, options: SageMakerOptions) -> VariantPlan:
    scaling = api.autoscaling
    try:
        variant = Variant(
            name=name,
            weight=weight,
            instance_type=options.instance_type,
            initial_instance_count=scaling.init_replicas,
        )
    except ValueError as error:
        raise ConfigError(f"api {api.name!r}: {error}") from None
    return VariantPlan(
        variant=variant,
        api=api,
        min_instances=scaling.min_replicas,
        max_instances=max(scaling.max_replicas, scaling.init_replicas),
        env=dict(api.predictor.env),
    )


def config_name(endpoint: str, revision: str) -> str:
    """``<api>-<revision>``: one EndpointConfig per revision."""
    return f"{endpoint}-{revision}"[:_MAX_NAME]


def model_name(endpoint: str, variant: str, revision: str) -> str:
    """``<api>-<variant>-<revision>``, the variant part cut so the name fits 63 chars."""
    room = _MAX_NAME - len(endpoint) - len(revision) - 2
    return f"{endpoint}-{variant[: max(room, 1)]}-{revision}".strip("-")[:_MAX_NAME]


def resource_id(endpoint: str, variant: str) -> str:
    """The Application Auto Scaling resource of a variant."""
    return f"endpoint/{endpoint}/variant/{variant}"


def tags(endpoint: str, revision: str, variant: str | None = None) -> list[dict[str, str]]:
    """The ferry tags of a resource of ``endpoint`` at ``revision``."""
    found = [{"Key": TAG_API, "Value": endpoint}, {"Key": TAG_REVISION, "Value": revision}]
    if variant is not None:
        found.append({"Key": TAG_VARIANT, "Value": variant})
    return found


def revision_of(plan: EndpointPlan, options: SageMakerOptions, model_urls: dict[str, str]) -> str:
    """A content hash of everything the endpoint serves: same inputs, same revision."""
    parts = {
        "image": options.image_uri,
        "role": options.role_arn,
        "weights": plan.weights(),
        "variants": [
            {
                "name": v.variant.name,
                "instance_type": v.variant.instance_type,
                "count": v.variant.initial_instance_count,
                "model": model_urls[v.variant.name],
                "env": v.env,
                "scaling": [v.min_instances, v.max_instances, v.target_invocations],
                "workers": v.api.predictor.processes_per_replica,
                "timeout": options.timeout_s,
            }
            for v in plan.variants
        ],
    }
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def production_variants(plan: EndpointPlan, revision: str) -> list[dict[str, Any]]:
    """The ProductionVariants of the revision's EndpointConfig, weights from the split."""
    weights = plan.weights()
    return [
        {
            "VariantName": v.variant.name,
            "ModelName": model_name(plan.name, v.variant.name, revision),
            "InitialInstanceCount": v.variant.initial_instance_count,
            "InstanceType": v.variant.instance_type,
            "InitialVariantWeight": weights[v.variant.name],
            # model load + warm-up must pass /ping within this, not the default 4 minutes
            "ContainerStartupHealthCheckTimeoutInSeconds": 600,
        }
        for v in plan.variants
    ]
