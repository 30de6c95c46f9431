"""Entity markers, mention token positions and sentences per token, on real documents."""

from pyg_docre.data import MARKER, tokenize_document


def test_markers_wrap_every_mention(dev_docs, tokenizer):
    for doc in dev_docs[:30]:
        tok = tokenize_document(doc, tokenizer)
        tokens = tokenizer.convert_ids_to_tokens(tok.input_ids)
        assert len(tok.input_ids) == len(tok.token_sent)
        for entity, positions in zip(doc["vertexSet"], tok.mention_token_index):
            assert len(positions) == len(entity)
            for mention, pos in zip(entity, positions):
                assert tokens[pos] == MARKER
                assert tok.token_sent[pos] == mention["sent_id"]
                # What follows the opening marker, markers of other mentions aside, is the
                # mention's own words, tokenized alone.
                words = doc["sents"][mention["sent_id"]][slice(*mention["pos"])]
                expected = tokenizer(words, is_split_into_words=True,
                                     add_special_tokens=False)["input_ids"]
                marker_id = tok.input_ids[pos]
                following = [t for t in tok.input_ids[pos + 1:pos + 1 + 3 * len(expected) + 8]
                             if t != marker_id]
                assert following[:len(expected)] == expected


def test_special_tokens_and_sentence_order(dev_docs, tokenizer):
    tok = tokenize_document(dev_docs[0], tokenizer)
    assert tok.input_ids[0] == tokenizer.cls_token_id and tok.input_ids[-1] == tokenizer.sep_token_id
    assert tok.token_sent[0] == -1 and tok.token_sent[-1] == -1
    assert (tok.num_prefix_special, tok.num_suffix_special) == (1, 1)
    inner = tok.token_sent[1:-1]
    assert inner == sorted(inner) and min(inner) == 0
    assert max(inner) == len(dev_docs[0]["sents"]) - 1
    num_markers = sum(t == tokenizer.convert_tokens_to_ids(MARKER) for t in tok.input_ids)
    starts = {(m["sent_id"], m["pos"][0]) for e in dev_docs[0]["vertexSet"] for m in e}
    ends = {(m["sent_id"], m["pos"][1]) for e in dev_docs[0]["vertexSet"] for m in e}
    words_star = sum(w == MARKER for s in dev_docs[0]["sents"] for w in s)
    assert num_markers == len(starts) + len(ends) + words_star


def test_mentions_sharing_a_start_share_the_marker(tokenizer):
    doc = {"title": "t", "sents": [["New", "York", "City", "is", "big"]],
           "vertexSet": [[{"name": "New York", "pos": [0, 2], "sent_id": 0, "type": "LOC"}],
                         [{"name": "New York City", "pos": [0, 3], "sent_id": 0, "type": "LOC"}]]}
    tok = tokenize_document(doc, tokenizer)
    assert tok.mention_token_index == [[1], [1]]
    assert tokenizer.convert_ids_to_tokens(tok.input_ids) == [
        "[CLS]", "*", "new", "york", "*", "city", "*", "is", "big", "[SEP]"]


def test_long_document_is_not_truncated(dev_docs, tokenizer):
    """A document of 5,000+ tokens, made by concatenating real documents, keeps every token."""
    sents, vertex_set, offset = [], [], 0
    for doc in dev_docs[:25]:
        sents.extend(doc["sents"])
        for entity in doc["vertexSet"]:
            vertex_set.append([dict(m, sent_id=m["sent_id"] + offset) for m in entity])
        offset += len(doc["sents"])
    long_doc = {"title": "long", "sents": sents, "vertexSet": vertex_set}
    tok = tokenize_document(long_doc, tokenizer)
    assert len(tok) > 5000
    parts = [tokenize_document(doc, tokenizer) for doc in dev_docs[:25]]
    assert len(tok) == sum(len(p) - 2 for p in parts) + 2
    markers = [tok.input_ids[i] for e in tok.mention_token_index for i in e]
    assert set(markers) == {tokenizer.convert_tokens_to_ids(MARKER)}
    assert max(i for e in tok.mention_token_index for i in e) > 4500
