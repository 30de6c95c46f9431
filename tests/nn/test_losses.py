import math

import pytest
import torch

from pyg_docre.nn.losses import ATLoss, adaptive_thresholding_loss, predict_relations


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
