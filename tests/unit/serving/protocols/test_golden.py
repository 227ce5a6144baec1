"""Protocol behaviour pinned by golden request/response files under tests/golden/.

Each ``NAME.request.json`` holds ``model`` (a fake from conftest), ``method``, ``path``,
``headers`` and ``body`` (JSON) or ``body_text``; ``NAME.response.json`` holds ``status``,
the headers to check and ``body`` (JSON) or ``body_text``. Run with FERRY_UPDATE_GOLDEN=1
to rewrite the response files from the current behaviour, then review the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

GOLDEN = Path(__file__).parents[3] / "golden"
PROTOCOLS = ("predict", "sagemaker", "v2")
CHECKED_HEADERS = ("content-type", "inference-header-content-length")


def _response_file(request_file: Path) -> Path:
    return request_file.with_name(request_file.name.replace(".request.", ".response."))


def _cases() -> list[Any]:
    cases = []
    for protocol in PROTOCOLS:
        for request_file in sorted((GOLDEN / protocol).glob("*.request.json")):
            name = request_file.name.removesuffix(".request.json")
            spec = json.loads(request_file.read_text())
            response_file = _response_file(request_file)
            expected = json.loads(response_file.read_text()) if response_file.exists() else None
            param = (protocol, spec, expected, response_file)
            cases.append(pytest.param(*param, id=f"{protocol}/{name}"))
    return cases


async def _send(client: httpx.AsyncClient, spec: dict[str, Any]) -> httpx.Response:
    if "body_text" in spec:
        content: bytes | None = spec["body_text"].encode()
    elif "body" in spec:
        content = orjson.dumps(spec["body"])
    else:
        content = None
    return await client.request(
        spec.get("method", "POST"), spec["path"], headers=spec.get("headers", {}), content=content
    )


def _observed(response: httpx.Response) -> dict[str, Any]:
    observed: dict[str, Any] = {"status": response.status_code}
    observed["headers"] = {
        name: response.headers[name] for name in CHECKED_HEADERS if name in response.headers
    }
    if not response.content:
        return observed
    if response.headers.get("content-type", "").startswith("application/json"):
        observed["body"] = response.json()
    else:
        observed["body_text"] = response.text
    return observed


def test_golden_files_exist() -> None:
    for protocol in PROTOCOLS:
        requests = list((GOLDEN / protocol).glob("*.request.json"))
        assert requests, f"no golden requests for {protocol}"
        for request_file in requests:
            response_file = _response_file(request_file)
            assert response_file.exists(), f"{response_file} is missing"


@pytest.mark.parametrize(("protocol", "spec", "expected", "response_file"), _cases())
async def test_golden(
    protocol: str,
    spec: dict[str, Any],
    expected: dict[str, Any] | None,
    response_file: Path,
    client_for: Callable[[str, str], httpx.AsyncClient],
) -> None:
    observed = _observed(await _send(client_for(protocol, spec.get("model", "iris")), spec))
    if os.environ.get("FERRY_UPDATE_GOLDEN") == "1":
        text = json.dumps(observed, indent=2, ensure_ascii=False) + "\n"
        await anyio.Path(response_file).write_text(text)
        return
    assert observed == expected
