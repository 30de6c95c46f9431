"""Relation vocabularies: ``rel2id.json`` (class ids) and ``rel_info.json`` (relation names)."""
from __future__ import annotations

from os import PathLike
from pathlib import Path

from .docred import DocREDFormatError, read_json_file

__all__ = ["NO_RELATION", "load_rel2id", "load_rel_info", "id2rel"]

#: Class 0 of every ``rel2id``: "no relation", the adaptive threshold class TH.
NO_RELATION = "Na"


def _read_json_object(path: Path) -> dict:
    obj = read_json_file(path)
    if not isinstance(obj, dict):
        raise DocREDFormatError("must hold a JSON object", path=path)
    return obj


def load_rel2id(path: str | PathLike) -> dict[str, int]:
    """Read ``rel2id.json``: relation P-id -> class id, with ``"Na"`` (no relation, TH) = 0.

    The ids must be exactly ``0 .. num_relations``, so that they index the columns of the
    label matrix ``y [num_pairs, num_relations + 1]``.
    """
    path = Path(path)
    rel2id = _read_json_object(path)
    for rel, idx in rel2id.items():
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise DocREDFormatError(f"class id must be an integer, got {idx!r}", path=path,
                                    field=rel)
    if rel2id.get(NO_RELATION) != 0:
        raise DocREDFormatError(f"{NO_RELATION!r} (no relation) must have class id 0",
                                path=path, field=NO_RELATION)
    if sorted(rel2id.values()) != list(range(len(rel2id))):
        raise DocREDFormatError("class ids must be 0 .. N-1, each used once", path=path)
    return dict(rel2id)


def id2rel(rel2id: dict[str, int]) -> list[str]:
    """The inverse of ``rel2id``: ``id2rel(rel2id)[class_id]`` is the relation P-id."""
    return [r for r, _ in sorted(rel2id.items(), key=lambda kv: kv[1])]


def load_rel_info(path: str | PathLike) -> dict[str, str]:
    """Read ``rel_info.json``: relation P-id -> human-readable name."""
    path = Path(path)
    info = _read_json_object(path)
    for rel, name in info.items():
        if not isinstance(name, str):
            raise DocREDFormatError("relation name must be a string", path=path, field=rel)
    return dict(info)
