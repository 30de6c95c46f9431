"""Infer-F1: DocRED scores restricted to the gold facts that take part in a reasoning chain.

The DocRED-BSI paper (Table 5) reports Infer-F1 "using the test files supplied by Zeng et al.
[2020]" (GAIN, EMNLP 2020). GAIN's paper defines it in words: only the relational facts engaged in
relational reasoning count; the gold facts ``r1``, ``r2`` and ``r3`` are taken into account when
there exist ``e1 -r1-> e2 -r2-> e3`` and ``e1 -r3-> e3``.

**Sources.** GAIN's released code (DreamInvoker/GAIN, ``code/test.py``) has *no* Infer-F1: it
scores only overall F1 / Ign F1 (its ``ours`` flag is LSR's intra/inter split), and the question
of how Infer-F1 is computed is an open, unanswered issue there (#28). Neither the filtered "test
files" nor the script were published. So there is no code to follow; this module implements the
paper's definition, and takes the precision denominator from the only other evidence, the
published numbers (see "Precision" below).

**Definition.** For a gold document ``d`` with gold facts ``G_d = {(h, t, r)}``, let
``E_d = {(h, t) : (h, t, r) in G_d for some r}`` be its (directed) gold entity pairs. The pairs in a
reasoning chain are::

    C_d = { (a, b), (b, c), (a, c) :  a, b, c pairwise distinct,
                                      (a, b) in E_d, (b, c) in E_d, (a, c) in E_d }

and the inferable gold facts are ``G_inf = {(d, h, t, r) in G : (h, t) in C_d}``. With ``P`` the
unique predictions ``(title, h_idx, t_idx, r)`` and ``P'`` those that enter precision::

    precision = |P' ∩ G_inf| / |P'|     recall = |P' ∩ G_inf| / |G_inf|
    F1 = 2 precision recall / (precision + recall)

each 0 when its denominator is 0 (the convention of :mod:`pyg_docre.metrics.scoring`).

Choices, each stated because neither source fixes it explicitly:

* **Direction.** Edges are directed, as the arrows are written: ``e1 -> e2 -> e3`` with
  ``e1 -> e3``. A reversed fact (``e3 -> e1``) does not close a chain, and no inverse edges are
  added.
* **Self-loops.** ``e1, e2, e3`` must be three different entities. (DocRED has no ``h == t``
  facts, and the loader rejects them, so this only rules out degenerate "chains" of one edge.)
* **Several relations per pair.** The chain condition is on entity pairs: a pair is in a chain when
  *some* gold relation links each of its three pairs; then *every* gold relation of each of the
  three pairs is an inferable fact (each can play ``r1``, ``r2`` or ``r3``). A fact may take part
  in several chains; it counts once.
* **All three roles count.** The two hops ``r1``, ``r2`` are inferable facts too, not only the
  closing fact ``r3``, as the paper's sentence says ("the golden relational facts r1, r2 and r3").
* **Precision** (``precision_over``):

  - ``"all"`` (default): ``P' = P``, every unique prediction, as the official DocRED scorer does
    when run on a gold file whose labels are ``G_inf`` (the BSI paper's "test files supplied by
    Zeng et al."). Predictions on facts outside ``G_inf`` lower precision. This is the reading the
    published numbers support: GAIN-BERT's Infer precision (38.71) is *below* its overall dev
    precision, which its dev F1 of 61.22 puts at 44.1 or more (F1 <= 2P / (1 + P)); it is about
    the overall precision times the inferable share of the gold facts (about 70% of the facts of
    Re-DocRED's dev_revised.json are inferable). Restricting precision to inferable pairs would
    instead raise it above the overall precision, since those pairs are known to hold a
    relation.
  - ``"pairs"``: ``P' = {(d, h, t, r) in P : (h, t) in C_d}``, only the predictions on an
    inferable pair (a wrong relation on such a pair still counts against precision); predictions
    on any other pair, or on a title absent from gold, are ignored. The stricter reading, given
    for comparison; it does not reproduce the published scale.

  The numerator is the same in both: a correct inferable prediction lies on an inferable pair.
* A prediction whose title is not a gold document is kept in ``P`` under ``"all"`` (it lowers
  precision) and is never correct, as in the official scorer.
* No inferable facts at all (e.g. documents without any chain): recall and F1 are 0, and so is
  precision (no prediction can be correct); nothing is raised. :func:`infer_counts` gives
  ``gold == 0`` to tell this case apart.

Inputs are checked as in :class:`~pyg_docre.metrics.scoring.DocREDScorer`:
:class:`~pyg_docre.metrics.scoring.DocumentFormatError` for a bad or duplicate-titled gold
document, :class:`~pyg_docre.metrics.result_io.PredictionFormatError` for a bad prediction.
"""
from __future__ import annotations

from os import PathLike
from typing import Iterable, Mapping

from .scoring import PRF, DocREDScorer

