"""Plain text to a DocRED document, with exact character offsets.

The model reads DocRED documents: sentences of words, and entities as lists of mentions at word
positions. This module builds such a document from plain text and entity mentions given as
character spans, and keeps the way back: every word and every mention knows its
``[start, end)`` character offsets in the original text.

* :func:`split_sentences` and :func:`tokenize` are rule-based and keep offsets exact
  (``text[start:end] == token``); they need no model.
* :func:`text_to_document` splits words at mention edges when a mention does not align with word
  boundaries (``"US-based"`` with a mention ``"US"`` gives the words ``US``, ``-based``), and
  merges sentences that a mention would straddle.
* Without given entities, an NER backend finds the mentions and a coreference step groups them
  into entities. Both are plain callables (see :class:`NERBackend` and :class:`CorefResolver`), so
  any tagger can be plugged in. The default backend is :class:`SpacyNER` (the optional extra
  ``text``: ``pip install 'pyg_docre[text]'``, plus an English spaCy pipeline, see its docstring);
  the default coreference is :func:`same_string_coref` (mentions with the same normalised text are
  one entity).

Example:
    >>> doc, spans = text_to_document("Paris is the capital of France.",
    ...                               [{"mentions": [[0, 5]], "type": "LOC"},
    ...                                {"mentions": [[24, 30]], "type": "LOC"}])
    >>> doc["sents"]
    [['Paris', 'is', 'the', 'capital', 'of', 'France', '.']]
    >>> doc["vertexSet"][1]
    [{'name': 'France', 'pos': [5, 6], 'sent_id': 0, 'type': 'LOC'}]
    >>> spans
    [[[0, 5]], [[24, 30]]]
"""
from __future__ import annotations

import re
import unicodedata
from typing import Callable, Mapping, Optional, Protocol, Sequence, runtime_checkable

from pyg_docre.errors import FormatError

__all__ = [
    "TextFormatError", "MissingBackendError", "NERBackend", "CorefResolver", "SpacyNER",
    "split_sentences", "tokenize", "same_string_coref", "text_to_document", "find_entities",
    "SPACY_TO_DOCRED", "DEFAULT_ENTITY_TYPE",
]

#: The DocRED type given to a mention whose entity has no ``type``.
DEFAULT_ENTITY_TYPE = "MISC"

#: spaCy (OntoNotes) entity labels -> DocRED entity types (PER, ORG, LOC, TIME, NUM, MISC).
SPACY_TO_DOCRED = {
    "PERSON": "PER", "ORG": "ORG", "NORP": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC",
    "DATE": "TIME", "TIME": "TIME", "CARDINAL": "NUM", "QUANTITY": "NUM", "MONEY": "NUM",
    "PERCENT": "NUM", "ORDINAL": "NUM",
}

TEXT_EXTRA_HINT = "pip install 'pyg_docre[text]'"


class TextFormatError(FormatError):
    """Plain-text input or its entity spans are malformed; the message names the field."""


class MissingBackendError(ImportError):
    """No NER backend is available to find entity mentions; the message says what to install."""


@runtime_checkable
class NERBackend(Protocol):
    """Finds entity mentions in a text.

    Called as ``backend(text)``; returns a list of mentions, each a mapping with ``start`` and
    ``end`` (character offsets, ``text[start:end]`` is the mention) and optionally ``type`` (a
    DocRED type such as ``PER``; :data:`DEFAULT_ENTITY_TYPE` when missing).
    """

    def __call__(self, text: str) -> list[Mapping]: ...


@runtime_checkable
class CorefResolver(Protocol):
    """Groups mentions into entities.

    Called as ``coref(text, mentions)`` with the backend's mentions; returns a list of groups,
    each a list of indices into ``mentions``; every mention in exactly one group.
    """

    def __call__(self, text: str, mentions: Sequence[Mapping]) -> list[list[int]]: ...


# ---------------------------------------------------------------------------------------------
# Sentences and words with offsets
# ---------------------------------------------------------------------------------------------

# A word: letters/digits joined by inner apostrophes, hyphens, periods or commas between digits
# ("don't", "state-of-the-art", "3.5", "1,000"), or any other single non-space character.
_WORD = re.compile(r"\w+(?:(?:['\u2019\-]|(?<=\d)[.,](?=\d))\w+)*|[^\w\s]", re.UNICODE)
# A candidate sentence end: . ! ? (possibly repeated, possibly followed by closing quotes or
# brackets), then whitespace.
_SENT_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "inc",
    "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "no", "fig", "gen", "col", "lt", "gov", "sen", "rep", "u.s", "u.k", "a.m", "p.m",
}


