r"""The auxiliary training loss :math:`\mathcal{L}_N` of DocRE-BSI (node reconstruction, paper
eq. 7), used by :class:`~pyg_docre.training.objective.DocREObjective` and by the KD ablation's
cosine distance (:func:`~pyg_docre.training.sakd.cosine_distillation_loss`).

The relation loss :math:`\mathcal{L}_R` (eq. 6) and its decision rule stay in
:mod:`pyg_docre.nn.losses`, beside the model and the evaluation that use them.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from pyg_docre.nn.losses import _zero_like_graph

__all__ = ["node_reconstruction_loss"]


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
