"""Resolve what a user pointed at into a ``ModelSource``: a local path plus a framework.

Accepted: ``file.py[:ClassName]`` (a Python predictor), a model file or URI, a ferry or
Cortex project directory (``ferry.yaml`` / ``cortex.yaml``), and a SageMaker-style model
directory (``/opt/ml/model``, possibly holding a ``model.tar.gz``). Nothing is imported or
unpickled here; loading happens later, in each worker when ``load_after_fork`` is set.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ferry.config import ModelSpec
from ferry.errors import ConfigError, ModelLoadError
from ferry.models.base import ModelSource
from ferry.models.cache import ArtifactCache, is_archive
from ferry.models.detect import detect_framework
from ferry.models.fetch import fetch, local_path

__all__ = ["open_source"]

# these start threads or hold handles when loaded, so every worker loads its own copy
_LOAD_AFTER_FORK = frozenset({"onnx", "torchscript", "python"})
_PROJECT_FILES = ("ferry.yaml", "cortex.yaml", "cortex.yml")
_PREDICTOR_FILES = ("inference.py", "predictor.py")
_PREDICTOR_CLASS = "PythonPredictor"
_PYTHON_URI = re.compile(r"^(?P<file>.+\.py)(?::(?P<cls>[A-Za-z_][A-Za-z0-9_]*))?$")
_MODEL_TYPES = frozenset(
    {"auto", "pickle", "sklearn", "xgboost", "lightgbm", "onnx", "torchscript"}
)


def open_source(
    spec: ModelSpec, *, cache_dir: Path, s3_endpoint_url: str | None = None
) -> ModelSource:
    """Fetch and identify the model ``spec`` names, without loading it.

    Raises ``ModelLoadError`` for a missing or unrecognised model, ``ArtifactError`` when a
    URI cannot be fetched, and ``ConfigError`` for an invalid project file.
    """
    match = _PYTHON_URI.match(spec.uri)
    if match is not None:
        # "predictor.py:Class" parses as scheme "predictor.py": only "://" marks a URI
        if "://" in spec.uri and urlsplit(spec.uri).scheme.lower() != "file":
            raise ModelLoadError(f"{spec.uri}: a Python predictor must be a local file")
        return _python_source(spec, local_path(match["file"]), match["cls"])
    path = _fetch(spec, cache_dir, s3_endpoint_url)
    if path.is_dir():
        return _directory_source(spec, path, cache_dir, s3_endpoint_url)
    return _file_source(spec, path)


def _fetch(spec: ModelSpec, cache_dir: Path, endpoint: str | None) -> Path:
    scheme = urlsplit(spec.uri).scheme.lower()
    if scheme in ("", "file") or len(scheme) == 1:
        path = local_path(spec.uri)
        if not path.exists():
            raise ModelLoadError(f"model file {path} does not exist")
    return fetch(spec.uri, cache_dir=cache_dir, sha256=spec.sha256, s3_endpoint_url=endpoint)


def _file_source(spec: ModelSpec, path: Path) -> ModelSource:
    if path.suffix == ".py":
        return _python_source(spec, path, None)
    if spec.framework == "python":
        raise ModelLoadError(f"{path}: framework python needs a FILE.py or FILE.py:ClassName")
    framework: str = spec.framework
    if framework == "auto":
        framework = detect_framework(path)
    elif framework == "sklearn":
        framework = "pickle"
    return ModelSource(
        spec=spec,
        path=path,
        framework=framework,
        name=_sanitise(spec.name or path.stem),
        load_after_fork=framework in _LOAD_AFTER_FORK,
    )


def _sanitise(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"


# --- Python predictors ---------------------------------------------------------------------


def _python_source(
    spec: ModelSpec,
    file: Path,
    cls: str | None,
    *,
    python_path: Path | None = None,
    name: str | None = None,
) -> ModelSource:
    if not file.is_file():
        raise ModelLoadError(f"predictor file {file} does not exist")
    tree = _parse(file)
    if cls is None:
        cls = _predictor_class(file, tree)
    elif cls not in _defined_names(tree):
        found = ", ".join(_class_names(tree)) or "none"
        raise ModelLoadError(f"{file} defines no class {cls} (classes found: {found})")
    update = {"python_path": spec.python_path or str(python_path or file.parent)}
    return ModelSource(
        spec=spec.model_copy(update=update),
        path=file,
        framework="python",
        name=_sanitise(spec.name or name or file.stem),
        load_after_fork=True,
        predictor_class=cls,
    )


def _parse(file: Path) -> ast.Module:
    # parsed, not imported: user code runs only when the loader imports it in a worker
    try:
        return ast.parse(file.read_bytes(), filename=str(file))
    except SyntaxError as exc:
        raise ModelLoadError(f"{file}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except OSError as exc:
        raise ModelLoadError(f"cannot read predictor file {file}: {exc.strerror}") from exc


def _class_names(tree: ast.Module) -> list[str]:
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


def _defined_names(tree: ast.Module) -> set[str]:
    """Names a class could be reached by, anywhere in the file (under ``if``/``try`` too).

    Lenient on purpose: the loader makes the exact check when it imports the file.
    """
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _predictor_class(file: Path, tree: ast.Module) -> str:
    """``PythonPredictor`` if defined, else the one class with a ``predict`` method."""
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    if any(node.name == _PREDICTOR_CLASS for node in classes):
        return _PREDICTOR_CLASS
    with_predict = [node.name for node in classes if _has_method(node, "predict")]
    if len(with_predict) == 1:
        return with_predict[0]
    found = ", ".join(with_predict) if with_predict else "none"
    raise ModelLoadError(
        f"{file}: expected a class {_PREDICTOR_CLASS} or exactly one class with a predict "
        f"method (found: {found}); name it as {file.name}:ClassName"
    )


def _has_method(node: ast.ClassDef, name: str) -> bool:
    return any(
        isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == name
        for item in node.body
    )


# --- directories ---------------------------------------------------------------------------


def _directory_source(
    spec: ModelSpec, directory: Path, cache_dir: Path, endpoint: str | None
) -> ModelSource:
    for project_name in _PROJECT_FILES:
        if (directory / project_name).is_file():
            return _project_source(spec, directory / project_name, cache_dir, endpoint)
    predictor = _dir_predictor(directory)
    if predictor is not None:
        return _python_source(spec, predictor, _PREDICTOR_CLASS)
    top = _models_in(directory)
    if top:
        return _file_source(spec, _choose(directory, top))
    archives = [f for f in _visible(directory) if is_archive(f)]
    if len(archives) == 1:
        unpacked = ArtifactCache(cache_dir).unpacked(archives[0])
        return _directory_source(spec, unpacked, cache_dir, endpoint)
    nested = _nested_models(directory)
    if nested:
        return _file_source(spec, _choose(directory, nested))
    raise ModelLoadError(
        f"no model file found in {directory}: expected one .joblib/.pkl, .json/.ubj, .txt, "
        ".onnx or .pt file, a model.tar.gz, a ferry.yaml, or code/inference.py with a "
        f"{_PREDICTOR_CLASS} class"
    )


def _visible(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def _dir_predictor(directory: Path) -> Path | None:
    """A SageMaker-style ``[code/]inference.py`` (or ``predictor.py``) with a predictor."""
    for folder in (directory / "code", directory):
        for filename in _PREDICTOR_FILES:
            file = folder / filename
            if file.is_file() and _PREDICTOR_CLASS in _class_names(_parse(file)):
                return file
    return None


def _dir_model(directory: Path) -> Path | None:
    """The one model file at the top of ``directory``, else one level down; None if none."""
    candidates = _models_in(directory) or _nested_models(directory)
    return _choose(directory, candidates) if candidates else None


def _models_in(directory: Path) -> list[Path]:
    return [f for f in _visible(directory) if f.is_file() and _is_model(f)]


def _nested_models(directory: Path) -> list[Path]:
    # SageMaker puts the user's inference code under code/; it holds no model
    subdirs = [d for d in _visible(directory) if d.is_dir() and d.name != "code"]
    return [f for d in subdirs for f in _models_in(d)]


def _choose(directory: Path, candidates: list[Path]) -> Path:
    if len(candidates) == 1:
        return candidates[0]
    preferred = [f for f in candidates if f.name.lower().startswith("model")]
    if len(preferred) == 1:
        return preferred[0]
    listed = ", ".join(str(f.relative_to(directory)) for f in candidates)
    raise ModelLoadError(
        f"{directory} holds several model files ({listed}); pass the path of the one to serve"
    )


def _is_model(file: Path) -> bool:
    try:
        detect_framework(file)
    except ModelLoadError:
        return False
    return True


# --- ferry / Cortex project directories ----------------------------------------------------


def _project_source(
    spec: ModelSpec, project_file: Path, cache_dir: Path, endpoint: str | None
) -> ModelSource:
    apis = _read_apis(project_file)
    index, api = _pick_api(apis, spec.name, project_file)
    where = f"{project_file}: [{index}]"
    predictor = _field(api, "predictor", dict, where, required=True)
    config = _field(predictor, "config", dict, f"{where}.predictor") or {}
    update: dict[str, Any] = {"config": {**config, **spec.config}}
    update.update(_output_fields(spec, predictor, f"{where}.predictor"))
    if _field(predictor, "server_side_batching", dict, f"{where}.predictor") is not None:
        update["predictor_batching"] = True  # Cortex then hands predict() lists
    spec = spec.model_copy(update=update)
    name = spec.name or str(api["name"])
    kind = _predictor_kind(predictor, f"{where}.predictor")
    base = project_file.parent
    if kind == "python" or "path" in predictor:  # an ONNXPredictor class is Python too
        file = base / _field(predictor, "path", str, f"{where}.predictor", required=True)
        python_path = _field(predictor, "python_path", str, f"{where}.predictor")
        root = base / python_path if python_path else base
        return _python_source(spec, file, None, python_path=root, name=name)
    model_uri = _field(predictor, "model_path", str, f"{where}.predictor", required=True)
    if urlsplit(model_uri).scheme.lower() in ("", "file"):
        model_uri = str(base / local_path(model_uri))
    framework = spec.framework if spec.framework != "auto" else kind
    spec = spec.model_copy(update={"uri": model_uri, "framework": framework, "name": name})
    path = _fetch(spec, cache_dir, endpoint)
    model = _dir_model(path) if path.is_dir() else path
    if model is None:
        raise ModelLoadError(f"{where}.predictor.model_path: no model file found in {path}")
    return _file_source(spec, model)


def _output_fields(spec: ModelSpec, predictor: dict[str, Any], where: str) -> dict[str, Any]:
    """ferry's own output settings from the project; the command line's win."""
    update: dict[str, Any] = {}
    if not spec.predict_proba and _field(predictor, "predict_proba", bool, where):
        update["predict_proba"] = True
    labels = _field(predictor, "labels", dict, where)
    if labels and not spec.labels:
        try:
            update["labels"] = {int(k): str(v) for k, v in labels.items()}
        except ValueError:
            raise ConfigError(f"{where}.labels: expected class index -> name") from None
    names = _field(predictor, "feature_names", list, where)
    if names and spec.feature_names is None:
        update["feature_names"] = tuple(str(n) for n in names)
    return update


def _read_apis(project_file: Path) -> list[Any]:
    import yaml  # imported on use, like every parser the CLI may not need

    try:
        data = yaml.safe_load(project_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{project_file}: invalid YAML{line}: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {project_file}: {exc.strerror}") from exc
    if isinstance(data, dict):
        data = [data]  # a single API written without the list dash
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{project_file}: expected a list of APIs (each with name and predictor)")
    for index, api in enumerate(data):
        if not isinstance(api, dict):
            raise ConfigError(f"{project_file}: [{index}]: expected a mapping with name, kind")
        _field(api, "name", str, f"{project_file}: [{index}]", required=True)
        _field(api, "kind", str, f"{project_file}: [{index}]")
    return data


def _pick_api(apis: list[Any], wanted: str | None, project_file: Path) -> tuple[int, Any]:
    realtime = [(i, a) for i, a in enumerate(apis) if a.get("kind", "RealtimeAPI") == "RealtimeAPI"]
    names = ", ".join(str(a["name"]) for _, a in realtime) or "none"
    if wanted is not None:
        for index, api in realtime:
            if api["name"] == wanted:
                return index, api
        raise ConfigError(f"{project_file}: no RealtimeAPI named {wanted!r} (found: {names})")
    if not realtime:
        raise ConfigError(f"{project_file}: no API of kind RealtimeAPI to serve")
    return realtime[0]


def _predictor_kind(predictor: dict[str, Any], where: str) -> str:
    default = "python" if "path" in predictor else "auto"
    kind = _field(predictor, "type", str, where) or default
    if kind == "python" and "path" not in predictor and "model_path" in predictor:
        return "auto"  # a model file served without a predictor class
    if kind != "python" and kind not in _MODEL_TYPES:
        expected = ", ".join(sorted(_MODEL_TYPES | {"python"}))
        raise ConfigError(f"{where}.type: {kind!r} is not supported (expected one of {expected})")
    return kind


def _field(
    mapping: dict[str, Any], key: str, kind: type, where: str, *, required: bool = False
) -> Any:
    """``mapping[key]`` checked to be a ``kind``; None when absent and not required."""
    value = mapping.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}.{key}: missing")
        return None
    if not isinstance(value, kind):
        expected = {"str": "a string", "dict": "a mapping"}.get(kind.__name__, kind.__name__)
        raise ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")
    return value
