"""A small sync client for the control plane, used by the CLI (the sync edge).

It finds the control plane through ``control.json`` in the state directory, checks that
its process is alive, and can start it on demand (``ferry deploy`` does): a detached
``python -m ferry cluster up --foreground`` logging to ``control.log``.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ferry.errors import BadRequest, ConfigError, FerryError, NotFound

__all__ = ["ClusterNotRunningError", "ControlClient", "local_client", "start_control_plane"]

NOT_RUNNING = "the local cluster is not running; start it with `ferry cluster up`"


class ClusterNotRunningError(FerryError):
    """No control plane answers for this state directory."""

    code = "cluster_not_running"

    def __init__(self, message: str = NOT_RUNNING) -> None:
        super().__init__(message)


_ERRORS: dict[str, type[FerryError]] = {
    "config_error": ConfigError,
    "not_found": NotFound,
    "bad_request": BadRequest,
}


def local_client(timeout: float, **options: Any) -> httpx.Client:
    """A client for plain HTTP on 127.0.0.1: no proxy from the environment, and a TLS
    context that trusts nothing instead of loading the CA bundle (~0.1 s per client)."""
    no_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return httpx.Client(timeout=timeout, verify=no_tls, trust_env=False, **options)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a killed process whose parent has not reaped it (a zombie,
    common when the parent is a container's init) still answers ``kill(pid, 0)``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill()
    # the state follows the parenthesised command name, which may itself hold spaces
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _discover(state_dir: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((state_dir / "control.json").read_text(encoding="utf-8"))
        token = (state_dir / "token").read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not process_alive(int(info.get("pid", 0))):
        return None
    return {**info, "token": token}


class ControlClient:
    """Calls the control plane; every failure is a ``FerryError`` with a readable message."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self._http = local_client(
            timeout, base_url=url, headers={"authorization": f"Bearer {token}"}
        )

    @classmethod
    def connect(cls, state_dir: Path, *, start: bool = False) -> ControlClient:
        """The client of the running control plane; started first if ``start``."""
        info = _discover(state_dir)
        if info is None and start:
            info = start_control_plane(state_dir)
        if info is None:
            raise ClusterNotRunningError()
        return cls(str(info["url"]), str(info["token"]))

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ClusterNotRunningError(f"{NOT_RUNNING} ({self.url}: {error})") from None
        return _decode(response)

    def deploy(self, project: Path) -> list[dict[str, Any]]:
        result = self.request("POST", "/v1/deploy", json={"path": str(project.resolve())})
        return list(result["apis"])

    def apis(self, *, fresh_stats: bool = False) -> list[dict[str, Any]]:
        """Every API; ``fresh_stats`` has the replicas' request counters read first."""
        return list(self.request("GET", "/v1/apis", params=_stats(fresh_stats))["apis"])

    def api(self, name: str, *, fresh_stats: bool = False) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/apis/{name}", params=_stats(fresh_stats)))

    def events(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        return list(
            self.request("GET", f"/v1/apis/{name}/events", params={"limit": limit})["events"]
        )

    def delete(self, name: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/v1/apis/{name}"))

    def refresh(self, name: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/apis/{name}/refresh"))

    def rollback(self, name: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/apis/{name}/rollback"))

    def cluster(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/cluster"))

    def shutdown(self, *, stop_replicas: bool) -> None:
        self.request("POST", "/v1/shutdown", json={"stop_replicas": stop_replicas})

    def logs(self, name: str, *, follow: bool = False, tail: int = 100) -> Iterator[str]:
        params = {"follow": int(follow), "tail": tail}
        timeout = httpx.Timeout(10.0, read=None) if follow else self._http.timeout
        try:
            with self._http.stream(
                "GET", f"/v1/apis/{name}/logs", params=params, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    _decode(response)
                yield from response.iter_lines()
        except httpx.TransportError as error:
            raise ClusterNotRunningError(f"{NOT_RUNNING} ({self.url}: {error})") from None


def _decode(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code < 400:
        return body
    if isinstance(body, dict) and "error" in body:
        error_class = _ERRORS.get(str(body.get("code")), FerryError)
        raise error_class(str(body["error"]))
    raise FerryError(f"the control plane answered {response.status_code}: {response.text[:200]}")


def start_control_plane(state_dir: Path, *, timeout: float = 30.0) -> dict[str, Any]:
    """Start a detached control plane for ``state_dir`` and wait until it answers."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = state_dir / "control.log"
    env = {**os.environ, "FERRY_STATE_DIR": str(state_dir)}
    descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "ferry", "cluster", "up", "--foreground"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _discover(state_dir)
        if info is not None and _answers(info):
            return info
        if process.poll() is not None and _discover(state_dir) is None:
            raise FerryError(f"the control plane did not start: {_last_line(log_path)}")
        time.sleep(0.02)
    raise FerryError(f"the control plane did not answer within {timeout:g}s; see {log_path}")


def _answers(info: dict[str, Any]) -> bool:
    try:
        client = ControlClient(str(info["url"]), str(info["token"]), timeout=2.0)
        try:
            client.cluster()
        finally:
            client.close()
    except FerryError:
        return False
    return True


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return f"see {path}"
    return f"{lines[-1].strip()} (see {path})" if lines else f"see {path}"


def _stats(fresh: bool) -> dict[str, str] | None:
    return {"stats": "fresh"} if fresh else None
