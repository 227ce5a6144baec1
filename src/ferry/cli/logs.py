"""``ferry logs API``: every replica's log lines, prefixed with the replica id."""

from __future__ import annotations

import click

from ferry.cli.connection import connect

__all__ = ["logs"]


@click.command()
@click.argument("api")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--tail", type=int, default=100, show_default=True, help="Lines per replica.")
def logs(api: str, follow: bool, tail: int) -> None:
    """Print the logs of API's replicas."""
    client = connect()
    try:
        for line in client.logs(api, follow=follow, tail=tail):
            click.echo(line)
    finally:
        client.close()
