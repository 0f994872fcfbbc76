"""Atomic file output: every file foveal writes appears whole or not at all.

Writers stream into a temporary file in the destination folder, flush and fsync it, then ``os.replace`` it over the
target, so an interrupted run never leaves a truncated PNG, JSON or CSV behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from .errors import InputError

# mkstemp creates files 0600; outputs should get the permissions an ordinary open() would give them.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` only if the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8, atomically."""
    with atomic_write(path, "w") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (NaN refused: it is not JSON), atomically."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False, default=_json_default)
    except ValueError as exc:
        raise InputError(f"cannot write {os.fspath(path)}: {exc}") from exc
    write_text(path, text + "\n")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save a NumPy array (``.npy``), atomically."""
    with atomic_write(path, "wb") as fh:
        np.save(fh, array)


def save_png(path: str | os.PathLike, array: np.ndarray, **pnginfo: str) -> None:
    """Save a uint8/uint16 grey or uint8 RGB/RGBA array as PNG, atomically; ``pnginfo`` goes into text chunks."""
    from PIL import Image, PngImagePlugin

    if array.dtype == np.uint16 and array.ndim == 2:
        image = Image.fromarray(array)  # Pillow picks mode I;16 for 2-D uint16
    elif array.dtype == np.uint8 and array.ndim in (2, 3):
        image = Image.fromarray(array)
    else:
        raise InputError(f"save_png: expected uint8 (H,W[,3|4]) or uint16 (H,W), got {array.dtype} {array.shape}")
    info = PngImagePlugin.PngInfo()
    for key, value in pnginfo.items():
        info.add_text(key, value)
    with atomic_write(path, "wb") as fh:
        image.save(fh, format="PNG", pnginfo=info)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
