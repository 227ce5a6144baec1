"""A RealtimeAPI of a ferry.yaml as the ``PackageSpec`` the packaging renderers take."""

from __future__ import annotations

from pathlib import PurePosixPath

from ferry.apispec import RealtimeAPI
from ferry.errors import ConfigError
from ferry.packaging.spec import Autoscaling, Compute, PackageSpec, UpdateStrategy

__all__ = ["package_spec"]


def _model_file(api: RealtimeAPI) -> str:
    predictor = api.predictor
    source = predictor.model_path or predictor.path
    if source is None and predictor.models is not None:
        source = predictor.models.path
    return PurePosixPath(source or "model").name


def package_spec(api: RealtimeAPI, image_uri: str) -> PackageSpec:
    """The spec of ``api`` serving from ``image_uri``; ConfigError when it does not fit."""
    scaling = api.autoscaling
    try:
        return PackageSpec(
            app_name=api.name,
            model_file=_model_file(api),
            workers=api.predictor.processes_per_replica,
            env=dict(api.predictor.env),
            compute=Compute(cpu=api.compute.cpu, mem_bytes=api.compute.mem, gpu=api.compute.gpu),
            autoscaling=Autoscaling(
                min_replicas=scaling.min_replicas,
                max_replicas=scaling.max_replicas,
                target_concurrency=scaling.target_replica_concurrency,
            ),
            update_strategy=UpdateStrategy(
                max_surge=api.update_strategy.max_surge,
                max_unavailable=api.update_strategy.max_unavailable,
            ),
            image_uri=image_uri,
        )
    except ValueError as error:
        raise ConfigError(f"api {api.name!r}: {error}") from None
