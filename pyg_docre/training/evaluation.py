"""Turning model outputs into official predictions, and scoring them."""
from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from tqdm.auto import tqdm

from pyg_docre.data import PAIR_EDGE_TYPE, node_ptr, pair_batch
from pyg_docre.nn.losses import predict_relations

__all__ = ["decode_predictions", "predict"]


def decode_predictions(logits: torch.Tensor, data, id2rel: list[str], top_k: int) -> list[dict]:
    """Official ``{title, h_idx, t_idx, r}`` entries for the relations predicted in a batch."""
    pairs = data[PAIR_EDGE_TYPE].edge_index
    entity_ptr = node_ptr(data, "entity")
    batch = pair_batch(pairs, entity_ptr)
    titles = data.title if isinstance(data.title, list) else [data.title]
    predicted = predict_relations(logits.float(), top_k=top_k)[:, 1:].nonzero().tolist()
    pairs, batch, entity_ptr = pairs.tolist(), batch.tolist(), entity_ptr.tolist()
    results = []
    for p, r in predicted:
        b = batch[p]
        results.append({"title": titles[b], "h_idx": pairs[0][p] - entity_ptr[b],
                        "t_idx": pairs[1][p] - entity_ptr[b], "r": id2rel[r + 1]})
    return results


@torch.no_grad()
def predict(model, loader: Iterable, device: torch.device, id2rel: list[str], top_k: int,
            autocast=contextlib.nullcontext, progress: bool | None = None,
            desc: str = "predicting") -> list[dict]:
    """Run ``model`` over every batch of ``loader`` and collect the official predictions.

    ``progress`` shows a tqdm bar on stderr (``None``: only when stderr is a terminal).
    """
    was_training = model.training
    model.eval()
    results = []
    try:
        for data in tqdm(loader, desc=desc, unit="batch", leave=False,
                         disable=None if progress is None else not progress):
            data = data.to(device)
            with autocast():
                out = model(data)
            results.extend(decode_predictions(out.logits, data, id2rel, top_k))
    finally:
        model.train(was_training)
    return results
