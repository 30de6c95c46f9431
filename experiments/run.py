#!/usr/bin/env python
"""Train DocRE-BSI (or a baseline/ablation) from a YAML config, select on dev, test.

    python experiments/run.py --config docred_bert.yaml [--output DIR] [--set key=value ...]
                              [--resume | --overwrite]

NAME is looked up in experiments/configs/ (``.yaml`` may be omitted); a path works too.
``--set training.epochs=2 --set model.baseline=true`` overrides config keys (dotted paths, YAML
values). The output folder (default ``runs/NAME``) receives config.yaml, metrics.json,
result_dev.json, result_test.json, checkpoint/ and train.log (see
``pyg_docre.training.experiment``). A non-empty output folder is refused (exit 2, nothing
touched) unless ``--resume`` continues the run in it from its ``resume/`` state (same config;
a complete run is reported and not repeated) or ``--overwrite`` replaces it. ``run_state.json``
in the folder says whether the run is running, complete or failed. Every configuration problem
is reported in one line before any data is loaded (exit 2).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "experiments" / "configs"


def find_config(name: str) -> Path:
    candidates = [Path(name), CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    available = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
    raise FileNotFoundError(f"config {name!r} not found (looked in {CONFIG_DIR}); "
                            f"available: {available}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="config name or path")
    parser.add_argument("--output", help="output folder (default: runs/NAME)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key (repeatable)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the (interrupted) run in the output folder")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace the run in a non-empty output folder")
    args = parser.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT))
    from pyg_docre.config import ConfigError, load_config
    from pyg_docre.data import DocREDFormatError
    from pyg_docre.models.checkpoint import CheckpointError
    from pyg_docre.training.experiment import (RunFolderError, format_results_table,
                                               run_experiment)
    from pyg_docre.training.resume import ResumeError

    try:
        path = find_config(args.config)
        config = load_config(path, args.overrides)
    except (FileNotFoundError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    output = Path(args.output) if args.output else ROOT / "runs" / path.stem
    command = "python experiments/run.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    try:
        metrics = run_experiment(config, output, base_dir=ROOT, command=command,
                                 resume=args.resume, overwrite=args.overwrite)
    except (ConfigError, RunFolderError, DocREDFormatError, CheckpointError, ResumeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if metrics.get("already_complete"):
        print(f"the run in {output} is already complete; nothing to resume")
    print(format_results_table(metrics))
    print(f"outputs in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
