r"""Sparse versus dense ``GTNConv`` on long documents: time, peak memory, agreement.

A long document is ``k`` real Re-DocRED documents (``dev_revised.json`` then
``test_revised.json``, cycled when ``k`` exceeds them) concatenated into ONE DocRED document:
sentences and entities one after the other, ``sent_id`` shifted, a single document node, and the
tokens one long sequence ``[CLS] text_1 ... text_k [SEP]``. It becomes an HDG through the
project's own :func:`~pyg_docre.data.build_hdg` (MiniLM tokenizer) and the homogeneous view
through :func:`~pyg_docre.data.to_gtn_inputs`.

Since ``build_hdg`` also enumerates every candidate entity pair with its label row (quadratic in
entities: about 25 million pairs and a 10 GB label matrix at ``k = 256``), the long HDG is built
from the ``build_hdg`` graphs of its parts: their nodes and edges are offset and the document
nodes merged (:func:`join_graphs`). Entities and sentences never cross parts, so this is exactly
the HDG ``build_hdg`` gives for the concatenated document, minus the candidate pairs that the
layer does not use (``tests/test_benchmarks.py`` checks the equality on real documents).

For every ``k``, hidden size and mode (``sparse``; ``sparse-no-scatter`` when torch-scatter is
installed; ``dense``), ONE ``GTNConv(hidden, attention=mode)`` layer runs on random node
features ``[N, hidden]`` and random token states ``[T, hidden]`` (the benchmark measures the
layer, not the encoder), each point in a fresh child process (``--point JSON``):

* forward time (``torch.no_grad``) and forward+backward time (inputs requiring gradients, as they
  do in the model, backward of a fixed random output gradient), median of a few repeats after a
  warm-up;
* peak resident memory of each phase: the child resets the kernel's peak (``VmHWM``, through
  ``/proc/self/clear_refs``) after setup, so the peak belongs to the phase; reported absolute and
  as the delta over the resident size after setup, plus ``ru_maxrss`` of the whole child;
* in the dense child, after the measurements, ``max |dense - sparse|`` of the outputs with the
  same weights and inputs (float32).

Memory safety: a point whose predicted peak exceeds a fraction of ``MemTotal`` is skipped with
the reason in its row (dense: a conservative estimate of its ``[heads, N, N]`` and
``[cross_heads, N, T]`` tensors against ``--mem-fraction``, 0.7; sparse: an estimate calibrated
on measurements against ``--sparse-mem-fraction``, 0.95); forward+backward is measured only up
to ``--train-max-nodes`` and when its own estimate fits. Every child's data segment is capped
(``RLIMIT_DATA``, ``--child-mem-limit``), so an overshoot is an allocation error rather than an
OOM kill. A child that fails anyway (error, kill, timeout) is recorded with its exit status and
the tail of its stderr; the sweep goes on.

Outputs in ``--out`` (default ``benchmarks/results/``): ``sparse_vs_dense.json`` (rows and
metadata, rewritten after every point), ``sparse_vs_dense.md``, ``sparse_vs_dense_time.png``,
``sparse_vs_dense_memory.png``. See ``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (puts the repository root on sys.path too)
from _common import MB, int_list  # noqa: E402
from _workload import (CROSS_CHUNK_EDGES, MODES, POOL_FILES, DocumentPool,  # noqa: E402,F401
                       concatenate_documents, estimate_bytes, join_graphs, layer_and_inputs,
                       memory_limit_bytes, plan_point, view_and_counts)

import torch  # noqa: E402

#: Default sweep: dense fits up to k = 64 on a 24 GB machine; k = 2200 is about 100,600 nodes
#: (46 per Re-DocRED document on average).
DEFAULT_KS = (1, 4, 16, 64, 256, 1024, 2200)
DEFAULT_HIDDEN = (384, 768)
QUICK_KS = (1, 4, 16)
QUICK_HIDDEN = (384,)
#: Sentinel printed before the row a ``--point`` child writes on its stdout.
ROW_MARKER = "@@ROW "


# ==============================================================================================
# One point, in a fresh process (--point)
# ==============================================================================================
def _load_structure(spec: dict) -> tuple[dict, dict]:
    """The structure tensors and counts: from the parent's file, or built here from ``k``."""
    if spec.get("graph"):
        saved = torch.load(spec["graph"], weights_only=True)
        return saved["structure"], saved["counts"]
    return view_and_counts(DocumentPool.load().long_document(spec["k"]), spec["k"])


