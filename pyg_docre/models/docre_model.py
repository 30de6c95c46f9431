r"""DocRE-BSI: a Hugging Face encoder, a Graph-Transformer Network over the HDG, and a
grouped bilinear classifier with localized context pooling (paper section 2).

.. code-block:: text

    input_ids --encoder (windows)--> H [T, d], A (mention rows), H^(l)
         --node_features--> F^(0) [N, d] --GTN (L layers)--> F^(L) [N, d]
         --classifier(F^(L)[e_s], F^(L)[e_o], c_so)--> logits [P, R + 1]

With ``config.baseline = True`` the GTN is skipped (entity features straight from the encoder,
logsumexp over mentions) and no auxiliary output is computed: the ATLOP baseline on the same code
path. A saved model is a directory with ``config.json``, ``model.safetensors`` (no pickle) and the
tokenizer, reloaded by :meth:`DocREModel.from_pretrained`.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch_geometric
from torch import Tensor, nn

from pyg_docre.config import (ConfigError, ModelConfig, ObjectivesConfig, build_section,
                              check_gtn_section, upgrade_model_section)
from pyg_docre.data import PAIR_EDGE_TYPE, GTNInputs, node_ptr, pair_batch, to_gtn_inputs
from pyg_docre.io import atomic_write_dir, recover_dir
from pyg_docre.nn.attention import BatchSizes, document_sizes
from pyg_docre.nn.conv import GTNStructure
from pyg_docre.nn.encoder import WindowedEncoder, select_attention_implementation
from pyg_docre.nn.gtn import GTN
from pyg_docre.pretrained import resolve_pretrained
from pyg_docre.utils import read_back

from .checkpoint import (CONFIG_NAME, FORMAT, TOKENIZER_DIR, WEIGHTS_NAME, CheckpointError,
                         build_encoder, load_checkpoint_tokenizer, load_weights,
                         read_checkpoint_config)
from .classifier import GroupedBilinearClassifier, localized_context
from .features import node_features

__all__ = ["DocREOutput", "DocREModel", "CheckpointError"]


@dataclass
class DocREOutput:
    """What one forward pass gives.

    Attributes:
        logits: ``[P, R + 1]`` pair logits, column 0 = TH.
        node_features: ``F^(0) [N, d]`` from the encoder's last layer.
        gtn_output: ``F^(L) [N, d]`` (None for the baseline).
        layer_features: encoder layer ``l`` -> ``\\hat F^(l) [N, d]`` for SA-KD / KD.
        reconstruction: ``(F^(L)[masked], F^(0)[masked])`` from the masked second GTN pass.
    """

    logits: Tensor
    node_features: Tensor
    gtn_output: Optional[Tensor] = None
    layer_features: dict[int, Tensor] = field(default_factory=dict)
    reconstruction: Optional[tuple[Tensor, Tensor]] = None


class DocREModel(nn.Module):
    """The DocRE-BSI model (or, with ``config.baseline``, ATLOP).

    Args:
        config: the model section of the experiment config; ``config.gtn`` holds the arguments
            of the :class:`~pyg_docre.nn.GTN`, passed on one to one.
        rel2id: relation P-id -> class id (``"Na"`` = 0).
        distill_layers: encoder layers whose node features the forward pass returns in
            training (``layer_features``, for SA-KD / KD); layers ``1..num_hidden_layers``.
        reconstruction: compute the masked second GTN pass in training (eq. 7).
        mask_ratio: the fraction of mention nodes masked by that pass.
        encoder: a Hugging Face ``PreTrainedModel``; by default loaded from ``config.encoder``.

    :meth:`pyg_docre.config.ObjectivesConfig.model_outputs` gives the last three from the
    objectives of an experiment.

    Attributes:
        rel_info: optional relation P-id -> human-readable name (``rel_info.json``), saved in and
            restored from ``config.json`` so that a saved model can name its relations
            (``None`` when unknown; :class:`pyg_docre.RelationExtractor` then shows P-ids).
    """

    def __init__(self, config: ModelConfig, rel2id: dict[str, int], *,
                 distill_layers: Sequence[int] = (), reconstruction: bool = False,
                 mask_ratio: float = 0.2, encoder: nn.Module | None = None):
        super().__init__()
        if config.baseline and (distill_layers or reconstruction):
            raise ValueError("the ATLOP baseline (model.baseline) has no GTN: no distilled "
                             "layers and no node reconstruction")
        if not 0.0 < mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {mask_ratio}")
        self.config = config
        self.rel2id = dict(rel2id)
        self.rel_info: Optional[dict[str, str]] = None
        self.reconstruction = bool(reconstruction)
        self.mask_ratio = float(mask_ratio)
        if encoder is None:
            from transformers import AutoModel
            encoder = AutoModel.from_pretrained(resolve_pretrained(config.encoder))
            select_attention_implementation(encoder)
        channels = encoder.config.hidden_size
        self.channels = channels
        distill = list(distill_layers)
        num_layers = encoder.config.num_hidden_layers
        bad = [l for l in distill if not 1 <= l <= num_layers]
        if bad:
            raise ValueError(f"objectives.distill_layers: {bad} outside 1..{num_layers} "
                             f"(layers of {config.encoder})")
        self.distill_layers = distill
        self.encoder = WindowedEncoder(encoder, max_length=config.max_length, layers=distill,
                                       max_padding=config.encoder_max_padding)
        if config.baseline:
            self.gtn = None
            self.mask_vector = None
        else:
            check_gtn_section(config.gtn, channels)
            self.gtn = GTN(channels, **dataclasses.asdict(config.gtn))
            self.mask_vector = nn.Parameter(torch.zeros(channels))  # device: host (init)
            nn.init.normal_(self.mask_vector, std=0.02)
        self.classifier = GroupedBilinearClassifier(
            channels, num_classes=len(self.rel2id), emb_size=config.emb_size or channels,
            block_size=config.block_size)

    @property
    def num_classes(self) -> int:
        return len(self.rel2id)

    def new_parameters(self):
        """Parameters that are not the pretrained encoder's (they get ``lr_new``)."""
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder_ids]

    def gtn_structure(self, view: GTNInputs, num_tokens: int,
                      sizes: BatchSizes | None = None) -> GTNStructure:
        """The GTN's structure tensors of a batch, built once for every GTN pass over it (the
        main pass and node reconstruction's masked pass); no host synchronisation with
        ``sizes``."""
        assert self.gtn is not None
        kwargs = view.graph_kwargs()
        del kwargs["token_edge_index"]
        return self.gtn.structure(**kwargs, num_nodes=view.num_nodes, num_tokens=num_tokens,
                                  sizes=sizes)

    def compile_gtn(self, **kwargs) -> bool:
        """Compile the GTN stack in place with :func:`torch.compile` (``dynamic=True`` unless
        given; :meth:`torch.nn.Module.compile`, so parameters, state dict and checkpoints are
        unchanged). The model hands the GTN a prebuilt structure (:meth:`gtn_structure`), so
        the stack is one graph without breaks and new batch shapes do not recompile it.
        Returns ``False`` (and does nothing) without a GTN."""
        if self.gtn is None:
            return False
        kwargs.setdefault("dynamic", True)
        self.gtn.compile(**kwargs)
        return True

    def run_gtn(self, x: Tensor, view: GTNInputs, token_x: Tensor,
                structure: GTNStructure | None = None) -> Tensor:
        # build_hdg validated the graph when it was built, so the layers' host-side input checks
        # (a dozen synchronisations per call) run only in PyG's debug mode.
        return self.gtn(x, token_x=token_x, check_inputs=torch_geometric.is_debug_enabled(),
                        structure=structure, **view.graph_kwargs())

    def forward(self, data, view: GTNInputs | None = None) -> DocREOutput:
        """Score every candidate pair of a (batched) HDG.

        The auxiliary outputs (``layer_features``, ``reconstruction``) are computed only in
        training mode and when the objectives ask for them.
        """
        view = to_gtn_inputs(data) if view is None else view
        token_ptr, entity_ptr = node_ptr(data, "token"), node_ptr(data, "entity")
        pairs = data[PAIR_EDGE_TYPE].edge_index
        pairs_batch = pair_batch(pairs, entity_ptr)
        host = read_host_values(data, token_ptr, entity_ptr, pairs_batch,
                                view if self.gtn is not None else None)
        # (build_hdg put every document's special tokens in place: the encoder's check of the
        # split documents' edges, a read from the device, runs only in PyG's debug mode)
        enc = self.encoder(data["token"].input_ids, host.token_ptr, query_index=host.queries,
                           num_prefix_special=host.num_prefix_special,
                           num_suffix_special=host.num_suffix_special,
                           layers=self.distill_layers if self.training else (),
                           check_inputs=torch_geometric.is_debug_enabled())
        hidden = enc.hidden
        x0 = node_features(hidden, data, view)
        out = DocREOutput(logits=None, node_features=x0)
        if self.gtn is None:
            entity_x = x0[view.entity_pos]
        else:
            structure = self.gtn_structure(view, hidden.size(0), host.gtn_sizes)
            out.gtn_output = self.run_gtn(x0, view, hidden, structure)
            entity_x = out.gtn_output[view.entity_pos]
            if self.training:
                out.layer_features = {l: node_features(enc.layer_hidden[l], data, view)
                                      for l in self.distill_layers}
                if self.reconstruction:
                    out.reconstruction = self._reconstruct(x0, view, hidden, structure)

        context = localized_context(hidden, token_ptr, enc.query_attention,
                                    data["mention"].entity, entity_ptr, pairs, pairs_batch,
                                    bounds=(host.token_ptr, host.entity_ptr, host.pair_ptr))
        out.logits = self.classifier(entity_x[pairs[0]], entity_x[pairs[1]], context)
        return out

    def _reconstruct(self, x0: Tensor, view: GTNInputs, hidden: Tensor,
                     structure: GTNStructure | None = None):
        """Mask a random ``mask_ratio`` of the mention nodes, run the GTN again (eq. 7)."""
        mentions = view.mention_pos
        if mentions.numel() == 0:
            return None
        num_masked = max(1, round(self.mask_ratio * mentions.numel()))
        masked = mentions[torch.randperm(mentions.numel(), device=mentions.device)[:num_masked]]
        keep = torch.ones(x0.size(0), 1, dtype=x0.dtype, device=x0.device)
        keep[masked] = 0
        x_masked = x0 * keep + (1 - keep) * self.mask_vector.to(x0.dtype)
        out = self.run_gtn(x_masked, view, hidden, structure)
        return out[masked], x0[masked].detach()

    # ----------------------------------------------------------------------------------------
    # Saving and loading (safetensors + JSON, no pickle)
    # ----------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | PathLike, tokenizer=None) -> None:
        """Write ``config.json``, ``model.safetensors`` (and ``tokenizer/``) atomically.

        Everything is written into a temporary sibling folder, fsynced, and swapped into place
        (:func:`pyg_docre.io.atomic_write_dir`): an interrupted save leaves the previous
        checkpoint intact.
        """
        from safetensors.torch import save_model

        meta = {
            "format": FORMAT,
            "model": dataclasses.asdict(self.config),
            "outputs": {"distill_layers": list(self.distill_layers),
                        "reconstruction": self.reconstruction, "mask_ratio": self.mask_ratio},
            "rel2id": self.rel2id,
            "encoder_config": self.encoder.model.config.to_dict(),
        }
        if self.rel_info is not None:
            meta["rel_info"] = dict(self.rel_info)

        def write(tmp: Path) -> None:
            save_model(self, str(tmp / WEIGHTS_NAME))
            (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))

        atomic_write_dir(directory, write)

    @classmethod
    def from_pretrained(cls, directory: str | PathLike, map_location: str | torch.device = "cpu"
                        ) -> "DocREModel":
        """Rebuild a model saved by :meth:`save_pretrained`, on ``map_location``.

        No network and no pickle: the architecture comes from ``config.json`` (read through the
        strict config loader), the model is built, moved to ``map_location`` and the weights
        are loaded there. Any damage is a :class:`~pyg_docre.models.checkpoint.CheckpointError`
        naming the file.
        """
        directory = recover_dir(Path(directory))
        meta = read_checkpoint_config(directory)
        config_file = directory / CONFIG_NAME
        try:
            model_config, outputs = _model_arguments(meta)
        except ConfigError as err:
            raise CheckpointError(f"{config_file}: {err}") from None
        encoder = build_encoder(meta, directory)
        try:
            model = cls(model_config, meta["rel2id"], **outputs, encoder=encoder)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{config_file}: cannot build the model ({err})") from None
        model.to(torch.device(map_location))
        load_weights(model, directory)
        model.rel_info = meta.get("rel_info")
        return model

    @staticmethod
    def load_tokenizer(directory: str | PathLike):
        """The tokenizer saved beside a model by :meth:`save_pretrained` (local files only)."""
        return load_checkpoint_tokenizer(recover_dir(Path(directory)))


