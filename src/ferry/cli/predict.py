"""``ferry predict API --data JSON|@file``: one request through the gateway."""

from __future__ import annotations

import json
from pathlib import Path

import click
import httpx

from ferry.cli.connection import connect
from ferry.cli.render import output_option
from ferry.errors import ConfigError, FerryError

__all__ = ["predict"]


@click.command()
@click.argument("api")
@click.option(
    "-d", "--data", required=True, help="The request body: JSON, or @FILE to send a file."
)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait.")
@output_option
def predict(api: str, data: str, timeout: float, output: str) -> None:
    """Send one prediction request to API through the gateway and print the answer
    (with --output json: the answer as one line of JSON, a text answer as a JSON string)."""
    body, content_type = _body(data)
    client = connect()
    try:
        url = client.api(api)["url"]
    finally:
        client.close()
    try:
        response = httpx.post(
            url, content=body, headers={"content-type": content_type}, timeout=timeout
        )
    except httpx.HTTPError as error:
        raise FerryError(f"cannot reach the gateway at {url}: {error}") from None
    if response.status_code >= 400:
        raise FerryError(f"{api} answered {response.status_code}: {_message(response)}")
    click.echo(_as_json(response) if output == "json" else _pretty(response))


def _body(data: str) -> tuple[bytes, str]:
    if data.startswith("@"):
        path = Path(data[1:]).expanduser()
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise ConfigError(f"--data {data}: cannot read it: {error.strerror}") from None
    else:
        raw = data.encode()
    try:
        json.loads(raw)
    except ValueError:
        if not data.startswith("@"):
            raise ConfigError("--data is not valid JSON (use @FILE to send a file as is)") from None
        return raw, "application/octet-stream"
    return raw, "application/json"


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text.strip()[:300]


def _as_json(response: httpx.Response) -> str:
    if "json" in response.headers.get("content-type", ""):
        try:
            return json.dumps(response.json())
        except ValueError:
            pass
    return json.dumps(response.text)


def _pretty(response: httpx.Response) -> str:
    if "json" in response.headers.get("content-type", ""):
        try:
            return json.dumps(response.json(), indent=2)
        except ValueError:
            pass
    return response.text
