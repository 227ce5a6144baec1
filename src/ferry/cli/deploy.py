"""``ferry deploy``: send a project to the local cluster and follow it until it is live."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ferry.apispec import load_project
from ferry.cli.aws_deploy import aws_deploy, aws_options, env_option
from ferry.cli.connection import connect
from ferry.cli.render import console, output_option, print_json
from ferry.control.client import ControlClient
from ferry.errors import FerryError

__all__ = ["deploy"]

_ACTIONS = {"created": "creating", "updated": "updating", "unchanged": "up to date:"}


@click.command()
@click.argument("path", default=".", type=click.Path(path_type=Path))
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until live.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait.")
@env_option
@aws_options
@output_option
def deploy(path: Path, wait: bool, timeout: float, output: str, env: str, **aws: Any) -> None:
    """Deploy the APIs of PATH (a ferry.yaml or cortex.yaml, or a folder holding one).

    Starts the local cluster if it is not running, then shows progress until every API
    is live; exits non-zero with the reason if one goes to error.
    """
    if env != "local":
        aws_deploy(path, env, output, **aws)
        return
    project = load_project(path, check_splitter_targets=False)  # fail fast, locally
    client = connect(start=True)
    try:
        outcomes = client.deploy(project.path)
        if output == "table":
            for outcome in outcomes:
                verb = _ACTIONS.get(outcome["action"], outcome["action"])
                click.echo(f"{verb} {outcome['api']} (revision {outcome['revision']})")
        names = [outcome["api"] for outcome in outcomes]
        rows = _wait(client, names, timeout, show=output == "table") if wait else client.apis()
    finally:
        client.close()
    mine = [row for row in rows if row["name"] in names]
    if output == "json":
        print_json({"apis": mine})
    else:
        for row in mine:
            if row["status"] == "live":
                click.echo(f"{row['name']} is live at {row['url']}")
    _fail_on_error(mine)


def _wait(
    client: ControlClient, names: Sequence[str], timeout: float, *, show: bool
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    out = console()
    with out.status("deploying", spinner="dots") if show else _Quiet() as status:
        while True:
            rows = client.apis()
            mine = [row for row in rows if row["name"] in names]
            if status is not None:
                status.update(_progress(mine))
            if all(row["status"] in ("live", "error") for row in mine):
                return rows
            if time.monotonic() >= deadline:
                raise FerryError(
                    f"not live after {timeout:g}s: {_progress(mine)} "
                    "(`ferry describe API` shows why; the deploy goes on in the background)"
                )
            time.sleep(0.05)


def _progress(rows: Sequence[dict[str, Any]]) -> str:
    parts = []
    for row in rows:
        replicas = row["replicas"]
        if row["kind"] == "TrafficSplitter":
            parts.append(f"{row['name']}: {row['status']}")
        else:
            parts.append(
                f"{row['name']}: {row['status']} "
                f"{replicas['up_to_date']}/{replicas['requested']} ready"
            )
    return ", ".join(parts)


def _fail_on_error(rows: Sequence[dict[str, Any]]) -> None:
    failed = [row for row in rows if row["status"] == "error"]
    if failed:
        row = failed[0]
        raise FerryError(f"api {row['name']} failed: {row['reason'] or 'see `ferry describe`'}")


class _Quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None
