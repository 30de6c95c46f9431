r"""Where a training step makes the host wait for the device: the synchronising calls of one
step of DocRE-BSI and of the ATLOP baseline, counted by the line of ``pyg_docre`` that makes
them.

On a GPU the step is bound by the host (``benchmarks/README.md``, "Results on a GPU"): the host
dispatches operators at ~20 µs each while the GPU runs them, and every synchronisation (a
``.item()``, ``int(tensor)``, ``nonzero``, a boolean mask, a ``.cpu()``) stops the host until
the GPU's queue is empty, so the two stop overlapping. This benchmark lists those calls.

* ``--device cuda``: exact. :func:`torch.cuda.set_sync_debug_mode` ("warn") reports every
  synchronising CUDA call; each is attributed to the innermost ``pyg_docre`` frame of the Python
  stack (or to ``torch internals`` when there is none: optimiser, clipping, ...), skipping the
  shared read helper ``pyg_docre.utils.read_back`` (:data:`PASS_THROUGH`) for its caller.
* ``--device cpu``: an upper bound, for machines without a GPU and for the tests. A
  :class:`~torch.overrides.TorchFunctionMode` records the calls that synchronise when their
  tensor lives on a GPU (``item``, ``int()``/``float()``/``bool()`` of a tensor, ``tolist``,
  ``nonzero``, ``unique``, ``bincount``, ``masked_select``, boolean-mask indexing,
  ``repeat_interleave`` without ``output_size``, ``.cpu()``), made by ``pyg_docre`` or
  PyG (PyTorch's own optimisers and clipping keep their scalars on the host and are left out).
  Some of them still touch tensors that stay on the host in a GPU run, which the exact mode does
  not count. The calls made inside :data:`HOST_MODULES` are left out: those modules work on host
  values by construction (``pyg_docre.nn.window_plan`` plans the encoder's windows from lists
  read back once, and its plan moves to the device in one non-blocking copy).

One untimed warm-up step per model, then ``--steps`` recorded steps of ``--batch-size``
Re-DocRED dev documents, as ``Trainer.train_step`` runs them (``benchmarks/throughput.py``'s
models). Outputs in ``--out`` (default ``benchmarks/results/``): ``host_syncs.json`` and
``host_syncs.md`` (calls per step by site).

    python benchmarks/host_syncs.py [--device cuda] [--steps 2] [--out DIR]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (puts the repository root on sys.path too)

import torch  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

import throughput  # noqa: E402

PACKAGE = str(_common.ROOT / "pyg_docre")
INTERNALS = "torch internals (optimiser, clipping, ...)"
#: Modules of ``pyg_docre`` that compute on host tensors only (left out of the CPU mode's count).
HOST_MODULES = ("pyg_docre/nn/window_plan.py",)
#: Shared helpers whose reads are attributed to their caller (``read_back`` reads for the model,
#: the encoder and context pooling alike; the site that matters is who asked).
PASS_THROUGH = frozenset({("pyg_docre/utils.py", "read_back")})
#: Calls that synchronise when their tensor is on a GPU (the CPU mode's upper bound).
SYNCING = frozenset({"item", "__int__", "__float__", "__bool__", "__index__", "tolist",
                     "nonzero", "argwhere", "unique", "unique_consecutive", "bincount",
                     "masked_select", "cpu", "numpy"})


def call_site(stack: Sequence[traceback.FrameSummary]) -> str:
    """``path:line function`` of the innermost frame in ``pyg_docre`` outside the
    :data:`PASS_THROUGH` helpers (else :data:`INTERNALS`)."""
    for frame in reversed(stack):
        if frame.filename.startswith(PACKAGE):
            path = Path(frame.filename).relative_to(_common.ROOT).as_posix()
            if (path, frame.name) in PASS_THROUGH:
                continue
            return f"{path}:{frame.lineno} {frame.name}"
    return INTERNALS


def _is_syncing(func, args, kwargs) -> Optional[str]:
    name = getattr(func, "__name__", "")
    if name in SYNCING:
        return name
    if name == "__getitem__" and len(args) > 1:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
            return "boolean mask"
    if name == "repeat_interleave" and kwargs.get("output_size") is None \
            and isinstance(args[1] if len(args) > 1 else kwargs.get("repeats"), torch.Tensor):
        return "repeat_interleave"
    if name == "to" and any(str(a) == "cpu" for a in args[1:]):
        return "to(cpu)"
    return None


class _SyncProneCalls(TorchFunctionMode):
    """Records ``(call, site)`` of every call in :data:`SYNCING` (the CPU mode)."""

    def __init__(self, counts: collections.Counter):
        super().__init__()
        self.counts = counts

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        call = _is_syncing(func, args, kwargs)
        if call is not None:
            stack = traceback.extract_stack()[:-1]
            site = call_site(stack)
            if not _called_by_torch(stack) and not site.startswith(HOST_MODULES):
                self.counts[(call, site)] += 1
        return func(*args, **kwargs)


def _called_by_torch(stack: Sequence[traceback.FrameSummary]) -> bool:
    """Whether PyTorch's own Python code made the call (optimisers, clipping: they keep their
    step counters and scalars on the host in a GPU run too, so they are left out)."""
    caller = stack[-1].filename.replace("\\", "/") if stack else ""
    return "/torch/" in caller and "/torch_geometric/" not in caller


@contextlib.contextmanager
def recording(device: torch.device) -> Iterator[collections.Counter]:
    """Count the synchronising calls made inside the block, by ``(call, site)``."""
    counts: collections.Counter = collections.Counter()
    if device.type != "cuda":
        with _SyncProneCalls(counts):
            yield counts
        return
    previous = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchronizing" in str(message).lower():
            counts[("cuda sync", call_site(traceback.extract_stack()[:-1]))] += 1
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield counts
        finally:
            torch.cuda.synchronize(device)
            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning = previous


def measure(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    rel2id = _common.load_rel2id()
    graphs = throughput.load_graphs(args.batch_size * (args.steps + 1), rel2id)
    batches = list(throughput.make_loader(graphs, args.batch_size))
    results = {}
    with tempfile.TemporaryDirectory(prefix="host-syncs-") as tmp:
        for name in throughput.PROFILED:
            variant = throughput.build_variant(name, graphs, rel2id, args.seed, args.batch_size,
                                               Path(tmp), device=args.device,
                                               precision=args.precision)
            variant.model.train()
            variant.objective.train()
            throughput.train_step(variant, batches[0])            # warm-up
            with recording(device) as counts:
                for data in batches[1:]:
                    throughput.train_step(variant, data)
            steps = len(batches) - 1
            results[name] = {"steps": steps, "per_step": sum(counts.values()) / steps,
                             "sites": [{"call": call, "site": site, "per_step": n / steps}
                                       for (call, site), n in counts.most_common()]}
    return results


def report(result: dict, meta: dict) -> str:
    settings = result["settings"]
    exact = settings["device"].startswith("cuda")
    parts = ["# Host synchronisations per training step\n",
             f"{settings['batch_size']} Re-DocRED dev documents per step, {settings['steps']} "
             f"recorded step(s) after a warm-up, device `{settings['device']}`, precision "
             f"`{settings['precision']}`. "
             + ("Exact: `torch.cuda.set_sync_debug_mode('warn')`."
                if exact else "Upper bound (CPU): calls that synchronise when their tensor is "
                              "on a GPU; some touch host tensors in a GPU run.")
             + " Site: the innermost `pyg_docre` line. See `benchmarks/host_syncs.py`.\n",
             _common.markdown_table(["model", "calls per step"],
                                    [[name, r["per_step"]] for name, r in result["models"].items()])]
    for name, r in result["models"].items():
        parts.append(f"\n## {name}\n")
        parts.append(_common.markdown_table(["calls per step", "call", "site"],
                                            [[s["per_step"], f"`{s['call']}`", f"`{s['site']}`"]
                                             for s in r["sites"]]))
    parts += ["", _common.metadata_markdown(meta)]
    return "\n".join(parts)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Host synchronisations per training step, by line of pyg_docre "
                    "(see benchmarks/host_syncs.py).")
    parser.add_argument("--device", default="cpu", help="cpu (an upper bound) or cuda (exact)")
    parser.add_argument("--steps", type=int, default=2, help="recorded steps (default: 2)")
    parser.add_argument("--batch-size", type=int, default=4, help="(default: 4, as the configs)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--seed", type=int, default=66)
    parser.add_argument("--out", default=None, help="output directory (default: "
                                                     "benchmarks/results)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be >= 1")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    out_dir = _common.resolve_out(args.out)
    meta = _common.metadata(_common.script_argv(__file__, argv))
    result = {"benchmark": "host_syncs", "metadata": meta,
              "settings": {"device": args.device, "steps": args.steps,
                           "batch_size": args.batch_size, "precision": args.precision,
                           "seed": args.seed},
              "models": measure(args)}
    _common.write_json(out_dir / "host_syncs.json", result)
    _common.write_text_atomic(out_dir / "host_syncs.md", report(result, meta))
    for name, r in result["models"].items():
        print(f"{name}: {r['per_step']:.1f} synchronising calls per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
