"""AdamW parameter groups of the model step: the encoder at ``lr_encoder``, everything new (GTN,
classifier, reconstruction head, SA-KD student heads) at ``lr_new``, and, unless
``training.decay_bias_and_norm``, biases and LayerNorm parameters without weight decay (as
BERT, ATLOP and Hugging Face's ``Trainer`` do).

Which parameters are decayed is decided by :func:`transformers.trainer_pt_utils.get_parameter_names`
(everything outside ``nn.LayerNorm`` modules, PyG's ``LayerNorm`` included) minus the names
ending in ``bias``.
"""
from __future__ import annotations

from typing import Iterable

from torch import nn
from torch_geometric.nn import LayerNorm as PyGLayerNorm
from transformers.trainer_pt_utils import get_parameter_names

__all__ = ["decayed_parameter_ids", "parameter_groups"]

#: Modules whose parameters are never decayed when biases and norms are excluded.
NORM_LAYERS = (nn.LayerNorm, PyGLayerNorm)


def decayed_parameter_ids(modules: Iterable[nn.Module]) -> set[int]:
    """``id()`` of the parameters of ``modules`` that weight decay applies to: not a bias, not
    inside a LayerNorm."""
    ids: set[int] = set()
    for module in modules:
        names = set(get_parameter_names(module, list(NORM_LAYERS)))
        ids.update(id(p) for name, p in module.named_parameters()
                   if name in names and not name.endswith("bias"))
    return ids


def parameter_groups(groups: list[tuple[list[nn.Parameter], float]], *, weight_decay: float,
                     decay_bias_and_norm: bool, owners: Iterable[nn.Module]) -> list[dict]:
    """AdamW parameter groups.

    Args:
        groups: ``(parameters, lr)`` pairs, e.g. the encoder's and the new parameters.
        weight_decay: the decay of the decayed parameters.
        decay_bias_and_norm: True: one group per pair, all decayed. False: each pair splits
            into a decayed group and a group with ``weight_decay=0`` for biases and LayerNorm
            parameters (an empty group is left out).
        owners: the modules that own the parameters (their names decide what is a bias or a
            norm); every parameter in ``groups`` must belong to one of them.
    """
    if decay_bias_and_norm:
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}
                for params, lr in groups]
    owners = list(owners)
    decayed = decayed_parameter_ids(owners)
    known = {id(p) for m in owners for p in m.parameters()}
    result = []
    for params, lr in groups:
        missing = [p for p in params if id(p) not in known]
        if missing:
            raise ValueError(f"{len(missing)} parameter(s) belong to none of the owner modules")
        decay = [p for p in params if id(p) in decayed]
        no_decay = [p for p in params if id(p) not in decayed]
        result += [{"params": decay, "lr": lr, "weight_decay": weight_decay},
                   {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    return [g for g in result if g["params"]]

