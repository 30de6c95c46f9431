r"""The training objectives of DocRE-BSI (paper section 2.3, eq. 5-8).

.. math::
    \mathcal{L} = \mathcal{L}_R + \alpha\,\mathcal{L}_N + \beta\,\mathcal{L}_A

* :func:`adaptive_thresholding_loss` / :class:`ATLoss`: the relation classification loss
  :math:`\mathcal{L}_R` (eq. 6, from ATLOP), and :func:`predict_relations`, its decision rule.
* :func:`node_reconstruction_loss`: :math:`\mathcal{L}_N` (eq. 7).
* :func:`discriminator_loss`, :func:`generator_loss`: the two sides of the structure-aware
  adversarial distillation :math:`\mathcal{L}_A` (eq. 8, SA-KD), played against a
  :class:`~pyg_docre.nn.discriminator.NodeDiscriminator`;
  :func:`cosine_distillation_loss` replaces them in the "SA-KD -> KD" ablation.

All functions are pure tensor code: they work on any device and dtype and never produce NaN for
empty inputs (an empty set of pairs or nodes gives a zero that is still connected to the
autograd graph, so ``loss.backward()`` works unconditionally).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ATLoss",
    "adaptive_thresholding_loss",
    "predict_relations",
    "node_reconstruction_loss",
    "discriminator_loss",
    "generator_loss",
    "cosine_distillation_loss",
]


def _zero_like_graph(*tensors: Tensor) -> Tensor:
    """A scalar 0 that depends on ``tensors`` (so ``backward`` works and gives zero gradients)."""
    out = None
    for t in tensors:
        term = t.sum() * 0.0
        out = term if out is None else out + term
    return out


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else _zero_like_graph(loss)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# ---------------------------------------------------------------------------------------------
# L_R: adaptive thresholding (eq. 6)
# ---------------------------------------------------------------------------------------------

def adaptive_thresholding_loss(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    r"""Adaptive-thresholding loss (ATLOP; paper eq. 6).

    Column 0 is the threshold class TH. For a pair with positive relations :math:`P_T` and
    negative relations :math:`N_T` (all other relations, TH excluded):

    .. math::
        \mathcal{L}_R = -\sum_{r \in P_T} \log
            \frac{\exp(\mathrm{logit}_r)}{\sum_{r' \in P_T \cup \{TH\}} \exp(\mathrm{logit}_{r'})}
        \;-\; \log \frac{\exp(\mathrm{logit}_{TH})}
            {\sum_{r' \in N_T \cup \{TH\}} \exp(\mathrm{logit}_{r'})}

    The first term pushes every positive relation above TH, the second pushes TH above every
    negative relation. A pair without positives (column 0 set) only has the second term. As in
    ATLOP, the positives of a pair share one softmax: a pair with ``k`` positives far above TH
    and all negatives far below it costs ``k log k`` (0 for ``k = 1``), not 0.

    Args:
        logits: ``[P, R+1]`` scores, column 0 = TH.
        labels: ``[P, R+1]`` multi-hot (float or bool). Column 0 ("no relation") is ignored:
            the positives are the set columns ``1..R``.
        reduction: ``"mean"`` over pairs (the paper's loss), ``"sum"`` or ``"none"`` (``[P]``).

    Returns:
        a scalar (``[P]`` for ``reduction="none"``). Masked entries are filled with the dtype's
        most negative finite value and excluded with ``torch.where`` (never multiplied), so no
        ``inf * 0`` NaN can appear, in the forward or the backward pass.
    """
    if logits.dim() != 2 or logits.shape != labels.shape:
        raise ValueError(f"logits and labels must both be [P, R+1]; got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if logits.size(1) < 2:
        raise ValueError("logits need the TH column plus at least one relation")
    positive = labels.bool().clone()
    positive[:, 0] = False                       # TH is never a positive
    is_th = torch.zeros_like(positive)
    is_th[:, 0] = True
    very_negative = torch.finfo(logits.dtype).min

    # positive part: log-softmax over P_T ∪ {TH}, summed over r ∈ P_T
    pos_logits = logits.masked_fill(~(positive | is_th), very_negative)
    pos_logp = F.log_softmax(pos_logits, dim=-1)
    loss_pos = -torch.where(positive, pos_logp, torch.zeros_like(pos_logp)).sum(-1)

    # negative part: log-softmax of TH over N_T ∪ {TH}
    neg_logits = logits.masked_fill(positive, very_negative)
    loss_neg = -F.log_softmax(neg_logits, dim=-1)[:, 0]

    return _reduce(loss_pos + loss_neg, reduction)


class ATLoss(nn.Module):
    """Module form of :func:`adaptive_thresholding_loss`, with :meth:`predict`."""

    def __init__(self, reduction: str = "mean", top_k: int | None = 4):
        super().__init__()
        self.reduction = reduction
        self.top_k = top_k

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return adaptive_thresholding_loss(logits, labels, self.reduction)

    def predict(self, logits: Tensor) -> Tensor:
        """:func:`predict_relations` with this module's ``top_k``."""
        return predict_relations(logits, self.top_k)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, top_k={self.top_k}"


@torch.no_grad()
def predict_relations(logits: Tensor, top_k: int | None = 4) -> Tensor:
    """Decision rule of the adaptive threshold.

    A relation ``r >= 1`` is predicted for a pair when ``logits[:, r] > logits[:, 0]`` (strictly
    above TH); of those, at most the ``top_k`` highest are kept (``None`` or ``<= 0``: no limit;
    ties at the cut are broken by ``torch.topk``, so exactly ``top_k`` at most). Column 0 is set
    exactly when no relation is predicted.

    Args:
        logits: ``[P, R+1]``, column 0 = TH.

    Returns:
        ``[P, R+1]`` multi-hot, same dtype as ``logits``.
    """
    if logits.dim() != 2 or logits.size(1) < 2:
        raise ValueError(f"logits must be [P, R+1] with R >= 1; got {tuple(logits.shape)}")
    rel = logits[:, 1:]
    above = rel > logits[:, :1]
    if top_k is not None and 0 < top_k < rel.size(1):
        keep = torch.zeros_like(above)
        top = rel.masked_fill(~above, float("-inf")).topk(top_k, dim=-1).indices
        keep.scatter_(1, top, True)
        above = above & keep
    out = torch.zeros_like(logits)
    out[:, 1:] = above.to(logits.dtype)
    out[:, 0] = (~above.any(dim=-1)).to(logits.dtype)
    return out


# ---------------------------------------------------------------------------------------------
# L_N: node reconstruction (eq. 7)
# ---------------------------------------------------------------------------------------------

def node_reconstruction_loss(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Node reconstruction loss (paper eq. 7).

    .. math::
        \mathcal{L}_N = \frac{1}{|V_{mask}|} \sum_{v \in V_{mask}}
            \bigl(1 - \cos(F^{(L)}[v], F^{(0)}[v])\bigr)

    Args:
        pred: ``[M, d]`` GTN outputs :math:`F^{(L)}` of the masked nodes.
        target: ``[M, d]`` their initial features :math:`F^{(0)}`; detached here (a fixed target).
        eps: guards the cosine of a zero vector (its cosine is 0, its loss 1).

    Returns:
        a scalar in ``[0, 2]``; for ``M == 0``, a zero connected to ``pred``'s graph.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if pred.numel() == 0 or pred.size(0) == 0:
        return _zero_like_graph(pred)
    return (1.0 - F.cosine_similarity(pred, target.detach(), dim=-1, eps=eps)).mean()


# ---------------------------------------------------------------------------------------------
# L_A: structure-aware adversarial knowledge distillation (eq. 8)
# ---------------------------------------------------------------------------------------------

def _bce_to(logits: Tensor, value: float) -> Tensor:
    if logits.numel() == 0:
        return _zero_like_graph(logits)
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, value))


