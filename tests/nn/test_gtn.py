"""GTN: the stack of GTNConv layers."""
import pytest
import torch

from pyg_docre.nn import GTN, GTNConv

C, C_TOK = 24, 12


def make_gtn(**kwargs):
    torch.manual_seed(0)
    return GTN(C, token_channels=C_TOK, **kwargs).double().eval()


def test_stack_equals_layers_applied_in_turn(hdg):
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=41)
    gtn = make_gtn(num_layers=3)
    assert isinstance(gtn.convs[0], GTNConv) and len(gtn.convs) == 3
    outs = gtn(**g.args(), return_all_layers=True)
    assert len(outs) == 3
    x = g.x
    for conv, out in zip(gtn.convs, outs):
        x = conv(**{**g.args(), "x": x})
        torch.testing.assert_close(out, x, atol=0, rtol=0)
    torch.testing.assert_close(gtn(**g.args()), outs[-1], atol=0, rtol=0)


def test_attention_mode_for_all_layers(hdg):
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=43)
    gtn = make_gtn()
    assert gtn.attention == "sparse"
    sparse = gtn(**g.args())
    gtn.attention = "dense"
    assert [conv.attention for conv in gtn.convs] == ["dense", "dense"]
    torch.testing.assert_close(gtn(**g.args()), sparse, atol=1e-10, rtol=1e-10)
    gtn.convs[0].attention = "sparse"
    with pytest.raises(ValueError, match="different attention modes"):
        gtn.attention
    with pytest.raises(ValueError, match="attention must be one of"):
        gtn.attention = "flash"
    assert make_gtn(attention="dense").attention == "dense"


def test_per_layer_token_states(hdg):
    g = hdg.make_batch(num_docs=2, channels=C, token_channels=C_TOK, seed=47)
    gtn = make_gtn()
    other = torch.randn_like(g.token_x)
    out = gtn(**{**g.args(), "token_x": [g.token_x, other]})
    x1 = gtn.convs[0](**g.args())
    expected = gtn.convs[1](**{**g.args(), "x": x1, "token_x": other})
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    with pytest.raises(ValueError, match="holds 1 tensors but the GTN has 2 layers"):
        gtn(**{**g.args(), "token_x": [g.token_x]})


def test_kwargs_reach_every_layer_and_repr():
    gtn = GTN(384, num_layers=2, token_channels=768, cross_attention=False, dropout=0.1)
    assert all(not conv.cross_attention and conv.dropout == 0.1 for conv in gtn.convs)
    assert repr(gtn) == ("GTN(384, num_layers=2, conv=GTNConv(384, heads=4, cross_heads=0, "
                         "attention='sparse', token_channels=768, cross_attention=False))")
    before = gtn.convs[1].lin_query.weight.clone()
    gtn.reset_parameters()
    assert not torch.equal(before, gtn.convs[1].lin_query.weight)
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        GTN(16, num_layers=0)


def test_inputs_checked_once_per_stack_not_per_layer(hdg, monkeypatch):
    """The host-side checks (device synchronisations) run once per GTN call, never per layer,
    and not at all when the caller says they were done (``check_inputs=False``)."""
    import pyg_docre.nn.conv.gtn_conv as conv_module
    import pyg_docre.nn.gtn as gtn_module

    calls = []

    def counting(check):
        def wrapper(*args, **kwargs):
            calls.append(1)
            return check(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(gtn_module, "check_gtn_inputs", counting(gtn_module.check_gtn_inputs))
    monkeypatch.setattr(conv_module, "check_gtn_inputs", counting(conv_module.check_gtn_inputs))
    g = hdg.make_batch(num_docs=3, channels=C, token_channels=C_TOK, seed=47)
    gtn = make_gtn(num_layers=3)
    gtn(**g.args())
    assert len(calls) == 1
    gtn(**g.args(), check_inputs=False)
    assert len(calls) == 1
    gtn.convs[0](**g.args())                       # a layer on its own checks by default
    assert len(calls) == 2
    bad = g.args()
    bad["edge_type"] = bad["edge_type"] + 100
    with pytest.raises(ValueError, match="edge_type"):
        gtn(**bad)
