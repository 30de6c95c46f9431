"""RelationExtractor on the session's smoke-trained checkpoint (conftest.smoke_run)."""
import json
import math
import shutil

import pytest
import torch

from pyg_docre import RelationExtractor
from pyg_docre.data import DocREDDataset, DocREDFormatError, PAIR_EDGE_TYPE, load_docred
from pyg_docre.metrics import read_result
from pyg_docre.text import TextFormatError

ALL = float("-inf")


@pytest.fixture(scope="module")
def extractor(smoke_run):
    out, _ = smoke_run
    return RelationExtractor.from_pretrained(out / "checkpoint")


@pytest.fixture(scope="module")
def test_docs(redocred_test_path):
    return load_docred(redocred_test_path)[0:4]


def test_loads_on_the_default_device_with_names(extractor):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert extractor.device.type == expected
    assert all(p.device.type == expected for p in extractor.model.parameters())
    assert not extractor.model.training
    assert extractor.relation_name("P17") == "country"
    assert "relations=96" in repr(extractor)


def test_default_threshold_reproduces_the_run_predictions(extractor, smoke_run, test_docs):
    out, _ = smoke_run
    per_doc = extractor.predict(test_docs, batch_size=3)
    got = sorted((d["title"], r["h"], r["t"], r["relation"])
                 for d, rels in zip(test_docs, per_doc) for r in rels)
    expected = sorted((p["title"], p["h_idx"], p["t_idx"], p["r"])
                      for p in read_result(out / "result_test.json"))
    assert got == expected
    assert all(r["score"] > 0 for rels in per_doc for r in rels)


def test_scores_are_margins_over_the_threshold_logit(extractor, test_docs):
    doc = test_docs[1]
    rels = extractor.predict(doc, threshold=ALL, top_k=0)       # every relation of every pair
    n = len(doc["vertexSet"])
    assert len(rels) == n * (n - 1) * 96
    assert [r["score"] for r in rels] == sorted((r["score"] for r in rels), reverse=True)
    # independent recomputation from the model's logits
    graph = DocREDDataset([doc], extractor.tokenizer, extractor.model.rel2id)[0]
    with torch.no_grad():
        logits = extractor.model(graph.to(extractor.device)).logits.cpu()
    pairs = graph[PAIR_EDGE_TYPE].edge_index.t().tolist()
    margin = {(h, t, extractor.id2rel[c]): float(logits[p, c] - logits[p, 0])
              for p, (h, t) in enumerate(pairs) for c in range(1, logits.size(1))}
    for r in rels[:50] + rels[-50:]:
        assert r["score"] == pytest.approx(margin[(r["h"], r["t"], r["relation"])], abs=1e-4)
        assert r["h_name"] == doc["vertexSet"][r["h"]][0]["name"]
        assert r["relation_name"] == extractor.relation_name(r["relation"])