def discriminator_loss(discriminator: Callable[[Tensor], Tensor], teacher: Tensor,
                       student: Tensor) -> Tensor:
    r"""The discriminator's side of SA-KD (paper eq. 8): tell GTN nodes from encoder nodes.

    .. math::
        \mathcal{L}_C = \mathrm{BCE}(C(F^{(L)}), 1) + \mathrm{BCE}(C(\hat F^{(l)}), 0)

    i.e. the discriminator *maximises* :math:`\mathcal{L}_A = \log P(1|C(F^{(L)})) +
    \log P(0|C(\hat F^{(l)}))`. Both inputs are detached: this loss trains the discriminator only.
    Each BCE is a mean over its nodes.

    Args:
        discriminator: maps ``[n, d]`` to ``[n]`` (or ``[n, 1]``) logits of "came from the GTN",
            e.g. :class:`~pyg_docre.nn.discriminator.NodeDiscriminator`.
        teacher: ``[n_t, d]`` GTN output node features :math:`F^{(L)}` (label 1).
        student: ``[n_s, d]`` node features :math:`\hat F^{(l)}` built from encoder layer ``l``
            (label 0).
    """
    return (_bce_to(discriminator(teacher.detach()), 1.0)
            + _bce_to(discriminator(student.detach()), 0.0))


def generator_loss(discriminator: nn.Module, student: Tensor) -> Tensor:
    r"""The encoder's (generator's) side of SA-KD: make encoder nodes pass for GTN nodes.

    .. math::
        \mathcal{L}_G = \mathrm{BCE}(C(\hat F^{(l)}), 1)

    The discriminator is evaluated with :func:`torch.func.functional_call` on *detached* copies
    of its parameters (buffers are used as they are): the gradient flows into ``student`` (and
    from there into the encoder) only, the discriminator's parameters get no gradient (their
    ``.grad`` stays untouched), and no ``requires_grad`` flag is ever flipped, so the step is safe
    under concurrency, ``torch.compile`` and parameter sharing.

    Args:
        discriminator: an ``nn.Module`` mapping ``[n, d]`` to ``[n]`` (or ``[n, 1]``) logits.
        student: ``[n, d]`` encoder-layer node features :math:`\hat F^{(l)}` (not detached).
    """
    params = {name: p.detach() for name, p in discriminator.named_parameters()}
    logits = torch.func.functional_call(discriminator, params, (student,))
    return _bce_to(logits, 1.0)


def cosine_distillation_loss(student: Tensor, teacher: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Plain feature distillation for the "SA-KD -> KD" ablation.

    .. math::
        \mathcal{L}_{KD} = \frac{1}{n}\sum_v \bigl(1 - \cos(\hat F^{(l)}[v], F^{(L)}[v])\bigr)

    Args:
        student: ``[n, d]`` encoder-layer node features (receive the gradient).
        teacher: ``[n, d]`` GTN output node features (detached).
    """
    return node_reconstruction_loss(student, teacher, eps=eps)
