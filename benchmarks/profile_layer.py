r"""Where one ``GTNConv`` layer spends its time on a long document, per sublayer and operator.

    python benchmarks/profile_layer.py                   # k = 64 and 256, hidden 384
    python benchmarks/profile_layer.py --ks 16 --hidden 384 --out /tmp/prof

The same long documents and layer as ``sparse_vs_dense.py`` (``k`` concatenated Re-DocRED
documents, one ``GTNConv(hidden, attention=mode)``, random node features and token states that
require gradients). After one untimed warm-up, one forward+backward call runs under
``torch.profiler`` and its self CPU time is summed

* per **forward region**: ``graph attention`` (the K edge-type heads and the global head),
  ``cross attention`` (global and local cross heads), the rest (output projections, residual
  LayerNorms, feed-forward), labelled with ``record_function`` by wrapping the layer's
  ``_graph_attention`` and ``_cross`` methods on the instance (the layer's code is unchanged);
  backward time is reported as one region;
* per **operator family**: fused attention (``scaled_dot_product_attention``, the global heads
  of the sparse mode), gather / scatter / segment (message passing), matrix products, softmax
  and masking, linear layers, normalisation and element-wise, memory (copies, cat, fill).

Dense points that would not fit (the estimate of ``sparse_vs_dense.py``) are skipped. Outputs in
``--out`` (default ``benchmarks/results/``): ``profile_layer.json`` and ``profile_layer.md``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import _workload  # noqa: E402

from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

#: Operator families: ``(family, fragments)``; an operator (``aten::`` stripped) belongs to the
#: first family one of whose fragments occurs in its name.
FAMILIES = (
    ("fused attention (SDPA)", ("scaled_dot_product", "flash_attention", "efficient_attention")),
    ("gather / scatter / segment", ("index_select", "gather", "scatter", "index_add", "segment",
                                    "index_put", "bincount", "searchsorted", "argsort", "sort",
                                    "index")),
    ("softmax and masking", ("softmax", "masked_fill", "where", "logical_", "bitwise_", "any",
                             "exp", "amax", "max")),
    ("linear layers", ("addmm", "linear")),
    ("matrix products", ("bmm", "matmul", "mm")),
    ("normalisation and element-wise", ("layer_norm", "gelu", "add", "mul", "div", "sub", "sum",
                                        "mean", "sqrt", "pow", "dropout", "neg", "rsub")),
    ("memory (copy, cat, fill, views)", ("copy", "cat", "fill", "zero", "empty", "clone",
                                         "contiguous", "expand", "view", "reshape", "transpose",
                                         "permute", "select", "slice", "stack", "squeeze",
                                         "narrow", "split", "chunk", "as_strided", "t")),
)
REGIONS = ("graph attention", "cross attention")


def family_of(name: str) -> str:
    op = name.split("::", 1)[-1]
    for family, fragments in FAMILIES:
        if any(fragment == op or (len(fragment) > 1 and fragment in op)
               for fragment in fragments):
            return family
    return "other"


def _label(method, label: str):
    def wrapped(*args, **kwargs):
        with record_function(label):
            return method(*args, **kwargs)
    return wrapped


def profile_point(mode: str, hidden: int, structure: dict, counts: dict, seed: int) -> dict:
    """One warm-up and one profiled forward+backward; self CPU microseconds per bucket."""
    conv, x, token_x, grad_out = _workload.layer_and_inputs(mode, hidden, counts, seed)
    x.requires_grad_()
    token_x.requires_grad_()
    conv._graph_attention = _label(conv._graph_attention, "graph attention")
    conv._cross = _label(conv._cross, "cross attention")

    def step():
        with record_function("forward"):
            out = conv(x, token_x=token_x, **structure)
        with record_function("backward"):
            out.backward(grad_out)
        conv.zero_grad(set_to_none=True)
        x.grad = token_x.grad = None

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.events()
    labels = {"forward", "backward", *REGIONS}
    total = sum(e.self_cpu_time_total for e in events if e.name not in labels)

    def inside(e, label: str) -> bool:
        parent = e.cpu_parent
        while parent is not None:
            if parent.name == label:
                return True
            parent = parent.cpu_parent
        return False

    regions = {r: 0.0 for r in (*REGIONS, "forward (other)", "backward")}
    families: dict[str, float] = {}
    for e in events:
        if e.name in labels:
            continue
        us = e.self_cpu_time_total
        families[family_of(e.name)] = families.get(family_of(e.name), 0.0) + us
        if inside(e, "backward"):
            regions["backward"] += us
        elif inside(e, "graph attention"):
            regions["graph attention"] += us
        elif inside(e, "cross attention"):
            regions["cross attention"] += us
        else:
            regions["forward (other)"] += us
    return {"mode": mode, "hidden": hidden, **counts, "profiled_seconds": total / 1e6,
            "regions_percent": {k: 100 * v / total for k, v in regions.items()},
            "families_percent": {k: 100 * v / total for k, v in
                                 sorted(families.items(), key=lambda kv: -kv[1])}}


def markdown_report(meta: dict, rows: Sequence[dict]) -> str:
    lines = ["# One GTNConv layer: where the forward+backward time goes", "",
             "Self CPU time of one profiled forward+backward call, in percent of the total "
             "(`benchmarks/profile_layer.py`).", ""]
    for row in rows:
        head = (f"## k = {row['k']}, {row['num_nodes']:,} nodes, {row['num_tokens']:,} tokens, "
                f"hidden {row['hidden']}, {row['mode']}")
        if row.get("status") == "skipped":
            lines += [head, "", row["reason"], ""]
            continue
        lines += [head, "", f"Profiled time: {row['profiled_seconds']:.2f} s.", "",
                  _common.markdown_table(["region", "%"], [
                      [k, f"{v:.1f}"] for k, v in row["regions_percent"].items()]), "",
                  _common.markdown_table(["operator family", "%"], [
                      [k, f"{v:.1f}"] for k, v in row["families_percent"].items()]), ""]
    lines += [_common.metadata_markdown(meta)]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ks", type=_common.int_list, default=[64, 256],
                        help="documents per long document (default: 64,256)")
    parser.add_argument("--hidden", type=int, default=384, help="(default: 384)")
    parser.add_argument("--modes", type=lambda s: [m for m in s.split(",") if m],
                        default=["sparse", "dense"], help="(default: sparse,dense)")
    parser.add_argument("--mem-fraction", type=float, default=0.7,
                        help="skip dense points estimated above this fraction of RAM")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    bad = [m for m in args.modes if m not in ("sparse", "dense")]
    if bad:
        parser.error(f"--modes: {bad} not in sparse, dense")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    out_dir = _common.resolve_out(args.out)
    meta = _common.metadata(_common.script_argv(__file__, argv))
    pool = _workload.DocumentPool.load()
    rows = []
    for k in args.ks:
        structure, counts = _workload.view_and_counts(pool.long_document(k), k)
        for mode in args.modes:
            run, reason, _, _ = _workload.plan_point(mode, counts, args.hidden, args.mem_fraction,
                                               train_max_nodes=10 ** 9)
            if not run:
                rows.append({"mode": mode, "hidden": args.hidden, **counts,
                             "status": "skipped", "reason": reason})
            else:
                rows.append(profile_point(mode, args.hidden, structure, counts, args.seed))
            print(f"k={k} {mode}: " + (rows[-1].get("reason") or ", ".join(
                f"{name} {pct:.0f}%" for name, pct in rows[-1]["regions_percent"].items())),
                flush=True)
    _common.write_json(out_dir / "profile_layer.json", {"metadata": meta, "rows": rows})
    _common.write_text_atomic(out_dir / "profile_layer.md", markdown_report(meta, rows))
    print(f"wrote {out_dir / 'profile_layer.json'}, {out_dir / 'profile_layer.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