def _model_arguments(meta: dict) -> tuple[ModelConfig, dict]:
    """The :class:`ModelConfig` and the training outputs (``distill_layers``, ...) recorded in
    a checkpoint's ``config.json``, through the strict config loader.

    Checkpoints written before the ``model.gtn`` section (flat ``gtn_layers``, ``attention``,
    ...) and before ``outputs`` (the whole ``objectives`` section) still load: the flat keys
    are moved with a ``FutureWarning`` (save the model again to update the file), the outputs
    derived from the objectives as the model of that time did.
    """
    values, moved = upgrade_model_section(meta["model"])
    if moved:
        warnings.warn(f"{CONFIG_NAME} uses the flat model keys {moved} of configs written before "
                      f"the model.gtn section; they were read as model.gtn.* (save the model "
                      f"again to update the file)", FutureWarning, stacklevel=3)
    model_config = build_section(ModelConfig, values, "model.")
    if "outputs" in meta:
        outputs = meta["outputs"]
        if not isinstance(outputs, dict) or set(outputs) != {"distill_layers", "reconstruction",
                                                              "mask_ratio"}:
            raise ConfigError(f"'outputs' must be an object with distill_layers, "
                              f"reconstruction and mask_ratio (got {outputs!r})")
    else:
        objectives = build_section(ObjectivesConfig, meta["objectives"], "objectives.")
        outputs = objectives.model_outputs(model_config.baseline)
    return model_config, outputs


