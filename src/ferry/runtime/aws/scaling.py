"""Application Auto Scaling for SageMaker variants: target tracking on invocations.

Each variant gets a scalable target (min/max from ``autoscaling``) and a
``TargetTrackingScaling`` policy on ``SageMakerVariantInvocationsPerInstance``, the
metric SageMaker publishes per instance per minute. Removal deletes the policies before
the target: AWS drops them with the target, moto does not, and both end up empty.
"""

from __future__ import annotations

from typing import Any

from ferry.runtime.aws.errors import translate
from ferry.runtime.aws.plan import SCALABLE_DIMENSION, VariantPlan, resource_id

__all__ = [
    "NAMESPACE",
    "policy_config",
    "register",
    "remove",
    "restore",
    "scalable_targets",
    "snapshot",
]

NAMESPACE = "sagemaker"
_METRIC = "SageMakerVariantInvocationsPerInstance"


def policy_config(plan: VariantPlan) -> dict[str, Any]:
    """The target-tracking configuration of ``plan``'s variant."""
    return {
        "TargetValue": float(plan.target_invocations),
        "PredefinedMetricSpecification": {"PredefinedMetricType": _METRIC},
        "ScaleInCooldown": 300,
        "ScaleOutCooldown": 60,
    }


def register(client: Any, endpoint: str, plan: VariantPlan) -> None:
    """Register (or update) the scalable target and policy of one variant."""
    variant = plan.variant.name
    target = resource_id(endpoint, variant)
    with translate(f"registering autoscaling for {target}"):
        client.register_scalable_target(
            ServiceNamespace=NAMESPACE,
            ResourceId=target,
            ScalableDimension=SCALABLE_DIMENSION,
            MinCapacity=plan.min_instances,
            MaxCapacity=plan.max_instances,
        )
        client.put_scaling_policy(
            PolicyName=f"{endpoint}-{variant}-invocations",
            ServiceNamespace=NAMESPACE,
            ResourceId=target,
            ScalableDimension=SCALABLE_DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration=policy_config(plan),
        )


def scalable_targets(client: Any, endpoint: str) -> list[dict[str, Any]]:
    """The scalable targets of ``endpoint``'s variants."""
    prefix = f"endpoint/{endpoint}/variant/"
    found: list[dict[str, Any]] = []
    with translate(f"listing autoscaling targets of {endpoint}"):
        pages = client.get_paginator("describe_scalable_targets").paginate(
            ServiceNamespace=NAMESPACE
        )
        for page in pages:
            found += [t for t in page["ScalableTargets"] if t["ResourceId"].startswith(prefix)]
    return found


def remove(client: Any, endpoint: str, keep: frozenset[str] = frozenset()) -> list[str]:
    """Delete the policies and targets of ``endpoint`` except variants in ``keep``."""
    removed = []
    for target in scalable_targets(client, endpoint):
        rid = target["ResourceId"]
        if rid.rsplit("/", 1)[-1] in keep:
            continue
        with translate(f"removing autoscaling of {rid}"):
            policies = client.describe_scaling_policies(ServiceNamespace=NAMESPACE, ResourceId=rid)
            for policy in policies["ScalingPolicies"]:
                client.delete_scaling_policy(
                    PolicyName=policy["PolicyName"],
                    ServiceNamespace=NAMESPACE,
                    ResourceId=rid,
                    ScalableDimension=SCALABLE_DIMENSION,
                )
            client.deregister_scalable_target(
                ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=SCALABLE_DIMENSION
            )
        removed.append(rid)
    return removed


def snapshot(client: Any, endpoint: str) -> list[dict[str, Any]]:
    """The targets and policies of ``endpoint``, to put back with ``restore``."""
    saved = []
    for target in scalable_targets(client, endpoint):
        with translate(f"reading autoscaling of {target['ResourceId']}"):
            policies = client.describe_scaling_policies(
                ServiceNamespace=NAMESPACE, ResourceId=target["ResourceId"]
            )["ScalingPolicies"]
        saved.append({"target": target, "policies": policies})
    return saved


def restore(client: Any, saved: list[dict[str, Any]]) -> None:
    """Register again what ``snapshot`` saw (after a failed update)."""
    for entry in saved:
        target = entry["target"]
        with translate(f"restoring autoscaling of {target['ResourceId']}"):
            client.register_scalable_target(
                ServiceNamespace=NAMESPACE,
                ResourceId=target["ResourceId"],
                ScalableDimension=SCALABLE_DIMENSION,
                MinCapacity=target["MinCapacity"],
                MaxCapacity=target["MaxCapacity"],
            )
            for policy in entry["policies"]:
                client.put_scaling_policy(
                    PolicyName=policy["PolicyName"],
                    ServiceNamespace=NAMESPACE,
                    ResourceId=target["ResourceId"],
                    ScalableDimension=SCALABLE_DIMENSION,
                    PolicyType=policy["PolicyType"],
                    TargetTrackingScalingPolicyConfiguration=policy[
                        "TargetTrackingScalingPolicyConfiguration"
                    ],
                )
