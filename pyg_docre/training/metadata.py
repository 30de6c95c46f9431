"""What a run records about where it ran: git commit (and the files changed since it), library
versions, device, seed, world size.

Stored under ``"environment"`` in ``metrics.json`` so that a number in a results table can be
traced to the code and the software that produced it.
"""
from __future__ import annotations

import platform
import subprocess
from os import PathLike
from pathlib import Path
from typing import Optional

__all__ = ["git_commit", "git_modified_files", "library_versions", "run_environment"]


def git_commit(directory: str | PathLike | None = None) -> Optional[str]:
    """The commit checked out in ``directory`` (default: this package's folder), with a
    ``-dirty`` suffix when tracked files are modified (:func:`git_modified_files` names them);
    ``None`` outside a git checkout or without ``git``."""
    return _git_state(directory)[0]


def _git_state(directory: str | PathLike | None) -> tuple[Optional[str], Optional[list[str]]]:
    """:func:`git_commit` and :func:`git_modified_files` of ``directory`` from one ``git diff``,
    so that the ``-dirty`` suffix and the recorded files always agree."""
    cwd = Path(directory) if directory is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None, None
    modified = git_modified_files(cwd)
    if commit.returncode != 0:
        return None, modified
    return commit.stdout.strip() + ("-dirty" if modified else ""), modified


def git_modified_files(directory: str | PathLike | None = None) -> Optional[list[str]]:
    """The tracked files of the checkout in ``directory`` (default: this package's folder) whose
    content differs from the commit checked out, staged or not: paths relative to the
    repository root, sorted; ``[]`` for a clean checkout, ``None`` outside a git checkout or
    without ``git``. Says what a ``-dirty`` commit of :func:`git_commit` had changed."""
    cwd = Path(directory) if directory is not None else Path(__file__).resolve().parent
    try:
        diff = subprocess.run(["git", "diff", "--name-only", "-z", "HEAD"], cwd=cwd,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if diff.returncode != 0:
        return None
    return sorted(path for path in diff.stdout.split("\0") if path)


def library_versions() -> dict[str, Optional[str]]:
    """Versions of Python and of the libraries a result depends on (``None``: not installed)."""
    import importlib

    import pyg_docre

    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in ("torch", "torch_geometric", "transformers"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = None
    versions["pyg_docre"] = pyg_docre.__version__
    return versions


def run_environment(device, seed: int, *, world_size: int = 1,
                    directory: str | PathLike | None = None) -> dict:
    """The ``environment`` record of ``metrics.json``.

    Example:
        >>> env = run_environment("cpu", 66)
        >>> sorted(env)
        ['device', 'git_commit', 'git_modified', 'seed', 'versions', 'world_size']
    """
    commit, modified = _git_state(directory)
    return {"git_commit": commit, "git_modified": modified, "versions": library_versions(),
            "device": str(device), "seed": int(seed), "world_size": int(world_size)}
