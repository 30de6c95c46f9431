#!/usr/bin/env python
"""Run a fidelity study: every row (a config with overrides) of a study file over its seeds.

    python experiments/study.py experiments/studies/redocred_cpu.yaml [--rows a,b] [--seeds 66,67]
        [--parallel N] [--device cpu|cuda] [--max-runs K] [--no-reuse]
        [--dry-run | --summary-only | --verify]

A study file (YAML) names the ``protocol``, the ``seeds``, the ``output`` results folder, the
``runs_dir`` where the full run folders go (git-ignored) and the ``rows``, each
``{name, config, overrides: [dotted.key=value, ...]}`` (the syntax of ``pyg-docre train
--set``). The file and every row's config with its overrides are checked before anything runs.

Each (row, seed) that is not done yet runs as ``python -m pyg_docre train --config C --set ...
--set training.seed=S --output RUNS_DIR/ROW/SEED --resume`` (an interrupted run continues), in a
fixed order: all rows of the first seed, then the second seed, ... (a partial study is paired).
Its stdout and stderr go to ``study.log`` in its run folder. When the run is complete
(``run_state.json``), ``config.yaml``, ``result_dev.json``, ``result_test.json`` and
``metrics.json`` are copied atomically to ``OUTPUT/ROW/SEED/``, the two result files
gzip-compressed (``result_dev.json.gz``, ``result_test.json.gz``: the same bytes inside, 60 kB
instead of 0.86 MB for Re-DocRED test; ``pyg-docre evaluate`` and
:func:`pyg_docre.metrics.read_result` read them as they are); a (row, seed) is done when that
folder holds ``metrics.json``, ``result_dev.json.gz`` and ``result_test.json.gz``. After every
run the
summary is rewritten: ``OUTPUT.json`` (per row: seeds, test F1, test Ign F1, dev F1 in percent),
``OUTPUT.md`` (mean ± sample sd of the test and dev scores, the paired gap of each row to the
``full`` row per seed, the command, devices and commits) and ``OUTPUT.png`` (test F1 per row;
needs matplotlib, the ``bench`` extra). A failed run is reported with its log and the others go
on; the exit status is then 1.

A (row, seed) whose experiment another study beside this one (``OUTPUT/../OTHER/ROW'/SEED``)
has already done, with the same configuration and seed (runtime keys such as
``training.device`` aside) on the same kind of device, is not run again: its results are copied,
with ``reused_from.txt`` naming the source (``--no-reuse`` runs everything here). The CPU
protocol's ``full`` and ``atlop`` rows are in the lever, precision and main studies alike.

A study that selects training levers lists them (``levers: {lever: [rows]}``, judged by
``experiments/study_noise.py``); a lever stopped before all its pairs were run is listed under
``withdrawn: {lever: reason}``: it is not adopted and the runner plans none of its rows' runs.

``--summary-only`` collects the complete runs and rewrites the summary without starting any.
``--verify`` rescores every stored ``result_dev.json.gz`` / ``result_test.json.gz`` with the
official scorer against the data of the run's own ``config.yaml`` and checks that
``metrics.json`` holds the same numbers (to 1e-6, percent); a mismatch names the file and the
field, exit status 1.
A bad study file or option: one line naming the file and the field, exit status 2.

Stopping the runner (Ctrl-C, SIGTERM, SIGHUP) stops the training processes it started (each
runs in its own process group, which gets SIGTERM: the training saves its state after the
current step and ends; SIGKILL follows after ``STOP_GRACE_SECONDS``) and starts no more; it
names the stopped runs, which the next sitting resumes from their saved state, and exits with
128 + the signal number.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import io
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyg_docre.config import ConfigError, load_config, yaml_load  # noqa: E402
from pyg_docre.io import atomic_write, atomic_write_text  # noqa: E402
from pyg_docre.signals import signal_handlers  # noqa: E402

__all__ = ["StudyError", "Row", "NonInferiority", "Study", "load_study", "plan_runs",
           "train_command", "collect_run", "equivalent_result", "reuse_equivalent_runs",
           "build_summary", "summary_markdown", "gap_table", "uncommitted_code", "write_summary",
           "result_file", "rescore_run", "verify_run", "verify_study", "TrainingProcesses",
           "StudyInterrupted", "run_study", "main"]

STUDY_KEYS = ("protocol", "seeds", "output", "runs_dir", "rows")
#: Optional: ``levers``, {lever: [rows]}: the rows whose paired dev gains over their references
#: decide the lever together (study_noise.py's decision table); ``non_inferiority``,
#: {setting: {rows: [rows], split: dev|test, margin: points}}: a setting adopted only if it costs
#: no F1 (study_noise.py's non-inferiority table); ``withdrawn``, {lever: reason}: levers stopped
#: before all their pairs were run, hence not adopted; their rows' remaining runs are not planned.
OPTIONAL_STUDY_KEYS = ("levers", "non_inferiority", "withdrawn")
NON_INFERIORITY_KEYS = ("rows", "split", "margin")
ROW_KEYS = ("name", "config", "overrides", "compare_to")
#: A (row, seed) is done when its results folder holds these.
DONE_FILES = ("metrics.json", "result_dev.json.gz", "result_test.json.gz")
#: (file of a complete run folder, its name in the results folder), metrics.json last (so "done"
#: means everything is there); a name ending in ``.gz`` is stored gzip-compressed.
COPIED_FILES = (("config.yaml", "config.yaml"), ("result_dev.json", "result_dev.json.gz"),
                ("result_test.json", "result_test.json.gz"), ("metrics.json", "metrics.json"))
LOG_NAME = "study.log"
#: From SIGTERM to SIGKILL for a training process the runner stops: time for it to finish its
#: optimiser step (or epoch-end evaluation) and save its state (pyg_docre.training.stopping).
STOP_GRACE_SECONDS = 120.0
#: Folders of a checkout that hold only results (written by studies and benchmarks, read by no
#: run): a run whose checkout had uncommitted changes in these alone ran the commit's code.
RESULT_FOLDERS = ("experiments/results/", "benchmarks/results/")
SCORES = ("precision", "recall", "f1", "ign_f1", "intra_f1", "inter_f1")
TOLERANCE = 1e-6            # percent, for --verify
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StudyError(ConfigError):
    """A study file or a study option is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class Row:
    name: str
    config: str                 # as written in the study file
    overrides: tuple[str, ...]
    config_path: Path           # the resolved config file
    packaged: bool              # config is the name of a packaged config
    compare_to: Optional[str] = None    # the row its paired gaps are taken to (default: full)

    @property
    def reference(self) -> str:
        """The row that this row's paired gaps are taken to: ``compare_to``, else ``full``."""
        return self.compare_to or "full"


