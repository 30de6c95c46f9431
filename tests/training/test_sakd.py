"""The auxiliary losses of training: node reconstruction (eq. 7) and the SA-KD game (eq. 8)."""
import pytest
import torch

from pyg_docre.training.losses import node_reconstruction_loss
from pyg_docre.training.sakd import (NodeDiscriminator, cosine_distillation_loss,
                                     discriminator_loss, generator_loss)


def test_node_reconstruction_loss():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 16, generator=g)
    assert node_reconstruction_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert node_reconstruction_loss(x, -x).item() == pytest.approx(2.0, abs=1e-6)
    assert node_reconstruction_loss(x, 3 * x).item() == pytest.approx(0.0, abs=1e-6)


def test_node_reconstruction_loss_detaches_target_and_handles_empty():
    pred = torch.randn(4, 8, requires_grad=True)
    target = torch.randn(4, 8, requires_grad=True)
    node_reconstruction_loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None
    empty = torch.zeros(0, 8, requires_grad=True)
    loss = node_reconstruction_loss(empty, torch.zeros(0, 8))
    loss.backward()
    assert loss.item() == 0.0 and not torch.isnan(loss)


def test_cosine_distillation_loss():
    student = torch.randn(5, 6, requires_grad=True)
    teacher = torch.randn(5, 6, requires_grad=True)
    loss = cosine_distillation_loss(student, teacher)
    expected = (1 - torch.nn.functional.cosine_similarity(student, teacher, dim=-1)).mean()
    assert torch.allclose(loss, expected)
    loss.backward()
    assert student.grad is not None and teacher.grad is None


def test_node_discriminator_shapes():
    disc = NodeDiscriminator(16, hidden=8)
    assert disc(torch.randn(5, 16)).shape == (5,)
    assert disc(torch.randn(2, 3, 16)).shape == (2, 3)
    assert "NodeDiscriminator(16, hidden=8" in repr(disc)
    assert NodeDiscriminator(16).hidden == 16


def test_discriminator_loss_value():
    disc = NodeDiscriminator(4)
    teacher, student = torch.randn(3, 4), torch.randn(5, 4)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    lt, ls = disc(teacher), disc(student)
    expected = bce(lt, torch.ones_like(lt)) + bce(ls, torch.zeros_like(ls))
    assert torch.allclose(discriminator_loss(disc, teacher, student), expected)
    assert torch.allclose(generator_loss(disc, student), bce(ls, torch.ones_like(ls)))


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _unchanged(module, snapshot):
    return all(torch.equal(v, snapshot[k]) for k, v in module.state_dict().items())


def test_adversarial_steps_touch_only_their_side():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(6, 8)            # toy "encoder": produces the student features
    gtn = torch.nn.Linear(6, 8)                # toy "GTN": produces the teacher features
    disc = NodeDiscriminator(8, hidden=16)
    opt_disc = torch.optim.SGD(disc.parameters(), lr=0.5)
    opt_enc = torch.optim.SGD(list(encoder.parameters()) + list(gtn.parameters()), lr=0.5)
    x = torch.randn(10, 6)

    # discriminator step: only the discriminator moves
    enc_before, gtn_before, disc_before = _snapshot(encoder), _snapshot(gtn), _snapshot(disc)
    opt_disc.zero_grad()
    opt_enc.zero_grad()
    discriminator_loss(disc, gtn(x), encoder(x)).backward()
    assert encoder.weight.grad is None and gtn.weight.grad is None
    opt_disc.step()
    assert _unchanged(encoder, enc_before) and _unchanged(gtn, gtn_before)
    assert not _unchanged(disc, disc_before)

    # generator step: only the encoder moves; the discriminator gets no gradient at all
    opt_disc.zero_grad(set_to_none=True)
    disc_before, enc_before = _snapshot(disc), _snapshot(encoder)
    loss = generator_loss(disc, encoder(x))
    loss.backward()
    assert all(p.grad is None for p in disc.parameters())
    assert all(p.requires_grad for p in disc.parameters())   # flags untouched
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0
    opt_enc.step()
    opt_disc.step()                      # even stepping it (no grads) must not move it
    assert _unchanged(disc, disc_before)
    assert not _unchanged(encoder, enc_before)


