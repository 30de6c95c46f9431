"""torch.compile of the GTN stack: one graph without breaks when the structure is given, no
recompilation for new batch shapes, the same outputs and gradients as eager execution.

The default suite traces with the ``aot_eager`` backend (Dynamo's capture and AOTAutograd's
forward/backward split, seconds); code generation by Inductor is the ``slow`` test below, and
``tests/cuda`` compiles on the GPU."""
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from pyg_docre.nn import GTN

C, C_TOK = 24, 12


def _structure(gtn, g):
    a = g.args()
    return gtn.structure(a["edge_index"], a["edge_type"], a["batch"], a["node_entity"],
                         a["sentence_index"], a["token_batch"], g.num_nodes, g.token_x.size(0))


def _grads(gtn, g, structure, call):
    gtn.zero_grad()
    x = g.x.clone().requires_grad_()
    out = call(**{**g.args(), "x": x}, check_inputs=False, structure=structure)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return [out.detach(), x.grad] + [p.grad.clone() for p in gtn.parameters()]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_gtn_compiles_to_one_graph_for_every_batch_shape(hdg):
    torch.manual_seed(0)
    gtn = GTN(C, token_channels=C_TOK, num_layers=2).eval()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(gtn, backend=counter, dynamic=True, fullgraph=True)
    first = None
    for seed, num_docs in ((3, 3), (4, 2), (5, 4)):
        g = hdg.make_batch(num_docs=num_docs, channels=C, token_channels=C_TOK, seed=seed,
                           dtype=torch.float32)
        structure = _structure(gtn, g)
        for ours, eager in zip(_grads(gtn, g, structure, compiled),
                               _grads(gtn, g, structure, gtn)):
            torch.testing.assert_close(ours, eager)
        # fullgraph=True: a graph break would have raised; dynamic: other batch shapes reuse
        # the first batch's graph (Dynamo may trace that first frame twice: a restart)
        first = counter.frame_count if first is None else first
        assert counter.frame_count == first, f"recompiled for {num_docs} documents"


def test_model_compile_gtn_keeps_parameters_and_checkpoints(rel2id):
    from pyg_docre.config import ModelConfig
    from pyg_docre.models.docre_model import DocREModel

    torch.manual_seed(0)
    model = DocREModel(ModelConfig(), rel2id)
    keys = list(model.state_dict())
    assert model.compile_gtn(backend="aot_eager") is True
    assert list(model.state_dict()) == keys and model.gtn is not None
    assert DocREModel(ModelConfig(baseline=True), rel2id).compile_gtn() is False


@pytest.mark.slow
def test_inductor_compiled_gtn_trains_like_eager(hdg):
    """Inductor's generated kernels (minutes on the CPU: C++ compilation)."""
    torch.manual_seed(0)
    gtn = GTN(C, token_channels=C_TOK, num_layers=2).eval()
    compiled = torch.compile(gtn, dynamic=True, fullgraph=True)
    for seed, num_docs in ((3, 3), (4, 2)):
        g = hdg.make_batch(num_docs=num_docs, channels=C, token_channels=C_TOK, seed=seed,
                           dtype=torch.float32)
        structure = _structure(gtn, g)
        for ours, eager in zip(_grads(gtn, g, structure, compiled),
                               _grads(gtn, g, structure, gtn)):
            torch.testing.assert_close(ours, eager, atol=1e-4, rtol=1e-4)