@dataclass(frozen=True)
class NonInferiority:
    """A setting (e.g. bf16) adopted only if each of its ``rows`` keeps F1: the mean paired
    ``split`` F1 difference to the row's reference over all seeds is above ``-margin`` and the
    document-bootstrap 95% interval of that mean reaches 0."""
    setting: str
    rows: tuple[str, ...]
    split: str
    margin: float


@dataclass(frozen=True)
class Study:
    path: Path
    protocol: str
    seeds: tuple[int, ...]
    output: Path                # absolute
    runs_dir: Path              # absolute
    rows: tuple[Row, ...]
    base_dir: Path              # where data paths and relative study paths resolve
    levers: tuple[tuple[str, tuple[str, ...]], ...] = ()    # (lever, its rows)
    non_inferiority: tuple[NonInferiority, ...] = ()
    withdrawn: tuple[tuple[str, str], ...] = ()             # (lever, why it was stopped)

    def withdrawn_rows(self) -> dict[str, str]:
        """{row: its withdrawn lever} for the rows of every withdrawn lever."""
        stopped = dict(self.withdrawn)
        return {row: lever for lever, rows in self.levers if lever in stopped for row in rows}

    def reference(self, row: str) -> str:
        """The row that ``row``'s paired gaps are taken to: its ``compare_to``, else ``full``."""
        return self.row(row).reference

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    def result_dir(self, row: str, seed: int) -> Path:
        return self.output / row / str(seed)

    def run_dir(self, row: str, seed: int) -> Path:
        return self.runs_dir / row / str(seed)

    def is_done(self, row: str, seed: int) -> bool:
        folder = self.result_dir(row, seed)
        return all((folder / name).is_file() for name in DONE_FILES)

    def summary_path(self, suffix: str) -> Path:
        return self.output.with_name(self.output.name + suffix)


# ------------------------------------------------------------------------------ study file

def _resolve_config(name: str, base_dir: Path) -> tuple[Path, bool]:
    """A row's config: a path (absolute, or relative to ``base_dir``) or a packaged name."""
    from pyg_docre.cli import find_config

    given = Path(name)
    path = given if given.is_absolute() else base_dir / given
    if path.is_file():
        return path, False
    return find_config(name), True


def _seed_override(seed: int) -> str:
    return f"training.seed={seed}"


def _device_override(device: Optional[str]) -> list[str]:
    return [] if device is None else [f"training.device={device}"]


def load_study(path: str | os.PathLike, *, base_dir: str | os.PathLike = ROOT,
               device: Optional[str] = None) -> Study:
    """Read and check a study file, and every row's config with its overrides (for each seed,
    with ``device`` if given): a problem is a :class:`StudyError` naming the file and field."""
    path = Path(path)
    base_dir = Path(base_dir)
    try:
        values = yaml_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"{path}: no such study file") from None
    except Exception as err:        # yaml.YAMLError, UnicodeDecodeError, IsADirectoryError
        raise StudyError(f"{path}: not a readable YAML file ({err})") from None
    if not isinstance(values, dict):
        raise StudyError(f"{path}: expected a mapping with the keys {', '.join(STUDY_KEYS)}")
    for key in values:
        if key not in STUDY_KEYS + OPTIONAL_STUDY_KEYS:
            raise StudyError(f"{path}: unknown key {key!r}; valid keys: "
                             f"{', '.join(STUDY_KEYS + OPTIONAL_STUDY_KEYS)}")
    for key in STUDY_KEYS:
        if key not in values:
            raise StudyError(f"{path}: {key}: required")

    protocol = values["protocol"]
    if not isinstance(protocol, str) or not protocol.strip():
        raise StudyError(f"{path}: protocol: expected a non-empty string, got {protocol!r}")
    seeds = values["seeds"]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise StudyError(f"{path}: seeds: expected a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{path}: seeds: a seed is listed twice in {seeds}")
    folders = {}
    for key in ("output", "runs_dir"):
        value = values[key]
        if not isinstance(value, str) or not value.strip():
            raise StudyError(f"{path}: {key}: expected a folder path, got {value!r}")
        folder = Path(value)
        folders[key] = folder if folder.is_absolute() else base_dir / folder
    if folders["output"].resolve() == folders["runs_dir"].resolve():
        raise StudyError(f"{path}: output and runs_dir must be different folders")

    raw_rows = values["rows"]
    if not isinstance(raw_rows, list) or not raw_rows:
        raise StudyError(f"{path}: rows: expected a non-empty list of "
                         f"{{name, config, overrides}}, got {raw_rows!r}")
    rows: list[Row] = []
    for i, raw in enumerate(raw_rows):
        where = f"{path}: rows[{i}]"
        if not isinstance(raw, dict):
            raise StudyError(f"{where}: expected a mapping with the keys {', '.join(ROW_KEYS)}")
        for key in raw:
            if key not in ROW_KEYS:
                raise StudyError(f"{where}: unknown key {key!r}; valid keys: "
                                 f"{', '.join(ROW_KEYS)}")
        for key in ("name", "config"):
            if key not in raw:
                raise StudyError(f"{where}: {key}: required")
        name = raw["name"]
        if not isinstance(name, str) or not _NAME.match(name):
            raise StudyError(f"{where}: name: {name!r} is not a folder name (letters, digits, "
                             f"'_', '.', '-')")
        if any(r.name == name for r in rows):
            raise StudyError(f"{where}: name: {name!r} is used by an earlier row")
        where = f"{path}: rows[{i}] ({name})"
        config = raw["config"]
        if not isinstance(config, str) or not config.strip():
            raise StudyError(f"{where}: config: expected a config name or path, got {config!r}")
        overrides = raw.get("overrides") or []
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise StudyError(f"{where}: overrides: expected a list of 'key=value' strings, got "
                             f"{overrides!r}")
        for item in overrides:
            key = item.split("=", 1)[0].strip()
            if key == "training.seed":
                raise StudyError(f"{where}: overrides: {item!r}: the seed is set by the study's "
                                 f"seeds")
            if key == "training.device" and device is not None:
                raise StudyError(f"{where}: overrides: {item!r} conflicts with --device {device}")
        try:
            config_path, packaged = _resolve_config(config, base_dir)
        except FileNotFoundError as err:
            raise StudyError(f"{where}: config: {err}") from None
        for seed in seeds:
            try:
                resolved = load_config(config_path, [*overrides, _seed_override(seed),
                                                     *_device_override(device)])
            except ConfigError as err:
                raise StudyError(f"{where}: overrides: {err}") from None
        if resolved.data.test is None:
            raise StudyError(f"{where}: config: {config_path} has no data.test split, so the "
                             f"run would write no result_test.json")
        compare_to = raw.get("compare_to")
        if compare_to is not None and (not isinstance(compare_to, str) or compare_to == name):
            raise StudyError(f"{where}: compare_to: expected the name of another row, got "
                             f"{compare_to!r}")
        rows.append(Row(name, config, tuple(overrides), config_path, packaged, compare_to))
    names = [r.name for r in rows]
    for i, r in enumerate(rows):
        if r.compare_to is not None and r.compare_to not in names:
            raise StudyError(f"{path}: rows[{i}] ({r.name}): compare_to: {r.compare_to!r} is not "
                             f"a row (rows: {', '.join(names)})")
    references = {r.name: r.reference for r in rows}
    levers = _check_levers(path, values.get("levers"), references)
    non_inferiority = _check_non_inferiority(path, values.get("non_inferiority"), references)
    withdrawn = _check_withdrawn(path, values.get("withdrawn"), levers)
    return Study(path, protocol, tuple(seeds), folders["output"], folders["runs_dir"],
                 tuple(rows), base_dir, levers, non_inferiority, withdrawn)


