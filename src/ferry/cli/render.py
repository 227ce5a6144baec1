"""Output for the deployment commands: rich tables for people, ``--output json`` for tools."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console, RenderableType
from rich.table import Table

__all__ = [
    "age",
    "console",
    "duration_ms",
    "output_option",
    "plain_text",
    "print_json",
    "table",
    "until_stopped",
]

F = TypeVar("F", bound=Callable[..., Any])


def output_option(function: F) -> F:
    """``-o/--output table|json`` on a command that prints data."""
    option = click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="How to print the result.",
    )
    return option(function)


def console() -> Console:
    """A console on the current stdout; wide when it is not a terminal (pipes, tests)."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=200, no_color=True, highlight=False)


def plain_text(renderable: RenderableType) -> str:
    """``renderable`` as the plain text ``console()`` prints to a file or a pipe."""
    buffer = io.StringIO()
    Console(file=buffer, width=200, no_color=True, highlight=False).print(renderable)
    return buffer.getvalue()


def print_json(data: Any, *, lines: bool = False) -> None:
    """``data`` as indented JSON, or as one line (JSON Lines, for a stream of documents)."""
    if lines:
        click.echo(json.dumps(data, sort_keys=True, separators=(",", ":")))
    else:
        click.echo(json.dumps(data, indent=2, sort_keys=True))


@contextlib.contextmanager
def until_stopped() -> Iterator[None]:
    """Around a command that runs until the user stops it (``--watch``, ``--follow``):
    Ctrl-C is the normal way out, so it ends the command with status 0 and no message,
    and so does a reader that went away (``ferry logs API -f | head``)."""
    try:
        yield
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # nothing more can be written; stop Python's own flush at exit from failing too
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A borderless table, Cortex CLI style."""
    result = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for column in columns:
        result.add_column(column, no_wrap=True)
    for row in rows:
        result.add_row(*(str(cell) for cell in row))
    return result


def age(timestamp: float | None, now: float | None = None) -> str:
    """``38s``, ``4m12s``, ``3h5m``, ``2d4h``: how long ago ``timestamp`` was."""
    if not timestamp:
        return "-"
    seconds = max(0, int((now if now is not None else time.time()) - timestamp))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def duration_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    milliseconds = seconds * 1000
    return f"{milliseconds:.3g} ms" if milliseconds < 1000 else f"{seconds:.3g} s"
