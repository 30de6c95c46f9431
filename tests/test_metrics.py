"""Official DocRED scoring (pyg_docre.metrics): hand-computed cases, validation, result.json I/O,
and agreement with a literal transcription of the official algorithm on Re-DocRED."""
import gzip
import json
import os
import random

import numpy as np
import pandas as pd
import pytest

from pyg_docre.metrics import (IGN_EPSILON, SCORE_KEYS, DocREDScorer, DocumentFormatError,
                               PredictionFormatError, per_relation_scores, read_result,
                               score_docred, train_facts, write_result)

from docred_factory import make_doc


# ------------------------------------------------------------------------------------------
# tiny hand-made documents (tests/docred_factory.py)

def pred(title, h, t, r, **extra):
    return {"title": title, "h_idx": h, "t_idx": t, "r": r, **extra}


@pytest.fixture
def gold():
    doc_a = make_doc("A", [
        [("Alpha", 0), ("Alpha Corp", 2)],   # e0: sentences {0, 2}
        [("Beta", 0)],                       # e1: {0}
        [("Gamma", 1)],                      # e2: {1}
        [("Delta", 2)],                      # e3: {2}
    ], [
        (0, 1, "P17"),    # intra (sentence 0)
        (0, 1, "P17"),    # duplicate gold label: collapses
        (0, 2, "P131"),   # inter
        (2, 3, "P17"),    # inter
        (0, 3, "P150"),   # intra (sentence 2, via "Alpha Corp")
    ])
    doc_b = make_doc("B", [
        [("Paris", 0)], [("France", 0)], [("Seine", 1)],
    ], [
        (0, 1, "P17"),    # intra
        (2, 1, "P17"),    # inter
    ])
    return [doc_a, doc_b]    # 6 unique gold facts: 3 intra, 3 inter


@pytest.fixture
def train():
    return [
        make_doc("T1", [[("Alpha Corp", 0)], [("Gamma", 0)]], [(0, 1, "P131")]),
        make_doc("T2", [[("Paris", 0)], [("France", 0), ("FR", 1)]], [(0, 1, "P17")]),
        # near misses: wrong relation, reversed direction
        make_doc("T3", [[("Alpha", 0)], [("Beta", 0)]], [(0, 1, "P131"), (1, 0, "P17")]),
    ]


@pytest.fixture
def predictions():
    return [
        pred("A", 0, 1, "P17", evidence=[0]),   # 1 correct, intra (evidence ignored)
        pred("A", 0, 1, "P17"),                 #   duplicate of 1
        pred("A", 0, 2, "P131"),                # 2 correct, inter, in train (Alpha Corp, Gamma)
        pred("A", 0, 2, "P17"),                 # 3 wrong, inter
        pred("A", 1, 3, "P17"),                 # 4 wrong, inter (sentences {0} vs {2})
        pred("B", 0, 1, "P17"),                 # 5 correct, intra, in train (Paris, France)
        pred("B", 0, 1, "P17"),                 #   duplicate of 5
        pred("Z", 0, 1, "P17"),                 # 6 unknown title: in |P|, never correct
        pred("B", 1, 0, "P17"),                 # 7 wrong, intra
    ]   # 7 unique predictions, 3 correct


# ------------------------------------------------------------------------------------------
# hand-computed scores

def test_hand_computed_precision_recall_f1(gold, predictions):
    s = score_docred(predictions, gold)
    assert (s.overall.correct, s.overall.predicted, s.overall.gold) == (3, 7, 6)
    assert s.precision == pytest.approx(3 / 7)
    assert s.recall == pytest.approx(1 / 2)
    assert s.f1 == pytest.approx(6 / 13)   # 2 (3/7)(1/2) / (3/7 + 1/2)
    assert s.ign_f1 is None and s.ign_precision is None and s.correct_in_train is None


def test_duplicates_in_predictions_count_once(gold):
    once = score_docred([pred("A", 0, 1, "P17")], gold)
    many = score_docred([pred("A", 0, 1, "P17")] * 5, gold)
    assert once == many
    assert many.overall.predicted == 1 and many.precision == 1.0


