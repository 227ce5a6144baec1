"""``model.tar.gz`` in SageMaker's layout, uploaded once per content to S3.

SageMaker unpacks ``ModelDataUrl`` into ``/opt/ml/model``, which ``ferry serve`` serves
when given no model: so a model file goes at the archive root, and a Python predictor's
project (its ``.py`` files and whatever they load) goes there as a directory tree. The
archive is byte-reproducible (sorted names, zero mtimes, no owner), so its SHA-256 names
the upload: ``s3://BUCKET/ferry/<api>/<sha>/model.tar.gz``, skipped when already there.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ferry.apispec import RealtimeAPI
from ferry.errors import ArtifactError, ConfigError
from ferry.runtime.aws.errors import error_code, translate

__all__ = ["PREFIX", "ModelArchive", "build_archive", "delete_prefix", "split_s3_url", "upload"]

PREFIX = "ferry"
_SKIP_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache"})


class ModelArchive:
    """The archive bytes and their SHA-256."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sha256 = hashlib.sha256(data).hexdigest()

    def key(self, api: str) -> str:
        """The S3 key for ``api``'s copy of this archive."""
        return f"{PREFIX}/{api}/{self.sha256[:16]}/model.tar.gz"


def _files(api: RealtimeAPI, root: Path) -> Iterator[tuple[Path, str]]:
    predictor = api.predictor
    if predictor.path is not None:
        yield from _tree(root)
        return
    source = predictor.model_path or (predictor.models.path if predictor.models else None)
    if source is None or "://" in source:
        raise ConfigError(
            f"api {api.name!r}: SageMaker deploys upload a local model file; "
            f"{source!r} is not one (download it first, or set predictor.model_path)"
        )
    path = (root / source).expanduser()
    if path.is_dir():
        yield from _tree(path)
    elif path.is_file():
        yield path, path.name
    else:
        raise ArtifactError(f"api {api.name!r}: model file {path} does not exist")


def _tree(directory: Path) -> Iterator[tuple[Path, str]]:
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_file() and not _SKIP_DIRS.intersection(relative.parts[:-1]):
            yield path, relative.as_posix()


def build_archive(api: RealtimeAPI, root: Path) -> ModelArchive:
    """The reproducible ``model.tar.gz`` of ``api`` (paths relative to ``root``)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path, name in _files(api, root):
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return ModelArchive(buffer.getvalue())


def upload(s3: Any, bucket: str, key: str, archive: ModelArchive) -> bool:
    """Put the archive at ``s3://bucket/key`` unless it is there; True when uploaded."""
    with translate(f"checking s3://{bucket}/{key}"):
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return False
        except ClientError as error:
            if error_code(error) not in ("404", "NoSuchKey", "NotFound"):
                raise
    with translate(f"uploading s3://{bucket}/{key}"):
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=archive.data,
            ContentType="application/gzip",
            Metadata={"sha256": archive.sha256},
        )
    return True


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def delete_prefix(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix``; returns how many there were."""
    deleted = 0
    with translate(f"deleting s3://{bucket}/{prefix}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
    return deleted
