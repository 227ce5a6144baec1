"""Turn a ``ReplicaSpec`` into the ``ferry serve`` command line and environment.

Settings are validated here, once, with ``ServerSettings`` so a bad spec fails at
``start_replica`` rather than as a crashing process. The replica always serves its
predict route at ``/predict`` (the gateway maps ``/<endpoint>`` onto it) and runs one
worker unless the spec says otherwise (Cortex's ``processes_per_replica`` default).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ferry.config import ModelSpec, ServerSettings
from ferry.runtime.base import ReplicaSpec

__all__ = [
    "MARKER",
    "graceful_timeout",
    "serve_argv",
    "serve_env",
    "settings_of",
    "spec_from_json",
    "spec_to_json",
]

MARKER = "FERRY_REPLICA_ID"  # in every replica's environment: proves a pid is ours
_IGNORED = {"host", "port", "endpoint", "model"}


def _flag(name: str) -> Callable[[Any], list[str]]:
    return lambda value: [name, str(value)]


def _switch(on: str, off: str) -> Callable[[Any], list[str]]:
    return lambda value: [on if value else off]


_SERVER_FLAGS: dict[str, Callable[[Any], list[str]]] = {
    "workers": _flag("--workers"),
    "model_threads": _flag("--model-threads"),
    "predictor_threads": _flag("--predictor-threads"),
    "batching": _switch("--batching", "--no-batching"),
    "max_batch_size": _flag("--max-batch-size"),
    "max_batch_wait_ms": _flag("--max-batch-wait-ms"),
    "timeout_s": _flag("--timeout"),
    "max_body_bytes": _flag("--max-body-size"),
    "max_inflight": _flag("--max-inflight"),
    "warmup": _switch("--warmup", "--no-warmup"),
    "graceful_timeout_s": _flag("--graceful-timeout"),
    "log_level": _flag("--log-level"),
    "log_format": _flag("--log-format"),
    "access_log": _switch("--access-log", "--no-access-log"),
    "cache_dir": _flag("--cache-dir"),
    "compiled_cache": _switch("--compiled-cache", "--no-compiled-cache"),
    "s3_endpoint_url": _flag("--s3-endpoint-url"),
}


def settings_of(spec: ReplicaSpec) -> ServerSettings:
    """The validated settings of ``spec`` (raises ValueError naming the bad field)."""
    unknown = set(spec.server) - set(ServerSettings.model_fields)
    if unknown:
        raise ValueError(f"replica {spec.replica_id}: unknown server settings {sorted(unknown)}")
    values = {k: v for k, v in spec.server.items() if k not in _IGNORED}
    return ServerSettings(model=spec.model, **values)


def _model_flags(model: ModelSpec) -> list[str]:
    flags = [model.uri]
    if model.framework != "auto":
        flags += ["--framework", model.framework]
    if model.name:
        flags += ["--name", model.name]
    if model.sha256:
        flags += ["--sha256", model.sha256]
    if model.predict_proba:
        flags.append("--predict-proba")
    if model.labels:
        flags += ["--labels", ",".join(f"{k}={v}" for k, v in sorted(model.labels.items()))]
    if model.feature_names:
        flags += ["--feature-names", ",".join(model.feature_names)]
    for key, value in model.config.items():  # JSON is YAML, which --config parses
        flags += ["--config", f"{key}={json.dumps(value)}"]
    if model.predictor_batching:
        flags.append("--predictor-batching")
    return flags


def serve_argv(spec: ReplicaSpec, port: int, executable: str = sys.executable) -> list[str]:
    """``python -m ferry serve MODEL --host 127.0.0.1 --port PORT ...`` for ``spec``."""
    settings_of(spec)
    argv = [executable, "-m", "ferry", "serve", *_model_flags(spec.model)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    server = dict(spec.server)
    server.setdefault("workers", 1)
    for key, value in sorted(server.items()):
        if key in _SERVER_FLAGS and value is not None:
            argv += _SERVER_FLAGS[key](value)
    return argv


def serve_env(spec: ReplicaSpec, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The replica's environment: ours, the spec's, the marker, and its python_path."""
    env = {**(os.environ if base is None else base), **spec.env, MARKER: spec.replica_id}
    if spec.model.python_path:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (spec.model.python_path, env.get("PYTHONPATH", "")) if p
        )
    return env


def graceful_timeout(spec: ReplicaSpec) -> float:
    """How long a drain may take before SIGKILL: the server's own timeout plus 2 s."""
    return float(settings_of(spec).graceful_timeout_s) + 2.0


def spec_to_json(spec: ReplicaSpec) -> dict[str, Any]:
    return {
        "replica_id": spec.replica_id,
        "api": spec.api,
        "revision": spec.revision,
        "model": spec.model.model_dump(mode="json"),
        "server": json.loads(json.dumps(dict(spec.server), default=str)),
        "env": dict(spec.env),
    }


def spec_from_json(data: Mapping[str, Any]) -> ReplicaSpec:
    return ReplicaSpec(
        replica_id=str(data["replica_id"]),
        api=str(data["api"]),
        revision=str(data["revision"]),
        model=ModelSpec.model_validate(data["model"]),
        server=dict(data.get("server", {})),
        env={str(k): str(v) for k, v in data.get("env", {}).items()},
    )
