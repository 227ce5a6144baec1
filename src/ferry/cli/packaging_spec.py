"""From an API or a model to a ``PackageSpec`` and the model directory to ship: the one place.

``ferry build``, ``ferry export`` and ``ferry deploy --env sagemaker|ecs`` all come here.
The argument names an API (or TrafficSplitter) of a project file, a project directory, or a
model (a file, a directory, ``file.py:Class``, a URI). Everything a renderer needs comes from
``ferry.yaml`` (compute, autoscaling, update_strategy, splitter weights) or, for a bare
model, from flags. The model directory the image serves (``/opt/ml/model``, or the root of
SageMaker's ``model.tar.gz``) holds the model file and, for an API or a model with output
settings, a generated one-API ``ferry.yaml`` that ``ferry serve`` reads: the API's name,
``predict_proba``, ``labels``, ``feature_names``, or a predictor with its code under ``code/``.
A bare model without output settings ships as the file alone.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import gzip
import io
import os
import re
import sys
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferry.apispec import (
    PROJECT_FILES,
    Project,
    RealtimeAPI,
    TrafficSplitter,
    load_project,
    parse_bytes,
    to_server_settings,
)
from ferry.config import ModelSpec
from ferry.errors import ConfigError
from ferry.models import open_source
from ferry.models.base import ModelSource
from ferry.packaging import Autoscaling, Compute, PackageSpec, UpdateStrategy, Variant
from ferry.packaging.spec import PYTHON_IMAGES

__all__ = [
    "OUTPUT_MARKER",
    "PROJECT_FILE",
    "Options",
    "Package",
    "Served",
    "api_package_spec",
    "app_name",
    "model_archive",
    "model_data_url",
    "model_files",
    "model_packager",
    "package",
    "resolve",
    "served_api",
]

ModelFiles = dict[str, "Path | bytes"]

_SKIP_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache"})
# .cortexignore is not read: it leaves out models/, which Cortex fetched from S3 but the
# image must carry
_IGNORE_FILES = (".ferryignore",)
# written into every build/export output, so a second run never copies the first one
OUTPUT_MARKER = ".ferry-build"
# the generated one-API project in a model directory, which `ferry serve DIR` reads
PROJECT_FILE = "ferry.yaml"
# (vCPU, GiB, instance type), smallest first: the first that fits the API's compute
_CPU_INSTANCES = (
    (2, 8, "ml.m5.large"), (4, 16, "ml.m5.xlarge"), (8, 32, "ml.m5.2xlarge"),
    (16, 64, "ml.m5.4xlarge"), (48, 192, "ml.m5.12xlarge"), (96, 384, "ml.m5.24xlarge"),
)  # fmt: skip
_GPU_INSTANCES = (
    (1, 4, 16, "ml.g5.xlarge"), (1, 8, 32, "ml.g5.2xlarge"), (1, 16, 64, "ml.g5.4xlarge"),
    (4, 48, 192, "ml.g5.12xlarge"), (8, 192, 768, "ml.g5.48xlarge"),
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    """Flags of ``build`` / ``export``; None keeps the project's value or the default."""

    name: str | None = None
    image: str | None = None
    model_data_url: str | None = None
    instance_type: str | None = None
    cpu: float | None = None
    memory: str | None = None
    gpu: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    workers: int | None = None
    predict_proba: bool | None = None
    labels: Mapping[int, str] | None = None
    feature_names: tuple[str, ...] | None = None

    def outputs(self) -> dict[str, Any]:
        """The output flags that were given, as ``ModelSpec`` fields (they win, as in serve)."""
        given = {
            "predict_proba": self.predict_proba or None,
            "labels": dict(self.labels) if self.labels else None,
            "feature_names": self.feature_names,
        }
        return {name: value for name, value in given.items() if value is not None}


@dataclass(frozen=True)
class Served:
    """One model the package serves: an API of a project, or a bare model."""

    name: str
    source: ModelSource
    api: RealtimeAPI | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class Package:
    """The spec and, per served model, the files of its model directory."""

    spec: PackageSpec
    served: tuple[Served, ...]
    model_dirs: dict[str, ModelFiles] = field(default_factory=dict)
    splitter: bool = False


