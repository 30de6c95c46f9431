"""Reading the files of a saved :class:`~pyg_docre.models.docre_model.DocREModel`, strictly.

A checkpoint folder holds ``config.json`` (the model config, the training outputs the model
computes, ``rel2id`` and the encoder's config), ``model.safetensors`` and ``tokenizer/``. Every kind of damage (a missing
folder or file, invalid JSON, a missing key, truncated or foreign weights, weights of another
architecture, a broken tokenizer) raises one :class:`CheckpointError` naming the file; nothing
here touches the network.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from pyg_docre.errors import CheckpointError
from pyg_docre.nn.encoder import select_attention_implementation

__all__ = ["CheckpointError", "CONFIG_NAME", "WEIGHTS_NAME", "TOKENIZER_DIR", "FORMAT",
           "read_checkpoint_config", "load_weights", "load_checkpoint_tokenizer"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
FORMAT = "pyg_docre.DocREModel"
_REQUIRED_KEYS = ("model", "rel2id", "encoder_config")


def checkpoint_dir(directory: str | Path) -> Path:
    """``directory`` as a Path, or a :class:`CheckpointError` when it is not a folder."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is not a folder" if directory.exists() else "does not exist"
        raise CheckpointError(f"{directory}: {what} (expected a saved model folder with "
                              f"{CONFIG_NAME}, {WEIGHTS_NAME} and {TOKENIZER_DIR}/)")
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint, with its required keys checked."""
    path = checkpoint_dir(directory) / CONFIG_NAME
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; not a saved DocREModel") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
    for key in _REQUIRED_KEYS:
        if key not in meta:
            raise CheckpointError(f"{path}: required key {key!r} is missing")
    if "outputs" not in meta and "objectives" not in meta:  # older checkpoints: "objectives"
        raise CheckpointError(f"{path}: required key 'outputs' is missing")
    for key in ("model", "outputs", "objectives", "rel2id", "encoder_config"):
        if key in meta and not isinstance(meta[key], dict):
            raise CheckpointError(f"{path}: {key!r} must be a JSON object")
    if "model_type" not in meta["encoder_config"]:
        raise CheckpointError(f"{path}: 'encoder_config' has no 'model_type'")
    return meta


def build_encoder(meta: dict[str, Any], directory: Path) -> nn.Module:
    """An untrained encoder of the architecture recorded in ``config.json`` (no download)."""
    from transformers import AutoConfig, AutoModel

    enc_cfg = dict(meta["encoder_config"])
    try:
        encoder_config = AutoConfig.for_model(enc_cfg.pop("model_type"), **enc_cfg)
        encoder = AutoModel.from_config(encoder_config)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{directory / CONFIG_NAME}: 'encoder_config' does not describe "
                              f"an encoder ({err})") from None
    select_attention_implementation(encoder)
    return encoder


def load_weights(model: nn.Module, directory: str | Path) -> None:
    """Load ``model.safetensors`` into ``model``, onto the device its parameters are on."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    device = next(model.parameters()).device
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device=str(device))
        missing, unexpected = sorted(missing), sorted(unexpected)
    except (SafetensorError, OSError, EOFError) as err:
        raise CheckpointError(f"{path}: damaged or not a safetensors file ({err})") from None
    except RuntimeError as err:     # shapes of another architecture
        first = str(err).strip().splitlines()
        raise CheckpointError(f"{path}: the weights do not match the architecture in "
                              f"{CONFIG_NAME} ({' '.join(first[:3])[:300]})") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the weights do not match the architecture in {CONFIG_NAME} "
            f"({len(missing)} missing, e.g. {missing[:2]}; {len(unexpected)} unexpected, "
            f"e.g. {unexpected[:2]})")


def load_checkpoint_tokenizer(directory: str | Path):
    """The tokenizer saved in ``DIR/tokenizer/``, from local files only."""
    from pyg_docre.pretrained import load_tokenizer

    path = checkpoint_dir(directory) / TOKENIZER_DIR
    if not path.is_dir():
        raise CheckpointError(f"{path}: missing (the model folder has no saved tokenizer)")
    try:
        return load_tokenizer(path, local_files_only=True)
    except Exception as err:  # transformers raises many types for damaged tokenizer files
        raise CheckpointError(f"{path}: the tokenizer cannot be loaded "
                              f"({type(err).__name__}: {str(err)[:300]})") from None