def test_unknown_title_counts_in_precision_only(gold):
    known = [pred("A", 0, 1, "P17")]
    s = score_docred(known + [pred("Nowhere", 0, 1, "P17"), pred("Nowhere", 5, 9, "P6")], gold)
    assert (s.overall.correct, s.overall.predicted) == (1, 3)
    assert s.precision == pytest.approx(1 / 3)
    assert s.recall == pytest.approx(1 / 6)
    # neither intra nor inter
    assert s.intra.predicted + s.inter.predicted == 1


def test_ign_f1_by_hand(gold, train, predictions):
    s = score_docred(predictions, gold, train)
    assert s.correct_in_train == 2
    ign_p = (3 - 2) / (7 - 2 + 1e-5)
    assert IGN_EPSILON == 1e-5
    assert s.ign_precision == pytest.approx(ign_p, rel=1e-12)
    assert s.ign_f1 == pytest.approx(2 * ign_p * 0.5 / (ign_p + 0.5), rel=1e-12)
    assert s.ign_f1 == pytest.approx(2 / 7, abs=1e-5)       # (1/5, 1/2) -> 2/7
    assert s.ign_f1 < s.f1
    assert s.recall == pytest.approx(1 / 2)                  # Ign does not change recall


def test_train_facts_and_precomputed_fact_set(gold, train, predictions):
    facts = train_facts(train)
    assert ("Paris", "FR", "P17") in facts and ("Alpha Corp", "Gamma", "P131") in facts
    assert ("France", "Paris", "P17") not in facts
    assert len(facts) == 5
    assert score_docred(predictions, gold, facts) == score_docred(predictions, gold, train)


def test_ign_all_predictions_correct_and_in_train_is_zero_not_crash(gold):
    train = [make_doc("T", [[("Alpha", 0)], [("Beta", 0)]], [(0, 1, "P17")])]
    s = score_docred([pred("A", 0, 1, "P17")], gold, train)
    assert s.correct_in_train == 1
    assert s.ign_precision == 0.0 and s.ign_f1 == 0.0     # 0 / (0 + 1e-5)


def test_intra_inter_by_hand(gold, predictions):
    s = score_docred(predictions, gold)
    assert (s.intra.correct, s.intra.predicted, s.intra.gold) == (2, 3, 3)
    assert (s.inter.correct, s.inter.predicted, s.inter.gold) == (1, 3, 3)
    assert s.intra_f1 == pytest.approx(2 / 3)
    assert s.inter_f1 == pytest.approx(1 / 3)


def test_intra_uses_any_mention_pair():
    # e0 has a mention in every sentence of e1 only through its second mention
    doc = make_doc("D", [[("x", 0), ("x2", 2)], [("y", 2)], [("z", 1)]],
                   [(0, 1, "P1"), (1, 2, "P2")])
    scorer = DocREDScorer([doc])
    assert scorer.is_intra("D", 0, 1) and scorer.is_intra("D", 1, 0)
    assert not scorer.is_intra("D", 1, 2) and not scorer.is_intra("D", 0, 2)


def test_per_relation_table_by_hand(gold, predictions):
    table = per_relation_scores(predictions, gold, {"P17": "country", "P131": "located in"})
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["name", "precision", "recall", "f1", "gold", "predicted",
                                   "correct"]
    assert table.index.name == "relation"
    assert list(table.index) == ["P17", "P131", "P150"]      # natural P-id order
    p17 = table.loc["P17"]
    assert p17["name"] == "country"
    assert (p17["gold"], p17["predicted"], p17["correct"]) == (4, 6, 2)
    assert p17["precision"] == pytest.approx(1 / 3) and p17["recall"] == pytest.approx(1 / 2)
    assert p17["f1"] == pytest.approx(0.4)
    assert table.loc["P131", ["precision", "recall", "f1"]].tolist() == [1.0, 1.0, 1.0]
    p150 = table.loc["P150"]
    assert p150["name"] == "" and (p150["gold"], p150["predicted"]) == (1, 0)
    assert p150["f1"] == 0.0
    # the table's counts add up to the overall ones
    s = score_docred(predictions, gold)
    assert table["correct"].sum() == s.overall.correct
    assert table["predicted"].sum() == s.overall.predicted
    assert table["gold"].sum() == s.overall.gold


