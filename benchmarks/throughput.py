r"""Training and inference throughput of DocRE-BSI against the ATLOP baseline and against
the encoder alone.

Three models on the same Re-DocRED documents (the first ``--docs`` of ``dev_revised.json``),
the same batches (``--batch-size``, fixed order) and the same encoder (the embedded MiniLM-L6):

* ``full``: ``ModelConfig()`` (the defaults: windows in padded batches, as the training configs
  run them; ``--encoder-max-padding`` sets ``encoder_max_padding``) with
  ``ObjectivesConfig(distill_layers=[3, 6])`` (GTN, node reconstruction, SA-KD with its
  discriminators);
* ``baseline``: the same with ``baseline=True`` (ATLOP: no GTN, no auxiliary losses);
* ``encoder``: the Hugging Face ``AutoModel`` alone, with PyTorch's fused attention (``sdpa``),
  on the same token windows (:class:`~pyg_docre.nn.encoder.WindowedEncoder` with
  ``attention=False`` and the same ``max_padding``: documents longer than 512 tokens are split and
  batched as in the model); a training
  step is forward, the backward of a scalar of the last hidden states, clipping and an AdamW
  step; inference is the forward pass. This is the floor the model's cost is compared with.

A **training step** is :meth:`Trainer.train_step`, what :meth:`Trainer.train_epoch` runs per
batch: move the batch to the device, ``model(data)`` under the trainer's autocast, the
discriminator step, model loss, backward, clipping, optimiser and scheduler steps. **Inference** is
:func:`pyg_docre.training.evaluation.predict` (``no_grad``, eval mode, decoding of the official
predictions). Both are timed over whole passes through a ``DataLoader`` (collation included),
after one untimed warm-up batch per model, the models alternating pass by pass. Reported, from
the median pass: documents per second, seconds per document (with the spread of the passes,
slowest over fastest), and the ratios of the time per document, checked
(printed, not asserted) against the targets: the full model at most 1.4x (training) and 1.3x
(inference) the encoder alone, and at most 1.25x / 1.10x the baseline.

``--device cuda`` runs everything on the GPU (each timed call ends with
``torch.cuda.synchronize()``) and records ``torch.cuda.max_memory_allocated`` per model and kind
of pass and the device name. ``--precision bf16`` (or ``fp16`` on CUDA) runs the models under
the trainer's autocast.

**Where the time goes**: a separate pass under :mod:`torch.profiler` with ``record_function``
labels put from outside the model: forward hooks on ``model.encoder``, ``model.gtn`` and
``model.classifier``, wrappers on the objective's loss methods and the optimisers' ``step``, and
labels around collation, ``data.to(device)``, ``to_gtn_inputs`` (inference: computed outside
the model and passed as ``model(data, view)``; training: inside ``Trainer.train_step``) and the
model call (training: the whole ``train_step``, whose losses and optimiser steps carry their own
labels). Backward time is attributed to the region
whose forward operator created the autograd node (the profiler's ``sequence_nr`` links a
backward ``evaluate_function`` event to its forward operator). Shares are of the profiled step
time; the profiler's own overhead inflates small operators, so read them as proportions.

Outputs in ``--out`` (default ``benchmarks/results/``): ``throughput.json`` and
``throughput.md``. See ``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (puts the repository root on sys.path too)

import torch  # noqa: E402
from torch.autograd.profiler import record_function  # noqa: E402

#: Targets: full-model time per document over the other model's.
TARGETS = {("full", "encoder"): {"train": 1.4, "inference": 1.3},
           ("full", "baseline"): {"train": 1.25, "inference": 1.10}}
VARIANTS = ("full", "baseline", "encoder")
#: Variants with the model's structure (profiled by region).
PROFILED = ("full", "baseline")
BACKWARD_EVENT = "autograd::engine::evaluate_function: "

# Region labels. "step" spans a whole training step / inference batch; the others nest in it.
STEP = "step"
DATA_REGIONS = ("data:collate", "data:to_device", "data:to_gtn_inputs")
MODEL = "model"
MODULE_REGIONS = {"encoder": "encoder", "gtn": "gtn", "classifier": "classifier"}
LOSSES, OPTIMIZER, DECODE = "losses", "optimizer", "decode"
#: Backward time whose forward operator lies outside every label (``"unattributed:backward"``).
UNATTRIBUTED = "unattributed"
LABELS = frozenset((STEP, *DATA_REGIONS, MODEL, *MODULE_REGIONS.values(), LOSSES, OPTIMIZER,
                    DECODE))
#: How the report groups regions (the brief's four: encoder, GTN, losses, data pipeline).
GROUPS = {
    "data pipeline": DATA_REGIONS,
    "encoder": ("encoder",),
    "GTN": ("gtn",),
    "classifier": ("classifier",),
    "model (other: node features, context pooling, ...)": (MODEL,),
    "losses": (LOSSES,),
    "optimizer steps": (OPTIMIZER,),
    "decoding predictions": (DECODE,),
    "backward (unattributed: gradient accumulation, ...)": (UNATTRIBUTED,),
    "other (clipping, scheduler, glue)": (STEP,),
}


# ==============================================================================================
# Models and data
# ==============================================================================================
@dataclass
class Variant:
    """One model with its objective and trainer (the trainer owns the optimisers)."""

    name: str
    model: torch.nn.Module
    objective: torch.nn.Module
    trainer: object


class EncoderAlone(torch.nn.Module):
    """The ``encoder`` variant: a Hugging Face encoder on the model's windows, nothing else."""

    def __init__(self, max_padding=None):
        super().__init__()
        from pyg_docre.nn.encoder import WindowedEncoder
        self.encoder = WindowedEncoder.from_pretrained(
            _common.ENCODER, attention=False, max_padding=max_padding,
            model_kwargs={"attn_implementation": "sdpa"})

    def forward(self, data):
        from pyg_docre.data import node_ptr
        return self.encoder(data["token"].input_ids, node_ptr(data, "token")).hidden