def _check_compared_rows(where: str, rows: Any, references: dict[str, str]) -> tuple[str, ...]:
    """A non-empty list of rows, each with another row (``references``) to be compared with."""
    names = list(references)
    if not isinstance(rows, list) or not rows or not all(isinstance(r, str) for r in rows):
        raise StudyError(f"{where}: expected a non-empty list of row names, got {rows!r}")
    for row in rows:
        if row not in names:
            raise StudyError(f"{where}: {row!r} is not a row (rows: {', '.join(names)})")
        if references[row] == row or references[row] not in names:
            raise StudyError(f"{where}: {row!r} has no other row to be compared with "
                             f"(compare_to, or a row named 'full')")
    return tuple(rows)


def _check_levers(path: Path, levers: Any, references: dict[str, str]
                  ) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``levers: {lever: [row, ...]}``: each row must be a row with a reference row (its
    ``compare_to`` or ``full``, ``references``) to be compared with."""
    if levers is None:
        return ()
    if not isinstance(levers, dict) or not levers:
        raise StudyError(f"{path}: levers: expected a mapping {{lever: [rows]}}, got {levers!r}")
    return tuple((str(lever), _check_compared_rows(f"{path}: levers: {lever}", rows, references))
                 for lever, rows in levers.items())


def _check_withdrawn(path: Path, withdrawn: Any, levers: tuple[tuple[str, tuple[str, ...]], ...]
                     ) -> tuple[tuple[str, str], ...]:
    """``withdrawn: {lever: reason}``: each a lever of ``levers``, each with a written reason."""
    if withdrawn is None:
        return ()
    if not isinstance(withdrawn, dict) or not withdrawn:
        raise StudyError(f"{path}: withdrawn: expected a mapping {{lever: reason}}, got "
                         f"{withdrawn!r}")
    names = [lever for lever, _ in levers]
    for lever, reason in withdrawn.items():
        if lever not in names:
            raise StudyError(f"{path}: withdrawn: {lever!r} is not a lever (levers: "
                             f"{', '.join(names) or 'none'})")
        if not isinstance(reason, str) or not reason.strip():
            raise StudyError(f"{path}: withdrawn: {lever}: expected the reason it was stopped "
                             f"(a non-empty string), got {reason!r}")
    return tuple((str(lever), " ".join(reason.split())) for lever, reason in withdrawn.items())


def _check_non_inferiority(path: Path, settings: Any, references: dict[str, str]
                           ) -> tuple[NonInferiority, ...]:
    """``non_inferiority: {setting: {rows: [row, ...], split: dev|test, margin: points}}``."""
    if settings is None:
        return ()
    if not isinstance(settings, dict) or not settings:
        raise StudyError(f"{path}: non_inferiority: expected a mapping {{setting: {{rows, split, "
                         f"margin}}}}, got {settings!r}")
    checked = []
    for setting, spec in settings.items():
        where = f"{path}: non_inferiority: {setting}"
        if not isinstance(spec, dict) or set(spec) != set(NON_INFERIORITY_KEYS):
            raise StudyError(f"{where}: expected exactly the keys "
                             f"{', '.join(NON_INFERIORITY_KEYS)}, got {spec!r}")
        rows = _check_compared_rows(f"{where}: rows", spec["rows"], references)
        if spec["split"] not in ("dev", "test"):
            raise StudyError(f"{where}: split: expected dev or test, got {spec['split']!r}")
        margin = spec["margin"]
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
            raise StudyError(f"{where}: margin: expected a number of F1 points >= 0, got "
                             f"{margin!r}")
        checked.append(NonInferiority(str(setting), rows, spec["split"], float(margin)))
    return tuple(checked)


# ------------------------------------------------------------------------------ runs

def _select(study: Study, rows: Optional[Iterable[str]], seeds: Optional[Iterable[int]]
            ) -> tuple[list[str], list[int]]:
    names = [r.name for r in study.rows]
    if rows is not None:
        rows = list(rows)
        unknown = [r for r in rows if r not in names]
        if unknown:
            raise StudyError(f"--rows: {', '.join(unknown)} not in {study.path} (rows: "
                             f"{', '.join(names)})")
        names = [n for n in names if n in rows]
    chosen = list(study.seeds)
    if seeds is not None:
        seeds = list(seeds)
        unknown = [str(s) for s in seeds if s not in study.seeds]
        if unknown:
            raise StudyError(f"--seeds: {', '.join(unknown)} not in {study.path} (seeds: "
                             f"{', '.join(map(str, study.seeds))})")
        chosen = [s for s in chosen if s in seeds]
    return names, chosen


#: Config keys that say where a run ran, not what it computed: they may differ between a row's
#: stored results and the study file (e.g. a study continued on a GPU machine).
RUNTIME_KEYS = ("training.device", "training.num_workers", "training.pin_memory")


def _wanted_config(study: Study, row: str, seed: int):
    r = study.row(row)
    return load_config(r.config_path, [*r.overrides, _seed_override(seed)])


def _stored_config(path: Path):
    """A results folder's ``config.yaml`` read through the config loader (so keys added since
    the run, with defaults that keep the old computation, take those defaults)."""
    from pyg_docre.config import config_from_dict

    try:
        return config_from_dict(yaml_load(path.read_text(encoding="utf-8")) or {})
    except FileNotFoundError:
        raise
    except Exception as err:            # OSError, yaml.YAMLError, ConfigError, UnicodeDecodeError
        raise StudyError(f"{path}: not a readable config ({err})") from None


def _differing_keys(stored, wanted) -> list[str]:
    from pyg_docre.training.run_folder import config_differences

    return [k for k in config_differences(stored.to_dict(), wanted.to_dict())
            if k not in RUNTIME_KEYS]


def stale_keys(study: Study, row: str, seed: int) -> list[str]:
    """The config keys in which the stored results of (``row``, ``seed``) differ from what the
    study file asks for now (empty: up to date). Both sides are read through the config loader,
    so keys added since the run (with defaults that keep the old computation) do not count."""
    try:
        stored = _stored_config(study.result_dir(row, seed) / "config.yaml")
    except FileNotFoundError:
        return ["config.yaml missing"]
    return _differing_keys(stored, _wanted_config(study, row, seed))


# ------------------------------------------------------------------------------ reuse

#: Written into a results folder whose run was reused from another study (before metrics.json).
REUSED_NOTE = "reused_from.txt"


def _device_type(name: str) -> str:
    """``cpu`` or ``cuda`` for a ``training.device`` value (``auto``: what this machine has)."""
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name).split(":")[0]


def equivalent_result(study: Study, row: str, seed: int, device: Optional[str] = None
                      ) -> Optional[Path]:
    """A done results folder of *another* study beside this one (``OUTPUT/../*/ROW'/SEED``)
    whose run had the same configuration and seed as (``row``, ``seed``) (the runtime keys
    aside) and ran on the same kind of device (``device``, else the row's
    ``training.device``): the same experiment, which need not run twice. ``None`` if there is
    none."""
    wanted = _wanted_config(study, row, seed)
    device_type = _device_type(device or wanted.training.device)
    # runs made in their own study first, copies reused by another study after them
    candidates = sorted(study.output.parent.glob(f"*/*/{seed}"),
                        key=lambda folder: ((folder / REUSED_NOTE).is_file(), str(folder)))
    for folder in candidates:
        if folder.parent.parent == study.output or not folder.is_dir():
            continue
        if not all((folder / name).is_file() for name in DONE_FILES):
            continue
        try:
            if _differing_keys(_stored_config(folder / "config.yaml"), wanted):
                continue
            environment = _read_json(folder / "metrics.json").get("environment") or {}
        except (FileNotFoundError, StudyError):
            continue
        if _device_type(str(environment.get("device", ""))) == device_type:
            return folder
    return None


