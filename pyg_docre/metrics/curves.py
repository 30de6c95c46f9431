"""Precision-recall over prediction scores (``predict --format rich`` files).

Each rich prediction carries ``score`` = ``logit_r - logit_TH`` (see
:class:`pyg_docre.RelationExtractor`); keeping the predictions with ``score > s`` for a
decreasing ``s`` traces the precision-recall curve of the model. The curve is computed with
scikit-learn's :func:`~sklearn.metrics.precision_recall_curve` over the unique
``(title, h_idx, t_idx, r)`` predictions (a triple predicted twice keeps its highest score), with
recall rescaled to DocRED's definition: correct predictions over **all** gold facts (facts never
predicted count as misses). Produce the predictions with ``--threshold -inf`` to see the curve
beyond the learned threshold (score 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .result_io import PredictionFormatError
from .scoring import DocREDScorer

__all__ = ["PRCurve", "precision_recall_points", "plot_precision_recall"]


@dataclass
class PRCurve:
    """Precision and recall (fractions) when keeping the predictions with ``score >=
    thresholds[i]``; ``precision[-1] = 1, recall[-1] = 0`` end the curve, as in scikit-learn.
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray

    @property
    def f1(self) -> np.ndarray:
        p, r = self.precision[:-1], self.recall[:-1]
        return np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)

    @property
    def best_f1(self) -> float:
        return float(self.f1.max()) if self.thresholds.size else 0.0

    @property
    def best_threshold(self) -> float:
        return float(self.thresholds[int(self.f1.argmax())]) if self.thresholds.size else math.nan


def precision_recall_points(predictions: Iterable[Mapping], scorer: DocREDScorer, *,
                            pred_path: str | PathLike | None = None) -> PRCurve:
    """The precision-recall curve of scored predictions against ``scorer``'s gold facts.

    Raises:
        PredictionFormatError: a prediction has no numeric ``score`` (an official result.json,
            not a rich file), or is malformed.
    """
    from sklearn.metrics import precision_recall_curve

    predictions = list(predictions)
    scorer.unique_predictions(predictions, pred_path=pred_path)   # validates every entry
    best: dict[tuple, float] = {}
    for i, pred in enumerate(predictions):
        score = pred.get("score")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or math.isnan(score):
            raise PredictionFormatError(
                "no numeric score: the precision-recall curve needs a rich predictions file "
                "(pyg-docre predict --format rich)", path=pred_path, index=i,
                title=pred.get("title"), field="score")
        key = (pred["title"], int(pred["h_idx"]), int(pred["t_idx"]), pred["r"])
        best[key] = max(score, best.get(key, -math.inf))
    if not best:
        raise PredictionFormatError("no predictions to draw a curve from", path=pred_path)
    keys = list(best)
    y_true = np.array([(t, r, h, tl) in scorer.gold for t, h, tl, r in keys], dtype=int)
    scores = np.array([best[k] for k in keys], dtype=float)
    if y_true.sum() == 0:
        thresholds = np.unique(scores)
        return PRCurve(np.append(np.zeros_like(thresholds), 1.0),
                       np.zeros(thresholds.size + 1), thresholds)
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    recall = recall * (y_true.sum() / max(len(scorer.gold), 1))
    return PRCurve(precision, recall, thresholds)


def plot_precision_recall(curve: PRCurve, path: str | PathLike, *, title: str = "") -> Path:
    """Draw ``curve`` (percent axes, the best-F1 point marked) to an image file, atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyg_docre.io import atomic_write

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5, 4))
    try:
        ax.plot(100 * curve.recall, 100 * curve.precision, lw=1.5)
        if curve.thresholds.size:
            i = int(curve.f1.argmax())
            ax.scatter([100 * curve.recall[i]], [100 * curve.precision[i]], color="C3", zorder=3,
                       label=f"best F1 {100 * curve.best_f1:.2f} (score > "
                             f"{curve.best_threshold:.3g})")
            ax.legend(loc="lower left")
        ax.set_xlabel("recall (%)")
        ax.set_ylabel("precision (%)")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100.5)
        ax.grid(alpha=0.3)
        if title:
            ax.set_title(title, fontsize=9)
        fmt = path.suffix.lstrip(".") or "png"
        atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=120, bbox_inches="tight"),
                     binary=True)
    finally:
        plt.close(fig)
    return path
