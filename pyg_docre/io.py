"""Atomic file and folder writes: a failed or interrupted write never leaves a half-written
file or folder."""
from __future__ import annotations

import os
import shutil
import tempfile
from os import PathLike
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_dir", "recover_dir", "fsync_tree"]


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


def fsync_tree(directory: str | PathLike) -> None:
    """fsync every file under ``directory`` and the directories themselves."""
    directory = Path(directory)
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for path in [*sorted(p for p in directory.rglob("*") if p.is_dir()), directory]:
        _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chmod_tree(directory: Path) -> None:
    """Give every file and folder the modes a plain ``open``/``mkdir`` would (umask applied)."""
    mask = _umask()
    for path in [directory, *directory.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def recover_dir(path: str | PathLike) -> Path:
    """Finish an :func:`atomic_write_dir` that was interrupted between its two renames.

    If ``path`` is missing but its previous version (``.NAME.old``) is there, that version is
    moved back; a stale ``.NAME.old`` beside a complete ``path`` is removed.
    """
    path = Path(path)
    old = path.parent / f".{path.name}.old"
    if old.exists():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)
    return path


def atomic_write_dir(path: str | PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` on a temporary sibling folder, then swap it into place.

    The folder's files are fsynced and given umask-respecting modes before the swap. A previous
    ``path`` is first renamed to ``.NAME.old`` and removed after the new folder is in place, so at
    every moment either ``path`` or ``.NAME.old`` is a complete version (:func:`recover_dir`
    restores the old one after a crash between the renames). If ``write`` fails, ``path`` is
    untouched and the temporary folder removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        write(tmp)
        _chmod_tree(tmp)
        fsync_tree(tmp)
        old = path.parent / f".{path.name}.old"
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
