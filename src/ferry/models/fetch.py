"""Turn a model URI into a local path: local files in place, http(s) and s3 into the cache.

Remote downloads land in the content-addressed ``ArtifactCache``; a ``.tar.gz``/``.tgz``/
``.tar`` model archive is unpacked and its directory returned. Every failure is an
``ArtifactError`` whose one line says what went wrong and what to check.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from ferry.errors import ArtifactError
from ferry.models.cache import ArtifactCache, file_sha256, is_archive

if TYPE_CHECKING:
    import httpx

__all__ = ["fetch", "local_path"]

log = logging.getLogger(__name__)

_HTTP_TIMEOUT_S = 30.0
_CONNECT_TIMEOUT_S = 10.0
_CHUNK = 1024 * 1024


def fetch(
    uri: str,
    *,
    cache_dir: Path,
    sha256: str | None = None,
    s3_endpoint_url: str | None = None,
) -> Path:
    """A local path holding the artifact at ``uri``.

    ``uri`` is a path, ``file://``, ``http(s)://`` or ``s3://bucket/key`` (a key ending in
    ``/``, or one that names a prefix, downloads every object under it into a directory).
    Local files are returned in place; remote ones are downloaded once into ``cache_dir``.
    ``sha256`` is checked against the file's content. ``s3_endpoint_url`` overrides the S3
    endpoint (default: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, else AWS).
    """
    cache = ArtifactCache(cache_dir)
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        path = _fetch_http(uri, cache, sha256)
    elif scheme == "s3":
        endpoint = (
            s3_endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        path = _fetch_s3(uri, cache, sha256, endpoint or None)
    elif scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive
        path = _local(uri, sha256)
    else:
        raise ArtifactError(
            f"{_display(uri)}: unsupported URI scheme {scheme!r} "
            "(expected a path, file://, http(s):// or s3://)"
        )
    return cache.unpacked(path) if is_archive(path) else path


def local_path(uri: str) -> Path:
    """The filesystem path a plain path or ``file://`` URI names."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        return Path(uri).expanduser()
    # file:///x and file://localhost/x are local; file://server/x is a network share
    host = "" if parts.netloc in ("", "localhost") else f"//{parts.netloc}"
    return Path(url2pathname(host + parts.path))


def _local(uri: str, sha256: str | None) -> Path:
    path = local_path(uri)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist")
    if sha256 is None:
        return path
    if not path.is_file():
        raise ArtifactError(f"{path}: a sha256 checksum can only verify a file, not a directory")
    got = file_sha256(path)
    if got != sha256:
        raise ArtifactError(f"{path}: checksum mismatch: expected sha256 {sha256}, got {got}")
    return path


def _display(uri: str) -> str:
    """``uri`` without its query: presigned URLs carry credentials there."""
    parts = urlsplit(uri)
    return parts._replace(query="", fragment="").geturl()


def _filename(url_path: str, default: str) -> str:
    name = PurePosixPath(unquote(url_path)).name
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".")
    return name or default


# --- http(s) -------------------------------------------------------------------------------


def _fetch_http(uri: str, cache: ArtifactCache, sha256: str | None) -> Path:
    entry = cache.lookup(uri)
    # an http URL is taken to name immutable content; re-fetch only for a new checksum pin
    if entry is not None and (sha256 is None or entry.sha256 == sha256):
        return entry.path
    with cache.staging() as staged:
        _download_http(uri, staged)
        filename = _filename(urlsplit(uri).path, "artifact")
        return cache.add_file(uri, staged, filename, sha256=sha256, etag=None, shown=_display(uri))


def _download_http(uri: str, staged: Path) -> None:
    import httpx  # imported on use: it costs a noticeable share of CLI start-up

    shown = _display(uri)
    timeout = httpx.Timeout(_HTTP_TIMEOUT_S, connect=_CONNECT_TIMEOUT_S)
    try:
        with httpx.stream("GET", uri, follow_redirects=True, timeout=timeout) as response:
            if response.status_code >= 400:
                raise ArtifactError(f"{shown}: {_http_status_hint(response)}")
            with staged.open("wb") as f:
                for chunk in response.iter_bytes(_CHUNK):
                    f.write(chunk)
    except httpx.ConnectError as exc:
        raise ArtifactError(
            f"{shown}: cannot connect ({exc}); check the host name and that the server is up"
        ) from exc
    except httpx.TimeoutException as exc:
        raise ArtifactError(f"{shown}: timed out; check the network or try again") from exc
    except httpx.HTTPError as exc:
        raise ArtifactError(f"{shown}: download failed: {exc}") from exc


def _http_status_hint(response: httpx.Response) -> str:
    code = response.status_code
    # the standard phrase, not the server's own wording, so messages read the same everywhere
    phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else ""
    status = f"HTTP {code} {phrase}".rstrip()
    if code in (404, 410):
        return f"{status} (check the URL)"
    if code in (401, 403):
        return f"{status} (check the credentials or access rights for this URL)"
    if code >= 500:
        return f"{status} (the server failed; try again later)"
    return status


# --- s3 ------------------------------------------------------------------------------------


class _UnreachableError(ArtifactError):
    """The S3 endpoint could not be reached at all (as opposed to an answer saying no)."""


class _MissingKeyError(ArtifactError):
    """S3 answered that the key does not exist."""


@dataclass(frozen=True, slots=True)
class _S3Object:
    """What the bucket holds at a URI: one object, or the keys under a prefix."""

    bucket: str
    key: str
    tag: str
    keys: tuple[tuple[str, str], ...] | None = None  # (key, etag) for a prefix


