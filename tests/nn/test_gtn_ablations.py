"""The ablation switches of the paper's Table 3: each changes exactly what it names."""
import pytest
import torch

from pyg_docre.nn import GTNConv

C, C_TOK = 24, 12
MODES = ["sparse", "dense"]


def make_conv(mode, **kwargs):
    torch.manual_seed(0)
    return GTNConv(C, token_channels=C_TOK, attention=mode, **kwargs).double().eval()


@pytest.fixture
def g(hdg):
    return hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=31, isolated=1)


def _param_names(**kwargs):
    return set(dict(GTNConv(C, token_channels=C_TOK, **kwargs).named_parameters()))


def test_switches_remove_exactly_their_parameters():
    full = _param_names()
    embeddings = {"emb_entity.weight", "emb_sentence.weight"}
    global_qk = {"lin_query_global.weight", "lin_query_global.bias",
                 "lin_key_global.weight", "lin_key_global.bias"}
    cross = {n for n in full if n.startswith(("lin_cross_", "norm_cross"))}
    assert len(cross) == 10
    assert _param_names(global_head=False) == full - embeddings - global_qk
    assert _param_names(graph_attention="self") == full - embeddings
    assert _param_names(cross_attention=False) == full - cross
    assert _param_names(cross_local=False) == full
    assert _param_names(cross_global=False) == full
    # Shapes: without the global head the value / output projections lose one head.
    conv = GTNConv(C, global_head=False)
    assert conv.heads == 3 and conv.head_channels == C // 4
    assert conv.lin_value.weight.shape == (3 * C // 4, C)
    assert conv.lin_graph_out.weight.shape == (C, 3 * C // 4)
    # Cross head split.
    assert (GTNConv(C).cross_global_heads, GTNConv(C).cross_local_heads) == (2, 2)
    assert (GTNConv(C, cross_local=False).cross_global_heads,
            GTNConv(C, cross_local=False).cross_local_heads) == (4, 0)
    assert (GTNConv(C, cross_global=False).cross_global_heads,
            GTNConv(C, cross_global=False).cross_local_heads) == (0, 4)


def _changed_isolated_node(g):
    """``g`` with the features of its edge-less nodes replaced."""
    x = g.x.clone()
    x[g.isolated_nodes] = torch.randn(len(g.isolated_nodes), C, dtype=x.dtype) * 3
    return g.replace(x=x)


def _others(g):
    keep = torch.ones(g.num_nodes, dtype=torch.bool)
    keep[g.isolated_nodes] = False
    return keep


@pytest.mark.parametrize("mode", MODES)
def test_no_cross_attention_ignores_tokens(mode, g):
    conv = make_conv(mode, cross_attention=False)
    out = conv(**g.args())
    changed = g.replace(token_x=torch.randn_like(g.token_x),
                        token_edge_index=g.token_edge_index[:, :3])
    torch.testing.assert_close(conv(**changed.args()), out, atol=0, rtol=0)
    torch.testing.assert_close(
        conv(**g.replace(token_x=None, token_batch=None, token_edge_index=None).args()), out,
        atol=0, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_no_cross_local_ignores_token_edges(mode, g):
    conv = make_conv(mode, cross_local=False)
    out = conv(**g.args())
    fewer = g.replace(token_edge_index=g.token_edge_index[:, ::2])
    torch.testing.assert_close(conv(**fewer.args()), out, atol=0, rtol=0)
    torch.testing.assert_close(conv(**g.replace(token_edge_index=None).args()), out,
                               atol=0, rtol=0)
    # Control: it still reads the tokens, and the full layer reads the token edges.
    assert not torch.allclose(conv(**g.replace(token_x=torch.randn_like(g.token_x)).args()), out)
    full = make_conv(mode)
    assert not torch.allclose(full(**fewer.args()), full(**g.args()))


@pytest.mark.parametrize("mode", MODES)
def test_no_cross_global_ignores_tokens_outside_local_edges(mode, g):
    free = g.free_tokens                       # [CLS] / [SEP]: no token edge to any node
    assert len(free) > 0 and not torch.isin(free, g.token_edge_index[0]).any()
    token_x = g.token_x.clone()
    token_x[free] = torch.randn(len(free), C_TOK, dtype=token_x.dtype) * 3
    changed = g.replace(token_x=token_x)
    conv = make_conv(mode, cross_global=False)
    torch.testing.assert_close(conv(**changed.args()), conv(**g.args()), atol=0, rtol=0)
    # Control: the global heads of the full layer see them.
    full = make_conv(mode)
    assert not torch.allclose(full(**changed.args()), full(**g.args()))


@pytest.mark.parametrize("mode", MODES)
def test_no_global_head_is_purely_local(mode, g):
    conv = make_conv(mode, global_head=False)
    out = conv(**g.args())
    # No dependence on the structure embeddings' inputs ...
    scrambled = g.replace(node_entity=torch.randint(-1, 100, g.node_entity.shape),
                          sentence_index=g.sentence_index[:, :2])
    torch.testing.assert_close(conv(**scrambled.args()), out, atol=0, rtol=0)
    torch.testing.assert_close(conv(**g.replace(node_entity=None, sentence_index=None).args()),
                               out, atol=0, rtol=0)
    # ... nor on an edge-less node elsewhere in the same document.
    keep = _others(g)
    torch.testing.assert_close(conv(**_changed_isolated_node(g).args())[keep], out[keep],
                               atol=0, rtol=0)
    # Control: the full layer depends on both through its global head.
    full = make_conv(mode)
    ref = full(**g.args())
    assert not torch.allclose(full(**scrambled.args()), ref)
    assert not torch.allclose(full(**_changed_isolated_node(g).args())[keep], ref[keep])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("global_head", [True, False])
def test_self_attention_ignores_graph_structure(mode, global_head, g):
    conv = make_conv(mode, graph_attention="self", global_head=global_head)
    assert conv.heads == 3 + int(global_head)
    out = conv(**g.args())
    rewired = g.replace(edge_index=g.edge_index[:, ::3], edge_type=(g.edge_type[::3] + 1) % 3,
                        node_entity=torch.randint(-1, 100, g.node_entity.shape),
                        sentence_index=g.sentence_index[:, :1])
    torch.testing.assert_close(conv(**rewired.args()), out, atol=0, rtol=0)
    torch.testing.assert_close(
        conv(**g.replace(edge_index=None, edge_type=None, node_entity=None,
                         sentence_index=None).args()), out, atol=0, rtol=0)
    # Plain self-attention: every node of the document, edge-less ones included, is attended.
    keep = _others(g)
    assert not torch.allclose(conv(**_changed_isolated_node(g).args())[keep], out[keep])


@pytest.mark.parametrize("mode", MODES)
def test_documents_stay_separate_in_every_variant(mode, hdg):
    docs = hdg.make_documents(num_docs=2, channels=C, token_channels=C_TOK, seed=37)
    g = hdg.collate(docs)
    n0 = docs[0].num_nodes
    for kwargs in ({}, dict(global_head=False), dict(graph_attention="self"),
                   dict(cross_local=False), dict(cross_global=False)):
        conv = make_conv(mode, **kwargs)
        out = conv(**g.args())
        x = g.x.clone()
        x[n0:] = torch.randn_like(x[n0:])
        token_x = g.token_x.clone()
        token_x[docs[0].token_x.size(0):] = torch.randn_like(token_x[docs[0].token_x.size(0):])
        changed = conv(**g.replace(x=x, token_x=token_x).args())
        torch.testing.assert_close(changed[:n0], out[:n0], atol=0, rtol=0, msg=str(kwargs))
