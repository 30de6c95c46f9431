"""Using a trained model: relations with names and scores from documents or plain text.

:class:`RelationExtractor` wraps a saved :class:`~pyg_docre.models.DocREModel` (the
``checkpoint/`` folder of a training run) and its tokenizer, and turns the pair logits into
readable relations, like a Hugging Face pipeline:

.. code-block:: python

    from pyg_docre import RelationExtractor

    extractor = RelationExtractor.from_pretrained("runs/smoke/checkpoint")
    extractor.predict_text("Paris is the capital of France.",
                           entities=[{"mentions": [[0, 5]]}, {"mentions": [[24, 30]]}])
    # [{'h': 0, 't': 1, 'h_name': 'Paris', 't_name': 'France', 'relation': 'P17',
    #   'relation_name': 'country', 'score': 3.1, 'h_mentions': [[0, 5]], 't_mentions': [[24, 30]]},
    #  ...]

The decision rule is the model's adaptive threshold (paper eq. 6): relation ``r`` is kept for a
pair when its logit exceeds the learned threshold class TH (column 0), at most ``top_k`` per pair.
A relation's ``score`` is that margin, ``logit_r - logit_TH``: positive for a predicted relation,
comparable across pairs, and the quantity a precision-recall curve sweeps.
"""
from __future__ import annotations

import math
from os import PathLike
from typing import Callable, Mapping, Sequence

import torch

__all__ = ["RelationExtractor"]


