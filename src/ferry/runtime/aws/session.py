"""Where AWS calls go: region, endpoint override, retry policy, and progress reporting.

boto3's standard chain finds credentials and the region (environment, ``AWS_PROFILE``,
``~/.aws``, instance metadata); ``endpoint_url`` (or ``AWS_ENDPOINT_URL``, which boto3
reads itself) points every client at another endpoint, such as moto's standalone server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from ferry.errors import ConfigError
from ferry.runtime.aws.errors import translate

__all__ = ["RETRY_CONFIG", "AwsTarget", "Progress", "no_progress", "poll", "retry_config"]

Progress = Callable[[str], None]

# "standard" retries throttling and transient errors with exponential backoff and jitter;
# 8 attempts in all, the first included (botocore's max_attempts would count retries only)
MAX_ATTEMPTS = 8
RETRY_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS})


def retry_config() -> Config:
    """``RETRY_CONFIG``, or ``AWS_MAX_ATTEMPTS`` attempts (the SDKs' own variable, the
    first attempt included) when it is set."""
    wanted = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    if not wanted:
        return RETRY_CONFIG
    if not wanted.isdigit() or int(wanted) < 1:
        raise ConfigError(f"AWS_MAX_ATTEMPTS={wanted!r} must be a whole number of 1 or more")
    return Config(retries={"mode": "standard", "total_max_attempts": int(wanted)})


def no_progress(message: str) -> None:
    """A ``Progress`` that says nothing."""


@dataclass
class AwsTarget:
    """An account and region to deploy to; one boto3 session, clients made on demand."""

    region: str | None = None
    endpoint_url: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> Any:
        """A cached boto3 client for ``service`` with the retry policy and endpoint."""
        if service not in self._clients:
            session = boto3.session.Session(region_name=self.region)
            kwargs: dict[str, Any] = {"config": retry_config()}
            if self.endpoint_url:
                kwargs["endpoint_url"] = self.endpoint_url
            with translate(f"creating the {service} client"):
                self._clients[service] = session.client(service, **kwargs)
        return self._clients[service]


def poll(
    check: Callable[[], tuple[bool, str]],
    *,
    timeout_s: float,
    interval_s: float,
    progress: Progress,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Call ``check`` until it returns ``(True, state)``; report each new state.

    Returns the final state; raises ``TimeoutError`` (with the last state) after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        done, state = check()
        if state != last:
            progress(state)
            last = state
        if done:
            return state
        if time.monotonic() >= deadline:
            raise TimeoutError(f"still {state} after {timeout_s:g}s")
        sleep(interval_s)
