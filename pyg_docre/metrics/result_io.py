"""The official DocRED ``result.json`` format: reading, validating and writing predictions.

A result file is a JSON list of predictions, one per predicted relation triple::

    [{"title": "Kungliga Hovkapellet", "h_idx": 0, "t_idx": 3, "r": "P17"}, ...]

``h_idx``/``t_idx`` index the ``vertexSet`` of the document called ``title``; ``r`` is a Wikidata
P-id. An optional ``evidence`` list (sentence ids) is accepted on reading and ignored: this package
does not score evidence, and :func:`write_result` writes the four keys only. A path ending in
``.gz`` is read and written gzip-compressed (the same JSON inside; written reproducibly, with no
timestamp or file name in the gzip header): a Re-DocRED test result of 12,000 predictions is
0.86 MB as JSON and 60 kB compressed, which is what a study commits per run.

Errors raise :class:`PredictionFormatError` (a ``ValueError``), whose message names the file, the
entry's position (and title when readable) and the field, e.g.
``result.json: prediction 12 (title 'Kungliga Hovkapellet'): h_idx: must be an integer, got '3'``.
"""
from __future__ import annotations

import gzip
import io
import json
import numbers
import zlib
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Mapping

from pyg_docre.errors import FormatError

from ..io import atomic_write, atomic_write_text

__all__ = ["PREDICTION_KEYS", "PredictionFormatError", "check_prediction", "read_result",
           "write_result"]

#: The keys of one prediction in the official format, in the order they are written.
PREDICTION_KEYS = ("title", "h_idx", "t_idx", "r")


class PredictionFormatError(FormatError):
    """A prediction (or a result file) is malformed or does not fit its gold document.

    Attributes:
        path: the result file (``None`` for predictions given in memory).
        index: the prediction's position in the list (``None`` for file-level errors).
        title: the prediction's title when it has a readable one.
        field: the offending key (``title``, ``h_idx``, ``t_idx`` or ``r``), when there is one.
    """

    def __init__(self, reason: str, *, path: str | PathLike | None = None,
                 index: int | None = None, title: Any = None, field: str | None = None):
        self.index = index
        self.title = title
        where = None if index is None else (
            f"prediction {index}" + (f" (title {title!r})" if title is not None else ""))
        super().__init__(reason, path=path, where=where, field=field)


def is_index(value: Any) -> bool:
    """True for an integer index (Python or NumPy integer), False for bools, floats, strings."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_prediction(pred: Any, index: int, *, path: str | PathLike | None = None) -> None:
    """Check the structure of one prediction: a mapping with a string ``title``, integer
    ``h_idx``/``t_idx`` and a string ``r``.

    Whether the indices fit the gold document is checked by the scorer, which knows the gold
    ``vertexSet``. Raises :class:`PredictionFormatError` naming ``path``, ``index`` and the field.
    """
    if not isinstance(pred, Mapping):
        raise PredictionFormatError(f"must be a JSON object, got {type(pred).__name__}",
                                    path=path, index=index)
    title = pred.get("title")
    shown_title = title if isinstance(title, str) else None
    for key in PREDICTION_KEYS:
        if key not in pred:
            raise PredictionFormatError("missing key", path=path, index=index,
                                        title=shown_title, field=key)
    for key in ("title", "r"):
        if not isinstance(pred[key], str):
            raise PredictionFormatError(f"must be a string, got {pred[key]!r}", path=path,
                                        index=index, title=shown_title, field=key)
    for key in ("h_idx", "t_idx"):
        if not is_index(pred[key]):
            raise PredictionFormatError(f"must be an integer, got {pred[key]!r}", path=path,
                                        index=index, title=shown_title, field=key)


def read_result(path: str | PathLike) -> list[dict]:
    """Read an official ``result.json`` (``result.json.gz``: gzip-compressed) and check every
    entry with :func:`check_prediction`.

    Returns:
        The predictions as read (dicts; an ``evidence`` key, if present, is kept as is).

    Raises:
        PredictionFormatError: the file is missing, not JSON, not a list, or an entry is malformed.
    """
    path = Path(path)
    try:
        with _open_text(path) as f:
            preds = json.load(f)
    except FileNotFoundError:
        raise PredictionFormatError("no such file", path=path) from None
    except IsADirectoryError:
        raise PredictionFormatError("is a directory, not a result file", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PredictionFormatError(f"not valid JSON ({err})", path=path) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise PredictionFormatError(f"not a complete gzip file ({err})", path=path) from None
    if not isinstance(preds, list):
        raise PredictionFormatError(
            f"must hold a JSON list of predictions, got {type(preds).__name__}", path=path)
    for i, pred in enumerate(preds):
        check_prediction(pred, i, path=path)
    return preds


def write_result(predictions: Iterable[Mapping[str, Any]], path: str | PathLike) -> Path:
    """Write predictions in the official format, atomically.

    Every prediction is checked with :func:`check_prediction` and written as
    ``{"title", "h_idx", "t_idx", "r"}`` (NumPy/torch-free plain ints; other keys such as
    ``evidence`` are dropped). The JSON is written to a temporary file in the destination's
    directory and moved into place with :func:`os.replace`, so an interrupted or failed write
    leaves either the previous file or none, never a truncated one. A ``path`` ending in ``.gz``
    gets the JSON gzip-compressed, with a fixed header (same predictions, same bytes).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    rows = []
    for i, pred in enumerate(predictions):
        check_prediction(pred, i)
        rows.append({"title": pred["title"], "h_idx": int(pred["h_idx"]),
                     "t_idx": int(pred["t_idx"]), "r": pred["r"]})
    text = json.dumps(rows, ensure_ascii=False)
    if not _gzipped(path):
        return atomic_write_text(path, text)
    data = gzip.compress(text.encode("utf-8"), mtime=0)
    return atomic_write(path, lambda f: f.write(data), binary=True)


def _gzipped(path: str | PathLike) -> bool:
    return Path(path).suffix == ".gz"


def _open_text(path: Path) -> io.TextIOBase:
    if _gzipped(path):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")
