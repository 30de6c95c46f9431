"""Tokenizing a DocRED document with entity markers.

Following ATLOP and the paper (section 2.1), a ``*`` marker is inserted before the first and after
the last word of every mention, and the marked word sequence is tokenized with the encoder's fast
tokenizer. A mention is represented by the token of its opening ``*``. Documents of any length are
tokenized in full: splitting into encoder windows is the encoder's job
(:mod:`pyg_docre.nn.encoder`).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MARKER", "TokenizedDocument", "tokenize_document"]

#: The entity marker inserted around every mention.
MARKER = "*"


@dataclass(frozen=True)
class TokenizedDocument:
    """A document as encoder input.

    Attributes:
        input_ids: ``[T]`` token ids, including the tokenizer's special tokens
            (``[CLS] ... [SEP]`` for BERT, ``<s> ... </s>`` for RoBERTa).
        token_sent: ``[T]`` the sentence of each token; -1 for special tokens. Markers belong
            to the sentence of the mention they mark.
        mention_token_index: per entity, per mention (vertexSet order): position of the
            mention's opening ``*`` in ``input_ids``.
        num_prefix_special, num_suffix_special: special tokens the tokenizer put before and
            after the text (1 and 1 for BERT and RoBERTa).
    """

    input_ids: list[int]
    token_sent: list[int]
    mention_token_index: list[list[int]]
    num_prefix_special: int
    num_suffix_special: int

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize_document(doc: dict, tokenizer) -> TokenizedDocument:
    """Insert mention markers into a (validated) DocRED document and tokenize it.

    One marker opens before a word where any mention starts and one closes after a word where
    any mention ends, so mentions that start at the same word share their ``*`` token (as in
    ATLOP).

    Args:
        doc: a DocRED document (see :mod:`pyg_docre.data.docred`).
        tokenizer: a Hugging Face *fast* tokenizer (see :func:`pyg_docre.pretrained.load_tokenizer`).
    """
    starts, ends = set(), set()
    for entity in doc["vertexSet"]:
        for mention in entity:
            start, end = mention["pos"]
            starts.add((mention["sent_id"], start))
            ends.add((mention["sent_id"], end - 1))

    pieces: list[str] = []      # words and markers, tokenized as pre-split words
    piece_sent: list[int] = []
    opening_piece: dict[tuple[int, int], int] = {}  # (sent, word) -> piece of its opening marker
    for s, sent in enumerate(doc["sents"]):
        for w, word in enumerate(sent):
            if (s, w) in starts:
                opening_piece[(s, w)] = len(pieces)
                pieces.append(MARKER)
                piece_sent.append(s)
            pieces.append(word)
            piece_sent.append(s)
            if (s, w) in ends:
                pieces.append(MARKER)
                piece_sent.append(s)

    encoding = tokenizer(pieces, is_split_into_words=True, add_special_tokens=True,
                         truncation=False, verbose=False)
    input_ids = list(encoding["input_ids"])
    word_ids = encoding.word_ids()
    token_sent = [-1 if p is None else piece_sent[p] for p in word_ids]
    first_token: dict[int, int] = {}
    for position, p in enumerate(word_ids):
        if p is not None and p not in first_token:
            first_token[p] = position

    mention_token_index = []
    for entity in doc["vertexSet"]:
        positions = []
        for mention in entity:
            piece = opening_piece[(mention["sent_id"], mention["pos"][0])]
            if piece not in first_token:
                raise ValueError(f"document {doc['title']!r}: the tokenizer produced no token for "
                                 f"the marker {MARKER!r}; choose a tokenizer that keeps it")
            positions.append(first_token[piece])
        mention_token_index.append(positions)

    num_prefix = next((i for i, p in enumerate(word_ids) if p is not None), len(word_ids))
    num_suffix = next((i for i, p in enumerate(reversed(word_ids)) if p is not None),
                      len(word_ids))
    return TokenizedDocument(input_ids, token_sent, mention_token_index, num_prefix, num_suffix)