def test_threshold_and_top_k(extractor, test_docs):
    doc = test_docs[0]
    n = len(doc["vertexSet"])
    top1 = extractor.predict(doc, threshold=ALL, top_k=1)
    assert len(top1) == n * (n - 1)
    assert len({(r["h"], r["t"]) for r in top1}) == n * (n - 1)
    top2 = extractor.predict(doc, threshold=ALL, top_k=2)
    assert len(top2) == 2 * n * (n - 1)
    # a threshold keeps exactly the relations scoring above it
    cut = sorted(r["score"] for r in top1)[len(top1) // 2]
    kept = extractor.predict(doc, threshold=cut, top_k=1)
    assert kept and all(r["score"] > cut for r in kept)
    assert len(kept) == sum(r["score"] > cut for r in top1)
    with pytest.raises(ValueError, match="NaN"):
        extractor.predict(doc, threshold=math.nan)


def test_single_document_without_title_and_with_labels(extractor, test_docs):
    doc = {k: v for k, v in test_docs[2].items() if k != "title"}
    doc["labels"] = [{"h": 0, "t": 1, "r": "not-a-relation"}]          # labels are ignored
    single = extractor.predict(doc, threshold=ALL, top_k=1)
    assert isinstance(single, list) and single and isinstance(single[0], dict)
    assert extractor.predict([doc], threshold=ALL, top_k=1) == [single]
    # documents with fewer than two entities have no pair
    lonely = {"sents": [["Paris", "."]],
              "vertexSet": [[{"name": "Paris", "pos": [0, 1], "sent_id": 0, "type": "LOC"}]]}
    assert extractor.predict([lonely, doc], threshold=ALL, top_k=1) == [[], single]


def test_malformed_documents_name_index_and_field(extractor, test_docs):
    bad = json.loads(json.dumps(test_docs[0]))
    bad["vertexSet"][1][0]["pos"] = [0, 999]
    with pytest.raises(DocREDFormatError, match=r"document 1 .*vertexSet\[1\]\[0\]\.pos"):
        extractor.predict([test_docs[1], bad])
    with pytest.raises(TypeError, match="got str"):
        extractor.predict("Paris is in France.")


def test_checkpoint_without_rel_info_falls_back_to_ids(smoke_run, tmp_path, test_docs):
    out, _ = smoke_run
    copy = tmp_path / "checkpoint"
    shutil.copytree(out / "checkpoint", copy)
    meta = json.loads((copy / "config.json").read_text())
    del meta["rel_info"]
    (copy / "config.json").write_text(json.dumps(meta))
    ex = RelationExtractor.from_pretrained(copy, device="cpu")
    rels = ex.predict(test_docs[0], threshold=ALL, top_k=1)
    assert all(r["relation_name"] == r["relation"] for r in rels)


TEXT = "Paris is the capital of France. Emmanuel Macron is the president of France."
ENTITIES = [{"mentions": [[0, 5]], "type": "LOC"},
            {"mentions": [[24, 30], [68, 74]], "type": "LOC"},
            {"mentions": [[32, 47]], "type": "PER"}]


def test_predict_text_with_given_entities(extractor):
    rels = extractor.predict_text(TEXT, ENTITIES, threshold=ALL, top_k=1)
    assert len(rels) == 6
    for r in rels:
        assert r["h_mentions"] == ENTITIES[r["h"]]["mentions"]
        assert r["t_mentions"] == ENTITIES[r["t"]]["mentions"]
        s, e = r["h_mentions"][0]
        assert TEXT[s:e] == r["h_name"]
    assert {r["h_name"] for r in rels} == {"Paris", "France", "Emmanuel Macron"}
    with pytest.raises(TextFormatError, match=r"entities\[1\]\.mentions\[0\]"):
        extractor.predict_text(TEXT, [{"mentions": [[0, 5]]}, {"mentions": [[70, 90]]}])


def test_predict_text_with_a_pluggable_ner_backend(extractor):
    import re

    def ner(text):
        return [{"start": m.start(), "end": m.end(), "type": "LOC"}
                for m in re.finditer(r"Paris|France", text)]

    rels = extractor.predict_text(TEXT, ner=ner, threshold=ALL, top_k=1)
    assert sorted((r["h_name"], r["t_name"]) for r in rels) == [("France", "Paris"),
                                                                ("Paris", "France")]
    france = next(r for r in rels if r["h_name"] == "France")
    assert france["h_mentions"] == [[24, 30], [68, 74]]       # one entity, by coreference


def test_evaluation_predict_shows_progress(extractor, test_docs, capsys):
    from torch_geometric.loader import DataLoader

    from pyg_docre.training.evaluation import predict

    loader = DataLoader(DocREDDataset(test_docs[:2], extractor.tokenizer,
                                      extractor.model.rel2id), batch_size=1)
    args = (extractor.model, loader, extractor.device, extractor.id2rel, 4)
    quiet = predict(*args, progress=False)
    assert "predicting" not in capsys.readouterr().err
    assert predict(*args, progress=True) == quiet
    assert "predicting" in capsys.readouterr().err