class RelationExtractor:
    """Relation extraction with a trained DocRE model.

    Args:
        model: a :class:`~pyg_docre.models.DocREModel` (moved to ``device``, put in eval mode).
        tokenizer: its fast tokenizer (``DocREModel.load_tokenizer(path)``).
        device: ``None`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda:1"``, ...

    Attributes:
        id2rel: class id -> relation P-id (index 0 is ``"Na"``, the threshold class).
        rel_info: P-id -> name, from the checkpoint (empty when it has none: names fall back to
            the P-id).

    Example:
        >>> extractor = RelationExtractor.from_pretrained("runs/smoke/checkpoint")  # doctest: +SKIP
        >>> doc = {"sents": [["Paris", "is", "in", "France", "."]],
        ...        "vertexSet": [[{"name": "Paris", "pos": [0, 1], "sent_id": 0, "type": "LOC"}],
        ...                      [{"name": "France", "pos": [3, 4], "sent_id": 0, "type": "LOC"}]]}
        >>> extractor.predict(doc, threshold=float("-inf"), top_k=1)[0]     # doctest: +SKIP
        {'h': 0, 't': 1, 'h_name': 'Paris', 't_name': 'France', 'relation': 'P17',
         'relation_name': 'country', 'score': 2.5}
    """

    def __init__(self, model, tokenizer, device: str | torch.device | None = None):
        self.device = _resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        from .data.relations import id2rel

        self.id2rel = id2rel(model.rel2id)
        self.rel_info: dict[str, str] = dict(getattr(model, "rel_info", None) or {})

    @classmethod
    def from_pretrained(cls, path: str | PathLike, device: str | torch.device | None = None
                        ) -> "RelationExtractor":
        """Load a model saved by ``DocREModel.save_pretrained`` (a run's ``checkpoint/``)."""
        from .models.docre_model import DocREModel

        device = _resolve_device(device)
        model = DocREModel.from_pretrained(path, map_location=device)
        tokenizer = DocREModel.load_tokenizer(path)
        return cls(model, tokenizer, device=device)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(encoder={self.model.config.encoder!r}, "
                f"relations={len(self.id2rel) - 1}, device={str(self.device)!r})")

    def relation_name(self, rel: str) -> str:
        """The human-readable name of a P-id (the P-id itself when unknown)."""
        return self.rel_info.get(rel, rel)

    # ------------------------------------------------------------------------------------
    def predict(self, documents: Mapping | Sequence[Mapping], *, threshold: float | None = None,
                top_k: int | None = None, batch_size: int = 8, progress: bool | None = None):
        """Relations of DocRED-style documents.

        Args:
            documents: one document or a list; each a dict with ``sents`` (list of word lists)
                and ``vertexSet`` (entities, each a list of mentions ``{name, pos, sent_id,
                type}``); ``title`` and ``labels`` are optional (labels are ignored).
            threshold: ``None`` uses the learned threshold (a relation is kept when its logit
                exceeds TH's). A float shifts it: kept when ``logit - TH > threshold``; ``0.0``
                is the learned rule, a positive value is stricter, ``float('-inf')`` keeps each
                pair's ``top_k`` best relations whatever their score.
            top_k: at most this many relations per pair (default: the model's ``top_k``;
                ``0`` or less: no limit).
            batch_size: documents per forward pass.
            progress: a tqdm bar on stderr (``None``: only when stderr is a terminal).

        Returns:
            For a list of documents, one list per document; for a single document, its list.
            Each relation is ``{"h", "t", "h_name", "t_name", "relation", "relation_name",
            "score"}`` (entity indices into ``vertexSet``, the first mentions' names, the P-id,
            its name, and ``logit - TH``), sorted by score, highest first.

        Raises:
            pyg_docre.data.DocREDFormatError: a malformed document (names its index and field).
        """
        single = isinstance(documents, Mapping)
        docs = [documents] if single else documents
        if not isinstance(docs, (list, tuple)):
            raise TypeError(f"documents: expected a DocRED document (dict) or a list of them, "
                            f"got {type(documents).__name__}")
        results = self._predict(docs, threshold=threshold, top_k=top_k, batch_size=batch_size,
                                progress=progress)
        return results[0] if single else results

    def _predict(self, docs: Sequence[Mapping], *, threshold, top_k, batch_size, progress):
        from torch_geometric.loader import DataLoader

        from .data import DocREDDataset, DocREDFormatError, validate_document

        prepared = []
        for i, doc in enumerate(docs):
            if not isinstance(doc, Mapping):
                raise DocREDFormatError(f"a document must be a dict, got {type(doc).__name__}",
                                        doc_index=i)
            doc = {k: v for k, v in doc.items() if k != "labels"}
            doc.setdefault("title", f"document {i}")
            validate_document(doc, doc_index=i)
            prepared.append(doc)
        # Pairs need two entities; other documents have no relation to predict.
        scored = [i for i, d in enumerate(prepared) if len(d["vertexSet"]) >= 2]
        results: list[list[dict]] = [[] for _ in prepared]
        if not scored:
            return results
        dataset = DocREDDataset([prepared[i] for i in scored], self.tokenizer, self.model.rel2id,
                                unique_titles=False, progress=progress)
        loader = DataLoader(dataset, batch_size=batch_size)
        top_k = self.model.config.top_k if top_k is None else top_k
        threshold = 0.0 if threshold is None else float(threshold)
        if math.isnan(threshold):
            raise ValueError("threshold: NaN")
        offset = 0
        for batch_docs, logits, pairs in self._forward(loader, progress):
            for b, (h_t, margins) in enumerate(zip(pairs, logits)):
                doc = prepared[scored[offset + b]]
                results[scored[offset + b]] = self._decode(doc, h_t, margins, threshold, top_k)
            offset += batch_docs
        return results

    @torch.no_grad()
    def _forward(self, loader, progress):
        """Per batch: (number of documents, per document the ``[P, R]`` margins over TH and the
        ``[P, 2]`` local (h, t) indices)."""
        from tqdm.auto import tqdm

        from .data import PAIR_EDGE_TYPE, node_ptr, pair_batch

        for data in tqdm(loader, desc="extracting relations", unit="batch", leave=False,
                         disable=None if progress is None else not progress):
            data = data.to(self.device)
            logits = self.model(data).logits.float()
            margins = (logits[:, 1:] - logits[:, :1]).cpu()
            pairs = data[PAIR_EDGE_TYPE].edge_index
            entity_ptr = node_ptr(data, "entity")
            batch = pair_batch(pairs, entity_ptr)
            local = (pairs - entity_ptr[batch]).t().cpu()
            batch = batch.cpu()
            num_docs = entity_ptr.numel() - 1
            per_doc_pairs, per_doc_margins = [], []
            for b in range(num_docs):
                sel = batch == b
                per_doc_pairs.append(local[sel])
                per_doc_margins.append(margins[sel])
            yield num_docs, per_doc_margins, per_doc_pairs

    def _decode(self, doc: Mapping, pairs: torch.Tensor, margins: torch.Tensor, threshold: float,
                top_k: int) -> list[dict]:
        keep = margins > threshold
        if top_k is not None and 0 < top_k < margins.size(1):
            top = margins.topk(top_k, dim=1).indices
            limit = torch.zeros_like(keep)
            limit.scatter_(1, top, True)
            keep &= limit
        out = []
        vertex_set = doc["vertexSet"]
        for p, r in keep.nonzero().tolist():
            h, t = pairs[p].tolist()
            rel = self.id2rel[r + 1]
            out.append({"h": h, "t": t, "h_name": vertex_set[h][0]["name"],
                        "t_name": vertex_set[t][0]["name"], "relation": rel,
                        "relation_name": self.relation_name(rel),
                        "score": float(margins[p, r])})
        out.sort(key=lambda rel: -rel["score"])
        return out

    # ------------------------------------------------------------------------------------
    def predict_text(self, text: str, entities: Sequence[Mapping] | None = None, *,
                     ner: Callable | None = None, coref: Callable | None = None,
                     threshold: float | None = None, top_k: int | None = None,
                     title: str = "text") -> list[dict]:
        """Relations in plain text.

        Args:
            text: the text (any length; sentences and words are found by
                :mod:`pyg_docre.text`, keeping character offsets).
            entities: ``[{"mentions": [[char_start, char_end], ...], "type": "PER"}, ...]``
                (``type`` optional). ``None``: an NER backend finds the mentions and ``coref``
                groups them into entities.
            ner: the NER backend (a callable ``text -> [{"start", "end", "type"}]``); default
                :class:`pyg_docre.text.SpacyNER` (``pip install 'pyg_docre[text]'``).
            coref: groups mentions into entities; default
                :func:`pyg_docre.text.same_string_coref`.
            threshold, top_k: as in :meth:`predict`.

        Returns:
            The relations as in :meth:`predict`, each with ``h_mentions`` and ``t_mentions``:
            the character spans ``[start, end]`` of the two entities' mentions.

        Raises:
            pyg_docre.text.TextFormatError: malformed entities (names ``entities[i]...``).
            pyg_docre.text.MissingBackendError: no ``entities`` and no NER backend installed.
        """
        from .text import find_entities, text_to_document

        if entities is None:
            entities = find_entities(text, ner=ner, coref=coref)
        doc, spans = text_to_document(text, entities, title=title)
        relations = self.predict(doc, threshold=threshold, top_k=top_k, progress=False)
        for rel in relations:
            rel["h_mentions"] = spans[rel["h"]]
            rel["t_mentions"] = spans[rel["t"]]
        return relations


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available")
    return device
