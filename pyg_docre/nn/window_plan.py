r"""Planning a batch's encoder windows on the host (see :mod:`pyg_docre.nn.encoder`).

:class:`~pyg_docre.nn.encoder.WindowedEncoder` cuts long documents into overlapping windows,
runs the windows through the model in padded calls, merges the window states back into document
tokens and maps the mention queries' attention rows to document positions. Every index this takes
depends only on the documents' lengths and the query positions, so it is computed here, on the
host, from plain Python lists and CPU tensors (:func:`plan_batch`), and moved to the model's
device in one copy (:meth:`WindowPlan.to`). On a GPU the host then never waits for the device
inside the encoder: a boolean mask, ``nonzero``, ``bincount`` or ``.tolist()`` on a device
tensor would stop it until the device's queue is empty, and the windowed encoder used to do about
twenty of them per batch.

Layouts (``Wc`` windows of one model call padded to ``N`` tokens; ``P`` (query, window) pairs of
the call, called triples, in the order of the queries; ``H`` heads; document ``b`` has ``T_b``
tokens and ``Q_b`` queries):

* ``src [Wc, N]``: the flat input position of every window token, ``-1`` for padding.
* ``own_index [K]``: positions into ``src.view(-1)`` of the tokens the window *owns* (the merge
  averages over owning windows); ``dst [K_total]`` their flat input positions, all calls in order.
* ``key_pos [Wc, N]``: the document position of every owned token, ``-1`` for added special
  tokens and padding.
* per triple: ``w`` (window inside the call), ``r`` (its row inside the window), ``base`` (where
  the query's ``[H, T_b]`` block starts in the flat row buffer), ``t_len`` (``T_b``),
  ``windows_per_query`` (over how many windows the query's rows are averaged).
* ``kept [K']``: positions into ``[P * H * N]`` (the triples' rows) of the keys whose document
  position is known, in row-major order.
* explicit rows (the triples grouped by window as in ``to_dense_batch``): ``w_sorted``,
  ``r_sorted``, ``dense_pos`` (sorted triple -> row of ``[Wc * Q_max]``), ``gather_pos`` (triple
  in query order -> row of ``[Wc * Q_max]``) and ``q_max``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["plan_windows", "plan_forward_batches", "check_max_padding", "plan_queries",
           "plan_batch", "WindowPlan", "ForwardCall"]


def plan_windows(num_content: int, window_content: int, overlap: int) -> list[tuple[int, int]]:
    """Content ranges ``[start, end)`` of the windows of a document with ``num_content`` tokens.

    One window ``(0, num_content)`` when it fits in ``window_content``; otherwise the fewest full
    windows of ``window_content`` tokens in which consecutive windows share at least ``overlap``
    tokens, spread evenly (first starts at 0, last ends at ``num_content``).
    """
    if window_content < 1:
        raise ValueError(f"window_content must be >= 1, got {window_content}")
    if not 0 <= overlap < window_content:
        raise ValueError(f"overlap must be in [0, {window_content}), got {overlap}")
    if num_content <= window_content:
        return [(0, num_content)]
    step = window_content - overlap
    last_start = num_content - window_content
    n = 1 + -(-last_start // step)                    # 1 + ceil(last_start / step)
    starts = [i * last_start // (n - 1) for i in range(n)]
    return [(s, s + window_content) for s in starts]


def plan_forward_batches(lengths: Sequence[int], max_windows: int | None = None,
                         max_padding: float | None = None) -> list[list[int]]:
    """Group windows into model calls: indices into ``lengths``, longest first.

    A call takes the next windows in order of decreasing length until it holds ``max_windows``
    (``None``: no limit) or the next window would make the call's padding, i.e.
    ``(k * n_max - sum(n_i)) / (k * n_max)`` for ``k`` windows padded to the longest
    ``n_max``, exceed ``max_padding`` (``None``: no limit; ``0.0``: only windows of equal length
    share a call). Ties keep the input order.
    """
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
    check_max_padding(max_padding, allow_auto=False)
    order = sorted(range(len(lengths)), key=lambda w: -lengths[w])
    batches: list[list[int]] = []
    total = 0
    for w in order:
        if batches:
            batch = batches[-1]
            width = lengths[batch[0]]               # the longest window of the call
            cells = width * (len(batch) + 1)
            fits = max_windows is None or len(batch) < max_windows
            if fits and (max_padding is None
                         or cells - (total + lengths[w]) <= max_padding * cells):
                batch.append(w)
                total += lengths[w]
                continue
        batches.append([w])
        total = lengths[w]
    return batches


def check_max_padding(value, allow_auto: bool = True) -> None:
    """Raise ``ValueError`` unless ``value`` is a valid ``max_padding``: ``None``, a number in
    ``[0, 1]`` (not a bool), or (``allow_auto``) ``"auto"``. The message has no argument name,
    so that callers (the layer, the config) can put theirs in front."""
    if value is None or (allow_auto and value == "auto"):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        choices = ("'auto', " if allow_auto else "") + "null or a number in [0, 1]"
        raise ValueError(f"must be {choices}, got {value!r}")


def plan_queries(query_index: Tensor, ptr: Tensor, doc_windows: Sequence[Sequence[tuple]],
                 doc_first_window: Sequence[int], p: int, s: int, window_content: int) -> dict:
    """Which windows own each query, and the query's row inside each of them (host tensors).

    Returns ``query_doc [Q]``, ``query_local [Q]`` (rank of the query among its document's
    queries, in ``query_index`` order), ``doc_count [B]``, the triples ``trip_q``, ``trip_w``,
    ``trip_r`` (query, global window, row; single-window documents first, then the split ones
    document by document) and ``windows_per_query [Q]``.
    """
    query_doc = torch.searchsorted(ptr[1:].contiguous(), query_index, right=True)
    pos = query_index - ptr[query_doc]                      # position in its document
    num_docs = len(doc_windows)
    doc_count = torch.bincount(query_doc, minlength=num_docs)
    # rank of each query among the queries of its document, in query_index order
    order = torch.argsort(query_doc, stable=True)
    first_of_doc = torch.cumsum(doc_count, 0) - doc_count
    query_local = torch.empty_like(query_index)
    query_local[order] = torch.arange(query_index.numel()) - first_of_doc[query_doc[order]]
    # documents that are one window (the usual case): one triple per query, vectorised
    one_window = torch.tensor([len(r) == 1 for r in doc_windows], dtype=torch.bool)
    first_window = torch.tensor(list(doc_first_window), dtype=torch.long)
    single = one_window[query_doc] if num_docs else query_doc.new_zeros(0, dtype=torch.bool)
    sel = single.nonzero().view(-1)
    trip_q, trip_w, trip_r = [sel], [first_window[query_doc[sel]]], [pos[sel]]
    for b in range(num_docs):
        ranges = doc_windows[b]
        if len(ranges) == 1:
            continue
        sel = (query_doc == b).nonzero().view(-1)
        if sel.numel() == 0:
            continue
        first = doc_first_window[b]
        t = pos[sel]
        length = int(ptr[b + 1] - ptr[b])
        starts = torch.tensor([r[0] for r in ranges])
        c = t - p                                            # content position
        is_content = (t >= p) & (t < length - s)
        member = is_content[:, None] & (starts[None, :] <= c[:, None]) \
            & (c[:, None] < starts[None, :] + window_content)
        member[:, 0] |= t < p                                # prefix: first window
        member[:, -1] |= t >= length - s                     # suffix: last window
        qi, wi = member.nonzero(as_tuple=True)
        tq = t[qi]
        row = torch.where(tq < p, tq,
                          torch.where(tq >= length - s, tq - (length - s) + p + window_content,
                                      tq - starts[wi]))     # p + (c - start)
        trip_q.append(sel[qi])
        trip_w.append(wi + first)
        trip_r.append(row)
    cat = (lambda xs: torch.cat(xs) if xs else torch.zeros(0, dtype=torch.long))
    trip_q, trip_w, trip_r = cat(trip_q), cat(trip_w), cat(trip_r)
    windows_per_query = torch.bincount(trip_q, minlength=query_index.numel())
    return {"query_doc": query_doc, "query_local": query_local, "doc_count": doc_count,
            "trip_q": trip_q, "trip_w": trip_w, "trip_r": trip_r,
            "windows_per_query": windows_per_query}


@dataclass
class ForwardCall:
    """One model call: its windows and their index tensors (the module docstring's layouts)."""

    windows: list[int]
    tensors: dict[str, Tensor]
    padded: bool = True
    num_triples: int = 0
    q_max: int = 0
    #: ``[Wc, N]`` host-only: which tokens each window owns (planning uses it; not moved by
    #: :meth:`WindowPlan.to`, and ``None`` there)
    own: Tensor | None = None


@dataclass
class WindowPlan:
    """Everything :class:`~pyg_docre.nn.encoder.WindowedEncoder` indexes with, for one batch.

    Attributes:
        doc_windows: per document, the content ranges of its windows.
        calls: the model calls, longest windows first.
        dst: ``[K_total]`` the flat input position of every owned window token, calls in order.
        query_doc, query_local: ``[Q]`` each query's document and row in its document's block
            (``None`` without queries).
        doc_shape: per document ``(Q_b, T_b)``; ``doc_offset``: where its ``[Q_b, H, T_b]``
            block starts in the flat row buffer of ``buffer_size`` elements.
    """

    doc_windows: list[list[tuple[int, int]]]
    calls: list[ForwardCall]
    dst: Tensor
    query_doc: Tensor | None = None
    query_local: Tensor | None = None
    doc_shape: list[tuple[int, int]] = field(default_factory=list)
    doc_offset: list[int] = field(default_factory=list)
    buffer_size: int = 0

    @property
    def num_windows(self) -> list[int]:
        return [len(ranges) for ranges in self.doc_windows]

    def to(self, device: torch.device) -> "WindowPlan":
        """The plan with its tensors on ``device``, moved in one copy (from pinned memory on
        CUDA, without waiting for the device)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        tensors = [self.dst, self.query_doc, self.query_local]
        tensors += [t for call in self.calls for t in call.tensors.values()]
        present = [t for t in tensors if t is not None]
        flat = (torch.cat([t.reshape(-1) for t in present]) if present
                else torch.zeros(0, dtype=torch.long))
        if device.type == "cuda":
            flat = flat.pin_memory()
        moved = iter(torch.split(flat.to(device, non_blocking=True),
                                 [t.numel() for t in present]))
        on_device = {id(t): next(moved).view(t.shape) for t in present}
        get = (lambda t: None if t is None else on_device[id(t)])
        calls = [replace(call, tensors={k: get(t) for k, t in call.tensors.items()}, own=None)
                 for call in self.calls]
        return replace(self, calls=calls, dst=get(self.dst), query_doc=get(self.query_doc),
                       query_local=get(self.query_local))


def plan_batch(ptr: Sequence[int], query_index: Tensor | None, *, max_length: int, p: int,
               s: int, overlap: int, max_windows: int | None, max_padding: float | None,
               heads: int = 0, explicit_rows: bool = False) -> WindowPlan:
    """The :class:`WindowPlan` of documents ``input_ids[ptr[b]:ptr[b + 1]]`` (host values).

    Args:
        ptr: ``B + 1`` document boundaries (checked by the caller).
        query_index: ``[Q]`` flat query positions on the host, or ``None``.
        max_length, p, s, overlap: the window size, the special tokens and the overlap.
        max_windows, max_padding: see :func:`plan_forward_batches`.
        heads: attention heads (the row buffer's layout); ``explicit_rows``: also plan the
            grouping of the triples by window for the explicit rows.
    """
    windows = _cut_documents(ptr, max_length, p, s, overlap)
    plan = WindowPlan(doc_windows=windows.ranges, calls=[], dst=torch.zeros(0, dtype=torch.long))
    lengths = [src.numel() for src in windows.src]
    for ids in plan_forward_batches(lengths, max_windows, max_padding):
        n_max = max(lengths[w] for w in ids)
        src = torch.full((len(ids), n_max), -1, dtype=torch.long)
        own = torch.zeros((len(ids), n_max), dtype=torch.bool)
        for j, w in enumerate(ids):
            src[j, :lengths[w]] = windows.src[w]
            own[j, :lengths[w]] = windows.own[w]
        own_index = own.view(-1).nonzero().view(-1)
        plan.calls.append(ForwardCall(windows=list(ids),
                                      tensors={"src": src, "own_index": own_index},
                                      padded=any(lengths[w] < n_max for w in ids), own=own))
    if plan.calls:
        plan.dst = torch.cat([c.tensors["src"].view(-1)[c.tensors["own_index"]]
                              for c in plan.calls])
    if query_index is not None:
        _plan_query_rows(plan, windows, ptr, query_index, p, s, max_length - p - s, heads,
                         explicit_rows)
    return plan


@dataclass
class _Windows:
    """Every window of a batch, in document order."""

    src: list[Tensor]                      # flat input positions of its tokens
    own: list[Tensor]                      # which of them it owns
    doc: list[int]                         # its document
    ranges: list[list[tuple[int, int]]]    # per document, its windows' content ranges
    first: list[int]                       # per document, its first window


def _cut_documents(ptr: Sequence[int], max_length: int, p: int, s: int,
                   overlap: int) -> _Windows:
    windows = _Windows(src=[], own=[], doc=[], ranges=[], first=[])
    arange = torch.arange(max(max_length, 1))
    for b in range(len(ptr) - 1):
        start, end = ptr[b], ptr[b + 1]
        length = end - start
        if length < p + s:
            raise ValueError(f"document {b} has {length} tokens, fewer than its {p} + {s} "
                             f"special tokens")
        windows.first.append(len(windows.src))
        if length <= max_length:
            windows.ranges.append([(0, length - p - s)])
            windows.src.append(arange[:length] + start)
            windows.own.append(torch.ones(length, dtype=torch.bool))
            windows.doc.append(b)
            continue
        ranges = plan_windows(length - p - s, max_length - p - s, overlap)
        windows.ranges.append(ranges)
        prefix = arange[:p] + start
        suffix = arange[:s] + (end - s)
        for i, (cs, ce) in enumerate(ranges):
            windows.src.append(torch.cat([prefix, arange[:ce - cs] + (start + p + cs), suffix]))
            own = torch.ones(p + (ce - cs) + s, dtype=torch.bool)
            if i > 0:
                own[:p] = False                    # the prefix belongs to the first window
            if i < len(ranges) - 1:
                own[p + (ce - cs):] = False        # the suffix to the last
            windows.own.append(own)
            windows.doc.append(b)
    return windows


def _plan_query_rows(plan: WindowPlan, windows: _Windows, ptr: Sequence[int],
                     query_index: Tensor, p: int, s: int, window_content: int, heads: int,
                     explicit_rows: bool) -> None:
    """Add the query rows' layout to ``plan``: the row buffer's blocks, and per call the
    triples (query, window, row) with their keys' document positions."""
    q_plan = plan_queries(query_index, torch.tensor(list(ptr), dtype=torch.long),
                          windows.ranges, windows.first, p, s, window_content)
    lengths = [b - a for a, b in zip(ptr[:-1], ptr[1:])]
    offset = 0
    for q, t in zip(q_plan["doc_count"].tolist(), lengths):
        plan.doc_offset.append(offset)
        plan.doc_shape.append((q, t))
        offset += q * heads * t
    plan.buffer_size = offset
    plan.query_doc, plan.query_local = q_plan["query_doc"], q_plan["query_local"]
    doc_offset = torch.tensor(plan.doc_offset, dtype=torch.long)
    doc_len = torch.tensor(lengths, dtype=torch.long)
    call_of_window = torch.empty(len(windows.src), dtype=torch.long)
    local_of_window = torch.empty(len(windows.src), dtype=torch.long)
    for c, call in enumerate(plan.calls):
        call_of_window[call.windows] = c
        local_of_window[call.windows] = torch.arange(len(call.windows))
    triple_call = call_of_window[q_plan["trip_w"]]
    for c, call in enumerate(plan.calls):
        sel = (triple_call == c).nonzero().view(-1)           # triples of this call, in order
        call.num_triples = sel.numel()
        if sel.numel() == 0:
            continue
        src = call.tensors["src"]
        doc_start = torch.tensor([ptr[windows.doc[w]] for w in call.windows], dtype=torch.long)
        assert call.own is not None
        key_pos = torch.where(call.own, src - doc_start[:, None],
                              torch.full_like(src, -1))      # [Wc, N]
        q = q_plan["trip_q"][sel]
        w = local_of_window[q_plan["trip_w"][sel]]
        doc = q_plan["query_doc"][q]
        t_len = doc_len[doc]
        call.tensors.update(
            key_pos=key_pos, w=w, r=q_plan["trip_r"][sel], t_len=t_len,
            base=doc_offset[doc] + q_plan["query_local"][q] * heads * t_len,
            windows_per_query=q_plan["windows_per_query"][q],
            kept=(key_pos[w] >= 0)[:, None, :].expand(-1, heads, -1).reshape(-1)
            .nonzero().view(-1))
        if explicit_rows:
            _group_by_window(call, w)


def _group_by_window(call: ForwardCall, w: Tensor) -> None:
    """The explicit rows' grouping of the call's triples by window (``to_dense_batch``'s)."""
    order = torch.argsort(w, stable=True)
    w_sorted = w[order]
    per_window = torch.bincount(w_sorted, minlength=len(call.windows))
    call.q_max = int(per_window.max())
    rank = torch.arange(w.numel()) - (torch.cumsum(per_window, 0) - per_window)[w_sorted]
    dense_pos = w_sorted * call.q_max + rank
    gather_pos = torch.empty_like(dense_pos)
    gather_pos[order] = dense_pos
    call.tensors.update(w_sorted=w_sorted, r_sorted=call.tensors["r"][order],
                        dense_pos=dense_pos, gather_pos=gather_pos)