def _phase_memory(baseline: int) -> dict:
    """Peak resident memory since the last reset, absolute and over ``baseline`` (MB)."""
    peak = _common.peak_rss_bytes()
    return {"peak_mb": peak / MB, "delta_mb": (peak - baseline) / MB}


def run_point(spec: dict) -> dict:
    """Measure one (k, mode, hidden) point in this process; returns the row.

    ``spec`` keys: ``mode``, ``hidden``, ``k``, optional ``graph`` (a file saved by the parent),
    ``repeats``, ``warmup``, ``budget`` (seconds per phase), ``backward``, ``compare``, ``seed``,
    ``cross_chunk_edges``.
    """
    import torch_geometric.typing as pyg_typing

    attention, use_scatter = MODES[spec["mode"]]
    if not use_scatter:
        pyg_typing.WITH_TORCH_SCATTER = False
    limit_set = _common.limit_data_bytes(spec.get("mem_limit_bytes"))
    hidden, seed = int(spec["hidden"]), int(spec.get("seed", 0))
    device = torch.device(spec.get("device", "cpu"))
    cuda = device.type == "cuda"
    repeats, warmup = int(spec.get("repeats", 3)), int(spec.get("warmup", 1))
    budget = float(spec.get("budget", 60.0))
    structure, counts = _load_structure(spec)

    conv, x, token_x, grad_out = layer_and_inputs(
        attention, hidden, counts, seed, spec.get("cross_chunk_edges", CROSS_CHUNK_EDGES))
    if cuda:
        conv, x, token_x, grad_out = (t.to(device) for t in (conv, x, token_x, grad_out))
        structure = {k: (v.to(device) if torch.is_tensor(v) else v)
                     for k, v in structure.items()}

    def synchronize():
        if cuda:
            torch.cuda.synchronize(device)

    def forward():
        with torch.no_grad():
            out = conv(x, token_x=token_x, **structure)
        synchronize()
        return out

    def train_step():
        conv(x, token_x=token_x, **structure).backward(grad_out)
        conv.zero_grad(set_to_none=True)
        x.grad = token_x.grad = None
        synchronize()

    def phase_memory() -> dict:
        """Host peak RSS (CPU) or the GPU's max_memory_allocated (CUDA) of the phase."""
        if cuda:
            peak = torch.cuda.max_memory_allocated(device)
            return {"peak_mb": peak / MB, "delta_mb": (peak - gpu_baseline) / MB}
        return _phase_memory(baseline)

    def reset_peak() -> bool:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            return True
        return _common.reset_peak_rss()

    row = {**counts, "mode": spec["mode"], "hidden": hidden, "attention": attention,
           "torch_scatter": bool(pyg_typing.WITH_TORCH_SCATTER),
           "torch_threads": torch.get_num_threads(), "mem_limit_set": limit_set,
           "status": "ok", "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if cuda else _common.cpu_model(),
           "memory": "GPU max_memory_allocated" if cuda else "host peak RSS"}
    baseline = _common.current_rss_bytes() or _common.peak_rss_bytes()
    row["rss_baseline_mb"] = baseline / MB
    gpu_baseline = torch.cuda.memory_allocated(device) if cuda else 0
    if cuda:
        row["gpu_baseline_mb"] = gpu_baseline / MB

    reset_ok = reset_peak()
    row["peak_reset"] = reset_ok
    conv.eval()
    fwd = _common.time_repeats(forward, repeats, warmup, budget)
    mem = phase_memory()
    row.update(forward_s=fwd["median"], forward_times=fwd["times"],
               forward_warmup_counted=fwd["warmup_counted"],
               peak_forward_mb=mem["peak_mb"], delta_forward_mb=mem["delta_mb"])

    if spec.get("backward", True):
        reset_peak()
        conv.train()  # dropout is 0 by default: the same computation, with autograd
        x.requires_grad_()  # gradients flow to the inputs, as into the encoder in the model
        token_x.requires_grad_()
        train = _common.time_repeats(train_step, repeats, warmup, budget)
        mem = phase_memory()
        row.update(train_s=train["median"], train_times=train["times"],
                   train_warmup_counted=train["warmup_counted"],
                   peak_train_mb=mem["peak_mb"], delta_train_mb=mem["delta_mb"])
    else:
        row["train_note"] = spec.get("backward_reason") or "forward+backward not requested"
    row["ru_maxrss_mb"] = _common.ru_maxrss_bytes() / MB

    if spec.get("compare", False):
        conv.eval()
        x.requires_grad_(False)
        token_x.requires_grad_(False)
        conv.attention = "dense"
        dense_out = forward()
        conv.attention = "sparse"
        sparse_out = forward()
        row["max_abs_diff"] = float((dense_out - sparse_out).abs().max())
        row["max_abs_output"] = float(dense_out.abs().max())
    return row


