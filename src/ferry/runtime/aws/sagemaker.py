"""``ferry deploy --env sagemaker``: model.tar.gz to S3, Model, EndpointConfig, Endpoint.

Imperative, unlike the local cluster's reconciler: ``deploy`` creates what a revision
needs, then creates the endpoint or rolls it forward to the new EndpointConfig (SageMaker
starts the new fleet and stops the old one only once the new one is healthy), waits, and
registers autoscaling. A revision is a content hash of what is served, so deploying the
same thing twice changes nothing. If the roll-forward fails, the previous config keeps
serving, the endpoint is tagged with the failure, and ``deploy`` raises the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferry.apispec import Project, RealtimeAPI
from ferry.packaging.spec import PackageSpec
from ferry.runtime.aws import scaling, state
from ferry.runtime.aws.artifact import ModelArchive, upload
from ferry.runtime.aws.errors import AwsError, translate
from ferry.runtime.aws.plan import (
    EndpointPlan,
    SageMakerOptions,
    VariantPlan,
    config_name,
    model_name,
    plan_endpoint,
    production_variants,
    revision_of,
    tags,
)
from ferry.runtime.aws.session import AwsTarget, Progress, no_progress, poll
from ferry.runtime.aws.status import EndpointStatus, endpoint_status

__all__ = ["ModelPackager", "container_env", "deploy", "status"]

_BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack")

ModelPackager = Callable[[RealtimeAPI], bytes]
"""The ``model.tar.gz`` bytes of an API (``ferry.cli.packaging_spec.model_packager``)."""


def deploy(
    project: Project,
    name: str,
    options: SageMakerOptions,
    package_model: ModelPackager,
    target: AwsTarget | None = None,
    progress: Progress = no_progress,
) -> EndpointStatus:
    """Deploy the API or splitter ``name`` as a SageMaker endpoint and wait until InService.

    ``package_model`` gives each variant's ``model.tar.gz``, the same archive ``ferry
    export --target sagemaker`` writes.
    """
    target = target or AwsTarget()
    sm = target.client("sagemaker")
    plan = plan_endpoint(project, name, options)
    existing = state.describe_endpoint(sm, name)
    if existing is not None:
        state.check_owner(sm, existing, name)
    urls = _upload_models(target, plan, options, package_model, progress)
    rollout = _Rollout(target, plan, options, revision_of(plan, options, urls), progress)
    if existing is not None and existing["EndpointConfigName"] == rollout.config:
        progress(f"{name}: revision {rollout.revision} is already deployed")
        rollout.register_scaling()
        return endpoint_status(sm, name, action="unchanged")
    for variant in plan.variants:
        rollout.create_model(variant, urls[variant.variant.name])
    rollout.create_config()
    if existing is None:
        rollout.create_endpoint()
    else:
        rollout.update_endpoint(existing)
    rollout.register_scaling()
    previous = existing["EndpointConfigName"] if existing else rollout.config
    _prune(sm, name, keep={rollout.config, previous})
    return endpoint_status(sm, name, action="created" if existing is None else "updated")


def status(name: str, target: AwsTarget | None = None) -> EndpointStatus:
    """The endpoint's state, variants, revision and last failure."""
    return endpoint_status((target or AwsTarget()).client("sagemaker"), name)


def _upload_models(
    target: AwsTarget,
    plan: EndpointPlan,
    options: SageMakerOptions,
    package_model: ModelPackager,
    progress: Progress,
) -> dict[str, str]:
    s3, urls = target.client("s3"), {}
    for variant in plan.variants:
        archive = ModelArchive(package_model(variant.api))
        key = archive.key(plan.name)
        url = f"s3://{options.bucket}/{key}"
        uploaded = upload(s3, options.bucket, key, archive)
        progress(f"{'uploaded' if uploaded else 'already in S3:'} {url}")
        urls[variant.variant.name] = url
    return urls


def container_env(variant: VariantPlan, options: SageMakerOptions) -> dict[str, str]:
    """SAGEMAKER_* settings (as the packaging renders them) plus the API's own env."""
    predictor = variant.api.predictor
    # the env does not depend on the app name; packaging's stricter name rule is not ours
    spec = PackageSpec(
        app_name="ferry",
        model_file="model",
        workers=predictor.processes_per_replica,
        timeout_s=options.timeout_s,
    )
    return {**spec.sagemaker_env(), **variant.env}


