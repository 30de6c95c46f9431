#!/usr/bin/env python
"""Print a Markdown comparison of finished runs from their metrics.json files.

    python experiments/summarize.py runs/redocred_minilm_cpu runs/redocred_minilm_cpu_atlop

One row per run and split (precision, recall, F1, Ign F1, intra-F1, inter-F1 in percent), then
the run times: wall time, training seconds, seconds per training document, best epoch, and each
epoch's training time and dev F1.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KEYS = ("precision", "recall", "f1", "ign_f1", "intra_f1", "inter_f1")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def summarize(run_dirs: list[Path]) -> str:
    runs = []
    for d in run_dirs:
        path = d / "metrics.json"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file (has the run finished?)")
        runs.append((d.name, json.loads(path.read_text())))
    lines = ["| run | split | " + " | ".join(KEYS) + " |", "|---|---|" + "---|" * len(KEYS)]
    for name, m in runs:
        for split in ("dev", "test"):
            if split in m:
                lines.append(f"| {name} | {split} | " + " | ".join(_fmt(m[split][k]) for k in KEYS)
                             + " |")
    lines += ["", "| run | wall time (min) | training time (min) | s / training document "
              "| best epoch | epochs: training s (dev F1) |", "|---|---|---|---|---|---|"]
    for name, m in runs:
        epochs = ", ".join(f"{h['train_seconds']:.0f} ({h['dev']['f1']:.1f})" for h in m["history"])
        lines.append(f"| {name} | {m['wall_seconds'] / 60:.1f} | "
                     f"{sum(h['train_seconds'] for h in m['history']) / 60:.1f} | "
                     f"{m['seconds_per_train_document']:.3f} | {m['best_epoch']} | {epochs} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run output folders")
    args = parser.parse_args(argv)
    try:
        print(summarize(args.runs))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
