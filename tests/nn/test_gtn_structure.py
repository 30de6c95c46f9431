"""The GTN's structure tensors: built once per batch and shared by every layer and pass."""
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from pyg_docre.nn import GTN, GTNConv
from pyg_docre.nn.attention import batch_sizes
from pyg_docre.nn.conv import GTNStructure
from pyg_docre.nn.conv import gtn_structure as structure_module

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import host_syncs  # noqa: E402

C, C_TOK = 24, 12


def structure_of(layer, g, sizes=None) -> GTNStructure:
    args = g.args()
    return layer.structure(args["edge_index"], args["edge_type"], args["batch"],
                           args["node_entity"], args["sentence_index"], args["token_batch"],
                           g.num_nodes, g.token_x.size(0), sizes)


@pytest.mark.parametrize("kwargs", [{}, {"graph_attention": "self"}, {"global_head": False},
                                    {"cross_global": False}, {"cross_local": False},
                                    {"cross_attention": False}])
def test_a_given_structure_gives_the_same_layer_output(hdg, kwargs):
    """Bitwise the same output and gradients with the structure built by the caller, and no
    read back to the host in the layer."""
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=7)
    torch.manual_seed(0)
    conv = GTNConv(C, token_channels=C_TOK, **kwargs).double().train()
    args = g.args()
    sizes = batch_sizes(args["batch"], g.num_nodes, args["token_batch"], g.token_x.size(0))
    structure = structure_of(conv, g, sizes)
    counts = Counter()
    torch.manual_seed(1)
    with host_syncs._SyncProneCalls(counts):
        given = conv(**args, check_inputs=False, structure=structure)
    assert not counts, counts
    torch.manual_seed(1)
    built = conv(**args, check_inputs=False)
    torch.testing.assert_close(given, built, atol=0, rtol=0)
    grads = [torch.autograd.grad(out.sum(), conv.lin_value.weight)[0] for out in (given, built)]
    torch.testing.assert_close(grads[0], grads[1], atol=0, rtol=0)


def test_unused_parts_are_none(hdg):
    g = hdg.make_batch(num_docs=2, channels=C, token_channels=C_TOK, seed=8)
    s = structure_of(GTNConv(C, token_channels=C_TOK, graph_attention="self",
                             cross_global=False), g)
    assert s.local_edge_index is None and s.entity_row is None and s.token_layout is None
    assert s.node_layout is not None                  # the self-attention heads use it
    s = structure_of(GTNConv(C, token_channels=C_TOK, global_head=False, cross_local=False), g)
    assert s.entity_row is None and s.local_edge_index is not None
    assert s.token_layout is not None


def test_a_structure_of_another_batch_is_a_named_error(hdg):
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=9)
    other = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=10)
    conv = GTNConv(C, token_channels=C_TOK).double()
    with pytest.raises(ValueError, match=r"structure\.\w+ does not match the inputs"):
        conv(**g.args(), structure=structure_of(conv, other))      # checked by default
    wrong_sizes = structure_of(conv, g)._replace(
        sizes=structure_of(conv, g).sizes._replace(max_num_tokens=999))
    with pytest.raises(ValueError, match=r"structure\.sizes"):
        conv(**g.args(), structure=wrong_sizes)
    with pytest.raises(ValueError, match=r"structure\.sizes"):
        conv(**g.args(), structure=wrong_sizes._replace(sizes=None))
    with pytest.raises(ValueError, match="must be a GTNStructure"):
        conv(**g.args(), structure=tuple(structure_of(conv, g)))
    with pytest.raises(ValueError, match="not both"):
        GTN(C, token_channels=C_TOK).double()(**g.args(), structure=structure_of(conv, g),
                                              sizes=structure_of(conv, g).sizes)


def test_a_stack_builds_the_structure_once(hdg, monkeypatch):
    """Three layers, one structure (and none with a caller's structure)."""
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=11)
    torch.manual_seed(0)
    gtn = GTN(C, token_channels=C_TOK, num_layers=3).double().eval()
    structure = structure_of(gtn, g)
    reference = gtn(**g.args(), check_inputs=False)
    calls = []
    original = structure_module.gtn_structure
    monkeypatch.setattr(GTNConv, "structure",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    torch.testing.assert_close(gtn(**g.args(), check_inputs=False), reference, atol=0, rtol=0)
    assert len(calls) == 1
    torch.testing.assert_close(gtn(**g.args(), check_inputs=False, structure=structure),
                               reference, atol=0, rtol=0)
    assert len(calls) == 1


@pytest.mark.parametrize("module, kwargs", [(GTNConv, {}), (GTN, {"num_layers": 3})],
                         ids=["layer", "stack"])
def test_forward_builds_its_structure_with_its_own_structure_method(hdg, module, kwargs):
    """``GTNConv.forward`` and ``GTN.forward`` build through their own ``structure`` method, so
    a subclass of the layer or of the stack that overrides it is used (once for all layers),
    and the output is unchanged."""
    g = hdg.make_batch(num_docs=2, channels=C, token_channels=C_TOK, seed=5)

    class Recording(module):
        calls = 0

        def structure(self, *args, **kwargs):
            Recording.calls += 1
            return super().structure(*args, **kwargs)

    torch.manual_seed(0)
    recording = Recording(C, token_channels=C_TOK, **kwargs).double().eval()
    reference = module(C, token_channels=C_TOK, **kwargs).double().eval()
    reference.load_state_dict(recording.state_dict())
    torch.testing.assert_close(recording(**g.args()), reference(**g.args()), atol=0, rtol=0)
    assert Recording.calls == 1
