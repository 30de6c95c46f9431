"""Where the prepared datasets are: ``datasets/`` of the checkout (``datasets/prepare.py``
writes there), else ``../shared/datasets`` beside it. One lookup for the tests, the benchmarks
and the examples. Imports nothing heavy (benchmark child processes use it)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

__all__ = ["CHECKOUT", "DATASET_ROOTS", "find_dataset_file"]

#: The folder that holds the ``pyg_docre`` package (a checkout's root).
CHECKOUT = Path(__file__).resolve().parents[1]
#: Where :func:`find_dataset_file` looks, in order.
DATASET_ROOTS = (CHECKOUT / "datasets", CHECKOUT.parent / "shared" / "datasets")


def find_dataset_file(name: str, filename: str,
                      roots: Optional[Iterable[Path]] = None) -> Path:
    """``ROOT/NAME/FILENAME`` for the first of ``roots`` (default :data:`DATASET_ROOTS`) that
    has it, e.g. ``find_dataset_file("re-docred", "dev_revised.json")``.

    Raises:
        FileNotFoundError: naming every place looked at and how to prepare the data.
    """
    roots = DATASET_ROOTS if roots is None else tuple(roots)
    for base in roots:
        path = Path(base) / name / filename
        if path.exists():
            return path
    places = " or ".join(map(str, roots))
    raise FileNotFoundError(f"{name}/{filename} not found under {places}; prepare it with "
                            f"`make data` (datasets/prepare.py)")
