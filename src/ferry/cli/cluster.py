"""``ferry cluster up|down|info``: the local cluster's control plane.

Imports are deferred to the commands that need them: ``cluster up --foreground`` (the
control-plane process) starts the backend, and with it the zygote that forks replicas,
before it imports the server, so module-level imports here would delay every cold start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ferry.cli.connection import connect, state_dir
from ferry.cli.render import console, output_option, print_json, table
from ferry.errors import FerryError

if TYPE_CHECKING:
    from ferry.runtime.base import RuntimeBackend

__all__ = ["cluster"]


@click.group()
def cluster() -> None:
    """Start, stop and inspect the local cluster (control plane, gateway, replicas)."""


@cluster.command()
@click.option("--foreground", is_flag=True, help="Run the control plane in this process.")
@click.option(
    "--gateway-port",
    type=int,
    default=8888,
    show_default=True,
    envvar="FERRY_GATEWAY_PORT",
    help="Port of the gateway in front of every API.",
)
@click.option(
    "--prefork/--no-prefork",
    default=True,
    show_default=True,
    envvar="FERRY_PREFORK",
    help="Fork replicas from a pre-warmed process (fast starts); off: a fresh one each.",
)
def up(foreground: bool, gateway_port: int, prefork: bool) -> None:
    """Start the local cluster (`ferry deploy` does this on demand)."""
    directory = state_dir()
    if foreground:
        from ferry.control.launch import run_control_plane
        from ferry.monitoring.logging import configure_logging

        configure_logging("info", "text")
        factory = local_backend_factory(directory, gateway_port, prefork=prefork)
        code = run_control_plane(directory, factory)
        raise click.exceptions.Exit(code)
    from ferry.control.client import ClusterNotRunningError, start_control_plane

    try:
        client = connect()
    except ClusterNotRunningError:
        os.environ["FERRY_GATEWAY_PORT"] = str(gateway_port)
        os.environ["FERRY_PREFORK"] = "1" if prefork else "0"
        start_control_plane(directory)
        client = connect()
        verb = "started"
    else:
        verb = "already running:"
    try:
        info = client.cluster()
    finally:
        client.close()
    click.echo(
        f"local cluster {verb} control plane {info['url']} (pid {info['pid']}), "
        f"gateway {info['gateway_url']}"
    )


def local_backend_factory(
    directory: Path, gateway_port: int, *, prefork: bool = True
) -> Callable[[], RuntimeBackend]:
    """Builds the local runtime backend (replica processes behind nginx) when called.

    The zygote (``prefork``) is started first, before the backend's own imports, so its
    preloading begins as early as the control-plane process allows."""
    try:
        from ferry.runtime.local.forking import PreforkProcesses
    except ImportError as error:
        raise FerryError(
            f"the local runtime (ferry.runtime.local) is not available in this build: {error}"
        ) from None

    def build() -> RuntimeBackend:
        runtime = directory / "runtime"
        processes = PreforkProcesses(runtime / "zygote") if prefork else None
        try:
            from ferry.runtime.local import LocalBackend

            return LocalBackend(
                runtime, gateway_port=gateway_port, prefork=prefork, processes=processes
            )
        except BaseException:
            if processes is not None:
                processes.close()
            raise

    return build


@cluster.command()
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait.")
def down(timeout: float) -> None:
    """Stop every replica, the gateway and the control plane; deployments are kept."""
    from ferry.control.client import ClusterNotRunningError

    try:
        client = connect()
    except ClusterNotRunningError:
        click.echo("the local cluster is not running")
        return
    try:
        info = client.cluster()
        client.shutdown(stop_replicas=True)
    finally:
        client.close()
    if not _wait_exit(int(info["pid"]), timeout):
        raise FerryError(f"the control plane (pid {info['pid']}) did not stop in {timeout:g}s")
    click.echo(
        f"stopped the local cluster; {info['apis']} api(s) kept, `ferry cluster up` "
        "brings them back"
    )


def _wait_exit(pid: int, timeout: float) -> bool:
    from ferry.control.client import process_alive

    if pid == os.getpid():  # an in-process control plane (tests)
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.1)
    return False


@cluster.command()
@output_option
def info(output: str) -> None:
    """Where the control plane and gateway listen, and what they run."""
    client = connect()
    try:
        data = client.cluster()
    finally:
        client.close()
    if output == "json":
        print_json(data)
        return
    keys = ("url", "pid", "gateway_url", "backend", "state_dir", "version", "apis", "replicas")
    rows = [(key.replace("_", " "), data.get(key, "-")) for key in keys]
    console().print(table(("", ""), rows))
