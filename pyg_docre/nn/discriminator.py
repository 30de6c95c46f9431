r"""The MLP discriminator of the structure-aware adversarial distillation (SA-KD, paper eq. 8).

One discriminator per distilled encoder layer ``l``. It scores a node feature vector with one
logit; :math:`C(x) = \sigma(\mathrm{MLP}(x))` is the probability that the node came from the GTN
(:math:`F^{(L)}`) rather than from encoder layer ``l`` (:math:`\hat F^{(l)}`). Train it with
:func:`pyg_docre.nn.losses.discriminator_loss` (own optimiser) and train the encoder against it
with :func:`pyg_docre.nn.losses.generator_loss`.

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

from torch import Tensor, nn

__all__ = ["NodeDiscriminator", "StudentProjection"]


class NodeDiscriminator(nn.Module):
    r"""MLP node discriminator: ``[n, channels] -> [n]`` logits.

    .. math::
        \mathrm{MLP}(x) = W_2\, \mathrm{ReLU}(W_1 x + b_1) + b_2,
        \qquad C(x) = \sigma(\mathrm{MLP}(x))

    Args:
        channels: node feature size ``d``.
        hidden: hidden size of the MLP (default: ``channels``).
        dropout: dropout after the hidden activation (default 0).
    """

    def __init__(self, channels: int, hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.channels = channels
        self.hidden = channels if hidden is None else hidden
        self.dropout = dropout
        self.lin1 = nn.Linear(channels, self.hidden)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.lin2 = nn.Linear(self.hidden, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Args: ``x [..., channels]``. Returns: logits ``[...]`` (sigmoid = P(from the GTN))."""
        return self.lin2(self.drop(self.act(self.lin1(x)))).squeeze(-1)

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