class _Rollout:
    """One revision of one endpoint on its way to InService."""

    def __init__(
        self,
        target: AwsTarget,
        plan: EndpointPlan,
        options: SageMakerOptions,
        revision: str,
        progress: Progress,
    ) -> None:
        self.sm = target.client("sagemaker")
        self.aas = target.client("application-autoscaling")
        self.plan, self.options, self.revision = plan, options, revision
        self.progress = progress
        self.config = config_name(plan.name, revision)

    def create_model(self, variant: VariantPlan, url: str) -> None:
        name = model_name(self.plan.name, variant.variant.name, self.revision)
        with translate(f"creating SageMaker model {name}"):
            listed = self.sm.list_models(NameContains=name)["Models"]
            if any(model["ModelName"] == name for model in listed):
                return  # left by an earlier attempt at this same revision
            self.sm.create_model(
                ModelName=name,
                ExecutionRoleArn=self.options.role_arn,
                PrimaryContainer={
                    "Image": self.options.image_uri,
                    "ModelDataUrl": url,
                    "Environment": container_env(variant, self.options),
                },
                Tags=tags(self.plan.name, self.revision, variant.variant.name),
            )

    def create_config(self) -> None:
        with translate(f"creating endpoint config {self.config}"):
            listed = self.sm.list_endpoint_configs(NameContains=self.config)["EndpointConfigs"]
            if any(c["EndpointConfigName"] == self.config for c in listed):
                return
            self.sm.create_endpoint_config(
                EndpointConfigName=self.config,
                ProductionVariants=production_variants(self.plan, self.revision),
                Tags=tags(self.plan.name, self.revision),
            )

    def create_endpoint(self) -> None:
        name = self.plan.name
        with translate(f"creating endpoint {name}"):
            self.sm.create_endpoint(
                EndpointName=name,
                EndpointConfigName=self.config,
                Tags=tags(name, self.revision),
            )
        final = self.wait()
        if final["EndpointStatus"] != "InService":
            reason = final.get("FailureReason") or final["EndpointStatus"]
            raise AwsError(f"endpoint {name} failed to start: {reason}")

    def update_endpoint(self, existing: dict[str, Any]) -> None:
        name, previous = self.plan.name, existing["EndpointConfigName"]
        saved = scaling.snapshot(self.aas, name)
        # SageMaker refuses to update variants that are registered scalable targets
        scaling.remove(self.aas, name)
        try:
            with translate(f"updating endpoint {name} to {self.config}"):
                self.sm.update_endpoint(EndpointName=name, EndpointConfigName=self.config)
            final = self.wait()
            if final["EndpointConfigName"] != self.config or final["EndpointStatus"] != "InService":
                reason = final.get("FailureReason") or final["EndpointStatus"]
                raise AwsError(f"endpoint {name} did not roll forward to {self.config}: {reason}")
        except AwsError as error:
            scaling.restore(self.aas, saved)
            state.record_failure(self.sm, existing["EndpointArn"], self.revision, str(error))
            raise type(error)(f"{error} (still serving {previous})") from error
        state.clear_failure(self.sm, existing["EndpointArn"])

    def wait(self) -> dict[str, Any]:
        name, latest = self.plan.name, {}

        def check() -> tuple[bool, str]:
            with translate(f"waiting for endpoint {name}"):
                latest.update(self.sm.describe_endpoint(EndpointName=name))
            current = latest["EndpointStatus"]
            return current not in _BUSY, f"{name}: {current}"

        try:
            poll(
                check,
                timeout_s=self.options.wait_timeout_s,
                interval_s=self.options.poll_interval_s,
                progress=self.progress,
            )
        except TimeoutError as error:
            raise AwsError(f"endpoint {name}: {error}; it goes on in the background") from None
        return latest

    def register_scaling(self) -> None:
        keep = frozenset(v.variant.name for v in self.plan.variants)
        scaling.remove(self.aas, self.plan.name, keep=keep)
        for variant in self.plan.variants:
            scaling.register(self.aas, self.plan.name, variant)


def _prune(sm: Any, name: str, keep: set[str]) -> None:
    """Delete the configs and models of revisions other than the kept configs' (rollback)."""
    configs = state.owned(sm, "endpoint_config", name)
    revisions = {c["revision"] for c in configs if c["name"] in keep}
    for config in configs:
        if config["name"] not in keep:
            with translate(f"deleting old endpoint config {config['name']}"):
                sm.delete_endpoint_config(EndpointConfigName=config["name"])
    for model in state.owned(sm, "model", name):
        if model["revision"] not in revisions:
            with translate(f"deleting old model {model['name']}"):
                sm.delete_model(ModelName=model["name"])
