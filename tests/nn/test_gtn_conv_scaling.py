"""Sparse GTNConv on long documents: memory linear in nodes and tokens; torch.compile.

The memory test runs this file as a script in a fresh interpreter, so that the peak resident
memory it reports belongs to the layer alone.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def long_document(num_nodes: int, tokens_per_sentence: int = 8, mentions_per_sentence: int = 20,
                  channels: int = 32, seed: int = 0):
    """One HDG-shaped document with ``num_nodes`` nodes: the document node, mentions
    (``mentions_per_sentence`` per sentence, entity = mention mod #entities) and entities;
    intra-sentence edges chain consecutive mentions of a sentence."""
    gen = torch.Generator().manual_seed(seed)
    num_entities = max(1, (num_nodes - 1) // 5)
    M = num_nodes - 1 - num_entities
    mention = torch.arange(1, M + 1)
    entity = torch.arange(M + 1, num_nodes)
    m_entity = torch.arange(M) % num_entities
    m_sent = torch.arange(M) // mentions_per_sentence
    num_sents = int(m_sent[-1]) + 1
    others = torch.arange(1, num_nodes)
    doc = torch.zeros_like(others)
    same_sent = m_sent[1:] == m_sent[:-1]
    chain_src, chain_dst = mention[:-1][same_sent], mention[1:][same_sent]
    src = torch.cat([mention, entity[m_entity], doc, others, chain_src, chain_dst])
    dst = torch.cat([entity[m_entity], mention, others, doc, chain_dst, chain_src])
    edge_type = torch.cat([torch.zeros(2 * M), torch.full((2 * (num_nodes - 1),), 2),
                           torch.ones(2 * chain_src.numel())]).long()
    node_entity = torch.cat([torch.tensor([-1]), m_entity, torch.arange(num_entities)])
    sentence_index = torch.cat([torch.stack([mention, m_sent]),
                                torch.stack([entity[m_entity], m_sent])], dim=1)
    T = num_sents * tokens_per_sentence
    # token -> mention (tokens of its sentence), token -> document (all tokens)
    offs = torch.arange(tokens_per_sentence)
    tok = (m_sent[:, None] * tokens_per_sentence + offs).reshape(-1)
    token_edge_index = torch.cat([
        torch.stack([tok, mention.repeat_interleave(tokens_per_sentence)]),
        torch.stack([torch.arange(T), torch.zeros(T, dtype=torch.long)])], dim=1)
    return dict(x=torch.randn(num_nodes, channels, generator=gen),
                edge_index=torch.stack([src, dst]), edge_type=edge_type, batch=None,
                node_entity=node_entity, sentence_index=sentence_index,
                token_x=torch.randn(T, channels, generator=gen), token_batch=None,
                token_edge_index=token_edge_index)


def two_documents(num_nodes: int) -> dict:
    """Two long documents of different sizes batched together (key-padding masks)."""
    a, b = long_document(num_nodes * 3 // 5, seed=1), long_document(num_nodes * 2 // 5, seed=2)
    na, ta = a["x"].size(0), a["token_x"].size(0)
    nb, tb = b["x"].size(0), b["token_x"].size(0)
    return dict(
        x=torch.cat([a["x"], b["x"]]),
        edge_index=torch.cat([a["edge_index"], b["edge_index"] + na], dim=1),
        edge_type=torch.cat([a["edge_type"], b["edge_type"]]),
        batch=torch.cat([torch.zeros(na, dtype=torch.long), torch.ones(nb, dtype=torch.long)]),
        node_entity=torch.cat([a["node_entity"], b["node_entity"]]),
        sentence_index=torch.cat([a["sentence_index"],
                                  b["sentence_index"] + torch.tensor([[na], [0]])], dim=1),
        token_x=torch.cat([a["token_x"], b["token_x"]]),
        token_batch=torch.cat([torch.zeros(ta, dtype=torch.long),
                               torch.ones(tb, dtype=torch.long)]),
        token_edge_index=torch.cat([a["token_edge_index"],
                                    b["token_edge_index"] + torch.tensor([[ta], [na]])], dim=1))


def _measure(num_nodes: int, backward: bool, num_docs: int = 1) -> dict:
    import resource
    from pyg_docre.nn import GTNConv
    torch.manual_seed(0)
    inputs = long_document(num_nodes) if num_docs == 1 else two_documents(num_nodes)
    conv = GTNConv(32, attention="sparse").eval()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if backward:
        inputs["x"].requires_grad_()
        out = conv(**inputs)
        out.square().mean().backward()
        finite = bool(torch.isfinite(inputs["x"].grad).all())
    else:
        with torch.no_grad():
            out = conv(**inputs)
        finite = True
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(num_nodes=num_nodes, num_tokens=inputs["token_x"].size(0),
                num_edges=inputs["edge_index"].size(1), seconds=elapsed,
                extra_mb=(after - before) / 1024, finite=finite and bool(torch.isfinite(out).all()))


def _run_in_subprocess(num_nodes: int, backward: bool, num_docs: int = 1) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    proc = subprocess.run([sys.executable, __file__, str(num_nodes), str(int(backward)),
                           str(num_docs)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("num_docs", [1, 2])
def test_long_document_memory_is_linear(num_docs):
    """20,000 nodes, 6,400 tokens (one document, or two of 12,000 and 8,000 nodes, then with
    key-padding masks): one dense N x N float32 score matrix would take 1.6 GB (padded: 1.2 GB),
    an N x T one 512 MB (padded: 370 MB); the sparse layer stays far below."""
    result = _run_in_subprocess(20_000, backward=False, num_docs=num_docs)
    assert result["finite"]
    assert result["extra_mb"] < 250, result


def test_long_document_backward_memory_is_linear():
    """6,000 nodes, forward and backward: the dense local heads alone would hold 430 MB of
    float32 scores. (PyTorch's fused CPU attention backward is slow, hence the smaller size.)"""
    result = _run_in_subprocess(6_000, backward=True)
    assert result["finite"]
    assert result["extra_mb"] < 200, result


@pytest.mark.slow
def test_100k_node_document():
    """A 100,000-node document (40,000 tokens): N x N float32 scores would take 40 GB."""
    result = _run_in_subprocess(100_000, backward=False)
    assert result["finite"]
    assert result["extra_mb"] < 1500, result


@pytest.mark.slow
def test_torch_compile_sparse_layer(hdg):
    """``torch.compile`` runs the sparse layer (with graph breaks at the data-dependent sizes of
    ``to_dense_batch``) and matches eager mode. Takes about a minute on 2 CPU cores."""
    g = hdg.make_batch(num_docs=2, channels=24, token_channels=12, seed=53,
                       dtype=torch.float32)
    torch.manual_seed(0)
    from pyg_docre.nn import GTNConv
    conv = GTNConv(24, token_channels=12).eval()
    expected = conv(**g.args())
    compiled = torch.compile(conv)
    torch.testing.assert_close(compiled(**g.args()), expected, atol=1e-5, rtol=1e-5)


if __name__ == "__main__":
    print(json.dumps(_measure(int(sys.argv[1]), bool(int(sys.argv[2])), int(sys.argv[3]))))
