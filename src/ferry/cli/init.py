"""``ferry init``: a starter project (ferry.yaml, predictor.py, requirements.txt)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ferry.apispec import scaffold

__all__ = ["init"]


@click.command()
@click.argument("directory", default=".", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", help="The API's name (default: from the directory's name).")
def init(directory: Path, name: str | None) -> None:
    """Create a project in DIRECTORY that `ferry deploy` can deploy."""
    api = name or _name_from(directory)
    written = scaffold(directory, api)
    for path in written:
        click.echo(f"created {path}")
    click.echo(
        f"next: save a model as {directory / 'model.joblib'} (joblib.dump), then `ferry deploy "
        f"{directory}`"
    )


def _name_from(directory: Path) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-")
    if not text or not text[0].isalpha():
        text = f"api-{text}" if text else "api"
    return text[:63].rstrip("-")
