"""The ``ferry`` command: a click group; each subcommand lives in its own module."""

from __future__ import annotations

import sys

import click

from ferry import __version__
from ferry.cli.build import build
from ferry.cli.cluster import cluster
from ferry.cli.delete import delete
from ferry.cli.deploy import deploy
from ferry.cli.describe import describe
from ferry.cli.export import export
from ferry.cli.get import get
from ferry.cli.init import init
from ferry.cli.lifecycle import refresh, rollback
from ferry.cli.logs import logs
from ferry.cli.predict import predict
from ferry.cli.serve import serve
from ferry.errors import ArtifactError, ConfigError, FerryError, ModelLoadError

__all__ = ["EXIT_CANNOT_BOOT", "EXIT_ERROR", "EXIT_USAGE", "cli", "main", "run"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CANNOT_BOOT = 3  # the model cannot be fetched or loaded: restarting will not help


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="ferry")
def cli() -> None:
    """ferry: serve, deploy and monitor machine-learning models.

    \b
    Quick start:
      ferry serve model.joblib             # a production HTTP server on :8080
      curl -X POST localhost:8080/predict -d '[[5.1, 3.5, 1.4, 0.2]]'

    Every command takes --help. Docs: docs/quickstart.md.
    """


cli.add_command(serve)
cli.add_command(build)
cli.add_command(export)
for _command in (init, deploy, get, describe, logs, predict, delete, refresh, rollback, cluster):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors become one readable line on stderr, never a traceback."""
    try:
        cli.main(args=argv, prog_name="ferry", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ferry: aborted", err=True)
        return EXIT_ERROR
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Exit as exit_:
        return int(exit_.exit_code)
    except ConfigError as error:
        click.echo(f"ferry: error: {error}", err=True)
        return EXIT_USAGE
    except (ModelLoadError, ArtifactError) as error:
        click.echo(f"ferry: error: {error}", err=True)
        return EXIT_CANNOT_BOOT
    except FerryError as error:
        click.echo(f"ferry: error: {error}", err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
