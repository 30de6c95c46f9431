"""GTNConv: sparse and dense computations agree; PyG conventions; invariances; bad inputs."""
import copy

import pytest
import torch

from pyg_docre.nn import GTN, GTNConv

C, C_TOK = 24, 12

CONFIGS = {
    "default": {},
    "no_global_head": dict(global_head=False),
    "self_attention": dict(graph_attention="self"),
    "self_attention_no_global": dict(graph_attention="self", global_head=False),
    "no_cross": dict(cross_attention=False),
    "no_cross_local": dict(cross_local=False),
    "no_cross_global": dict(cross_global=False),
    "two_edge_types_two_cross_heads": dict(num_edge_types=2, cross_heads=2),
}
TOL = {torch.float64: dict(atol=1e-5, rtol=1e-5), torch.float32: dict(atol=1e-4, rtol=1e-4)}


def make_conv(dtype=torch.float64, seed=0, **kwargs):
    torch.manual_seed(seed)
    return GTNConv(C, token_channels=C_TOK, **kwargs).to(dtype).eval()


def inputs_for(conv, g):
    args = g.args()
    if conv.num_edge_types == 2:  # fold type 2 into 1 for a two-type layer
        args["edge_type"] = args["edge_type"].clamp(max=1)
    return args


def run(conv, g, mode, dtype):
    """Forward + backward of a fixed random functional; returns output and all gradients."""
    conv.attention = mode
    conv.zero_grad(set_to_none=True)
    x = g.x.to(dtype).requires_grad_()
    token_x = g.token_x.to(dtype).requires_grad_()
    out = conv(**{**inputs_for(conv, g), "x": x, "token_x": token_x})
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    (out * weight).sum().backward()
    grads = {"x": x.grad, "token_x": token_x.grad}
    grads.update({name: p.grad for name, p in conv.named_parameters()})
    return out.detach(), grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("shuffle", [False, True])
def test_sparse_and_dense_agree(config, dtype, shuffle, hdg):
    g = hdg.make_batch(num_docs=4, channels=C, token_channels=C_TOK, seed=3, isolated=1,
                   shuffle=shuffle)
    conv = make_conv(dtype, **CONFIGS[config])
    out_s, grads_s = run(conv, g, "sparse", dtype)
    out_d, grads_d = run(conv, g, "dense", dtype)
    assert out_s.dtype == dtype and torch.isfinite(out_s).all()
    torch.testing.assert_close(out_s, out_d, **TOL[dtype])
    assert grads_s.keys() == grads_d.keys()
    for name in grads_s:
        gs, gd = grads_s[name], grads_d[name]
        if config == "no_cross" and name == "token_x":
            assert gs is None and gd is None
            continue
        assert gs is not None and gd is not None, name
        assert torch.isfinite(gs).all(), name
        torch.testing.assert_close(gs, gd, **TOL[dtype], msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_attention_weights(mode, hdg):
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=5, isolated=1)
    conv = make_conv(attention=mode)
    N, E, K = g.num_nodes, g.edge_index.size(1), conv.num_edge_types
    out, (edge_index, alpha) = conv(**g.args(), return_attention_weights=True)
    assert out.shape == (N, C)
    assert edge_index.shape == (2, E + N * K) and alpha.shape == (E + N * K,)
    assert torch.equal(edge_index[:, :E], g.edge_index)
    loops = torch.arange(N).repeat_interleave(K)
    assert torch.equal(edge_index[:, E:], torch.stack([loops, loops]))
    # Weights of a node in a head sum to 1 over the columns pointing at it.
    head = torch.cat([g.edge_type, torch.arange(K).repeat(N)])
    group = edge_index[1] * K + head
    sums = torch.zeros(N * K, dtype=alpha.dtype).index_add_(0, group, alpha)
    torch.testing.assert_close(sums, torch.ones_like(sums))
    # An edge-less node attends only to itself in every head.
    iso = int(g.isolated_nodes[0])
    assert torch.allclose(alpha[E + iso * K:E + (iso + 1) * K], torch.ones(K, dtype=alpha.dtype))


