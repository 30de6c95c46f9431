"""Atomic file writes: a failed or interrupted write never leaves a half-written file."""
from __future__ import annotations

import os
import tempfile
from os import PathLike
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path: str | PathLike, write: Callable[[IO], None], *, binary: bool = False
                 ) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place.

    The temporary file lives in the destination's directory (so :func:`os.replace` is atomic),
    is flushed and fsynced before the move, and is removed if anything fails: afterwards ``path``
    holds either its previous content or the complete new one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