def reuse_equivalent_runs(study: Study, plan: list[tuple[str, int]], device: Optional[str] = None,
                          *, dry_run: bool = False, say: Callable[[str], None] = print
                          ) -> list[tuple[str, int]]:
    """For every planned (row, seed) without a complete run folder of its own, copy the results
    of an :func:`equivalent_result` into this study's results folder (with ``reused_from.txt``
    naming the source; ``metrics.json`` last). Returns the reused pairs (``dry_run``: the pairs
    that would be, nothing copied)."""
    reused = []
    for row, seed in plan:
        if _complete_run(study, row, seed):
            continue                        # its own run is collected instead
        source = equivalent_result(study, row, seed, device)
        if source is None:
            continue
        if not dry_run:
            dest = study.result_dir(row, seed)
            dest.mkdir(parents=True, exist_ok=True)
            atomic_write_text(dest / REUSED_NOTE, display_path(source, study.base_dir) + "\n")
            for _, stored in COPIED_FILES:
                _copy_atomic(source / stored, dest / stored)
        say(f"{'would reuse' if dry_run else 'reused'} {row}/{seed} <- "
            f"{display_path(source, study.base_dir)}")
        reused.append((row, seed))
    return reused


def plan_runs(study: Study, rows: Optional[Iterable[str]] = None,
              seeds: Optional[Iterable[int]] = None) -> list[tuple[str, int]]:
    """The (row, seed) pairs still to do, seed-major: every row of the first seed, then the
    second seed, ... (in the study's order; ``rows``/``seeds`` restrict it).

    Raises :class:`StudyError` when stored results were made with another configuration than
    the study file's row now gives (an edited row or config): they are never mixed with new
    runs, nor silently replaced; delete their folders to run them again.

    The rows of a ``withdrawn`` lever are left out; naming one in ``rows`` is a
    :class:`StudyError` (remove the lever from ``withdrawn`` to run it again)."""
    names, chosen = _select(study, rows, seeds)
    stopped = study.withdrawn_rows()
    if rows is not None and any(n in stopped for n in names):
        raise StudyError("--rows: " + ", ".join(f"{n} belongs to the withdrawn lever {stopped[n]}"
                                                 for n in names if n in stopped)
                         + f" ({study.path}: withdrawn); remove it there to run it again")
    names = [n for n in names if n not in stopped]
    stale = [f"{study.result_dir(n, s)} (differs in {', '.join(keys[:6])})"
             for s in chosen for n in names if study.is_done(n, s)
             for keys in [stale_keys(study, n, s)] if keys]
    if stale:
        raise StudyError(f"{study.path}: results made with another configuration than the study "
                         f"file gives now: {'; '.join(stale)}. Delete these folders (and their "
                         f"run folders under {study.runs_dir}) to run them again")
    return [(name, seed) for seed in chosen for name in names if not study.is_done(name, seed)]


