"""A content-addressed cache of downloaded model artifacts.

Files live at ``<root>/blobs/<sha256>/<original filename>``; a small JSON index maps each
source (URI plus endpoint) to its blob, so the same URI is downloaded once. A model archive
(``model.tar.gz``) is unpacked next to its blob, once per content digest. Every write is
a temp file (or temp directory) moved into place with ``os.replace``, so a crash or a
concurrent worker never sees half a file: the worst a race can do is download twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ferry.errors import ArtifactError

__all__ = [
    "ArtifactCache",
    "CacheEntry",
    "archive_stem",
    "file_sha256",
    "is_archive",
    "tree_sha256",
    "write_atomic",
]

_INDEX_VERSION = 1
_CHUNK = 1024 * 1024


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached artifact: where it is, its digest, and the remote version tag seen."""

    path: Path
    sha256: str
    etag: str | None = None


class ArtifactCache:
    """Downloads kept under ``root``; created on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index_path = root / "index.json"

    def lookup(self, key: str) -> CacheEntry | None:
        """The entry recorded for ``key`` if its blob is still on disk."""
        record = self._read_index().get(key)
        if not isinstance(record, dict):
            return None
        path = self.root / str(record.get("path", ""))
        if not record.get("path") or not path.exists():
            return None
        etag = record.get("etag")
        return CacheEntry(path, str(record.get("sha256", "")), etag if etag else None)

    @contextlib.contextmanager
    def staging(self, *, directory: bool = False) -> Iterator[Path]:
        """A fresh temp file (or directory) inside the cache, removed unless it was added.

        Staging inside the cache keeps the final ``os.replace`` on one filesystem.
        """
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        if directory:
            path = Path(tempfile.mkdtemp(dir=tmp_root))
        else:
            fd, name = tempfile.mkstemp(dir=tmp_root)
            os.close(fd)
            path = Path(name)
        try:
            yield path
        finally:
            _remove(path)

    def add_file(
        self,
        key: str,
        staged: Path,
        filename: str,
        *,
        sha256: str | None,
        etag: str | None,
        shown: str | None = None,
    ) -> Path:
        """Move a fully written staged file into its blob; verify ``sha256`` first.

        A mismatch raises ``ArtifactError`` naming ``shown`` (default: ``key``) and the
        staged file is deleted.
        """
        _fsync(staged)
        got = file_sha256(staged)
        if sha256 is not None and got != sha256:
            _remove(staged)
            raise ArtifactError(
                f"{shown or key}: checksum mismatch: expected sha256 {sha256}, got {got} "
                "(the download was deleted; check the URI or the expected checksum)"
            )
        target = self.root / "blobs" / got / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
        self._record(key, target, got, etag)
        return target

    def add_tree(self, key: str, staged: Path, dirname: str, *, etag: str | None) -> Path:
        """Move a staged directory into a blob addressed by the digest of its contents."""
        digest = tree_sha256(staged)
        target = self.root / "blobs" / digest / dirname
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            for file in staged.rglob("*"):
                if file.is_file():
                    _fsync(file)
            try:
                os.replace(staged, target)
            except OSError:
                # another process moved the same content in first; theirs is as good
                if not target.is_dir():
                    raise
        self._record(key, target, digest, etag)
        return target

    def unpacked(self, archive: Path) -> Path:
        """The directory holding the contents of the tar ``archive``, unpacked once.

        The directory sits beside the archive's blob: ``blobs/<sha256>/model`` for
        ``model.tar.gz``. Members with absolute paths or ``..`` are refused.
        """
        blobs = self.root / "blobs"
        parent = archive.parent if archive.is_relative_to(blobs) else blobs / file_sha256(archive)
        target = parent / archive_stem(archive.name)
        if target.is_dir():
            return target
        parent.mkdir(parents=True, exist_ok=True)
        with self.staging(directory=True) as staged:
            _extract(archive, staged)
            try:
                os.replace(staged, target)
            except OSError:
                if not target.is_dir():
                    raise
        return target

    def _read_index(self) -> dict[str, object]:
        try:
            data = json.loads(self._index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # a missing or damaged index only costs a fresh download
            return {}
        if not isinstance(data, dict) or data.get("version") != _INDEX_VERSION:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def _record(self, key: str, path: Path, sha256: str, etag: str | None) -> None:
        record = {"path": path.relative_to(self.root).as_posix(), "sha256": sha256}
        if etag is not None:
            record["etag"] = etag
        entries = self._read_index()
        entries[key] = record
        text = json.dumps({"version": _INDEX_VERSION, "entries": entries}, indent=1)
        write_atomic(self._index_path, text.encode())


def tree_sha256(root: Path) -> str:
    """A digest over the relative paths and contents of every file under ``root``."""
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file_sha256(file).encode() + b"\0")
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new content, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, path)
    except BaseException:
        _remove(Path(name))
        raise


_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a tar model archive (SageMaker's ``model.tar.gz`` style)."""
    return path.is_file() and path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def archive_stem(name: str) -> str:
    """``model`` for ``model.tar.gz``, ``model.tgz`` or ``model.tar``."""
    for suffix in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "archive"
    return name


def _extract(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith(("/", "\\")) or ".." in parts:
                    raise ArtifactError(
                        f"{archive}: refusing to unpack {member.name!r}: a model archive "
                        "may not hold absolute paths or '..'"
                    )
            # the data filter also refuses links out of dest, devices and setuid bits
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ArtifactError(f"{archive}: cannot unpack the model archive: {exc}") from exc


def _fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