# --- what the argument names -----------------------------------------------------------


def resolve(
    target: str, project: Path | None, cache_dir: Path, outputs: Mapping[str, Any] | None = None
) -> tuple[list[Served], bool]:
    """The models ``target`` names and whether it is a TrafficSplitter.

    ``outputs`` (``ModelSpec`` fields: predict_proba, labels, feature_names) override what
    the project says, or set them for a bare model.
    """
    outputs = dict(outputs or {})
    if project is None and Path(target).is_dir() and _has_project_file(Path(target)):
        loaded_dir = load_project(Path(target), check_splitter_targets=False)
        return _only_api(loaded_dir, cache_dir, outputs)
    if project is None and _is_model_reference(target):
        return [_bare_model(target, cache_dir, outputs)], False
    loaded = _load(project)
    if loaded is not None:
        try:
            entry = loaded.get(target)
        except KeyError:
            entry = None
        if entry is not None:
            return _entries(loaded, entry, cache_dir, outputs)
    if _is_model_reference(target):
        return [_bare_model(target, cache_dir, outputs)], False
    if "/" in target or Path(target).suffix:
        raise ConfigError(f"model file {target} does not exist (and it names no API)")
    if loaded is None:
        raise ConfigError(
            f"{target!r} is neither a model file nor an API: no such file, and no ferry.yaml "
            "here (pass --project PATH to name APIs of a project)"
        )
    entries: list[RealtimeAPI | TrafficSplitter] = [*loaded.apis, *loaded.splitters]
    names = ", ".join(entry.name for entry in entries) or "none"
    raise ConfigError(f"no API or model named {target!r} in {loaded.path} (found: {names})")


def _has_project_file(directory: Path) -> bool:
    return any((directory / name).is_file() for name in PROJECT_FILES)


def _is_model_reference(target: str) -> bool:
    file = re.sub(r"\.py:[A-Za-z_]\w*$", ".py", target)
    return "://" in target or Path(file).exists()


def _load(project: Path | None) -> Project | None:
    if project is not None:
        return load_project(project, check_splitter_targets=False)
    here = Path.cwd()
    return load_project(here, check_splitter_targets=False) if _has_project_file(here) else None


def _bare_model(target: str, cache_dir: Path, outputs: Mapping[str, Any]) -> Served:
    source = open_source(ModelSpec(uri=target, **outputs), cache_dir=cache_dir)
    return Served(name=source.name, source=source)


def _only_api(
    project: Project, cache_dir: Path, outputs: Mapping[str, Any]
) -> tuple[list[Served], bool]:
    if len(project.apis) != 1:
        names = ", ".join(api.name for api in project.apis) or "none"
        raise ConfigError(
            f"{project.path} defines {len(project.apis)} APIs ({names}): name one, e.g. "
            f"`ferry build NAME --project {project.root}`"
        )
    return _entries(project, project.apis[0], cache_dir, outputs)


def _entries(
    project: Project,
    entry: RealtimeAPI | TrafficSplitter,
    cache_dir: Path,
    outputs: Mapping[str, Any],
) -> tuple[list[Served], bool]:
    if isinstance(entry, RealtimeAPI):
        return [served_api(project, entry, cache_dir, outputs=outputs)], False
    served = []
    for target in entry.apis:
        if target.shadow:
            continue  # a shadow gets copies of requests, not a share: no variant for it
        api = project.get(target.name)
        if not isinstance(api, RealtimeAPI):
            raise ConfigError(f"splitter {entry.name}: {target.name!r} is not a RealtimeAPI")
        served.append(served_api(project, api, cache_dir, float(target.weight), outputs))
    return served, True


def served_api(
    project: Project,
    api: RealtimeAPI,
    cache_dir: Path,
    weight: float = 1.0,
    outputs: Mapping[str, Any] | None = None,
) -> Served:
    """The model ``api`` serves, fetched and identified (not loaded)."""
    spec, _ = to_server_settings(api, project.root)
    if outputs:
        spec = spec.model_copy(update=dict(outputs))
    source = open_source(spec, cache_dir=cache_dir)
    return Served(name=api.name, source=source, api=api, weight=weight)


