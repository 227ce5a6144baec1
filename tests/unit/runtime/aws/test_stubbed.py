"""The calls moto cannot answer, checked against botocore's Stubber (exact requests).

moto 5.2.5 does not implement UpdateEndpoint, never answers "No updates are to be
performed" and never fails and rolls back a stack update (a service that does not
stabilise, say); these tests pin what ferry sends and how it reads the answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from ferry.apispec import load_project
from ferry.errors import ConfigError
from ferry.packaging import Compute, PackageSpec
from ferry.runtime.aws import ecs
from ferry.runtime.aws.errors import AwsError
from ferry.runtime.aws.plan import SageMakerOptions, plan_endpoint
from ferry.runtime.aws.sagemaker import _Rollout
from ferry.runtime.aws.session import AwsTarget

ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/iris"
OPTIONS = SageMakerOptions(
    image_uri="img:1", role_arn="arn:aws:iam::1:role/r", bucket="models", poll_interval_s=0.0
)


class Fake(AwsTarget):
    """An AwsTarget whose clients are stubbed, offline."""

    def __init__(self, *services: str) -> None:
        super().__init__(region="us-east-1")
        for service in services:
            self._clients[service] = boto3.session.Session(
                aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
            ).client(service)


@pytest.fixture
def plan(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "ferry.yaml").write_text("- name: iris\n  predictor: {model_path: m.joblib}\n")
    return plan_endpoint(load_project(tmp_path), "iris", OPTIONS)


def endpoint(config: str, status: str = "InService", **extra: Any) -> dict[str, Any]:
    return {
        "EndpointName": "iris", "EndpointArn": ARN, "EndpointConfigName": config,
        "EndpointStatus": status, "CreationTime": 0, "LastModifiedTime": 0, **extra,
    }  # fmt: skip


# a ferry stack as describe_stacks returns it, up to date
STACK = {
    "StackName": "ferry-iris", "StackStatus": "UPDATE_COMPLETE", "CreationTime": 0,
    "Tags": [{"Key": "ferry:api", "Value": "iris"}],
    "Outputs": [{"OutputKey": "Url", "OutputValue": "http://lb"}],
}  # fmt: skip


def stub_no_scaling(aas: Stubber, times: int) -> None:
    for _ in range(times):
        aas.add_response("describe_scalable_targets", {"ScalableTargets": []})


def test_update_rolls_forward_to_the_new_config(plan) -> None:  # type: ignore[no-untyped-def]
    target = Fake("sagemaker", "application-autoscaling")
    rollout = _Rollout(target, plan, OPTIONS, "rev2", lambda _: None)
    with (
        Stubber(target.client("sagemaker")) as sm,
        Stubber(target.client("application-autoscaling")) as aas,
    ):
        stub_no_scaling(aas, 2)
        sm.add_response(
            "update_endpoint",
            {"EndpointArn": ARN},
            {"EndpointName": "iris", "EndpointConfigName": "iris-rev2"},
        )
        sm.add_response("describe_endpoint", endpoint("iris-rev1", "Updating"))
        sm.add_response("describe_endpoint", endpoint("iris-rev2"))
        sm.add_response("delete_tags", {}, {"ResourceArn": ARN, "TagKeys": ANY})
        rollout.update_endpoint(endpoint("iris-rev1"))
        sm.assert_no_pending_responses()


def test_a_rolled_back_update_is_recorded_and_raised(plan) -> None:  # type: ignore[no-untyped-def]
    target = Fake("sagemaker", "application-autoscaling")
    rollout = _Rollout(target, plan, OPTIONS, "rev2", lambda _: None)
    with (
        Stubber(target.client("sagemaker")) as sm,
        Stubber(target.client("application-autoscaling")) as aas,
    ):
        stub_no_scaling(aas, 2)
        sm.add_response("update_endpoint", {"EndpointArn": ARN})
        reason = "The primary container did not pass the ping health check"
        sm.add_response("describe_endpoint", endpoint("iris-rev1", FailureReason=reason))
        sm.add_response("add_tags", {"Tags": []}, {"ResourceArn": ARN, "Tags": ANY})
        with pytest.raises(AwsError, match="still serving iris-rev1") as raised:
            rollout.update_endpoint(endpoint("iris-rev1"))
        assert reason in str(raised.value)


def test_ecs_no_updates_is_success() -> None:
    target = Fake("cloudformation")
    stack = dict(STACK)
    options = ecs.EcsOptions(image_uri="img:1", vpc_id="vpc-1", subnets=("subnet-a", "subnet-b"))
    with Stubber(target.client("cloudformation")) as cf:
        cf.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "ferry-iris"})
        cf.add_client_error(
            "update_stack",
            service_error_code="ValidationError",
            service_message="No updates are to be performed.",
        )
        cf.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "ferry-iris"})
        result = ecs.deploy(
            "iris", PackageSpec(app_name="iris", model_file="ferry.yaml"), options, target
        )
    assert (result.action, result.status, result.url) == (
        "unchanged",
        "UPDATE_COMPLETE",
        "http://lb",
    )


def test_ecs_parameters_from_flags() -> None:
    options = ecs.EcsOptions(
        image_uri="i", vpc_id="vpc-1", subnets=("a", "b"), service_subnets=("c",),
        assign_public_ip=True,
    )  # fmt: skip
    values = {p["ParameterKey"]: p["ParameterValue"] for p in ecs.stack_parameters(options)}
    assert values == {
        "VpcId": "vpc-1", "LoadBalancerSubnetIds": "a,b", "ServiceSubnetIds": "c",
        "AssignPublicIp": "ENABLED", "AllowedCidr": "0.0.0.0/0",
    }  # fmt: skip


def test_ecs_failed_update_says_why_and_the_previous_stack_keeps_serving() -> None:
    target = Fake("cloudformation")
    stack = dict(STACK)
    reason = "The following resource(s) failed to update: [Service]."
    failed_event = {
        "StackId": "s", "EventId": "e2", "StackName": "ferry-iris", "Timestamp": 0,
        "LogicalResourceId": "Service", "ResourceStatus": "UPDATE_FAILED",
        "ResourceStatusReason": "ECS Deployment Circuit Breaker was triggered",
    }  # fmt: skip
    options = ecs.EcsOptions(
        image_uri="img:2", vpc_id="vpc-1", subnets=("subnet-a", "subnet-b"), poll_interval_s=0
    )
    named = {"StackName": "ferry-iris"}
    with Stubber(target.client("cloudformation")) as cf:
        cf.add_response("describe_stacks", {"Stacks": [stack]}, named)
        update = {"TemplateBody": ANY, "Parameters": ANY, "Capabilities": ["CAPABILITY_IAM"]}
        cf.add_response("update_stack", {"StackId": "s"}, {**named, **update, "Tags": ANY})
        for status in ("UPDATE_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS"):
            cf.add_response("describe_stacks", {"Stacks": [{**stack, "StackStatus": status}]})
        rolled_back = {
            **stack,
            "StackStatus": "UPDATE_ROLLBACK_COMPLETE",
            "StackStatusReason": reason,
        }
        cf.add_response("describe_stacks", {"Stacks": [rolled_back]}, named)
        cf.add_response("describe_stack_events", {"StackEvents": [failed_event]}, named)
        cf.add_response("describe_stacks", {"Stacks": [rolled_back]}, named)
        spec = PackageSpec(app_name="iris", model_file="ferry.yaml")
        with pytest.raises(AwsError) as raised:
            ecs.deploy("iris", spec, options, target)
        after = ecs.status("iris", target)
        cf.assert_no_pending_responses()
    assert str(raised.value) == (
        "stack ferry-iris ended UPDATE_ROLLBACK_COMPLETE: Service: ECS Deployment Circuit "
        "Breaker was triggered (the previous version keeps serving)"
    )
    # the stack is back on the previous template, which serves; its status says why
    assert (after.status, after.reason, after.url) == ("UPDATE_ROLLBACK_COMPLETE", reason,
                                                       "http://lb")  # fmt: skip


def test_ecs_refuses_gpus() -> None:
    spec = PackageSpec(app_name="gpu", model_file="ferry.yaml", compute=Compute(gpu=1))
    with pytest.raises(ConfigError, match="asks for 1 GPU\\(s\\), which Fargate does not have"):
        ecs.template("gpu", spec, "img:1")
