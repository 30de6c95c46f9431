"""DocREModel on real Re-DocRED documents with the embedded MiniLM encoder."""
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch_geometric.loader import DataLoader

from pyg_docre.config import ModelConfig, ObjectivesConfig
from pyg_docre.data import PAIR_EDGE_TYPE, build_hdg, to_gtn_inputs
from pyg_docre.models.classifier import localized_context
from pyg_docre.models.docre_model import DocREModel
from pyg_docre.models.features import node_features, scatter_logsumexp


@pytest.fixture(scope="module")
def batch(dev_docs, tokenizer, rel2id):
    graphs = [build_hdg(dev_docs[i], tokenizer, rel2id) for i in (4, 9)]
    return next(iter(DataLoader(graphs, batch_size=2)))


@pytest.fixture(scope="module")
def model(rel2id):
    torch.manual_seed(0)
    return DocREModel(ModelConfig(), rel2id,
                      **ObjectivesConfig(distill_layers=[3, 6]).model_outputs())


def test_scatter_logsumexp_matches_torch():
    src = torch.randn(7, 5) * 30
    index = torch.tensor([0, 2, 2, 1, 0, 2, 1])
    out = scatter_logsumexp(src, index, 3)
    for g in range(3):
        assert torch.allclose(out[g], torch.logsumexp(src[index == g], dim=0), atol=1e-5)


def test_node_features_follow_the_paper(batch):
    view = to_gtn_inputs(batch)
    hidden = torch.randn(batch["token"].num_nodes, 8)
    x = node_features(hidden, batch, view)
    assert torch.equal(x[view.document_pos], hidden[batch["token"].ptr[:-1]])
    assert torch.equal(x[view.mention_pos], hidden[batch["mention"].token_index])
    for e in range(batch["entity"].num_nodes):
        rows = hidden[batch["mention"].token_index[batch["mention"].entity == e]]
        assert torch.allclose(x[view.entity_pos[e]], torch.logsumexp(rows, dim=0), atol=1e-5)


def test_localized_context_matches_a_per_pair_loop(batch):
    torch.manual_seed(1)
    ptr = batch["token"].ptr
    hidden = torch.randn(int(ptr[-1]), 6)
    mention_doc = batch["mention"].batch
    att = [torch.rand(int((mention_doc == b).sum()), 3, int(ptr[b + 1] - ptr[b]))
           for b in range(2)]
    pairs = batch[PAIR_EDGE_TYPE].edge_index
    entity_ptr = batch["entity"].ptr
    pair_batch = batch["entity"].batch[pairs[0]]
    ctx = localized_context(hidden, ptr, att, batch["mention"].entity, entity_ptr, pairs,
                            pair_batch)
    for p in range(0, pairs.size(1), 37):
        b = int(pair_batch[p])
        local = batch["mention"].entity[mention_doc == b]
        ent_att = lambda e: att[b][local == e].mean(dim=0)          # [H, T_b]
        a = (ent_att(pairs[0, p]) * ent_att(pairs[1, p])).mean(dim=0)
        a = a / (a.sum() + 1e-5)
        expected = a @ hidden[ptr[b]:ptr[b + 1]]
        assert torch.allclose(ctx[p], expected, atol=1e-5)
    # chunks of pairs (long documents with many entities) give the same values
    chunk_elements = 7 * att[0].size(1) * max(a.size(-1) for a in att)
    chunked = localized_context(hidden, ptr, att, batch["mention"].entity, entity_ptr, pairs,
                                pair_batch, chunk_elements=chunk_elements)
    torch.testing.assert_close(chunked, ctx, atol=1e-6, rtol=1e-6)
    # One read back to the host for the batch, not one per document (benchmarks/host_syncs.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import host_syncs
    counts = Counter()
    with host_syncs._SyncProneCalls(counts):
        localized_context(hidden, ptr, att, batch["mention"].entity, entity_ptr, pairs,
                          pair_batch, chunk_elements=chunk_elements)
    assert sum(counts.values()) == 1 and next(iter(counts))[0] == "tolist", counts


def test_classifier_chunks_equal_one_pass():
    from pyg_docre.models.classifier import GroupedBilinearClassifier

    torch.manual_seed(0)
    clf = GroupedBilinearClassifier(16, num_classes=5, emb_size=16, block_size=8)
    head, tail, context = (torch.randn(50, 16) for _ in range(3))
    whole = clf(head, tail, context)
    clf.chunk_elements = 7 * 16 * 8                 # 7 pairs per chunk
    torch.testing.assert_close(clf(head, tail, context), whole, atol=1e-6, rtol=1e-6)


def test_forward_shapes_and_auxiliary_outputs(model, batch):
    model.train()
    out = model(batch)
    num_pairs = batch[PAIR_EDGE_TYPE].edge_index.size(1)
    assert out.logits.shape == (num_pairs, 97)
    view = to_gtn_inputs(batch)
    assert out.node_features.shape == out.gtn_output.shape == (view.num_nodes, 384)
    assert sorted(out.layer_features) == [3, 6]
    pred, target = out.reconstruction
    num_mentions = batch["mention"].num_nodes
    assert pred.shape == target.shape == (round(0.2 * num_mentions), 384)
    assert not target.requires_grad
    model.eval()
    out = model(batch)
    assert out.layer_features == {} and out.reconstruction is None