def test_adversarial_game_makes_progress():
    """A few alternating steps: the discriminator learns, then the generator fools it."""
    torch.manual_seed(0)
    teacher = torch.randn(64, 4) + 3.0         # fixed "GTN" distribution
    encoder = torch.nn.Linear(4, 4)
    disc = NodeDiscriminator(4, hidden=16)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-2)
    x = torch.randn(64, 4)
    for _ in range(100):
        opt_d.zero_grad()
        discriminator_loss(disc, teacher, encoder(x)).backward()
        opt_d.step()
    trained = discriminator_loss(disc, teacher, encoder(x)).item()
    assert trained < 0.2                        # separable: discriminator wins
    before = generator_loss(disc, encoder(x)).item()
    opt_e = torch.optim.Adam(encoder.parameters(), lr=5e-2)
    for _ in range(50):
        opt_e.zero_grad()
        generator_loss(disc, encoder(x)).backward()
        opt_e.step()
    assert generator_loss(disc, encoder(x)).item() < before


def test_adversarial_empty_inputs():
    disc = NodeDiscriminator(4)
    student = torch.zeros(0, 4, requires_grad=True)
    loss = discriminator_loss(disc, torch.zeros(0, 4), student) + generator_loss(disc, student)
    loss.backward()
    assert loss.item() == 0.0


class _HandWrittenDiscriminator(torch.nn.Module):
    """The discriminator as written before it became a torch_geometric.nn.MLP."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.lin1 = torch.nn.Linear(channels, hidden)
        self.lin2 = torch.nn.Linear(hidden, 1)
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()

    def forward(self, x):
        return self.lin2(torch.relu(self.lin1(x))).squeeze(-1)


def test_mlp_discriminator_is_the_hand_written_one():
    """Same initialisation (same random draws in the same order), same outputs, and the old
    parameter names (lin1/lin2, e.g. in older resume states) load."""
    torch.manual_seed(3)
    old = _HandWrittenDiscriminator(8, 16)
    torch.manual_seed(3)
    new = NodeDiscriminator(8, hidden=16)
    x = torch.randn(5, 8)
    assert torch.equal(old(x), new(x))
    other = NodeDiscriminator(8, hidden=16)
    assert not torch.equal(other(x), old(x))
    missing, unexpected = other.load_state_dict(old.state_dict())
    assert (missing, unexpected) == ([], [])
    assert torch.equal(other(x), old(x))
    assert [n for n, _ in new.named_parameters()] == [
        "mlp.lins.0.weight", "mlp.lins.0.bias", "mlp.lins.1.weight", "mlp.lins.1.bias"]


def test_resume_states_with_the_old_discriminator_names_load(tmp_path):
    """objective.safetensors written before the MLP (keys discriminators.L.lin1.*) loads the way
    training/resume.py loads it."""
    from safetensors.torch import load_model, save_model

    old = torch.nn.ModuleDict({"6": _HandWrittenDiscriminator(8, 16)})
    save_model(old, str(tmp_path / "objective.safetensors"))
    new = torch.nn.ModuleDict({"6": NodeDiscriminator(8, hidden=16)})
    missing, unexpected = load_model(new, str(tmp_path / "objective.safetensors"), strict=False)
    assert (sorted(missing), sorted(unexpected)) == ([], [])
    x = torch.randn(3, 8)
    assert torch.equal(new["6"](x), old["6"](x))


def test_discriminator_label_smoothing_is_one_sided():
    # A discriminator that outputs logit 0 everywhere: BCE(0.5, y) = log 2 for any y, so use a
    # constant logit c instead and compare with the closed form.
    c = 1.5
    disc = lambda x: torch.full(x.shape[:1], c)                                     # noqa: E731
    teacher, student = torch.randn(5, 4), torch.randn(3, 4)
    s = 0.1
    loss = discriminator_loss(disc, teacher, student, label_smoothing=s)
    p = torch.sigmoid(torch.tensor(c))
    expected = -((1 - s) * torch.log(p) + s * torch.log(1 - p)) - torch.log(1 - p)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert discriminator_loss(disc, teacher, student).item() == pytest.approx(
        (-torch.log(p) - torch.log(1 - p)).item(), rel=1e-6)


def test_discriminator_gradient_penalty_is_r1_on_the_teacher():
    torch.manual_seed(0)
    disc = NodeDiscriminator(4)
    teacher, student = torch.randn(6, 4), torch.randn(3, 4)
    gamma = 2.0
    plain = discriminator_loss(disc, teacher, student)
    penalised = discriminator_loss(disc, teacher, student, gradient_penalty=gamma)
    x = teacher.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x).sum(), x)
    expected = 0.5 * gamma * grad.pow(2).sum(-1).mean()
    assert (penalised - plain).item() == pytest.approx(expected.item(), rel=1e-5)
    assert expected.item() > 0
    # The penalty trains the discriminator: it has a gradient with respect to its parameters.
    penalised.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in disc.parameters())
    # The caller's teacher tensor is not turned into a leaf that requires grad.
    assert not teacher.requires_grad
