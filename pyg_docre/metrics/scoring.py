"""Official DocRED relation-extraction scores: P / R / F1, Ign F1, intra / inter F1, per relation.

The numbers are those of the official DocRED ``evaluation.py`` (and of ATLOP's
``official_evaluate``), evidence scores left out.

* Gold facts ``G``: the keys ``(title, r, h, t)`` of every label of every gold document (a label
  listed twice counts once); ``|G|`` is the official ``tot_relations``.
* Predictions ``P``: the unique ``(title, h_idx, t_idx, r)`` of the submission. A prediction whose
  title is not a gold document is kept in ``P`` (it lowers precision) and is never correct, as in
  the official script.
* ``C = {p in P : p in G}`` (the correct predictions)::

      precision = |C| / |P|        recall = |C| / |G|        F1 = 2 P R / (P + R)

  with 0 for a ratio whose denominator is 0 (the official script crashes on an empty submission).
* Ign F1 (``train`` given): the training facts are ``T = {(n1.name, n2.name, r)}`` over every label
  ``(h, t, r)`` of every training document, ``n1`` over the mentions of entity ``h`` and ``n2`` over
  those of ``t``. A correct prediction is *in train*, ``c in C_T``, when some (head mention name,
  tail mention name, r) of its gold document is in ``T``. Then::

      ign_precision = (|C| - |C_T|) / (|P| - |C_T| + 1e-5)
      ign_F1        = 2 ign_precision recall / (ign_precision + recall)

  The ``1e-5`` is the official script's (it guards the division when every prediction is a
  correct in-train fact); it is kept so that the numbers match the published ones exactly.
  Recall is not changed.
* Intra / inter: a triple (gold or predicted) is *intra* when some mention of its head entity and
  some mention of its tail entity share a ``sent_id`` in the gold document's ``vertexSet``, *inter*
  otherwise. Intra P / R / F1 are the formulas above over ``P`` and ``G`` both restricted to intra
  triples; likewise inter. A prediction on a title absent from gold has no ``vertexSet`` to judge
  it by: it is neither intra nor inter (it counts only in the overall precision), a choice of this
  package, as the official script has no intra / inter scores.
* Per relation ``r``: the formulas above over ``P`` and ``G`` restricted to relation ``r``
  (predictions on unknown titles count in ``predicted``).

All scores are fractions in [0, 1]; :meth:`DocREDScores.to_dict` gives percent for tables and
``metrics.json``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from ..errors import FormatError
from .result_io import PredictionFormatError, check_prediction

if TYPE_CHECKING:  # pandas is imported lazily, by per_relation only
    import pandas as pd

__all__ = ["SCORE_KEYS", "IGN_EPSILON", "DocumentFormatError", "PRF", "DocREDScores",
           "DocREDScorer", "train_facts", "score_docred", "per_relation_scores"]

#: The keys of :meth:`DocREDScores.to_dict`, of the ``evaluate`` command's output and of
#: ``metrics.json``.
SCORE_KEYS = ("precision", "recall", "f1", "ign_f1", "intra_f1", "inter_f1")

#: The official script's guard in the Ign precision denominator.
IGN_EPSILON = 1e-5

#: A gold fact ``(title, r, h, t)`` (the official key order) or a prediction
#: ``(title, h_idx, t_idx, r)``.
Fact = tuple


class DocumentFormatError(FormatError):
    """A gold or training document given to the scorer lacks what scoring needs.

    The message names the file (when known), the role (``gold``/``train``), the document's index
    and title, and the field, e.g. ``dev.json: gold document 4 ('Lark Force'): labels[2].h: 9 points
    at no entity (the document has 7)``.
    """

    def __init__(self, reason: str, *, role: str, path: str | PathLike | None = None,
                 doc_index: int | None = None, title: Any = None, field: str | None = None):
        self.role, self.doc_index, self.title = role, doc_index, title
        where = None if doc_index is None else (
            f"{role} document {doc_index}" + (f" ({title!r})" if title else ""))
        super().__init__(reason, path=path, where=where, field=field)


def _check_document(doc: Any, i: int, role: str, path) -> None:
    """Check a gold or training document with the loader's validator
    (:func:`pyg_docre.data.docred.validate_document`, labels required), reporting a problem as
    a :class:`DocumentFormatError` that names the role. Files read with
    :func:`~pyg_docre.data.docred.load_docred` pass by construction; this guards documents built
    in memory."""
    from pyg_docre.data.docred import DocREDFormatError, validate_document

    try:
        validate_document(doc, require_labels=True)
    except DocREDFormatError as err:
        raise DocumentFormatError(err.reason, role=role, path=path, doc_index=i,
                                  title=err.title, field=err.field) from None


def _checked_documents(docs: Iterable[Any], role: str, path) -> list[Mapping]:
    """The documents as a list, each checked with :func:`_check_document`."""
    docs = list(docs)
    for i, doc in enumerate(docs):
        _check_document(doc, i, role, path)
    return docs


def train_facts(train_docs: Iterable[Mapping], *, path: str | PathLike | None = None
                ) -> frozenset[tuple[str, str, str]]:
    """The official set of training facts ``{(head mention name, tail mention name, r)}``.

    For every label ``(h, t, r)`` of every training document and every pair of a mention ``n1``
    of entity ``h`` and a mention ``n2`` of entity ``t``, the set holds ``(n1.name, n2.name, r)``.
    """
    facts = set()
    for doc in _checked_documents(train_docs, "train", path):
        vertex_set = doc["vertexSet"]
        for label in doc["labels"]:
            for n1 in vertex_set[label["h"]]:
                for n2 in vertex_set[label["t"]]:
                    facts.add((n1["name"], n2["name"], label["r"]))
    return frozenset(facts)


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2.0 * precision * recall, precision + recall)


@dataclass(frozen=True)
class PRF:
    """Counts of one scored set and the ratios derived from them (fractions in [0, 1]).

    ``precision = correct / predicted``, ``recall = correct / gold``,
    ``f1 = 2 precision recall / (precision + recall)``; each 0 when its denominator is 0.
    """

    correct: int
    predicted: int
    gold: int

    @property
    def precision(self) -> float:
        return _ratio(self.correct, self.predicted)

    @property
    def recall(self) -> float:
        return _ratio(self.correct, self.gold)

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)


@dataclass(frozen=True)
class DocREDScores:
    """The scores of one submission (fractions in [0, 1]; see the module docstring).

    Attributes:
        overall: counts over all unique predictions and gold facts.
        intra, inter: counts restricted to intra- / inter-sentence triples.
        correct_in_train: the number of correct predictions found in the training facts, or
            ``None`` when no training documents were given (then the Ign scores are ``None``).
    """

    overall: PRF
    intra: PRF
    inter: PRF
    correct_in_train: int | None = None

    @property
    def precision(self) -> float:
        """``correct / predicted`` over unique predictions."""
        return self.overall.precision

    @property
    def recall(self) -> float:
        """``correct / gold`` (gold = the official ``tot_relations``)."""
        return self.overall.recall

    @property
    def f1(self) -> float:
        """``2 P R / (P + R)``."""
        return self.overall.f1

    @property
    def intra_f1(self) -> float:
        """F1 over intra-sentence predictions and gold facts."""
        return self.intra.f1

    @property
    def inter_f1(self) -> float:
        """F1 over inter-sentence predictions and gold facts."""
        return self.inter.f1

    @property
    def ign_precision(self) -> float | None:
        """``(correct - correct_in_train) / (predicted - correct_in_train + 1e-5)``."""
        if self.correct_in_train is None:
            return None
        return ((self.overall.correct - self.correct_in_train)
                / (self.overall.predicted - self.correct_in_train + IGN_EPSILON))

    @property
    def ign_f1(self) -> float | None:
        """``2 ign_precision recall / (ign_precision + recall)``, 0 if that sum is 0."""
        ign_p = self.ign_precision
        return None if ign_p is None else _f1(ign_p, self.recall)

    def to_dict(self, percent: bool = True) -> dict[str, float | None]:
        """The headline scores under :data:`SCORE_KEYS` (``ign_f1`` is ``None`` without train
        facts), in percent by default (``metrics.json`` stores percent), else as fractions."""
        scale = 100.0 if percent else 1.0
        out = {}
        for key in SCORE_KEYS:
            value = getattr(self, key)
            out[key] = None if value is None else value * scale
        return out


def _natural_key(rel: str):
    """Sort ``P17`` before ``P131``: by prefix, then number."""
    m = re.fullmatch(r"(\D*)(\d+)", rel)
    return (m.group(1), int(m.group(2)), rel) if m else (rel, -1, rel)


class DocREDScorer:
    """Scores submissions against one gold split (built once, reusable across epochs).

    Args:
        gold_docs: the gold DocRED documents (each with ``title``, ``vertexSet``, ``labels``);
            titles must be unique.
        train: the training documents for Ign F1, or a fact set from :func:`train_facts`, or
            ``None`` (no Ign scores).
        gold_path, train_path: the files the documents come from, for error messages.

    Raises:
        DocumentFormatError: a document lacks a field scoring needs, or two gold documents share
            a title.
    """

    def __init__(self, gold_docs: Iterable[Mapping], train: Iterable[Mapping] | frozenset | set
                 | None = None, *, gold_path: str | PathLike | None = None,
                 train_path: str | PathLike | None = None):
        self.vertex_sets: dict[str, list] = {}
        self.gold: set[Fact] = set()  # (title, r, h, t), as the official ``std`` dict
        first_index: dict[str, int] = {}
        for i, doc in enumerate(_checked_documents(gold_docs, "gold", gold_path)):
            title = doc["title"]
            if title in first_index:
                raise DocumentFormatError(
                    f"duplicate title, also gold document {first_index[title]}; titles must be "
                    f"unique, predictions are matched by title", role="gold", path=gold_path,
                    doc_index=i, title=title, field="title")
            first_index[title] = i
            self.vertex_sets[title] = doc["vertexSet"]
            for label in doc["labels"]:
                self.gold.add((title, label["r"], int(label["h"]), int(label["t"])))
        if train is None or isinstance(train, (set, frozenset)):
            self.train_facts = None if train is None else frozenset(train)
        else:
            self.train_facts = train_facts(train, path=train_path)
        self._intra_cache: dict[tuple[str, int, int], bool] = {}

    def is_intra(self, title: str, h: int, t: int) -> bool:
        """True when a mention of entity ``h`` and a mention of ``t`` share a sentence."""
        key = (title, h, t)
        if key not in self._intra_cache:
            vertex_set = self.vertex_sets[title]
            head_sents = {m["sent_id"] for m in vertex_set[h]}
            self._intra_cache[key] = any(m["sent_id"] in head_sents for m in vertex_set[t])
        return self._intra_cache[key]

    def unique_predictions(self, predictions: Iterable[Mapping], *,
                           pred_path: str | PathLike | None = None) -> set[Fact]:
        """Validate the predictions and return their unique ``(title, h_idx, t_idx, r)``.

        Raises:
            PredictionFormatError: a key is missing, a type is wrong, ``h_idx == t_idx``, an index
                is negative or (for a gold title) outside the gold document's ``vertexSet``.
                A title absent from gold is not an error (see the module docstring).
        """
        unique = set()
        for i, pred in enumerate(predictions):
            check_prediction(pred, i, path=pred_path)
            title, h, t, r = pred["title"], int(pred["h_idx"]), int(pred["t_idx"]), pred["r"]
            num_entities = len(self.vertex_sets.get(title, ()))
            for key, idx in (("h_idx", h), ("t_idx", t)):
                if idx < 0 or (title in self.vertex_sets and idx >= num_entities):
                    raise PredictionFormatError(
                        f"{idx} is not an entity of the gold document (its vertexSet has "
                        f"{num_entities} entities)" if idx >= 0 else f"{idx} is negative",
                        path=pred_path, index=i, title=title, field=key)
            if h == t:
                raise PredictionFormatError(f"head and tail are the same entity ({h})",
                                            path=pred_path, index=i, title=title,
                                            field="h_idx/t_idx")
            unique.add((title, h, t, r))
        return unique

    def _in_train(self, title: str, h: int, t: int, r: str) -> bool:
        vertex_set = self.vertex_sets[title]
        return any((n1["name"], n2["name"], r) in self.train_facts
                   for n1 in vertex_set[h] for n2 in vertex_set[t])

    def score(self, predictions: Iterable[Mapping], *,
              pred_path: str | PathLike | None = None) -> DocREDScores:
        """Official P / R / F1, Ign F1 (when train facts are known), intra and inter F1."""
        preds = self.unique_predictions(predictions, pred_path=pred_path)
        counts = {"intra": [0, 0, 0], "inter": [0, 0, 0]}  # correct, predicted, gold
        for title, _, h, t in self.gold:
            counts["intra" if self.is_intra(title, h, t) else "inter"][2] += 1
        correct = correct_in_train = 0
        for title, h, t, r in preds:
            if title not in self.vertex_sets:
                continue  # counted in |P| only
            kind = counts["intra" if self.is_intra(title, h, t) else "inter"]
            kind[1] += 1
            if (title, r, h, t) in self.gold:
                correct += 1
                kind[0] += 1
                if self.train_facts is not None and self._in_train(title, h, t, r):
                    correct_in_train += 1
        return DocREDScores(
            overall=PRF(correct, len(preds), len(self.gold)),
            intra=PRF(*counts["intra"]), inter=PRF(*counts["inter"]),
            correct_in_train=None if self.train_facts is None else correct_in_train)

    def per_relation(self, predictions: Iterable[Mapping], rel_info: Mapping[str, str] | None
                     = None, *, pred_path: str | PathLike | None = None) -> "pd.DataFrame":
        """Precision / recall / F1 of each relation, as a DataFrame.

        Index ``relation`` (P-ids with gold facts or predictions, in natural order); columns
        ``name`` (from ``rel_info``, P-id -> name; ``""`` when unknown), ``precision recall f1``
        (fractions) and the counts ``gold predicted correct``.
        """
        import pandas as pd

        table: dict[str, list[int]] = {}  # r -> [gold, predicted, correct]
        for _, r, _, _ in self.gold:
            table.setdefault(r, [0, 0, 0])[0] += 1
        for title, h, t, r in self.unique_predictions(predictions, pred_path=pred_path):
            row = table.setdefault(r, [0, 0, 0])
            row[1] += 1
            row[2] += (title, r, h, t) in self.gold
        rels = sorted(table, key=_natural_key)
        prfs = [PRF(correct=table[r][2], predicted=table[r][1], gold=table[r][0]) for r in rels]
        rel_info = rel_info or {}
        frame = pd.DataFrame({
            "name": [rel_info.get(r, "") for r in rels],
            "precision": [p.precision for p in prfs],
            "recall": [p.recall for p in prfs],
            "f1": [p.f1 for p in prfs],
            "gold": [p.gold for p in prfs],
            "predicted": [p.predicted for p in prfs],
            "correct": [p.correct for p in prfs],
        }, index=pd.Index(rels, name="relation", dtype=object))
        return frame.astype({"gold": "int64", "predicted": "int64", "correct": "int64"})


def score_docred(predictions: Iterable[Mapping], gold_docs: Sequence[Mapping],
                 train: Iterable[Mapping] | frozenset | set | None = None, *,
                 pred_path: str | PathLike | None = None,
                 gold_path: str | PathLike | None = None,
                 train_path: str | PathLike | None = None) -> DocREDScores:
    """Score ``predictions`` (dicts ``{title, h_idx, t_idx, r}``) against ``gold_docs``.

    A one-call form of ``DocREDScorer(gold_docs, train).score(predictions)``; see
    :class:`DocREDScorer` for the arguments and the module docstring for the formulas.
    """
    scorer = DocREDScorer(gold_docs, train, gold_path=gold_path, train_path=train_path)
    return scorer.score(predictions, pred_path=pred_path)


def per_relation_scores(predictions: Iterable[Mapping], gold_docs: Sequence[Mapping],
                        rel_info: Mapping[str, str] | None = None, *,
                        pred_path: str | PathLike | None = None,
                        gold_path: str | PathLike | None = None) -> "pd.DataFrame":
    """Per-relation scores; see :meth:`DocREDScorer.per_relation`."""
    return DocREDScorer(gold_docs, gold_path=gold_path).per_relation(
        predictions, rel_info, pred_path=pred_path)
