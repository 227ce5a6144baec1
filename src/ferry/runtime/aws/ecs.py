"""``ferry deploy --env ecs``: the packaging's ECS Fargate template as a CloudFormation stack.

The caller hands over the API's ``PackageSpec`` (``ferry.cli.packaging_spec`` builds it,
the same spec ``ferry export --target ecs`` renders). The stack (``ferry-<api>``, tagged
``ferry:api``) is the state: create it, or update it ("No updates are to be performed"
is success), wait for ``*_COMPLETE`` with each new status reported, and read the load
balancer URL from its outputs. A failed update rolls back to the previous template, which
keeps serving; the reason comes from the stack's first failed event. ``delete`` deletes
the stack and waits until it is gone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ferry.errors import ConfigError
from ferry.packaging import PackageSpec, render_cloudformation
from ferry.runtime.aws.errors import AwsConflictError, AwsError, AwsNotFoundError, translate
from ferry.runtime.aws.plan import TAG_API
from ferry.runtime.aws.session import AwsTarget, Progress, no_progress, poll

__all__ = [
    "EcsOptions",
    "StackStatus",
    "delete",
    "deploy",
    "list_stacks",
    "stack_name",
    "stack_parameters",
    "status",
    "template",
]

_OK = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE"})


@dataclass(frozen=True)
class EcsOptions:
    """The deploy flags: image, VPC and subnets (load balancer, then tasks)."""

    image_uri: str
    vpc_id: str
    subnets: tuple[str, ...]
    service_subnets: tuple[str, ...] = ()
    assign_public_ip: bool = False
    allowed_cidr: str = "0.0.0.0/0"
    wait_timeout_s: float = 3600.0
    poll_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.image_uri:
            raise ConfigError("--image is required: the URI of the ferry image in ECR")
        if not self.vpc_id.startswith("vpc-"):
            raise ConfigError(f"--vpc {self.vpc_id!r} is not a VPC id (vpc-...)")
        if len(self.subnets) < 2:
            raise ConfigError("--subnets needs two or more subnets in different zones (the ALB)")


@dataclass(frozen=True)
class StackStatus:
    """A ferry stack: its status, the reason when it failed, and its outputs."""

    name: str
    stack: str
    status: str
    reason: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    action: str | None = None

    @property
    def url(self) -> str | None:
        """The load balancer URL."""
        return self.outputs.get("Url")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for ``--output json``."""
        return {**asdict(self), "url": self.url}


def stack_name(api: str) -> str:
    """The stack of ``api``."""
    return f"ferry-{api}"


def stack_parameters(options: EcsOptions) -> list[dict[str, str]]:
    """The template's parameters from the flags."""
    values = {
        "VpcId": options.vpc_id,
        "LoadBalancerSubnetIds": ",".join(options.subnets),
        "ServiceSubnetIds": ",".join(options.service_subnets or options.subnets),
        "AssignPublicIp": "ENABLED" if options.assign_public_ip else "DISABLED",
        "AllowedCidr": options.allowed_cidr,
    }
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]


def _describe(cf: Any, stack: str) -> dict[str, Any] | None:
    with translate(f"describing stack {stack}"):
        try:
            return dict(cf.describe_stacks(StackName=stack)["Stacks"][0])
        except ClientError as error:
            if "does not exist" in str(error.response.get("Error", {}).get("Message", "")):
                return None
            raise


def template(name: str, spec: PackageSpec, image_uri: str) -> str:
    """The stack's template: the spec's ECS Fargate template running ``image_uri``."""
    files = render_cloudformation(dataclasses.replace(spec, image_uri=image_uri))
    if "ecs-fargate.yaml" not in files:
        raise ConfigError(
            f"api {name!r} asks for {spec.compute.gpu} GPU(s), which Fargate does not have; "
            "deploy it with --env sagemaker instead"
        )
    return files["ecs-fargate.yaml"]


def deploy(
    name: str,
    spec: PackageSpec,
    options: EcsOptions,
    target: AwsTarget | None = None,
    progress: Progress = no_progress,
) -> StackStatus:
    """Create or update the stack of API ``name`` (serving ``spec``) and wait until done."""
    cf = (target or AwsTarget()).client("cloudformation")
    stack = stack_name(name)
    body = template(name, spec, options.image_uri)
    existing = _describe(cf, stack)
    if existing is not None:
        _check_owner(existing, name)
    if existing is not None and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        progress(f"{stack}: removing the stack left by a failed create")
        _delete_and_wait(cf, stack, options.wait_timeout_s, options.poll_interval_s, progress)
        existing = None
    args = {
        "StackName": stack,
        "TemplateBody": body,
        "Parameters": stack_parameters(options),
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": [{"Key": TAG_API, "Value": name}],
    }
    if existing is None:
        with translate(f"creating stack {stack}"):
            cf.create_stack(**args, OnFailure="ROLLBACK")
        action = "created"
    elif not _update(cf, args):
        return _status(cf, name, action="unchanged")
    else:
        action = "updated"
    final = _wait(cf, stack, options.wait_timeout_s, options.poll_interval_s, progress)
    if final["StackStatus"] not in _OK:
        reason = _failure(cf, stack) or final.get("StackStatusReason") or final["StackStatus"]
        kept = " (the previous version keeps serving)" if action == "updated" else ""
        raise AwsError(f"stack {stack} ended {final['StackStatus']}: {reason}{kept}")
    return _status(cf, name, action=action)


