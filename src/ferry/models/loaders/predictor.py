"""Python predictors: a user's class with ``predict``, Cortex's ``PythonPredictor`` as is.

Hooks and the arguments they may declare (each injected by name, only if declared):

- ``__init__(self, config, python_client=None, metrics_client=None, job_spec=None)``
- ``setup(self, device)`` or ``load(self)``: once, after ``__init__`` (LitServe, KServe)
- ``preprocess(payload)`` / ``decode_request``, then ``predict(payload, query_params,
  headers)``, then ``postprocess(output)`` / ``encode_response``
- ``post_predict(self, response, payload, query_params, headers)``: after the response
- ``warmup(self)``: called instead of a synthetic request, which could have side effects

With ``batched``, ``predict`` gets equal-length lists and returns a list of results.

A predictor that belongs to a project (a ``ferry.yaml`` / ``cortex.yaml`` beside it or above
it, up to its ``python_path``) runs in the project's directory, as Cortex ran it, so that
``open("labels.json")`` and ``config: {model: model.pkl}`` find the project's files, and
with the project's ``.env`` file (``VARIABLE=value`` lines) in its environment, under the
variables already set (``predictor.env``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ferry.apispec import PROJECT_FILES
from ferry.errors import ModelError, ModelLoadError
from ferry.models.base import LoadedModel, ModelSource
from ferry.models.loaders.injection import Injector, injector
from ferry.models.loaders.load_error import first_line, install_hint
from ferry.models.loaders.predictor_class import find_class
from ferry.types import InputKind, PayloadRequest, Signature

__all__ = ["PredictorModel", "construct", "load", "project_dir"]

_REQUEST = ("payload", "query_params", "headers")
_INIT = ("config", "name", "python_client", "metrics_client", "job_spec", "onnx_client")
_SETUP = ("device", "config")


def load(source: ModelSource) -> PredictorModel:
    """Import the predictor file, build the class with its config, and wrap it."""
    project = project_dir(source.path, source.spec.python_path)
    if project is not None:
        os.chdir(project)  # a worker serves one predictor: its directory is the project's
        _load_dotenv(project / ".env")
    cls = find_class(source.path, source.predictor_class, source.spec.python_path)
    instance = construct(cls, source)
    return PredictorModel(instance, source, batched=source.spec.predictor_batching)


def project_dir(file: Path, python_path: str | None) -> Path | None:
    """The directory of the project file that ``file`` belongs to, if there is one.

    Looked for from the predictor's folder upwards, no higher than the parent of its
    ``python_path`` (Cortex's ``python_path`` is a folder of the project).
    """
    start = file.resolve().parent
    top = Path(python_path).resolve().parent if python_path else start
    for directory in (start, *start.parents):
        if any((directory / name).is_file() for name in PROJECT_FILES):
            return directory
        if directory == top or not directory.is_relative_to(top):
            break
    return None


def _load_dotenv(file: Path) -> None:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{file}: cannot read it: {error}") from None
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise ModelLoadError(f"{file}:{number}: expected VARIABLE=value, got {text!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ.setdefault(key, value)


def construct(cls: type, source: ModelSource) -> object:
    """``cls(config=...)`` then its ``setup``/``load`` hook; a failure is a ModelLoadError."""
    where = f"{source.path.name}: {cls.__name__}"
    values = {
        "config": dict(source.spec.config),
        "name": source.name,
        "python_client": None,
        "metrics_client": None,
        "job_spec": None,
        "device": "cpu",
    }
    init = injector(cls, supplies=_INIT, what=f"{where}.__init__")
    if any(value == "onnx_client" for _, value in init.arguments):
        values["onnx_client"] = _onnx_client(source, where)
    python_client = None
    if any(value == "python_client" for _, value in init.arguments):
        python_client = _python_client(source, where, cls)
        values["python_client"] = python_client
    project = Path(source.spec.python_path or source.path.parent)
    instance = _call(init, values, f"{where}.__init__", project)
    if python_client is not None:
        python_client.bind(instance.load_model)  # type: ignore[attr-defined]
    setup = _setup_hook(instance, cortex=any(arg == "config" for arg, _ in init.arguments))
    if setup is not None:
        what = f"{where}.{setup.__name__}"
        _call(injector(setup, supplies=_SETUP, what=what), values, what, project)
    return instance


def _api_models(source: ModelSource, where: str, client: str) -> dict[str, Path]:
    """The models of the API's ``predictor.models`` / ``multi_model_reloading`` by name."""
    from ferry.apispec import load_project
    from ferry.config import default_cache_dir
    from ferry.models.fetch import fetch
    from ferry.models.loaders.predictor_python import SINGLE

    root = project_dir(source.path, source.spec.python_path)
    project = load_project(root, check_splitter_targets=False, digest=False) if root else None
    api = next((a for a in project.apis if a.name == source.name), None) if project else None
    if project is None or api is None:
        raise ModelLoadError(
            f"{where}.__init__ takes {client}, which needs the API's models in a ferry.yaml "
            "or cortex.yaml beside the predictor"
        )
    predictor, base = api.predictor, project.root

    def local(uri: str) -> Path:
        if "://" in uri:
            return fetch(uri, cache_dir=default_cache_dir())
        return base / Path(uri).expanduser()

    sources = predictor.multi_model_reloading or predictor.models
    if sources is not None and sources.paths is not None:
        return {named.name: local(named.path) for named in sources.paths}
    if sources is not None and sources.dir is not None:
        folder = local(sources.dir)
        if not folder.is_dir():
            raise ModelLoadError(f"{where}: models dir {folder} is not a directory")
        return {child.name: child for child in sorted(folder.iterdir()) if child.is_dir()}
    uri = sources.path if sources is not None else predictor.model_path
    if uri is None:
        section = "models" if client == "onnx_client" else "multi_model_reloading"
        raise ModelLoadError(f"{where}.__init__ takes {client}: set predictor.{section}")
    return {SINGLE: local(uri)}


def _python_client(source: ModelSource, where: str, cls: type) -> Any:
    """Cortex's ``python_client`` when the API has models to give it, else None (as Cortex)."""
    from ferry.models.loaders.predictor_python import PythonClient

    if not callable(getattr(cls, "load_model", None)):
        return None  # Cortex passed python_client only to multi-model predictors
    client = PythonClient(_api_models(source, where, "python_client"))
    return client


def _onnx_client(source: ModelSource, where: str) -> Any:
    """Cortex's ``onnx_client`` over the models of the API's ``predictor.models``."""
    from ferry.models.loaders.predictor_onnx import ONNXClient

    return ONNXClient(_api_models(source, where, "onnx_client"))


def _setup_hook(instance: object, *, cortex: bool) -> Callable[..., Any] | None:
    """LitServe's ``setup`` or KServe's ``load``, if it is one.

    Cortex never called either, so a Cortex-style class (``__init__(self, config)``) may
    have a ``load`` helper of its own that it already calls itself: leave it alone.
    """
    if cortex:
        return None
    for name in ("setup", "load"):
        hook = getattr(instance, name, None)
        if callable(hook):
            return hook  # type: ignore[no-any-return]
    return None


class PredictorModel(LoadedModel):
    """A predictor instance served with whole payloads (``InputKind.PAYLOAD``)."""

    def __init__(self, instance: object, source: ModelSource, *, batched: bool = False) -> None:
        self.name = source.name
        self.framework = source.framework
        self.signature = Signature(input_kind=InputKind.PAYLOAD)
        self._instance = instance
        self._batched = batched
        where = f"{source.path.name}: {type(instance).__name__}"
        predict = getattr(instance, "predict", None)
        if not callable(predict):
            raise ModelLoadError(f"{where} has no predict method")
        if inspect.iscoroutinefunction(predict):
            # Predictors run on worker threads, off the event loop, so predict must be sync.
            raise ModelLoadError(f"{where}.predict is async; ferry calls predict synchronously")
        self._predict = injector(
            predict, supplies=_REQUEST, what=f"{where}.predict", first="payload"
        )
        self._preprocess = _hook(
            instance, where, ("preprocess", "decode_request"), _REQUEST, "payload"
        )
        self._postprocess = _hook(
            instance, where, ("postprocess", "encode_response"), ("output", *_REQUEST), "output"
        )
        self._post_predict = _hook(
            instance, where, ("post_predict",), ("response", *_REQUEST), None
        )

    def predict_payloads(self, requests: list[PayloadRequest]) -> list[Any]:
        if self._batched:
            return self._predict_batch(requests)
        return [self._predict_one(request) for request in requests]

    def post_predict(self, response: Any, request: PayloadRequest) -> None:
        if self._post_predict is not None:
            self._post_predict({"response": response, **_values(request)})

    @property
    def has_post_predict(self) -> bool:
        return self._post_predict is not None

    def warmup(self) -> None:
        """Call the predictor's own ``warmup`` if it has one; never invent a request."""
        hook = getattr(self._instance, "warmup", None)
        if callable(hook):
            hook()

    def _predict_one(self, request: PayloadRequest) -> Any:
        values = _values(request)
        if self._preprocess is not None:
            values["payload"] = self._preprocess(values)
        output = self._predict(values)
        if self._postprocess is not None:
            output = self._postprocess({"output": output, **values})
        return output

    def _predict_batch(self, requests: list[PayloadRequest]) -> list[Any]:
        each = [_values(request) for request in requests]
        if self._preprocess is not None:
            for values in each:
                values["payload"] = self._preprocess(values)
        outputs = self._predict({name: [values[name] for values in each] for name in _REQUEST})
        results = _as_list(outputs, len(requests))
        if self._postprocess is not None:
            results = [
                self._postprocess({"output": output, **values})
                for output, values in zip(results, each, strict=True)
            ]
        return results


def _values(request: PayloadRequest) -> dict[str, Any]:
    return {
        "payload": request.payload,
        "query_params": request.query_params,
        "headers": request.headers,
    }


def _as_list(outputs: Any, expected: int) -> list[Any]:
    if not isinstance(outputs, Sequence | np.ndarray) or isinstance(outputs, str | bytes):
        raise ModelError(
            f"predict returned a {type(outputs).__name__} for {expected} payloads; "
            "a batched predictor returns a list with one result per payload"
        )
    if len(outputs) != expected:
        raise ModelError(f"predict returned {len(outputs)} results for {expected} payloads")
    return list(outputs)


def _hook(
    instance: object,
    where: str,
    names: tuple[str, ...],
    supplies: tuple[str, ...],
    first: str | None,
) -> Injector | None:
    for name in names:
        func = getattr(instance, name, None)
        if callable(func):
            return injector(func, supplies=supplies, what=f"{where}.{name}", first=first)
    return None


def _call(hook: Injector, values: dict[str, Any], what: str, project: Path | None) -> Any:
    try:
        return hook(values)
    except Exception as error:
        raise ModelLoadError(
            f"{what} raised {type(error).__name__}: {first_line(error)}"
            + install_hint(error, project)
        ) from error