def _point_main(spec_json: str) -> int:
    try:
        spec = json.loads(spec_json)
    except json.JSONDecodeError as err:
        print(f"--point: not valid JSON ({err}): {spec_json!r}", file=sys.stderr)
        return 2
    missing = [key for key in ("mode", "hidden", "k") if key not in spec]
    if missing or spec.get("mode") not in MODES:
        print(f"--point: needs 'mode' (one of {sorted(MODES)}), 'hidden' and 'k'; got {spec}",
              file=sys.stderr)
        return 2
    row = run_point(spec)
    print(ROW_MARKER + json.dumps(row), flush=True)
    return 0


# ==============================================================================================
# The sweep (parent process)
# ==============================================================================================
def run_child(spec: dict, timeout: float) -> dict:
    """Run :func:`run_point` in a fresh interpreter; failures become rows, never exceptions."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--point", json.dumps(spec)]
    paths = [str(_common.ROOT)] + ([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ
                                   else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) \
            else (err.stderr or "")
        return {"status": "failed", "reason": f"timeout after {timeout:.0f} s",
                "exit_status": None, "stderr_tail": stderr[-2000:],
                "child_seconds": time.perf_counter() - start}
    elapsed = time.perf_counter() - start
    rows = [line[len(ROW_MARKER):] for line in proc.stdout.splitlines()
            if line.startswith(ROW_MARKER)]
    if proc.returncode != 0 or not rows:
        return {"status": "failed", "exit_status": proc.returncode,
                "reason": _failure_reason(proc.returncode, proc.stderr),
                "stderr_tail": proc.stderr[-2000:], "child_seconds": elapsed}
    row = json.loads(rows[-1])
    row["child_seconds"] = elapsed
    return row


def _failure_reason(returncode: int, stderr: str) -> str:
    reason = f"child exited with status {returncode}"
    if returncode < 0:
        reason += f" (killed by signal {-returncode}; 9 is usually the OOM killer)"
    elif "can't allocate memory" in stderr or "MemoryError" in stderr:
        reason += " (out of memory: an allocation failed under the child's memory cap)"
    return reason


def available_modes(requested: Optional[Sequence[str]] = None) -> list[str]:
    """``sparse``, ``sparse-no-scatter`` (only when torch-scatter is installed), ``dense``."""
    import torch_geometric.typing as pyg_typing

    modes = ["sparse", "dense"]
    if pyg_typing.WITH_TORCH_SCATTER:
        modes.insert(1, "sparse-no-scatter")
    if requested:
        unknown = [m for m in requested if m not in MODES]
        if unknown:
            raise ValueError(f"unknown mode(s) {unknown}; choose from {sorted(MODES)}")
        modes = [m for m in modes if m in requested]
        if not modes:
            raise ValueError(f"none of {list(requested)} is available here (torch-scatter "
                             f"installed: {pyg_typing.WITH_TORCH_SCATTER})")
    return modes


def sweep(args: argparse.Namespace, meta: dict, out_dir: Path, rows: list[dict]) -> None:
    """Measure every (k, hidden, mode) point into ``rows``; the JSON is rewritten after each
    one, so an interrupted sweep keeps what it measured."""
    pool = DocumentPool.load()
    meta["pool"] = {"files": list(POOL_FILES), "documents": len(pool.docs),
                    "note": "part i of a long document is pool document i mod pool size"}
    modes = available_modes(args.modes)
    with tempfile.TemporaryDirectory(prefix="sparse_vs_dense-") as tmp:
        for k in args.ks:
            structure, counts = view_and_counts(pool.long_document(k), k)
            graph_file = Path(tmp) / f"k{k}.pt"
            torch.save({"structure": structure, "counts": counts}, graph_file)
            del structure
            for hidden in args.hidden:
                for mode in modes:
                    row = measure_point(args, mode, hidden, counts, graph_file)
                    rows.append(row)
                    _log_row(row)
                    write_results_json(out_dir, meta, rows, complete=False)
            graph_file.unlink()


def measure_point(args, mode: str, hidden: int, counts: dict, graph_file: Path) -> dict:
    """Plan one point (memory estimate), run its child, merge plan and result into a row."""
    fraction = args.mem_fraction if MODES[mode][0] == "dense" else args.sparse_mem_fraction
    chunk = args.cross_chunk_edges or None
    device = torch.device(args.device)
    total = (torch.cuda.get_device_properties(device).total_memory if device.type == "cuda"
             else None)
    run, reason, backward, backward_reason = plan_point(mode, counts, hidden, fraction,
                                                        args.train_max_nodes, chunk, total)
    base = {**counts, "mode": mode, "hidden": hidden,
            "cross_chunk_edges": chunk,
            "estimate_forward_mb": estimate_bytes(mode, counts, hidden, "forward", chunk) / MB,
            "estimate_train_mb": estimate_bytes(mode, counts, hidden, "train", chunk) / MB}
    if not run:
        return {**base, "status": "skipped", "reason": reason}
    spec = {"graph": str(graph_file), "k": counts["k"], "mode": mode, "hidden": hidden,
            "repeats": args.repeats, "warmup": args.warmup, "budget": args.budget,
            "backward": backward, "backward_reason": backward_reason,
            "compare": mode == "dense", "seed": args.seed, "cross_chunk_edges": chunk,
            "device": args.device,
            "mem_limit_bytes": memory_limit_bytes(args.child_mem_limit)
            if args.child_mem_limit > 0 else None}
    return {**base, **run_child(spec, args.timeout)}


def _log_row(row: dict) -> None:
    head = f"k={row['k']} N={row['num_nodes']:,} T={row['num_tokens']:,} " \
           f"hidden={row['hidden']} {row['mode']}"
    if row["status"] == "skipped":             # the reason says so
        print(f"{head}: {row.get('reason')}", flush=True)
        return
    if row["status"] != "ok":
        print(f"{head}: {row['status']}: {row.get('reason')}", flush=True)
        return
    train = f"{row['train_s']:.4g} s" if "train_s" in row else "-"
    print(f"{head}: forward {row['forward_s']:.4g} s, fwd+bwd {train}, "
          f"peak fwd +{row['delta_forward_mb']:.0f} MB"
          + (f", max|diff| {row['max_abs_diff']:.2e}" if "max_abs_diff" in row else ""),
          flush=True)


# ==============================================================================================
# Reports
# ==============================================================================================
def write_results_json(out_dir: Path, meta: dict, rows: list[dict], complete: bool) -> None:
    _common.write_json(out_dir / "sparse_vs_dense.json",
                       {"benchmark": "sparse_vs_dense", "complete": complete, "metadata": meta,
                        "rows": rows})


def _ok(row: dict, key: str):
    return row.get(key) if row.get("status") == "ok" else None


def comparison_rows(rows: Sequence[dict]) -> list[list]:
    """Per (k, hidden) with both modes measured: speed-ups and memory ratios."""
    by_point = {(r["k"], r["hidden"], r["mode"]): r for r in rows}
    table = []
    for (k, hidden, mode), sparse in by_point.items():
        dense = by_point.get((k, hidden, "dense"))
        if mode != "sparse" or dense is None or dense.get("status") != "ok" \
                or sparse.get("status") != "ok":
            continue
        table.append([k, sparse["num_nodes"], hidden,
                      _ratio(_ok(dense, "forward_s"), _ok(sparse, "forward_s")),
                      _ratio(_ok(dense, "train_s"), _ok(sparse, "train_s")),
                      _ratio(_ok(sparse, "delta_forward_mb"), _ok(dense, "delta_forward_mb")),
                      _ratio(_ok(sparse, "delta_train_mb"), _ok(dense, "delta_train_mb")),
                      dense.get("max_abs_diff")])
    return table


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) and b > 0 else None


def markdown_report(meta: dict, rows: Sequence[dict]) -> str:
    headers = ["k", "nodes", "edges", "token edges", "tokens", "hidden", "mode", "fwd (s)",
               "fwd+bwd (s)", "peak fwd (MB)", "Δ fwd (MB)", "peak fwd+bwd (MB)",
               "Δ fwd+bwd (MB)", "max abs diff", "notes"]
    body = []
    for r in rows:
        notes = r.get("reason") or r.get("train_note") or ""
        if r.get("status") == "failed":
            notes = f"FAILED: {notes}"
        if r.get("forward_warmup_counted") or r.get("train_warmup_counted"):
            notes = (notes + "; " if notes else "") + "single call (over the time budget)"
        body.append([r["k"], r["num_nodes"], r["num_edges"], r["num_token_edges"],
                     r["num_tokens"], r["hidden"], r["mode"], _ok(r, "forward_s"),
                     _ok(r, "train_s"), _ok(r, "peak_forward_mb"), _ok(r, "delta_forward_mb"),
                     _ok(r, "peak_train_mb"), _ok(r, "delta_train_mb"), r.get("max_abs_diff"),
                     notes])
    compare = comparison_rows(rows)
    parts = [
        "# Sparse versus dense GTNConv on long documents\n",
        "One `GTNConv` layer (cross attention over the document's tokens) on k Re-DocRED "
        "documents concatenated into one document; random node features and token states. "
        + (f"Device `{meta.get('device')}`: times end with `torch.cuda.synchronize()`; memory "
           "is `torch.cuda.max_memory_allocated` during the phase (absolute) and its increase "
           "over the memory allocated after setup (Δ). "
           if str(meta.get("device", "cpu")).startswith("cuda") else
           "Times are medians (seconds); memory is the peak resident set of a fresh process "
           "during the phase (absolute) and its increase over the resident size after setup (Δ). ")
        + 
        "`max abs diff` is max |dense - sparse| of the outputs (same weights and inputs, "
        "float32). See `benchmarks/README.md`.\n",
        "## All points\n", _common.markdown_table(headers, body),
        "\n## Sparse against dense\n",
        "Speed-up = dense time / sparse time; memory ratio = sparse Δ peak / dense Δ peak "
        "(below 1: sparse needs less).\n",
        _common.markdown_table(["k", "nodes", "hidden", "speed-up fwd", "speed-up fwd+bwd",
                                "memory sparse/dense fwd", "memory sparse/dense fwd+bwd",
                                "max abs diff"], compare) if compare
        else "_No k with both modes measured._\n",
        "", _common.metadata_markdown(meta),
    ]
    return "\n".join(parts)


def plot(rows: Sequence[dict], out_dir: Path) -> list[Path]:
    """Time and memory against nodes, log-log, one line per (mode, hidden)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    panels = {
        "time": (("forward_s", "forward"), ("train_s", "forward + backward"), "seconds"),
        "memory": (("delta_forward_mb", "forward"), ("delta_train_mb", "forward + backward"),
                   "peak RSS over the post-setup baseline (MB)"),
    }
    series = sorted({(r["mode"], r["hidden"]) for r in rows})
    paths = []
    for name, (left, right, ylabel) in panels.items():
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, (key, title) in zip(axes, (left, right)):
            for mode, hidden in series:
                points = sorted((r["num_nodes"], r[key]) for r in rows
                                if r["mode"] == mode and r["hidden"] == hidden
                                and _ok(r, key) is not None and r[key] > 0)
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, marker="o", linestyle="--" if mode == "dense" else "-",
                            label=f"{mode}, hidden {hidden}")
            ax.set(xscale="log", yscale="log", xlabel="graph nodes N", ylabel=ylabel,
                   title=f"GTNConv {title}")
            ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: no label clutter
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="both", alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"sparse_vs_dense_{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write_reports(out_dir: Path, meta: dict, rows: list[dict], complete: bool) -> list[Path]:
    write_results_json(out_dir, meta, rows, complete)
    _common.write_text_atomic(out_dir / "sparse_vs_dense.md", markdown_report(meta, rows))
    return [out_dir / "sparse_vs_dense.json", out_dir / "sparse_vs_dense.md",
            *plot(rows, out_dir)]