def train_command(study: Study, row: str, seed: int, device: Optional[str] = None) -> list[str]:
    """The ``python -m pyg_docre train`` command of one (row, seed)."""
    r = study.row(row)
    cmd = [sys.executable, "-m", "pyg_docre", "train",
           "--config", r.config if r.packaged else str(r.config_path)]
    for item in [*r.overrides, _seed_override(seed), *_device_override(device)]:
        cmd += ["--set", item]
    # relative to the checkout (the command's working directory) when inside it, so that the
    # command recorded in metrics.json does not name this machine's folders
    output = display_path(study.run_dir(row, seed), study.base_dir)
    return cmd + ["--output", output, "--resume"]


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically; gzip-compressed (no timestamp) when ``dst`` ends in
    .gz and ``src`` does not."""
    data = src.read_bytes()
    if dst.suffix == ".gz" and src.suffix != ".gz":
        data = gzip.compress(data, mtime=0)
    atomic_write(dst, lambda f: f.write(data), binary=True)


def result_file(result_dir: str | os.PathLike, split: str) -> Path:
    """The stored predictions of one split in a results folder: ``result_{split}.json.gz``."""
    return Path(result_dir) / f"result_{split}.json.gz"


def _complete_run(study: Study, row: str, seed: int) -> bool:
    from pyg_docre.training.run_folder import read_run_state

    state = read_run_state(study.run_dir(row, seed))
    return bool(state) and state.get("state") == "complete"


def collect_run(study: Study, row: str, seed: int) -> bool:
    """Copy a complete run's files into the results folder (atomically, metrics.json last);
    True when the (row, seed) is done afterwards."""
    if study.is_done(row, seed):
        return True
    if not _complete_run(study, row, seed):
        return False
    run = study.run_dir(row, seed)
    missing = [name for name, _ in COPIED_FILES if not (run / name).is_file()]
    if missing:
        raise StudyError(f"{run}: complete, but {', '.join(missing)} missing")
    dest = study.result_dir(row, seed)
    dest.mkdir(parents=True, exist_ok=True)
    for name, stored in COPIED_FILES:
        _copy_atomic(run / name, dest / stored)
    return True


def _child_env(parallel: int) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


class StudyInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the runner (SIGINT raises :class:`KeyboardInterrupt`)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt_on_signals():
    """Turn SIGTERM and SIGHUP into :class:`StudyInterrupted` (main thread; ignored signals
    stay ignored, as SIGHUP under ``nohup``: :func:`pyg_docre.signals.signal_handlers`),
    so that the runner stops its training processes instead of leaving them running without
    it."""
    def interrupt(signum, frame):
        raise StudyInterrupted(signum)

    signums = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    return signal_handlers(signums, interrupt)


class TrainingProcesses:
    """The training processes of one :func:`run_study` that have not ended yet; once
    :meth:`stop` is called, :meth:`start` starts none."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], subprocess.Popen] = {}
        self._stopping = False

    def start(self, key: tuple[str, int], cmd: list[str], **popen_kwargs
              ) -> Optional[subprocess.Popen]:
        """Start ``cmd`` in a new process group (a stop reaches its own children too); None
        once stopping."""
        with self._lock:
            if self._stopping:
                return None
            proc = subprocess.Popen(cmd, start_new_session=True, **popen_kwargs)
            self._running[key] = proc
            return proc

    @property
    def stopping(self) -> bool:
        return self._stopping

    def ended(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._running.pop(key, None)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> list[tuple[str, int]]:
        """SIGTERM each running process group, SIGKILL what is left after ``grace`` seconds;
        return the stopped runs."""
        with self._lock:
            self._stopping = True
            running = dict(self._running)
        for proc in running.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in running.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        return sorted(running)


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signum)
        else:                                            # pragma: no cover (Windows)
            proc.terminate() if signum == signal.SIGTERM else proc.kill()
    except ProcessLookupError:                           # it has just ended
        pass


