"""DocREDDataset: builds HDGs once, caches them keyed by file content, tokenizer and builder."""
import json

import pytest
import torch

import pyg_docre.data.dataset as dataset_module
from pyg_docre.data import DocREDDataset, DocREDFormatError, build_hdg, parse_doc_range


@pytest.fixture()
def small_file(tmp_path, dev_docs):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(dev_docs[:6]))
    return path


def _same_graph(a, b):
    assert a.title == b.title
    assert set(a.edge_types) == set(b.edge_types)
    for et in a.edge_types:
        assert torch.equal(a[et].edge_index, b[et].edge_index)
    for nt in a.node_types:
        for key, value in a[nt].items():
            assert torch.equal(value, b[nt][key]) if torch.is_tensor(value) else value == b[nt][key]
    assert torch.equal(a["entity", "pair", "entity"].y, b["entity", "pair", "entity"].y)


def test_cache_is_written_and_reused(small_file, tmp_path, tokenizer, rel2id, monkeypatch):
    cache = tmp_path / "cache"
    first = DocREDDataset(small_file, tokenizer, rel2id, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"
    assert torch.load(files[0], weights_only=True)  # plain tensors: loads without pickle

    def no_build(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(dataset_module, "build_hdg", no_build)
    second = DocREDDataset(small_file, tokenizer, rel2id, cache_dir=cache)
    assert len(second) == len(first) == 6
    for a, b in zip(first, second):
        _same_graph(a, b)
        assert b["entity", "pair", "entity"].y.dtype == torch.float


def test_cache_key_follows_content_tokenizer_and_builder(small_file, tmp_path, tokenizer, rel2id,
                                                         dev_docs, monkeypatch):
    ds = DocREDDataset(small_file, tokenizer, rel2id, cache_dir=None)
    key = ds.cache_key(tokenizer, rel2id)
    assert key == ds.cache_key(tokenizer, rel2id)
    small_file.write_text(json.dumps(dev_docs[:5]))
    assert ds.cache_key(tokenizer, rel2id) != key
    small_file.write_text(json.dumps(dev_docs[:6]))
    assert ds.cache_key(tokenizer, rel2id) == key
    monkeypatch.setattr(dataset_module, "BUILDER_VERSION", 10 ** 6)
    assert ds.cache_key(tokenizer, rel2id) != key
    monkeypatch.undo()
    other_rel2id = dict(rel2id, P_extra=len(rel2id))
    assert ds.cache_key(tokenizer, other_rel2id) != key
    monkeypatch.setattr(dataset_module, "tokenizer_fingerprint", lambda tok: "another")
    assert ds.cache_key(tokenizer, rel2id) != key


def test_tokenizer_fingerprint_ignores_call_state(tokenizer):
    before = dataset_module.tokenizer_fingerprint(tokenizer)
    tokenizer(["a", "b"], is_split_into_words=True, truncation=True, max_length=3)
    tokenizer(["a", "b"], is_split_into_words=True, truncation=False)
    assert dataset_module.tokenizer_fingerprint(tokenizer) == before


def test_document_ranges(small_file, tokenizer, rel2id, dev_docs):
    ds = DocREDDataset(small_file, tokenizer, rel2id, docs="2:5")
    assert [d["title"] for d in ds.documents] == [d["title"] for d in dev_docs[2:5]]
    _same_graph(ds[0], build_hdg(dev_docs[2], tokenizer, rel2id))
    assert parse_doc_range([0, 5], 6) == [0, 5]
    assert parse_doc_range("4:", 6) == [4, 5]
    with pytest.raises(ValueError, match="outside"):
        parse_doc_range([7], 6)
    with pytest.raises(ValueError, match="selects no document"):
        parse_doc_range("5:5", 6)
    with pytest.raises(ValueError, match="start:stop"):
        parse_doc_range("1-3", 6)


def test_malformed_file_is_reported_and_nothing_cached(tmp_path, dev_docs, tokenizer, rel2id):
    docs = [dict(d) for d in dev_docs[:3]]
    docs[2] = dict(docs[2], labels=[{"h": 0, "t": 999, "r": "P17"}])
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(docs))
    cache = tmp_path / "cache"
    with pytest.raises(DocREDFormatError, match=r"broken\.json: document 2 .*labels\[0\]\.t"):
        DocREDDataset(path, tokenizer, rel2id, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "wrong content"])
def test_damaged_cache_is_named_discarded_and_rebuilt(small_file, tmp_path, tokenizer, rel2id,
                                                      caplog, damage):
    cache = tmp_path / "cache"
    first = DocREDDataset(small_file, tokenizer, rel2id, cache_dir=cache)
    (cache_file,) = cache.iterdir()
    data = cache_file.read_bytes()
    if damage == "garbage":
        cache_file.write_bytes(b"\x00garbage" * 100)
    elif damage == "empty":
        cache_file.write_bytes(b"")
    elif damage == "truncated":
        cache_file.write_bytes(data[: len(data) // 2])
    else:
        torch.save([{"x": torch.zeros(1)}], cache_file)
    with caplog.at_level("WARNING", logger="pyg_docre"):
        second = DocREDDataset(small_file, tokenizer, rel2id, cache_dir=cache)
    assert cache_file.name in caplog.text and "damaged" in caplog.text
    for a, b in zip(first, second):
        _same_graph(a, b)
    # The rebuilt cache is complete again and used silently.
    caplog.clear()
    DocREDDataset(small_file, tokenizer, rel2id, cache_dir=cache)
    assert "damaged" not in caplog.text


def test_documents_in_memory_equal_the_file(small_file, dev_docs, tokenizer, rel2id, tmp_path):
    from_file = DocREDDataset(small_file, tokenizer, rel2id)
    in_memory = DocREDDataset(dev_docs[:6], tokenizer, rel2id, docs="1:4")
    assert in_memory.path is None and in_memory.indices == [1, 2, 3]
    assert [d["title"] for d in in_memory.documents] == [d["title"] for d in dev_docs[1:4]]
    for a, b in zip(list(from_file)[1:4], in_memory):
        _same_graph(a, b)
    # cached under a key of the documents' content
    cache = tmp_path / "cache"
    first = DocREDDataset(dev_docs[:2], tokenizer, rel2id, cache_dir=cache)
    other = DocREDDataset(dev_docs[2:4], tokenizer, rel2id, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    assert first.cache_key(tokenizer, rel2id) != other.cache_key(tokenizer, rel2id)


def test_documents_in_memory_are_validated_and_other_types_rejected(dev_docs, tokenizer,
                                                                     rel2id):
    bad = json.loads(json.dumps(dev_docs[:2]))
    bad[1]["vertexSet"][0][0]["sent_id"] = 99
    with pytest.raises(DocREDFormatError, match=r"document 1 .*vertexSet\[0\]\[0\]\.sent_id"):
        DocREDDataset(bad, tokenizer, rel2id)
    with pytest.raises(TypeError, match=r"wrap a single document in a list"):
        DocREDDataset(dev_docs[0], tokenizer, rel2id)
    with pytest.raises(TypeError, match=r"got int"):
        DocREDDataset(3, tokenizer, rel2id)


def test_graph_building_shows_progress(dev_docs, tokenizer, rel2id, capsys):
    DocREDDataset(dev_docs[:2], tokenizer, rel2id, progress=True)
    assert "building graphs" in capsys.readouterr().err
    DocREDDataset(dev_docs[:2], tokenizer, rel2id, progress=False)
    assert "building graphs" not in capsys.readouterr().err
