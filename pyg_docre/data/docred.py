"""Reading and validating files in the DocRED JSON format.

DocRED, Re-DocRED and Revisit-DocRED share one format: a JSON list of documents, each a dict with

* ``title``: str,
* ``sents``: list of sentences, each a list of word strings,
* ``vertexSet``: list of entities; an entity is a non-empty list of mentions, each a dict with
  ``name`` (str), ``pos`` ([start, end) word offsets inside its sentence), ``sent_id`` and ``type``,
* ``labels`` (annotated splits only): list of ``{"h", "t", "r", "evidence"}`` with ``h``/``t``
  entity indices and ``r`` a Wikidata P-id.

:func:`load_docred` validates every document on load. A malformed document raises
:class:`DocREDFormatError`, whose message names the file, the document (index and title) and the
field, e.g. ``dev.json: document 3 ('Kungliga Hovkapellet'): vertexSet[2][0].pos: [5, 9] lies
outside sentence 1, which has 7 words``.
"""
from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Mapping

from pyg_docre.errors import FormatError

__all__ = ["DocREDFormatError", "load_docred", "validate_document", "validate_documents"]


class DocREDFormatError(FormatError):
    """A DocRED-format file or document is malformed.

    Attributes:
        path: the file (``None`` for documents given in memory).
        doc_index: the document's position in the file (``None`` for file-level errors).
        title: the document's title when it has a readable one.
        field: the offending field, as a path such as ``vertexSet[2][0].pos``.
    """

    def __init__(self, reason: str, *, path: str | PathLike | None = None,
                 doc_index: int | None = None, title: str | None = None,
                 field: str | None = None):
        self.doc_index = doc_index
        self.title = title
        where = None if doc_index is None else (
            f"document {doc_index}" + (f" ({title!r})" if title is not None else ""))
        super().__init__(reason, path=path, where=where, field=field)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _DocumentChecker:
    """Validates one document; every failure names the field it concerns."""

    def __init__(self, doc: Any, *, path, doc_index, rel2id, require_labels):
        self.doc = doc
        self.path = path
        self.doc_index = doc_index
        self.rel2id = rel2id
        self.require_labels = require_labels
        self.title = None

    def fail(self, field: str | None, reason: str):
        raise DocREDFormatError(reason, path=self.path, doc_index=self.doc_index,
                                title=self.title, field=field)

    def run(self) -> None:
        doc = self.doc
        if not isinstance(doc, Mapping):
            self.fail(None, f"a document must be a JSON object, got {type(doc).__name__}")
        if isinstance(doc.get("title"), str):
            self.title = doc["title"]
        for key in ("title", "sents", "vertexSet"):
            if key not in doc:
                self.fail(key, "missing key")
        if not isinstance(doc["title"], str):
            self.fail("title", f"must be a string, got {type(doc['title']).__name__}")
        sent_lengths = self.check_sents(doc["sents"])
        self.check_vertex_set(doc["vertexSet"], sent_lengths)
        if "labels" in doc:
            self.check_labels(doc["labels"], len(doc["vertexSet"]))
        elif self.require_labels:
            self.fail("labels", "missing key (this split must be annotated)")

    def check_sents(self, sents: Any) -> list[int]:
        if not isinstance(sents, list) or not sents:
            self.fail("sents", "must be a non-empty list of sentences")
        for s, sent in enumerate(sents):
            if not isinstance(sent, list) or not sent:
                self.fail(f"sents[{s}]", "must be a non-empty list of words")
            for w, word in enumerate(sent):
                if not isinstance(word, str):
                    self.fail(f"sents[{s}][{w}]", f"must be a string, got {type(word).__name__}")
        return [len(sent) for sent in sents]

    def check_vertex_set(self, vertex_set: Any, sent_lengths: list[int]) -> None:
        if not isinstance(vertex_set, list):
            self.fail("vertexSet", "must be a list of entities")
        for e, entity in enumerate(vertex_set):
            if not isinstance(entity, list):
                self.fail(f"vertexSet[{e}]", "an entity must be a list of mentions")
            if not entity:
                self.fail(f"vertexSet[{e}]", "entity has no mention")
            for m, mention in enumerate(entity):
                self.check_mention(mention, f"vertexSet[{e}][{m}]", sent_lengths)

    def check_mention(self, mention: Any, field: str, sent_lengths: list[int]) -> None:
        if not isinstance(mention, Mapping):
            self.fail(field, "a mention must be a JSON object")
        for key in ("name", "pos", "sent_id", "type"):
            if key not in mention:
                self.fail(f"{field}.{key}", "missing key")
        if not isinstance(mention["name"], str):
            self.fail(f"{field}.name", "must be a string")
        sent_id = mention["sent_id"]
        if not _is_int(sent_id) or not 0 <= sent_id < len(sent_lengths):
            self.fail(f"{field}.sent_id", f"{sent_id!r} is not a sentence index "
                      f"(the document has {len(sent_lengths)} sentences)")
        pos = mention["pos"]
        if (not isinstance(pos, list) or len(pos) != 2 or not all(_is_int(p) for p in pos)):
            self.fail(f"{field}.pos", f"must be [start, end] word offsets, got {pos!r}")
        start, end = pos
        if not 0 <= start < end <= sent_lengths[sent_id]:
            self.fail(f"{field}.pos", f"{pos} lies outside sentence {sent_id}, which has "
                      f"{sent_lengths[sent_id]} words (need 0 <= start < end <= length)")

    def check_labels(self, labels: Any, num_entities: int) -> None:
        if not isinstance(labels, list):
            self.fail("labels", "must be a list")
        for i, label in enumerate(labels):
            field = f"labels[{i}]"
            if not isinstance(label, Mapping):
                self.fail(field, "a label must be a JSON object")
            for key in ("h", "t", "r"):
                if key not in label:
                    self.fail(f"{field}.{key}", "missing key")
            for key in ("h", "t"):
                idx = label[key]
                if not _is_int(idx) or not 0 <= idx < num_entities:
                    self.fail(f"{field}.{key}", f"{idx!r} points at no entity "
                              f"(the document has {num_entities})")
            if label["h"] == label["t"]:
                self.fail(field, f"head and tail are the same entity ({label['h']})")
            r = label["r"]
            if not isinstance(r, str):
                self.fail(f"{field}.r", f"must be a relation id string, got {r!r}")
            if self.rel2id is not None and r not in self.rel2id:
                self.fail(f"{field}.r", f"unknown relation {r!r} (not in rel2id)")
            if "evidence" in label and not (isinstance(label["evidence"], list) and all(
                    _is_int(s) for s in label["evidence"])):
                self.fail(f"{field}.evidence", "must be a list of sentence indices")


