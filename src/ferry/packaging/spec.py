"""What every packaging renderer needs to know, validated once when it is built.

The renderers receive a frozen ``PackageSpec`` and nothing else, so the same spec yields
byte-identical files (golden-tested) and a bad value fails here with a clear message
instead of producing a template that a cloud rejects ten minutes into a deploy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ferry.config import DEFAULT_MAX_BODY_BYTES

__all__ = [
    "PYTHON_IMAGES",
    "Autoscaling",
    "Compute",
    "PackageSpec",
    "UpdateStrategy",
    "Variant",
    "number",
]

# A full patch tag, never a floating one, so a rebuild next month gets the same interpreter.
PYTHON_IMAGES: Mapping[str, str] = MappingProxyType(
    {
        "3.11": "python:3.11.11-slim-bookworm",
        "3.12": "python:3.12.8-slim-bookworm",
        "3.13": "python:3.13.1-slim-bookworm",
    }
)

# Short enough for every name derived from it (ALB target groups allow 32 characters) and
# a DNS label, which Kubernetes, SageMaker and CloudFormation all accept.
_APP_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,22}[a-z0-9])?$")
_VARIANT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_PERCENT = re.compile(r"^(\d{1,3})%$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _fail(message: str) -> None:
    raise ValueError(message)


@dataclass(frozen=True)
class Compute:
    """Resources for one replica: CPU cores, memory in bytes (None: the target's minimum), GPUs."""

    cpu: float = 1.0
    mem_bytes: int | None = None
    gpu: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.cpu <= 192:
            _fail(f"compute.cpu {self.cpu} must be between 0 and 192 cores")
        if self.mem_bytes is not None and self.mem_bytes < 64 * 1024 * 1024:
            _fail(f"compute.mem_bytes {self.mem_bytes} is below 64 MiB")
        if self.gpu < 0:
            _fail(f"compute.gpu {self.gpu} must not be negative")

    @property
    def millicores(self) -> int:
        """CPU as Kubernetes millicores, rounded up so a request never shrinks."""
        return math.ceil(round(self.cpu * 1000, 6))


@dataclass(frozen=True)
class Autoscaling:
    """Replica bounds and the load one replica should carry.

    ``target_concurrency`` is in-flight requests per replica (Cortex's
    ``target_replica_concurrency``); ``target_invocations_per_minute`` is what
    SageMaker's ``SageMakerVariantInvocationsPerInstance`` and the ALB's
    ``ALBRequestCountPerTarget`` measure; ``target_cpu_percent`` drives the Kubernetes HPA.
    """

    min_replicas: int = 1
    max_replicas: int = 4
    target_concurrency: float = 8.0
    target_invocations_per_minute: int = 1000
    target_cpu_percent: int = 70

    def __post_init__(self) -> None:
        if self.min_replicas < 1:
            _fail("autoscaling.min_replicas must be at least 1")
        if self.max_replicas < self.min_replicas:
            _fail("autoscaling.max_replicas must not be below min_replicas")
        if self.target_concurrency <= 0 or self.target_invocations_per_minute <= 0:
            _fail("autoscaling targets must be positive")
        if not 1 <= self.target_cpu_percent <= 100:
            _fail("autoscaling.target_cpu_percent must be between 1 and 100")


def _check_surge(value: str | int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        _fail(f"update_strategy.{name} must be an int or a percentage such as '25%'")
    if isinstance(value, int) and value < 0:
        _fail(f"update_strategy.{name} must not be negative")
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if not match or int(match.group(1)) > 100:
            _fail(f"update_strategy.{name} {value!r} is not a percentage such as '25%'")


def _is_zero(value: str | int) -> bool:
    return value in (0, "0%")


@dataclass(frozen=True)
class UpdateStrategy:
    """Rolling update bounds, as Kubernetes and Cortex spell them: an int or ``"25%"``."""

    max_surge: str | int = "25%"
    max_unavailable: str | int = "25%"

    def __post_init__(self) -> None:
        _check_surge(self.max_surge, "max_surge")
        _check_surge(self.max_unavailable, "max_unavailable")
        if _is_zero(self.max_surge) and _is_zero(self.max_unavailable):
            _fail("update_strategy: max_surge and max_unavailable cannot both be 0")

    def counts(self, replicas: int) -> tuple[int, int]:
        """(surge, unavailable) in replicas, resolved as Kubernetes does.

        Percentages round up for surge and down for unavailable; when both come to 0 one
        replica may be unavailable, or a rollout could never start.
        """
        surge = _resolve(self.max_surge, replicas, math.ceil)
        unavailable = _resolve(self.max_unavailable, replicas, math.floor)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, min(unavailable, replicas)

    def ecs_percents(self, replicas: int) -> tuple[int, int]:
        """(MaximumPercent, MinimumHealthyPercent) that ECS rounds back to ``counts``.

        ECS rounds MaximumPercent down and MinimumHealthyPercent up, so the literal "25%"
        with one task would allow neither an extra nor a missing task and stall.
        """
        surge, unavailable = self.counts(replicas)
        maximum = 100 + math.ceil(surge * 100 / replicas)
        minimum = 100 - math.ceil(unavailable * 100 / replicas)
        return min(maximum, 200), max(minimum, 0)


def _resolve(value: str | int, replicas: int, rounding: Callable[[float], int]) -> int:
    if isinstance(value, int):
        return value
    return rounding(int(value.rstrip("%")) * replicas / 100)


@dataclass(frozen=True)
class Variant:
    """A SageMaker production variant: a share of traffic on its own instances.

    ``model_data_url`` overrides the template's ModelDataUrl parameter, so an A/B test can
    put a new model next to the old one behind one endpoint.
    """

    name: str
    weight: float = 1.0
    instance_type: str = "ml.m5.large"
    initial_instance_count: int = 1
    model_data_url: str | None = None

    def __post_init__(self) -> None:
        if not _VARIANT_NAME.match(self.name):
            _fail(f"variant name {self.name!r} must be letters, digits and hyphens")
        if self.weight < 0:
            _fail(f"variant {self.name}: weight must not be negative")
        if self.initial_instance_count < 1:
            _fail(f"variant {self.name}: initial_instance_count must be at least 1")
        if not self.instance_type.startswith("ml."):
            _fail(f"variant {self.name}: instance_type {self.instance_type!r} is not ml.*")
        url = self.model_data_url
        if url is not None and not (url.startswith("s3://") and url.endswith(".tar.gz")):
            _fail(f"variant {self.name}: model_data_url must be an s3://... .tar.gz")


def _default_variants() -> tuple[Variant, ...]:
    return (Variant(name="primary"),)


@dataclass(frozen=True)
class PackageSpec:
    """Everything the renderers need; build it once, render every target from it.

    ``model_file`` is the file ``ferry serve`` reads in the model directory: the model
    itself, or a generated ``ferry.yaml`` beside it that names the API and its outputs.
    The caller writes the model directory to ``model/`` in the build context; it lands in
    ``/opt/ml/model``. ``predictor_dir`` names the context directory holding a Python
    predictor's code, which lands in ``/opt/ml/model/code`` (where SageMaker keeps it).
    ``local_wheels`` are wheel files the caller copies to ``wheels/`` (e.g. ferry itself,
    before it is on an index). Sizes are bytes, times seconds.
    """

    app_name: str
    model_file: str
    predictor_dir: str | None = None
    python_version: str = "3.11"
    ferry_requirement: str = "ferry==0.1.0"
    requirements: tuple[str, ...] = ()
    local_wheels: tuple[str, ...] = ()
    port: int = 8080
    workers: int = 1
    timeout_s: float = 60.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    graceful_timeout_s: float = 25.0
    env: Mapping[str, str] = field(default_factory=dict)
    compute: Compute = field(default_factory=Compute)
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    update_strategy: UpdateStrategy = field(default_factory=UpdateStrategy)
    variants: tuple[Variant, ...] = field(default_factory=_default_variants)
    image_uri: str = "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/{app}:latest"
    health_path: str = "/readyz"
    liveness_path: str = "/healthz"
    user: str | None = "ferry"
    uid: int = 10001
    log_format: str = "json"

    def __post_init__(self) -> None:
        _check_names(self)
        _check_server(self)
        _check_variants(self.variants)
        # a read-only copy in key order: the spec stays frozen and renders deterministically
        object.__setattr__(self, "env", MappingProxyType(dict(sorted(self.env.items()))))
        object.__setattr__(self, "image_uri", self.image_uri.replace("{app}", self.app_name))

    @property
    def base_image(self) -> str:
        """The pinned ``python:X.Y.Z-slim`` image for ``python_version``."""
        return PYTHON_IMAGES[self.python_version]

    @property
    def model_path(self) -> str:
        """Where the model sits inside an image (the SageMaker model directory)."""
        return f"/opt/ml/model/{self.model_file}"

    @property
    def drain_seconds(self) -> int:
        """Seconds the server may spend draining, rounded up for the platforms' int fields."""
        return math.ceil(self.graceful_timeout_s)

    @property
    def timeout_seconds(self) -> int:
        """The request timeout rounded up, for platforms that only take whole seconds."""
        return math.ceil(self.timeout_s)

    def serve_flags(self) -> list[str]:
        """``ferry serve`` flags for targets that control the command (Kubernetes, ECS, EC2)."""
        return [
            "--workers", str(self.workers),
            "--timeout", number(self.timeout_s),
            "--max-body-size", str(self.max_body_bytes),
            "--graceful-timeout", number(self.graceful_timeout_s),
            "--log-format", self.log_format,
        ]  # fmt: skip

    def sagemaker_env(self) -> dict[str, str]:
        """The same settings as SAGEMAKER_* variables, which survive ``docker run IMAGE serve``.

        SageMaker replaces CMD with ``serve``, so flags baked into CMD would be lost there;
        ``ferry serve`` reads these variables instead (there is none for the drain timeout,
        whose default already fits SageMaker's 30 s SIGKILL).
        """
        return {
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(self.workers),
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": number(self.timeout_s),
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": number(self.max_body_bytes / (1024 * 1024)),
        }


def number(value: float) -> str:
    """``60.0`` -> ``"60"``, ``2.5`` -> ``"2.5"``: exact, without a trailing ``.0``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _relative(path: str, what: str) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or "" in parts:
        _fail(f"{what} {path!r} must be a relative path inside the build context")


def _check_names(spec: PackageSpec) -> None:
    if not _APP_NAME.match(spec.app_name):
        _fail(
            f"app_name {spec.app_name!r} must be 1-24 lowercase letters, digits or hyphens, "
            "starting with a letter"
        )
    _relative(spec.model_file, "model_file")
    if spec.predictor_dir is not None:
        _relative(spec.predictor_dir, "predictor_dir")
    if spec.python_version not in PYTHON_IMAGES:
        _fail(f"python_version {spec.python_version!r} is not one of {sorted(PYTHON_IMAGES)}")
    for name, value in spec.env.items():
        if not _ENV_NAME.match(name):
            _fail(f"env name {name!r} is not a valid environment variable name")
        if "\n" in value or "\r" in value:
            _fail(f"env {name}: values cannot span lines")
    for wheel in spec.local_wheels:
        if "/" in wheel or not wheel.endswith(".whl"):
            _fail(f"local wheel {wheel!r} must be a file name ending in .whl")


def _check_server(spec: PackageSpec) -> None:
    if not 1 <= spec.port <= 65535:
        _fail(f"port {spec.port} is not a TCP port")
    if spec.workers < 1:
        _fail("workers must be at least 1")
    if spec.timeout_s <= 0 or spec.graceful_timeout_s < 0:
        _fail("timeout_s must be positive and graceful_timeout_s not negative")
    if spec.max_body_bytes < 1024:
        _fail("max_body_bytes must be at least 1024")
    for path in (spec.health_path, spec.liveness_path):
        if not path.startswith("/"):
            _fail(f"health path {path!r} must start with /")
    if spec.log_format not in ("json", "text"):
        _fail("log_format must be 'json' or 'text'")
    if spec.user is not None and not (_APP_NAME.match(spec.user) and spec.uid > 0):
        _fail("user must be a lowercase name with a non-zero uid (None runs as root)")


def _check_variants(variants: tuple[Variant, ...]) -> None:
    if not variants:
        _fail("at least one variant is required")
    names = [variant.name for variant in variants]
    # CloudFormation logical IDs drop the hyphens: "a-b" and "ab" would collide there
    if len({name.replace("-", "").lower() for name in names}) != len(names):
        _fail(f"variant names must be unique (ignoring case and hyphens), got {names}")
    if sum(variant.weight for variant in variants) <= 0:
        _fail("variant weights must not all be 0")
