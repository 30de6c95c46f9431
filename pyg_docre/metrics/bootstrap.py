r"""How much a DocRED F1 moves with the choice of documents: the document bootstrap.

A split of ``n`` documents is one sample of documents; resampling them with replacement ``B``
times and rescoring gives the spread of F1 that comes from the documents alone (not from seeds).
For two submissions on the same documents (two models, two levers) the *paired* bootstrap
resamples the same documents for both and gives the spread of their F1 difference, which is what
decides whether a difference seen on a small dev split can be told from noise.

With per-document counts ``c_d`` (correct), ``p_d`` (predicted), ``g_d`` (gold) and a resample
``S`` (a multiset of documents)::

    P_S = sum_{d in S} c_d / (sum_{d in S} p_d + p_out)     R_S = sum c_d / sum g_d
    F1_S = 2 P_S R_S / (P_S + R_S)

where ``p_out`` counts the predictions on titles that are not gold documents (they lower
precision in the official scorer, so every resample keeps them). Scores in percent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import numpy as np

from .scoring import DocREDScorer

__all__ = ["DocumentCounts", "document_counts", "bootstrap_f1", "bootstrap_mean_difference"]


@dataclass(frozen=True)
class DocumentCounts:
    """Per gold document (in ``titles`` order): correct, predicted and gold fact counts, plus
    the predictions on titles outside the gold documents (``outside``)."""

    titles: tuple[str, ...]
    correct: np.ndarray         # [n] int64
    predicted: np.ndarray       # [n] int64
    gold: np.ndarray            # [n] int64
    outside: int

    def f1(self) -> float:
        """F1 (percent) of all documents, equal to the official scorer's."""
        return float(_f1(self.correct.sum(), self.predicted.sum() + self.outside,
                         self.gold.sum()))


def document_counts(scorer: DocREDScorer, predictions: Iterable[Mapping]) -> DocumentCounts:
    """Split the official scoring of ``predictions`` (checked and deduplicated as
    :meth:`DocREDScorer.score` does) into per-document counts."""
    titles = tuple(scorer.vertex_sets)
    index = {t: i for i, t in enumerate(titles)}
    correct = np.zeros(len(titles), dtype=np.int64)
    predicted = np.zeros(len(titles), dtype=np.int64)
    gold = np.zeros(len(titles), dtype=np.int64)
    for title, _, _, _ in scorer.gold:
        gold[index[title]] += 1
    outside = 0
    for title, h, t, r in scorer.unique_predictions(predictions):
        if title not in index:
            outside += 1
            continue
        predicted[index[title]] += 1
        correct[index[title]] += (title, r, h, t) in scorer.gold
    return DocumentCounts(titles, correct, predicted, gold, outside)


def _f1(correct, predicted, gold):
    correct, predicted, gold = (np.asarray(x, dtype=np.float64) for x in (correct, predicted,
                                                                           gold))
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    recall = np.divide(correct, gold, out=np.zeros_like(correct), where=gold > 0)
    total = precision + recall
    return 100.0 * np.divide(2 * precision * recall, total, out=np.zeros_like(total),
                             where=total > 0)


def _picks(n: int, samples: int, seed: int) -> np.ndarray:
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def _resampled(c: DocumentCounts, picks: np.ndarray) -> np.ndarray:
    """F1 (percent) of every resample: ``[samples]``."""
    return _f1(c.correct[picks].sum(1), c.predicted[picks].sum(1) + c.outside,
               c.gold[picks].sum(1))


def _summary(value: float, values: np.ndarray) -> dict[str, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return {"value": float(value), "sd": float(values.std(ddof=1)), "low": float(low),
            "high": float(high)}


def bootstrap_f1(counts: DocumentCounts, reference: Optional[DocumentCounts] = None, *,
                 samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Document-bootstrap spread of F1, or of ``F1(counts) - F1(reference)`` when a reference
    on the same documents is given (paired: both rescored on the same resample).

    Returns ``{"value", "sd", "low", "high"}`` in percent: the value on all documents, the
    standard deviation over the resamples and the 2.5% / 97.5% percentiles.
    """
    if reference is None:
        picks = _picks(len(counts.titles), samples, seed)
        return _summary(counts.f1(), _resampled(counts, picks))
    return bootstrap_mean_difference([(counts, reference)], samples=samples, seed=seed)


def bootstrap_mean_difference(pairs: list[tuple[DocumentCounts, DocumentCounts]], *,
                              samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Document-bootstrap spread of the mean paired difference
    ``mean_k (F1(a_k) - F1(b_k))`` over pairs scored on the same documents (e.g. a lever and
    its reference, one pair per training seed): every resample draws one set of documents and
    rescores all pairs on it. Returns ``{"value", "sd", "low", "high"}`` in percent.
    """
    if not pairs:
        raise ValueError("no pairs to compare")
    titles = pairs[0][0].titles
    if any(c.titles != titles for pair in pairs for c in pair):
        raise ValueError("paired bootstrap: the submissions are scored on different documents")
    picks = _picks(len(titles), samples, seed)
    values = np.mean([_resampled(a, picks) - _resampled(b, picks) for a, b in pairs], axis=0)
    value = float(np.mean([a.f1() - b.f1() for a, b in pairs]))
    return _summary(value, values)
