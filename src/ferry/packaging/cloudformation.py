"""CloudFormation exports: a SageMaker endpoint and an ECS Fargate service.

Both run the image from ``docker.py``; each template deploys on its own with
``aws cloudformation deploy``. YAML, because people read and diff these files.
"""

from __future__ import annotations

from ferry.packaging.fargate import render_ecs_template
from ferry.packaging.sagemaker import render_sagemaker_template
from ferry.packaging.spec import PackageSpec

__all__ = ["render_cloudformation"]


def render_cloudformation(spec: PackageSpec) -> dict[str, str]:
    """``sagemaker.yaml`` and, unless the model needs GPUs (Fargate has none),
    ``ecs-fargate.yaml``."""
    files = {"sagemaker.yaml": render_sagemaker_template(spec)}
    if not spec.compute.gpu:
        files["ecs-fargate.yaml"] = render_ecs_template(spec)
    return files
