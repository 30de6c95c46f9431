"""Plain text -> DocRED document with exact offsets; pluggable NER and coreference."""
import doctest
import sys

import pytest

import pyg_docre.text as text_module
from pyg_docre.data import validate_document
from pyg_docre.text import (MissingBackendError, SpacyNER, TextFormatError, find_entities,
                            same_string_coref, split_sentences, text_to_document, tokenize)

TEXT = ("Dr. J. Smith (born 1950) moved to New York in 1990. He founded Acme Corp., a U.S.-based "
        "firm with 1,000 staff!\n\nAcme's rival is Globex.  \"Globex\" denies it?  Yes.")


def test_module_examples():
    result = doctest.testmod(text_module)
    assert result.failed == 0 and result.attempted >= 5


def test_every_token_slices_back_and_sentences_cover_the_text():
    sents = split_sentences(TEXT)
    assert [TEXT[s:e] for s, e in sents] == [
        "Dr. J. Smith (born 1950) moved to New York in 1990.",
        "He founded Acme Corp., a U.S.-based firm with 1,000 staff!",
        "Acme's rival is Globex.", "\"Globex\" denies it?", "Yes."]
    # every non-space character is in exactly one sentence, and in exactly one token
    covered = [0] * len(TEXT)
    for s, e in sents:
        for ts, te in tokenize(TEXT, s, e):
            assert s <= ts < te <= e and TEXT[ts:te].strip() == TEXT[ts:te]
            for i in range(ts, te):
                covered[i] += 1
    assert all(c == (0 if ch.isspace() else 1) for c, ch in zip(covered, TEXT))


def _span(text, sub, nth=0):
    start = -1
    for _ in range(nth + 1):
        start = text.index(sub, start + 1)
    return [start, start + len(sub)]


def test_entity_spans_map_to_covering_word_spans():
    entities = [{"mentions": [_span(TEXT, "J. Smith"), _span(TEXT, "He")], "type": "PER"},
                {"mentions": [_span(TEXT, "New York")], "type": "LOC"},
                {"mentions": [_span(TEXT, "Acme Corp."), _span(TEXT, "Acme", 1)]},
                {"mentions": [_span(TEXT, "U.S.")]},            # inside the word "U.S.-based"
                {"mentions": [_span(TEXT, "lobe")]},            # inside the word "Globex"
                {"mentions": [[_span(TEXT, "1990")[0] - 1, _span(TEXT, "1990")[1]]]}]  # " 1990"
    doc, spans = text_to_document(TEXT, entities, title="t")
    validate_document(doc)
    assert doc["vertexSet"][2][0]["type"] == "MISC" and doc["vertexSet"][0][0]["type"] == "PER"
    for entity, ent_spans in zip(doc["vertexSet"], spans):
        for mention, (start, end) in zip(entity, ent_spans):
            words = doc["sents"][mention["sent_id"]][slice(*mention["pos"])]
            # the words are exactly the mention (spaces between words aside)
            assert "".join(words) == TEXT[start:end].replace(" ", "")
            assert mention["name"] == TEXT[start:end]
    assert spans[5] == [_span(TEXT, "1990")]          # surrounding whitespace trimmed
    # words were split at the mention edges: "U.S.-based" -> ..., "-", "based"; "Globex" -> G lobe x
    assert ["G", "lobe", "x"] == doc["sents"][2][-4:-1]
    assert doc["sents"][1][doc["vertexSet"][3][0]["pos"][1]] == "-"


def test_a_mention_across_a_sentence_boundary_merges_the_sentences():
    text = "He met Mr. Big. Ben was there. Then he left."
    doc, _ = text_to_document(text, [{"mentions": [_span(text, "Big. Ben")]},
                                     {"mentions": [_span(text, "He")]}])
    assert [len(s) for s in doc["sents"]] == [10, 4]
    assert doc["sents"][0] == ["He", "met", "Mr", ".", "Big", ".", "Ben", "was", "there", "."]
    mention = doc["vertexSet"][0][0]
    assert doc["sents"][mention["sent_id"]][slice(*mention["pos"])] == ["Big", ".", "Ben"]


@pytest.mark.parametrize("entities,message", [
    ([{"mentions": [[5, 3]]}], r"entities\[0\]\.mentions\[0\]: \[5, 3\] is not a span"),
    ([{"mentions": [[0, 999]]}], r"entities\[0\]\.mentions\[0\]"),
    ([{"mentions": []}], r"entities\[0\]\.mentions: must be a non-empty list"),
    ([{"mentions": [[0, 2]]}, {"span": [0, 2]}], r"entities\[1\]: expected a dict with 'mentions'"),
    ([{"mentions": [[2, 3]]}], r"covers only whitespace"),
    ([{"mentions": [["a", 3]]}], r"must be \[start, end\] character offsets"),
    ([{"mentions": [[0, 2]], "type": 3}], r"entities\[0\]\.type"),
    ("Paris", r"entities: expected a list"),
])
def test_bad_entities_name_the_field(entities, message):
    with pytest.raises(TextFormatError, match=message):
        text_to_document("Hi  there.", entities)


def test_empty_text_and_no_entities():
    with pytest.raises(TextFormatError, match="text: empty"):
        text_to_document(" \n ", [])
    doc, spans = text_to_document("No entity here.", [])
    assert doc["sents"] == [["No", "entity", "here", "."]] and doc["vertexSet"] == [] == spans


def test_fake_ner_backend_and_default_coreference():
    text = "Acme hired Bob. Later, acme fired Bob and the Acme board met."

    def ner(t):
        import re
        return [{"start": m.start(), "end": m.end(),
                 "type": "ORG" if m.group().lower() == "acme" else "PER"}
                for m in re.finditer(r"(?i)acme|bob", t)]

    entities = find_entities(text, ner=ner)
    assert [e["type"] for e in entities] == ["ORG", "PER"]
    assert [[text[s:e] for s, e in ent["mentions"]] for ent in entities] == [
        ["Acme", "acme", "Acme"], ["Bob", "Bob"]]
    # a custom coreference step: every mention its own entity
    singletons = find_entities(text, ner=ner, coref=lambda t, ms: [[i] for i in range(len(ms))])
    assert len(singletons) == 5
    with pytest.raises(TextFormatError, match="cover every mention"):
        find_entities(text, ner=ner, coref=lambda t, ms: [[0]])
    with pytest.raises(TextFormatError, match=r"mention 0 \[3, 99\]"):
        find_entities(text, ner=lambda t: [{"start": 3, "end": 99}])


def test_same_string_coref_normalises():
    text = "The  Beatles and the beatles and BEATLES and Stones"
    mentions = [{"start": 0, "end": 12}, {"start": 17, "end": 28}, {"start": 33, "end": 40},
                {"start": 45, "end": 51}]
    assert same_string_coref(text, mentions) == [[0, 1, 2], [3]]


def test_no_backend_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)   # import spacy -> ImportError
    with pytest.raises(MissingBackendError, match=r"pip install 'pyg_docre\[text\]'"):
        find_entities("Paris is in France.")


def test_spacy_backend_adapter():
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "GPE", "pattern": "Paris"},
                        {"label": "PERSON", "pattern": "Anne Hidalgo"}])
    text = "Anne Hidalgo is the mayor of Paris. Paris is big."
    entities = find_entities(text, ner=SpacyNER(nlp))
    assert entities == [{"mentions": [[0, 12]], "type": "PER"},
                        {"mentions": [[29, 34], [36, 41]], "type": "LOC"}]
    with pytest.raises(MissingBackendError, match="python -m spacy download"):
        SpacyNER("no_such_pipeline_xyz")