@dataclass
class HostValues:
    """What the forward pass needs to know on the host about its batch (lists of ints)."""

    token_ptr: list[int]            #: ``B + 1`` token boundaries
    entity_ptr: list[int]           #: ``B + 1`` entity boundaries
    pair_ptr: list[int]             #: ``B + 1`` candidate-pair boundaries
    queries: list[int]              #: ``M`` flat token positions of the mentions' ``*``
    num_prefix_special: int
    num_suffix_special: int
    gtn_sizes: BatchSizes | None    #: the GTN's batch sizes (``None`` without a GTN)


def read_host_values(data, token_ptr: Tensor, entity_ptr: Tensor, pairs_batch: Tensor,
                     view: GTNInputs | None = None) -> HostValues:
    """The batch's boundaries, mention queries, special token counts and (with ``view``) the
    GTN's sizes, read back from the device in one copy.

    The encoder plans its windows from them on the host, the GTN and context pooling take them
    as given: on a GPU the host then waits for the device's queue once per forward pass
    instead of at each of these places.
    """
    num_docs = data["document"].num_nodes
    query = data["mention"].token_index
    device = query.device
    pair_ptr = torch.searchsorted(pairs_batch, torch.arange(num_docs + 1, device=device))
    specials = [data.num_prefix_special, data.num_suffix_special]
    batched = [isinstance(v, Tensor) and v.device == device for v in specials]
    parts = [token_ptr, entity_ptr, pair_ptr, query]
    parts += [v for v, on_device in zip(specials, batched) if on_device]
    if view is not None:        # the longest document's GTN nodes
        parts.append(document_sizes(view.batch, view.num_nodes, num_docs, device).max()
                     if view.num_nodes else torch.zeros((), dtype=torch.long, device=device))
    host = read_back(parts)
    tok, ent, pair, queries = host[:4]
    rest = iter(host[4:])
    prefix, suffix = (_first_int(next(rest) if on_device else v)
                      for v, on_device in zip(specials, batched))
    gtn_sizes = None
    if view is not None:
        longest_tokens = max((b - a for a, b in zip(tok[:-1], tok[1:])), default=0)
        gtn_sizes = (BatchSizes(num_docs, next(rest)[0], longest_tokens) if view.num_nodes
                     else BatchSizes(1, 0, tok[-1]))
    return HostValues(token_ptr=tok, entity_ptr=ent, pair_ptr=pair, queries=queries,
                      num_prefix_special=prefix, num_suffix_special=suffix,
                      gtn_sizes=gtn_sizes)


def _first_int(value) -> int:
    """Graph attributes batch to lists/tensors; all documents share one tokenizer."""
    if isinstance(value, Tensor):
        values = value.view(-1).tolist()
    elif isinstance(value, (list, tuple)):
        values = [int(v) for v in value]
    else:
        return int(value)
    if len(set(values)) != 1:
        raise ValueError(f"documents of one batch were tokenized differently: {values}")
    return values[0]
