"""``ferry delete API``: stop its replicas, remove its route, forget it."""

from __future__ import annotations

import click

from ferry.cli.aws_deploy import aws_delete, env_option
from ferry.cli.connection import connect
from ferry.cli.render import output_option, print_json

__all__ = ["delete"]


@click.command()
@click.argument("api")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@env_option
@click.option("--region", envvar="AWS_REGION", help="AWS region (--env sagemaker|ecs).")
@click.option("--bucket", envvar="FERRY_BUCKET", help="SageMaker: also clean ferry/API/ here.")
@output_option
def delete(
    api: str, yes: bool, output: str, env: str, region: str | None, bucket: str | None
) -> None:
    """Delete API from the local cluster."""
    if env != "local":
        if not yes:
            click.confirm(f"delete api {api} from {env}?", abort=True)
        aws_delete(env, api, output, region, bucket)
        return
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
