"""``ferry refresh API`` and ``ferry rollback API``: rolling replacements of replicas."""

from __future__ import annotations

import click

from ferry.cli.connection import connect
from ferry.cli.render import output_option, print_json

__all__ = ["refresh", "rollback"]


@click.command()
@click.argument("api")
@output_option
def refresh(api: str, output: str) -> None:
    """Restart every replica of API, without downtime (a rolling update)."""
    client = connect()
    try:
        result = client.refresh(api)
    finally:
        client.close()
    if output == "json":
        print_json(result)
    else:
        click.echo(f"refreshing {api} (revision {result['revision']})")


@click.command()
@click.argument("api")
@output_option
def rollback(api: str, output: str) -> None:
    """Return API to its previous revision (a rolling update)."""
    client = connect()
    try:
        result = client.rollback(api)
    finally:
        client.close()
    if output == "json":
        print_json(result)
    else:
        click.echo(f"rolling {api} back to revision {result['revision']}")