# --- the model directory ----------------------------------------------------------------


def model_files(served: Served, exclude: Path | None = None) -> tuple[str, ModelFiles]:
    """(the spec's model_file, {path in the model directory: source file or content}).

    ``exclude`` is a directory never copied (the build output, when it sits inside the
    predictor's code). Paths under ``code/`` go to ``/opt/ml/model/code``.
    """
    source = served.source
    if source.framework != "python":
        files: ModelFiles = {source.path.name: source.path}
        if served.api is None and not _outputs(source.spec):
            return source.path.name, files  # a bare model: the file says everything
        files[PROJECT_FILE] = _model_yaml(served).encode()
        return PROJECT_FILE, files
    root = Path(source.spec.python_path or source.path.parent).resolve()
    try:
        predictor = source.path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise ConfigError(f"{source.path} is outside its python_path {root}") from None
    skip = exclude.resolve() if exclude is not None else None
    files = {f"code/{rel}": path for rel, path in _tree(root, skip)}
    files[PROJECT_FILE] = _predictor_yaml(served, predictor).encode()
    return PROJECT_FILE, files


def _outputs(spec: ModelSpec) -> dict[str, Any]:
    """ferry's output settings, as ferry.yaml spells them (only those that are set)."""
    found: dict[str, Any] = {}
    if spec.predict_proba:
        found["predict_proba"] = True
    if spec.labels:
        found["labels"] = {int(index): label for index, label in spec.labels.items()}
    if spec.feature_names:
        found["feature_names"] = list(spec.feature_names)
    return found


def _model_yaml(served: Served) -> str:
    source = served.source
    entry: dict[str, Any] = {"model_path": source.path.name}
    if source.framework == "onnx":
        entry["type"] = "onnx"
    entry.update(_outputs(source.spec))
    entry.update(_replica_settings(served))
    header = "# Generated by ferry: the API this image serves, its model next to this file.\n"
    return header + _dump(served.name, entry)


def _predictor_yaml(served: Served, predictor: str) -> str:
    source = served.source
    entry: dict[str, Any] = {"type": "python", "path": f"code/{predictor}", "python_path": "code"}
    if source.predictor_class:
        entry["class_name"] = source.predictor_class
    entry["config"] = dict(source.spec.config)
    batching = served.api.predictor.server_side_batching if served.api else None
    if batching is not None:
        entry["server_side_batching"] = {
            "max_batch_size": batching.max_batch_size,
            "batch_interval": f"{batching.batch_interval:g}s",
        }
    entry.update(_outputs(source.spec))
    entry.update(_replica_settings(served))
    header = "# Generated by ferry: the API this image serves, its code in code/.\n"
    return header + _dump(served.name, entry)


def _replica_settings(served: Served) -> dict[str, Any]:
    """The API's per-replica settings that differ from the defaults, as ferry.yaml spells
    them, so ``ferry serve`` in the image runs the API as a local replica would."""
    if served.api is None:
        return {}
    predictor = served.api.predictor
    settings: dict[str, Any] = {}
    if predictor.processes_per_replica != 1:
        settings["processes_per_replica"] = predictor.processes_per_replica
    if predictor.threads_per_process != 1:
        settings["threads_per_process"] = predictor.threads_per_process
    if predictor.log_level != "info":
        settings["log_level"] = predictor.log_level
    if predictor.env:
        settings["env"] = dict(predictor.env)
    return settings


def _dump(name: str, predictor: dict[str, Any]) -> str:
    api = [{"name": name, "kind": "RealtimeAPI", "predictor": predictor}]
    return yaml.safe_dump(api, sort_keys=False, allow_unicode=True)


