"""A real S3-compatible endpoint for tests: moto's standalone server as a child process.

Usage::

    with moto_s3_server() as server:
        monkeypatch.setenv(...)  # see FAKE_AWS_ENV
        client = server.client()
        client.create_bucket(Bucket="models")
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

# credentials moto accepts; the files point nowhere so a developer's ~/.aws never leaks in
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
UNSET_AWS_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def use_fake_aws(monkeypatch: Any, endpoint_url: str) -> None:
    """Point boto3 at ``endpoint_url`` with FAKE_AWS_ENV, nothing of the developer's own."""
    for name in UNSET_AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class S3Server:
    """A running moto server: its endpoint URL and its process."""

    endpoint_url: str
    process: subprocess.Popen[bytes]

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint with the fake credentials."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).client("s3", endpoint_url=self.endpoint_url)

    def stop(self) -> None:
        """Stop the server (idempotent); later requests to it are refused."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def moto_s3_server(timeout: float = 60.0) -> Iterator[S3Server]:
    """Start ``python -m moto.server`` on a free 127.0.0.1 port and wait until it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = S3Server(f"http://127.0.0.1:{port}", process)
    try:
        _wait_until_up(server, timeout)
        yield server
    finally:
        server.stop()


def _wait_until_up(server: S3Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"moto server exited with {server.process.returncode}")
        try:
            httpx.get(f"{server.endpoint_url}/moto-api/", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server at {server.endpoint_url} not up after {timeout} s")
