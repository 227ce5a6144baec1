"""Ferry's own nginx instance: one port in front of every API, never reloaded for routes.

The configuration names no API (see ``nginx_conf``): routes go to ``routes.tsv``, which
the running nginx reads again when told to (``POST /_ferry/routes``), so deploying or
deleting an API leaves every client connection alone. Only a change of the configuration
itself (ferry upgraded, the gateway's options changed) reloads nginx.

The instance lives under ``<state_dir>/gateway/`` (config, pid file, logs, temp paths)
and never touches the system nginx. nginx daemonizes, so it outlives the control plane
and is re-adopted from its pid file. A reload is a SIGHUP to the master after ``nginx -t``
accepted the new file: the master keeps its listening socket, so the port never drops.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from ferry.runtime.base import RoutingTable
from ferry.runtime.local.nginx_conf import (
    GatewayLayout,
    GatewayOptions,
    config_digest,
    render,
    render_routes,
    routes_digest,
)
from ferry.runtime.local.probe import local_client

__all__ = ["GatewayError", "NginxGateway", "check_lua_module", "find_nginx"]

_FALLBACK = Path("/usr/sbin/nginx")


_LUA_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")


class GatewayError(RuntimeError):
    """The gateway cannot be started, validated or reloaded; the message says why."""


def check_lua_module(modules_dir: Path) -> None:
    """A clear error when nginx's Lua module (which holds the routes) is not installed."""
    missing = [name for name in _LUA_MODULES if not (modules_dir / name).is_file()]
    if missing:
        raise GatewayError(
            f"nginx's Lua module is not installed ({modules_dir / missing[0]} is missing); "
            "the local cluster's gateway needs it: run `apt-get install libnginx-mod-http-lua` "
            "(or scripts/install-os-packages)"
        )


def find_nginx() -> str:
    """The nginx binary on PATH or in /usr/sbin, or a clear error saying how to install it."""
    found = shutil.which("nginx")
    if found:
        return found
    if _FALLBACK.exists():
        return str(_FALLBACK)
    raise GatewayError(
        "nginx is not installed; the local cluster's gateway needs it: "
        "run `apt-get install nginx` (or scripts/install-os-packages)"
    )