def test_baseline_has_no_graph_part(rel2id, batch):
    base = DocREModel(ModelConfig(baseline=True), rel2id,
                      **ObjectivesConfig().model_outputs(baseline=True))
    assert base.gtn is None and base.distill_layers == []
    base.train()
    out = base(batch)
    assert out.gtn_output is None and out.reconstruction is None and not out.layer_features
    # The baseline's new parameters are the classifier's only.
    assert sum(p.numel() for p in base.new_parameters()) == sum(
        p.numel() for p in base.classifier.parameters())


def test_parameter_groups_are_disjoint(model):
    encoder = {id(p) for p in model.encoder.parameters()}
    new = {id(p) for p in model.new_parameters()}
    assert not encoder & new
    assert encoder | new == {id(p) for p in model.parameters()}


def test_save_and_reload_without_pickle(model, batch, tmp_path, tokenizer):
    model.eval()
    with torch.no_grad():
        before = model(batch).logits
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors",
                                                          "tokenizer"]
    reloaded = DocREModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        after = reloaded(batch).logits
    assert torch.allclose(before, after, atol=1e-5)
    tok = DocREModel.load_tokenizer(tmp_path)
    assert tok("a b").input_ids == tokenizer("a b").input_ids


def test_encoder_max_padding_reaches_the_encoder_and_the_saved_config(rel2id, tmp_path,
                                                                      tokenizer):
    model = DocREModel(ModelConfig(encoder_max_padding="auto"), rel2id)
    assert model.encoder.max_padding == "auto"
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    assert DocREModel.from_pretrained(tmp_path).encoder.max_padding == "auto"
    assert DocREModel(ModelConfig(), rel2id).encoder.max_padding is None   # padded, as before


def test_bad_distill_layer_is_a_clear_error(rel2id):
    with pytest.raises(ValueError, match=r"distill_layers: \[7\] outside 1..6"):
        DocREModel(ModelConfig(), rel2id, **ObjectivesConfig(distill_layers=[7]).model_outputs())


def test_grouped_bilinear_matches_the_block_formula():
    """logits[p, r] = sum_k z_s^(k)^T W_r^(k) z_o^(k) + b_r, blocks of size 4 (eq. 3, ATLOP)."""
    from pyg_docre.models.classifier import GroupedBilinearClassifier

    torch.manual_seed(0)
    clf = GroupedBilinearClassifier(8, num_classes=5, emb_size=12, block_size=4).double()
    head, tail, context = (torch.randn(7, 8, dtype=torch.double) for _ in range(3))
    z_s = torch.tanh(clf.head_extractor(torch.cat([head, context], -1))).view(7, 3, 4)
    z_o = torch.tanh(clf.tail_extractor(torch.cat([tail, context], -1))).view(7, 3, 4)
    weight = clf.bilinear.weight.view(5, 3, 4, 4)
    want = torch.einsum("pki,rkij,pkj->pr", z_s, weight, z_o) + clf.bilinear.bias
    assert torch.allclose(clf(head, tail, context), want, atol=1e-12)


def test_forward_skips_host_checks_unless_debug(model, batch, monkeypatch):
    """build_hdg validated the graph: the model's GTN runs no host-side checks (no device
    synchronisations) outside PyG's debug mode, and all of them inside it."""
    import torch_geometric

    import pyg_docre.nn.gtn as gtn_module

    calls = []
    check = gtn_module.check_gtn_inputs
    monkeypatch.setattr(gtn_module, "check_gtn_inputs",
                        lambda *a, **k: (calls.append(1), check(*a, **k))[1])
    model.eval()
    with torch.no_grad():
        model(batch)
        assert calls == []
        with torch_geometric.debug():
            model(batch)
    assert calls == [1]


def test_forward_reads_the_batch_back_once(model, batch):
    """The boundaries, the mention queries, the special token counts and the GTN's sizes come
    back to the host in one read; the encoder plans its windows from them, and the GTN (both
    runs, with node reconstruction) and context pooling take them as given."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import host_syncs

    model.train()
    counts = Counter()
    with torch.no_grad(), host_syncs._SyncProneCalls(counts):
        out = model(batch)
    assert out.reconstruction is not None            # the GTN ran twice
    functions = Counter()
    for (call, site), n in counts.items():
        functions[(call, site.rsplit(" ", 1)[-1])] += n
    assert functions[("tolist", "read_host_values")] == 1
    readers = {f for (_, f) in functions} & {
        "_to_host", "_check_specials", "_gather_rows", "_explicit_rows", "as_list",  # encoder
        "batch_sizes", "localized_context", "_first_int"}
    assert not readers, counts


def test_forward_builds_the_gtn_structure_once(model, batch, monkeypatch):
    """The main GTN pass and node reconstruction's masked pass share one structure."""
    from pyg_docre.nn import GTNConv

    calls = []
    original = GTNConv.structure
    monkeypatch.setattr(GTNConv, "structure",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    model.train()
    with torch.no_grad():
        out = model(batch)
    assert out.reconstruction is not None and len(model.gtn.convs) == 2
    assert len(calls) == 1
