"""The uploaded model.tar.gz: named by its content, uploaded once."""

from __future__ import annotations

import hashlib

from ferry.runtime.aws.artifact import ModelArchive, split_s3_url


def test_the_key_is_the_api_and_the_content_hash() -> None:
    archive = ModelArchive(b"archive bytes")
    assert archive.sha256 == hashlib.sha256(b"archive bytes").hexdigest()
    assert archive.key("iris") == f"ferry/iris/{archive.sha256[:16]}/model.tar.gz"
    assert ModelArchive(b"other bytes").key("iris") != archive.key("iris")


def test_split_s3_url() -> None:
    assert split_s3_url("s3://bucket/ferry/iris/model.tar.gz") == (
        "bucket",
        "ferry/iris/model.tar.gz",
    )
