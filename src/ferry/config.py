"""Typed settings, validated once at the edge (CLI flags, env, ferry.yaml).

Everything past the edge receives these frozen models, never untyped dicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Framework",
    "ModelSpec",
    "ServerSettings",
    "default_cache_dir",
    "parse_labels",
]

Framework = Literal[
    "auto", "pickle", "sklearn", "xgboost", "lightgbm", "onnx", "torchscript", "python"
]

DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker's real-time payload limit (6 MiB)


def default_cache_dir() -> Path:
    """Where fetched model artifacts are kept: ``$XDG_CACHE_HOME/ferry/models``."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ferry" / "models"


def parse_labels(text: str) -> dict[int, str]:
    """Parse ``0=wiener dog,1=german shepherd`` into ``{0: "wiener dog", 1: "german shepherd"}``."""
    labels: dict[int, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip().lstrip("-").isdigit() or not value.strip():
            raise ValueError(
                f"label mapping {part.strip()!r} is not INDEX=LABEL "
                "(expected e.g. '0=wiener dog,1=german shepherd')"
            )
        labels[int(key.strip())] = value.strip()
    return labels


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSpec(_Frozen):
    """What to load and how to present its outputs."""

    uri: str = Field(description="path, file://, http(s)://, s3:// URI, or file.py:ClassName")
    framework: Framework = "auto"
    name: str | None = Field(default=None, description="model name (default: from the file)")
    sha256: str | None = Field(default=None, description="expected checksum of a fetched file")
    predict_proba: bool = False
    labels: dict[int, str] = Field(default_factory=dict)
    feature_names: tuple[str, ...] | None = None
    config: dict[str, Any] = Field(default_factory=dict, description="passed to predictors")
    python_path: str | None = None
    predictor_batching: bool = Field(
        default=False, description="call a predictor with lists (Cortex server_side_batching)"
    )

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower().removeprefix("sha256:")
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("expected a sha256 hex digest of 64 characters")
        return value


class ServerSettings(_Frozen):
    """Everything one ``ferry serve`` process needs."""

    model: ModelSpec
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int | None = Field(default=None, ge=1, le=256, description="default: usable cores")
    model_threads: int | None = Field(
        default=None, ge=1, description="threads the framework may use per worker"
    )
    predictor_threads: int = Field(default=1, ge=1, le=256, description="threads_per_process")
    endpoint: str = "/predict"
    batching: bool = True
    max_batch_size: int = Field(default=64, ge=1, description="rows per model call")
    max_batch_wait_ms: float = Field(default=0.0, ge=0, le=10_000)
    timeout_s: float = Field(default=60.0, gt=0)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    max_inflight: int = Field(default=1024, ge=1, description="per worker, then 503")
    warmup: bool = True
    graceful_timeout_s: float = Field(default=25.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = True
    cache_dir: Path = Field(default_factory=default_cache_dir)
    compiled_cache: bool = True
    s3_endpoint_url: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint_path(cls, value: str) -> str:
        value = "/" + value.strip("/")
        if value == "/":
            raise ValueError("endpoint must be a path such as /predict")
        return value
