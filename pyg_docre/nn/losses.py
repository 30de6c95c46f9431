r"""The relation classification loss of DocRE-BSI and its decision rule (paper eq. 6).

* :func:`adaptive_thresholding_loss` / :class:`ATLoss`: the relation classification loss
  :math:`\mathcal{L}_R` (eq. 6, from ATLOP), and :func:`predict_relations`, its decision rule
  (used by the model's users and the evaluation).

The auxiliary losses of training, :math:`\mathcal{L}_N` (eq. 7) and :math:`\mathcal{L}_A`
(eq. 8, SA-KD), are in :mod:`pyg_docre.training.losses` and :mod:`pyg_docre.training.sakd`.

All functions are pure tensor code: they work on any device and dtype and never produce NaN for
empty inputs (an empty set of pairs or nodes gives a zero that is still connected to the
autograd graph, so ``loss.backward()`` works unconditionally).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ATLoss",
    "adaptive_thresholding_loss",
    "predict_relations",
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