# ==============================================================================================
# Command line
# ==============================================================================================
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Sparse vs dense GTNConv on long concatenated Re-DocRED documents "
                    "(see benchmarks/README.md).")
    parser.add_argument("--quick", action="store_true",
                        help=f"k in {QUICK_KS}, hidden {QUICK_HIDDEN}, 2 repeats, 5 s budget "
                             f"(under 2 minutes)")
    parser.add_argument("--out", default=None, help="output directory "
                        f"(default: {_common.DEFAULT_OUT.relative_to(_common.ROOT)})")
    parser.add_argument("--ks", type=int_list, default=None,
                        help=f"documents per long document (default: {DEFAULT_KS})")
    parser.add_argument("--hidden", type=int_list, default=None,
                        help=f"hidden sizes, divisible by 4 (default: {DEFAULT_HIDDEN})")
    parser.add_argument("--modes", type=lambda s: [m for m in s.split(",") if m], default=None,
                        help=f"subset of {sorted(MODES)} (default: all available)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per phase (default: 5, quick: 2)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed calls before timing (default: 1)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed calls per phase before stopping early "
                             "(default: 60, quick: 5)")
    parser.add_argument("--train-max-nodes", type=int, default=60_000,
                        help="measure forward+backward only up to this many nodes "
                             "(default: 60000)")
    parser.add_argument("--mem-fraction", type=float, default=0.7,
                        help="skip dense points whose (conservative) estimated peak exceeds "
                             "this fraction of RAM, or of the GPU's memory with --device cuda "
                             "(default: 0.7)")
    parser.add_argument("--sparse-mem-fraction", type=float, default=0.95,
                        help="the same for sparse points, whose estimate is calibrated on "
                             "measurements (default: 0.95)")
    parser.add_argument("--child-mem-limit", type=float, default=0.95,
                        help="cap every child's data segment (RLIMIT_DATA) at this fraction "
                             "of RAM, so that an overshoot fails with a clear allocation error "
                             "instead of waking the OOM killer; 0 = no cap (default: 0.95)")
    parser.add_argument("--timeout", type=float, default=4 * 3600,
                        help="seconds before a point's child is killed (default: 4 h)")
    parser.add_argument("--seed", type=int, default=0, help="weights and inputs (default: 0)")
    parser.add_argument("--cross-chunk-edges", type=int, default=CROSS_CHUNK_EDGES,
                        help="GTNConv(cross_chunk_edges=...): token edges per chunk of the "
                             f"sparse local cross heads; 0 = no chunking "
                             f"(default: {CROSS_CHUNK_EDGES})")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default) or cuda[:i]: on CUDA, times end with "
                             "torch.cuda.synchronize(), memory is torch.cuda."
                             "max_memory_allocated and the skip estimates use the GPU's memory")
    parser.add_argument("--point", default=None, metavar="JSON",
                        help="internal: measure one point in this process and print its row")
    args = parser.parse_args(argv)
    args.ks = args.ks or list(QUICK_KS if args.quick else DEFAULT_KS)
    args.hidden = args.hidden or list(QUICK_HIDDEN if args.quick else DEFAULT_HIDDEN)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.budget = args.budget or (5.0 if args.quick else 60.0)
    bad = [h for h in args.hidden if h % 4]
    if bad:
        parser.error(f"--hidden: {bad} not divisible by 4 (graph and cross heads)")
    for name in ("mem_fraction", "sparse_mem_fraction"):
        if not 0 < getattr(args, name) <= 1:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 1]")
    if not 0 <= args.child_mem_limit <= 1:
        parser.error("--child-mem-limit must be in [0, 1]")
    if args.cross_chunk_edges < 0:
        parser.error("--cross-chunk-edges must be >= 0 (0: no chunking)")
    if args.device.startswith("cuda") and args.point is None and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.point is not None:
        return _point_main(args.point)
    out_dir = _common.resolve_out(args.out)
    meta = _common.metadata(_common.script_argv(__file__, argv))
    meta.update(ks=args.ks, hidden=args.hidden, repeats=args.repeats, warmup=args.warmup,
                budget_s=args.budget, train_max_nodes=args.train_max_nodes,
                mem_fraction=args.mem_fraction, sparse_mem_fraction=args.sparse_mem_fraction,
                child_mem_limit=args.child_mem_limit, cross_chunk_edges=args.cross_chunk_edges,
                device=args.device,
                encoder_tokenizer=_common.ENCODER)
    rows: list[dict] = []
    complete = False
    try:
        with _common.exit_on_stop_signals():    # a killed sweep kills its running child
            sweep(args, meta, out_dir, rows)
        complete = True
    finally:
        if rows or complete:
            paths = write_reports(out_dir, meta, rows, complete)
            print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
