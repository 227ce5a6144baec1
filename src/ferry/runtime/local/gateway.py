"""Ferry's own nginx instance: one port in front of every API, reloaded gracefully.

Reloads are rare: replicas live on fixed upstream slots (see ``slots``), so only a new
API, endpoint, splitter, concurrency limit or slot changes the configuration.

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
from ferry.runtime.local.nginx_conf import GatewayLayout, GatewayOptions, config_digest, render
from ferry.runtime.local.probe import local_client

__all__ = ["GatewayError", "NginxGateway", "find_nginx"]

_FALLBACK = Path("/usr/sbin/nginx")


class GatewayError(RuntimeError):
    """The gateway cannot be started, validated or reloaded; the message says why."""


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

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.options.port}"

    @property
    def binary(self) -> str:
        if self._binary is None:
            self._binary = find_nginx()
        return self._binary

    def pid(self) -> int | None:
        """The running master's pid, or None."""
        try:
            pid = int(self.layout.pid.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _master_alive(pid, self.layout.conf) else None

    def apply(self, table: RoutingTable, slots: Mapping[str, Sequence[int]] | None = None) -> bool:
        """Route as ``table`` says over each API's ``slots``; returns True when nginx was
        started or reloaded (a new API, endpoint, splitter, limit or slot; never because
        a replica came or went)."""
        text = render(table, self.layout, self.options, slots)
        with self._lock:
            current = self._read_conf()
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

    def ensure_running(self) -> None:
        """Start nginx (with the last applied routes, or none) if it is not running."""
        with self._lock:
            if self.pid() is not None:
                return
            if self._read_conf() is None:
                self._install(render(RoutingTable(), self.layout, self.options))
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

    def _read_conf(self) -> str | None:
        try:
            return self.layout.conf.read_text()
        except OSError:
            return None

    def _prepare_dirs(self) -> None:
        for path in (self.layout.prefix, self.layout.error_log.parent, self.layout.temp):
            path.mkdir(parents=True, exist_ok=True)

    def _install(self, text: str) -> None:
        """Write ``text`` beside the live config, validate it, then swap it in atomically."""
        self._prepare_dirs()
        candidate = self.layout.prefix / "nginx.conf.next"
        candidate.write_text(text)
        self._run("-t", "-q", "-c", str(candidate))
        os.replace(candidate, self.layout.conf)

    def _start(self) -> None:
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


def _with_user(options: GatewayOptions, user: str) -> GatewayOptions:
    from dataclasses import replace

    return replace(options, user=user)