def test_empty_predictions_all_zero(gold, train):
    s = score_docred([], gold, train)
    assert s.to_dict(percent=False) == {k: 0.0 for k in SCORE_KEYS}
    assert s.overall.gold == 6
    table = per_relation_scores([], gold)
    assert table["predicted"].sum() == 0 and (table["f1"] == 0).all()


def test_to_dict_percent_and_fraction(gold, train, predictions):
    s = score_docred(predictions, gold, train)
    pct, frac = s.to_dict(), s.to_dict(percent=False)
    assert tuple(pct) == SCORE_KEYS == ("precision", "recall", "f1", "ign_f1", "intra_f1",
                                        "inter_f1")
    for key in SCORE_KEYS:
        assert 0.0 <= frac[key] <= 1.0
        assert pct[key] == pytest.approx(100 * frac[key])
    assert pct["f1"] == pytest.approx(600 / 13)
    assert score_docred(predictions, gold).to_dict()["ign_f1"] is None
    with pytest.raises(AttributeError):          # frozen
        s.correct_in_train = 0


def test_scorer_is_reusable_and_accepts_iterators(gold, train, predictions):
    scorer = DocREDScorer(gold, train)
    first = scorer.score(iter(predictions))
    assert scorer.score(predictions) == first == score_docred(predictions, gold, train)


def test_numpy_indices_are_accepted(gold):
    s = score_docred([pred("A", np.int64(0), np.int32(1), "P17")], gold)
    assert s.overall.correct == 1


# ------------------------------------------------------------------------------------------
# validation

@pytest.mark.parametrize("field", ["title", "h_idx", "t_idx", "r"])
def test_missing_key_names_field_position_and_file(gold, field):
    bad = pred("A", 0, 1, "P17")
    del bad[field]
    preds = [pred("A", 0, 2, "P131"), bad]
    with pytest.raises(PredictionFormatError) as info:
        score_docred(preds, gold, pred_path="run/result.json")
    msg = str(info.value)
    assert "run/result.json" in msg and "prediction 1" in msg and field in msg
    assert "missing" in msg
    assert info.value.field == field and info.value.index == 1
    if field != "title":
        assert "'A'" in msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("field,value", [("h_idx", "0"), ("t_idx", 1.0), ("h_idx", True),
                                         ("t_idx", None)])
def test_non_integer_index(gold, field, value):
    bad = pred("A", 0, 1, "P17")
    bad[field] = value
    with pytest.raises(PredictionFormatError, match=rf"prediction 0 \(title 'A'\): {field}: "
                                                    r"must be an integer"):
        score_docred([bad], gold)


@pytest.mark.parametrize("h,t,field", [(0, 4, "t_idx"), (7, 1, "h_idx"), (-1, 1, "h_idx")])
def test_index_outside_vertex_set(gold, h, t, field):
    with pytest.raises(PredictionFormatError) as info:
        score_docred([pred("A", 0, 1, "P17"), pred("A", h, t, "P17")], gold, pred_path="r.json")
    msg = str(info.value)
    assert msg.startswith("r.json: prediction 1 (title 'A'): " + field)
    assert info.value.field == field


def test_head_equals_tail(gold):
    with pytest.raises(PredictionFormatError, match=r"prediction 0 \(title 'B'\): h_idx/t_idx: "
                                                    r"head and tail are the same entity"):
        score_docred([pred("B", 2, 2, "P17")], gold)
    with pytest.raises(PredictionFormatError, match="same entity"):   # unknown title too
        score_docred([pred("Z", 2, 2, "P17")], gold)