def model_archive(files: ModelFiles) -> bytes:
    """A deterministic ``model.tar.gz``: the model directory's files at the archive root.

    Sorted names, zero mtimes, no owner: the same files give the same bytes, so the
    archive's SHA-256 can name its upload.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            content = files[name]
            data = content.read_bytes() if isinstance(content, Path) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def model_packager(project: Project, cache_dir: Path) -> Callable[[RealtimeAPI], bytes]:
    """``model.tar.gz`` of an API of ``project``, as ``ferry export --target sagemaker``
    writes it (what ``ferry deploy --env sagemaker`` uploads)."""

    def archive(api: RealtimeAPI) -> bytes:
        return model_archive(model_files(served_api(project, api, cache_dir))[1])

    return archive


def _tree(root: Path, exclude: Path | None) -> Iterator[tuple[str, Path]]:
    patterns = _ignore_patterns(root)
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(
            d for d in dirs
            if d not in _SKIP_DIRS and here / d != exclude and not _ignored(d, patterns)
            and not (here / d / OUTPUT_MARKER).exists()
        )  # fmt: skip
        for name in sorted(files):
            path = here / name
            if not _ignored(name, patterns) and not name.endswith(".pyc"):
                yield path.relative_to(root).as_posix(), path


def _ignore_patterns(root: Path) -> list[str]:
    patterns: list[str] = []
    for name in _IGNORE_FILES:
        if (root / name).is_file():
            lines = (root / name).read_text(encoding="utf-8").splitlines()
            patterns += [line.strip().strip("/") for line in lines if line.strip()[:1] not in "#"]
    return [pattern for pattern in patterns if pattern]


def _ignored(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


# --- the spec --------------------------------------------------------------------------


def app_name(name: str) -> str:
    """A name every platform accepts: lowercase, hyphens, 24 characters at most."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    cleaned = re.sub(r"^[^a-z]+", "", cleaned)[:24].rstrip("-")
    return cleaned or "model"


def package(
    served: list[Served],
    options: Options,
    *,
    splitter_name: str | None,
    exclude: Path,
    requirements: tuple[str, ...] = (),
    local_wheels: tuple[str, ...] = (),
    ferry_requirement: str = "ferry==0.1.0",
) -> Package:
    """The ``PackageSpec`` for ``served`` (one API, or a splitter's APIs as variants)."""
    first = served[0]
    model_file, files = model_files(first, exclude)
    dirs = {first.name: files}
    for other in served[1:]:
        dirs[other.name] = model_files(other, exclude)[1]
    spec = _spec(
        first.api,
        options,
        app=splitter_name or first.name,
        model_file=model_file,
        predictor_dir="code" if first.source.framework == "python" else None,
        variants=lambda: _variants(served, options, splitter=splitter_name is not None),
        requirements=requirements,
        local_wheels=local_wheels,
        ferry_requirement=ferry_requirement,
    )
    return Package(spec, tuple(served), dirs, splitter=splitter_name is not None)


def api_package_spec(api: RealtimeAPI, options: Options) -> PackageSpec:
    """The spec of ``api`` without fetching its model: the same one ``package`` builds.

    For templates that run an image built before (``ferry deploy --env ecs``): the model
    directory of an API always holds the generated ferry.yaml, with a predictor's code
    under ``code/``, so nothing here depends on the model file itself.
    """
    return _spec(
        api,
        options,
        app=api.name,
        model_file=PROJECT_FILE,
        predictor_dir="code" if api.predictor.path is not None else None,
        variants=lambda: (_variant(api.name, api, 1.0, options, splitter=False, url=None),),
    )


def _spec(
    api: RealtimeAPI | None,
    options: Options,
    *,
    app: str,
    model_file: str,
    predictor_dir: str | None,
    variants: Callable[[], tuple[Variant, ...]],
    requirements: tuple[str, ...] = (),
    local_wheels: tuple[str, ...] = (),
    ferry_requirement: str = "ferry==0.1.0",
) -> PackageSpec:
    try:
        spec = PackageSpec(
            app_name=options.name or app_name(app),
            model_file=model_file,
            predictor_dir=predictor_dir,
            python_version=_python_version(),
            ferry_requirement=ferry_requirement,
            requirements=requirements,
            local_wheels=local_wheels,
            workers=options.workers or (api.predictor.processes_per_replica if api else 1),
            env=dict(api.predictor.env) if api else {},
            compute=_compute(api, options),
            autoscaling=_autoscaling(api, options),
            update_strategy=_update_strategy(api),
            variants=variants(),
        )
        if options.image:
            spec = dataclasses.replace(spec, image_uri=options.image)
    except ValueError as error:
        where = f"api {api.name!r}: " if api is not None else ""
        raise ConfigError(f"{where}{error}") from None
    return spec


