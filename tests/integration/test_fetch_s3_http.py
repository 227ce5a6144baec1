"""Fetching from a real S3 endpoint (moto's server process) and a real local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import shutil
import tarfile
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.integration.s3_server import (
    FAKE_AWS_ENV,
    UNSET_AWS_ENV,
    S3Server,
    free_port,
    moto_s3_server,
)

from ferry.config import ModelSpec
from ferry.errors import ArtifactError
from ferry.models import fetch, open_source

pytestmark = pytest.mark.integration


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blobs(cache_dir: Path) -> list[Path]:
    root = cache_dir / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in UNSET_AWS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server, aws_env: None) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def iris_bytes(iris_model_path: Path) -> bytes:
    return iris_model_path.read_bytes()


# --- S3 ------------------------------------------------------------------------------------


def test_s3_object_is_fetched_once_then_reused_even_offline(
    tmp_path: Path, aws_env: None, iris_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = tmp_path / "cache"
    with moto_s3_server() as server:  # its own server: this test stops it
        server.client().create_bucket(Bucket="models")
        server.client().put_object(Bucket="models", Key="prod/iris.joblib", Body=iris_bytes)
        uri = "s3://models/prod/iris.joblib"
        first = fetch(uri, cache_dir=cache_dir, s3_endpoint_url=server.endpoint_url)
        assert first == cache_dir / "blobs" / _sha(iris_bytes) / "iris.joblib"
        assert first.read_bytes() == iris_bytes
        inode = first.stat().st_ino
        second = fetch(uri, cache_dir=cache_dir, s3_endpoint_url=server.endpoint_url)
        assert second == first
        assert second.stat().st_ino == inode  # validated by ETag, not downloaded again
        server.stop()
        with caplog.at_level(logging.WARNING, logger="ferry.models.fetch"):
            offline = fetch(uri, cache_dir=cache_dir, s3_endpoint_url=server.endpoint_url)
        assert offline == first
        assert "cannot reach S3" in caplog.text
        assert "using the cached copy" in caplog.text
        caplog.clear()
        pinned = fetch(
            uri, cache_dir=cache_dir, s3_endpoint_url=server.endpoint_url, sha256=_sha(iris_bytes)
        )
        assert pinned == first
        assert caplog.text == ""  # a checksum pin needs no request at all


def test_changed_s3_object_is_downloaded_again(tmp_path: Path, s3: S3Server, bucket: str) -> None:
    uri = f"s3://{bucket}/model.joblib"
    s3.client().put_object(Bucket=bucket, Key="model.joblib", Body=b"version 1")
    first = fetch(uri, cache_dir=tmp_path, s3_endpoint_url=s3.endpoint_url)
    s3.client().put_object(Bucket=bucket, Key="model.joblib", Body=b"version 2")
    second = fetch(uri, cache_dir=tmp_path, s3_endpoint_url=s3.endpoint_url)
    assert second != first
    assert (first.read_bytes(), second.read_bytes()) == (b"version 1", b"version 2")


def test_s3_endpoint_comes_from_the_environment(
    tmp_path: Path, s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.client().put_object(Bucket=bucket, Key="m.onnx", Body=b"onnx bytes")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint_url)
    assert fetch(f"s3://{bucket}/m.onnx", cache_dir=tmp_path).read_bytes() == b"onnx bytes"


def test_s3_checksum_mismatch_deletes_the_download(
    tmp_path: Path, s3: S3Server, bucket: str
) -> None:
    s3.client().put_object(Bucket=bucket, Key="m.joblib", Body=b"tampered")
    uri = f"s3://{bucket}/m.joblib"
    expected = _sha(b"original")
    with pytest.raises(ArtifactError) as caught:
        fetch(uri, cache_dir=tmp_path, sha256=expected, s3_endpoint_url=s3.endpoint_url)
    assert str(caught.value).startswith(f"{uri}: checksum mismatch")
    assert f"expected sha256 {expected}, got {_sha(b'tampered')}" in str(caught.value)
    assert _blobs(tmp_path) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_missing_s3_key_is_one_readable_line(tmp_path: Path, s3: S3Server, bucket: str) -> None:
    uri = f"s3://{bucket}/nope.joblib"
    with pytest.raises(ArtifactError) as caught:
        fetch(uri, cache_dir=tmp_path, s3_endpoint_url=s3.endpoint_url)
    assert str(caught.value) == f"{uri}: no such key (check the bucket and key in the URI)"


def test_missing_bucket_says_so(tmp_path: Path, s3: S3Server, aws_env: None) -> None:
    with pytest.raises(ArtifactError, match=r"^s3://no-such-bucket-x/m.joblib: no such bucket"):
        fetch("s3://no-such-bucket-x/m.joblib", cache_dir=tmp_path, s3_endpoint_url=s3.endpoint_url)


def test_no_credentials_says_what_to_set(
    tmp_path: Path, s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ArtifactError) as caught:
        fetch(f"s3://{bucket}/m.joblib", cache_dir=tmp_path, s3_endpoint_url=s3.endpoint_url)
    assert "no AWS credentials found" in str(caught.value)
    assert "AWS_ACCESS_KEY_ID" in str(caught.value)


def test_unreachable_endpoint_without_a_cached_copy(tmp_path: Path, aws_env: None) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    with pytest.raises(ArtifactError, match=r"^s3://b/m.joblib: cannot reach S3"):
        fetch("s3://b/m.joblib", cache_dir=tmp_path, s3_endpoint_url=endpoint)


def test_s3_prefix_is_downloaded_as_a_directory(
    tmp_path: Path, s3: S3Server, bucket: str, iris_bytes: bytes
) -> None:
    client = s3.client()
    client.put_object(Bucket=bucket, Key="models/iris/model.joblib", Body=iris_bytes)
    client.put_object(Bucket=bucket, Key="models/iris/code/inference.py", Body=b"x = 1\n")
    client.put_object(Bucket=bucket, Key="models/iris-old/model.joblib", Body=b"old")
    directory = fetch(
        f"s3://{bucket}/models/iris/", cache_dir=tmp_path, s3_endpoint_url=s3.endpoint_url
    )
    assert directory.name == "iris"
    files = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    assert files == ["code/inference.py", "model.joblib"]
    # without the slash the key names no object, so it is taken as the same prefix
    again = fetch(f"s3://{bucket}/models/iris", cache_dir=tmp_path, s3_endpoint_url=s3.endpoint_url)
    assert again == directory
    source = open_source(
        ModelSpec(uri=f"s3://{bucket}/models/iris"),
        cache_dir=tmp_path,
        s3_endpoint_url=s3.endpoint_url,
    )
    assert (source.framework, source.name) == ("pickle", "model")
    assert source.path == directory / "model.joblib"


def test_sagemaker_model_tar_gz_on_s3_is_unpacked(
    tmp_path: Path, s3: S3Server, bucket: str, iris_bytes: bytes
) -> None:
    archive = _tar_gz({"model.joblib": iris_bytes, "code/requirements.txt": b"scikit-learn\n"})
    s3.client().put_object(Bucket=bucket, Key="job-1/output/model.tar.gz", Body=archive)
    spec = ModelSpec(uri=f"s3://{bucket}/job-1/output/model.tar.gz", sha256=_sha(archive))
    source = open_source(spec, cache_dir=tmp_path, s3_endpoint_url=s3.endpoint_url)
    assert source.framework == "pickle"
    assert source.path == tmp_path / "blobs" / _sha(archive) / "model" / "model.joblib"
    assert source.path.read_bytes() == iris_bytes


# --- http(s) -------------------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, requests: list[str], **kwargs: Any) -> None:
        self.requests = requests
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


class _HttpServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        handler = functools.partial(_Handler, directory=str(root), requests=self.requests)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join()
            self.server.server_close()


@pytest.fixture
def http(tmp_path: Path) -> Iterator[_HttpServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = _HttpServer(root)
    yield server
    server.stop()


def test_http_download_is_cached_and_reused_without_a_request(
    tmp_path: Path, http: _HttpServer, iris_model_path: Path, iris_bytes: bytes
) -> None:
    shutil.copy(iris_model_path, http.root / "iris.joblib")
    cache_dir = tmp_path / "cache"
    uri = f"{http.url}/iris.joblib"
    first = fetch(uri, cache_dir=cache_dir)
    assert first == cache_dir / "blobs" / _sha(iris_bytes) / "iris.joblib"
    assert first.read_bytes() == iris_bytes
    http.stop()
    assert fetch(uri, cache_dir=cache_dir) == first
    assert http.requests == ["/iris.joblib"]


def test_http_open_source_detects_the_downloaded_model(
    tmp_path: Path, http: _HttpServer, iris_model_path: Path
) -> None:
    shutil.copy(iris_model_path, http.root / "iris.joblib")
    source = open_source(ModelSpec(uri=f"{http.url}/iris.joblib"), cache_dir=tmp_path)
    assert (source.framework, source.name, source.load_after_fork) == ("pickle", "iris", False)


def test_http_404_is_one_line_without_the_query(tmp_path: Path, http: _HttpServer) -> None:
    with pytest.raises(ArtifactError) as caught:
        fetch(f"{http.url}/missing.joblib?X-Amz-Signature=secret", cache_dir=tmp_path)
    message = str(caught.value)
    assert message == f"{http.url}/missing.joblib: HTTP 404 Not Found (check the URL)"
    assert _blobs(tmp_path) == []


def test_http_connection_refused(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/m.joblib"
    with pytest.raises(ArtifactError, match=r"cannot connect .*check the host name"):
        fetch(url, cache_dir=tmp_path)


def test_http_checksum_mismatch_deletes_the_download(tmp_path: Path, http: _HttpServer) -> None:
    (http.root / "m.joblib").write_bytes(b"tampered")
    expected = _sha(b"original")
    with pytest.raises(ArtifactError, match=f"expected sha256 {expected}, got"):
        fetch(f"{http.url}/m.joblib", cache_dir=tmp_path, sha256=expected)
    assert _blobs(tmp_path) == []
    # the right pin downloads again instead of trusting a bad cache entry
    good = fetch(f"{http.url}/m.joblib", cache_dir=tmp_path, sha256=_sha(b"tampered"))
    assert good.read_bytes() == b"tampered"


def test_http_model_tar_gz_is_unpacked(tmp_path: Path, http: _HttpServer) -> None:
    (http.root / "model.tar.gz").write_bytes(_tar_gz({"model.onnx": b"onnx"}))
    directory = fetch(f"{http.url}/model.tar.gz", cache_dir=tmp_path)
    assert directory.is_dir()
    assert (directory / "model.onnx").read_bytes() == b"onnx"
    assert (directory.parent / "model.tar.gz").is_file()  # the blob it came from, beside it
