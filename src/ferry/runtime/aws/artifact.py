"""``model.tar.gz`` uploaded once per content to S3.

The archive itself comes from the caller (``ferry.cli.packaging_spec.model_packager``:
the model directory ``ferry export --target sagemaker`` writes, which SageMaker unpacks
into ``/opt/ml/model``). It is byte-reproducible, so its SHA-256 names the upload:
``s3://BUCKET/ferry/<api>/<sha>/model.tar.gz``, skipped when already there.
"""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from ferry.runtime.aws.errors import error_code, translate

__all__ = ["PREFIX", "ModelArchive", "delete_prefix", "split_s3_url", "upload"]

PREFIX = "ferry"


class ModelArchive:
    """The archive bytes and their SHA-256."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sha256 = hashlib.sha256(data).hexdigest()

    def key(self, api: str) -> str:
        """The S3 key for ``api``'s copy of this archive."""
        return f"{PREFIX}/{api}/{self.sha256[:16]}/model.tar.gz"


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
