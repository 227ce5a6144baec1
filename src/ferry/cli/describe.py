"""``ferry describe API``: replica states, the autoscaler's last decision, recent events."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.text import Text

from ferry.cli.aws_deploy import aws_describe, env_option
from ferry.cli.connection import connect
from ferry.cli.get import api_view
from ferry.cli.render import age, console, output_option, print_json, table

__all__ = ["describe"]


@click.command()
@click.argument("api")
@click.option("--events", "limit", type=int, default=20, show_default=True, help="Events shown.")
@env_option
@click.option("--region", envvar="AWS_REGION", help="AWS region (--env sagemaker|ecs).")
@output_option
def describe(api: str, limit: int, output: str, env: str, region: str | None) -> None:
    """Show API's replicas (state, revision, address, restarts) and its recent events."""
    if env != "local":
        aws_describe(env, api, output, region)
        return
    client = connect()
    try:
        detail = client.api(api, fresh_stats=True)
        events = client.events(api, limit)
        rows = client.apis() if detail["kind"] == "TrafficSplitter" else []
    finally:
        client.close()
    if output == "json":
        print_json({**detail, "events": events})
        return
    console().print(_view(detail, events, rows))


def _view(
    detail: dict[str, Any], events: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> RenderableType:
    parts: list[RenderableType] = [api_view(detail, rows), Text("")]
    replicas = [
        (r["id"], r["revision"], r["state"], r["address"] or "-", r["in_flight"],
         r["restarts"], age(r["started_at"]) if r["started_at"] else "-", r["reason"] or "")
        for r in detail.get("replica_list", [])
    ]  # fmt: skip
    if replicas:
        columns = (
            "replica",
            "revision",
            "state",
            "address",
            "in-flight",
            "restarts",
            "age",
            "reason",
        )
        parts += [table(columns, replicas), Text("")]
    reason = (detail.get("autoscaler") or {}).get("reason")
    if reason:
        parts += [Text(f"autoscaler: {reason}"), Text("")]
    recent = [(_clock(e["at"]), e["level"], e["message"]) for e in events]
    parts.append(table(("time", "level", "event"), recent) if recent else Text("no events"))
    return Group(*parts)


def _clock(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")
