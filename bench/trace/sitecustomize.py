"""Timestamps from every ferry process of a deploy, for bench/deploy_trace.py.

Put this directory on PYTHONPATH and set FERRY_TRACE to a file: each Python process then
appends ``<unix time> <pid> <event>`` lines for its start, the modules below as they
finish importing, and entry/exit of the functions listed (a name that no longer exists
is skipped). Nothing happens without FERRY_TRACE.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import inspect
import os
import sys
import time
from typing import Any

_PATH = os.environ.get("FERRY_TRACE")

WATCH: dict[str, list[tuple[str | None, str]]] = {
    "ferry.cli.main": [(None, "main")],
    "ferry.cli.deploy": [(None, "_wait")],
    "ferry.control.client": [(None, "start_control_plane"), ("ControlClient", "deploy")],
    "ferry.control.launch": [(None, "run_control_plane")],
    "ferry.control.service": [("ControlPlane", "serve")],
    "ferry.control.api": [("ControlApi", "deploy")],
    "ferry.runtime.local.backend": [("LocalBackend", "apply_routes")],
    "ferry.runtime.local.forking": [("ZygoteHandle", "__init__"), ("ZygoteHandle", "spawn")],
    "ferry.runtime.local.replicas": [("ReplicaSupervisor", "_spawn")],
    "ferry.runtime.local.gateway": [("NginxGateway", "_start"), ("NginxGateway", "_install")],
    "ferry.serving.server": [(None, "prepare")],
    "ferry.serving.runner": [("ModelRunner", "start")],
}


def mark(event: str) -> None:
    assert _PATH is not None
    with open(_PATH, "a") as stream:
        stream.write(f"{time.time():.3f} {os.getpid()} {event}\n")


def _wrap(owner: Any, name: str, label: str) -> None:
    function = getattr(owner, name, None)
    if function is None:
        return
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def traced_async(*args: Any, **kwargs: Any) -> Any:
            mark(f"> {label}")
            try:
                return await function(*args, **kwargs)
            finally:
                mark(f"< {label}")

        setattr(owner, name, traced_async)
        return

    @functools.wraps(function)
    def traced(*args: Any, **kwargs: Any) -> Any:
        mark(f"> {label}")
        try:
            return function(*args, **kwargs)
        finally:
            mark(f"< {label}")

    setattr(owner, name, traced)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in WATCH:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            mark(f"imported {fullname}")
            for owner_name, name in WATCH[fullname]:
                owner = module if owner_name is None else getattr(module, owner_name, None)
                if owner is not None:
                    _wrap(owner, name, f"{owner_name or fullname.rsplit('.', 1)[1]}.{name}")

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if _PATH:
    mark("python up " + " ".join(sys.argv[1:4]))
    sys.meta_path.insert(0, _Finder())
