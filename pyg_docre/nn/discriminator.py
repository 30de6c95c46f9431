r"""The MLP discriminator of the structure-aware adversarial distillation (SA-KD, paper eq. 8).

One discriminator per distilled encoder layer ``l``. It scores a node feature vector with one
logit; :math:`C(x) = \sigma(\mathrm{MLP}(x))` is the probability that the node came from the GTN
(:math:`F^{(L)}`) rather than from encoder layer ``l`` (:math:`\hat F^{(l)}`). Train it with
:func:`pyg_docre.nn.losses.discriminator_loss` (own optimiser) and train the encoder against it
with :func:`pyg_docre.nn.losses.generator_loss`.
"""
from __future__ import annotations

from torch import Tensor, nn

__all__ = ["NodeDiscriminator"]


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
