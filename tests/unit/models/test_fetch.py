"""Local fetching, the artifact cache and model archive unpacking (no network here)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from ferry.errors import ArtifactError
from ferry.models import cache as cache_module
from ferry.models.cache import ArtifactCache, write_atomic
from ferry.models.fetch import fetch


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    mode = "w:gz" if path.name.endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


# --- local paths ---------------------------------------------------------------------------


def test_local_path_is_returned_in_place_without_copying(tmp_path: Path) -> None:
    model = tmp_path / "iris.joblib"
    model.write_bytes(b"model bytes")
    cache_dir = tmp_path / "cache"
    assert fetch(str(model), cache_dir=cache_dir) == model
    assert _files_under(cache_dir) == []


def test_file_uri_is_returned_in_place(tmp_path: Path) -> None:
    model = tmp_path / "my model.onnx"
    model.write_bytes(b"onnx")
    assert fetch(model.as_uri(), cache_dir=tmp_path / "cache") == model


def test_local_checksum_is_verified_and_the_file_kept(tmp_path: Path) -> None:
    model = tmp_path / "iris.joblib"
    model.write_bytes(b"model bytes")
    assert fetch(str(model), cache_dir=tmp_path / "c", sha256=_sha(b"model bytes")) == model
    wrong = _sha(b"other")
    with pytest.raises(ArtifactError) as caught:
        fetch(str(model), cache_dir=tmp_path / "c", sha256=wrong)
    assert f"expected sha256 {wrong}, got {_sha(b'model bytes')}" in str(caught.value)
    assert model.read_bytes() == b"model bytes"  # the user's own file is never deleted


def test_missing_local_file_is_one_readable_line(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"nope\.joblib does not exist$"):
        fetch(str(tmp_path / "nope.joblib"), cache_dir=tmp_path / "c")


def test_unsupported_scheme_names_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"unsupported URI scheme 'gs'.*s3://"):
        fetch("gs://bucket/model.joblib", cache_dir=tmp_path)


# --- the cache -----------------------------------------------------------------------------


def _add(cache: ArtifactCache, key: str, data: bytes, *, sha256: str | None = None) -> Path:
    with cache.staging() as staged:
        staged.write_bytes(data)
        return cache.add_file(key, staged, "model.joblib", sha256=sha256, etag="e1")


def test_cache_stores_blobs_by_content_digest_and_indexes_the_uri(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "new" / "cache")  # created on first use
    path = _add(cache, "https://example.com/model.joblib", b"abc")
    assert path == tmp_path / "new" / "cache" / "blobs" / _sha(b"abc") / "model.joblib"
    assert path.read_bytes() == b"abc"
    entry = cache.lookup("https://example.com/model.joblib")
    assert entry is not None
    assert (entry.path, entry.sha256, entry.etag) == (path, _sha(b"abc"), "e1")
    assert cache.lookup("https://example.com/other.joblib") is None
    assert list((cache.root / "tmp").iterdir()) == []  # nothing staged is left behind


def test_cache_forgets_an_entry_whose_blob_was_removed(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    _add(cache, "u", b"abc").unlink()
    assert cache.lookup("u") is None


def test_damaged_index_costs_a_download_not_a_crash(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    _add(cache, "u", b"abc")
    (tmp_path / "index.json").write_text("{not json")
    assert cache.lookup("u") is None
    _add(cache, "u", b"abc")
    assert cache.lookup("u") is not None


def test_checksum_mismatch_deletes_the_download_and_records_nothing(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    expected = _sha(b"good")
    with pytest.raises(ArtifactError) as caught:
        _add(cache, "https://example.com/m.joblib", b"evil", sha256=expected)
    assert f"expected sha256 {expected}, got {_sha(b'evil')}" in str(caught.value)
    assert str(caught.value).startswith("https://example.com/m.joblib: checksum mismatch")
    assert _files_under(tmp_path / "blobs") == []
    assert list((tmp_path / "tmp").iterdir()) == []
    assert cache.lookup("https://example.com/m.joblib") is None


def test_a_failed_download_leaves_no_staged_file(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)

    def interrupted_download() -> None:
        with cache.staging() as staged:
            staged.write_bytes(b"half a fi")
            raise OSError("network down")

    with pytest.raises(OSError, match="network down"):
        interrupted_download()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert _files_under(tmp_path / "blobs") == []


def test_atomic_write_keeps_the_old_content_when_the_swap_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "index.json"
    write_atomic(index, b'{"old": 1}')

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(index, b'{"new": 2}')
    assert json.loads(index.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]  # temp file removed


def test_index_survives_reopening_the_cache(tmp_path: Path) -> None:
    path = _add(ArtifactCache(tmp_path), "s3://b/k @ http://x", b"abc")
    entry = ArtifactCache(tmp_path).lookup("s3://b/k @ http://x")
    assert entry is not None
    assert entry.path == path


# --- model archives ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.tar.gz", "model.tgz", "model.tar"])
def test_archive_is_unpacked_once_into_the_cache(tmp_path: Path, name: str) -> None:
    archive = _tar(tmp_path / name, {"model.joblib": b"m", "code/inference.py": b"x = 1\n"})
    cache_dir = tmp_path / "cache"
    unpacked = fetch(str(archive), cache_dir=cache_dir)
    assert unpacked.is_dir()
    assert unpacked.name == "model"
    assert unpacked.parent == cache_dir / "blobs" / _sha(archive.read_bytes())
    assert (unpacked / "model.joblib").read_bytes() == b"m"
    assert (unpacked / "code" / "inference.py").read_text() == "x = 1\n"
    assert archive.exists()  # the user's archive stays where it was
    marker = unpacked / "marker"
    marker.write_text("still here")
    assert fetch(str(archive), cache_dir=cache_dir) == unpacked
    assert marker.exists()  # reused, not unpacked again


def test_archive_checksum_is_checked_before_unpacking(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "model.tar.gz", {"model.joblib": b"m"})
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        fetch(str(archive), cache_dir=tmp_path / "cache", sha256=_sha(b"other"))
    assert not (tmp_path / "cache" / "blobs").exists()


@pytest.mark.parametrize("member", ["../escape.txt", "a/../../escape.txt", "/tmp/escape.txt"])
def test_archive_members_outside_the_target_are_refused(tmp_path: Path, member: str) -> None:
    archive = _tar(tmp_path / "model.tar.gz", {"model.joblib": b"m", member: b"pwned"})
    cache_dir = tmp_path / "deep" / "cache"
    with pytest.raises(ArtifactError) as caught:
        fetch(str(archive), cache_dir=cache_dir)
    assert f"refusing to unpack {member!r}" in str(caught.value)
    assert not (tmp_path / "deep" / "escape.txt").exists()
    assert not (cache_dir / "escape.txt").exists()
    assert not list((cache_dir / "blobs").rglob("model.joblib"))  # nothing half-unpacked
    assert list((cache_dir / "tmp").iterdir()) == []


def test_archive_link_pointing_outside_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("model.joblib")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ArtifactError, match="cannot unpack the model archive"):
        fetch(str(archive), cache_dir=tmp_path / "cache")


def test_corrupt_archive_is_an_artifact_error(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08 definitely not gzip")
    with pytest.raises(ArtifactError, match=r"model\.tar\.gz: cannot unpack the model archive"):
        fetch(str(archive), cache_dir=tmp_path / "cache")


def test_fetch_creates_no_cache_entries_for_local_directories(tmp_path: Path) -> None:
    model_dir = tmp_path / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    assert fetch(str(model_dir), cache_dir=tmp_path / "cache") == model_dir
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ArtifactError, match="can only verify a file"):
        fetch(str(model_dir), cache_dir=tmp_path / "cache", sha256=_sha(b""))


def test_staging_lives_inside_the_cache_for_atomic_moves(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    with cache.staging() as staged:
        assert staged.parent == tmp_path / "tmp"
        assert os.stat(staged).st_dev == os.stat(tmp_path).st_dev
