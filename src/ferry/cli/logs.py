"""``ferry logs API``: every replica's log lines, prefixed with the replica id."""

from __future__ import annotations

import re
from typing import Any

import click

from ferry.cli.connection import connect
from ferry.cli.render import output_option, print_json, until_stopped
from ferry.errors import FerryError

__all__ = ["logs"]

_PREFIXED = re.compile(r"^\[(?P<replica>[^\]]+)\] (?P<line>.*)$", re.DOTALL)


@click.command()
@click.argument("api")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Keep printing new lines, from every replica (new ones too), until Ctrl-C, "
    "which ends it with status 0.",
)
@click.option("--tail", type=int, default=100, show_default=True, help="Lines per replica.")
@output_option
def logs(api: str, follow: bool, tail: int, output: str) -> None:
    """Print the logs of API's replicas, each line prefixed with its replica's id
    (with --output json: one {"replica", "line"} object per line)."""
    client = connect()
    try:
        with until_stopped():
            for line in client.logs(api, follow=follow, tail=tail):
                if not line:  # the stream's keep-alive while the replicas log nothing
                    continue
                if output == "json":
                    print_json(_record(line), lines=True)
                else:
                    click.echo(line)
            if follow:  # only the control plane ends a followed stream: it has stopped
                raise FerryError("the log stream ended: the local cluster has stopped")
    finally:
        client.close()


def _record(line: str) -> dict[str, Any]:
    match = _PREFIXED.match(line)
    if match is None:
        return {"replica": None, "line": line}
    return {"replica": match["replica"], "line": match["line"]}
