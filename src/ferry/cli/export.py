"""``ferry export``: the files one platform needs to run an API or a model.

sagemaker: ``model.tar.gz`` (SageMaker's layout: the model directory at the archive root)
and a CloudFormation template; ecs: the Fargate template; beanstalk: a Docker-platform
source bundle and its zip; ec2: install script, systemd unit, nginx site; kubernetes:
manifests. Values come from ferry.yaml, or from flags for a bare model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from ferry.cli.build import (
    Content,
    context_files,
    make_package,
    output_flags,
    prepare_out,
    show_files,
    write_tree,
)
from ferry.cli.packaging_spec import (
    Options,
    Package,
    app_name,
    model_archive,
    model_data_url,
)
from ferry.cli.render import output_option
from ferry.errors import ConfigError
from ferry.packaging import (
    render_beanstalk,
    render_cloudformation,
    render_ec2,
    render_kubernetes,
    zip_bundle,
)

__all__ = ["TARGETS", "export"]

TARGETS = ("sagemaker", "ecs", "beanstalk", "ec2", "kubernetes")
# targets whose files install ferry themselves, so they carry a wheel of it
_NEEDS_WHEEL = frozenset({"beanstalk", "ec2"})


def _sagemaker(pkg: Package, options: Options) -> dict[str, Content]:
    template = render_cloudformation(pkg.spec)["sagemaker.yaml"]
    files: dict[str, Content] = {"sagemaker.yaml": template}
    if pkg.splitter:
        for name, model_dir in pkg.model_dirs.items():
            files[f"{name}/model.tar.gz"] = model_archive(model_dir)
    else:
        files["model.tar.gz"] = model_archive(pkg.model_dirs[pkg.served[0].name])
    return files


def _ecs(pkg: Package, options: Options) -> dict[str, Content]:
    rendered = render_cloudformation(pkg.spec)
    if "ecs-fargate.yaml" not in rendered:
        raise ConfigError(
            f"{pkg.spec.app_name} needs {pkg.spec.compute.gpu} GPU(s) and Fargate has none: "
            "export to sagemaker or kubernetes instead"
        )
    return {"ecs-fargate.yaml": rendered["ecs-fargate.yaml"]}


def _beanstalk(pkg: Package, options: Options) -> dict[str, Content]:
    bundle = context_files(pkg, render_beanstalk(pkg.spec))
    contents = {
        name: content.read_bytes() if isinstance(content, Path) else content
        for name, content in bundle.items()
    }
    files: dict[str, Content] = {f"bundle/{name}": content for name, content in bundle.items()}
    files[f"{pkg.spec.app_name}-bundle.zip"] = zip_bundle(contents)
    return files


def _ec2(pkg: Package, options: Options) -> dict[str, Content]:
    return context_files(pkg, render_ec2(pkg.spec))


def _kubernetes(pkg: Package, options: Options) -> dict[str, Content]:
    return dict(render_kubernetes(pkg.spec, options.image))


_RENDER: Mapping[str, Callable[[Package, Options], dict[str, Content]]] = {
    "sagemaker": _sagemaker,
    "ecs": _ecs,
    "beanstalk": _beanstalk,
    "ec2": _ec2,
    "kubernetes": _kubernetes,
}


def _next_step(target: str, pkg: Package, out: Path, options: Options, region: str | None) -> str:
    where = f" --region {region}" if region else ""
    app = pkg.spec.app_name
    url = model_data_url(list(pkg.served), options.model_data_url, splitter=pkg.splitter)
    url = url or f"s3://BUCKET/{app}/model.tar.gz"
    steps = {
        "sagemaker": (
            f"aws s3 cp {out}/model.tar.gz {url}{where} && "
            f"aws cloudformation deploy{where} --template-file {out}/sagemaker.yaml "
            f"--stack-name {app} --parameter-overrides ModelDataUrl={url} ExecutionRoleArn=ARN"
        ),
        "ecs": (
            f"aws cloudformation deploy{where} --template-file {out}/ecs-fargate.yaml "
            f"--stack-name {app} --capabilities CAPABILITY_IAM --parameter-overrides "
            "VpcId=... LoadBalancerSubnetIds=... ServiceSubnetIds=..."
        ),
        "beanstalk": f"cd {out}/bundle && eb init -p docker {app}{where} && eb create {app}-env",
        "ec2": f"scp -r {out} HOST: && ssh HOST 'cd {out.name} && sudo ./install.sh'",
        "kubernetes": f"kubectl apply -f {out}/kubernetes.yaml",
    }
    return steps[target]


def _check(target: str, url: str | None) -> None:
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    if url is not None and not url.startswith("s3://"):
        raise ConfigError(f"--model-data-url {url!r} must be an s3:// URL")


@click.command()
@click.argument("name", metavar="API|MODEL")
@click.option("--target", "target", required=True, help=f"One of: {', '.join(TARGETS)}.")
@click.option("--project", type=click.Path(path_type=Path), help="ferry.yaml or its folder.")
@click.option("--out", type=click.Path(path_type=Path), help="[default: ./build/<name>-<target>]")
@click.option("--image", help="Image URI the templates and manifests run.")
@click.option("--model-data-url", help="s3:// URL of model.tar.gz (a prefix for a splitter).")
@click.option("--region", help="AWS region, for the printed next step.")
@click.option("--app-name", "app", help="App name (default: the API's name or the model's stem).")
@click.option("--instance-type", help="SageMaker instance type (default: from compute).")
@click.option("--cpu", type=float, help="CPU cores per replica (bare model: 1).")
@click.option("--memory", help="Memory per replica, e.g. 2Gi.")
@click.option("--gpu", type=int, help="GPUs per replica.")
@click.option("--min-replicas", type=int, help="Fewest replicas (bare model: 1).")
@click.option("--max-replicas", type=int, help="Most replicas (bare model: 4).")
@click.option("--workers", type=int, help="Server worker processes per replica.")
@output_flags
@output_option
def export(name: str, target: str, project: Path | None, out: Path | None, **flags: Any) -> None:
    """Write the files TARGET needs to run API (of a ferry.yaml) or MODEL."""
    output, region = str(flags.pop("output")), flags.pop("region")
    _check(target, flags.get("model_data_url"))
    flags["name"] = flags.pop("app")
    options = Options(**flags)
    default = app_name(options.name or Path(name.split(":")[0]).stem or name)
    out = out or Path("build") / f"{default}-{target}"
    pkg = make_package(name, project, out, options, wheel=target in _NEEDS_WHEEL)
    if pkg.splitter and target != "sagemaker":
        raise ConfigError(
            f"{name} is a TrafficSplitter: only --target sagemaker has weighted variants; "
            "export its APIs one by one for other targets"
        )
    files = _RENDER[target](pkg, options)
    prepare_out(out)
    written = write_tree(out, files)
    show_files(out, written, output, {"target": target, "app": pkg.spec.app_name})
    if output == "table":
        click.echo(f"\nnext: {_next_step(target, pkg, out, options, region)}")