def test_non_string_relation_and_non_object(gold):
    with pytest.raises(PredictionFormatError, match=r"prediction 0 \(title 'A'\): r: must be a "
                                                    r"string"):
        score_docred([pred("A", 0, 1, 17)], gold)
    with pytest.raises(PredictionFormatError, match="prediction 0: must be a JSON object"):
        score_docred([["A", 0, 1, "P17"]], gold)


def test_duplicate_gold_title(gold):
    twin = make_doc("A", [[("x", 0)], [("y", 0)]], [(0, 1, "P17")])
    with pytest.raises(DocumentFormatError) as info:
        score_docred([], gold + [twin], gold_path="gold.json")
    msg = str(info.value)
    assert "gold.json" in msg and "gold document 2" in msg and "'A'" in msg
    assert "duplicate title" in msg and "gold document 0" in msg and info.value.field == "title"


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.pop("labels"), "labels"),
    (lambda d: d["labels"][1].update(h=9), "labels[1].h"),
    (lambda d: d["labels"][0].pop("r"), "labels[0].r"),
    (lambda d: d["vertexSet"][1][0].pop("sent_id"), "vertexSet[1][0].sent_id"),
    (lambda d: d["vertexSet"].append([]), "vertexSet[4]"),
])
def test_malformed_gold_or_train_document(gold, mutate, field):
    mutate(gold[0])
    with pytest.raises(DocumentFormatError) as info:
        score_docred([], gold)
    assert f"gold document 0 ('A'): {field}:" in str(info.value)
    with pytest.raises(DocumentFormatError, match=r"train document 0 \('A'\): "):
        train_facts(gold, path="train.json")


# ------------------------------------------------------------------------------------------
# result.json I/O

def test_write_read_roundtrip(tmp_path, predictions):
    path = tmp_path / "result.json"
    preds = predictions + [pred("A", np.int64(2), np.int64(3), "P17")]
    assert write_result(preds, path) == path
    raw = json.loads(path.read_text())
    assert raw[0] == {"title": "A", "h_idx": 0, "t_idx": 1, "r": "P17"}   # evidence dropped
    assert all(list(row) == ["title", "h_idx", "t_idx", "r"] for row in raw)
    back = read_result(path)
    assert back == [{k: p[k] for k in ("title", "h_idx", "t_idx", "r")} for p in preds]
    assert [f for f in os.listdir(tmp_path)] == ["result.json"]


def test_gzip_result_roundtrip_is_reproducible(tmp_path, predictions):
    path = tmp_path / "result.json.gz"
    write_result(predictions, path)
    first = path.read_bytes()
    assert first[:2] == b"\x1f\x8b"                                   # gzip magic
    assert json.loads(gzip.decompress(first)) == read_result(path)
    assert read_result(path) == read_result(write_result(predictions, tmp_path / "plain.json"))
    write_result(predictions, path)
    assert path.read_bytes() == first              # no timestamp: same predictions, same bytes


@pytest.mark.parametrize("content", [b"not gzip at all", gzip.compress(b"[1, 2")[:-6]])
def test_read_result_broken_gzip_names_the_file(tmp_path, content):
    path = tmp_path / "result.json.gz"
    path.write_bytes(content)
    with pytest.raises(PredictionFormatError, match=r"result\.json\.gz: not a complete gzip"):
        read_result(path)


