"""The output folder of one experiment: who may write into it, and what state the run is in.

A non-empty folder is never reused silently: :func:`prepare_run_folder` refuses it unless the
caller asks to ``resume`` the run in it (same configuration) or to ``overwrite`` it (only a
folder that looks like a run folder is cleared). ``run_state.json``, written atomically, says
whether the run is ``running``, ``complete``, ``failed`` (with the error) or ``stopped`` (by a
signal, with ``signal``, ``epoch`` and ``batches_done``: its training state was saved first)::

    {"state": "failed", "error": "FloatingPointError: non-finite loss ...", "pid": 123,
     "started": "2026-11-26T16:05:00+00:00", "updated": "...", "command": "..."}

A run killed without a chance to record it (SIGKILL, power loss) stays ``running``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path

import yaml

from pyg_docre.config import ConfigError, upgrade_model_section, yaml_load
from pyg_docre.errors import RunFolderError
from pyg_docre.io import atomic_write_text

__all__ = ["RunFolderError", "RUN_STATE", "prepare_run_folder", "read_run_state",
           "write_run_state"]

RUN_STATE = "run_state.json"
#: The fields that belong to one state only.
_STATE_FIELDS = {"failed": ("error",), "stopped": ("signal", "epoch", "batches_done")}
#: Files that mark a folder as one of ours (``--overwrite`` clears only such folders).
_RUN_MARKERS = (RUN_STATE, "config.yaml", "metrics.json", "train.log")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_run_state(output_dir: str | Path) -> dict | None:
    """The parsed ``run_state.json`` of a folder (``None`` if absent or unreadable)."""
    try:
        state = json.loads((Path(output_dir) / RUN_STATE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) else None


def write_run_state(output_dir: str | Path, state: str, **fields) -> dict:
    """Record ``state`` (running / complete / failed / stopped) atomically, keeping earlier
    fields except those of another state (``error`` of a failed run, ``signal``, ``epoch``,
    ``batches_done`` of a stopped one)."""
    record = read_run_state(output_dir) or {}
    for other, keys in _STATE_FIELDS.items():
        if other != state:
            for key in keys:
                record.pop(key, None)
    record.update(fields)
    record.update(state=state, updated=_now(), pid=os.getpid())
    record.setdefault("started", record["updated"])
    atomic_write_text(Path(output_dir) / RUN_STATE, json.dumps(record, indent=2))
    return record


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two config dicts (sorted)."""
    keys = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def prepare_run_folder(output_dir: Path, config_dict: dict, *, resume: bool = False,
                       overwrite: bool = False) -> str:
    """Decide how to use ``output_dir``; return ``"fresh"``, ``"resume"`` or ``"complete"``.

    Nothing is written or removed when a :class:`RunFolderError` is raised.
    """
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other")
    if output_dir.exists() and not output_dir.is_dir():
        raise RunFolderError(f"{output_dir}: exists and is not a folder")
    entries = sorted(p.name for p in output_dir.iterdir()) if output_dir.is_dir() else []
    if not entries:
        return "fresh"
    if overwrite:
        if not any(name in entries for name in _RUN_MARKERS):
            raise RunFolderError(f"{output_dir}: not a run folder (none of "
                                 f"{', '.join(_RUN_MARKERS)}), so --overwrite will not clear "
                                 f"it; choose another --output")
        shutil.rmtree(output_dir)
        return "fresh"
    if not resume:
        state = read_run_state(output_dir)
        what = f"holds a {state['state']} run" if state else "is not empty"
        raise RunFolderError(f"{output_dir}: {what}; pass --resume to continue it, "
                             f"--overwrite to replace it, or choose another --output")
    saved_config = output_dir / "config.yaml"
    if saved_config.is_file():
        try:
            saved = yaml_load(saved_config.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise RunFolderError(f"{saved_config}: not valid YAML ({err})") from None
        if isinstance(saved.get("model"), dict):     # runs started before the model.gtn section
            try:
                saved["model"] = upgrade_model_section(saved["model"])[0]
            except ConfigError as err:
                raise RunFolderError(f"{saved_config}: {err}") from None
        differing = config_differences(saved, config_dict)
        if differing:
            raise RunFolderError(f"{output_dir}: cannot resume with a different configuration "
                                 f"(differs in {', '.join(differing[:8])}); use the same config "
                                 f"and --set values, or --overwrite")
    elif (output_dir / "resume").exists():
        raise RunFolderError(f"{saved_config}: missing, so the run cannot be resumed safely; "
                             f"use --overwrite")
    state = read_run_state(output_dir)
    return "complete" if state and state.get("state") == "complete" else "resume"