class EncoderTrainer:
    """What ``Trainer`` does for a step, for :class:`EncoderAlone`: AdamW, clipping, autocast."""

    def __init__(self, model: EncoderAlone, device: torch.device, precision: str, lr: float):
        from pyg_docre.training.trainer import autocast_factory
        self.model, self.device = model.to(device), device
        self.autocast = autocast_factory(precision, device)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        self.disc_optimizer = None

    def step(self, data) -> None:
        with self.autocast():
            hidden = self.model(data)
        hidden.float().pow(2).mean().backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def infer(self, data) -> None:
        with self.autocast():
            self.model(data)


def build_variant(name: str, graphs: Sequence, rel2id: dict, seed: int, batch_size: int,
                  workdir: Path, device: str = "cpu", precision: str = "fp32",
                  max_padding=None, compile_gtn: bool = False) -> Variant:
    """``full`` or ``baseline``, built as ``experiments/run.py`` builds them, or ``encoder``;
    every variant batches the encoder's windows with the same ``max_padding``."""
    from pyg_docre.config import ModelConfig, ObjectivesConfig, TrainingConfig
    from pyg_docre.models.docre_model import DocREModel
    from pyg_docre.training.objective import DocREObjective
    from pyg_docre.training.trainer import Trainer, set_seed
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    set_seed(seed)
    if name == "encoder":
        model = EncoderAlone(max_padding)
        trainer = EncoderTrainer(model, torch.device(device), precision,
                                 lr=TrainingConfig().lr_encoder)
        return Variant(name, model, torch.nn.Module(), trainer)
    model_config = ModelConfig(baseline=(name == "baseline"),
                               encoder_max_padding=max_padding)
    objectives = ObjectivesConfig(distill_layers=[3, 6])
    model = DocREModel(model_config, rel2id, **objectives.model_outputs(model_config.baseline))
    objective = DocREObjective(objectives, model.channels, model.distill_layers)
    training = TrainingConfig(device=device, batch_size=batch_size, epochs=1, seed=seed,
                              precision=precision, compile_gtn=compile_gtn)
    trainer = Trainer(model, objective, training, list(graphs), dev_loader=[],
                      evaluate_dev=lambda predictions: {}, checkpoint_dir=workdir / name)
    return Variant(name, model, objective, trainer)


