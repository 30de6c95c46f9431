"""DWIE (Zaporojets et al., 2021) in the DocRED format: the conversion behind ``prepare.py dwie``.

DWIE ships one JSON file per article (``data/annos_with_content/DW_<n>.json`` after its
``src/dwie_download.py`` has added the text). Each holds ``id``, ``content`` (the text:
``title\\nteaser\\nbody``), ``tags`` (``train`` or ``test``), ``mentions`` (``begin``/``end``
character offsets, end exclusive, ``text``, ``concept``), ``concepts`` (``concept`` id, ``tags``
such as ``type::person``) and ``relations`` (``s``, ``p``, ``o``: concept ids and the predicate).
:func:`convert` turns a folder of them into DocRED-format splits, following the preprocessing
of Ru et al. (2021) that the paper uses, as far as it is published:

* Splits: DWIE's ``train`` tag gives ``train.json`` and ``dev.json``, its ``test`` tag
  ``test.json``. ``dev.json`` holds the ``dev_size`` (default :data:`DEV_SIZE` = 98, the paper's
  count) training documents whose ``sha256(id)`` is smallest: a fixed, reproducible choice that
  depends neither on file order nor on the Python version. Ru et al.'s own list is not public.
* Documents keep their order by DWIE id; the DocRED ``title`` is the DWIE ``id``.
* Text: ``content`` is split into lines at ``\\n``, each line into sentences by
  :func:`pyg_docre.text.split_sentences`, and into words by :func:`pyg_docre.text.tokenize`;
  words are cut at mention edges and neighbouring sentences that a mention straddles are merged
  (:func:`pyg_docre.text.text_to_document`), so every mention is a word span of one sentence.
* Mentions are checked: ``content[begin:end]`` must equal ``text`` (with the two normalisations
  that DWIE's own download script applies before the same check: no-break spaces read as spaces,
  zero-width spaces dropped). A mismatch is an error naming the file, the document and the field.
* Entities: the concepts that have at least one mention, in the order of ``concepts``, each
  with its mentions in text order. Concepts without mentions are dropped, and so are the
  relations that involve one; both are counted. DocRED type of an entity: the first of
  :data:`TYPE_RULES` that matches one of the concept's ``type::`` tags, else ``MISC``.
* Labels: one per distinct ``(s, p, o)``, ``evidence`` empty (DWIE has none). A relation of a
  concept with itself (DocRED pairs have ``h != t``) is dropped and counted, as are duplicates.
* Documents without any entity (no mention at all) are dropped and counted; documents without
  a relation are kept (every pair of their entities is a negative). This is the rule that gives
  the paper's counts: DWIE has 702 ``train`` and 100 ``test`` articles, 700 and 99 of them with a
  mention, and the paper reports 602 train + 98 dev and 99 test documents.
* ``rel2id``: ``"Na"`` = 0, then every predicate that occurs in a written split, sorted.

Standard library only, like ``prepare.py``; :mod:`pyg_docre.text` is imported from this
checkout (it needs nothing else), so the package need not be installed.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_ROOT, "pyg_docre", "text.py")) and _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)   # this checkout's pyg_docre.text (standard library only)
from pyg_docre.text import TextFormatError, split_sentences, text_to_document  # noqa: E402

__all__ = ["DEV_SIZE", "TYPE_RULES", "DWIEFormatError", "DWIEConversion", "find_source_files",
           "sentence_spans", "entity_type", "convert_document", "convert"]

#: Training documents held out as ``dev.json`` (the paper: 602 train, 98 dev, 99 test).
DEV_SIZE = 98
#: ``type::`` tag of a DWIE concept -> DocRED entity type; the first rule that matches wins.
TYPE_RULES = (("person", "PER"), ("organization", "ORG"), ("location", "LOC"), ("gpe", "LOC"),
              ("time", "TIME"), ("money", "NUM"))
DEFAULT_TYPE = "MISC"
NO_RELATION = "Na"
#: The keys a document must have, with their JSON types.
_REQUIRED = (("id", str), ("content", str), ("tags", list), ("mentions", list),
             ("concepts", list), ("relations", list))


class DWIEFormatError(ValueError):
    """A DWIE file is malformed; the message names the file, the document id and the field."""

    def __init__(self, path: str, reason: str, *, doc_id: Optional[str] = None,
                 field: Optional[str] = None):
        where = [path] + ([f"document {doc_id}"] if doc_id else []) + ([field] if field else [])
        super().__init__(": ".join(where + [reason]))
        self.path, self.doc_id, self.field = path, doc_id, field


#: The name ``prepare.py`` catches for every converter.
ConversionError = DWIEFormatError


@dataclass
class DWIEConversion:
    """The converted splits (DocRED documents), ``rel2id`` and the counts of what was dropped."""

    splits: dict[str, list[dict]]
    rel2id: dict[str, int]
    stats: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        s = self.stats
        sizes = ", ".join(f"{len(docs)} {name}" for name, docs in self.splits.items())
        return (f"{s['documents']} DWIE documents ({s['documents_train']} train, "
                f"{s['documents_test']} test) -> {sizes}; {len(self.rel2id) - 1} relations; "
                f"dropped: {s['documents_without_entities']} documents without entities, "
                f"{s['concepts_without_mentions']} concepts without mentions and "
                f"{s['relations_to_concepts_without_mentions']} relations to them, "
                f"{s['self_relations']} relations of a concept with itself, "
                f"{s['duplicate_relations']} duplicate relations; kept "
                f"{s['documents_without_relations']} documents without relations; "
                f"{s['merged_sentences']} sentence boundaries removed inside mentions")


def find_source_files(source: str) -> tuple[str, list[str]]:
    """The folder of DWIE JSON files under ``source`` and its ``*.json`` files, sorted.

    ``source`` itself, ``source/dwie/`` (``prepare.py``'s ``DIR/NAME/`` convention) or
    ``source/data/annos_with_content/`` (a DWIE checkout), the first that holds JSON files.
    """
    for folder in (source, os.path.join(source, "dwie"),
                   os.path.join(source, "data", "annos_with_content")):
        if os.path.isdir(folder):
            names = sorted(n for n in os.listdir(folder)
                           if n.endswith(".json") and not n.startswith("."))
            if names:
                return folder, [os.path.join(folder, n) for n in names]
    raise DWIEFormatError(source, "no DWIE *.json files here, in dwie/ or in "
                          "data/annos_with_content/ (run DWIE's src/dwie_download.py, then pass "
                          "its data/annos_with_content folder)")


def sentence_spans(content: str) -> list[tuple[int, int]]:
    """Sentence spans of a DWIE text: its lines (split at ``\\n``), each split by
    :func:`pyg_docre.text.split_sentences`."""
    spans, start = [], 0
    for line in content.split("\n"):
        spans.extend((start + s, start + e) for s, e in split_sentences(line))
        start += len(line) + 1
    return spans


def entity_type(tags) -> str:
    """The DocRED type of a concept from its ``tags`` (see :data:`TYPE_RULES`)."""
    types = {t[len("type::"):] for t in tags if isinstance(t, str) and t.startswith("type::")}
    return next((docred for dwie, docred in TYPE_RULES if dwie in types), DEFAULT_TYPE)


def _normalise_mention(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u200b", "")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def convert_document(raw, path: str, stats: Optional[Counter] = None) -> tuple[str, Optional[dict]]:
    """One DWIE document -> ``(split, DocRED document)``; the document is ``None`` when it is
    dropped (no entity). ``stats`` collects the counts of dropped items.

    Raises:
        DWIEFormatError: naming ``path``, the document id and the field.
    """
    stats = Counter() if stats is None else stats
    if not isinstance(raw, dict):
        raise DWIEFormatError(path, f"a DWIE document must be a JSON object, got {type(raw).__name__}")
    doc_id = raw.get("id") if isinstance(raw.get("id"), str) else None

    def fail(where: str, reason: str):
        raise DWIEFormatError(path, reason, doc_id=doc_id, field=where)

    for key, kind in _REQUIRED:
        if key not in raw:
            hint = (" (DWIE's data/annos files have no text: run its src/dwie_download.py and use "
                    "data/annos_with_content)") if key == "content" else ""
            fail(key, "missing field" + hint)
        if not isinstance(raw[key], kind):
            fail(key, f"must be a {'string' if kind is str else 'list'}, got {type(raw[key]).__name__}")
    content = raw["content"]
    splits = [t for t in ("train", "test") if t in raw["tags"]]
    if len(splits) != 1:
        fail("tags", f"must hold exactly one of 'train' and 'test', got {raw['tags']!r}")

    concepts: dict[int, dict] = {}
    for i, concept in enumerate(raw["concepts"]):
        where = f"concepts[{i}]"
        if not isinstance(concept, dict) or not _is_int(concept.get("concept")):
            fail(f"{where}.concept", "missing or not an integer")
        if concept["concept"] in concepts:
            fail(f"{where}.concept", f"concept id {concept['concept']} is used twice")
        if not isinstance(concept.get("tags", []), list):
            fail(f"{where}.tags", "must be a list")
        concepts[concept["concept"]] = concept

    spans: dict[int, list[tuple[int, int]]] = {c: [] for c in concepts}
    for i, mention in enumerate(raw["mentions"]):
        where = f"mentions[{i}]"
        if not isinstance(mention, dict):
            fail(where, "a mention must be a JSON object")
        for key in ("begin", "end", "text", "concept"):
            if key not in mention:
                fail(f"{where}.{key}", "missing field")
        begin, end, text = mention["begin"], mention["end"], mention["text"]
        if not (_is_int(begin) and _is_int(end) and 0 <= begin < end <= len(content)):
            fail(f"{where}.begin", f"[{begin!r}, {end!r}) is not a span of content "
                 f"({len(content)} characters)")
        if not isinstance(text, str) or content[begin:end] != _normalise_mention(text):
            fail(f"{where}.text", f"{text!r} does not match content[{begin}:{end}] = "
                 f"{content[begin:end]!r}")
        if not content[begin:end].strip():
            fail(f"{where}.text", "covers only whitespace")
        if mention["concept"] not in concepts:
            fail(f"{where}.concept", f"{mention['concept']!r} is not a concept id of this document")
        spans[mention["concept"]].append((begin, end))

    index: dict[int, int] = {}   # concept id -> entity index
    entities = []
    for cid, concept in concepts.items():
        if not spans[cid]:
            stats["concepts_without_mentions"] += 1
            continue
        index[cid] = len(entities)
        entities.append({"mentions": [list(s) for s in sorted(spans[cid])],
                         "type": entity_type(concept.get("tags", []))})

    labels, seen = [], set()
    for i, rel in enumerate(raw["relations"]):
        where = f"relations[{i}]"
        if not isinstance(rel, dict):
            fail(where, "a relation must be a JSON object")
        for key in ("s", "p", "o"):
            if key not in rel:
                fail(f"{where}.{key}", "missing field")
            if key != "p" and rel[key] not in concepts:
                fail(f"{where}.{key}", f"{rel[key]!r} is not a concept id of this document")
        if not isinstance(rel["p"], str) or not rel["p"]:
            fail(f"{where}.p", f"must be a non-empty string, got {rel['p']!r}")
        s, p, o = rel["s"], rel["p"], rel["o"]
        if s not in index or o not in index:
            stats["relations_to_concepts_without_mentions"] += 1
        elif s == o:
            stats["self_relations"] += 1
        elif (s, p, o) in seen:
            stats["duplicate_relations"] += 1
        else:
            seen.add((s, p, o))
            labels.append({"h": index[s], "t": index[o], "r": p, "evidence": []})

    split = splits[0]
    if not entities:
        stats["documents_without_entities"] += 1
        return split, None
    stats["documents_without_relations"] += not labels
    sentences = sentence_spans(content)
    try:
        doc, _ = text_to_document(content, entities, title=doc_id, sentences=sentences)
    except TextFormatError as exc:   # the checks above should make this unreachable
        fail("mentions", str(exc))
    stats["merged_sentences"] += len(sentences) - len(doc["sents"])
    doc["labels"] = labels
    return split, doc


def _read(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DWIEFormatError(path, f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise DWIEFormatError(path, f"cannot read ({exc.strerror or exc})") from None


def _dev_key(doc: dict) -> str:
    return hashlib.sha256(doc["title"].encode("utf-8")).hexdigest()


def _id_key(doc: dict):
    title = doc["title"]
    digits = title.rsplit("_", 1)[-1]
    return (0, int(digits), title) if digits.isdigit() else (1, 0, title)


def convert(source: str, dev_size: int = DEV_SIZE) -> DWIEConversion:
    """Convert the DWIE files under ``source`` (see :func:`find_source_files`).

    Returns the splits ``train``, ``dev``, ``test`` (documents ordered by DWIE id), ``rel2id``
    and the counts. Reads and checks every file before returning: nothing is written here.

    Raises:
        DWIEFormatError: a malformed file, a duplicate document id, or too few training documents
            for ``dev_size``.
    """
    folder, paths = find_source_files(source)
    stats: Counter = Counter()
    kept: dict[str, list[dict]] = {"train": [], "test": []}
    origin: dict[str, str] = {}
    for path in paths:
        split, doc = convert_document(_read(path), path, stats)
        stats["documents"] += 1
        stats[f"documents_{split}"] += 1
        if doc is None:
            continue
        if doc["title"] in origin:
            raise DWIEFormatError(path, f"id {doc['title']!r} also in {origin[doc['title']]}",
                                  doc_id=doc["title"], field="id")
        origin[doc["title"]] = path
        kept[split].append(doc)
    if not _is_int(dev_size) or dev_size < 1:
        raise DWIEFormatError(folder, f"dev size must be a positive integer, got {dev_size!r}")
    for split, docs in kept.items():
        if not docs:
            raise DWIEFormatError(folder, f"no {split} document with entities (DWIE's tag "
                                  f"{split!r}) among {len(paths)} files")
    if dev_size >= len(kept["train"]):
        raise DWIEFormatError(folder, f"only {len(kept['train'])} training documents with "
                              f"entities: cannot hold out {dev_size} as dev")
    dev_titles = {d["title"] for d in sorted(kept["train"], key=_dev_key)[:dev_size]}
    splits = {
        "train": sorted((d for d in kept["train"] if d["title"] not in dev_titles), key=_id_key),
        "dev": sorted((d for d in kept["train"] if d["title"] in dev_titles), key=_id_key),
        "test": sorted(kept["test"], key=_id_key),
    }
    relations = sorted({lab["r"] for docs in splits.values() for d in docs for lab in d["labels"]})
    if NO_RELATION in relations:
        raise DWIEFormatError(folder, f"a relation is called {NO_RELATION!r}, the name of class 0")
    rel2id = {NO_RELATION: 0, **{r: i for i, r in enumerate(relations, start=1)}}
    return DWIEConversion(splits, rel2id, stats)
