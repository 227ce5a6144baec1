"""Deploys to AWS: SageMaker endpoints and ECS Fargate services (CloudFormation).

Not a ``RuntimeBackend``: these are imperative create/update/wait/delete calls through
boto3, driven by ``ferry deploy --env sagemaker|ecs`` (``ferry.cli.aws_deploy``). State
lives in AWS itself (resource tags, the stack), never in a local file.
"""

from __future__ import annotations

from ferry.runtime.aws.errors import AwsError
from ferry.runtime.aws.plan import SageMakerOptions
from ferry.runtime.aws.session import AwsTarget, Progress
from ferry.runtime.aws.status import EndpointStatus

__all__ = ["AwsError", "AwsTarget", "EndpointStatus", "Progress", "SageMakerOptions"]