def test_attention_weights_agree_between_modes(hdg):
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=6)
    conv = make_conv()
    _, (ei_s, a_s) = conv(**g.args(), return_attention_weights=True)
    conv.attention = "dense"
    _, (ei_d, a_d) = conv(**g.args(), return_attention_weights=True)
    assert torch.equal(ei_s, ei_d)
    torch.testing.assert_close(a_s, a_d, atol=1e-10, rtol=1e-8)


def test_modes_share_parameters_and_state_dict(hdg):
    g = hdg.make_batch(num_docs=2, channels=C, token_channels=C_TOK, seed=7)
    sparse = make_conv(seed=1, attention="sparse")
    dense = make_conv(seed=2, attention="dense")
    assert sparse.state_dict().keys() == dense.state_dict().keys()
    dense.load_state_dict(sparse.state_dict())
    torch.testing.assert_close(sparse(**g.args()), dense(**g.args()))
    assert dense.attention == "dense"   # the mode is not part of the state
    sparse.attention = "dense"
    assert torch.equal(sparse(**g.args()), dense(**g.args()))
    with pytest.raises(ValueError, match="attention must be one of"):
        sparse.attention = "flash"


def test_repr_and_reset_parameters():
    conv = GTNConv(384)
    assert repr(conv) == "GTNConv(384, heads=4, cross_heads=4, attention='sparse')"
    assert repr(GTNConv(384, token_channels=768, global_head=False, cross_local=False,
                        attention="dense")) == (
        "GTNConv(384, heads=3, cross_heads=4, attention='dense', token_channels=768, "
        "global_head=False, cross_local=False)")
    assert conv.head_channels == 96 and conv.ffn_channels == 768
    before = copy.deepcopy(conv.state_dict())
    conv.reset_parameters()
    after = conv.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "lin_query.weight" in changed and "emb_entity.weight" in changed
    assert "lin_cross_key.weight" in changed and "ffn.0.weight" in changed


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_batching_invariance(mode, hdg):
    docs = hdg.make_documents(num_docs=3, channels=C, token_channels=C_TOK, seed=11, isolated=1)
    conv = make_conv(attention=mode)
    batched = conv(**hdg.collate(docs).args())
    alone = torch.cat([conv(**d.args()) for d in docs])   # batch=None, token_batch=None
    torch.testing.assert_close(batched, alone, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("mode", ["sparse", "dense"])
@pytest.mark.parametrize("config", ["default", "self_attention", "no_cross_global"])
def test_permutation_equivariance(mode, config, hdg):
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=13, isolated=1)
    conv = make_conv(attention=mode, **CONFIGS[config])
    permuted, perm = hdg.permute_within_documents(g, seed=1)
    assert not torch.equal(perm, torch.arange(g.num_nodes))
    torch.testing.assert_close(conv(**permuted.args()), conv(**g.args())[perm],
                               atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_more_entities_and_sentences_than_embeddings(mode, hdg):
    import random
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    big = hdg.make_document(rng, C, C_TOK, num_entities=40, num_sentences=30, max_mentions=2,
                        generator=gen)
    small = hdg.make_document(rng, C, C_TOK, generator=gen)
    g = hdg.collate([big, small])
    conv = make_conv(attention=mode, num_entity_embeddings=8, num_sentence_embeddings=5)
    out = conv(**g.args())
    assert torch.isfinite(out).all()
    # Wrap-around rule: entity e uses row e mod 8, sentence s row s mod 5.
    shifted = g.replace(
        node_entity=torch.where(g.node_entity >= 0, g.node_entity + 8 * 3, g.node_entity),
        sentence_index=torch.stack([g.sentence_index[0], g.sentence_index[1] + 5 * 7]))
    torch.testing.assert_close(conv(**shifted.args()), out, atol=0, rtol=0)
    # ... and a shift that is not a multiple of the table size does change the output.
    off = g.replace(node_entity=torch.where(g.node_entity >= 0, g.node_entity + 1,
                                            g.node_entity))
    assert not torch.allclose(conv(**off.args()), out)


def test_structure_embedding_rule():
    """x~ = x + emb_e(entity) + mean of emb_s over the node's sentence pairs (duplicates count);
    reserved rows for node_entity=-1 and nodes without sentence pairs."""
    conv = make_conv(num_entity_embeddings=4, num_sentence_embeddings=3)
    node_entity = torch.tensor([-1, 0, 5, 2])
    sentence_index = torch.tensor([[1, 2, 2, 2, 3], [0, 1, 1, 4, 2]])
    no_edges = torch.empty(2, 0, dtype=torch.long)
    structure = conv.structure(no_edges, no_edges[0], None, node_entity, sentence_index,
                               num_nodes=4)
    emb = conv._structure_embedding(structure, sentence_index[0], 4)
    E, S = conv.emb_entity.weight, conv.emb_sentence.weight
    expected = torch.stack([
        E[4] + S[3],
        E[0] + S[0],
        E[1] + (S[1] + S[1] + S[1]) / 3,     # 5 mod 4 = 1; sentence 4 mod 3 = 1
        E[2] + S[2],
    ])
    torch.testing.assert_close(emb, expected)


def test_node_without_local_tokens_gets_zero_local_message(hdg):
    g = hdg.make_batch(num_docs=2, channels=C, token_channels=C_TOK, seed=17)
    # Remove all token edges into node 1: only cross_global=False (all heads local) sees it.
    keep = g.token_edge_index[1] != 1
    g = g.replace(token_edge_index=g.token_edge_index[:, keep])
    outs = []
    for mode in ("sparse", "dense"):
        conv = make_conv(attention=mode, cross_global=False)
        conv.attention = mode
        x = g.x.double().requires_grad_()
        out = conv(**{**g.args(), "x": x})
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1])
    # Zero message: the cross sublayer adds only the output-projection bias for node 1.
    conv = make_conv(cross_global=False)
    captured = {}
    conv.lin_cross_out.register_forward_hook(lambda m, i, o: captured.update(inp=i[0]))
    conv(**g.args())
    assert torch.equal(captured["inp"][1], torch.zeros(C, dtype=torch.float64))
    assert captured["inp"][0].abs().sum() > 0


