"""``ferry delete API``: stop its replicas, remove its route, forget it."""

from __future__ import annotations

import click

from ferry.cli.connection import connect
from ferry.cli.render import output_option, print_json

__all__ = ["delete"]


@click.command()
@click.argument("api")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@output_option
def delete(api: str, yes: bool, output: str) -> None:
    """Delete API from the local cluster."""
    client = connect()
    try:
        client.api(api)  # a missing API is an error before asking anything
        if not yes:
            click.confirm(f"delete api {api}?", abort=True)
        result = client.delete(api)
    finally:
        client.close()
    if output == "json":
        print_json(result)
    else:
        click.echo(f"deleting {api}")