def _fetch_s3(uri: str, cache: ArtifactCache, sha256: str | None, endpoint: str | None) -> Path:
    cache_key = uri if endpoint is None else f"{uri} @ {endpoint}"
    entry = cache.lookup(cache_key)
    if entry is not None and sha256 is not None and entry.sha256 == sha256:
        return entry.path  # content pinned by checksum: nothing to ask the bucket
    client = _s3_client(uri, endpoint)
    try:
        try:
            remote = _describe(client, uri)
        except _UnreachableError as exc:
            if entry is None:
                raise
            log.warning("%s; using the cached copy at %s", exc, entry.path)
            return entry.path
        if entry is not None and entry.etag == remote.tag and sha256 is None:
            return entry.path  # unchanged since it was cached
        if remote.keys is None:
            return _download_object(client, uri, remote, cache, cache_key, sha256)
        if sha256 is not None:
            raise ArtifactError(f"{uri}: a sha256 checksum can only verify one file, not a prefix")
        return _download_prefix(client, uri, remote, cache, cache_key)
    finally:
        client.close()


def _s3_client(uri: str, endpoint: str | None) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ArtifactError(f"{uri}: s3:// URIs need boto3: pip install 'ferry[s3]'") from exc
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10)
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def _describe(client: Any, uri: str) -> _S3Object:
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket:
        raise ArtifactError(f"{uri}: no bucket in the URI (expected s3://bucket/key)")
    if key and not key.endswith("/"):
        try:
            head = _s3_call(uri, client.head_object, Bucket=bucket, Key=key)
            return _S3Object(bucket, key, str(head["ETag"]))
        except _MissingKeyError:
            pass
        key += "/"  # no object with that name: maybe a "directory" of objects
    keys = _list_prefix(client, uri, bucket, key)
    if not keys:
        raise ArtifactError(f"{uri}: no such key (check the bucket and key in the URI)")
    tag = hashlib.sha256("\n".join(f"{k} {e}" for k, e in keys).encode()).hexdigest()
    return _S3Object(bucket, key, tag, keys)


def _list_prefix(client: Any, uri: str, bucket: str, prefix: str) -> tuple[tuple[str, str], ...]:
    keys: list[tuple[str, str]] = []
    token: dict[str, str] = {}
    while True:
        page = _s3_call(uri, client.list_objects_v2, Bucket=bucket, Prefix=prefix, **token)
        keys += [
            (str(o["Key"]), str(o["ETag"])) for o in page.get("Contents", ()) if o["Key"][-1] != "/"
        ]
        if not page.get("IsTruncated"):
            return tuple(sorted(keys))
        token = {"ContinuationToken": page["NextContinuationToken"]}


def _download_object(
    client: Any,
    uri: str,
    remote: _S3Object,
    cache: ArtifactCache,
    cache_key: str,
    sha256: str | None,
) -> Path:
    with cache.staging() as staged:
        _get_object(client, uri, remote.bucket, remote.key, remote.tag, staged)
        filename = _filename(remote.key, "artifact")
        return cache.add_file(
            cache_key, staged, filename, sha256=sha256, etag=remote.tag, shown=uri
        )


def _download_prefix(
    client: Any, uri: str, remote: _S3Object, cache: ArtifactCache, cache_key: str
) -> Path:
    with cache.staging(directory=True) as staged:
        for key, etag in remote.keys or ():
            relative = PurePosixPath(key[len(remote.key) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise ArtifactError(f"{uri}: refusing key {key!r}: it points outside the prefix")
            target = staged.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            _get_object(client, uri, remote.bucket, key, etag, target)
        dirname = _filename(remote.key.rstrip("/"), remote.bucket)
        return cache.add_tree(cache_key, staged, dirname, etag=remote.tag)


def _get_object(client: Any, uri: str, bucket: str, key: str, etag: str, target: Path) -> None:
    # IfMatch: the bytes we store are the version whose ETag we record, even if it changes
    response = _s3_call(uri, client.get_object, Bucket=bucket, Key=key, IfMatch=etag)
    from botocore.exceptions import BotoCoreError

    try:
        with target.open("wb") as f:
            for chunk in response["Body"].iter_chunks(_CHUNK):
                f.write(chunk)
    except BotoCoreError as exc:
        raise ArtifactError(f"{uri}: download of {key} broke off ({exc}); try again") from exc


_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_S3_HINTS = {
    "NoSuchBucket": "no such bucket (check the bucket name and the region/endpoint)",
    "403": "access denied (check AWS credentials / the bucket policy)",
    "AccessDenied": "access denied (check AWS credentials / the bucket policy)",
    "InvalidAccessKeyId": "the AWS access key was rejected (check AWS credentials)",
    "SignatureDoesNotMatch": "the AWS secret key was rejected (check AWS credentials)",
    "ExpiredToken": "the AWS session token has expired (refresh your AWS credentials)",
    "PreconditionFailed": "the object changed during the download; try again",
    "412": "the object changed during the download; try again",
}


def _s3_call(uri: str, method: Any, **kwargs: Any) -> Any:
    """Call one S3 API method, turning every botocore failure into a one-line error."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        NoCredentialsError,
    )

    try:
        return method(**kwargs)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            raise _MissingKeyError(
                f"{uri}: no such key (check the bucket and key in the URI)"
            ) from exc
        hint = _S3_HINTS.get(code, f"S3 error {code or exc}")
        raise ArtifactError(f"{uri}: {hint}") from exc
    except NoCredentialsError as exc:
        raise ArtifactError(
            f"{uri}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an instance role)"
        ) from exc
    except ConnectionError as exc:
        raise _UnreachableError(
            f"{uri}: cannot reach S3 ({exc}); check the network or the endpoint URL"
        ) from exc
    except BotoCoreError as exc:
        raise ArtifactError(f"{uri}: S3 request failed: {exc}") from exc
