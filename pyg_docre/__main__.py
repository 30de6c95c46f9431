"""``python -m pyg_docre <command> ...``; see :mod:`pyg_docre.cli`."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
