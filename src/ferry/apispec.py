"""The project file (``ferry.yaml``), accepting Cortex v0.31 realtime ``cortex.yaml`` as is.

A project file is a YAML list of APIs: ``RealtimeAPI`` entries (the default kind) and
``TrafficSplitter`` entries. ``load_project`` reads and validates one; every problem it
finds is a ``ConfigError`` whose message is one line naming the file, the line of the
offending key, the field path, what was wrong and what was expected::

    ferry.yaml:12: apis[0].autoscaling.max_replicas: must be >= min_replicas (1), got 0

ferry's own predictor fields (``model_path``, ``class_name``, ``framework``,
``predict_proba``, ``labels``, ``feature_names``) sit beside Cortex's; Cortex fields that
only mattered on a cloud cluster (``image``, ``dependencies``, ``api_gateway``...) are
accepted and ignored locally.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ferry.config import Framework, ModelSpec, parse_labels
from ferry.errors import ConfigError

__all__ = [
    "PROJECT_FILES",
    "Autoscaling",
    "Compute",
    "Dependencies",
    "ModelSources",
    "Monitoring",
    "NamedModelPath",
    "Networking",
    "Predictor",
    "Project",
    "RealtimeAPI",
    "ServerSideBatching",
    "SplitTarget",
    "TrafficSplitter",
    "UpdateStrategy",
    "load_project",
    "parse_bytes",
    "parse_cpu",
    "parse_duration",
    "project_digest",
    "scaffold",
    "serve_project",
    "to_server_settings",
]

PROJECT_FILES = ("ferry.yaml", "ferry.yml", "cortex.yaml", "cortex.yml")
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENDPOINT = re.compile(r"^/[A-Za-z0-9._~\-/]+$")
_PERCENT = re.compile(r"^\d+%$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_QUANTITY = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([A-Za-z]*)$")
_MULTIPLIER = {
    "": 1.0, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50,
}  # fmt: skip
_UNSUPPORTED_KINDS = ("BatchAPI", "TaskAPI", "AsyncAPI")


# --- value types: durations and Kubernetes quantities ---------------------------------------


def parse_duration(value: object) -> float:
    """Seconds in a Go-style duration (``"60s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``) or number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a duration such as 60s, 5m or 1h30m, got {_show(value)}")
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d*)?", text):
            return float(text)
        if not _DURATION.fullmatch(text):
            raise ValueError(f"expected a duration such as 60s, 5m or 1h30m, got {value!r}")
        return sum(float(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"expected a duration >= 0, got {value}")
    return float(value)


def _quantity(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {what}, got {_show(value)}")
    if isinstance(value, str):
        match = _QUANTITY.match(value.strip())
        if match is None or match[2] not in _MULTIPLIER:
            raise ValueError(f"expected {what}, got {value!r}")
        return float(match[1]) * _MULTIPLIER[match[2]]
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"expected {what}, got {value}")
    return float(value)


def parse_cpu(value: object) -> float:
    """CPU cores in a Kubernetes quantity: ``"200m"`` is 0.2, ``1`` and ``"1"`` are 1.0."""
    return _quantity(value, "a CPU quantity such as 200m, 1 or 2.5")


def parse_bytes(value: object) -> int:
    """Bytes in a Kubernetes quantity: ``"512Mi"``, ``"1Gi"``, ``"1G"`` or a plain integer."""
    what = "a memory size such as 512Mi, 1Gi or 1G"
    if isinstance(value, str) and value.strip().endswith("m"):
        raise ValueError(f"expected {what}, got {value!r} (m means milli)")
    return round(_quantity(value, what))


Duration = Annotated[float, BeforeValidator(parse_duration)]
Cpu = Annotated[float, BeforeValidator(parse_cpu)]
Bytes = Annotated[int, BeforeValidator(parse_bytes)]


def _labels(value: object) -> object:
    return parse_labels(value) if isinstance(value, str) else value


# --- models -----------------------------------------------------------------------------


class _FieldError(ValueError):
    """A cross-field problem that belongs to one field, so its line can be found."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        # Checked here rather than by extra="forbid" so the message can suggest a field.
        if isinstance(data, dict):
            for key in data:
                if str(key) not in cls.model_fields:
                    raise _FieldError(str(key), _unknown(str(key), list(cls.model_fields)))
        return data


def _unknown(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"unknown field {key!r}; did you mean {close[0]!r}?"
    return f"unknown field {key!r}; expected one of {', '.join(valid)}"


class Dependencies(_Spec):
    """Cortex's install hooks; accepted, ferry uses the active environment."""

    pip: str = "requirements.txt"
    conda: str = "conda-packages.txt"
    shell: str = "dependencies.sh"


class ServerSideBatching(_Spec):
    """Group concurrent requests into one ``predict`` call of lists."""

    max_batch_size: int = Field(ge=1)
    batch_interval: Duration = Field(gt=0)


class NamedModelPath(_Spec):
    name: str
    path: str
    signature_key: str | None = None


class ModelSources(_Spec):
    """Cortex's ``models`` / ``multi_model_reloading``: exactly one of path, paths, dir."""

    path: str | None = None
    paths: tuple[NamedModelPath, ...] | None = None
    dir: str | None = None
    signature_key: str | None = None
    cache_size: int | None = Field(default=None, ge=1)
    disk_cache_size: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSources:
        given = [name for name in ("path", "paths", "dir") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of path, paths or dir, got {len(given)}")
        return self


class Predictor(_Spec):
    """How a replica serves requests: a predictor class (``path``) or a model file."""

    type: Literal["python", "onnx", "tensorflow"] = "python"
    path: str | None = None
    model_path: str | None = None
    class_name: str | None = None
    models: ModelSources | None = None
    multi_model_reloading: ModelSources | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    python_path: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    tensorflow_serving_image: str | None = None
    dependencies: Dependencies = Field(default_factory=Dependencies)
    server_side_batching: ServerSideBatching | None = None
    processes_per_replica: int = Field(default=1, ge=1, le=256)
    threads_per_process: int = Field(default=1, ge=1, le=256)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shm_size: Bytes | None = None
    framework: Framework = "auto"
    predict_proba: bool = False
    labels: Annotated[dict[int, str], BeforeValidator(_labels)] = Field(default_factory=dict)
    feature_names: tuple[str, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_mappings(cls, data: Any) -> Any:
        # ``config:`` or ``env:`` with nothing under it is an empty mapping, as in Cortex
        if isinstance(data, dict):
            empty = ("config", "env", "dependencies")
            return {k: v for k, v in data.items() if not (k in empty and v is None)}
        return data

    @model_validator(mode="after")
    def _has_something_to_serve(self) -> Predictor:
        if self.type == "python" and not (self.path or self.model_path):
            raise _FieldError(
                "path", "a python predictor needs path (a .py file) or model_path (a model file)"
            )
        if self.type == "onnx" and not (self.model_path or self.models):
            raise _FieldError("model_path", "an onnx predictor needs model_path or models.path")
        if self.class_name and not self.path:
            raise _FieldError("class_name", "class_name needs path (the .py file defining it)")
        return self


class Compute(_Spec):
    """Resources requested per replica; ferry records them, Kubernetes-style."""

    cpu: Cpu = 0.2
    gpu: int = Field(default=0, ge=0)
    inf: int = Field(default=0, ge=0)
    mem: Bytes | None = None


class Autoscaling(_Spec):
    """Cortex's request-based autoscaler settings (see ``ferry.control.autoscaler``)."""

    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=100, ge=1)
    init_replicas: int = Field(default=1, ge=1, description="default: min_replicas")
    max_replica_concurrency: int = Field(default=1024, ge=1)
    target_replica_concurrency: float = Field(
        default=1.0, gt=0, description="default: processes_per_replica * threads_per_process"
    )
    window: Duration = 60.0
    downscale_stabilization_period: Duration = 300.0
    upscale_stabilization_period: Duration = 60.0
    max_downscale_factor: float = Field(default=0.75, ge=0, lt=1)
    max_upscale_factor: float = Field(default=1.5, gt=1)
    downscale_tolerance: float = Field(default=0.05, ge=0, lt=1)
    upscale_tolerance: float = Field(default=0.05, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _init_defaults_to_min(cls, data: Any) -> Any:
        if isinstance(data, dict) and "init_replicas" not in data:
            minimum = data.get("min_replicas", 1)
            if isinstance(minimum, int) and not isinstance(minimum, bool):
                return {**data, "init_replicas": minimum}
        return data

    @field_validator("window")
    @classmethod
    def _whole_ticks(cls, value: float) -> float:
        # load is sampled every 10 s, so a window is a whole number of samples
        if value <= 0 or round(value * 1000) % 10_000:
            raise ValueError(f"must be a positive multiple of 10s, got {value:g}s")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise _FieldError(
                "max_replicas",
                f"must be >= min_replicas ({self.min_replicas}), got {self.max_replicas}",
            )
        if not self.min_replicas <= self.init_replicas <= self.max_replicas:
            raise _FieldError(
                "init_replicas",
                f"must be between min_replicas ({self.min_replicas}) and max_replicas "
                f"({self.max_replicas}), got {self.init_replicas}",
            )
        if self.target_replica_concurrency > self.max_replica_concurrency:
            raise _FieldError(
                "target_replica_concurrency",
                f"must be <= max_replica_concurrency ({self.max_replica_concurrency}), "
                f"got {self.target_replica_concurrency:g}",
            )
        return self


class UpdateStrategy(_Spec):
    """Rolling update bounds: an absolute count or a percent of the desired replicas."""

    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"

    @field_validator("max_surge", "max_unavailable", mode="before")
    @classmethod
    def _count_or_percent(cls, value: Any) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        if isinstance(value, str) and _PERCENT.match(value.strip()):
            return value.strip()
        raise ValueError(f"expected a count >= 0 or a percent such as 25%, got {_show(value)}")

    @model_validator(mode="after")
    def _can_progress(self) -> UpdateStrategy:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise _FieldError("max_unavailable", "max_surge and max_unavailable cannot both be 0")
        if isinstance(self.max_unavailable, str) and int(self.max_unavailable[:-1]) > 100:
            raise _FieldError(
                "max_unavailable", f"must be at most 100%, got {self.max_unavailable}"
            )
        return self


class Monitoring(_Spec):
    """Cortex v0.15-v0.24's prediction monitoring; accepted, ferry has its own metrics."""

    model_type: Literal["classification", "regression"] | None = None
    key: str | None = None


class Networking(_Spec):
    """Where the gateway serves the API; ``endpoint`` defaults to ``/<name>``."""

    endpoint: str | None = None
    api_gateway: Literal["public", "none"] = "public"
    local_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("endpoint")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = "/" + value.strip().strip("/")
        if not _ENDPOINT.match(path):
            raise ValueError(f"expected a URL path such as /iris, got {value!r}")
        return path


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"expected lowercase letters, digits and '-', starting with a letter "
            f"(at most 63), got {value!r}"
        )
    return value


Name = Annotated[str, AfterValidator(_name)]


class RealtimeAPI(_Spec):
    """One model service: replicas of a predictor behind an endpoint."""

    name: Name
    kind: Literal["RealtimeAPI"] = "RealtimeAPI"
    predictor: Predictor
    compute: Compute = Field(default_factory=Compute)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    update_strategy: UpdateStrategy = Field(default_factory=UpdateStrategy)
    networking: Networking = Field(default_factory=Networking)
    monitoring: Monitoring | None = None
    project_files: str | None = Field(
        default=None,
        description="set by load_project: a digest of the project's files, so that a deploy "
        "after predictor.py, .env or a model changed is a new revision, as in Cortex",
    )

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # an empty section (``compute:``) means "all defaults", as in Cortex
        data = {key: value for key, value in data.items() if value is not None}
        predictor, scaling = data.get("predictor"), data.get("autoscaling", {})
        if (
            isinstance(predictor, dict)
            and isinstance(scaling, dict)
            and "target_replica_concurrency" not in scaling
        ):
            target = _concurrency(predictor)
            if target is not None:
                data["autoscaling"] = {**scaling, "target_replica_concurrency": target}
        return data

    @property
    def endpoint(self) -> str:
        """The gateway path: ``networking.endpoint`` or ``/<name>``."""
        return self.networking.endpoint or f"/{self.name}"


def _concurrency(predictor: dict[Any, Any]) -> int | None:
    processes = predictor.get("processes_per_replica", 1)
    threads = predictor.get("threads_per_process", 1)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (processes, threads)):
        return int(processes) * int(threads)
    return None


class SplitTarget(_Spec):
    """One API behind a splitter. A non-shadow API answers ``weight`` % of the requests; a
    shadow gets a fire-and-forget copy of ``weight`` % of them (0 to 100), as in Cortex."""

    name: str
    weight: int = Field(ge=0, le=100)
    shadow: bool = False


class TrafficSplitter(_Spec):
    """One endpoint that spreads requests over RealtimeAPIs by weight."""

    name: Name
    kind: Literal["TrafficSplitter"]
    networking: Networking = Field(default_factory=Networking)
    apis: tuple[SplitTarget, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights(self) -> TrafficSplitter:
        names = [target.name for target in self.apis]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise _FieldError("apis", f"each API may appear once, {twice[0]!r} appears twice")
        if sum(target.shadow for target in self.apis) > 1:
            raise _FieldError("apis", "at most one API may be a shadow")
        total = sum(target.weight for target in self.apis if not target.shadow)
        if total != 100:
            raise _FieldError(
                "apis", f"weights of the non-shadow APIs must sum to 100, got {total}"
            )
        return self

    @property
    def shadow(self) -> SplitTarget | None:
        """The shadow API, if any: it gets a copy of ``weight`` % of the requests."""
        return next((target for target in self.apis if target.shadow), None)

    @property
    def endpoint(self) -> str:
        """The gateway path: ``networking.endpoint`` or ``/<name>``."""
        return self.networking.endpoint or f"/{self.name}"


class Project(BaseModel):
    """A loaded project file: its APIs and splitters, and where relative paths start."""

    model_config = ConfigDict(frozen=True)

    apis: tuple[RealtimeAPI, ...]
    splitters: tuple[TrafficSplitter, ...] = ()
    root: Path
    path: Path

    def get(self, name: str) -> RealtimeAPI | TrafficSplitter:
        """The API or splitter called ``name``; KeyError if there is none."""
        entries: tuple[RealtimeAPI | TrafficSplitter, ...] = (*self.apis, *self.splitters)
        for entry in entries:
            if entry.name == name:
                return entry
        raise KeyError(name)


# --- loading ----------------------------------------------------------------------------


def load_project(
    path: Path, *, check_splitter_targets: bool = True, digest: bool = True
) -> Project:
    """Read and validate a project file, or the ferry.yaml / cortex.yaml in a directory.

    Checks beyond each entry: unique names and endpoints, ``predictor.path`` files exist
    under the project root, and (unless ``check_splitter_targets`` is False, for a deploy
    that may point a splitter at APIs already running) splitter targets name RealtimeAPIs
    of the same file. Raises ``ConfigError`` with a one-line, located message. With
    ``digest``, each RealtimeAPI's ``project_files`` is the digest of the project's files.
    """
    file = _project_file(path)
    source = _Source(file)
    entries = [source.validate(index, item) for index, item in enumerate(source.items)]
    apis = tuple(e for e in entries if isinstance(e, RealtimeAPI))
    splitters = tuple(e for e in entries if isinstance(e, TrafficSplitter))
    root = file.parent.resolve()
    _check_unique(source, entries)
    for index, entry in enumerate(entries):
        if isinstance(entry, RealtimeAPI):
            _check_files(source, index, entry, root)
        elif check_splitter_targets:
            _check_targets(source, index, entry, [api.name for api in apis])
    if digest:  # for a deploy: a revision changes with the project's files
        files = project_digest(root)
        apis = tuple(api.model_copy(update={"project_files": files}) for api in apis)
    return Project(apis=apis, splitters=splitters, root=root, path=file.resolve())


_NOT_PROJECT_FILES = frozenset({"__pycache__", "node_modules", "venv", "build"})
_HASHED_UP_TO = 1 << 20  # smaller files by content; larger ones (models) by size and mtime


def project_digest(root: Path) -> str:
    """A digest of the project's files: their content up to 1 MiB, else size and mtime.

    Hidden folders, ``__pycache__``, virtual environments and ``build/`` (``ferry build``'s
    output) are left out; ``.env`` is in. A large model costs a stat, not a read.
    """
    digest = hashlib.sha256()
    for folder, folders, files in os.walk(root):
        folders[:] = sorted(
            name for name in folders if not name.startswith(".") and name not in _NOT_PROJECT_FILES
        )
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")) or (name.startswith(".") and name != ".env"):
                continue
            path = Path(folder, name)
            try:
                stat = path.stat()
            except OSError:
                continue  # a file removed while walking, or a dangling link
            where = path.relative_to(root).as_posix()
            if stat.st_size <= _HASHED_UP_TO:
                try:
                    content = hashlib.sha256(path.read_bytes()).hexdigest()
                except OSError:
                    continue
                digest.update(f"{where}\0{content}\n".encode())
            else:
                digest.update(f"{where}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _project_file(path: Path) -> Path:
    if path.is_dir():
        for name in PROJECT_FILES:
            if (path / name).is_file():
                return path / name
        raise ConfigError(
            f"{path}: no project file (looked for {', '.join(PROJECT_FILES)}); "
            "`ferry init` creates one"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or directory")
    return path


class _Source:
    """A parsed project file that can say on which line a field path is written."""

    def __init__(self, file: Path) -> None:
        self.name = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{self.name}: cannot read it: {error}") from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1"
            problem = error.problem or error.context or "invalid YAML"
            raise ConfigError(f"{self.name}:{where}: YAML syntax error: {problem}") from None
        if node is None or data is None:
            raise ConfigError(f"{self.name}: the file is empty; expected a list of APIs")
        self.root: yaml.Node = node
        if not isinstance(data, list):
            hint = "; start each API with '- name: ...'" if isinstance(data, dict) else ""
            raise ConfigError(f"{self.name}:1: expected a list of APIs, got {_show(data)}{hint}")
        self.items: list[Any] = data
        _check_duplicate_keys(self, node)

    def error(self, loc: Sequence[int | str], message: str, more: int = 0) -> ConfigError:
        extra = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        return ConfigError(f"{self.name}:{self.line(loc)}: {_dotted(loc)}: {message}{extra}")

    def line(self, loc: Sequence[int | str]) -> int:
        node, line = self.root, self.root.start_mark.line
        for part in loc:
            found = _child(node, part)
            if found is None:
                break
            line, node = found
        return line + 1

    def validate(self, index: int, item: Any) -> RealtimeAPI | TrafficSplitter:
        model = _kind_model(self, index, item)
        try:
            return model.model_validate(item)
        except ValidationError as error:
            found = list(_problems(error))
            # a problem inside a section explains the section's own (pydantic reports both)
            found = [(loc, msg) for loc, msg in found if not _encloses(loc, found)]
            problems = sorted(
                ((self.line((index, *loc)), (index, *loc), msg) for loc, msg in found),
                key=lambda problem: problem[0],
            )
            _, loc, message = problems[0]
            raise self.error(loc, message, more=len(problems) - 1) from None


def _kind_model(source: _Source, index: int, item: Any) -> type[RealtimeAPI | TrafficSplitter]:
    kind = item.get("kind") if isinstance(item, dict) else None
    if kind == "TrafficSplitter":
        return TrafficSplitter
    if kind in _UNSUPPORTED_KINDS:
        raise source.error(
            (index, "kind"),
            f"kind {kind} is not supported; expected RealtimeAPI or TrafficSplitter",
        )
    if kind is not None and kind != "RealtimeAPI":
        kinds = ["RealtimeAPI", "TrafficSplitter"]
        close = difflib.get_close_matches(str(kind), kinds, n=1, cutoff=0.6)
        close += [k for k in kinds if str(kind).lower() == k.lower()]
        hint = f"; did you mean {close[-1]!r}?" if close else ""
        raise source.error(
            (index, "kind"), f"expected RealtimeAPI or TrafficSplitter, got {_show(kind)}{hint}"
        )
    return RealtimeAPI


def _child(node: yaml.Node, part: int | str) -> tuple[int, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key.start_mark.line, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item = node.value[part]
        return item.start_mark.line, item
    return None


def _check_duplicate_keys(source: _Source, root: yaml.Node) -> None:
    # PyYAML keeps the last of two equal keys silently; a typo'd copy would win unseen
    for node in _walk(root):
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in seen:
                    raise ConfigError(
                        f"{source.name}:{key.start_mark.line + 1}: duplicate key {key.value!r}"
                    )
                seen.add(key.value)


def _walk(node: yaml.Node) -> Iterator[yaml.MappingNode]:
    if isinstance(node, yaml.MappingNode):
        yield node
        for _, value in node.value:
            yield from _walk(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _walk(item)


def _problems(error: ValidationError) -> Iterator[tuple[tuple[int | str, ...], str]]:
    for detail in error.errors():
        loc = tuple(detail["loc"])
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, _FieldError):
            loc = (*loc, cause.field)
        yield loc, _message(detail)


def _encloses(loc: tuple[int | str, ...], found: Sequence[tuple[tuple[Any, ...], str]]) -> bool:
    return any(len(other) > len(loc) and other[: len(loc)] == loc for other, _ in found)


def _message(detail: Any) -> str:
    kind, ctx, given = detail["type"], detail.get("ctx", {}), detail.get("input")
    got = f", got {_show(given)}"
    simple = {
        "missing": "required field is missing",
        "int_type": "expected an integer" + got,
        "int_parsing": "expected an integer" + got,
        "int_from_float": "expected an integer" + got,
        "float_type": "expected a number" + got,
        "float_parsing": "expected a number" + got,
        "bool_type": "expected true or false" + got,
        "bool_parsing": "expected true or false" + got,
        "string_type": "expected a string" + got,
        "dict_type": "expected a mapping" + got,
        "model_type": "expected a mapping of fields" + got,
        "tuple_type": "expected a list" + got,
        "too_short": "expected at least one entry",
    }
    if kind in simple:
        return simple[kind]
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<"}
    if kind in bounds:
        return f"must be {bounds[kind]} {_number(next(iter(ctx.values())))}{got}"
    if kind == "less_than_equal":
        return f"must be <= {_number(ctx['le'])}{got}"
    if kind == "literal_error":
        return f"expected {ctx['expected']}{got}"
    if kind == "value_error":
        return str(ctx["error"])
    return str(detail["msg"])


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _dotted(loc: Sequence[int | str]) -> str:
    text = "apis"
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _check_unique(source: _Source, entries: Sequence[RealtimeAPI | TrafficSplitter]) -> None:
    names: dict[str, int] = {}
    endpoints: dict[str, str] = {}
    for index, entry in enumerate(entries):
        if entry.name in names:
            raise source.error(
                (index, "name"), f"{entry.name!r} is already the name of apis[{names[entry.name]}]"
            )
        names[entry.name] = index
        if entry.endpoint in endpoints:
            raise source.error(
                (index, "networking", "endpoint"),
                f"endpoint {entry.endpoint} is already used by {endpoints[entry.endpoint]!r}",
            )
        endpoints[entry.endpoint] = entry.name


def _check_files(source: _Source, index: int, api: RealtimeAPI, root: Path) -> None:
    path = api.predictor.path
    if path is not None and not (root / path).is_file():
        raise source.error(
            (index, "predictor", "path"), f"file {path!r} not found under the project root {root}"
        )


def _check_targets(source: _Source, index: int, splitter: TrafficSplitter, apis: list[str]) -> None:
    for position, target in enumerate(splitter.apis):
        if target.name not in apis:
            close = difflib.get_close_matches(target.name, apis, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise source.error(
                (index, "apis", position, "name"),
                f"no RealtimeAPI named {target.name!r} in this file{hint}",
            )


# --- mapping to server settings ---------------------------------------------------------


def to_server_settings(api: RealtimeAPI, project_root: Path) -> tuple[ModelSpec, dict[str, Any]]:
    """The ``ModelSpec`` one replica of ``api`` serves and its ``ServerSettings`` overrides.

    ``ServerSettings(model=spec, **overrides)`` is a replica's configuration; ``api.predictor.env``
    is for the process environment and is not part of it. Raises ``ConfigError`` for what
    ferry cannot serve (TensorFlow, Cortex ONNXPredictor classes, multi-model reloading).
    """
    predictor = api.predictor
    _check_servable(api)
    root = project_root.resolve()
    batching = predictor.server_side_batching
    spec = ModelSpec(
        uri=_model_uri(predictor, root),
        framework=_framework(predictor),
        name=api.name,
        predict_proba=predictor.predict_proba,
        labels=predictor.labels,
        feature_names=predictor.feature_names,
        config=predictor.config,
        python_path=str(root / predictor.python_path) if predictor.python_path else str(root),
        predictor_batching=batching is not None and predictor.path is not None,
    )
    workers = predictor.processes_per_replica
    overrides: dict[str, Any] = {
        "workers": workers,
        "predictor_threads": predictor.threads_per_process,
        "log_level": predictor.log_level,
        # Cortex's limit is per replica; ferry's max_inflight is per worker process
        "max_inflight": max(1, math.ceil(api.autoscaling.max_replica_concurrency / workers)),
    }
    if batching is not None:
        overrides["batching"] = True
        overrides["max_batch_size"] = batching.max_batch_size
        overrides["max_batch_wait_ms"] = batching.batch_interval * 1000
    return spec, overrides


def serve_project(
    path: Path, name: str | None = None
) -> tuple[ModelSpec, dict[str, Any], dict[str, str]] | None:
    """What ``ferry serve PATH`` runs when PATH is a project file (``.yaml``/``.yml``) or a
    directory holding one, else None.

    The API called ``name`` (default: the first RealtimeAPI), validated as ``ferry deploy``
    validates it: its ``ModelSpec``, its ``ServerSettings`` overrides (the settings of one
    replica: ``processes_per_replica``, ``threads_per_process``, batching, ``log_level``) and
    its ``predictor.env``.
    """
    is_file = path.is_file() and path.suffix in (".yaml", ".yml")
    if not is_file and not (path.is_dir() and any((path / f).is_file() for f in PROJECT_FILES)):
        return None
    project = load_project(path, check_splitter_targets=False, digest=False)
    if not project.apis:
        raise ConfigError(f"{project.path}: no API of kind RealtimeAPI to serve")
    api = project.apis[0]
    if name is not None:
        found = next((a for a in project.apis if a.name == name), None)
        if found is None:
            names = ", ".join(a.name for a in project.apis)
            raise ConfigError(f"{project.path}: no RealtimeAPI named {name!r} (found: {names})")
        api = found
    spec, overrides = to_server_settings(api, project.root)
    return spec, overrides, dict(api.predictor.env)


def _check_servable(api: RealtimeAPI) -> None:
    predictor, where = api.predictor, f"api {api.name!r}"
    if predictor.type == "tensorflow":
        raise ConfigError(
            f"{where}: tensorflow predictors are not supported; export the model to ONNX "
            "and use type: onnx with model_path"
        )
    if predictor.path:
        return  # the class gets its models through onnx_client / python_client
    if predictor.multi_model_reloading is not None:
        raise ConfigError(
            f"{where}: multi_model_reloading needs a PythonPredictor (path) with load_model"
        )
    if predictor.models is not None and predictor.models.path is None:
        raise ConfigError(
            f"{where}: models.paths and models.dir need an ONNXPredictor class (path); "
            "without one, use models.path"
        )


def _model_uri(predictor: Predictor, root: Path) -> str:
    if predictor.path is not None:
        default = "ONNXPredictor" if predictor.type == "onnx" else "PythonPredictor"
        return f"{root / predictor.path}:{predictor.class_name or default}"
    uri = predictor.model_path or (predictor.models.path if predictor.models else None)
    assert uri is not None  # the Predictor validator guarantees a model to serve
    return uri if _URI_SCHEME.match(uri) else str(root / Path(uri).expanduser())


def _framework(predictor: Predictor) -> Framework:
    if predictor.path is not None:
        return "python"
    if predictor.type == "onnx" and predictor.framework == "auto":
        return "onnx"
    return predictor.framework


# --- ferry init -------------------------------------------------------------------------

_FERRY_YAML = """\
# ferry.yaml: Cortex-style API configuration. `ferry deploy` serves every API listed here.
- name: {name}
  kind: RealtimeAPI
  predictor:
    type: python
    path: predictor.py
    config:
      model_path: model.joblib  # relative to this folder
  compute:
    cpu: 1
  autoscaling:
    min_replicas: 1
    max_replicas: 4
"""

_PREDICTOR_PY = '''\
"""The {name} API: loads a joblib-saved model and predicts on JSON rows."""

from pathlib import Path

import joblib


class PythonPredictor:
    def __init__(self, config):
        path = Path(__file__).parent / config["model_path"]
        if not path.exists():
            raise FileNotFoundError(
                f"{{path}} not found: save a model there with joblib.dump(model, path) "
                "or set config.model_path in ferry.yaml"
            )
        self.model = joblib.load(path)

    def predict(self, payload):
        # accepts [[...], [...]] or {{"instances": [[...], [...]]}}
        rows = payload["instances"] if isinstance(payload, dict) else payload
        return self.model.predict(rows).tolist()
'''

_REQUIREMENTS = "joblib\nscikit-learn\n"
_FERRYIGNORE = "# files ferry leaves out of the project it ships (gitignore syntax)\n.git/\n.venv/\n__pycache__/\n*.pyc\n"  # noqa: E501


def scaffold(directory: Path, name: str) -> list[Path]:
    """Write a starter project for ``ferry init``; never overwrites a file (ConfigError)."""
    try:
        _name(name)
    except ValueError as error:
        raise ConfigError(f"API name: {error}") from None
    files = {
        "ferry.yaml": _FERRY_YAML.format(name=name),
        "predictor.py": _PREDICTOR_PY.format(name=name),
        "requirements.txt": _REQUIREMENTS,
        ".ferryignore": _FERRYIGNORE,
    }
    existing = [directory / file for file in files if (directory / file).exists()]
    if existing:
        raise ConfigError(
            f"{existing[0]} already exists; ferry init never overwrites files "
            "(remove it or choose another directory)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file, text in files.items():
        (directory / file).write_text(text, encoding="utf-8")
        written.append(directory / file)
    return written
