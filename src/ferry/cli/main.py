"""The ``ferry`` command: a click group; each subcommand lives in its own module."""

from __future__ import annotations

import importlib
import sys

import click

from ferry import __version__
from ferry.errors import ArtifactError, ConfigError, FerryError, ModelLoadError

__all__ = ["EXIT_CANNOT_BOOT", "EXIT_ERROR", "EXIT_USAGE", "cli", "main", "run"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CANNOT_BOOT = 3  # the model cannot be fetched or loaded: restarting will not help


# Each command's module is imported only when that command runs: `ferry serve` must not pay
# for importing the packaging, AWS and control-plane code at every start.
_COMMANDS = {
    "serve": "ferry.cli.serve:serve",
    "build": "ferry.cli.build:build",
    "export": "ferry.cli.export:export",
    "init": "ferry.cli.init:init",
    "deploy": "ferry.cli.deploy:deploy",
    "get": "ferry.cli.get:get",
    "describe": "ferry.cli.describe:describe",
    "logs": "ferry.cli.logs:logs",
    "predict": "ferry.cli.predict:predict",
    "delete": "ferry.cli.delete:delete",
    "refresh": "ferry.cli.lifecycle:refresh",
    "rollback": "ferry.cli.lifecycle:rollback",
    "cluster": "ferry.cli.cluster:cluster",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, name = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), name)
        return command


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="ferry")
def cli() -> None:
    """ferry: serve, deploy and monitor machine-learning models.

    \b
    Quick start:
      ferry serve model.joblib             # a production HTTP server on :8080
      curl -X POST localhost:8080/predict -d '[[5.1, 3.5, 1.4, 0.2]]'

    Every command takes --help. Docs: docs/quickstart.md.
    """


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