def _python_version() -> str:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return version if version in PYTHON_IMAGES else "3.11"


def _compute(api: RealtimeAPI | None, options: Options) -> Compute:
    cpu = api.compute.cpu if api else 1.0
    mem = api.compute.mem if api else None
    gpu = api.compute.gpu if api else 0
    if options.memory is not None:
        try:
            mem = parse_bytes(options.memory)
        except ValueError as error:
            raise ConfigError(f"--memory: {error}") from None
    return Compute(
        cpu=options.cpu if options.cpu is not None else cpu,
        mem_bytes=mem,
        gpu=options.gpu if options.gpu is not None else gpu,
    )


def _autoscaling(api: RealtimeAPI | None, options: Options) -> Autoscaling:
    low, high, target = 1, 4, 8.0
    if api is not None:
        scaling = api.autoscaling
        low, high = scaling.min_replicas, scaling.max_replicas
        target = scaling.target_replica_concurrency
    low = options.min_replicas or low
    high = options.max_replicas or max(high, low)
    return Autoscaling(min_replicas=low, max_replicas=high, target_concurrency=target)


def _update_strategy(api: RealtimeAPI | None) -> UpdateStrategy:
    if api is None:
        return UpdateStrategy()
    strategy = api.update_strategy
    return UpdateStrategy(max_surge=strategy.max_surge, max_unavailable=strategy.max_unavailable)


def model_data_url(served: list[Served], url: str | None, *, splitter: bool) -> str | None:
    """What the template's ModelDataUrl parameter gets: a splitter's first API's archive."""
    if url is None or not splitter:
        return url
    return f"{url.rstrip('/')}/{served[0].name}/model.tar.gz"


def _variants(served: list[Served], options: Options, *, splitter: bool) -> tuple[Variant, ...]:
    url = options.model_data_url
    if splitter and url is None:
        raise ConfigError(
            "a TrafficSplitter's variants each serve their own model: pass --model-data-url "
            "s3://BUCKET/PREFIX/ (upload each API's <api>/model.tar.gz under it)"
        )
    if not splitter and url is not None and not url.endswith(".tar.gz"):
        raise ConfigError(f"--model-data-url {url!r} must name a .tar.gz (SageMaker's format)")
    variants = []
    for index, item in enumerate(served):
        # the first variant reads the template's ModelDataUrl parameter, the others their own
        own = f"{url.rstrip('/')}/{item.name}/model.tar.gz" if url and splitter and index else None
        variants.append(_variant(item.name, item.api, item.weight, options, splitter, own))
    return tuple(variants)


def _variant(
    name: str,
    api: RealtimeAPI | None,
    weight: float,
    options: Options,
    splitter: bool,
    url: str | None,
) -> Variant:
    return Variant(
        name=name if splitter else "primary",
        weight=weight,
        instance_type=options.instance_type or _instance_type(api, options),
        initial_instance_count=api.autoscaling.init_replicas if api else 1,
        model_data_url=url,
    )


def _instance_type(api: RealtimeAPI | None, options: Options) -> str:
    compute = _compute(api, options)
    gib = (compute.mem_bytes or 0) / 1024**3
    if compute.gpu:
        for gpus, cpus, memory, name in _GPU_INSTANCES:
            if compute.gpu <= gpus and compute.cpu <= cpus and gib <= memory:
                return name
        return _GPU_INSTANCES[-1][3]
    for cpus, memory, name in _CPU_INSTANCES:
        if compute.cpu <= cpus and gib <= memory:
            return name
    return _CPU_INSTANCES[-1][2]
