"""Every malformed case gets an error naming the file, the document and the field."""
import copy
import json

import pytest

from pyg_docre.data import DocREDFormatError, load_docred, load_rel2id


def _doc():
    return {
        "title": "Tiny",
        "sents": [["Alice", "met", "Bob", "."], ["She", "lives", "in", "Paris", "."]],
        "vertexSet": [
            [{"name": "Alice", "pos": [0, 1], "sent_id": 0, "type": "PER"},
             {"name": "She", "pos": [0, 1], "sent_id": 1, "type": "PER"}],
            [{"name": "Bob", "pos": [2, 3], "sent_id": 0, "type": "PER"}],
            [{"name": "Paris", "pos": [3, 4], "sent_id": 1, "type": "LOC"}],
        ],
        "labels": [{"h": 0, "t": 2, "r": "P551", "evidence": [1]}],
    }


def _write(tmp_path, docs, name="split.json"):
    path = tmp_path / name
    path.write_text(json.dumps(docs))
    return path


def test_valid_file_loads(tmp_path, rel2id):
    docs = load_docred(_write(tmp_path, [_doc()]), rel2id=rel2id)
    assert docs[0]["title"] == "Tiny"


def _break(fn):
    doc = _doc()
    fn(doc)
    return doc


CASES = {
    "missing title": (lambda d: d.pop("title"), "title", "missing key"),
    "missing sents": (lambda d: d.pop("sents"), "sents", "missing key"),
    "missing vertexSet": (lambda d: d.pop("vertexSet"), "vertexSet", "missing key"),
    "empty sentence": (lambda d: d["sents"].__setitem__(1, []), "sents[1]", "non-empty"),
    "word not a string": (lambda d: d["sents"][0].__setitem__(1, 7), "sents[0][1]", "string"),
    "mention missing pos": (lambda d: d["vertexSet"][1][0].pop("pos"), "vertexSet[1][0].pos",
                            "missing key"),
    "mention missing name": (lambda d: d["vertexSet"][0][1].pop("name"),
                             "vertexSet[0][1].name", "missing key"),
    "span outside sentence": (lambda d: d["vertexSet"][2][0].__setitem__("pos", [3, 9]),
                              "vertexSet[2][0].pos", "outside sentence 1"),
    "empty span": (lambda d: d["vertexSet"][2][0].__setitem__("pos", [3, 3]),
                   "vertexSet[2][0].pos", "outside"),
    "negative start": (lambda d: d["vertexSet"][2][0].__setitem__("pos", [-1, 2]),
                       "vertexSet[2][0].pos", "outside"),
    "pos not a pair": (lambda d: d["vertexSet"][2][0].__setitem__("pos", [3]),
                       "vertexSet[2][0].pos", "[start, end]"),
    "sent_id out of range": (lambda d: d["vertexSet"][1][0].__setitem__("sent_id", 2),
                             "vertexSet[1][0].sent_id", "not a sentence index"),
    "entity with no mention": (lambda d: d["vertexSet"].append([]), "vertexSet[3]",
                               "no mention"),
    "label head missing entity": (lambda d: d["labels"][0].__setitem__("h", 3),
                                  "labels[0].h", "points at no entity"),
    "label tail missing entity": (lambda d: d["labels"][0].__setitem__("t", -1),
                                  "labels[0].t", "points at no entity"),
    "label missing r": (lambda d: d["labels"][0].pop("r"), "labels[0].r", "missing key"),
    "label h == t": (lambda d: d["labels"][0].__setitem__("t", 0), "labels[0]",
                     "same entity"),
    "unknown relation": (lambda d: d["labels"][0].__setitem__("r", "P99999"), "labels[0].r",
                         "unknown relation 'P99999'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_document_names_file_document_and_field(tmp_path, rel2id, case):
    mutate, field, reason = CASES[case]
    good = _doc()
    good["title"] = "First"
    path = _write(tmp_path, [good, _break(mutate)])
    with pytest.raises(DocREDFormatError) as info:
        load_docred(path, rel2id=rel2id)
    err = info.value
    message = str(err)
    assert str(path) in message
    assert "document 1" in message
    if case != "missing title":
        assert "'Tiny'" in message
    assert field in message and err.field == field
    assert reason in message
    assert err.doc_index == 1


def test_error_is_a_value_error_not_a_key_error(tmp_path):
    path = _write(tmp_path, [_break(lambda d: d.pop("sents"))])
    with pytest.raises(ValueError):
        load_docred(path)


def test_file_level_errors(tmp_path):
    with pytest.raises(DocREDFormatError, match="no such file"):
        load_docred(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(DocREDFormatError, match=r"bad\.json.*not valid JSON"):
        load_docred(bad)
    obj = _write(tmp_path, {"title": "x"}, "obj.json")
    with pytest.raises(DocREDFormatError, match="JSON list of documents"):
        load_docred(obj)


def test_duplicate_titles_are_rejected(tmp_path):
    path = _write(tmp_path, [_doc(), _doc()])
    with pytest.raises(DocREDFormatError, match=r"document 1 \('Tiny'\): title: duplicate title"):
        load_docred(path)


def test_labels_required_only_when_asked(tmp_path):
    doc = _doc()
    del doc["labels"]
    path = _write(tmp_path, [doc])
    assert load_docred(path)[0]["title"] == "Tiny"
    with pytest.raises(DocREDFormatError, match="labels: missing key"):
        load_docred(path, require_labels=True)


def test_rel2id_validation(tmp_path):
    path = tmp_path / "rel2id.json"
    path.write_text(json.dumps({"Na": 1, "P1": 0}))
    with pytest.raises(DocREDFormatError, match="class id 0"):
        load_rel2id(path)
    path.write_text(json.dumps({"Na": 0, "P1": 2}))
    with pytest.raises(DocREDFormatError, match="0 .. N-1"):
        load_rel2id(path)


def test_real_files_validate(dev_docs, rel2id, redocred_test_path):
    assert len(dev_docs) == 500
    docs = load_docred(redocred_test_path, rel2id=rel2id, require_labels=True)
    assert len(docs) == 500
    # The validator does not modify documents.
    assert copy.deepcopy(docs[0]) == docs[0]