@pytest.mark.parametrize("limit", [1, 5, 40])
def test_chunked_local_cross_heads_match_one_call(limit, hdg):
    """Chunks of destination nodes (limit 1: one node per chunk; 5: nodes with more edges than
    the limit alone, the rest grouped) give the unchunked outputs and gradients."""
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=23, isolated=1,
                       shuffle=True)
    assert g.token_edge_index.size(1) > 40
    whole = make_conv(cross_chunk_edges=None)
    chunked = make_conv(cross_chunk_edges=limit)
    chunks = []                                    # (edges, destination nodes) per chunk
    propagate_chunk = chunked._propagate_chunk
    chunked._propagate_chunk = lambda edge_index, query, *rest: (
        chunks.append((edge_index.size(1), query.size(0))),
        propagate_chunk(edge_index, query, *rest))[1]
    out_w, grads_w = run(whole, g, "sparse", torch.float64)
    out_c, grads_c = run(chunked, g, "sparse", torch.float64)
    assert len(chunks) >= 2
    assert all(edges <= limit or nodes == 1 for edges, nodes in chunks)
    # Every node once in the forward pass and once more when backward recomputes the chunks.
    assert sum(nodes for _, nodes in chunks) == 2 * g.x.size(0)
    torch.testing.assert_close(out_c, out_w, atol=1e-10, rtol=1e-10)
    for name in grads_w:
        torch.testing.assert_close(grads_c[name], grads_w[name], atol=1e-10, rtol=1e-10,
                                   msg=lambda m: f"grad {name}: {m}")