def load_graphs(num_docs: int, rel2id: dict) -> list:
    """HDGs of the first ``num_docs`` documents of Re-DocRED dev (MiniLM tokenizer)."""
    from pyg_docre.data import build_hdg

    docs = _common.load_documents("dev_revised.json", rel2id)
    if not 1 <= num_docs <= len(docs):
        raise ValueError(f"--docs must be in 1..{len(docs)} (got {num_docs})")
    tokenizer = _common.load_tokenizer()
    return [build_hdg(doc, tokenizer, rel2id, validate=False) for doc in docs[:num_docs]]


def make_loader(graphs: Sequence, batch_size: int):
    from torch_geometric.loader import DataLoader
    return DataLoader(list(graphs), batch_size=batch_size, shuffle=False)


# ==============================================================================================
# What is timed: the trainer's step and the evaluation's predict
# ==============================================================================================
def train_step(variant: Variant, data) -> None:
    """The body of ``Trainer.train_epoch`` for one batch (no accumulation)."""
    trainer = variant.trainer
    data = data.to(trainer.device)
    if isinstance(trainer, EncoderTrainer):
        trainer.step(data)
        return
    trainer.train_step(data, last=True)


def train_pass(variant: Variant, loader) -> None:
    variant.model.train()
    variant.objective.train()
    for data in loader:
        train_step(variant, data)


def inference_pass(variant: Variant, loader) -> None:
    from pyg_docre.training.evaluation import predict
    trainer = variant.trainer
    if isinstance(trainer, EncoderTrainer):
        variant.model.eval()
        for data in loader:
            trainer.infer(data.to(trainer.device))
        variant.model.train()
        return
    predict(variant.model, loader, trainer.device, trainer.id2rel, variant.model.config.top_k,
            autocast=trainer.autocast)


def _synchronized(fn, device: torch.device):
    def call():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return call


def measure(variants: Sequence[Variant], loader, warmup_loader, passes: int,
            num_docs: int, device: torch.device = torch.device("cpu")) -> dict:
    """Seconds per pass of every variant, training and inference, passes interleaved; on CUDA
    also the peak allocated GPU memory of each variant's passes."""
    runs = {"train": train_pass, "inference": inference_pass}
    seconds = {v.name: {kind: [] for kind in runs} for v in variants}
    peak = {v.name: {} for v in variants}
    for kind, run in runs.items():
        for variant in variants:
            run(variant, warmup_loader)
        for _ in range(passes):
            for variant in variants:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                seconds[variant.name][kind].append(_common.time_call(
                    _synchronized(functools.partial(run, variant, loader), device)))
                if device.type == "cuda":
                    peak[variant.name][kind] = max(peak[variant.name].get(kind, 0),
                                                   torch.cuda.max_memory_allocated(device))
    results = {}
    for name, kinds in seconds.items():
        results[name] = {}
        for kind, times in kinds.items():
            results[name][kind] = pass_statistics(times, num_docs)
            if kind in peak[name]:
                results[name][kind]["gpu_max_memory_allocated_mb"] = peak[name][kind] / 2 ** 20
    return results


def pass_statistics(times: Sequence[float], num_docs: int) -> dict:
    """Documents per second and seconds per document of the **median** timed pass (one pass
    disturbed by the machine moves the median less than the mean), with every pass's seconds and
    the spread (slowest over fastest pass) to show how steady the machine was."""
    median = statistics.median(times)
    return {"pass_seconds": list(times), "documents": num_docs * len(times),
            "median_pass_seconds": median, "docs_per_s": num_docs / median,
            "s_per_doc": median / num_docs, "pass_spread": max(times) / min(times)}


def ratios(results: dict) -> dict:
    """Time per document of the full model over the encoder's and the baseline's, with the
    targets."""
    out = {}
    for (num, den), targets in TARGETS.items():
        for kind, target in targets.items():
            value = results[num][kind]["s_per_doc"] / results[den][kind]["s_per_doc"]
            out[f"{kind}: {num} / {den}"] = {"kind": kind, "ratio": value, "target_max": target,
                                             "met": value <= target}
    return out


