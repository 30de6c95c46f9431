#!/usr/bin/env python
"""Train DocRE-BSI (or a baseline/ablation) from a YAML config, select on dev, test.

    python experiments/run.py --config docred_bert.yaml [--output DIR] [--set key=value ...]

The same as ``pyg-docre train`` (``python -m pyg_docre train``), with paths relative to this
checkout: data under ``datasets/``, outputs in ``runs/NAME``. NAME is a packaged config
(``pyg_docre/configs/``, see ``--list-configs``; ``.yaml`` may be omitted) or a path.
``--set training.epochs=2 --set model.baseline=true`` overrides config keys (dotted paths, YAML
values); ``--dry-run`` checks everything and prints the resolved config without training.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    from pyg_docre.cli import main as cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["train", *argv], prog="python experiments/run.py", base_dir=ROOT)


if __name__ == "__main__":
    sys.exit(main())
