"""build_hdg on real Re-DocRED documents gives exactly the node and edge sets of docs/DESIGN.md.

The expected sets are computed here from the raw document by brute force, independently of the
builder's own bookkeeping.
"""
import itertools

import pytest
import torch

from pyg_docre.data import (GRAPH_EDGE_TYPES, PAIR_EDGE_TYPE, TOKEN_EDGE_TYPES, DocREDFormatError,
                            build_hdg, tokenize_document)


def _mentions(doc):
    """Mentions in vertexSet order: (entity, sentence)."""
    return [(e, m["sent_id"]) for e, entity in enumerate(doc["vertexSet"]) for m in entity]


def expected_edges(doc, token_sent):
    ms = _mentions(doc)
    n_m, n_e = len(ms), len(doc["vertexSet"])
    ent_sents = [{s for e2, s in ms if e2 == e} for e in range(n_e)]
    edges = {
        ("mention", "intra_entity", "mention"):
            {(i, j) for i, j in itertools.permutations(range(n_m), 2) if ms[i][0] == ms[j][0]},
        ("mention", "intra_entity", "entity"): {(i, ms[i][0]) for i in range(n_m)},
        ("entity", "intra_entity", "mention"): {(ms[i][0], i) for i in range(n_m)},
        ("mention", "intra_sentence", "mention"):
            {(i, j) for i, j in itertools.permutations(range(n_m), 2)
             if ms[i][1] == ms[j][1] and ms[i][0] != ms[j][0]},
        ("entity", "intra_sentence", "entity"):
            {(a, b) for a, b in itertools.permutations(range(n_e), 2) if ent_sents[a] & ent_sents[b]},
        ("document", "document", "mention"): {(0, i) for i in range(n_m)},
        ("mention", "document", "document"): {(i, 0) for i in range(n_m)},
        ("document", "document", "entity"): {(0, e) for e in range(n_e)},
        ("entity", "document", "document"): {(e, 0) for e in range(n_e)},
        ("token", "in_sentence", "mention"):
            {(t, i) for t, s in enumerate(token_sent) for i in range(n_m) if ms[i][1] == s},
        ("token", "in_sentence", "entity"):
            {(t, e) for t, s in enumerate(token_sent) for e in range(n_e) if s in ent_sents[e]},
        ("token", "in_sentence", "document"): {(t, 0) for t, s in enumerate(token_sent) if s >= 0},
        PAIR_EDGE_TYPE: set(itertools.permutations(range(n_e), 2)),
    }
    return edges


def edge_set(data, edge_type):
    return set(map(tuple, data[edge_type].edge_index.t().tolist()))


@pytest.mark.parametrize("index", [0, 1, 7, 42, 123, 499])
def test_edge_sets_match_design(dev_docs, tokenizer, rel2id, index):
    doc = dev_docs[index]
    data = build_hdg(doc, tokenizer, rel2id)
    tok = tokenize_document(doc, tokenizer)
    expected = expected_edges(doc, tok.token_sent)
    assert set(data.edge_types) == set(GRAPH_EDGE_TYPES) | set(TOKEN_EDGE_TYPES) | {PAIR_EDGE_TYPE}
    for edge_type, pairs in expected.items():
        got = data[edge_type].edge_index
        assert got.dtype == torch.long
        assert got.size(1) == len(pairs), edge_type          # no duplicates
        assert edge_set(data, edge_type) == pairs, edge_type
    for edge_type in GRAPH_EDGE_TYPES:
        src, _, dst = edge_type
        if src == dst:
            ei = data[edge_type].edge_index
            assert not (ei[0] == ei[1]).any(), "no self loops are stored"


@pytest.mark.parametrize("index", [0, 3, 250])
def test_nodes_and_attributes(dev_docs, tokenizer, rel2id, index):
    doc = dev_docs[index]
    data = build_hdg(doc, tokenizer, rel2id)
    tok = tokenize_document(doc, tokenizer)
    ms = _mentions(doc)
    assert data["document"].num_nodes == 1
    assert data["mention"].num_nodes == len(ms)
    assert data["entity"].num_nodes == len(doc["vertexSet"])
    assert data["token"].num_nodes == len(tok.input_ids)
    assert data["mention"].entity.tolist() == [e for e, _ in ms]
    assert data["mention"].sent.tolist() == [s for _, s in ms]
    assert data["mention"].token_index.tolist() == [i for e in tok.mention_token_index for i in e]
    assert data["token"].input_ids.tolist() == tok.input_ids
    assert data["token"].sent.tolist() == tok.token_sent
    assert data.title == doc["title"] and data.annotated


def test_labels(dev_docs, tokenizer, rel2id):
    doc = dev_docs[5]
    data = build_hdg(doc, tokenizer, rel2id)
    pairs = data[PAIR_EDGE_TYPE].edge_index.t().tolist()
    n_e = len(doc["vertexSet"])
    assert pairs == [[h, t] for h in range(n_e) for t in range(n_e) if h != t]
    y = data[PAIR_EDGE_TYPE].y
    assert y.shape == (len(pairs), len(rel2id))
    expected = {(lab["h"], lab["t"], rel2id[lab["r"]]) for lab in doc["labels"]}
    got = {(pairs[p][0], pairs[p][1], r) for p, r in (y[:, 1:] > 0).nonzero().tolist()}
    assert {(h, t, r - 1) for h, t, r in expected} == got
    # Column 0 (TH) is set exactly for pairs without a relation.
    related = {(h, t) for h, t, _ in expected}
    assert [bool(v) for v in y[:, 0]] == [tuple(p) not in related for p in pairs]


def test_unlabelled_document(dev_docs, tokenizer, rel2id):
    doc = {k: v for k, v in dev_docs[2].items() if k != "labels"}
    data = build_hdg(doc, tokenizer, rel2id)
    assert not data.annotated
    assert bool((data[PAIR_EDGE_TYPE].y[:, 0] == 1).all())
    assert float(data[PAIR_EDGE_TYPE].y[:, 1:].sum()) == 0.0


def test_unknown_relation_is_a_clear_error(dev_docs, tokenizer, rel2id):
    doc = dict(dev_docs[0], labels=[dict(dev_docs[0]["labels"][0], r="P0")])
    with pytest.raises(DocREDFormatError, match=r"labels\[0\]\.r: unknown relation 'P0'"):
        build_hdg(doc, tokenizer, rel2id)
    with pytest.raises(DocREDFormatError, match=r"labels\[0\]\.r: unknown relation 'P0'"):
        build_hdg(doc, tokenizer, rel2id, validate=False)


def test_document_without_entities(tokenizer, rel2id):
    data = build_hdg({"title": "empty", "sents": [["Nothing", "here", "."]], "vertexSet": []},
                     tokenizer, rel2id)
    assert data["mention"].num_nodes == 0 and data["entity"].num_nodes == 0
    assert data[PAIR_EDGE_TYPE].edge_index.shape == (2, 0)
    assert data[PAIR_EDGE_TYPE].y.shape == (0, len(rel2id))