def _master_alive(pid: int, conf: Path) -> bool:
    """True when ``pid`` is an nginx master started with our config (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"nginx" in cmdline and str(conf).encode() in cmdline


def _serving_workers(master: int | None) -> int:
    """Workers of ``master`` that have not begun shutting down."""
    if master is None:
        return 0
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return 0
    count = 0
    for child in children:
        try:
            title = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        count += title.startswith(b"nginx: worker process") and b"shutting down" not in title
    return count


class NginxGateway:
    """Render, validate, start and reload one nginx instance. Thread-safe."""

    def __init__(self, prefix: Path, options: GatewayOptions, *, binary: str | None = None) -> None:
        self.layout = GatewayLayout(prefix)
        if options.user is None and os.geteuid() == 0:
            options = _with_user(options, "root")
        self.options = options
        self._binary = binary
        self._lock = threading.Lock()
        self._pushed: tuple[int, str] | None = None  # (master pid, routes digest) in force

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.options.port}"

    @property
    def binary(self) -> str:
        if self._binary is None:
            self._binary = find_nginx()
        return self._binary

    def check(self) -> None:
        """Raise ``GatewayError`` (saying what to install) unless nginx and its Lua module
        are installed."""
        _ = self.binary
        check_lua_module(self.options.modules_dir)

    def pid(self) -> int | None:
        """The running master's pid, or None."""
        try:
            pid = int(self.layout.pid.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _master_alive(pid, self.layout.conf) else None

    def apply(self, table: RoutingTable, slots: Mapping[str, Sequence[int]] | None = None) -> bool:
        """Route as ``table`` says over each API's ``slots``; returns True when nginx was
        started or reloaded, which a change of routes never causes."""
        routes = render_routes(table, slots)
        with self._lock:
            if self._read(self.layout.routes) != routes:
                self._prepare_dirs()
                _write_atomic(self.layout.routes, routes)
            started = self._configure()
            pid = self.pid()
            digest = routes_digest(routes)
            if pid is not None and self._pushed != (pid, digest):
                self._load_routes(digest)
                self._pushed = (pid, digest)
            return started

    def _configure(self) -> bool:
        """Start nginx, or reload it when its configuration changed; True if either."""
        text = render(self.layout, self.options)
        current = self._read(self.layout.conf)
        pid = self.pid()
        if text == current and pid is not None:
            return False
        if text != current:
            self._install(text)
        if pid is None:
            self._start()
        else:
            os.kill(pid, signal.SIGHUP)
        self._wait_live(config_digest(text))
        self._wait_old_workers_quit()
        return True

    def _load_routes(self, digest: str) -> None:
        """Have nginx read ``routes.tsv`` again; return once it routes by ``digest``."""
        url = f"{self.url}/_ferry/routes"
        try:
            with local_client(5.0) as client:
                answer = client.post(url)
            loaded = answer.json().get("routes") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as error:
            raise GatewayError(f"the gateway did not take the new routes: {error}") from error
        if loaded != digest:
            detail = answer.text.strip()[:200]
            raise GatewayError(
                f"the gateway did not take the new routes ({detail}); see {self.layout.error_log}"
            )

    def routes_in_force(self) -> str | None:
        """The digest of the routes nginx is using, or None if it does not answer."""
        try:
            with local_client(2.0) as client:
                answer = client.get(f"{self.url}/_ferry/routes")
            return str(answer.json()["routes"]) if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def ensure_running(self) -> None:
        """Start nginx (with the last applied routes, or none) if it is not running."""
        with self._lock:
            if self.pid() is not None:
                return
            if self._read(self.layout.routes) is None:
                self._prepare_dirs()
                _write_atomic(self.layout.routes, render_routes(RoutingTable()))
            if self._read(self.layout.conf) is None:
                self._install(render(self.layout, self.options))
            self._start()

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful quit (finish in-flight requests), then SIGKILL after ``timeout``."""
        with self._lock:
            pid = self.pid()
            if pid is None:
                return
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.pid() is not None:
                time.sleep(0.05)
            if self.pid() is not None:
                os.kill(pid, signal.SIGKILL)

    def _wait_live(self, digest: str, timeout: float = 10.0) -> None:
        """Return once new connections reach workers running ``digest``: a reload is
        asynchronous, and the caller may stop a replica the old routes still name."""
        url = f"{self.url}/_ferry/healthz"
        deadline = time.monotonic() + timeout
        with local_client(1.0) as client:
            while True:
                try:  # a fresh connection each time: kept-alive ones stay with old workers
                    answer = client.get(url, headers={"connection": "close"})
                    if answer.status_code == 200 and answer.json().get("config") == digest:
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    log = self.layout.error_log
                    raise GatewayError(f"nginx did not load the new routes; see {log}")
                time.sleep(0.01)

    def _wait_old_workers_quit(self, timeout: float = 5.0) -> None:
        """Old workers close their idle keep-alive connections as they get the master's
        QUIT; until then a kept-alive client could still reach the old routes."""
        deadline = time.monotonic() + timeout
        while _serving_workers(self.pid()) > self.options.worker_processes:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text()
        except OSError:
            return None

    def _prepare_dirs(self) -> None:
        for path in (self.layout.prefix, self.layout.error_log.parent, self.layout.temp):
            path.mkdir(parents=True, exist_ok=True)

    def _install(self, text: str) -> None:
        """Write ``text`` beside the live config, validate it, then swap it in atomically."""
        check_lua_module(self.options.modules_dir)
        self._prepare_dirs()
        candidate = self.layout.prefix / "nginx.conf.next"
        candidate.write_text(text)
        self._run("-t", "-q", "-c", str(candidate))
        os.replace(candidate, self.layout.conf)

    def _start(self) -> None:
        check_lua_module(self.options.modules_dir)
        self._prepare_dirs()
        self._run("-c", str(self.layout.conf))
        deadline = time.monotonic() + 5.0
        while self.pid() is None:  # the pid file appears once the master is up
            if time.monotonic() > deadline:
                raise GatewayError(f"nginx did not start; see {self.layout.error_log}")
            time.sleep(0.02)

    def _run(self, *args: str) -> None:
        argv = [self.binary, "-p", f"{self.layout.prefix}/", "-e", str(self.layout.error_log)]
        result = subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise GatewayError(f"nginx {' '.join(args)} failed: {' '.join(detail[-3:])}")


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".next")
    partial.write_text(text)
    os.replace(partial, path)


def _with_user(options: GatewayOptions, user: str) -> GatewayOptions:
    from dataclasses import replace

    return replace(options, user=user)
