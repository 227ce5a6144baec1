"""``ferry serve``: one model, one production HTTP server."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from ferry.config import ModelSpec, ServerSettings, parse_labels
from ferry.errors import ConfigError

__all__ = ["build_settings", "parse_size", "serve"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3}


def parse_size(text: str) -> int:
    """``6MB`` -> 6000000, ``16MiB`` -> 16777216, ``1024`` -> 1024."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"--max-body-size {text!r} is not a size (expected e.g. 6MB, 16MiB)")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    factor = 1024 ** "kmg".index(unit[0]) * 1024 if "i" in unit else _UNITS[unit[:1]]
    return int(number * factor)


def _sagemaker_defaults(env: Mapping[str, str], model: str | None) -> dict[str, Any]:
    """The SageMaker container contract: /opt/ml/model, 0.0.0.0:8080, SAGEMAKER_* vars."""
    values: dict[str, Any] = {}
    if model is None:
        values["model"] = str(Path(env.get("SAGEMAKER_BASE_DIR", "/opt/ml")) / "model")
        values["host"] = "0.0.0.0"
        values["port"] = 8080
    if "SAGEMAKER_BIND_TO_PORT" in env:
        values["port"] = int(env["SAGEMAKER_BIND_TO_PORT"])
    if "SAGEMAKER_MODEL_SERVER_WORKERS" in env:
        values["workers"] = int(env["SAGEMAKER_MODEL_SERVER_WORKERS"])
    timeout = env.get("SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS") or env.get(
        "SAGEMAKER_MODEL_SERVER_TIMEOUT"
    )
    if timeout:
        values["timeout_s"] = float(timeout)
    if "SAGEMAKER_MAX_PAYLOAD_IN_MB" in env:
        values["max_body_bytes"] = int(float(env["SAGEMAKER_MAX_PAYLOAD_IN_MB"]) * 1024 * 1024)
    level = env.get("SAGEMAKER_CONTAINER_LOG_LEVEL")
    if level:
        names = {"10": "debug", "20": "info", "30": "warning", "40": "error"}
        values["log_level"] = names.get(level, level.lower())
    return values


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, Any]:
    import yaml

    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r} is not KEY=VALUE")
        result[key] = yaml.safe_load(value) if value else ""
    return result


def build_settings(
    options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> ServerSettings:
    """Merge defaults, SAGEMAKER_* env and flags (flags win) into validated settings."""
    env = os.environ if env is None else env
    merged = _sagemaker_defaults(env, options.get("model"))
    flags = {k: v for k, v in options.items() if v is not None}
    project = _project(options)
    if project is not None:  # the API's own settings, under the flags
        spec, overrides, _ = project
        merged.update(overrides)
        merged.update(spec.model_dump(exclude_defaults=True, exclude={"uri"}))
        merged["model"] = spec.uri
        del flags["model"]
        if "config" in flags:
            flags["config"] = {**spec.config, **flags["config"]}
    merged.update(flags)
    model_keys = {
        "framework", "name", "sha256", "predict_proba", "labels", "feature_names", "config",
        "python_path", "predictor_batching",
    }  # fmt: skip
    model_fields = {k: merged.pop(k) for k in list(merged) if k in model_keys}
    try:
        spec = ModelSpec(uri=merged.pop("model"), **model_fields)
        return ServerSettings(model=spec, **merged)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"invalid {where.replace('_', '-')}: {first['msg']}") from None


def _project(
    options: Mapping[str, Any],
) -> tuple[ModelSpec, dict[str, Any], dict[str, str]] | None:
    from ferry.apispec import serve_project

    model = options.get("model")
    return serve_project(Path(model), options.get("name")) if model else None


@click.command(context_settings={"show_default": True})
@click.argument("model", required=False)
@click.option(
    "--framework",
    type=click.Choice(
        ["auto", "pickle", "sklearn", "xgboost", "lightgbm", "onnx", "torchscript", "python"]
    ),
    default=None,
    help="Override framework detection.  [default: auto]",
)
@click.option("--name", help="Model name in URLs and metrics (default: the file's stem).")
@click.option("--sha256", help="Expected checksum of a downloaded model file.")
@click.option("--predict-proba", is_flag=True, default=None, help="Return class probabilities.")
@click.option("--labels", help="Map class indexes to names: '0=wiener dog,1=german shepherd'.")
@click.option("--feature-names", help="Comma-separated feature names, in the model's order.")
@click.option("--config", "config_pairs", multiple=True, help="Predictor config KEY=VALUE.")
@click.option("--predictor-batching", is_flag=True, default=None, help="Call predict with lists.")
@click.option("--host", default=None, help="Interface to bind.  [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port to bind (0: any).  [default: 8080]")
@click.option("--workers", type=int, default=None, help="Worker processes (default: one/core).")
@click.option("--model-threads", type=int, default=None, help="Framework threads per worker.")
@click.option("--predictor-threads", type=int, default=None, help="Threads per worker (Python).")
@click.option("--endpoint", default=None, help="Path of the predict route.  [default: /predict]")
@click.option("--batching/--no-batching", default=None, help="Adaptive batching.  [default: on]")
@click.option("--max-batch-size", type=int, default=None, help="Rows per model call. [64]")
@click.option("--max-batch-wait-ms", type=float, default=None, help="Hold batches open. [0]")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Request timeout s. [60]")
@click.option("--max-body-size", default=None, help="Largest request body.  [default: 6MiB]")
@click.option("--max-inflight", type=int, default=None, help="Per worker, then 503. [1024]")
@click.option("--warmup/--no-warmup", default=None, help="Warm-up prediction before ready.")
@click.option("--graceful-timeout", "graceful_timeout_s", type=float, default=None)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", type=click.Choice(["text", "json"]), help="[default: text]")
@click.option("--access-log/--no-access-log", default=None, help="[default: on]")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.option(
    "--compiled-cache/--no-compiled-cache",
    default=None,
    help="Read tree-model pickles without scikit-learn and cache their compiled form. [on]",
)
@click.option("--s3-endpoint-url", default=None, help="S3-compatible endpoint for s3:// URIs.")
def serve(**options: Any) -> None:
    """Serve MODEL over HTTP: /predict, SageMaker /invocations, Open Inference Protocol v2.

    MODEL is a model file (.joblib/.pkl, XGBoost .json/.ubj, LightGBM .txt, .onnx, .pt),
    a directory (SageMaker model dir, a ferry/Cortex project), FILE.py:ClassName, or a
    file://, http(s)://, s3:// URI. Without MODEL, serves /opt/ml/model on 0.0.0.0:8080
    as a SageMaker container does (`docker run IMAGE serve`).
    """
    from ferry.monitoring.logging import configure_logging
    from ferry.serving.server import serve as run_server

    options["config"] = _pairs(options.pop("config_pairs"), "--config") or None
    if options.get("labels") is not None:
        try:
            options["labels"] = parse_labels(options["labels"])
        except ValueError as error:
            raise ConfigError(f"--labels: {error}") from None
    if options.get("feature_names") is not None:
        options["feature_names"] = tuple(n.strip() for n in options["feature_names"].split(","))
    if options.get("max_body_size") is not None:
        options["max_body_bytes"] = parse_size(options.pop("max_body_size"))
    options.pop("max_body_size", None)
    settings = build_settings(options)
    project = _project(options)
    if project is not None:
        os.environ.update(project[2])  # predictor.env, as a replica of the API gets it
    configure_logging(settings.log_level, settings.log_format)
    code = run_server(settings)
    raise click.exceptions.Exit(code)
