"""Pure renderers that turn a ``PackageSpec`` into deployable files.

Every ``render_*`` function returns ``{relative path: content}`` and touches nothing:
callers write the files (and copy the model next to them); tests compare them with golden
files and run the validators each target has (hadolint, cfn-lint, Kubernetes schemas).
"""

from __future__ import annotations

from ferry.packaging.beanstalk import render_beanstalk, zip_bundle
from ferry.packaging.cloudformation import render_cloudformation
from ferry.packaging.docker import DockerTarget, render_docker_context
from ferry.packaging.ec2 import render_ec2, render_nginx_site
from ferry.packaging.fargate import fargate_size
from ferry.packaging.kubernetes import render_kubernetes
from ferry.packaging.spec import Autoscaling, Compute, PackageSpec, UpdateStrategy, Variant
from ferry.packaging.systemd import render_systemd_unit

__all__ = [
    "Autoscaling",
    "Compute",
    "DockerTarget",
    "PackageSpec",
    "UpdateStrategy",
    "Variant",
    "fargate_size",
    "render_beanstalk",
    "render_cloudformation",
    "render_docker_context",
    "render_ec2",
    "render_kubernetes",
    "render_nginx_site",
    "render_systemd_unit",
    "zip_bundle",
]
