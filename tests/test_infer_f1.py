"""Infer-F1 (pyg_docre.metrics.infer) and ``evaluate --infer``, on hand-computed examples."""
import json

import pytest

from pyg_docre.cli import main
from pyg_docre.metrics import (INFER_KEYS, SCORE_KEYS, DocREDScorer, DocumentFormatError,
                               PredictionFormatError, chain_pairs, infer_counts, infer_scores,
                               inferable_facts, score_docred)

from docred_factory import make_doc


def five_entities():
    return [[(f"E{i}", i % 3)] for i in range(5)]


def three_entities():
    return [[(f"N{i}", 0)] for i in range(3)]


# "Chain": 0 -P131-> 1 -P17-> 2 and 0 -P17-> 2 close a two-hop chain; pair (0, 1) holds a second
# relation P361, inferable too; 3 -P27-> 4 lies on no chain.
# "Cycle": 0 -> 1 -> 2 -> 0 is a directed cycle: the 2-hop path 0 -> 1 -> 2 needs 0 -> 2, but
# the gold has 2 -> 0 (the other direction), so nothing here is inferable.
GOLD = [
    make_doc("Chain", five_entities(),
             [(0, 1, "P131"), (0, 1, "P361"), (1, 2, "P17"), (0, 2, "P17"), (3, 4, "P27")]),
    make_doc("Cycle", three_entities(), [(0, 1, "P17"), (1, 2, "P17"), (2, 0, "P17")]),
]
# G_inf = {(Chain,0,1,P131), (Chain,0,1,P361), (Chain,1,2,P17), (Chain,0,2,P17)}: |G_inf| = 4
GOLD_INF = {("Chain", "P131", 0, 1), ("Chain", "P361", 0, 1), ("Chain", "P17", 1, 2),
            ("Chain", "P17", 0, 2)}


def pred(title, h, t, r):
    return {"title": title, "h_idx": h, "t_idx": t, "r": r}


PREDS = [
    pred("Chain", 0, 1, "P131"),   # 1 correct, inferable
    pred("Chain", 0, 2, "P17"),    # 2 correct, inferable
    pred("Chain", 1, 2, "P131"),   # 3 right (inferable) pair, wrong relation
    pred("Chain", 3, 4, "P27"),    # 4 correct, but on no chain
    pred("Cycle", 0, 1, "P17"),    # 5 correct, but on no chain
    pred("Cycle", 0, 2, "P17"),    # 6 wrong, on no chain
    pred("Chain", 0, 1, "P131"),   #   duplicate of 1, counted once
    pred("X", 0, 1, "P17"),        # 7 title absent from gold
]
# 7 unique predictions; correct inferable: 1, 2 -> 2.
# precision_over="all":   P = 2/7, R = 2/4 = 1/2,
#                         F1 = 2 (2/7)(1/2) / (2/7 + 1/2) = (2/7)/(11/14) = 4/11
# precision_over="pairs": P' = {1, 2, 3} (on inferable pairs) -> P = 2/3, R = 1/2,
#                         F1 = 2 (2/3)(1/2) / (2/3 + 1/2) = (2/3)/(7/6) = 4/7
ALL = {"precision": 100 * 2 / 7, "recall": 50.0, "f1": 100 * 4 / 11}
PAIRS = {"precision": 100 * 2 / 3, "recall": 50.0, "f1": 100 * 4 / 7}


def test_inferable_facts_hand_example():
    assert inferable_facts(GOLD) == GOLD_INF


def test_infer_scores_all_predictions_in_precision():
    assert infer_counts(GOLD, PREDS) == infer_counts(GOLD, PREDS, precision_over="all")
    counts = infer_counts(GOLD, PREDS)
    assert (counts.correct, counts.predicted, counts.gold) == (2, 7, 4)
    assert infer_scores(GOLD, PREDS) == pytest.approx(ALL)
    fractions = infer_scores(GOLD, PREDS, percent=False)
    assert fractions == pytest.approx({k: v / 100 for k, v in ALL.items()})


def test_infer_scores_precision_over_inferable_pairs():
    counts = infer_counts(GOLD, PREDS, precision_over="pairs")
    # the wrong relation P131 on the inferable pair (1, 2) stays in the denominator
    assert (counts.correct, counts.predicted, counts.gold) == (2, 3, 4)
    assert infer_scores(GOLD, PREDS, precision_over="pairs") == pytest.approx(PAIRS)


def test_infer_differs_from_overall_scores():
    # overall: 4 correct (1, 2, 4, 5) of 7, 8 gold facts; the restriction matters
    overall = score_docred(PREDS, GOLD).to_dict()
    assert overall["precision"] == pytest.approx(100 * 4 / 7)
    assert overall["recall"] == pytest.approx(50.0)
    assert infer_scores(GOLD, PREDS)["precision"] != pytest.approx(overall["precision"])


def test_all_equals_official_scorer_on_gold_restricted_to_inferable_facts():
    # "the test files supplied by Zeng et al.": the official scorer on gold labels = G_inf
    restricted = [dict(doc, labels=[lab for lab in doc["labels"]
                                    if (doc["title"], lab["r"], lab["h"], lab["t"]) in GOLD_INF])
                  for doc in GOLD]
    official = score_docred(PREDS, restricted).to_dict()
    ours = infer_scores(GOLD, PREDS)
    for key in ("precision", "recall", "f1"):
        assert ours[key] == pytest.approx(official[key])