__all__ = ["INFER_KEYS", "PRECISION_OVER", "chain_pairs", "inferable_facts", "infer_counts",
           "infer_scores"]

#: The keys ``evaluate --infer`` adds to its output line (percent).
INFER_KEYS = ("infer_precision", "infer_recall", "infer_f1")

#: The accepted values of ``precision_over`` (see the module docstring).
PRECISION_OVER = ("all", "pairs")


def chain_pairs(pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """The directed pairs of one document that lie on a reasoning chain.

    ``pairs``: the document's gold ``(h, t)`` pairs. Returns every ``(a, b)``, ``(b, c)``,
    ``(a, c)`` such that all three are gold pairs and ``a, b, c`` are pairwise distinct.
    """
    pairs = {(int(h), int(t)) for h, t in pairs}
    tails: dict[int, set[int]] = {}
    for h, t in pairs:
        tails.setdefault(h, set()).add(t)
    chained: set[tuple[int, int]] = set()
    for a, c in pairs:
        if a == c:
            continue
        for b in tails.get(a, ()):
            if b != a and b != c and (b, c) in pairs:
                chained.update(((a, b), (b, c), (a, c)))
    return chained


def _inferable(scorer: DocREDScorer) -> tuple[dict[str, set[tuple[int, int]]], set[tuple]]:
    """Per title the chain pairs, and the inferable gold facts ``(title, r, h, t)``."""
    pairs_by_title: dict[str, set[tuple[int, int]]] = {}
    for title, _, h, t in scorer.gold:
        pairs_by_title.setdefault(title, set()).add((h, t))
    chained = {title: chain_pairs(pairs) for title, pairs in pairs_by_title.items()}
    facts = {fact for fact in scorer.gold if (fact[2], fact[3]) in chained[fact[0]]}
    return chained, facts


def inferable_facts(gold_docs: Iterable[Mapping], *, gold_path: str | PathLike | None = None
                    ) -> frozenset[tuple[str, str, int, int]]:
    """The inferable gold facts ``G_inf`` as ``(title, r, h, t)`` (the scorer's key order).

    Raises:
        DocumentFormatError: a gold document is malformed, or two share a title.
    """
    return frozenset(_inferable(DocREDScorer(gold_docs, gold_path=gold_path))[1])


def infer_counts(gold_docs: Iterable[Mapping] | DocREDScorer, predictions: Iterable[Mapping], *,
                 precision_over: str = "all", pred_path: str | PathLike | None = None,
                 gold_path: str | PathLike | None = None) -> PRF:
    """The Infer counts ``PRF(correct=|P' ∩ G_inf|, predicted=|P'|, gold=|G_inf|)``.

    ``gold_docs`` may be a :class:`DocREDScorer` already built on the gold split. Its
    ``precision``, ``recall`` and ``f1`` are fractions; see :func:`infer_scores`.
    """
    if precision_over not in PRECISION_OVER:
        raise ValueError(f"precision_over must be one of {PRECISION_OVER}, "
                         f"got {precision_over!r}")
    scorer = gold_docs if isinstance(gold_docs, DocREDScorer) else DocREDScorer(
        gold_docs, gold_path=gold_path)
    preds = scorer.unique_predictions(predictions, pred_path=pred_path)
    chained, gold_inf = _inferable(scorer)
    if precision_over == "pairs":
        preds = {p for p in preds if (p[1], p[2]) in chained.get(p[0], ())}
    correct = sum((title, r, h, t) in gold_inf for title, h, t, r in preds)
    return PRF(correct=correct, predicted=len(preds), gold=len(gold_inf))


def infer_scores(gold_docs: Iterable[Mapping] | DocREDScorer, predictions: Iterable[Mapping], *,
                 precision_over: str = "all", percent: bool = True,
                 pred_path: str | PathLike | None = None,
                 gold_path: str | PathLike | None = None) -> dict[str, float]:
    """Infer precision / recall / F1 of ``predictions`` (dicts ``{title, h_idx, t_idx, r}``, the
    official ``result.json`` format) against ``gold_docs``.

    Returns ``{"precision", "recall", "f1"}``, in percent by default (``percent=False``: fractions).
    ``precision_over``: ``"all"`` (default; every unique prediction enters precision) or
    ``"pairs"`` (only predictions on an inferable pair). The definition, with each choice made,
    is in the module docstring.

    Raises:
        DocumentFormatError: a gold document is malformed, or two share a title.
        PredictionFormatError: a prediction lacks a key, has a wrong type, ``h_idx == t_idx``, or
            an index outside its gold document.
        ValueError: an unknown ``precision_over``.
    """
    prf = infer_counts(gold_docs, predictions, precision_over=precision_over,
                       pred_path=pred_path, gold_path=gold_path)
    scale = 100.0 if percent else 1.0
    return {"precision": prf.precision * scale, "recall": prf.recall * scale,
            "f1": prf.f1 * scale}
