"""``ferry get``: one row per API, as ``cortex get`` prints them; ``ferry get API`` for one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from ferry.cli.aws_deploy import aws_get, env_option
from ferry.cli.connection import connect
from ferry.cli.render import (
    age,
    console,
    duration_ms,
    output_option,
    plain_text,
    print_json,
    table,
    until_stopped,
)
from ferry.control.client import ControlClient

__all__ = ["api_view", "apis_table", "get", "splitter_targets"]

COLUMNS = (
    "api", "status", "up-to-date", "requested", "last update", "avg request", "2XX", "4XX", "5XX"
)  # fmt: skip
SPLITTER_COLUMNS = ("traffic splitter", "status", "apis", "endpoint", "last update")
TARGET_COLUMNS = (
    "api", "weight", "status", "up-to-date", "requested", "avg request", "2XX", "4XX", "5XX"
)  # fmt: skip
REPLICA_STATES = ("requested", "up_to_date", "stale", "starting", "ready", "failed", "terminating")
WATCH_INTERVAL_S = 2.0


@click.command()
@click.argument("api", required=False)
@click.option(
    "-w",
    "--watch",
    is_flag=True,
    help="Redraw every 2 seconds until Ctrl-C, which ends it with status 0 "
    "(with --output json: one JSON document per line, per refresh).",
)
@env_option
@click.option("--region", envvar="AWS_REGION", help="AWS region (--env sagemaker|ecs).")
@output_option
def get(api: str | None, watch: bool, output: str, env: str, region: str | None) -> None:
    """List the deployed APIs, or show one API: endpoint, replicas, revision, a curl example."""
    if env != "local":
        if watch:
            raise click.UsageError(f"--watch works on the local cluster, not with --env {env}")
        aws_get(env, api, output, region)
        return
    client = connect()
    try:
        if watch:
            with until_stopped():
                _watch(client, api, output)
        elif output == "json":
            print_json(_data(client, api))
        else:
            console().print(_render(client, api))
    finally:
        client.close()


def _data(client: ControlClient, api: str | None) -> dict[str, Any]:
    # the request counters as of now, not of the control plane's last 10 s read
    return client.api(api, fresh_stats=True) if api else {"apis": client.apis(fresh_stats=True)}


def _render(client: ControlClient, api: str | None) -> RenderableType:
    if api is None:
        rows = client.apis(fresh_stats=True)
        splits = {r["name"]: client.api(r["name"]) for r in rows if r["kind"] == "TrafficSplitter"}
        return apis_table(rows, splits)
    detail = client.api(api, fresh_stats=True)
    return api_view(detail, client.apis() if detail["kind"] == "TrafficSplitter" else ())


def _watch(client: ControlClient, api: str | None, output: str) -> None:
    """Redraw in place on a terminal; print each refresh in turn to a file or a pipe."""
    out = console()
    if output == "table" and out.is_terminal:
        _redraw(client, api, out)
    else:
        _append(client, api, output)


def _redraw(client: ControlClient, api: str | None, out: Console) -> None:
    with Live(_render(client, api), console=out, auto_refresh=False) as live:
        while True:
            time.sleep(WATCH_INTERVAL_S)
            live.update(_render(client, api), refresh=True)


def _append(client: ControlClient, api: str | None, output: str) -> None:
    while True:  # written with click: a closed pipe ends the command (``until_stopped``)
        if output == "json":
            print_json(_data(client, api), lines=True)
        else:
            click.echo(plain_text(_render(client, api)))
        time.sleep(WATCH_INTERVAL_S)


def apis_table(
    rows: Sequence[dict[str, Any]], splitters: dict[str, dict[str, Any]] | None = None
) -> RenderableType:
    """``ferry get``: realtime APIs, then traffic splitters with their weights, Cortex style.

    ``splitters`` holds each splitter's detail (``ferry get SPLITTER``), for its weights."""
    if not rows:
        return Text("no apis are deployed (`ferry deploy` deploys a ferry.yaml)")
    now = time.time()
    apis = [_row(row, now) for row in rows if row["kind"] == "RealtimeAPI"]
    parts: list[RenderableType] = [table(COLUMNS, apis)] if apis else []
    splits = [
        (
            row["name"],
            row["status"],
            " ".join(_weight_text(t) for t in splitter_targets((splitters or {}).get(row["name"])))
            or "-",
            row["endpoint"],
            age(row["last_update"], now),
        )
        for row in rows
        if row["kind"] == "TrafficSplitter"
    ]
    if splits:
        parts += [Text("")] if parts else []
        parts.append(table(SPLITTER_COLUMNS, splits))
    return Group(*parts)


def splitter_targets(detail: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A splitter's ``apis`` (``name``, ``weight``, ``shadow``) from its spec."""
    spec = (detail or {}).get("spec") or {}
    targets = spec.get("apis") or []
    return [
        {"name": t["name"], "weight": t["weight"], "shadow": bool(t.get("shadow", False))}
        for t in targets
    ]


def _weight_text(target: dict[str, Any]) -> str:
    """``iris-forest:80``; a shadow's weight is the share of requests copied to it."""
    return f"{target['name']}:{target['weight']}" + (" (shadow)" if target["shadow"] else "")


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


def api_view(detail: dict[str, Any], rows: Sequence[dict[str, Any]] = ()) -> RenderableType:
    """``ferry get API``: status, endpoint, revision, replicas by state and a curl example;
    for a traffic splitter, its APIs with their weights and counters (from ``rows``)."""
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
        counts = [detail["replicas"].get(state, 0) for state in REPLICA_STATES]
        parts += [table([s.replace("_", "-") for s in REPLICA_STATES], [counts]), Text("")]
    else:
        parts += [_targets_table(detail, rows), Text("")]
    curl = f'curl {detail["url"]} -X POST -H "Content-Type: application/json" -d @sample.json'
    parts.append(Text(f"example: {curl}"))
    return Group(*parts)


def _targets_table(detail: dict[str, Any], rows: Sequence[dict[str, Any]]) -> RenderableType:
    by_name = {row["name"]: row for row in rows}
    now = time.time()
    lines = []
    for target in splitter_targets(detail):
        weight = f"{target['weight']}" + (" (shadow)" if target["shadow"] else "")
        row = by_name.get(target["name"])
        if row is None:
            lines.append((target["name"], weight, "not deployed", "-", "-", "-", "-", "-", "-"))
            continue
        name, status, up_to_date, requested, _, *requests = _row(row, now)
        lines.append((name, weight, status, up_to_date, requested, *requests))
    return table(TARGET_COLUMNS, lines)
