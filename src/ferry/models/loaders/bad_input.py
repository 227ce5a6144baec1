"""Which framework exceptions mean "the request was wrong" (400) rather than "the model broke".

The mapping is deliberately small and explicit: a message fragment we have seen a framework
raise for bad input values. Anything else propagates and the runner answers 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ferry.errors import BadRequest

__all__ = ["BAD_INPUT_MESSAGES", "input_errors"]

BAD_INPUT_MESSAGES: tuple[str, ...] = (
    "contains NaN",  # scikit-learn input validation
    "contains infinity",  # scikit-learn input validation
    "could not convert string to float",  # numpy, inside scikit-learn's check_array
    "Found unknown categories",  # OneHotEncoder(handle_unknown="error")
    "uniformly strings or numbers",  # encoders given a number where a string was fitted
    "shapes cannot be multiplied",  # torch: a row of the wrong width into a Linear layer
)


@contextmanager
def input_errors() -> Iterator[None]:
    """Re-raise a framework error caused by the request's values as ``BadRequest``."""
    try:
        yield
    except (ValueError, TypeError, RuntimeError) as error:
        line = _line_with_fragment(str(error))
        if line is None:
            raise
        raise BadRequest(line) from error


def _line_with_fragment(message: str) -> str | None:
    # The matching line, not the first: TorchScript puts its interpreter trace first.
    for line in message.splitlines():
        if any(fragment in line for fragment in BAD_INPUT_MESSAGES):
            return line.strip()
    return None
