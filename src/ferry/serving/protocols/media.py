"""Media types: reading Content-Type and choosing a representation from Accept."""

from __future__ import annotations

from functools import lru_cache

from ferry.errors import NotAcceptable, UnsupportedMediaType

__all__ = [
    "CSV",
    "FORM",
    "JSON",
    "MULTIPART",
    "NPY",
    "NPZ",
    "OCTET_STREAM",
    "TEXT",
    "is_json",
    "media_type",
    "negotiate",
    "unsupported",
]

JSON = "application/json"
CSV = "text/csv"
TEXT = "text/plain"
NPY = "application/x-npy"
NPZ = "application/x-npz"
OCTET_STREAM = "application/octet-stream"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type; parameters such as charset dropped."""
    if not content_type:
        return ""
    return content_type.partition(";")[0].strip().lower()


def is_json(media: str) -> bool:
    """Whether a bare media type is JSON, including ``+json`` suffixes."""
    return media == JSON or media.endswith("+json")


def unsupported(media: str, supported: tuple[str, ...]) -> UnsupportedMediaType:
    """The error for a Content-Type an endpoint does not decode, with a hint for curl -d."""
    hint = ""
    if media == FORM:
        hint = " (curl -d sends this by default: add -H 'Content-Type: application/json')"
    return UnsupportedMediaType(
        f"unsupported Content-Type '{media}'{hint}; supported: {', '.join(supported)}"
    )


def negotiate(accept: str | None, supported: tuple[str, ...], default: str) -> str:
    """The supported media type the client prefers most; ``default`` when Accept is absent.

    Raises ``NotAcceptable`` listing ``supported`` when nothing acceptable remains.
    """
    if not accept:
        return default
    chosen = _negotiate(accept, supported, default)
    if chosen is None:
        raise NotAcceptable(
            f"cannot answer with any of the accepted types ({accept}); "
            f"supported: {', '.join(supported)}"
        )
    return chosen


# Clients send the same few Accept headers over and over, so parsing once per distinct
# header keeps negotiation off the hot path's profile.
@lru_cache(maxsize=256)
def _negotiate(accept: str, supported: tuple[str, ...], default: str) -> str | None:
    ranges = sorted(_parse_accept(accept), key=lambda item: item[1], reverse=True)
    refused = {media for media, quality in ranges if quality <= 0}
    for media, quality in ranges:
        if quality <= 0:
            break
        match = _match(media, supported, default, refused)
        if match is not None:
            return match
    return None


def _parse_accept(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for part in accept.split(","):
        media, _, params = part.partition(";")
        media = media.strip().lower()
        if not media:
            continue
        ranges.append((media, _quality(params)))
    return ranges


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


def _match(media: str, supported: tuple[str, ...], default: str, refused: set[str]) -> str | None:
    if media == "*/*":
        candidates = (default, *supported)
    elif media.endswith("/*"):
        prefix = media[:-1]
        candidates = tuple(s for s in (default, *supported) if s.startswith(prefix))
    else:
        candidates = (media,) if media in supported else ()
    for candidate in candidates:
        if candidate in supported and candidate not in refused:
            return candidate
    return None
