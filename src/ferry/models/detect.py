"""Tell a model file's framework from its extension, confirmed by its first bytes.

Only the head of the file is read and nothing is imported, so detection is cheap and safe
to run on files a user has not vetted yet (no unpickling happens here).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

from ferry.errors import ModelLoadError

__all__ = ["FRAMEWORKS", "detect_framework"]

FRAMEWORKS = ("pickle", "xgboost", "lightgbm", "onnx", "torchscript")

_HEAD_BYTES = 64 * 1024
_LIGHTGBM_HEADERS = (b"tree\nversion=", b"tree\r\nversion=")
_ZLIB_LEVELS = (b"\x01", b"\x5e", b"\x9c", b"\xda")
# what joblib.dump(..., compress=...) writes: zlib, gzip, bz2, xz/lzma, lz4
_COMPRESSED_PICKLE = (b"ZF", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b'\x04"M\x18')
# protobuf tags that follow ir_version in an ONNX ModelProto (fields 2..8 and 14, 20)
_ONNX_NEXT_TAGS = frozenset(b"\x12\x1a\x22\x28\x32\x3a\x42\x72\xa2")

_HINT = (
    "expected one of .joblib/.pkl (scikit-learn, XGBoost, LightGBM estimators), "
    ".json/.ubj (XGBoost), .txt (LightGBM), .onnx, .pt (TorchScript), or FILE.py:ClassName; "
    "pass --framework to choose"
)


def detect_framework(path: Path) -> str:
    """One of ``FRAMEWORKS`` for the model file at ``path``.

    Raises ``ModelLoadError`` naming the accepted kinds when the file is of none of them.
    """
    if not path.is_file():
        raise ModelLoadError(f"cannot tell the framework of {path}: not a file; {_HINT}")
    head = _read_head(path)
    rule = _BY_SUFFIX.get(path.suffix.lower())
    # a known extension whose content disagrees is an error, not a guess from the content
    framework = rule(head, path) if rule is not None else _sniff(head, path)
    if framework is None:
        raise ModelLoadError(f"cannot tell the framework of {path}: {_HINT}")
    return framework


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(_HEAD_BYTES)
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror}") from exc


def _sniff(head: bytes, path: Path) -> str | None:
    """Content-only detection, for files whose extension says nothing."""
    for check in (_is_pickle, _is_xgboost, _is_lightgbm, _is_onnx):
        framework = check(head, path)
        if framework is not None:
            return framework
    return _is_torchscript(head, path)


def _is_pickle(head: bytes, _path: Path) -> str | None:
    # protocol 2+ pickles open with PROTO (0x80) and the protocol number
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if head[:1] == b"\x78" and head[1:2] in _ZLIB_LEVELS:
        return "pickle"
    return "pickle" if head.startswith(_COMPRESSED_PICKLE) else None


def _is_xgboost(head: bytes, _path: Path) -> str | None:
    text = head.lstrip()
    if text.startswith(b"{") and b'"learner"' in text[:256]:
        return "xgboost"  # JSON model
    if head.startswith(b"{") and b"learner" in head[:32]:
        return "xgboost"  # UBJSON model: '{', a length-typed key, then "learner"
    if head.startswith(b"binf"):
        return "xgboost"  # legacy binary model with its file header
    return None


def _is_lightgbm(head: bytes, _path: Path) -> str | None:
    return "lightgbm" if head.startswith(_LIGHTGBM_HEADERS) else None


def _is_onnx(head: bytes, _path: Path) -> str | None:
    # ModelProto starts with field 1 (ir_version, a small varint), then another field
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 32 and head[2] in _ONNX_NEXT_TAGS:
        return "onnx"
    return None


def _is_torchscript(head: bytes, path: Path) -> str | None:
    if not head.startswith(b"PK\x03\x04"):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    # torch.jit.save writes <archive>/code/... and <archive>/constants.pkl; torch.save does not
    for name in names:
        parts = name.split("/")
        if "code" in parts[:-1] or parts[-1] == "constants.pkl":
            return "torchscript"
    return None


def _xgboost_binary(head: bytes, path: Path) -> str | None:
    # .model is shared by LightGBM (text) and XGBoost (binary/UBJSON); anything not
    # LightGBM is XGBoost's, whose legacy binary has no reliable magic
    return _is_lightgbm(head, path) or "xgboost"


def _compressed(head: bytes, path: Path) -> str | None:
    # joblib picks gzip for model.pkl.gz; a model.tar.gz is an archive of files, not a model
    return None if path.name.lower().endswith(".tar.gz") else _is_pickle(head, path)


def _never(_head: bytes, _path: Path) -> str | None:
    return None


def _always(framework: str) -> Callable[[bytes, Path], str | None]:
    return lambda _head, _path: framework


_BY_SUFFIX: dict[str, Callable[[bytes, Path], str | None]] = {
    ".pkl": _always("pickle"),
    ".pickle": _always("pickle"),
    ".joblib": _always("pickle"),
    ".sav": _always("pickle"),
    ".json": _is_xgboost,
    ".ubj": _always("xgboost"),
    ".ubjson": _always("xgboost"),
    ".bst": _always("xgboost"),
    ".deprecated": _always("xgboost"),
    ".model": _xgboost_binary,
    ".txt": _is_lightgbm,
    ".onnx": _always("onnx"),
    ".pt": _is_torchscript,
    ".pth": _is_torchscript,
    ".torchscript": _is_torchscript,
    ".gz": _compressed,
    ".bz2": _is_pickle,
    ".xz": _is_pickle,
    ".lzma": _is_pickle,
    ".tar": _never,
    ".tgz": _never,
}
