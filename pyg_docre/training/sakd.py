r"""Structure-aware adversarial knowledge distillation (SA-KD, paper eq. 8): the discriminator,
the student head and the two sides of the game, beside their only user,
:class:`~pyg_docre.training.objective.DocREObjective`.

One discriminator per distilled encoder layer ``l``. It scores a node feature vector with one
logit; :math:`C(x) = \sigma(\mathrm{MLP}(x))` is the probability that the node came from the GTN
(:math:`F^{(L)}`) rather than from encoder layer ``l`` (:math:`\hat F^{(l)}`). Train it with
:func:`discriminator_loss` (own optimiser) and train the encoder against it with
:func:`generator_loss`; :func:`cosine_distillation_loss` replaces the game in the
"SA-KD -> KD" ablation.

:class:`StudentProjection` is the optional learned head between an encoder layer's node features
and its discriminator (``objectives.student_projection``). Without it the discriminator tells the
two sources apart from cues the encoder cannot and should not match (the GTN output is
LayerNorm-ed with its own gain and bias, entity features are shifted by logsumexp pooling, ...):
on a trained CPU-protocol model a fresh discriminator reaches 97-100% held-out accuracy on raw
*and* on per-node-normalised features, the generator loss keeps rising, and its gradient only
distorts the encoder. With the head, the encoder has to produce features that can be *mapped* to
the GTN's distribution, which is the tolerance the paper asks of SA-KD ("it does not require
PLM encoder and GTN to output the exact same node representation"); the authors' released
code also passes encoder nodes through a residual MLP with LayerNorm before discriminating them.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MLP

from pyg_docre.nn.losses import _zero_like_graph

from .losses import node_reconstruction_loss

__all__ = ["NodeDiscriminator", "StudentProjection", "discriminator_loss", "generator_loss",
           "cosine_distillation_loss"]


class NodeDiscriminator(nn.Module):
    r"""MLP node discriminator: ``[n, channels] -> [n]`` logits.

    .. math::
        \mathrm{MLP}(x) = W_2\, \mathrm{Dropout}(\mathrm{ReLU}(W_1 x + b_1)) + b_2,
        \qquad C(x) = \sigma(\mathrm{MLP}(x))

    A :class:`torch_geometric.nn.MLP` ``[channels, hidden, 1]`` without normalisation.

    Args:
        channels: node feature size ``d``.
        hidden: hidden size of the MLP (default: ``channels``).
        dropout: dropout after the hidden activation (default 0).
    """

    #: Parameter names of the hand-written MLP of earlier versions (``lin1``, ``lin2``), mapped
    #: on load so that older resume states (``objective.safetensors``) still load.
    _OLD_KEYS = {"lin1.": "mlp.lins.0.", "lin2.": "mlp.lins.1."}

    def __init__(self, channels: int, hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.channels = channels
        self.hidden = channels if hidden is None else hidden
        self.dropout = dropout
        self.mlp = MLP([channels, self.hidden, 1], act="relu", dropout=dropout, norm=None,
                       plain_last=True)
        self._register_load_state_dict_pre_hook(self._map_old_keys)

    def reset_parameters(self) -> None:
        self.mlp.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Args: ``x [..., channels]``. Returns: logits ``[...]`` (sigmoid = P(from the GTN))."""
        return self.mlp(x).squeeze(-1)

    def _map_old_keys(self, state_dict, prefix, *args) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            for old, new in self._OLD_KEYS.items():
                if rest.startswith(old):
                    state_dict[prefix + new + rest[len(old):]] = state_dict.pop(key)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, hidden={self.hidden}, "
                f"dropout={self.dropout})")


class StudentProjection(nn.Module):
    r"""Residual MLP head for encoder-layer node features before the SA-KD discriminator.

    .. math::
        P(x) = \mathrm{LayerNorm}\bigl(x + W_2\, \mathrm{ReLU}(W_1 x + b_1) + b_2\bigr)

    Trained with the encoder by the generator loss (it is part of the student), never by the
    discriminator step; used only in training.

    Args:
        channels: node feature size ``d``.
        hidden: hidden size of the MLP (default: ``channels``).
        layer_norm_eps: epsilon of the LayerNorm (default ``1e-5``).

    Shapes:
        ``[..., channels] -> [..., channels]``
    """

    def __init__(self, channels: int, hidden: int | None = None, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.hidden = channels if hidden is None else hidden
        self.lin1 = nn.Linear(channels, self.hidden)
        self.act = nn.ReLU()
        self.lin2 = nn.Linear(self.hidden, channels)
        self.norm = nn.LayerNorm(channels, eps=layer_norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()
        self.norm.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.lin2(self.act(self.lin1(x))))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, hidden={self.hidden})"


# ---------------------------------------------------------------------------------------------
# L_A: structure-aware adversarial knowledge distillation (eq. 8)
# ---------------------------------------------------------------------------------------------

def _bce_to(logits: Tensor, value: float) -> Tensor:
    if logits.numel() == 0:
        return _zero_like_graph(logits)
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, value))


def discriminator_loss(discriminator: Callable[[Tensor], Tensor], teacher: Tensor,
                       student: Tensor, *, label_smoothing: float = 0.0,
                       gradient_penalty: float = 0.0) -> Tensor:
    r"""The discriminator's side of SA-KD (paper eq. 8): tell GTN nodes from encoder nodes.

    .. math::
        \mathcal{L}_C = \mathrm{BCE}(C(F^{(L)}), 1 - s) + \mathrm{BCE}(C(\hat F^{(l)}), 0)
            + \frac{\gamma}{2}\,\mathbb{E}_{x \in F^{(L)}}
              \bigl\|\nabla_x \mathrm{MLP}(x)\bigr\|_2^2

    i.e. the discriminator *maximises* :math:`\mathcal{L}_A = \log P(1|C(F^{(L)})) +
    \log P(0|C(\hat F^{(l)}))` (the paper's game: :math:`s = \gamma = 0`). Two optional brakes
    on a discriminator that wins the game too easily: one-sided label smoothing :math:`s`
    (Salimans et al. 2016: the GTN's nodes are labelled :math:`1 - s`, the encoder's stay 0) and
    the R1 gradient penalty :math:`\gamma` on the GTN's nodes (Mescheder et al. 2018), which keeps
    the discriminator's logit smooth around the teacher's distribution. Both inputs are
    detached: this loss trains the discriminator only. Each term is a mean over its nodes.

    Args:
        discriminator: maps ``[n, d]`` to ``[n]`` (or ``[n, 1]``) logits of "came from the GTN",
            e.g. :class:`NodeDiscriminator`.
        teacher: ``[n_t, d]`` GTN output node features :math:`F^{(L)}` (label :math:`1 - s`).
        student: ``[n_s, d]`` node features :math:`\hat F^{(l)}` built from encoder layer ``l``
            (label 0).
        label_smoothing: :math:`s \in [0, 0.5)`.
        gradient_penalty: :math:`\gamma \ge 0`.
    """
    teacher = teacher.detach()
    if gradient_penalty > 0 and teacher.numel() > 0:
        teacher = teacher.requires_grad_(True)
        teacher_logits = discriminator(teacher)
        (grad,) = torch.autograd.grad(teacher_logits.sum(), teacher, create_graph=True)
        penalty = 0.5 * gradient_penalty * grad.pow(2).sum(-1).mean()
    else:
        teacher_logits = discriminator(teacher)
        penalty = None
    loss = (_bce_to(teacher_logits, 1.0 - label_smoothing)
            + _bce_to(discriminator(student.detach()), 0.0))
    return loss if penalty is None else loss + penalty


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

