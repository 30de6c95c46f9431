"""Official DocRED metrics and the ``result.json`` format.

Example::

    from pyg_docre.data.docred import load_docred
    scores = score_docred(read_result("result.json"), load_docred("test.json"),
                          load_docred("train.json"))
    scores.f1, scores.ign_f1     # fractions in [0, 1]
    scores.to_dict()             # percent, keys SCORE_KEYS (as stored in metrics.json)

For repeated scoring against one split (e.g. dev after every epoch), build a
``DocREDScorer(gold_docs, train_docs)`` once and call ``.score(predictions)``.

See :mod:`pyg_docre.metrics.scoring` for the formulas and :mod:`pyg_docre.metrics.result_io`
for the file format.
"""
from .result_io import PREDICTION_KEYS, PredictionFormatError, read_result, write_result
from .scoring import (IGN_EPSILON, PRF, SCORE_KEYS, DocREDScorer, DocREDScores,
                      DocumentFormatError, per_relation_scores, score_docred, train_facts)

__all__ = [
    "DocREDScorer", "DocREDScores", "DocumentFormatError", "IGN_EPSILON", "PREDICTION_KEYS",
    "PRF", "PredictionFormatError", "SCORE_KEYS", "per_relation_scores", "read_result",
    "score_docred", "train_facts", "write_result",
]