# ==============================================================================================
# Where the time goes: profiler labels from outside the model
# ==============================================================================================
class RegionLabels(contextlib.AbstractContextManager):
    """``record_function`` labels around modules (forward hooks) and methods (wrappers), all
    removed on exit."""

    def __init__(self):
        self._handles: list = []
        self._restore: list[tuple[object, str, object]] = []

    def module(self, module: Optional[torch.nn.Module], label: str) -> None:
        if module is None:
            return
        stack: list = []

        def enter(mod, args):
            stack.append(record_function(label))
            stack[-1].__enter__()

        def leave(mod, args, output):
            stack.pop().__exit__(None, None, None)

        self._handles.append(module.register_forward_pre_hook(enter))
        self._handles.append(module.register_forward_hook(leave, always_call=True))

    def method(self, obj: Optional[object], name: str, label: str) -> None:
        if obj is None:
            return
        original = getattr(obj, name)

        @functools.wraps(original)
        def labelled(*args, **kwargs):
            with record_function(label):
                return original(*args, **kwargs)

        self._restore.append((obj, name, obj.__dict__.get(name)))
        setattr(obj, name, labelled)

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        for obj, name, previous in reversed(self._restore):
            if previous is None:
                delattr(obj, name)
            else:
                setattr(obj, name, previous)
        self._handles, self._restore = [], []


def label_variant(labels: RegionLabels, variant: Variant) -> None:
    model, trainer = variant.model, variant.trainer
    for attr, label in MODULE_REGIONS.items():
        labels.module(getattr(model, attr), label)
    labels.method(variant.objective, "discriminator_loss", LOSSES)
    labels.method(variant.objective, "model_loss_terms", LOSSES)   # (model_loss calls it)
    labels.method(trainer.optimizer, "step", OPTIMIZER)
    labels.method(trainer.disc_optimizer, "step", OPTIMIZER)


def _batches(loader) -> Iterator:
    """The loader's batches, each fetched (collated) under the ``data:collate`` label."""
    iterator = iter(loader)
    while True:
        with record_function("data:collate"):
            data = next(iterator, None)
        if data is None:
            return
        yield data


def profiled_train_steps(variant: Variant, loader) -> None:
    """Training steps as :func:`train_step`, with the data pipeline split into labels."""
    trainer = variant.trainer
    variant.model.train()
    variant.objective.train()
    for data in _batches(loader):
        with record_function(STEP):
            with record_function("data:to_device"):
                data = data.to(trainer.device)
            with record_function(MODEL):
                trainer.train_step(data, last=True)


def profiled_inference(variant: Variant, loader) -> None:
    """Inference batches as :func:`~pyg_docre.training.evaluation.predict` runs them."""
    from pyg_docre.data import to_gtn_inputs
    from pyg_docre.training.evaluation import decode_predictions
    trainer, model = variant.trainer, variant.model
    model.eval()
    with torch.no_grad():
        for data in _batches(loader):
            with record_function(STEP):
                with record_function("data:to_device"):
                    data = data.to(trainer.device)
                with record_function("data:to_gtn_inputs"):
                    view = to_gtn_inputs(data)
                with record_function(MODEL), trainer.autocast():
                    out = model(data, view)
                with record_function(DECODE):
                    decode_predictions(out.logits, data, trainer.id2rel, model.config.top_k)
    model.train()


def profile_regions(variant: Variant, loader, kind: str) -> dict:
    """Profile one pass (``kind`` = ``"train"`` / ``"inference"``) and break its time down."""
    from torch.profiler import ProfilerActivity, profile

    run = profiled_train_steps if kind == "train" else profiled_inference
    with RegionLabels() as labels:
        label_variant(labels, variant)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(variant, loader)
    return region_breakdown(prof.events())


def _nearest_label(event) -> Optional[object]:
    parent = event.cpu_parent
    while parent is not None and parent.name not in LABELS:
        parent = parent.cpu_parent
    return parent