def validate_document(doc: Any, *, path: str | PathLike | None = None,
                      doc_index: int | None = None, rel2id: Mapping[str, int] | None = None,
                      require_labels: bool = False) -> None:
    """Raise :class:`DocREDFormatError` if ``doc`` is not a well-formed DocRED document.

    Args:
        doc: the document (a dict as read from JSON).
        path, doc_index: where the document comes from; used in error messages only.
        rel2id: when given, every label's relation must be one of its keys.
        require_labels: when True, a document without ``labels`` is an error.
    """
    _DocumentChecker(doc, path=path, doc_index=doc_index, rel2id=rel2id,
                     require_labels=require_labels).run()


def validate_documents(docs: Iterable[Any], *, path: str | PathLike | None = None,
                       rel2id: Mapping[str, int] | None = None,
                       require_labels: bool = False, unique_titles: bool = True) -> None:
    """Validate every document of a split.

    Titles must be unique unless ``unique_titles=False`` (the scorer and the official
    ``result.json`` key documents by title; a training file used only for its facts may repeat
    titles).
    """
    seen: dict[str, int] = {}
    for i, doc in enumerate(docs):
        validate_document(doc, path=path, doc_index=i, rel2id=rel2id,
                          require_labels=require_labels)
        title = doc["title"]
        if unique_titles and title in seen:
            raise DocREDFormatError(f"duplicate title, also document {seen[title]}", path=path,
                                    doc_index=i, title=title, field="title")
        seen[title] = i


def read_json_file(path: Path) -> Any:
    """Parse a JSON file; a missing file or invalid JSON is a :class:`DocREDFormatError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DocREDFormatError("no such file", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DocREDFormatError(f"not valid JSON ({err})", path=path) from None


def load_docred(path: str | PathLike, *, rel2id: Mapping[str, int] | None = None,
                require_labels: bool = False, unique_titles: bool = True) -> list[dict]:
    """Read a DocRED-format JSON file and validate every document.

    Args:
        path: the JSON file (a list of documents).
        rel2id: when given, labels with a relation outside it are an error.
        require_labels: when True, every document must carry ``labels``.
        unique_titles: when True (default), two documents with the same title are an error.

    Returns:
        The documents, as read.

    Raises:
        DocREDFormatError: the file is missing, not JSON, or a document is malformed.
    """
    path = Path(path)
    docs = read_json_file(path)
    if not isinstance(docs, list):
        raise DocREDFormatError(f"must hold a JSON list of documents, got {type(docs).__name__}",
                                path=path)
    validate_documents(docs, path=path, rel2id=rel2id, require_labels=require_labels,
                       unique_titles=unique_titles)
    return docs