def _run_one(study: Study, row: str, seed: int, cmd: list[str], env: dict,
             processes: TrainingProcesses) -> Optional[int]:
    """Run one training process to its end; its exit status, or None if the study was stopped
    before it started."""
    if processes.stopping:
        return None
    run = study.run_dir(row, seed)
    run.mkdir(parents=True, exist_ok=True)
    with open(run / LOG_NAME, "a", encoding="utf-8") as log:
        log.write(f"# {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} "
                  f"{shlex.join(cmd)}\n")
        log.flush()
        proc = processes.start((row, seed), cmd, cwd=study.base_dir, env=env, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if proc is None:
            return None
        try:
            return proc.wait()
        finally:
            processes.ended((row, seed))


def run_study(study: Study, plan: list[tuple[str, int]], *, parallel: int = 1,
              device: Optional[str] = None, command: str = "",
              say: Callable[[str], None] = print) -> list[str]:
    """Run ``plan`` (``parallel`` at a time, started in order), collect each finished run and
    rewrite the summary after it; return one message per failed run (empty: all succeeded)."""
    env = _child_env(parallel)
    failures: list[str] = []
    processes = TrainingProcesses()
    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        futures = {}
        for row, seed in plan:
            cmd = train_command(study, row, seed, device)
            futures[pool.submit(_run_one, study, row, seed, cmd, env, processes)] = (row, seed)
        for future in as_completed(futures):
            row, seed = futures[future]
            log = study.run_dir(row, seed) / LOG_NAME
            try:
                rc = future.result()
                done = collect_run(study, row, seed)
            except Exception as err:            # OSError, StudyError
                rc, done = f"error {err}", False
            if rc == 0 and done:
                say(f"done   {row}/{seed} -> {study.result_dir(row, seed)}")
            else:
                why = f"exit status {rc}" if rc != 0 else "the run is not complete"
                failures.append(f"{row}/{seed} failed ({why}); log: {log}")
                say(f"FAILED {failures[-1]}")
            write_summary(study, command, say=say)
    except KeyboardInterrupt:                   # Ctrl-C, or StudyInterrupted
        pool.shutdown(wait=False, cancel_futures=True)   # the queued runs first, then the rest
        for row, seed in processes.stop():
            say(f"stopped {row}/{seed}; the next sitting resumes it from its last saved state "
                f"(log: {study.run_dir(row, seed) / LOG_NAME})")
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failures


# ------------------------------------------------------------------------------ summary

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise StudyError(f"{path}: cannot read ({err})") from None


def _metrics(study: Study) -> dict[tuple[str, int], dict]:
    """metrics.json of every done (row, seed)."""
    return {(r.name, s): _read_json(study.result_dir(r.name, s) / "metrics.json")
            for r in study.rows for s in study.seeds if study.is_done(r.name, s)}


def _score(metrics: dict, split: str, key: str, path: str) -> float:
    try:
        value = metrics[split][key]
    except (KeyError, TypeError):
        raise StudyError(f"{path}: {split}.{key}: missing") from None
    if value is None:
        raise StudyError(f"{path}: {split}.{key}: null (no training documents for Ign F1?)")
    return float(value)


def build_summary(study: Study, metrics: Optional[dict] = None) -> dict:
    """The content of ``OUTPUT.json``: per row, its done seeds in the study's order and their
    test F1, test Ign F1 and dev F1 (percent)."""
    metrics = _metrics(study) if metrics is None else metrics
    rows = []
    for r in study.rows:
        seeds = [s for s in study.seeds if (r.name, s) in metrics]
        paths = {s: str(study.result_dir(r.name, s) / "metrics.json") for s in seeds}
        rows.append({
            "name": r.name, "config": r.config, "overrides": list(r.overrides), "seeds": seeds,
            "test_f1": [_score(metrics[r.name, s], "test", "f1", paths[s]) for s in seeds],
            "test_ign_f1": [_score(metrics[r.name, s], "test", "ign_f1", paths[s])
                            for s in seeds],
            "dev_f1": [_score(metrics[r.name, s], "dev", "f1", paths[s]) for s in seeds]})
    return {"protocol": study.protocol, "rows": rows}


def mean_sd(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation (ddof=1); None where undefined."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def mean_sd_text(values: list[float]) -> str:
    """``"mean ± sd"`` with two decimals (``"n/a"`` for no values, ``"mean ± n/a"`` for one)."""
    mean, sd = mean_sd(values)
    if mean is None:
        return "n/a"
    return f"{mean:.2f} ± " + ("n/a" if sd is None else f"{sd:.2f}")


def gap_table(summary: dict, seeds: Iterable[int], reference: str = "full", *,
              key: str = "test_f1", references: Optional[dict[str, str]] = None) -> list[dict]:
    """Per row other than ``reference``: ``{"name", "vs", "gaps": {seed: row score - reference
    score}, "mean": mean gap or None}`` over the seeds both have (``key``: ``"test_f1"`` or
    ``"dev_f1"``, percent). ``references`` maps a row to its own reference row (a lever of the
    baseline is compared with the baseline); the others are compared with ``reference``. Rows
    whose reference is not in the summary are left out."""
    by_name = {r["name"]: r for r in summary["rows"]}
    references = references or {}
    out = []
    for r in summary["rows"]:
        vs = references.get(r["name"], reference)
        if r["name"] == reference and r["name"] not in references or vs not in by_name:
            continue
        ref = dict(zip(by_name[vs]["seeds"], by_name[vs][key]))
        mine = dict(zip(r["seeds"], r[key]))
        gaps = {s: mine[s] - ref[s] for s in seeds if s in mine and s in ref}
        out.append({"name": r["name"], "vs": vs, "gaps": gaps,
                    "mean": statistics.fmean(gaps.values()) if gaps else None})
    return out


def _environments(study: Study, metrics: dict) -> tuple[dict, dict]:
    """{device: [row/seed]}, {commit: [row/seed]} of the done runs."""
    devices: dict[str, list[str]] = {}
    commits: dict[str, list[str]] = {}
    for (row, seed), m in metrics.items():
        env = m.get("environment") or {}
        devices.setdefault(str(env.get("device", "unknown")), []).append(f"{row}/{seed}")
        commits.setdefault(str(env.get("git_commit", "unknown")), []).append(f"{row}/{seed}")
    return devices, commits


def uncommitted_code(environment: dict) -> Optional[list[str]]:
    """The files outside :data:`RESULT_FOLDERS` that differed from a run's commit when it started
    (its ``metrics.json`` ``environment``): ``[]`` when its commit is clean or only result files
    had changed, ``None`` when the commit is ``-dirty`` but the run did not record which files
    (``git_modified``, recorded since the runs of 2026-11-28)."""
    if not str(environment.get("git_commit", "")).endswith("-dirty"):
        return []
    modified = environment.get("git_modified")
    if modified is None:
        return None
    return [path for path in modified if not path.startswith(RESULT_FOLDERS)]


def _uncommitted_lines(metrics: dict) -> list[str]:
    """The summary's lines on runs made from a checkout with uncommitted changes: a warning for
    those whose changes touched code (or were not recorded), a note for those that changed
    result files only."""
    code_runs: dict[str, list[str]] = {}      # commit -> "row/seed (what changed)"
    results_only: list[str] = []
    for (row, seed), m in sorted(metrics.items()):
        env = m.get("environment") or {}
        commit = str(env.get("git_commit", "unknown"))
        if not commit.endswith("-dirty"):
            continue
        files = uncommitted_code(env)
        if files == []:
            results_only.append(f"{row}/{seed}")
            continue
        shown = "files not recorded" if files is None else ", ".join(files[:5]) + (
            f" and {len(files) - 5} more" if len(files) > 5 else "")
        code_runs.setdefault(commit, []).append(f"{row}/{seed} ({shown})")
    lines = []
    if code_runs:
        lines.append(f"- **Warning: some runs were made from a checkout with uncommitted "
                     f"changes** ({', '.join(sorted(code_runs))}): their code is not exactly the "
                     f"commit, or was not recorded: "
                     + "; ".join(run for runs in code_runs.values() for run in runs) + ".")
    if results_only:
        lines.append(f"- {len(results_only)} run(s) from a `-dirty` checkout whose only "
                     f"uncommitted changes were results ({', '.join(RESULT_FOLDERS)}), so with "
                     f"the commit's code: {', '.join(results_only)}.")
    return lines


def display_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` where it lies under it (as study reports show paths), else as
    given."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def summary_markdown(study: Study, command: str, metrics: Optional[dict] = None,
                     png_note: Optional[str] = None) -> str:
    """The content of ``OUTPUT.md``."""
    metrics = _metrics(study) if metrics is None else metrics
    summary = build_summary(study, metrics)
    total = len(study.rows) * len(study.seeds)
    lines = [f"# Fidelity study `{study.protocol}`", "",
             f"Study file `{display_path(study.path, study.base_dir)}`; {len(metrics)} of {total} "
             f"runs done ({len(study.rows)} rows x seeds {', '.join(map(str, study.seeds))}). "
             f"Scores in percent, test unless marked; mean ± sample sd (ddof=1) over the seeds "
             f"done. Written by:", "", "```bash", command, "```", "",
             "| row | config | overrides | n | P | R | F1 | Ign F1 | intra-F1 | inter-F1 "
             "| dev F1 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in study.rows:
        done = [s for s in study.seeds if (r.name, s) in metrics]
        cells = [mean_sd_text([float(metrics[r.name, s]["test"][k]) for s in done
                               if metrics[r.name, s]["test"].get(k) is not None])
                 for k in SCORES]
        cells.append(mean_sd_text([float(metrics[r.name, s]["dev"]["f1"]) for s in done]))
        overrides = ", ".join(f"`{o}`" for o in r.overrides) or "-"
        lines.append(f"| {r.name} | `{r.config}` | {overrides} | {len(done)} | "
                     + " | ".join(cells) + " |")
    references = {r.name: r.compare_to for r in study.rows if r.compare_to is not None}
    lines += [""]
    for key, label in (("test_f1", "test F1"), ("dev_f1", "dev F1")):
        gaps = gap_table(summary, study.seeds, key=key, references=references)
        if not gaps:
            lines += ["No paired gap table: the study has no row named `full`.", ""]
            break
        lines += [f"Paired gap in {label} (row − the row it is compared with, same seed):", "",
                  "| row | vs | " + " | ".join(f"seed {s}" for s in study.seeds)
                  + " | mean | n |", "|---|---|" + "---|" * (len(study.seeds) + 2)]
        for g in gaps:
            cells = [f"{g['gaps'][s]:+.2f}" if s in g["gaps"] else "n/a" for s in study.seeds]
            mean = "n/a" if g["mean"] is None else f"{g['mean']:+.2f}"
            lines.append(f"| {g['name']} | {g['vs']} | " + " | ".join(cells)
                         + f" | {mean} | {len(g['gaps'])} |")
        lines.append("")
    devices, commits = _environments(study, metrics)
    lines += ["Environment (from each run's metrics.json):", ""]
    if len(devices) > 1:
        lines.append(f"- **Warning: the runs were made on different devices** "
                     f"({', '.join(sorted(devices))}); their scores may not be comparable.")
    lines += _uncommitted_lines(metrics)
    for label, groups in (("device", devices), ("commit", commits)):
        for value, runs in sorted(groups.items()):
            lines.append(f"- {label} `{value}`: {len(runs)} run(s) ({', '.join(sorted(runs))})")
    if not metrics:
        lines.append("- no run done yet")
    if png_note:
        lines += ["", png_note]
    return "\n".join(lines) + "\n"


def _plot(summary: dict, path: Path, protocol: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(rows) + 1.5), 4.0))
    means = [mean_sd(r["test_f1"])[0] for r in rows]
    sds = [mean_sd(r["test_f1"])[1] or 0.0 for r in rows]
    x = list(range(len(rows)))
    ax.bar(x, [m if m is not None else 0.0 for m in means], yerr=sds, capsize=4,
           color="#9ecae1", edgecolor="#3182bd")
    for i, r in enumerate(rows):
        ax.plot([i] * len(r["test_f1"]), r["test_f1"], "o", color="#08306b", markersize=4)
    values = [v for r in rows for v in r["test_f1"]]
    if values:
        ax.set_ylim(max(0.0, min(values) - 5.0), min(100.0, max(values) + 3.0))
    ax.set_xticks(x, [r["name"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel("test F1 (%)")
    ax.set_title(f"{protocol}: test F1, mean ± sd, seeds as dots")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()), binary=True)


def write_summary(study: Study, command: str, say: Callable[[str], None] = print) -> list[Path]:
    """Rewrite ``OUTPUT.json``, ``OUTPUT.md`` and (with matplotlib) ``OUTPUT.png``."""
    metrics = _metrics(study)
    summary = build_summary(study, metrics)
    study.output.parent.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_text(study.summary_path(".json"), json.dumps(summary, indent=2)
                                 + "\n")]
    png_note = None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        png_note = ("No chart: matplotlib is not installed (`pip install 'pyg_docre[bench]'`), "
                    f"so {study.summary_path('.png').name} was not written.")
        say(f"note: {png_note}")
    else:
        _plot(summary, study.summary_path(".png"), study.protocol)
        written.append(study.summary_path(".png"))
    written.insert(1, atomic_write_text(study.summary_path(".md"),
                                        summary_markdown(study, command, metrics, png_note)))
    return written


# ------------------------------------------------------------------------------ verify

def _split_documents(config, split, base_dir: Path, cache: dict) -> list[dict]:
    from pyg_docre.data import load_docred, parse_doc_range

    path = config.data.resolve(split.file, base_dir)
    # read once per file (the scorer itself refuses gold documents with repeated titles)
    if str(path) not in cache:
        cache[str(path)] = load_docred(path, unique_titles=False)
    docs = cache[str(path)]
    return [docs[i] for i in parse_doc_range(split.docs, len(docs))]


def result_splits(result_dir: str | os.PathLike, base_dir: str | os.PathLike = ROOT,
                  cache: Optional[dict] = None) -> tuple[Any, list[tuple[str, list, Path]]]:
    """A results folder's config (its ``config.yaml``) and, for dev and test, the
    ``(split name, gold documents, result file)`` of every split that has a result file."""
    result_dir, base_dir = Path(result_dir), Path(base_dir)
    cache = {} if cache is None else cache
    config = load_config(result_dir / "config.yaml")
    splits = []
    for split_name, split in (("dev", config.data.dev), ("test", config.data.test)):
        result = result_file(result_dir, split_name)
        if split is not None and result.is_file():
            splits.append((split_name, _split_documents(config, split, base_dir, cache), result))
    return config, splits


def rescore_run(result_dir: str | os.PathLike, base_dir: str | os.PathLike = ROOT,
                cache: Optional[dict] = None) -> dict[str, dict]:
    """Official DocRED scores (percent) of a results folder's ``result_dev.json.gz`` and
    ``result_test.json.gz``, against the dev and test data of its ``config.yaml``, Ign F1 against
    that config's training documents (``data.ign_train`` if set, else ``data.train``)."""
    from pyg_docre.metrics import DocREDScorer, read_result

    cache = {} if cache is None else cache
    config, splits = result_splits(result_dir, base_dir, cache)
    ign_split = config.data.ign_train or config.data.train
    train = _split_documents(config, ign_split, Path(base_dir), cache)
    return {split_name: DocREDScorer(gold, train).score(read_result(result), pred_path=result)
            .to_dict(percent=True) for split_name, gold, result in splits}


def verify_run(result_dir: str | os.PathLike, base_dir: str | os.PathLike = ROOT,
               cache: Optional[dict] = None, tolerance: float = TOLERANCE) -> list[str]:
    """Mismatches between a results folder's ``metrics.json`` and a rescoring of its result
    files, one message each naming the file and the field (empty: all equal)."""
    result_dir = Path(result_dir)
    metrics_path = result_dir / "metrics.json"
    try:
        stored = _read_json(metrics_path)
        rescored = rescore_run(result_dir, base_dir, cache)
    except (StudyError, ConfigError, ValueError, OSError) as err:
        return [f"{result_dir}: cannot rescore ({err})"]
    problems = []
    for split in ("dev", "test"):
        if split not in rescored:
            problems.append(f"{result_file(result_dir, split)}: missing or no {split} split "
                            f"in config.yaml")
            continue
        for key, value in rescored[split].items():
            have = (stored.get(split) or {}).get(key)
            if value is None and have is None:
                continue
            if value is None or have is None or abs(float(have) - value) > tolerance:
                problems.append(f"{metrics_path}: {split}.{key}: stored {have} but "
                                f"{result_file(result_dir, split).name} rescores to {value}")
    return problems


def verify_study(study: Study, rows=None, seeds=None, say: Callable[[str], None] = print
                 ) -> list[str]:
    """:func:`verify_run` over every done (row, seed) of the selection."""
    names, chosen = _select(study, rows, seeds)
    cache: dict = {}
    problems, checked = [], 0
    for seed in chosen:
        for name in names:
            if study.is_done(name, seed):
                found = verify_run(study.result_dir(name, seed), study.base_dir, cache)
                checked += 1
                problems += found
                say(f"{'MISMATCH' if found else 'ok'} {name}/{seed}")
    say(f"verified {checked} run(s): {len(problems)} mismatch(es)")
    return problems


# ------------------------------------------------------------------------------ command line

def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python experiments/study.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("study", type=Path, help="the study file (YAML)")
    p.add_argument("--rows", type=_name_list, help="only these rows (comma-separated names)")
    p.add_argument("--seeds", type=_int_list, help="only these seeds (comma-separated)")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="runs at once (each with OMP_NUM_THREADS=cpu_count//N unless set)")
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="set training.device of every run (default: the config's)")
    p.add_argument("--max-runs", type=int, metavar="K", help="start at most K runs")
    p.add_argument("--no-reuse", action="store_true",
                   help="run every (row, seed) here, even when another study beside this one "
                        "holds a done run of the same config and seed on the same device")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="check the study, print the runs to do and their commands, exit")
    mode.add_argument("--summary-only", action="store_true",
                      help="collect complete runs and rewrite the summary; start nothing")
    mode.add_argument("--verify", action="store_true",
                      help="rescore every result file and compare with metrics.json")
    return p


def main(argv: Optional[list[str]] = None, *, base_dir: str | os.PathLike = ROOT,
         say: Callable[[str], None] = print) -> int:
    """Exit status: 0 success, 1 a run failed or --verify found a mismatch, 2 bad input,
    128 + N stopped by signal N."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    command = shlex.join(["python", "experiments/study.py", *argv])
    try:
        if args.parallel < 1:
            raise StudyError(f"--parallel: must be >= 1, got {args.parallel}")
        if args.max_runs is not None and args.max_runs < 0:
            raise StudyError(f"--max-runs: must be >= 0, got {args.max_runs}")
        study = load_study(args.study, base_dir=base_dir, device=args.device)
        if args.verify:
            problems = verify_study(study, args.rows, args.seeds, say=say)
            for problem in problems:
                print(f"mismatch: {problem}", file=sys.stderr)
            return 1 if problems else 0
        if args.dry_run:
            plan = plan_runs(study, args.rows, args.seeds)
            to_collect = [(r, s) for r, s in plan if _complete_run(study, r, s)]
            reused = ([] if args.no_reuse else
                      reuse_equivalent_runs(study, plan, args.device, dry_run=True, say=say))
            plan = [p for p in plan if p not in to_collect and p not in reused][:args.max_runs]
            say(f"{study.path}: {len(plan)} run(s) to do, {len(to_collect)} complete run(s) "
                f"to collect, {len(reused)} to reuse")
            for row, seed in plan:
                say(f"{row}/{seed}: {shlex.join(train_command(study, row, seed, args.device))}")
            return 0
        names, chosen = _select(study, args.rows, args.seeds)
        for seed in chosen:                  # runs completed in an earlier sitting
            for name in names:
                collect_run(study, name, seed)
        if not args.summary_only and not args.no_reuse:
            reuse_equivalent_runs(study, plan_runs(study, args.rows, args.seeds), args.device,
                                  say=say)
        to_do = plan_runs(study, args.rows, args.seeds)
        plan = to_do[:args.max_runs]
        if args.summary_only or not plan:
            if not to_do:
                say(f"{study.path}: nothing to run")
            elif not args.summary_only:
                say(f"{study.path}: {len(to_do)} run(s) to do, none started (--max-runs 0)")
            write_summary(study, command, say=say)
            say(f"summary: {study.summary_path('.md')}")
            return 0
        say(f"{study.path}: {len(plan)} run(s), {args.parallel} at a time")
        with _interrupt_on_signals():
            failures = run_study(study, plan, parallel=args.parallel, device=args.device,
                                 command=command, say=say)
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"study: stopped by {signal.Signals(signum).name}; run the same command to go on",
              file=sys.stderr)
        return 128 + signum
    except StudyError as err:
        print(f"study: error: {err}", file=sys.stderr)
        return 2
    say(f"summary: {study.summary_path('.md')}")
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
