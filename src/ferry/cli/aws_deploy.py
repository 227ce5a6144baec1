"""``--env sagemaker|ecs`` for ``ferry deploy/get/describe/delete``: the AWS side of the CLI.

The commands keep talking to the local control plane when ``--env`` is ``local`` (the
default) and call these functions otherwise. ``aws_options`` adds the AWS flags to a
command; each function prints one line per step (or JSON with ``-o json``) and raises
``FerryError`` subclasses, which ``ferry.cli.main`` prints as one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ferry.apispec import Project, RealtimeAPI, load_project
from ferry.errors import ConfigError

if TYPE_CHECKING:  # boto3 is imported only when an AWS environment is used
    from ferry.packaging import PackageSpec
    from ferry.runtime.aws import ecs
    from ferry.runtime.aws.plan import SageMakerOptions

__all__ = [
    "ENVS",
    "aws_delete",
    "aws_deploy",
    "aws_describe",
    "aws_get",
    "aws_options",
    "deploy_names",
    "ecs_spec",
    "env_option",
]

ENVS = ("local", "sagemaker", "ecs")
F = TypeVar("F", bound=Callable[..., Any])


def _check_env(_: click.Context, __: click.Parameter, value: str) -> str:
    # checked here rather than by click.Choice, so a wrong value is one line, like a
    # wrong `ferry export --target`
    if value not in ENVS:
        raise ConfigError(f"unknown environment {value!r}: expected one of {', '.join(ENVS)}")
    return value


def env_option(function: F) -> F:
    """``--env local|sagemaker|ecs`` (also ``FERRY_ENV``)."""
    return click.option(
        "--env", default="local", show_default=True, metavar="[local|sagemaker|ecs]",
        envvar="FERRY_ENV", callback=_check_env,
        help="Where: the local cluster, SageMaker, or ECS Fargate.",
    )(function)  # fmt: skip


def aws_options(function: F) -> F:
    """The AWS flags of ``ferry deploy``; each also reads a ``FERRY_*`` variable."""
    flags = [
        (
            "--image",
            "FERRY_IMAGE",
            "Image URI in ECR (docker push it first; ferry pushes nothing).",
        ),
        ("--role", "FERRY_SAGEMAKER_ROLE", "SageMaker: execution role ARN."),
        ("--bucket", "FERRY_BUCKET", "SageMaker: S3 bucket for model.tar.gz."),
        ("--region", "AWS_REGION", "AWS region (default: your AWS config)."),
        ("--instance-type", "FERRY_INSTANCE_TYPE", "SageMaker: instance type [ml.m5.large]."),
        ("--vpc", "FERRY_VPC", "ECS: VPC id."),
        ("--subnets", "FERRY_SUBNETS", "ECS: load balancer subnets, comma-separated, 2+ zones."),
        ("--service-subnets", "FERRY_SERVICE_SUBNETS", "ECS: task subnets [--subnets]."),
    ]
    function = click.option(
        "--public-ip/--no-public-ip", default=False, help="ECS: tasks get a public IP (no NAT)."
    )(function)
    for flag, envvar, text in reversed(flags):
        function = click.option(flag, envvar=envvar, help=text)(function)
    return function


def _need(value: str | None, flag: str, env: str) -> str:
    if not value:
        raise ConfigError(f"--env {env} needs {flag}")
    return value


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def deploy_names(project: Project, env: str) -> list[str]:
    """What one deploy creates: SageMaker endpoints (splitters, and APIs outside any
    splitter) or ECS stacks (every RealtimeAPI)."""
    if env == "ecs":
        return [api.name for api in project.apis]
    split = {target.name for s in project.splitters for target in s.apis}
    return [s.name for s in project.splitters] + [
        api.name for api in project.apis if api.name not in split
    ]


def _progress(output: str) -> Callable[[str], None]:
    return (lambda line: click.echo(line, err=True)) if output == "table" else (lambda _: None)


def ecs_spec(project: Project, name: str) -> PackageSpec:
    """The spec of API ``name`` that ``ferry deploy --env ecs`` renders into its stack."""
    from ferry.cli.packaging_spec import Options, api_package_spec

    try:
        api = project.get(name)
    except KeyError:
        known = ", ".join(a.name for a in project.apis) or "none"
        raise ConfigError(f"{project.path}: no API named {name!r} (known: {known})") from None
    if not isinstance(api, RealtimeAPI):
        raise ConfigError(f"{name!r} is a TrafficSplitter; ECS deploys one RealtimeAPI per stack")
    return api_package_spec(api, Options())


def aws_deploy(path: Path, env: str, output: str, api: str | None = None, **flags: Any) -> None:
    """``ferry deploy PATH --env sagemaker|ecs``: deploy every API of PATH (or ``api``)."""
    from ferry.cli.packaging_spec import model_packager
    from ferry.config import default_cache_dir
    from ferry.runtime.aws import ecs, sagemaker
    from ferry.runtime.aws.session import AwsTarget

    project = load_project(path)
    target = AwsTarget(region=flags.get("region"))
    names = [api] if api else deploy_names(project, env)
    results = []
    for name in names:
        if env == "sagemaker":
            packager = model_packager(project, default_cache_dir())
            options = _sagemaker_options(flags)
            done: Any = sagemaker.deploy(
                project, name, options, packager, target, _progress(output)
            )
        else:
            spec = ecs_spec(project, name)
            done = ecs.deploy(name, spec, _ecs_options(flags), target, _progress(output))
        results.append(done.to_dict())
        if output == "table":
            click.echo(f"{name}: {done.action} ({done.status}) {done.url or ''}".rstrip())
    if output == "json":
        from ferry.cli.render import print_json

        print_json({"env": env, "apis": results})


def _sagemaker_options(flags: dict[str, Any]) -> SageMakerOptions:
    from ferry.runtime.aws.plan import SageMakerOptions

    return SageMakerOptions(
        image_uri=_need(flags.get("image"), "--image URI", "sagemaker"),
        role_arn=_need(flags.get("role"), "--role ARN", "sagemaker"),
        bucket=_need(flags.get("bucket"), "--bucket NAME", "sagemaker"),
        instance_type=flags.get("instance_type") or "ml.m5.large",
    )


def _ecs_options(flags: dict[str, Any]) -> ecs.EcsOptions:
    from ferry.runtime.aws import ecs

    return ecs.EcsOptions(
        image_uri=_need(flags.get("image"), "--image URI", "ecs"),
        vpc_id=_need(flags.get("vpc"), "--vpc ID", "ecs"),
        subnets=_split(_need(flags.get("subnets"), "--subnets A,B", "ecs")),
        service_subnets=_split(flags.get("service_subnets")),
        assign_public_ip=bool(flags.get("public_ip")),
    )


def _rows(env: str, region: str | None, api: str | None) -> list[dict[str, Any]]:
    from ferry.runtime.aws import ecs, sagemaker
    from ferry.runtime.aws.session import AwsTarget
    from ferry.runtime.aws.status import list_endpoints

    target = AwsTarget(region=region)
    if env == "sagemaker":
        sm = target.client("sagemaker")
        found: list[Any] = [sagemaker.status(api, target)] if api else list_endpoints(sm)
    else:
        found = [ecs.status(api, target)] if api else ecs.list_stacks(target)
    return [item.to_dict() for item in found]


def aws_get(env: str, api: str | None, output: str, region: str | None = None) -> None:
    """``ferry get [API] --env sagemaker|ecs``: one line per endpoint or stack."""
    from ferry.cli.render import console, print_json, table

    rows = _rows(env, region, api)
    if output == "json":
        print_json({"env": env, "apis": rows})
    elif not rows:
        click.echo(f"no apis are deployed to {env} in this region")
    else:
        lines = [(r["name"], r["status"], r.get("revision") or r.get("stack"), r["url"] or "-")
                 for r in rows]  # fmt: skip
        console().print(
            table(("api", "status", "revision" if env == "sagemaker" else "stack", "url"), lines)
        )


def aws_describe(env: str, api: str, output: str, region: str | None = None) -> None:
    """``ferry describe API --env sagemaker|ecs``: status, variants or outputs, failure."""
    from ferry.cli.render import print_json

    row = _rows(env, region, api)[0]
    if output == "json":
        print_json(row)
        return
    click.echo(f"api: {row['name']}\nstatus: {row['status']}\nurl: {row['url']}")
    for variant in row.get("variants", ()):
        click.echo(
            f"variant {variant['name']}: weight {variant['weight']}, "
            f"{variant['instances']}/{variant['desired_instances']} instances"
        )
    for key, value in row.get("outputs", {}).items():
        click.echo(f"output {key}: {value}")
    failure = row.get("failure") or row.get("reason")
    if failure:
        click.echo(f"last failure: {failure}")


def aws_delete(
    env: str, api: str, output: str, region: str | None = None, bucket: str | None = None
) -> None:
    """``ferry delete API --env sagemaker|ecs``: remove everything ferry created for API."""
    from ferry.cli.render import print_json
    from ferry.runtime.aws import cleanup, ecs
    from ferry.runtime.aws.session import AwsTarget

    target = AwsTarget(region=region)
    if env == "sagemaker":
        removed: dict[str, Any] = cleanup.delete(api, target, _progress(output), bucket=bucket)
    else:
        ecs.delete(api, target, _progress(output))
        removed = {"stack": [ecs.stack_name(api)]}
    if output == "json":
        print_json({"env": env, "api": api, "deleted": removed})
    else:
        click.echo(f"deleted {api} from {env}")
