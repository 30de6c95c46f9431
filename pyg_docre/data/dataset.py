"""A DocRED-format file as a list of HDGs, built once and cached on disk.

The cache key covers everything the graphs depend on: the file's content (sha256), the
tokenizer (its name and the hash of its serialized vocabulary and rules), ``rel2id`` and
:data:`~pyg_docre.data.hdg.BUILDER_VERSION`. Cache files hold plain tensors and strings only and
load with ``torch.load(weights_only=True)`` (no pickle). A cache is written atomically; a damaged
one is named in a warning, discarded and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import logging
from os import PathLike
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..io import atomic_write
from .docred import load_docred, validate_documents
from .hdg import BUILDER_VERSION, PAIR_EDGE_TYPE, DocumentGraph, build_hdg

__all__ = ["DocREDDataset", "tokenizer_fingerprint", "parse_doc_range"]

log = logging.getLogger(__name__)


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash identifying a tokenizer's behaviour (vocabulary, normaliser, rules)."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        # Truncation and padding are call-time state that the wrapper rewrites on every call.
        spec.pop("truncation", None)
        spec.pop("padding", None)
        h.update(json.dumps(spec, sort_keys=True).encode())
    else:
        h.update(repr(tokenizer).encode())
    h.update(type(tokenizer).__name__.encode())
    return h.hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_doc_range(spec: str | Sequence[int] | None, num_docs: int) -> list[int]:
    """Document indices from ``None`` (all), a slice string ``"0:450"`` or a list of indices.

    ``"start:stop"`` takes documents ``start .. stop-1`` (either bound may be omitted); a bound
    outside ``0..num_docs`` is an error, not clamped, and so is a range that selects nothing.
    """
    if spec is None:
        return list(range(num_docs))
    if isinstance(spec, str):
        parts = spec.split(":")
        if len(parts) != 2:
            raise ValueError(f"document range {spec!r}: expected 'start:stop'")
        try:
            start, stop = (int(p) if p.strip() else None for p in parts)
        except ValueError:
            raise ValueError(f"document range {spec!r}: start and stop must be integers") from None
        for bound in (start, stop):
            if bound is not None and not 0 <= bound <= num_docs:
                raise ValueError(f"document range {spec!r}: {bound} is outside 0..{num_docs} "
                                 f"(the file has {num_docs} documents)")
        indices = list(range(num_docs))[slice(start, stop)]
    elif isinstance(spec, (list, tuple)):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in spec):
            raise ValueError(f"document range {spec!r}: a list must hold document indices")
        indices = list(spec)
    else:
        raise ValueError(f"document range {spec!r}: expected 'start:stop' or a list of indices")
    bad = [i for i in indices if not 0 <= i < num_docs]
    if bad:
        raise ValueError(f"document range {spec!r}: indices {bad[:5]} outside 0..{num_docs - 1}")
    if not indices:
        raise ValueError(f"document range {spec!r} selects no document of {num_docs}")
    return indices


class DocREDDataset(Dataset):
    """The HDGs of a DocRED-format file or of documents in memory (optionally a range of them).

    Args:
        path: the DocRED-format JSON file, or the documents themselves (a list of DocRED dicts,
            validated like a file's; errors name the document index and field).
        tokenizer: the encoder's fast tokenizer.
        rel2id: relation P-id -> class id.
        cache_dir: where to cache the built graphs (``None``: no cache).
        docs: which documents to keep: ``None`` (all), ``"start:stop"`` or a list of indices.
            The cache always holds the whole file, so ranges of one file share it.
        unique_titles: whether repeated titles are an error (they are for files that get
            scored or predicted, since ``result.json`` keys documents by title).
        progress: show a progress bar (tqdm, on stderr) while graphs are built; ``None`` (default)
            shows it only when stderr is a terminal.

    Items are :class:`~pyg_docre.data.hdg.DocumentGraph` objects; batch them with
    ``torch_geometric.loader.DataLoader``. ``dataset.documents`` holds the raw documents of the
    selected range (for the scorer and for writing predictions); ``dataset.path`` is ``None``
    for documents given in memory.

    Example:
        >>> doc = {"title": "T", "sents": [["Paris", "is", "in", "France", "."]],
        ...        "vertexSet": [[{"name": "Paris", "pos": [0, 1], "sent_id": 0, "type": "LOC"}],
        ...                      [{"name": "France", "pos": [3, 4], "sent_id": 0, "type": "LOC"}]]}
        >>> dataset = DocREDDataset([doc], tokenizer, rel2id)   # doctest: +SKIP
        >>> len(dataset)                                        # doctest: +SKIP
        1
    """

    def __init__(self, path: str | PathLike | Sequence[Mapping], tokenizer,
                 rel2id: Mapping[str, int], *, cache_dir: str | PathLike | None = None,
                 docs: str | Sequence[int] | None = None, unique_titles: bool = True,
                 progress: bool | None = None):
        self.progress = progress
        if isinstance(path, (str, PathLike)):
            self.path, self._memory_docs = Path(path), None
            all_docs = load_docred(self.path, rel2id=rel2id, unique_titles=unique_titles)
        elif isinstance(path, (list, tuple)):
            self.path = None
            all_docs = self._memory_docs = list(path)
            validate_documents(all_docs, rel2id=rel2id, unique_titles=unique_titles)
        else:
            raise TypeError(
                f"DocREDDataset: expected a path to a DocRED JSON file or a list of DocRED "
                f"documents (dicts), got {type(path).__name__}"
                + (" (wrap a single document in a list: [doc])" if isinstance(path, Mapping)
                   else ""))
        self.indices = parse_doc_range(docs, len(all_docs))
        self.documents = [all_docs[i] for i in self.indices]
        graphs = self._load_or_build(all_docs, tokenizer, rel2id, cache_dir)
        self.graphs = [graphs[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> DocumentGraph:
        return self.graphs[index]

    def cache_key(self, tokenizer, rel2id: Mapping[str, int]) -> str:
        h = hashlib.sha256()
        content = (_file_sha256(self.path) if self.path is not None else hashlib.sha256(
            json.dumps(self._memory_docs, sort_keys=True).encode()).hexdigest())
        for part in (content, tokenizer_fingerprint(tokenizer),
                     json.dumps(dict(rel2id), sort_keys=True), str(BUILDER_VERSION)):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:24]

    def _build(self, all_docs, tokenizer, rel2id) -> list[DocumentGraph]:
        name = self.path.name if self.path is not None else "documents"
        bar = tqdm(all_docs, desc=f"building graphs ({name})", unit="doc", leave=False,
                   disable=None if self.progress is None else not self.progress)
        return [build_hdg(d, tokenizer, rel2id, validate=False) for d in bar]

    def _load_or_build(self, all_docs, tokenizer, rel2id, cache_dir) -> list[DocumentGraph]:
        if cache_dir is None:
            return self._build(all_docs, tokenizer, rel2id)
        stem = self.path.stem if self.path is not None else "documents"
        cache_file = Path(cache_dir) / f"{stem}-{self.cache_key(tokenizer, rel2id)}.pt"
        if cache_file.exists():
            graphs = _read_cache(cache_file, len(all_docs))
            if graphs is not None:
                return graphs
        graphs = self._build(all_docs, tokenizer, rel2id)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        plain = [_to_plain(g) for g in graphs]
        atomic_write(cache_file, lambda f: torch.save(plain, f), binary=True)
        log.info("cached %d HDGs in %s", len(graphs), cache_file)
        return graphs


_PAIR_KEY = "|".join(PAIR_EDGE_TYPE)


def _read_cache(cache_file: Path, num_docs: int) -> list[DocumentGraph] | None:
    """The cached graphs, or ``None`` (with a warning naming the file, which is removed) when
    the cache is damaged: unreadable, not a list of ``num_docs`` graphs, or inconsistent."""
    log.info("loading HDGs from cache %s", cache_file)
    try:
        plain = torch.load(cache_file, weights_only=True)
        if not isinstance(plain, list) or len(plain) != num_docs:
            raise ValueError(f"expected {num_docs} graphs")
        return [_from_plain(d) for d in plain]
    except Exception as err:  # zip, unpickling and structure errors come in many types
        log.warning("graph cache %s is damaged (%s: %s); discarding it and rebuilding",
                    cache_file, type(err).__name__, str(err)[:200])
        cache_file.unlink(missing_ok=True)
        return None


def _to_plain(graph: DocumentGraph) -> dict:
    """A dict of tensors, strings and numbers (loadable without pickle); labels as bool."""
    plain = {}
    for key, value in graph.to_dict().items():
        if isinstance(key, tuple):
            key = "|".join(key)
        plain[key] = dict(value) if isinstance(value, Mapping) else value
    plain[_PAIR_KEY]["y"] = plain[_PAIR_KEY]["y"].bool()
    return plain


def _from_plain(plain: dict) -> DocumentGraph:
    plain[_PAIR_KEY]["y"] = plain[_PAIR_KEY]["y"].float()
    mapping = {}
    for key, value in plain.items():
        mapping[tuple(key.split("|")) if "|" in key else key] = value
    return DocumentGraph.from_dict(mapping)
