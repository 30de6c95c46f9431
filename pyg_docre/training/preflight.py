"""Checks an experiment can start, without training: what ``pyg-docre train --dry-run`` runs.

It reads what a run would read first (data files and document ranges, ``rel2id``, ``rel_info``,
the encoder's configuration and tokenizer, the device and precision) and reports the first
problem as a :class:`PreflightError` naming the config key and the file. It does not load the
encoder's weights nor build graphs, so it takes seconds.
"""
from __future__ import annotations

from pathlib import Path

from pyg_docre.config import ExperimentConfig
from pyg_docre.errors import PreflightError

__all__ = ["PreflightError", "preflight"]


def preflight(config: ExperimentConfig, base_dir: str | Path = ".") -> dict:
    """Validate data files, document ranges, encoder and device of ``config``.

    Returns:
        A summary: documents per split, number of relations, encoder layers and hidden size,
        the device.

    Raises:
        PreflightError: the first problem found.
    """
    from pyg_docre.data import (DocREDFormatError, load_docred, load_rel2id, load_rel_info,
                                parse_doc_range)
    from pyg_docre.pretrained import load_tokenizer, resolve_pretrained

    from .trainer import autocast_factory, resolve_device

    base_dir = Path(base_dir)
    data = config.data
    summary: dict = {"splits": {}}
    try:
        rel2id = load_rel2id(data.resolve(data.rel2id, base_dir))
        summary["relations"] = len(rel2id) - 1
        if data.rel_info is not None:
            path = data.resolve(data.rel_info, base_dir)
            summary["rel_info"] = str(path) if path.is_file() else None
            if path.is_file():
                load_rel_info(path)
        splits = {"train": data.train, "dev": data.dev, "test": data.test,
                  "ign_train": data.ign_train}
        for name, split in splits.items():
            if split is None:
                continue
            path = data.resolve(split.file, base_dir)
            docs = load_docred(path, rel2id=rel2id, unique_titles=name in ("dev", "test"))
            try:
                summary["splits"][name] = len(parse_doc_range(split.docs, len(docs)))
            except ValueError as err:
                raise PreflightError(f"data.{name}.docs: {err} ({path})") from None
    except DocREDFormatError as err:
        raise PreflightError(str(err)) from None

    try:
        from transformers import AutoConfig

        encoder_config = AutoConfig.from_pretrained(resolve_pretrained(config.model.encoder))
        load_tokenizer(config.model.encoder)
    except (OSError, ImportError, ValueError) as err:
        raise PreflightError(f"model.encoder: cannot load {config.model.encoder!r}: "
                             f"{str(err).splitlines()[0]}") from None
    layers = encoder_config.num_hidden_layers
    distill = config.objectives.model_outputs(config.model.baseline)["distill_layers"]
    bad = [l for l in distill if not 1 <= l <= layers]
    if bad:
        raise PreflightError(f"objectives.distill_layers: {bad} outside 1..{layers} (layers of "
                             f"{config.model.encoder})")
    summary["encoder"] = {"name": config.model.encoder, "layers": layers,
                          "hidden_size": encoder_config.hidden_size}
    try:
        device = resolve_device(config.training.device)
        autocast_factory(config.training.precision, device)
    except (RuntimeError, ValueError) as err:
        raise PreflightError(f"training.device / training.precision: {err}") from None
    summary["device"] = str(device)
    return summary