def region_breakdown(events) -> dict:
    """Exclusive wall time (microseconds) per label, forward and backward, from profiler events.

    A label's exclusive time is its duration minus that of the labels nested in it. A backward
    ``evaluate_function`` event is moved from the label it runs in to ``<label>:backward`` of the
    label whose forward operator (same thread, same ``sequence_nr``) created its autograd node,
    or to ``unattributed:backward``. ``total_us`` is the time of the top-level labels (steps
    and collation).
    """
    forward_region: dict[tuple[int, int], str] = {}
    exclusive: dict[str, float] = defaultdict(float)
    total = 0.0
    # Every operator run with autograd on records the sequence number the NEXT autograd node
    # will take, so operators that create no node (e.g. collating integer tensors) share it
    # with the one that does; the creator is the last of them to start. Hence: in start order,
    # later operators overwrite earlier ones.
    events = sorted(events, key=lambda e: e.time_range.start)
    for event in events:
        name = event.name
        if name in LABELS:
            duration = event.time_range.elapsed_us()
            exclusive[name] += duration
            outer = _nearest_label(event)
            if outer is not None:
                exclusive[outer.name] -= duration
            else:  # a top-level region: a step, or the collation before it
                total += duration
        elif event.sequence_nr >= 0 and not name.startswith(BACKWARD_EVENT):
            owner = _nearest_label(event)
            if owner is not None and _enclosing_backward(event) is None:
                forward_region[(event.thread, event.sequence_nr)] = owner.name
    for event in events:
        if not event.name.startswith(BACKWARD_EVENT):
            continue
        duration = event.time_range.elapsed_us()
        region = forward_region.get((getattr(event, "fwd_thread", event.thread),
                                     event.sequence_nr))
        exclusive[f"{region or UNATTRIBUTED}:backward"] += duration
        outer = _nearest_label(event)
        if outer is not None:
            exclusive[outer.name] -= duration
    operators: dict[str, int] = defaultdict(int)
    for event in _top_level_operators(events):
        backward = _enclosing_backward(event)
        if backward is not None:
            region = forward_region.get((getattr(backward, "fwd_thread", backward.thread),
                                         backward.sequence_nr))
            operators[f"{region or UNATTRIBUTED}:backward"] += 1
        else:
            label = _nearest_label(event)
            operators[label.name if label is not None else STEP] += 1
    return {"total_us": total, "exclusive_us": dict(exclusive),
            "operators": sum(operators.values()), "operators_by_region": dict(operators)}


def _top_level_operators(events):
    """The ``aten::*`` events not inside another ``aten::*`` event."""
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            yield event


def operator_count(events) -> int:
    """Top-level ATen operator calls (``aten::*`` not inside another ``aten::*``), forward and
    backward: what the host dispatches. On a GPU each launches one kernel or more, so where the
    host is the bottleneck the step's time follows this count."""
    return sum(1 for _ in _top_level_operators(events))


def _enclosing_backward(event):
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(BACKWARD_EVENT):
            return parent
        parent = parent.cpu_parent
    return None


def shares(breakdown: dict) -> dict:
    """Grouped shares (percent of the profiled time), forward and backward separately."""
    total = breakdown["total_us"] or 1.0
    exclusive = breakdown["exclusive_us"]
    out = {}
    for group, regions in GROUPS.items():
        fwd = sum(exclusive.get(r, 0.0) for r in regions)
        bwd = sum(exclusive.get(f"{r}:backward", 0.0) for r in regions)
        out[group] = {"forward_pct": 100 * fwd / total, "backward_pct": 100 * bwd / total,
                      "total_pct": 100 * (fwd + bwd) / total}
    return out


