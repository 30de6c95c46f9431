"""The document bootstrap of F1 (pyg_docre.metrics.bootstrap)."""
import numpy as np
import pytest

from pyg_docre.metrics import (DocREDScorer, bootstrap_f1, bootstrap_mean_difference,
                               document_counts)


def _doc(title, labels, entities=3):
    return {"title": title, "sents": [["w", "x"] for _ in range(entities)],
            "vertexSet": [[{"name": f"{title}{i}", "sent_id": i, "pos": [0, 1], "type": "PER"}]
                          for i in range(entities)],
            "labels": [{"h": h, "t": t, "r": r, "evidence": []} for h, t, r in labels]}


def _pred(title, h, t, r):
    return {"title": title, "h_idx": h, "t_idx": t, "r": r}


@pytest.fixture
def scorer():
    return DocREDScorer([_doc("a", [(0, 1, "P1"), (1, 2, "P2")]), _doc("b", [(0, 2, "P3")]),
                         _doc("c", [])])


def test_document_counts_add_up_to_the_official_score(scorer):
    preds = [_pred("a", 0, 1, "P1"), _pred("a", 0, 1, "P1"),      # a duplicate counts once
             _pred("a", 2, 1, "P2"), _pred("b", 0, 2, "P3"), _pred("c", 0, 1, "P1"),
             _pred("zzz", 0, 1, "P1")]                              # a title outside gold
    counts = document_counts(scorer, preds)
    assert counts.titles == ("a", "b", "c")
    assert counts.correct.tolist() == [1, 1, 0]
    assert counts.predicted.tolist() == [2, 1, 1] and counts.outside == 1
    assert counts.gold.tolist() == [2, 1, 0]
    # official: correct 2, predicted 5, gold 3 -> P 0.4, R 2/3, F1 0.5
    assert scorer.score(preds).f1 == pytest.approx(0.5)
    assert counts.f1() == pytest.approx(50.0)


def test_bootstrap_spread_and_pairing(scorer):
    a = document_counts(scorer, [_pred("a", 0, 1, "P1"), _pred("b", 0, 2, "P3")])
    b = document_counts(scorer, [_pred("a", 0, 1, "P1")])
    alone = bootstrap_f1(a, samples=500, seed=1)
    assert alone["value"] == pytest.approx(a.f1()) and alone["sd"] > 0
    assert alone["low"] <= alone["value"] <= alone["high"]
    # the same seed gives the same resamples
    assert bootstrap_f1(a, samples=500, seed=1) == alone
    # a submission against itself: every paired difference is exactly 0
    same = bootstrap_f1(a, a, samples=500)
    assert same == {"value": 0.0, "sd": 0.0, "low": 0.0, "high": 0.0}
    paired = bootstrap_f1(a, b, samples=500)
    assert paired["value"] == pytest.approx(a.f1() - b.f1())
    # b misses doc b's fact; with doc b absent from a resample the two are equal
    assert paired["low"] >= 0.0 - 1e-9


def test_bootstrap_sd_shrinks_with_more_documents():
    rng = np.random.default_rng(0)

    def split(n):
        docs, preds = [], []
        for i in range(n):
            docs.append(_doc(f"d{i}", [(0, 1, "P1"), (1, 2, "P2")]))
            if rng.random() < 0.6:
                preds.append(_pred(f"d{i}", 0, 1, "P1"))
            if rng.random() < 0.3:
                preds.append(_pred(f"d{i}", 2, 0, "P1"))
        scorer = DocREDScorer(docs)
        return bootstrap_f1(document_counts(scorer, preds), samples=400)["sd"]

    assert split(400) < 0.6 * split(50)


def test_paired_bootstrap_needs_the_same_documents(scorer):
    other = DocREDScorer([_doc("a", [(0, 1, "P1")])])
    with pytest.raises(ValueError, match="different documents"):
        bootstrap_f1(document_counts(scorer, []), document_counts(other, []))
    with pytest.raises(ValueError, match="samples must be >= 2"):
        bootstrap_f1(document_counts(scorer, []), samples=1)
    with pytest.raises(ValueError, match="no pairs"):
        bootstrap_mean_difference([])


def test_mean_difference_over_seeds(scorer):
    a1 = document_counts(scorer, [_pred("a", 0, 1, "P1"), _pred("b", 0, 2, "P3")])
    b1 = document_counts(scorer, [_pred("a", 0, 1, "P1")])
    a2 = document_counts(scorer, [_pred("a", 1, 2, "P2")])
    b2 = document_counts(scorer, [_pred("a", 1, 2, "P2"), _pred("c", 0, 1, "P1")])
    mean = bootstrap_mean_difference([(a1, b1), (a2, b2)], samples=300, seed=3)
    assert mean["value"] == pytest.approx(((a1.f1() - b1.f1()) + (a2.f1() - b2.f1())) / 2)
    one = bootstrap_mean_difference([(a1, b1)], samples=300, seed=3)
    assert one == bootstrap_f1(a1, b1, samples=300, seed=3)
    assert mean["low"] <= mean["value"] <= mean["high"]
