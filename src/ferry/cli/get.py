"""``ferry get``: one row per API, as ``cortex get`` prints them; ``ferry get API`` for one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from ferry.cli.aws_deploy import aws_get, env_option
from ferry.cli.connection import connect
from ferry.cli.render import age, console, duration_ms, output_option, print_json, table
from ferry.control.client import ControlClient

__all__ = ["api_view", "apis_table", "get"]

COLUMNS = (
    "api", "status", "up-to-date", "requested", "last update", "avg request", "2XX", "4XX", "5XX"
)  # fmt: skip


@click.command()
@click.argument("api", required=False)
@click.option("-w", "--watch", is_flag=True, help="Refresh every 2 seconds until Ctrl-C.")
@env_option
@click.option("--region", envvar="AWS_REGION", help="AWS region (--env sagemaker|ecs).")
@output_option
def get(api: str | None, watch: bool, output: str, env: str, region: str | None) -> None:
    """List the deployed APIs, or show one API: endpoint, replicas, revision, a curl example."""
    if env != "local":
        aws_get(env, api, output, region)
        return
    client = connect()
    try:
        if output == "json":
            print_json(client.api(api) if api else {"apis": client.apis()})
        elif watch:
            _watch(client, api)
        else:
            console().print(_render(client, api))
    finally:
        client.close()


def _render(client: ControlClient, api: str | None) -> RenderableType:
    return api_view(client.api(api)) if api else apis_table(client.apis())


def _watch(client: ControlClient, api: str | None) -> None:
    with Live(_render(client, api), console=console(), auto_refresh=False) as live:
        while True:
            time.sleep(2)
            live.update(_render(client, api), refresh=True)


def apis_table(rows: Sequence[dict[str, Any]]) -> RenderableType:
    """``ferry get``: realtime APIs, then traffic splitters, Cortex style."""
    if not rows:
        return Text("no apis are deployed (`ferry deploy` deploys a ferry.yaml)")
    now = time.time()
    apis = [_row(row, now) for row in rows if row["kind"] == "RealtimeAPI"]
    parts: list[RenderableType] = [table(COLUMNS, apis)] if apis else []
    splitters = [
        (row["name"], row["status"], row["endpoint"], age(row["last_update"], now))
        for row in rows
        if row["kind"] == "TrafficSplitter"
    ]
    if splitters:
        parts += [
            Text(""),
            table(("traffic splitter", "status", "endpoint", "last update"), splitters),
        ]
    return Group(*parts)


def _row(row: dict[str, Any], now: float) -> tuple[Any, ...]:
    requests, replicas = row["requests"], row["replicas"]
    status = row["status"]
    return (
        row["name"],
        status,
        replicas["up_to_date"],
        replicas["requested"],
        age(row["last_update"], now),
        duration_ms(requests["avg_request_seconds"]),
        requests["2XX"],
        requests["4XX"],
        requests["5XX"],
    )


def api_view(detail: dict[str, Any]) -> RenderableType:
    """``ferry get API``: status, endpoint, replicas by state, revision, a curl example."""
    replicas = detail["replicas"]
    lines = [
        f"status: {detail['status']}" + (f" ({detail['reason']})" if detail["reason"] else ""),
        f"endpoint: {detail['url']}",
        f"revision: {detail['revision']}"
        + (f" (running {detail['running_revision']})"
           if detail["running_revision"] not in (None, detail["revision"]) else ""),
        f"last update: {age(detail['last_update'])} ago",
    ]  # fmt: skip
    parts: list[RenderableType] = [Text("\n".join(lines)), Text("")]
    if detail["kind"] == "RealtimeAPI":
        states = ("requested", "up_to_date", "stale", "starting", "ready", "failed", "terminating")
        counts = [replicas.get(state, 0) for state in states]
        parts += [table([s.replace("_", "-") for s in states], [counts]), Text("")]
    curl = (
        f'curl {detail["url"]} -X POST -H "Content-Type: application/json" '
        "-d '[[5.1, 3.5, 1.4, 0.2]]'"
    )
    parts.append(Text(f"example: {curl}"))
    return Group(*parts)