def test_perfect_predictions_of_the_inferable_facts():
    preds = [pred(title, h, t, r) for title, r, h, t in GOLD_INF]
    assert infer_scores(GOLD, preds) == pytest.approx({"precision": 100.0, "recall": 100.0,
                                                       "f1": 100.0})
    # all gold facts predicted: recall 100, precision 4 / 8 under "all", 100 under "pairs"
    every = [pred(d["title"], lab["h"], lab["t"], lab["r"]) for d in GOLD for lab in d["labels"]]
    assert infer_scores(GOLD, every)["precision"] == pytest.approx(50.0)
    assert infer_scores(GOLD, every, precision_over="pairs")["precision"] == pytest.approx(100.0)


def test_no_inferable_facts_gives_zeros():
    cycle = [GOLD[1]]
    assert inferable_facts(cycle) == frozenset()
    counts = infer_counts(cycle, PREDS[4:6])
    assert (counts.correct, counts.predicted, counts.gold) == (0, 2, 0)
    for over in ("all", "pairs"):
        assert infer_scores(cycle, PREDS[4:6], precision_over=over) == {
            "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert infer_scores(GOLD, []) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_chain_pairs_direction_self_loops_and_hops():
    assert chain_pairs([(0, 1), (1, 2), (0, 2)]) == {(0, 1), (1, 2), (0, 2)}
    assert chain_pairs([(0, 1), (1, 2), (2, 0)]) == set()          # reversed closing edge
    # the same edges read 0 -> 2 -> 1 with 0 -> 1: a chain (three edges on three entities are
    # either a chain like this or the directed cycle above)
    assert chain_pairs([(0, 1), (2, 1), (0, 2)]) == {(0, 2), (2, 1), (0, 1)}
    assert chain_pairs([(0, 1), (1, 2)]) == set()                  # path without the closing fact
    assert chain_pairs([(0, 1), (1, 0), (0, 0)]) == set()          # e1 == e3: self-loop
    assert chain_pairs([(0, 1), (1, 1)]) == set()                  # e2 == e3
    assert chain_pairs([(0, 1), (1, 2), (2, 3), (0, 3)]) == set()  # three hops only
    # two chains sharing (0, 1), plus a pair on none
    assert chain_pairs([(0, 1), (1, 2), (0, 2), (1, 3), (0, 3), (4, 0)]) == {
        (0, 1), (1, 2), (0, 2), (1, 3), (0, 3)}


def test_scorer_can_be_reused():
    scorer = DocREDScorer(GOLD)
    assert infer_counts(scorer, PREDS) == infer_counts(GOLD, PREDS)


@pytest.mark.parametrize("bad,fragment", [
    (pred("Chain", 2, 2, "P17"), "same entity"),
    (pred("Chain", 0, 9, "P17"), "t_idx"),
    ({"title": "Chain", "h_idx": 0, "t_idx": 1}, "r: missing key"),
])
def test_bad_prediction(bad, fragment):
    with pytest.raises(PredictionFormatError, match=fragment):
        infer_scores(GOLD, PREDS + [bad], pred_path="result.json")


def test_bad_gold_and_option():
    with pytest.raises(DocumentFormatError, match="duplicate title"):
        infer_scores(GOLD + [GOLD[0]], PREDS)
    broken = [dict(GOLD[0], labels=[{"h": 0, "t": 9, "r": "P17", "evidence": []}])]
    with pytest.raises(DocumentFormatError, match="labels"):
        inferable_facts(broken, gold_path="dev.json")
    with pytest.raises(ValueError, match="precision_over"):
        infer_scores(GOLD, PREDS, precision_over="triples")


# ---------------------------------------------------------------------------------- CLI

@pytest.fixture
def cli_files(tmp_path):
    gold = tmp_path / "gold.json"
    gold.write_text(json.dumps(GOLD))
    preds = tmp_path / "result.json"
    preds.write_text(json.dumps(PREDS))
    return gold, preds


def test_evaluate_infer_adds_the_infer_keys(cli_files, capsys):
    gold, preds = cli_files
    assert main(["evaluate", "--pred", str(preds), "--gold", str(gold), "--infer"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert list(scores) == list(SCORE_KEYS) + list(INFER_KEYS)
    assert scores["infer_precision"] == pytest.approx(ALL["precision"], abs=5e-5)
    assert scores["infer_recall"] == pytest.approx(ALL["recall"], abs=5e-5)
    assert scores["infer_f1"] == pytest.approx(ALL["f1"], abs=5e-5)   # 36.3636
    # the other scores are those of a run without --infer
    assert main(["evaluate", "--pred", str(preds), "--gold", str(gold)]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert list(plain) == list(SCORE_KEYS)
    assert {k: scores[k] for k in SCORE_KEYS} == plain


def test_evaluate_infer_without_inferable_facts_notes_it(tmp_path, capsys):
    gold = tmp_path / "cycle.json"
    gold.write_text(json.dumps([GOLD[1]]))
    preds = tmp_path / "result.json"
    preds.write_text(json.dumps(PREDS[4:6]))
    assert main(["evaluate", "--pred", str(preds), "--gold", str(gold), "--infer"]) == 0
    captured = capsys.readouterr()
    scores = json.loads(captured.out)
    assert (scores["infer_precision"], scores["infer_recall"], scores["infer_f1"]) == (0, 0, 0)
    assert scores["precision"] == pytest.approx(50.0)
    assert "no inferable facts" in captured.err


def test_evaluate_infer_bad_prediction_is_a_clean_error(cli_files, capsys):
    gold, preds = cli_files
    preds.write_text(json.dumps(PREDS + [pred("Chain", 2, 2, "P17")]))
    assert main(["evaluate", "--pred", str(preds), "--gold", str(gold), "--infer"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert str(preds) in captured.err and "same entity" in captured.err
