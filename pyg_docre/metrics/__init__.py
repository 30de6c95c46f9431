"""Official DocRED metrics and the ``result.json`` format.

Example::

    from pyg_docre.data.docred import load_docred
    scores = score_docred(read_result("result.json"), load_docred("test.json"),
                          load_docred("train.json"))
    scores.f1, scores.ign_f1     # fractions in [0, 1]
    scores.to_dict()             # percent, keys SCORE_KEYS (as stored in metrics.json)

Infer-F1 (Zeng et al. 2020; the facts on a two-hop reasoning chain)::

    infer_scores(load_docred("dev.json"), read_result("result.json"))
    # {"precision": ..., "recall": ..., "f1": ...} in percent

How far F1 moves with the documents (document bootstrap; paired for two submissions)::

    scorer = DocREDScorer(dev_docs)
    bootstrap_f1(document_counts(scorer, preds_a), document_counts(scorer, preds_b))
    # {"value": F1_a - F1_b, "sd": ..., "low": ..., "high": ...} in percent

For repeated scoring against one split (e.g. dev after every epoch), build a
``DocREDScorer(gold_docs, train_docs)`` once and call ``.score(predictions)``.

See :mod:`pyg_docre.metrics.scoring` for the formulas and :mod:`pyg_docre.metrics.result_io`
for the file format, :mod:`pyg_docre.metrics.infer` for Infer-F1's definition.
"""
from .bootstrap import (DocumentCounts, bootstrap_f1, bootstrap_mean_difference,
                        document_counts)
from .infer import (INFER_KEYS, chain_pairs, infer_counts, infer_scores,
                    inferable_facts)
from .result_io import PREDICTION_KEYS, PredictionFormatError, read_result, write_result
from .scoring import (IGN_EPSILON, PRF, SCORE_KEYS, DocREDScorer, DocREDScores,
                      DocumentFormatError, per_relation_scores, score_docred, train_facts)

__all__ = [
    "DocREDScorer", "DocREDScores", "DocumentCounts", "DocumentFormatError", "IGN_EPSILON",
    "INFER_KEYS", "PREDICTION_KEYS", "PRF", "PredictionFormatError", "SCORE_KEYS",
    "bootstrap_f1", "bootstrap_mean_difference", "chain_pairs", "document_counts",
    "infer_counts", "infer_scores", "inferable_facts", "per_relation_scores", "read_result",
    "score_docred", "train_facts", "write_result",
]
