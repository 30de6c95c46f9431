"""Attention primitives: the batch's sizes read back once, and attention that reads nothing."""
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from pyg_docre.nn import GTN
from pyg_docre.nn.attention import (BatchSizes, batch_sizes, dense_index, document_attention,
                                    document_layout, layout_attention)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import host_syncs  # noqa: E402

C, C_TOK = 24, 12


def test_batch_sizes_of_sorted_batches():
    batch = torch.tensor([0, 0, 1, 1, 1, 3])              # document 2 has no nodes
    tokens = torch.tensor([0, 1, 1, 2, 2, 2, 2, 3])
    assert batch_sizes(batch, 6, tokens, 8) == BatchSizes(4, 3, 4)
    assert batch_sizes(batch, 6) == BatchSizes(4, 3, 0)
    assert batch_sizes(None, 5, None, 9) == BatchSizes(1, 5, 9)
    assert batch_sizes(batch[:0], 0) == BatchSizes(1, 0, 0)
    assert dense_index(batch, 4, 3).tolist() == [0, 1, 3, 4, 5, 9]


@pytest.mark.parametrize("seed", [0, 1])
def test_document_attention_with_sizes_equals_without(seed):
    gen = torch.Generator().manual_seed(seed)
    q_batch = torch.tensor([0, 0, 0, 1, 2, 2])
    k_batch = torch.tensor([0, 1, 1, 1, 1])               # document 2 has no keys
    q, k, v = (torch.randn(n, 2, 4, generator=gen, dtype=torch.float64) for n in (6, 5, 5))
    ours = document_attention(q, k, v, q_batch, k_batch, 3, 0.0, 3, 4)
    torch.testing.assert_close(ours, document_attention(q, k, v, q_batch, k_batch, 3),
                               atol=0, rtol=0)
    for i, b in enumerate(q_batch.tolist()):            # against the formula
        keys = (k_batch == b).nonzero().view(-1)
        if keys.numel() == 0:
            assert ours[i].abs().sum() == 0
            continue
        w = torch.softmax((q[i, :, None, :] * k[keys].transpose(0, 1)).sum(-1) / 2.0, dim=-1)
        torch.testing.assert_close(ours[i], (w[..., None] * v[keys].transpose(0, 1)).sum(1))


def test_gtn_reads_the_batch_back_once(hdg):
    """The layers of a stack make no host synchronisation of their own: only batch_sizes's
    two reads per stack call (on a GPU each stops the host until the device's queue is
    empty)."""
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=5)
    torch.manual_seed(0)
    gtn = GTN(C, token_channels=C_TOK, num_layers=3).double().train()
    counts = Counter()
    with host_syncs._SyncProneCalls(counts):
        gtn(**g.args(), check_inputs=False).sum().backward()
    calls = {(call, site.split(" ")[-1]) for call, site in counts}
    assert calls == {("__int__", "batch_sizes"), ("tolist", "batch_sizes")}, counts
    assert sum(counts.values()) == 2
    # sizes known to the caller (the model reads them with its other host values): no read
    args = g.args()
    sizes = batch_sizes(args["batch"], args["x"].size(0), args["token_batch"],
                        args["token_x"].size(0))
    counts.clear()
    with host_syncs._SyncProneCalls(counts):
        given = gtn(**args, check_inputs=False, sizes=sizes)
    assert not counts, counts
    torch.testing.assert_close(given, gtn(**args, check_inputs=False), atol=0, rtol=0)
    with pytest.raises(ValueError, match="do not match the batch"):     # checked when asked
        gtn(**args, check_inputs=True, sizes=sizes._replace(num_docs=sizes.num_docs + 1))


@pytest.mark.parametrize("seed", [0, 1])
def test_layout_attention_equals_document_attention(seed):
    """Layouts built once give the same attention as building them in every call."""
    gen = torch.Generator().manual_seed(seed)
    q_batch = torch.tensor([0, 0, 1, 3, 3, 3])
    k_batch = torch.tensor([0, 1, 1, 1, 3, 3, 3, 3])        # document 2: no queries, no keys
    q, k, v = (torch.randn(n, 2, 4, generator=gen) for n in (6, 8, 8))
    queries, keys = document_layout(q_batch, 6, 4, 3), document_layout(k_batch, 8, 4, 4)
    assert queries.index.tolist() == [0, 1, 3, 9, 10, 11]
    assert keys.mask.tolist() == [[True, False, False, False], [True, True, True, False],
                                  [True, True, True, True], [True, True, True, True]]
    torch.testing.assert_close(layout_attention(q, k, v, queries, keys),
                               document_attention(q, k, v, q_batch, k_batch, 4),
                               atol=0, rtol=0)
    one = document_layout(None, 6, 1)                        # one document: no padding at all
    assert (one.index, one.mask) == (None, None)
    torch.testing.assert_close(layout_attention(q, k, v, one, document_layout(None, 8, 1)),
                               document_attention(q, k, v, None, None, 1), atol=0, rtol=0)
