"""Content-Type parsing and Accept negotiation."""

from __future__ import annotations

import pytest

from ferry.errors import NotAcceptable
from ferry.serving.protocols.media import is_json, media_type, negotiate

SUPPORTED = ("application/json", "text/csv", "application/x-npy")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ""),
        ("", ""),
        ("application/json", "application/json"),
        ("Application/JSON; charset=UTF-8", "application/json"),
        (" text/csv ;header=absent", "text/csv"),
    ],
)
def test_media_type_drops_parameters_and_case(header: str | None, expected: str) -> None:
    assert media_type(header) == expected


def test_json_suffixes_are_json() -> None:
    assert is_json("application/json")
    assert is_json("application/vnd.api+json")
    assert not is_json("text/csv")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
        ("application/x-npy", "application/x-npy"),
        ("text/html, text/csv", "text/csv"),
        ("text/csv;q=0.5, application/json", "application/json"),
        ("application/json;q=0.2, text/csv;q=0.9", "text/csv"),
        ("text/*", "text/csv"),
        ("application/*", "application/json"),
        ("application/json;q=0, */*", "text/csv"),
        ("TEXT/CSV", "text/csv"),
        ("image/png, */*;q=0.1", "application/json"),
        ("text/csv;q=oops, application/json;q=0.1", "application/json"),
    ],
)
def test_negotiate_picks_the_preferred_supported_type(accept: str | None, expected: str) -> None:
    assert negotiate(accept, SUPPORTED, "application/json") == expected


def test_default_is_used_for_wildcards() -> None:
    assert negotiate("*/*", SUPPORTED, "text/csv") == "text/csv"
    assert negotiate(None, SUPPORTED, "application/x-npy") == "application/x-npy"


@pytest.mark.parametrize("accept", ["application/xml", "text/html, image/*", "*/*;q=0"])
def test_nothing_acceptable_lists_supported_types(accept: str) -> None:
    with pytest.raises(NotAcceptable) as caught:
        negotiate(accept, SUPPORTED, "application/json")
    assert "supported: application/json, text/csv, application/x-npy" in caught.value.message