def _is_abbreviation(text: str, end: int) -> bool:
    """Whether the period ending at ``end`` closes an abbreviation or an initial ("J.")."""
    start = end - 1
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:end].rstrip(".").lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``[start, end)`` of ``text``, without surrounding whitespace.

    Rules: a sentence ends after ``.``, ``!`` or ``?`` (and closing quotes/brackets) followed by
    whitespace and then an upper-case letter, a digit or an opening quote, unless the period ends
    a known abbreviation or a one-letter initial; a blank line always ends a sentence.

    Example:
        >>> t = "Dr. Smith lives in Paris. He works at the U.N. in New York!"
        >>> [t[s:e] for s, e in split_sentences(t)]
        ['Dr. Smith lives in Paris.', 'He works at the U.N. in New York!']
    """
    cuts = []
    for m in _SENT_END.finditer(text):
        end = m.end()
        rest = text[end:].lstrip()
        if not rest:
            continue
        if "\n\n" in text[end:len(text) - len(rest)].replace("\r", ""):
            cuts.append(end)
            continue
        nxt = rest[0]
        if not (nxt.isupper() or nxt.isdigit() or nxt in "\"'\u201c\u2018([" ):
            continue
        if m.group().startswith(".") and m.group().rstrip("\"'\u201d\u2019)]") == "." \
                and _is_abbreviation(text, m.start() + 1):
            continue
        cuts.append(end)
    for m in re.finditer(r"\n[ \t\r]*\n", text):   # paragraph breaks
        cuts.append(m.start())
    spans = []
    start = 0
    for cut in sorted(set(cuts)) + [len(text)]:
        if cut <= start:
            continue
        chunk = text[start:cut]
        left = len(chunk) - len(chunk.lstrip())
        right = len(chunk.rstrip())
        if right > left:
            spans.append((start + left, start + right))
        start = cut
    return spans


def tokenize(text: str, start: int = 0, end: Optional[int] = None) -> list[tuple[int, int]]:
    """Word spans ``[start, end)`` in ``text[start:end]``, as offsets into ``text``.

    Example:
        >>> t = "The U.S.-based firm's 1,000 staff."
        >>> [t[s:e] for s, e in tokenize(t)]
        ['The', 'U', '.', 'S', '.', '-', 'based', "firm's", '1,000', 'staff', '.']
    """
    end = len(text) if end is None else end
    return [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]


# ---------------------------------------------------------------------------------------------
# Entities -> DocRED document
# ---------------------------------------------------------------------------------------------

def _check_entities(text: str, entities: Sequence[Mapping]) -> list[list[tuple[int, int]]]:
    if not isinstance(entities, (list, tuple)):
        raise TextFormatError(f"entities: expected a list of {{'mentions': [[start, end], ...]}},"
                              f" got {type(entities).__name__}")
    spans = []
    for e, entity in enumerate(entities):
        field = f"entities[{e}]"
        if not isinstance(entity, Mapping) or "mentions" not in entity:
            raise TextFormatError(f"{field}: expected a dict with 'mentions' "
                                  f"(a list of [start, end] character offsets)")
        mentions = entity["mentions"]
        if not isinstance(mentions, (list, tuple)) or not mentions:
            raise TextFormatError(f"{field}.mentions: must be a non-empty list of [start, end]")
        entity_spans = []
        for m, span in enumerate(mentions):
            mfield = f"{field}.mentions[{m}]"
            if (not isinstance(span, (list, tuple)) or len(span) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)):
                raise TextFormatError(f"{mfield}: must be [start, end] character offsets, "
                                      f"got {span!r}")
            start, end = span
            if not 0 <= start < end <= len(text):
                raise TextFormatError(f"{mfield}: {list(span)} is not a span of the text "
                                      f"(need 0 <= start < end <= {len(text)})")
            if not text[start:end].strip():
                raise TextFormatError(f"{mfield}: {list(span)} covers only whitespace")
            entity_spans.append((start, end))
        if "type" in entity and entity["type"] is not None and not isinstance(entity["type"], str):
            raise TextFormatError(f"{field}.type: must be a string, got {entity['type']!r}")
        spans.append(entity_spans)
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _check_sentences(text: str, sentences: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for i, span in enumerate(sentences):
        if (not isinstance(span, (list, tuple)) or len(span) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)):
            raise TextFormatError(f"sentences[{i}]: must be [start, end] character offsets, "
                                  f"got {span!r}")
        start, end = span
        low = spans[-1][1] if spans else 0
        if not low <= start < end <= len(text):
            raise TextFormatError(f"sentences[{i}]: {list(span)} is not a span of the text after "
                                  f"the previous sentence (need {low} <= start < end <= {len(text)})")
        if not tokenize(text, start, end):
            raise TextFormatError(f"sentences[{i}]: {list(span)} holds no word")
        spans.append((start, end))
    return spans


def text_to_document(text: str, entities: Sequence[Mapping], *, title: str = "text",
                     sentences: Optional[Sequence[Sequence[int]]] = None
                     ) -> tuple[dict, list[list[list[int]]]]:
    """A DocRED document for ``text`` and its entities, and each mention's character span.

    Args:
        text: the plain text.
        entities: one dict per entity: ``{"mentions": [[start, end], ...], "type": "PER"}``
            (character offsets, ``end`` exclusive; ``type`` optional, default ``MISC``).
        title: the document's title.
        sentences: sentence spans ``[start, end)`` to use instead of
            :func:`split_sentences` (a corpus with its own line structure, e.g. DWIE's
            ``title\\nteaser\\nbody``): sorted, not overlapping, each holding a word; text
            outside them is dropped. Neighbours that a mention straddles are merged as usual.

    Returns:
        ``(document, spans)``: the DocRED dict (``title``, ``sents``, ``vertexSet``; entity order
        as given, mentions in the given order) and, per entity, its mentions' ``[start, end]``
        character spans (surrounding whitespace trimmed). A mention's words cover exactly its
        span: words are split at mention edges when they do not align.

    Raises:
        TextFormatError: a malformed entity or a span outside the text (the message names
            ``entities[i].mentions[j]``).
    """
    if not isinstance(text, str):
        raise TextFormatError(f"text: expected a string, got {type(text).__name__}")
    if not text.strip():
        raise TextFormatError("text: empty (nothing but whitespace)")
    spans = [[_trim(text, s, e) for s, e in ent] for ent in _check_entities(text, entities)]
    edges = sorted({x for ent in spans for span in ent for x in span})

    # Sentences (they cover every non-space character); merge neighbours that a mention
    # straddles.
    sentences = split_sentences(text) if sentences is None else _check_sentences(text, sentences)
    merged: list[list[int]] = []
    for s, e in sentences:
        if merged and any(ms < merged[-1][1] and me > s for ent in spans for ms, me in ent):
            merged[-1][1] = e
        else:
            merged.append([s, e])
    sents_words: list[list[tuple[int, int]]] = []
    for s, e in merged:
        words = []
        for ws, we in tokenize(text, s, e):
            cuts = [x for x in edges if ws < x < we]
            bounds = [ws] + cuts + [we]
            for a, b in zip(bounds, bounds[1:]):
                a, b = _trim(text, a, b)
                if b > a:
                    words.append((a, b))
        sents_words.append(words)
    # Mention -> (sentence, word span).
    word_at: dict[int, tuple[int, int]] = {}
    word_end: dict[int, tuple[int, int]] = {}
    for si, words in enumerate(sents_words):
        for wi, (ws, we) in enumerate(words):
            word_at[ws] = (si, wi)
            word_end[we] = (si, wi)
    vertex_set = []
    for e, (entity, ent_spans) in enumerate(zip(entities, spans)):
        etype = entity.get("type") or DEFAULT_ENTITY_TYPE
        mentions = []
        for m, (ms, me) in enumerate(ent_spans):
            first = min((w for w in word_at if ms <= w < me), default=None)
            last = max((w for w in word_end if ms < w <= me), default=None)
            if first is None or last is None:
                raise TextFormatError(f"entities[{e}].mentions[{m}]: {[ms, me]} "
                                      f"({text[ms:me]!r}) holds no word")
            (s1, w1), (s2, w2) = word_at[first], word_end[last]
            assert s1 == s2, "sentences straddled by a mention are merged"
            mentions.append({"name": text[ms:me], "pos": [w1, w2 + 1], "sent_id": s1,
                             "type": etype})
        vertex_set.append(mentions)
    # Every sentence holds a word: it spans non-space text, and any non-space character is one.
    doc = {"title": title, "sents": [[text[a:b] for a, b in words] for words in sents_words],
           "vertexSet": vertex_set}
    char_spans = [[[s, e] for s, e in ent] for ent in spans]
    return doc, char_spans


# ---------------------------------------------------------------------------------------------
# NER and coreference
# ---------------------------------------------------------------------------------------------

def _normalise(name: str) -> str:
    name = unicodedata.normalize("NFKC", name).casefold()
    name = re.sub(r"^(the|a|an)\s+", "", name.strip())
    return re.sub(r"\s+", " ", name)


def same_string_coref(text: str, mentions: Sequence[Mapping]) -> list[list[int]]:
    """Mentions whose normalised text is the same form one entity (the default coreference).

    Normalisation: Unicode NFKC, case folding, a leading article dropped, whitespace collapsed.
    Groups come in order of first mention.

    Example:
        >>> t = "The Beatles met Elvis. the beatles liked him."
        >>> same_string_coref(t, [{"start": 0, "end": 11}, {"start": 16, "end": 21},
        ...                       {"start": 23, "end": 34}])
        [[0, 2], [1]]
    """
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(mentions):
        groups.setdefault(_normalise(text[m["start"]:m["end"]]), []).append(i)
    return list(groups.values())


class SpacyNER:
    """An :class:`NERBackend` on a spaCy pipeline with an ``ner`` component.

    Args:
        model: a spaCy pipeline name or path (default ``en_core_web_sm``), or a loaded
            ``spacy.Language``.
        label_map: spaCy label -> DocRED type (default :data:`SPACY_TO_DOCRED`; unmapped labels
            become ``MISC``).

    Install: ``pip install 'pyg_docre[text]'`` installs spaCy. spaCy's English pipelines are not
    published on PyPI by their authors; install one with ``python -m spacy download
    en_core_web_sm`` (it downloads from spaCy's GitHub releases), or pass a path to a pipeline.

    Example:
        >>> ner = SpacyNER()                                    # doctest: +SKIP
        >>> ner("Paris is the capital of France.")              # doctest: +SKIP
        [{'start': 0, 'end': 5, 'type': 'LOC'}, {'start': 24, 'end': 30, 'type': 'LOC'}]
    """

    def __init__(self, model="en_core_web_sm", label_map: Mapping[str, str] | None = None):
        try:
            import spacy
        except ImportError:
            raise MissingBackendError(
                f"finding entities in plain text needs an NER backend: {TEXT_EXTRA_HINT} "
                f"(spaCy) and an English pipeline (python -m spacy download en_core_web_sm), or "
                f"pass the entities yourself (entities=[{{'mentions': [[start, end]]}}, ...]) "
                f"or a backend (ner=callable)") from None
        if isinstance(model, str):
            try:
                model = spacy.load(model)
            except OSError as err:
                raise MissingBackendError(
                    f"spaCy is installed but its pipeline {model!r} is not ({err}); install it "
                    f"with: python -m spacy download {model}") from None
        if "ner" not in model.pipe_names and "entity_ruler" not in model.pipe_names:
            raise MissingBackendError(f"the spaCy pipeline {model.meta.get('name')!r} has no "
                                      f"ner component (pipes: {model.pipe_names})")
        self.nlp = model
        self.label_map = dict(SPACY_TO_DOCRED if label_map is None else label_map)

    def __call__(self, text: str) -> list[dict]:
        return [{"start": ent.start_char, "end": ent.end_char,
                 "type": self.label_map.get(ent.label_, DEFAULT_ENTITY_TYPE)}
                for ent in self.nlp(text).ents]

    def __repr__(self) -> str:
        return f"SpacyNER({self.nlp.meta.get('lang')}_{self.nlp.meta.get('name')})"


def find_entities(text: str, ner: Callable[[str], list[Mapping]] | None = None,
                  coref: Callable[[str, Sequence[Mapping]], list[list[int]]] | None = None
                  ) -> list[dict]:
    """Entities of ``text`` in the form :func:`text_to_document` takes, found by ``ner`` and
    grouped by ``coref``.

    Args:
        ner: an :class:`NERBackend`; default a :class:`SpacyNER` (raises
            :class:`MissingBackendError`, naming the extra to install, when spaCy is missing).
        coref: a :class:`CorefResolver`; default :func:`same_string_coref`.

    Returns:
        ``[{"mentions": [[start, end], ...], "type": ...}, ...]``; an entity's type is its first
        mention's.
    """
    ner = SpacyNER() if ner is None else ner
    coref = same_string_coref if coref is None else coref
    mentions = []
    for i, m in enumerate(ner(text)):
        try:
            start, end = int(m["start"]), int(m["end"])
        except (KeyError, TypeError, ValueError):
            raise TextFormatError(f"NER backend {ner!r}: mention {i} must have integer 'start' "
                                  f"and 'end', got {m!r}") from None
        if not 0 <= start < end <= len(text):
            raise TextFormatError(f"NER backend {ner!r}: mention {i} [{start}, {end}] is not a "
                                  f"span of the text ({len(text)} characters)")
        mentions.append({"start": start, "end": end,
                         "type": m.get("type") or DEFAULT_ENTITY_TYPE})
    groups = coref(text, mentions)
    covered = sorted(i for g in groups for i in g)
    if covered != list(range(len(mentions))):
        raise TextFormatError(f"coreference {coref!r}: groups must cover every mention index "
                              f"0..{len(mentions) - 1} exactly once, got {groups!r}")
    return [{"mentions": [[mentions[i]["start"], mentions[i]["end"]] for i in g],
             "type": mentions[g[0]]["type"]} for g in groups if g]
