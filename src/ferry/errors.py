"""One exception hierarchy for ferry, and the one table that maps it to HTTP status.

Every error a client or a user can meet is a ``FerryError``: its message says what was
wrong and, where it helps, what was expected. Servers turn it into a JSON body with
``status_for``; the CLI prints ``str(error)`` as one line.
"""

from __future__ import annotations

__all__ = [
    "STATUS",
    "ArtifactError",
    "BadRequest",
    "ConfigError",
    "FerryError",
    "ModelError",
    "ModelLoadError",
    "ModelNotFound",
    "ModelNotReady",
    "NotAcceptable",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RequestTimeout",
    "UnsupportedMediaType",
    "status_for",
]


class FerryError(Exception):
    """Base of every error ferry raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- client errors: the request was wrong -------------------------------------------------


class BadRequest(FerryError):
    """The request body or parameters do not fit what the model expects."""

    code = "bad_request"


class UnsupportedMediaType(FerryError):
    """The Content-Type is not one this endpoint decodes."""

    code = "unsupported_media_type"


class NotAcceptable(FerryError):
    """No representation matches the Accept header."""

    code = "not_acceptable"


class PayloadTooLarge(FerryError):
    """The body is over the server's limit."""

    code = "payload_too_large"


class NotFound(FerryError):
    """No route or resource answers to this path."""

    code = "not_found"


class ModelNotFound(NotFound):
    """The request names a model this server does not serve."""

    code = "model_not_found"


# --- server-side conditions ---------------------------------------------------------------


class ModelNotReady(FerryError):
    """The model is still loading or warming up."""

    code = "model_not_ready"
    retry_after = 1


class Overloaded(FerryError):
    """Too many requests in flight; the client should retry later."""

    code = "overloaded"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimeout(FerryError):
    """The prediction did not finish within the request timeout."""

    code = "timeout"


class ModelError(FerryError):
    """The model raised while predicting; details are in the server log."""

    code = "model_error"


# --- errors met outside a request ---------------------------------------------------------


class ModelLoadError(FerryError):
    """A model file or predictor could not be loaded."""

    code = "model_load_error"


class ArtifactError(FerryError):
    """A model URI could not be fetched, or its checksum did not match."""

    code = "artifact_error"


class ConfigError(FerryError):
    """Settings or a ferry.yaml are invalid."""

    code = "config_error"


STATUS: dict[type[FerryError], int] = {
    BadRequest: 400,
    NotFound: 404,
    NotAcceptable: 406,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    ModelError: 500,
    Overloaded: 503,
    ModelNotReady: 503,
    RequestTimeout: 504,
}


def status_for(error: FerryError) -> int:
    """HTTP status for ``error``: the entry of its nearest class in ``STATUS``, else 500."""
    for cls in type(error).__mro__:
        status = STATUS.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return status
    return 500