# ==============================================================================================
# Reports
# ==============================================================================================
def markdown_report(result: dict) -> str:
    meta, settings = result["metadata"], result["settings"]
    timing = result["timing"]
    gpu = settings["device"].startswith("cuda")
    rows = []
    for name in VARIANTS:
        t = timing[name]
        row = [name, t["train"]["docs_per_s"], t["train"]["s_per_doc"],
               t["train"].get("pass_spread"), t["inference"]["docs_per_s"],
               t["inference"]["s_per_doc"], t["inference"].get("pass_spread")]
        if gpu:
            row += [t["train"].get("gpu_max_memory_allocated_mb"),
                    t["inference"].get("gpu_max_memory_allocated_mb")]
        rows.append(row)
    headers = ["model", "train docs/s", "train s/doc", "train spread", "inference docs/s",
               "inference s/doc", "inference spread"]
    if gpu:
        headers += ["train GPU MB (max allocated)", "inference GPU MB (max allocated)"]
    ratio_rows = [[name, r["ratio"], f"<= {r['target_max']}", "met" if r["met"] else "MISSED"]
                  for name, r in result["ratios"].items()]
    compiled = (", the full model's GTN compiled (`training.compile_gtn`; no profiled pass)"
                if settings.get("compile_gtn") else "")
    parts = [
        "# Throughput: DocRE-BSI (full) against the ATLOP baseline and the encoder alone\n",
        f"{settings['docs']} Re-DocRED dev documents, batch {settings['batch_size']}, "
        f"{settings['passes']} timed pass(es) per model after a warm-up batch (figures: the "
        f"median pass; spread: slowest over fastest pass), encoder "
        f"`{_common.ENCODER}`, device `{settings['device_name']}`, precision "
        f"`{settings['precision']}`, encoder windows batched with `max_padding="
        f"{settings.get('encoder_max_padding')!r}` (None: padded batches, as the training "
        f"configs){compiled}. Training step = `Trainer.train_step` (as "
        f"`Trainer.train_epoch`); inference = `evaluation.predict`; `encoder` = the Hugging "
        f"Face model alone (sdpa) on the same windows, forward + backward + AdamW. See "
        f"`benchmarks/README.md`.\n",
        _common.markdown_table(headers, rows),
        "\n## Ratios of the time per document\n",
        _common.markdown_table(["", "ratio", "target", "status"], ratio_rows),
    ]
    for kind in ("train", "inference") if result["profile"] else ():
        scope = "forward + backward" if kind == "train" else "forward only"
        parts.append(f"\n## Where the time goes: {kind} (percent of profiled time, {scope})\n")
        table = []
        for group in GROUPS:
            cells = [result["profile"][name][kind]["shares"][group] for name in PROFILED]
            if all(c["total_pct"] < 0.05 for c in cells):
                continue
            row = [group]
            for c in cells:
                row += [c["total_pct"], c["forward_pct"], c["backward_pct"]]
            table.append(row)
        headers = ["region"] + [f"{name} {part}" for name in PROFILED
                                for part in ("total %", "fwd %", "bwd %")]
        parts.append(_common.markdown_table(headers, table))
    docs = result["settings"].get("profiled_docs")
    if docs:
        parts.append(f"\n## Operators per document (the profiled pass, {docs} documents)\n")
        parts.append("Top-level ATen operator calls, forward and backward (`operator_count`): "
                     "what the host dispatches. On a GPU each launches one kernel or more; "
                     "where the host is the bottleneck the step's time follows this count.\n")
        rows = [[name] + [result["profile"][name][kind]["operators"] / docs
                          for kind in ("train", "inference")] for name in PROFILED]
        parts.append(_common.markdown_table(["model", "train", "inference"], rows))
        parts.append("\nBy region, training (forward; backward), per document:\n")
        table = []
        for group, regions in GROUPS.items():
            row = [group]
            for name in PROFILED:
                ops = result["profile"][name]["train"].get("operators_by_region", {})
                row += [sum(ops.get(r, 0) for r in regions) / docs,
                        sum(ops.get(f"{r}:backward", 0) for r in regions) / docs]
            if any(row[1:]):
                table.append(row)
        parts.append(_common.markdown_table(
            ["region"] + [f"{name} {part}" for name in PROFILED for part in ("fwd", "bwd")],
            table))
    parts += ["", _common.metadata_markdown(meta)]
    return "\n".join(parts)


def print_summary(result: dict) -> None:
    for name, r in result["ratios"].items():
        status = "met" if r["met"] else "MISSED"
        print(f"{name} time per document = {r['ratio']:.3f} "
              f"(target <= {r['target_max']}: {status})")


