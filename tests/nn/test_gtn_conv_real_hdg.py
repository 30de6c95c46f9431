"""GTNConv on real Re-DocRED HDGs (``build_hdg`` + ``to_gtn_inputs``), random features."""
import pytest
import torch
from torch_geometric.loader import DataLoader

from pyg_docre.nn import GTNConv

C, C_TOK = 32, 48
INDICES = [0, 7, 42, 123]


@pytest.fixture(scope="module")
def graphs(dev_docs, tokenizer, rel2id):
    from pyg_docre.data import build_hdg
    return [build_hdg(dev_docs[i], tokenizer, rel2id) for i in INDICES]


@pytest.fixture(scope="module")
def view(graphs):
    from pyg_docre.data import to_gtn_inputs
    batch = next(iter(DataLoader(graphs, batch_size=len(graphs), shuffle=False)))
    return to_gtn_inputs(batch)


def features(num_nodes, num_tokens, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(num_nodes, C, generator=gen, dtype=dtype),
            torch.randn(num_tokens, C_TOK, generator=gen, dtype=dtype))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_sparse_and_dense_agree_on_real_hdgs(view, dtype, tol):
    assert int(view.batch.max()) == len(INDICES) - 1
    x0, tx0 = features(view.num_nodes, view.token_batch.numel(), dtype)
    torch.manual_seed(0)
    # Small tables: the larger documents wrap around them.
    conv = GTNConv(C, token_channels=C_TOK, num_entity_embeddings=8,
                   num_sentence_embeddings=4).to(dtype).eval()
    results = {}
    for mode in ("sparse", "dense"):
        conv.attention = mode
        conv.zero_grad(set_to_none=True)
        x, tx = x0.clone().requires_grad_(), tx0.clone().requires_grad_()
        out = conv(x, token_x=tx, **view.graph_kwargs())
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        (out * weight).sum().backward()
        results[mode] = (out.detach(), {"x": x.grad, "token_x": tx.grad,
                                        **{n: p.grad for n, p in conv.named_parameters()}})
    (out_s, grads_s), (out_d, grads_d) = results["sparse"], results["dense"]
    assert torch.isfinite(out_s).all()
    torch.testing.assert_close(out_s, out_d, atol=tol, rtol=tol)
    for name in grads_s:
        torch.testing.assert_close(grads_s[name], grads_d[name], atol=tol, rtol=tol,
                                   msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_batch_of_real_hdgs_equals_documents_alone(graphs, view, mode):
    from pyg_docre.data import to_gtn_inputs
    x, tx = features(view.num_nodes, view.token_batch.numel(), torch.float64)
    torch.manual_seed(0)
    conv = GTNConv(C, token_channels=C_TOK, attention=mode).double().eval()
    batched = conv(x, token_x=tx, **view.graph_kwargs())
    node_start = token_start = 0
    for b, graph in enumerate(graphs):
        alone = to_gtn_inputs(graph)
        n, t = alone.num_nodes, alone.token_batch.numel()
        assert n == int((view.batch == b).sum()) and t == int((view.token_batch == b).sum())
        kwargs = {**alone.graph_kwargs(), "batch": None, "token_batch": None}
        out = conv(x[node_start:node_start + n], token_x=tx[token_start:token_start + t],
                   **kwargs)
        torch.testing.assert_close(out, batched[node_start:node_start + n],
                                   atol=1e-10, rtol=1e-10)
        node_start, token_start = node_start + n, token_start + t
