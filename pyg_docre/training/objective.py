r"""The training objective of DocRE-BSI (paper eq. 5) and its adversarial game.

.. math::
    \mathcal{L} = \mathcal{L}_R + \alpha\,\mathcal{L}_N + \beta\,\mathcal{L}_A

One training step (per micro-batch), as docs/DESIGN.md fixes it:

1. *Discriminator step* (:meth:`DocREObjective.discriminator_loss`, own optimiser): for each
   distilled layer ``l``, BCE(C_l(F^(L).detach()) -> 1) + BCE(C_l(\hat F^(l).detach()) -> 0).
2. *Model step* (:meth:`DocREObjective.model_loss`): L_R + alpha L_N + beta L_A, where L_A is
   the generator loss BCE(C_l(\hat F^(l)) -> 1) (gradient into the encoder only; the
   discriminators' parameters are held fixed), or the cosine distance to F^(L).detach() for the
   "SA-KD -> KD" ablation. The ATLOP baseline has L = L_R.

With ``objectives.student_projection`` (the default) the student side is
:math:`P_l(\hat F^{(l)})`, a learned residual MLP + LayerNorm per distilled layer
(:class:`~pyg_docre.training.sakd.StudentProjection`), trained with the model by step 2;
see that module for why.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pyg_docre.config import ObjectivesConfig
from pyg_docre.models.docre_model import DocREOutput
from pyg_docre.nn.losses import adaptive_thresholding_loss
from pyg_docre.training.losses import node_reconstruction_loss
from pyg_docre.training.sakd import (NodeDiscriminator, StudentProjection,
                                     cosine_distillation_loss, discriminator_loss,
                                     generator_loss)

__all__ = ["DocREObjective", "read_scalars"]


class DocREObjective(nn.Module):
    """Losses of eq. 5 plus the SA-KD discriminators (one per distilled layer).

    Args:
        config: the objectives section of the experiment config.
        channels: node feature size ``d``.
        distill_layers: the encoder layers distilled (empty for the baseline or no distillation).
    """

    def __init__(self, config: ObjectivesConfig, channels: int, distill_layers: list[int]):
        super().__init__()
        self.config = config
        self.distill_layers = list(distill_layers)
        adversarial = config.distillation == "sakd"
        self.discriminators = nn.ModuleDict({
            str(l): NodeDiscriminator(channels, hidden=config.discriminator_hidden)
            for l in (self.distill_layers if adversarial else [])})
        distilled = config.distillation != "none" and config.student_projection
        self.student_heads = nn.ModuleDict({
            str(l): StudentProjection(channels) for l in (self.distill_layers if distilled else [])})

    @property
    def adversarial(self) -> bool:
        return len(self.discriminators) > 0

    def generator_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by the model step (the student heads), not by the discriminator's."""
        return list(self.student_heads.parameters())

    def student(self, layer: int, features: Tensor) -> Tensor:
        """The student side for layer ``layer``: ``P_l(features)`` or the features themselves."""
        head = self.student_heads[str(layer)] if str(layer) in self.student_heads else None
        return features if head is None else head(features)

    def discriminator_loss(self, out: DocREOutput) -> Tensor | None:
        """Loss of the discriminator step (inputs detached), or None when there is none."""
        if not self.adversarial or out.gtn_output is None or not out.layer_features:
            return None
        teacher = out.gtn_output.detach().float()
        c = self.config
        return sum(discriminator_loss(self.discriminators[str(l)], teacher,
                                      self.student(l, student.float()).detach(),
                                      label_smoothing=c.discriminator_label_smoothing,
                                      gradient_penalty=c.discriminator_gradient_penalty)
                   for l, student in out.layer_features.items())

    def model_loss(self, out: DocREOutput, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``L = L_R + alpha L_N + beta L_A`` and its parts (floats, for logging)."""
        total, parts = self.model_loss_terms(out, labels)
        return total, read_scalars(parts)

    def model_loss_terms(self, out: DocREOutput,
                         labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`model_loss` with the parts as detached 0-dim tensors: nothing is read back
        from the device (the trainer reads them once per step, with its finiteness check)."""
        loss_r = adaptive_thresholding_loss(out.logits.float(), labels)
        total, parts = loss_r, {"L_R": loss_r.detach()}
        if out.reconstruction is not None:
            loss_n = node_reconstruction_loss(*(t.float() for t in out.reconstruction))
            total = total + self.config.alpha * loss_n
            parts["L_N"] = loss_n.detach()
        if out.layer_features and out.gtn_output is not None:
            teacher = out.gtn_output.detach().float()
            if self.adversarial:
                loss_a = sum(generator_loss(self.discriminators[str(l)],
                                            self.student(l, student.float()))
                             for l, student in out.layer_features.items())
            else:
                loss_a = sum(cosine_distillation_loss(self.student(l, student.float()), teacher)
                             for l, student in out.layer_features.items())
            total = total + self.config.beta * loss_a
            parts["L_A"] = loss_a.detach()
        parts["loss"] = total.detach()
        return total, parts


def read_scalars(values: dict[str, Tensor]) -> dict[str, float]:
    """0-dim tensors -> floats, in one read from the device (each ``float(t)`` would be one)."""
    if not values:
        return {}
    return dict(zip(values, torch.stack([v.float() for v in values.values()]).tolist()))