def test_chunked_cross_heads_with_dropout_recompute_the_same_masks(hdg, monkeypatch):
    """Backward recomputes each checkpointed chunk with the forward's dropout masks: the
    gradients equal those of the same chunks kept in memory (no checkpoint)."""
    import pyg_docre.nn.conv.gtn_conv as module

    g = hdg.make_batch(num_docs=2, channels=C, token_channels=C_TOK, seed=29)

    def grads_of_run():
        conv = make_conv(cross_chunk_edges=3, cross_global=False, attention_dropout=0.5).train()
        x = g.x.to(torch.float64).requires_grad_()
        torch.manual_seed(5)
        out = conv(**{**g.args(), "x": x, "token_x": g.token_x.to(torch.float64)})
        out.pow(2).sum().backward()
        return out.detach(), x.grad

    out_ckpt, grad_ckpt = grads_of_run()
    monkeypatch.setattr(module, "checkpoint", lambda fn, *args, **kwargs: fn(*args))
    out_plain, grad_plain = grads_of_run()
    torch.testing.assert_close(out_ckpt, out_plain, atol=0, rtol=0)
    torch.testing.assert_close(grad_ckpt, grad_plain, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_training_mode_dropout_runs(mode, hdg):
    g = hdg.make_batch(num_docs=2, channels=C, token_channels=C_TOK, seed=19, dtype=torch.float32)
    conv = GTNConv(C, token_channels=C_TOK, dropout=0.1, attention_dropout=0.1, attention=mode)
    conv.train()
    out = conv(**g.args())
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None for p in conv.parameters())


# ---------------------------------------------------------------------------------- bad inputs
def _bad_cases(g):
    two_docs = g.batch.clone()
    unsorted = g.batch.flip(0)
    self_loop = g.edge_index.clone()
    self_loop[1, 0] = self_loop[0, 0]
    cross_doc = g.edge_index.clone()
    cross_doc[1, 0] = g.num_nodes - 1
    return {
        "token_x is required": dict(token_x=None),
        r"edge_type must lie in \[0, 3\)": dict(edge_type=torch.full_like(g.edge_type, 3)),
        "batch must be sorted": dict(batch=unsorted),
        "self loops": dict(edge_index=self_loop),
        "edge_index connects rows of different documents": dict(edge_index=cross_doc),
        r"x must have shape \[N, 24\]": dict(x=torch.randn(g.num_nodes, 8)),
        "token_batch is required": dict(token_batch=None, batch=two_docs),
        "node_entity and sentence_index are required": dict(node_entity=None),
        "token_edge_index is required": dict(token_edge_index=None),
        r"token_x must have shape \[T, 12\]": dict(token_x=torch.randn(5, 7)),
        "edge_type must have shape": dict(edge_type=g.edge_type[:-1]),
        "edge_index must lie in": dict(edge_index=g.edge_index + g.num_nodes),
        "edge_index must be a long tensor": dict(edge_index=g.edge_index.int()),
        "token_batch refers to document": dict(token_batch=g.token_batch + 5),
        "node_entity must be >= -1": dict(node_entity=g.node_entity - 5),
        r"sentence_index\[1\] \(sentence\) must be >= 0": dict(
            sentence_index=g.sentence_index - torch.tensor([[0], [10]])),
        "token_edge_index connects rows of different documents": dict(
            token_edge_index=torch.stack([g.token_edge_index[0].flip(0),
                                          g.token_edge_index[1]])),
        "edge_index and edge_type are required": dict(edge_index=None),
        "token_x must have the dtype of x": dict(token_x=g.token_x.float()),
    }


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_bad_inputs_raise_value_error(mode, hdg):
    g = hdg.make_batch(num_docs=2, channels=C, token_channels=C_TOK, seed=23).to(torch.float64)
    conv = make_conv(attention=mode)
    for message, change in _bad_cases(g).items():
        with pytest.raises(ValueError, match=message):
            conv(**{**g.args(), **change})


