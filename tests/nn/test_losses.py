import math

import pytest
import torch

from pyg_docre.nn.discriminator import NodeDiscriminator
from pyg_docre.nn.losses import (ATLoss, adaptive_thresholding_loss, cosine_distillation_loss,
                                 discriminator_loss, generator_loss, node_reconstruction_loss,
                                 predict_relations)


def literal_eq6(logits, labels):
    """Eq. 6 written out literally, pair by pair, relation by relation."""
    total = 0.0
    num_pairs, num_classes = logits.shape
    for i in range(num_pairs):
        z = logits[i].tolist()
        pos = [r for r in range(1, num_classes) if labels[i, r] > 0]
        neg = [r for r in range(1, num_classes) if labels[i, r] == 0]
        denom_pos = sum(math.exp(z[r]) for r in pos + [0])
        loss = -sum(math.log(math.exp(z[r]) / denom_pos) for r in pos)
        denom_neg = sum(math.exp(z[r]) for r in neg + [0])
        loss -= math.log(math.exp(z[0]) / denom_neg)
        total += loss
    return total / num_pairs


def random_labels(num_pairs, num_classes, generator):
    labels = (torch.rand(num_pairs, num_classes, generator=generator) < 0.2).float()
    labels[:, 0] = (labels[:, 1:].sum(1) == 0).float()
    return labels


def test_atloss_matches_literal_eq6():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(23, 9, generator=g, dtype=torch.float64) * 3
    labels = random_labels(23, 9, g)
    labels[0] = 0
    labels[0, 0] = 1                  # a pair with no relation
    labels[1, 1:] = 1
    labels[1, 0] = 0                  # a pair where everything is positive (N_T empty)
    assert adaptive_thresholding_loss(logits, labels).item() == pytest.approx(
        literal_eq6(logits, labels), rel=1e-10)
    per_pair = adaptive_thresholding_loss(logits, labels, reduction="none")
    assert per_pair.shape == (23,)
    assert ATLoss(reduction="sum")(logits, labels).item() == pytest.approx(
        per_pair.sum().item(), rel=1e-10)


def test_atloss_ignores_label_column_zero():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=g)
    labels = random_labels(5, 4, g)
    flipped = labels.clone()
    flipped[:, 0] = 1 - flipped[:, 0]
    assert torch.allclose(adaptive_thresholding_loss(logits, labels),
                          adaptive_thresholding_loss(logits, flipped))


def test_atloss_small_when_separated_large_otherwise():
    labels = torch.tensor([[0., 1., 0., 0.], [1., 0., 0., 0.], [0., 0., 0., 1.]])
    good = torch.where(labels.bool(), 50.0, -50.0)
    good[:, 0] = 0.0                                   # TH in the middle
    assert adaptive_thresholding_loss(good, labels).item() < 1e-10
    bad = -good
    bad[:, 0] = 0.0
    assert adaptive_thresholding_loss(bad, labels).item() > 40
    # eq. 6 normalises all positives of a pair in one softmax: k positives far above TH cost
    # k * log(k) (they share the probability mass), not 0
    two = torch.tensor([[0., 1., 0., 1.]])
    good2 = torch.tensor([[0., 50., -50., 50.]])
    assert adaptive_thresholding_loss(good2, two).item() == pytest.approx(2 * math.log(2))


def test_atloss_no_nan_with_extreme_logits_and_gradients():
    logits = torch.tensor([[0., 1e4, -1e4, 3e4], [1e4, -3e4, 0., 0.]], requires_grad=True)
    labels = torch.tensor([[0., 1., 0., 0.], [1., 0., 0., 0.]])
    loss = adaptive_thresholding_loss(logits, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # half precision too
    half = adaptive_thresholding_loss(torch.randn(4, 5).half(), torch.eye(4, 5).half())
    assert torch.isfinite(half)


def test_atloss_empty():
    logits = torch.zeros(0, 5, requires_grad=True)
    loss = adaptive_thresholding_loss(logits, torch.zeros(0, 5))
    loss.backward()
    assert loss.item() == 0.0


def test_predict_relations_threshold_and_top_k():
    logits = torch.tensor([
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -1.0],   # 5 above TH -> top 4: columns 2..5
        [0.0, -1.0, 0.0, -2.0, -3.0, -4.0, -5.0],  # none strictly above TH -> TH
        [2.0, 3.0, 1.0, 1.0, 1.0, 1.0, 2.5],     # columns 1 and 6
    ])
    pred = predict_relations(logits, top_k=4)
    expected = torch.tensor([
        [0, 0, 1, 1, 1, 1, 0],
        [1, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 1],
    ], dtype=logits.dtype)
    assert torch.equal(pred, expected)
    assert torch.equal(predict_relations(logits, top_k=None)[0],
                       torch.tensor([0., 1., 1., 1., 1., 1., 0.]))
    assert torch.equal(predict_relations(logits, top_k=1)[0],
                       torch.tensor([0., 0., 0., 0., 0., 1., 0.]))
    assert torch.equal(ATLoss(top_k=4).predict(logits), pred)


def test_predict_relations_random_properties():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(200, 12, generator=g)
    for k in (1, 2, 4):
        pred = predict_relations(logits, top_k=k)
        rel = pred[:, 1:].bool()
        assert (rel.sum(1) <= k).all()
        assert torch.equal(pred[:, 0].bool(), ~rel.any(1))
        assert (logits[:, 1:][rel] > logits[:, :1].expand(-1, 11)[rel]).all()
        # every kept relation beats every dropped relation that was above TH
        above = logits[:, 1:] > logits[:, :1]
        dropped = above & ~rel
        for i in range(200):
            if dropped[i].any():
                assert logits[i, 1:][rel[i]].min() >= logits[i, 1:][dropped[i]].max()


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
