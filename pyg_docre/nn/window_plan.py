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
        calls = [replace(call, tensors={k: get(t) for k, t in call.tensors.items()})
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
    window_content = max_length - p - s
    win_src: list[Tensor] = []
    win_own: list[Tensor] = []
    win_doc: list[int] = []
    doc_windows: list[list[tuple[int, int]]] = []
    doc_first_window: list[int] = []
    arange = torch.arange(max(max_length, 1))
    for b in range(len(ptr) - 1):
        start, end = ptr[b], ptr[b + 1]
        length = end - start
        if length < p + s:
            raise ValueError(f"document {b} has {length} tokens, fewer than its {p} + {s} "
                             f"special tokens")
        doc_first_window.append(len(win_src))
        if length <= max_length:
            doc_windows.append([(0, length - p - s)])
            win_src.append(arange[:length] + start)
            win_own.append(torch.ones(length, dtype=torch.bool))
            win_doc.append(b)
            continue
        ranges = plan_windows(length - p - s, window_content, overlap)
        doc_windows.append(ranges)
        prefix = arange[:p] + start
        suffix = arange[:s] + (end - s)
        for i, (cs, ce) in enumerate(ranges):
            win_src.append(torch.cat([prefix, arange[:ce - cs] + (start + p + cs), suffix]))
            own = torch.ones(p + (ce - cs) + s, dtype=torch.bool)
            if i > 0:
                own[:p] = False
            if i < len(ranges) - 1:
                own[p + (ce - cs):] = False
            win_own.append(own)
            win_doc.append(b)

    plan = WindowPlan(doc_windows=doc_windows, calls=[], dst=torch.zeros(0, dtype=torch.long))
    q_plan = None
    if query_index is not None:
        ptr_t = torch.tensor(list(ptr), dtype=torch.long)
        q_plan = plan_queries(query_index, ptr_t, doc_windows, doc_first_window, p, s,
                              window_content)
        counts = q_plan["doc_count"].tolist()
        lengths = [b - a for a, b in zip(ptr[:-1], ptr[1:])]
        offset = 0
        for q, t in zip(counts, lengths):
            plan.doc_offset.append(offset)
            plan.doc_shape.append((q, t))
            offset += q * heads * t
        plan.buffer_size = offset
        plan.query_doc, plan.query_local = q_plan["query_doc"], q_plan["query_local"]
        doc_offset_t = torch.tensor(plan.doc_offset, dtype=torch.long)
        doc_len_t = torch.tensor(lengths, dtype=torch.long)
        # window of every triple -> its call, and its place in the call
        num_windows = len(win_src)
        call_of_window = torch.empty(num_windows, dtype=torch.long)
        local_of_window = torch.empty(num_windows, dtype=torch.long)

    forward_batches = plan_forward_batches([w.numel() for w in win_src], max_windows, max_padding)
    if q_plan is not None:
        for c, windows in enumerate(forward_batches):
            call_of_window[windows] = c
            local_of_window[windows] = torch.arange(len(windows))
        triple_call = call_of_window[q_plan["trip_w"]]

    dst = []
    for c, windows in enumerate(forward_batches):
        n_max = max(win_src[w].numel() for w in windows)
        src = torch.full((len(windows), n_max), -1, dtype=torch.long)
        own = torch.zeros((len(windows), n_max), dtype=torch.bool)
        for j, w in enumerate(windows):
            src[j, :win_src[w].numel()] = win_src[w]
            own[j, :win_own[w].numel()] = win_own[w]
        own_index = own.view(-1).nonzero().view(-1)
        dst.append(src.view(-1)[own_index])
        call = ForwardCall(windows=list(windows), tensors={"src": src, "own_index": own_index},
                           padded=any(win_src[w].numel() < n_max for w in windows))
        plan.calls.append(call)
        if q_plan is None:
            continue
        sel = (triple_call == c).nonzero().view(-1)           # triples of this call, in order
        call.num_triples = sel.numel()
        if sel.numel() == 0:
            continue
        doc_start = torch.tensor([ptr[win_doc[w]] for w in windows], dtype=torch.long)
        key_pos = torch.where(own, src - doc_start[:, None], torch.full_like(src, -1))
        q = q_plan["trip_q"][sel]
        w = local_of_window[q_plan["trip_w"][sel]]
        doc = q_plan["query_doc"][q]
        t_len = doc_len_t[doc]
        call.tensors.update(
            key_pos=key_pos, w=w, r=q_plan["trip_r"][sel], t_len=t_len,
            base=doc_offset_t[doc] + q_plan["query_local"][q] * heads * t_len,
            windows_per_query=q_plan["windows_per_query"][q],
            kept=(key_pos[w] >= 0)[:, None, :].expand(-1, heads, -1).reshape(-1)
            .nonzero().view(-1))
        if explicit_rows:
            order = torch.argsort(w, stable=True)
            w_sorted = w[order]
            per_window = torch.bincount(w_sorted, minlength=len(windows))
            call.q_max = int(per_window.max())
            rank = torch.arange(w.numel()) - (torch.cumsum(per_window, 0) - per_window)[w_sorted]
            dense_pos = w_sorted * call.q_max + rank
            gather_pos = torch.empty_like(dense_pos)
            gather_pos[order] = dense_pos
            call.tensors.update(w_sorted=w_sorted, r_sorted=call.tensors["r"][order],
                                dense_pos=dense_pos, gather_pos=gather_pos)
    plan.dst = torch.cat(dst) if dst else plan.dst
    return plan
