"""The contenders: how each one is started, addressed and read.

Each contender is one idiomatic recipe, run from its own virtualenv (bench/.envs/<env>) and
pinned to core 1 by the runner. A contender says:
  - argv(model, port, ctx): the command line (without ``taskset``),
  - env: extra environment variables,
  - protocol: how a list of rows becomes a request body and how an answer becomes
    predictions; the wrk Lua script bench/lua/<protocol>.lua builds the same body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
SERVERS = BENCH / "servers"
ENVS = BENCH / ".envs"
WORK = BENCH / ".work"
MODELS = WORK / "models"
FERRY = ROOT / ".venv" / "bin" / "ferry"
WORKERS = 2


# ------------------------------------------------------------------ protocols
@dataclass(frozen=True)
class Protocol:
    name: str  # also the Lua script: bench/lua/<name>.lua
    path: Callable[[str], str]  # model name -> URL path
    body: Callable[[list[list[float]]], Any]
    answer: Callable[[Any], list[Any]]


def _v2_body(rows: list[list[float]]) -> Any:
    flat = [v for row in rows for v in row]
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0]) if rows else 0],
                "datatype": "FP64",
                "data": flat,
            }
        ]
    }


PROTOCOLS = {
    "rows": Protocol("rows", lambda m: "/predict", lambda r: r, lambda a: list(a)),
    "bentoml": Protocol("bentoml", lambda m: "/predict", lambda r: {"rows": r}, lambda a: list(a)),
    "mlflow": Protocol(
        "mlflow",
        lambda m: "/invocations",
        lambda r: {"inputs": r},
        lambda a: list(a["predictions"]),
    ),
    "v2": Protocol(
        "v2", lambda m: f"/v2/models/{m}/infer", _v2_body, lambda a: list(a["outputs"][0]["data"])
    ),
}


# ------------------------------------------------------------------ contenders
@dataclass
class Contender:
    name: str
    label: str
    env: str | None  # bench/.envs/<env>; None: the main venv (ferry)
    protocol: str
    argv: Callable[[str, int, Path], list[str]]  # (model name, port, scratch dir)
    environ: Callable[[str], dict[str, str]] = field(default=lambda m: {})
    reference: bool = False  # the HTTP ceiling: not a peer, never checked for answers
    models: tuple[str, ...] = ("rf", "xgb")

    def bin(self, exe: str) -> str:
        return str(ENVS / self.env / "bin" / exe) if self.env else str(ROOT / ".venv/bin" / exe)

    def available(self) -> str | None:
        """None when it can run here, else why not."""
        if self.env is None:
            return None if FERRY.exists() else f"{FERRY} not found"
        failed = ENVS / f"{self.env}.FAILED"
        if failed.exists():
            return f"install failed: {failed.read_text().strip().splitlines()[-1:]}"
        if not (ENVS / self.env / ".ok").exists():
            return f"bench/.envs/{self.env} missing (run bench/setup.sh)"
        return None


def _model(name: str) -> str:
    return str(MODELS / f"{name}.joblib")


def _mlserver_argv(batch: bool) -> Callable[[str, int, Path], list[str]]:
    def argv(m: str, port: int, scratch: Path) -> list[str]:
        # MLServer reads server settings from settings.json next to the model folders;
        # gRPC and metrics get free ports of their own
        from bench_util import free_port

        repo = scratch / "mlserver-repo"
        repo.mkdir(parents=True, exist_ok=True)
        src = MODELS / "mlserver" / f"{m}{'-batch' if batch else ''}" / m
        link = repo / m
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src)
        (repo / "settings.json").write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "http_port": port,
                    "grpc_port": free_port(),
                    "metrics_port": free_port(),
                    "parallel_workers": WORKERS,
                    "debug": False,
                }
            )
        )
        return [ENVS_BIN("mlserver", "mlserver"), "start", str(repo)]

    return argv


def ENVS_BIN(env: str, exe: str) -> str:  # noqa: N802
    return str(ENVS / env / "bin" / exe)


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in [
        # ferry as a user runs it: its default is one worker per core it may use, so on the
        # one pinned server core that is one worker. ferry-2w is ferry with the peers'
        # worker count, for the same comparison with two processes sharing the core.
        Contender(
            "ferry",
            "ferry (default workers: 1 per usable core)",
            None,
            "rows",
            lambda m, p, s: [
                *(str(FERRY), "serve", _model(m)),
                *("--host", "127.0.0.1", "--port", str(p)),
            ],
        ),
        Contender(
            "ferry-2w",
            f"ferry --workers {WORKERS}",
            None,
            "rows",
            lambda m, p, s: [
                str(FERRY),
                "serve",
                _model(m),
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--workers",
                str(WORKERS),
            ],
        ),
        Contender(
            "flask",
            "Flask + Gunicorn (2 sync workers)",
            "flask",
            "rows",
            lambda m, p, s: [
                ENVS_BIN("flask", "gunicorn"),
                "-w",
                str(WORKERS),
                "-b",
                f"127.0.0.1:{p}",
                "--chdir",
                str(SERVERS),
                "flask_app:app",
            ],
            lambda m: {"BENCH_MODEL": _model(m)},
        ),
        Contender(
            "fastapi",
            "FastAPI + Uvicorn (2 workers)",
            "fastapi",
            "rows",
            lambda m, p, s: [
                ENVS_BIN("fastapi", "uvicorn"),
                "--app-dir",
                str(SERVERS),
                "fastapi_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--workers",
                str(WORKERS),
                "--no-access-log",
            ],
            lambda m: {"BENCH_MODEL": _model(m)},
        ),
        Contender(
            "bentoml",
            "BentoML (2 workers)",
            "bentoml",
            "bentoml",
            lambda m, p, s: [
                ENVS_BIN("bentoml", "bentoml"),
                "serve",
                "bentoml_service:Classifier",
                "--working-dir",
                str(SERVERS),
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
            ],
            lambda m: {
                "BENCH_MODEL_NAME": m,
                "BENTOML_HOME": str(WORK / "bentoml"),
                "BENTOML_DO_NOT_TRACK": "True",
            },
        ),
        Contender(
            "mlflow",
            "MLflow models serve (2 workers)",
            "mlflow",
            "mlflow",
            lambda m, p, s: [
                ENVS_BIN("mlflow", "mlflow"),
                "models",
                "serve",
                "-m",
                str(MODELS / "mlflow" / m),
                "-h",
                "127.0.0.1",
                "-p",
                str(p),
                "-w",
                str(WORKERS),
                "--env-manager",
                "local",
            ],
            lambda m: {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
        ),
        Contender(
            "litserve",
            "LitServe (2 workers)",
            "litserve",
            "rows",
            lambda m, p, s: [
                ENVS_BIN("litserve", "python"),
                str(SERVERS / "litserve_app.py"),
                str(p),
            ],
            lambda m: {"BENCH_MODEL": _model(m), "LITSERVE_DISABLE_TELEMETRY": "1"},
        ),
        Contender(
            "litserve-batch",
            "LitServe with batching (64, 5 ms)",
            "litserve",
            "rows",
            lambda m, p, s: [
                ENVS_BIN("litserve", "python"),
                str(SERVERS / "litserve_app.py"),
                str(p),
                "--batch",
            ],
            lambda m: {"BENCH_MODEL": _model(m), "LITSERVE_DISABLE_TELEMETRY": "1"},
        ),
        Contender(
            "mlserver",
            "MLServer (2 parallel workers)",
            "mlserver",
            "v2",
            _mlserver_argv(False),
        ),
        Contender(
            "mlserver-batch",
            "MLServer with adaptive batching (64, 5 ms)",
            "mlserver",
            "v2",
            _mlserver_argv(True),
        ),
        Contender(
            "noop",
            "no-op endpoint on Uvicorn (HTTP ceiling)",
            "fastapi",
            "rows",
            lambda m, p, s: [
                ENVS_BIN("fastapi", "uvicorn"),
                "--app-dir",
                str(SERVERS),
                "noop_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--workers",
                str(WORKERS),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            reference=True,
        ),
    ]
}