# ==============================================================================================
# Command line
# ==============================================================================================
def parse_max_padding(parser: argparse.ArgumentParser, text: str):
    """``--encoder-max-padding``: read as ``--set model.encoder_max_padding=TEXT`` reads it
    (YAML; ``none`` also means null) and checked by the layer's own
    :func:`~pyg_docre.nn.encoder.check_max_padding`."""
    from pyg_docre.config import yaml_load
    from pyg_docre.nn.encoder import check_max_padding
    value = None if text.lower() == "none" else yaml_load(text)
    try:
        check_max_padding(value)
    except ValueError as err:
        parser.error(f"--encoder-max-padding {text!r}: {err}")
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Training and inference documents/s of DocRE-BSI vs the ATLOP baseline "
                    "(see benchmarks/README.md).")
    parser.add_argument("--docs", type=int, default=None,
                        help="Re-DocRED dev documents (default: 24, quick: 2)")
    parser.add_argument("--batch-size", type=int, default=None, help="(default: 4, quick: 2)")
    parser.add_argument("--passes", type=int, default=None,
                        help="timed passes over the documents per model; the median pass is "
                             "reported (default: 3, quick: 1)")
    parser.add_argument("--profile-batches", type=int, default=None,
                        help="batches in the profiled pass (default: 2, quick: 1)")
    parser.add_argument("--seed", type=int, default=66, help="(default: 66, as the configs)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run for the tests (well under a minute when idle)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="autocast precision of the models (fp16: CUDA only)")
    parser.add_argument("--encoder-max-padding", default="null", metavar="VALUE",
                        help="how every variant batches the encoder's windows "
                             "(model.encoder_max_padding): null (default, padded batches, as "
                             "the training configs), auto, or a share in [0, 1]")
    parser.add_argument("--compile-gtn", action="store_true",
                        help="torch.compile the full model's GTN (training.compile_gtn); the "
                             "warm-up batches compile it, and the profiled pass is skipped "
                             "(its labels would make the compiled GTN recompile)")
    parser.add_argument("--out", default=None, help="output directory "
                        f"(default: {_common.DEFAULT_OUT.relative_to(_common.ROOT)})")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available")
    if args.precision == "fp16" and device.type != "cuda":
        parser.error("--precision fp16 needs --device cuda")
    args.encoder_max_padding = parse_max_padding(parser, args.encoder_max_padding)
    defaults = {"docs": (24, 2), "batch_size": (4, 2), "passes": (3, 1),
                "profile_batches": (2, 1)}
    for name, (normal, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def run(args: argparse.Namespace, meta: dict) -> dict:
    rel2id = _common.load_rel2id()
    graphs = load_graphs(args.docs, rel2id)
    loader = make_loader(graphs, args.batch_size)
    warmup_loader = make_loader(graphs[:args.batch_size], args.batch_size)
    profile_loader = make_loader(graphs[:args.batch_size * args.profile_batches],
                                 args.batch_size)
    device = torch.device(args.device)
    padding = args.encoder_max_padding
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        variants = [build_variant(name, graphs, rel2id, args.seed, args.batch_size, Path(tmp),
                                  device=args.device, precision=args.precision,
                                  max_padding=args.encoder_max_padding,
                                  compile_gtn=args.compile_gtn)
                    for name in VARIANTS]
        timing = measure(variants, loader, warmup_loader, args.passes, len(graphs), device)
        profile = {}
        for variant in variants:
            if variant.name not in PROFILED or args.compile_gtn:
                continue
            profile[variant.name] = {}
            for kind in ("train", "inference"):
                breakdown = profile_regions(variant, profile_loader, kind)
                profile[variant.name][kind] = {"shares": shares(breakdown), **breakdown}
    return {"benchmark": "throughput", "metadata": meta,
            "settings": {"docs": len(graphs), "batch_size": args.batch_size,
                         "passes": args.passes, "profile_batches": args.profile_batches,
                         "seed": args.seed, "split": "re-docred dev_revised.json",
                         "device": args.device, "precision": args.precision,
                         "device_name": (torch.cuda.get_device_name(device)
                                         if device.type == "cuda" else _common.cpu_model()),
                         "encoder": _common.ENCODER,
                         "encoder_max_padding": args.encoder_max_padding,
                         "compile_gtn": args.compile_gtn,
                         "profiled_docs": 0 if args.compile_gtn else len(
                             graphs[:args.batch_size * args.profile_batches]),
                         "full": f"ModelConfig(encoder_max_padding={padding!r}), "
                                 f"ObjectivesConfig(distill_layers=[3, 6])",
                         "baseline": f"ModelConfig(baseline=True, "
                                     f"encoder_max_padding={padding!r})",
                         "encoder_alone": f"AutoModel (sdpa) on the same windows "
                                          f"(max_padding={padding!r})"},
            "timing": timing, "ratios": ratios(timing), "profile": profile}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    out_dir = _common.resolve_out(args.out)
    meta = _common.metadata(_common.script_argv(__file__, argv))
    start = time.perf_counter()
    result = run(args, meta)
    result["metadata"]["wall_seconds"] = round(time.perf_counter() - start, 1)
    _common.write_json(out_dir / "throughput.json", result)
    _common.write_text_atomic(out_dir / "throughput.md", markdown_report(result))
    print_summary(result)
    print(f"wrote {out_dir / 'throughput.json'}, {out_dir / 'throughput.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