def test_bad_constructor_arguments(hdg):
    with pytest.raises(ValueError, match="divisible by num_edge_types"):
        GTNConv(18)
    with pytest.raises(ValueError, match="divisible by cross_heads"):
        GTNConv(16, cross_heads=3)
    with pytest.raises(ValueError, match="must be even"):
        GTNConv(24, cross_heads=3)
    with pytest.raises(ValueError, match="use cross_attention=False"):
        GTNConv(16, cross_local=False, cross_global=False)
    with pytest.raises(ValueError, match="graph_attention must be"):
        GTNConv(16, graph_attention="full")
    with pytest.raises(ValueError, match="attention must be one of"):
        GTNConv(16, attention="flash")
    with pytest.raises(ValueError, match="cross_chunk_edges must be"):
        GTNConv(16, cross_chunk_edges=0)
    with pytest.raises(ValueError, match="needs graph_attention='graph'"):
        g = hdg.make_batch(num_docs=1, channels=C, token_channels=C_TOK)
        make_conv(graph_attention="self")(**g.to(torch.float64).args(),
                                          return_attention_weights=True)


def test_unknown_keyword_arguments_are_named():
    """A misspelt layer argument is reported by the layer, with what it takes, not by
    ``MessagePassing.__init__``; those PyG takes still pass through."""
    with pytest.raises(TypeError, match=r"GTNConv\(\) got an unexpected keyword argument "
                                        r"'heads'; its arguments are channels, .*cross_heads"):
        GTNConv(16, heads=4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'heads'"):
        GTN(16, heads=4)                              # the stack passes them to every layer
    with pytest.raises(TypeError, match="'node_dim', which it sets itself"):
        GTNConv(16, node_dim=1)
    conv = GTNConv(16, aggr="add", flow="source_to_target", decomposed_layers=1)
    assert conv.node_dim == 0 and conv.flow == "source_to_target"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(hdg):
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=29).to(torch.float32)
    conv = make_conv(torch.float32)
    cpu = conv(**g.args())
    dev = torch.device("cuda")
    args = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in g.args().items()}
    torch.testing.assert_close(conv.to(dev)(**args).cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_documents_without_tokens_or_nodes(hdg):
    """A document without tokens gets zero cross messages; an empty document (a gap in
    ``batch``) is harmless; both modes agree and nothing is NaN."""
    docs = hdg.make_documents(num_docs=3, channels=C, token_channels=C_TOK, seed=59)
    g = hdg.collate(docs)
    n0, n1 = docs[0].num_nodes, docs[1].num_nodes
    t0 = docs[0].token_x.size(0)
    # Drop the tokens of document 1 (and their edges); renumber document 2 as 3 (gap at 2).
    tok_keep = g.token_batch != 1
    new_tok = torch.cumsum(tok_keep.long(), 0) - 1
    tei = g.token_edge_index[:, tok_keep[g.token_edge_index[0]]]
    g = g.replace(token_x=g.token_x[tok_keep],
                  token_batch=torch.where(g.token_batch[tok_keep] == 2, 3, g.token_batch[tok_keep]),
                  token_edge_index=torch.stack([new_tok[tei[0]], tei[1]]),
                  batch=torch.where(g.batch == 2, 3, g.batch))
    outs = []
    for mode in ("sparse", "dense"):
        conv = make_conv(attention=mode)
        x = g.x.clone().requires_grad_()
        out = conv(**{**g.args(), "x": x})
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        outs.append(out)
        captured = {}
        conv.lin_cross_out.register_forward_hook(lambda m, i, o: captured.update(inp=i[0]))
        conv(**g.args())
        assert torch.equal(captured["inp"][n0:n0 + n1], torch.zeros(n1, C, dtype=torch.float64))
        assert captured["inp"][:n0].abs().sum() > 0 and t0 > 0
    torch.testing.assert_close(outs[0], outs[1])