def _check_owner(stack: dict[str, Any], name: str) -> None:
    tags = {tag["Key"]: tag["Value"] for tag in stack.get("Tags", [])}
    if tags.get(TAG_API) != name:
        raise AwsConflictError(
            f"CloudFormation stack {stack['StackName']!r} already exists and was not created "
            "by ferry (no ferry:api tag); rename the API or delete that stack"
        )


def _update(cf: Any, args: dict[str, Any]) -> bool:
    """Start an update; False when CloudFormation says there is nothing to update."""
    try:
        cf.update_stack(**args)
    except ClientError as error:
        if "No updates are to be performed" in str(error):
            return False
        with translate(f"updating stack {args['StackName']}"):
            raise
    return True


def _wait(cf: Any, stack: str, timeout_s: float, interval_s: float, progress: Progress) -> Any:
    latest: dict[str, Any] = {}

    def check() -> tuple[bool, str]:
        found = _describe(cf, stack)
        if found is None:
            latest.clear()
            return True, f"{stack}: DELETE_COMPLETE"
        latest.update(found)
        current = found["StackStatus"]
        return not current.endswith("_IN_PROGRESS"), f"{stack}: {current}"

    try:
        poll(check, timeout_s=timeout_s, interval_s=interval_s, progress=progress)
    except TimeoutError as error:
        raise AwsError(f"stack {stack}: {error}; it goes on in the background") from None
    return latest


def _failure(cf: Any, stack: str) -> str | None:
    with translate(f"reading the events of stack {stack}"):
        events = cf.describe_stack_events(StackName=stack)["StackEvents"]
    failed = [e for e in events if e["ResourceStatus"].endswith("_FAILED")]
    if not failed:
        return None
    first = failed[-1]  # events are newest first
    return f"{first['LogicalResourceId']}: {first.get('ResourceStatusReason', '')}".strip()


def _status(cf: Any, name: str, action: str | None = None) -> StackStatus:
    stack = stack_name(name)
    found = _describe(cf, stack)
    if found is None:
        raise AwsNotFoundError(f"no ECS stack {stack} for api {name!r} in {cf.meta.region_name}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    return StackStatus(
        name=name,
        stack=stack,
        status=found["StackStatus"],
        reason=found.get("StackStatusReason"),
        outputs=outputs,
        action=action,
    )


def status(name: str, target: AwsTarget | None = None) -> StackStatus:
    """The stack of API ``name``: status, reason, outputs (the load balancer URL)."""
    return _status((target or AwsTarget()).client("cloudformation"), name)


def list_stacks(target: AwsTarget | None = None) -> list[StackStatus]:
    """Every ferry stack in this account and region."""
    cf = (target or AwsTarget()).client("cloudformation")
    with translate("listing CloudFormation stacks"):
        stacks = [
            s for page in cf.get_paginator("describe_stacks").paginate() for s in page["Stacks"]
        ]
    names = [
        tag["Value"] for s in stacks for tag in s.get("Tags", [])
        if tag["Key"] == TAG_API and s["StackName"] == stack_name(tag["Value"])
    ]  # fmt: skip
    return [_status(cf, name) for name in names]


def _delete_and_wait(
    cf: Any, stack: str, timeout_s: float, interval_s: float, progress: Progress
) -> dict[str, Any]:
    with translate(f"deleting stack {stack}"):
        cf.delete_stack(StackName=stack)
    final: dict[str, Any] = _wait(cf, stack, timeout_s, interval_s, progress)
    if final and final.get("StackStatus") != "DELETE_COMPLETE":
        reason = _failure(cf, stack) or final.get("StackStatusReason") or final["StackStatus"]
        raise AwsError(f"stack {stack} was not deleted: {reason}")
    return final


def delete(
    name: str,
    target: AwsTarget | None = None,
    progress: Progress = no_progress,
    *,
    wait_timeout_s: float = 3600.0,
    poll_interval_s: float = 10.0,
) -> None:
    """Delete the stack of API ``name`` (every resource in it) and wait until it is gone."""
    cf = (target or AwsTarget()).client("cloudformation")
    stack = stack_name(name)
    found = _describe(cf, stack)
    if found is None:
        raise AwsNotFoundError(f"no ECS stack {stack} for api {name!r} in {cf.meta.region_name}")
    _check_owner(found, name)
    _delete_and_wait(cf, stack, wait_timeout_s, poll_interval_s, progress)
