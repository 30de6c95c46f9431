"""Property-based tests (hypothesis): generated DocRED documents through the reader and
``build_hdg``. Valid documents give graphs with the node counts and order of docs/DESIGN.md and
consistent edges; malformed documents raise DocREDFormatError and nothing else.

A fast set runs in the default suite; ``-m slow`` runs >= 1,000 generated documents."""
import copy
import json
import tempfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("hypothesis")  # in the test extra; absent on a bare GPU machine
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pyg_docre.data import DocREDFormatError, build_hdg, load_docred
from pyg_docre.data.docred import validate_document
from pyg_docre.data.hdg import GRAPH_EDGE_TYPES, PAIR_EDGE_TYPE, TOKEN_EDGE_TYPES

WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ0123456789éüß.,;-'()$%",
                min_size=1, max_size=8)
RELATIONS = ["P17", "P131", "P27", "P150", "P161"]
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(max_examples=1000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def documents(draw):
    """A valid DocRED document: 1-4 sentences, 1-5 entities of 1-3 mentions, labels h != t."""
    sents = draw(st.lists(st.lists(WORDS, min_size=1, max_size=10), min_size=1, max_size=4))
    vertex_set = []
    for e in range(draw(st.integers(1, 5))):
        mentions = []
        for _ in range(draw(st.integers(1, 3))):
            s = draw(st.integers(0, len(sents) - 1))
            start = draw(st.integers(0, len(sents[s]) - 1))
            end = draw(st.integers(start + 1, len(sents[s])))
            mentions.append({"name": " ".join(sents[s][start:end]), "pos": [start, end],
                             "sent_id": s, "type": draw(st.sampled_from(["PER", "LOC", "ORG"]))})
        vertex_set.append(mentions)
    doc = {"title": draw(st.text(min_size=1, max_size=12)), "sents": sents,
           "vertexSet": vertex_set}
    n = len(vertex_set)
    if n > 1 and draw(st.booleans()):
        pairs = [(h, t) for h in range(n) for t in range(n) if h != t]
        chosen = draw(st.lists(st.sampled_from(pairs), max_size=6))
        doc["labels"] = [{"h": h, "t": t, "r": draw(st.sampled_from(RELATIONS)),
                          "evidence": draw(st.lists(st.integers(0, len(sents) - 1), max_size=2))}
                         for h, t in chosen]
    return doc


def _break(doc, how, data):
    """One kind of malformation (each one a documented format error)."""
    doc = copy.deepcopy(doc)
    mention = doc["vertexSet"][0][0]
    if how == "drop key":
        del doc[data.draw(st.sampled_from(["title", "sents", "vertexSet"]))]
    elif how == "title type":
        doc["title"] = data.draw(st.one_of(st.integers(), st.none(), st.lists(st.integers())))
    elif how == "empty sents":
        doc["sents"] = data.draw(st.sampled_from([[], [[]], "text", None]))
    elif how == "word type":
        doc["sents"][0][0] = data.draw(st.one_of(st.integers(), st.none(), st.floats()))
    elif how == "sent_id":
        mention["sent_id"] = data.draw(st.one_of(st.integers(len(doc["sents"]), 10**6),
                                                 st.integers(max_value=-1), st.text(), st.booleans()))
    elif how == "pos":
        length = len(doc["sents"][mention["sent_id"]])
        mention["pos"] = data.draw(st.one_of(
            st.tuples(st.integers(0, 20), st.integers(0, 20)).map(list).filter(
                lambda p: not 0 <= p[0] < p[1] <= length),
            st.lists(st.integers(0, 3), max_size=1), st.just("0-1")))
    elif how == "mention key":
        del mention[data.draw(st.sampled_from(["name", "pos", "sent_id", "type"]))]
    elif how == "empty entity":
        doc["vertexSet"].append([])
    elif how == "label index":
        n = len(doc["vertexSet"])
        doc["labels"] = [{"h": data.draw(st.one_of(st.integers(n, n + 5), st.integers(-5, -1))),
                          "t": 0, "r": "P17"}]
    elif how == "self label":
        doc["labels"] = [{"h": 0, "t": 0, "r": "P17"}]
    elif how == "unknown relation":
        doc["vertexSet"].append([dict(mention)])
        doc["labels"] = [{"h": 0, "t": len(doc["vertexSet"]) - 1, "r": "P99999"}]
    return doc


BREAKS = ["drop key", "title type", "empty sents", "word type", "sent_id", "pos", "mention key",
          "empty entity", "label index", "self label", "unknown relation"]


def _check_graph(doc, graph, tokenizer, rel2id):
    mentions = [(e, m) for e, entity in enumerate(doc["vertexSet"]) for m in entity]
    n_m, n_e = len(mentions), len(doc["vertexSet"])
    n_t = graph["token"].input_ids.numel()
    counts = {"document": 1, "mention": n_m, "entity": n_e, "token": n_t}
    for node_type, count in counts.items():
        assert graph[node_type].num_nodes == count, node_type
    # Mention order: vertexSet order, with its entity and sentence.
    assert graph["mention"].entity.tolist() == [e for e, _ in mentions]
    assert graph["mention"].sent.tolist() == [m["sent_id"] for _, m in mentions]
    marker = tokenizer.convert_tokens_to_ids("*")
    token_index = graph["mention"].token_index
    assert ((0 <= token_index) & (token_index < n_t)).all()
    assert (graph["token"].input_ids[token_index] == marker).all()
    sizes = {"document": 1, "mention": n_m, "entity": n_e, "token": n_t}
    for src, rel, dst in GRAPH_EDGE_TYPES + TOKEN_EDGE_TYPES + (PAIR_EDGE_TYPE,):
        ei = graph[src, rel, dst].edge_index
        assert ei.dtype == torch.long and ei.dim() == 2 and ei.size(0) == 2
        assert ((ei[0] >= 0) & (ei[0] < sizes[src])).all() and \
            ((ei[1] >= 0) & (ei[1] < sizes[dst])).all(), (src, rel, dst)
        pairs = list(map(tuple, ei.t().tolist()))
        assert len(pairs) == len(set(pairs)), f"duplicate edges in {(src, rel, dst)}"
        if src == dst:
            assert all(a != b for a, b in pairs), f"self loop in {(src, rel, dst)}"
            if rel != "pair" and rel != "in_sentence":
                assert set(pairs) == {(b, a) for a, b in pairs}, "not symmetric"
    ent = graph["mention"].entity.tolist()
    sent = graph["mention"].sent.tolist()
    for a, b in graph["mention", "intra_entity", "mention"].edge_index.t().tolist():
        assert ent[a] == ent[b]
    for a, b in graph["mention", "intra_sentence", "mention"].edge_index.t().tolist():
        assert ent[a] != ent[b] and sent[a] == sent[b]
    assert torch.equal(graph["mention", "intra_entity", "entity"].edge_index,
                       graph["entity", "intra_entity", "mention"].edge_index.flip(0))
    assert graph["document", "document", "mention"].edge_index.size(1) == n_m
    assert graph["document", "document", "entity"].edge_index.size(1) == n_e
    # Candidate pairs and labels.
    y = graph[PAIR_EDGE_TYPE].y
    assert graph[PAIR_EDGE_TYPE].edge_index.size(1) == n_e * (n_e - 1)
    assert y.shape == (n_e * (n_e - 1), len(rel2id))
    assert ((y[:, 0] == 1) == (y[:, 1:].sum(1) == 0)).all()
    labelled = {(l["h"], l["t"], rel2id[l["r"]]) for l in doc.get("labels", [])}
    pairs = graph[PAIR_EDGE_TYPE].edge_index.t().tolist()
    got = {(h, t, r) for (h, t), row in zip(pairs, y.tolist()) for r, v in enumerate(row)
           if v and r > 0}
    assert got == labelled


def _through_the_reader(doc, rel2id):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.json"
        path.write_text(json.dumps([doc]), encoding="utf-8")
        return load_docred(path, rel2id=rel2id)[0]


def _valid_property(doc, tokenizer, rel2id):
    read = _through_the_reader(doc, rel2id)
    _check_graph(read, build_hdg(read, tokenizer, rel2id), tokenizer, rel2id)


def _malformed_property(doc, how, data, rel2id, tokenizer):
    bad = _break(doc, how, data)
    with pytest.raises(DocREDFormatError):
        _through_the_reader(bad, rel2id)
    with pytest.raises(DocREDFormatError):
        build_hdg(bad, tokenizer, rel2id)


def _any_json_property(value, rel2id, tokenizer):
    """Arbitrary JSON: either a format error or a valid document whose graph builds."""
    try:
        validate_document(value, rel2id=rel2id)
    except DocREDFormatError:
        return
    build_hdg(value, tokenizer, rel2id)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4),
                    lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.sampled_from(["title", "sents", "vertexSet", "labels",
                                                       "name", "pos", "sent_id", "type", "h",
                                                       "t", "r"]), children, max_size=5),
                    max_leaves=12)


@FAST
@given(doc=documents())
def test_valid_documents_give_consistent_graphs(doc, tokenizer, rel2id):
    _valid_property(doc, tokenizer, rel2id)


@FAST
@given(doc=documents(), how=st.sampled_from(BREAKS), data=st.data())
def test_malformed_documents_raise_the_format_error(doc, how, data, tokenizer, rel2id):
    _malformed_property(doc, how, data, rel2id, tokenizer)


@FAST
@given(value=JSON)
def test_arbitrary_json_never_crashes_the_validator(value, tokenizer, rel2id):
    _any_json_property(value, rel2id, tokenizer)


@pytest.mark.slow
@SLOW
@given(doc=documents())
def test_a_thousand_valid_documents(doc, tokenizer, rel2id):
    _valid_property(doc, tokenizer, rel2id)


@pytest.mark.slow
@SLOW
@given(doc=documents(), how=st.sampled_from(BREAKS), data=st.data())
def test_a_thousand_malformed_documents(doc, how, data, tokenizer, rel2id):
    _malformed_property(doc, how, data, rel2id, tokenizer)