def test_write_result_invalid_entry_leaves_previous_file(tmp_path):
    path = tmp_path / "result.json"
    write_result([pred("A", 0, 1, "P17")], path)
    before = path.read_bytes()
    with pytest.raises(PredictionFormatError,
                       match=r"prediction 1 \(title 'A'\): h_idx: missing key"):
        write_result([pred("A", 0, 1, "P6"), {"title": "A", "t_idx": 1, "r": "P6"}], path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["result.json"]


def test_write_result_failure_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_result([pred("A", 0, 1, "P17")], path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("pyg_docre.io.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_result([pred("B", 0, 1, "P17")] * 1000, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["result.json"]      # the temporary file is gone


@pytest.mark.parametrize("content,expected", [
    ("[{\"title\": \"A\", \"h_idx\": 0", "not valid JSON"),
    ("{\"title\": \"A\"}", "must hold a JSON list"),
    ("[{\"title\": \"A\", \"h_idx\": 0, \"t_idx\": 1, \"r\": \"P1\"}, "
     "{\"title\": \"A\", \"h_idx\": 0, \"t_idx\": 1}]", "prediction 1 (title 'A'): r: missing key"),
    ("[{\"title\": \"A\", \"h_idx\": \"0\", \"t_idx\": 1, \"r\": \"P1\"}]",
     "prediction 0 (title 'A'): h_idx: must be an integer"),
])
def test_read_result_errors_name_file_entry_and_field(tmp_path, content, expected):
    path = tmp_path / "bad_result.json"
    path.write_text(content)
    with pytest.raises(PredictionFormatError) as info:
        read_result(path)
    assert str(info.value).startswith(str(path) + ": ")
    assert expected in str(info.value)


def test_read_result_missing_file(tmp_path):
    with pytest.raises(PredictionFormatError, match="missing.json: no such file"):
        read_result(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------------
# agreement with the official algorithm on the real Re-DocRED test set

def official_reference(submission, truth, train_docs):
    """A literal, loop-based transcription of the official DocRED ``evaluation.py`` (relation
    part; ATLOP's ``official_evaluate`` with its 1e-5). Returns (P, R, F1, Ign F1)."""
    fact_in_train_annotated = set([])
    for data in train_docs:
        vertexSet = data['vertexSet']
        for label in data['labels']:
            rel = label['r']
            for n1 in vertexSet[label['h']]:
                for n2 in vertexSet[label['t']]:
                    fact_in_train_annotated.add((n1['name'], n2['name'], rel))

    std = {}
    titleset = set([])
    title2vectexSet = {}
    for x in truth:
        title = x['title']
        titleset.add(title)
        vertexSet = x['vertexSet']
        title2vectexSet[title] = vertexSet
        for label in x['labels']:
            r = label['r']
            h_idx = label['h']
            t_idx = label['t']
            std[(title, r, h_idx, t_idx)] = set(label['evidence'])
    tot_relations = len(std)

    tmp = list(submission)
    tmp.sort(key=lambda x: (x['title'], x['h_idx'], x['t_idx'], x['r']))
    submission_answer = [tmp[0]]
    for i in range(1, len(tmp)):
        x = tmp[i]
        y = tmp[i - 1]
        if (x['title'], x['h_idx'], x['t_idx'], x['r']) != (y['title'], y['h_idx'], y['t_idx'],
                                                            y['r']):
            submission_answer.append(tmp[i])

    correct_re = 0
    correct_in_train_annotated = 0
    for x in submission_answer:
        title = x['title']
        h_idx = x['h_idx']
        t_idx = x['t_idx']
        r = x['r']
        if title not in title2vectexSet:
            continue
        vertexSet = title2vectexSet[title]
        if (title, r, h_idx, t_idx) in std:
            correct_re += 1
            in_train_annotated = False
            for n1 in vertexSet[h_idx]:
                for n2 in vertexSet[t_idx]:
                    if (n1['name'], n2['name'], r) in fact_in_train_annotated:
                        in_train_annotated = True
            if in_train_annotated:
                correct_in_train_annotated += 1

    re_p = 1.0 * correct_re / len(submission_answer)
    re_r = 1.0 * correct_re / tot_relations
    if re_p + re_r == 0:
        re_f1 = 0
    else:
        re_f1 = 2.0 * re_p * re_r / (re_p + re_r)
    re_p_ignore_train_annotated = 1.0 * (correct_re - correct_in_train_annotated) / (
        len(submission_answer) - correct_in_train_annotated + 1e-5)
    if re_p_ignore_train_annotated + re_r == 0:
        re_f1_ignore_train_annotated = 0
    else:
        re_f1_ignore_train_annotated = 2.0 * re_p_ignore_train_annotated * re_r / (
            re_p_ignore_train_annotated + re_r)
    return re_p, re_r, re_f1, re_f1_ignore_train_annotated


def intra_inter_reference(submission, truth):
    """Loop-based intra/inter F1 as the design defines them (not part of the official script)."""
    docs = {x['title']: x for x in truth}

    def kind(title, h, t):
        vs = docs[title]['vertexSet']
        for m1 in vs[h]:
            for m2 in vs[t]:
                if m1['sent_id'] == m2['sent_id']:
                    return 'intra'
        return 'inter'

    gold = {}
    for x in truth:
        for label in x['labels']:
            gold[(x['title'], label['h'], label['t'], label['r'])] = kind(x['title'], label['h'],
                                                                          label['t'])
    seen = set()
    counts = {'intra': [0, 0, 0], 'inter': [0, 0, 0]}
    for key, k in gold.items():
        counts[k][2] += 1
    for x in submission:
        key = (x['title'], x['h_idx'], x['t_idx'], x['r'])
        if key in seen or x['title'] not in docs:
            continue
        seen.add(key)
        k = kind(x['title'], x['h_idx'], x['t_idx'])
        counts[k][1] += 1
        if key in gold:
            counts[k][0] += 1
    out = {}
    for k, (c, p, g) in counts.items():
        prec = c / p if p else 0.0
        rec = c / g if g else 0.0
        out[k] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return out['intra'], out['inter']


def noisy_predictions(docs, seed, drop, flip, extra_per_doc, dup):
    """Gold labels with some dropped, some relations flipped, random extra pairs, duplicates
    and one unknown title (twice)."""
    rng = random.Random(seed)
    relations = sorted({label['r'] for doc in docs for label in doc['labels']})
    preds = []
    for doc in docs:
        n = len(doc['vertexSet'])
        for label in doc['labels']:
            if rng.random() < drop:
                continue
            r = label['r']
            if rng.random() < flip:
                r = rng.choice([x for x in relations if x != r])
            preds.append(pred(doc['title'], label['h'], label['t'], r))
            if rng.random() < dup:
                preds.append(dict(preds[-1]))
        for _ in range(extra_per_doc if n > 1 else 0):
            h, t = rng.sample(range(n), 2)
            preds.append(pred(doc['title'], h, t, rng.choice(relations)))
    preds += [pred("No such document, surely", 0, 1, relations[0])] * 2
    rng.shuffle(preds)
    return preds


@pytest.fixture(scope="module")
def redocred(redocred_test_path, redocred_dev_path):
    with open(redocred_test_path) as f:
        test = json.load(f)
    with open(redocred_dev_path) as f:
        dev = json.load(f)
    return test, dev


@pytest.mark.parametrize("seed,drop,flip,extra,dup", [(0, 0.2, 0.1, 3, 0.05),
                                                      (1, 0.6, 0.3, 10, 0.2)])
def test_agrees_with_official_algorithm_on_redocred(redocred, seed, drop, flip, extra, dup):
    gold, train = redocred
    preds = noisy_predictions(gold, seed, drop, flip, extra, dup)
    ref_p, ref_r, ref_f1, ref_ign = official_reference(preds, gold, train)
    s = score_docred(preds, gold, train)
    assert s.precision == pytest.approx(ref_p, abs=1e-6)
    assert s.recall == pytest.approx(ref_r, abs=1e-6)
    assert s.f1 == pytest.approx(ref_f1, abs=1e-6)
    assert s.ign_f1 == pytest.approx(ref_ign, abs=1e-6)
    # the noise must actually exercise the Ign correction and the deduplication
    assert s.correct_in_train > 0 and s.ign_f1 < s.f1
    assert s.overall.predicted < len(preds)
    ref_intra, ref_inter = intra_inter_reference(preds, gold)
    assert s.intra_f1 == pytest.approx(ref_intra, abs=1e-9)
    assert s.inter_f1 == pytest.approx(ref_inter, abs=1e-9)
    assert s.intra.gold + s.inter.gold == s.overall.gold
