"""Training loop: AdamW with separate learning rates, linear warm-up and decay, gradient
clipping and accumulation, optional mixed precision, per-epoch dev evaluation and best-checkpoint
selection on dev F1. With a ``state_dir`` the complete training state is saved there at every
epoch end and every ``save_every_steps`` optimiser steps, and :meth:`Trainer.load_training_state`
continues a run exactly where it was saved (see :mod:`pyg_docre.training.resume`). With
``stop_signals`` (a :class:`~pyg_docre.training.stopping.StopSignals`), a SIGTERM or SIGINT ends
training after the current optimiser step, or after the epoch-end evaluation, with the state
saved and :class:`~pyg_docre.training.stopping.TrainingStopped` raised.

Under ``torchrun`` (a :class:`~pyg_docre.training.distributed.DistributedContext` with several
processes) the model runs in ``DistributedDataParallel``, each process trains on its
``DistributedSampler`` shard, evaluation is sharded and gathered, and only rank 0 writes
checkpoints and training states (see :mod:`pyg_docre.training.distributed`)."""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import signal
import time
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from pyg_docre.config import TrainingConfig
from pyg_docre.data import PAIR_EDGE_TYPE, id2rel
from pyg_docre.models.docre_model import DocREModel
from pyg_docre.utils import set_seed

from .distributed import (DistributedContext, all_reduce_gradients, all_reduce_mean, barrier,
                          gather_lists)
from .evaluation import predict
from .objective import DocREObjective, read_scalars
from .optimizer import parameter_groups
from .resume import EpochRecord, Progress, load_training_state, save_training_state
from .stopping import StopSignals, TrainingStopped, ignore_stop_signals

__all__ = ["set_seed", "resolve_device", "autocast_factory", "Trainer", "EpochRecord"]

log = logging.getLogger("pyg_docre.train")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"training.device={name!r} but CUDA is not available")
    return device


def autocast_factory(precision: str, device: torch.device) -> Callable:
    """A no-argument context-manager factory for the configured precision."""
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("training.precision=fp16 needs CUDA; use bf16 on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


class Trainer:
    """Trains a :class:`DocREModel` with its :class:`DocREObjective`.

    Args:
        model, objective: what to train.
        config: the training section of the experiment config.
        train_set: a sequence of HDGs.
        evaluate_dev: ``predictions -> scores dict`` (percent) for dev; selection is on its
            ``f1``.
        dev_loader: the dev batches.
        checkpoint_dir: where the best model is saved (``save_pretrained``).
        tokenizer: saved beside the checkpoint.
        state_dir: where the resume state is saved (``None``: not saved).
        distributed: this process's place among ``torchrun``'s processes (default: one
            process); the process group must be joined already
            (:func:`~pyg_docre.training.distributed.setup`).
        device: the device to train on (default: ``config.device`` resolved; under torchrun,
            the one :func:`~pyg_docre.training.distributed.setup` gave this process).
        stop_signals: where a stop signal is recorded (default: none, training runs to its
            end); settable later as the attribute of that name.
    """

    def __init__(self, model: DocREModel, objective: DocREObjective, config: TrainingConfig,
                 train_set, dev_loader, evaluate_dev: Callable[[list], dict],
                 checkpoint_dir: Path, tokenizer=None, state_dir: Path | None = None,
                 distributed: DistributedContext | None = None,
                 device: torch.device | None = None, stop_signals: StopSignals | None = None):
        self.model, self.objective, self.config = model, objective, config
        self.stop_signals = stop_signals
        self.distributed = distributed or DistributedContext()
        self.device = resolve_device(config.device) if device is None else torch.device(device)
        self.autocast = autocast_factory(config.precision, self.device)
        self.model.to(self.device)
        self.objective.to(self.device)
        if config.compile_gtn:
            model.compile_gtn()
        generator = torch.Generator()
        generator.manual_seed(config.seed)
        self.sampler = (DistributedSampler(train_set, num_replicas=self.distributed.world_size,
                                           rank=self.distributed.rank, shuffle=True,
                                           seed=config.seed)
                        if self.distributed.enabled else None)
        pin = config.pin_memory and self.device.type == "cuda"
        workers = config.num_workers
        if workers is None:
            workers = 2 if self.device.type == "cuda" else 0
        # Not persistent_workers: every epoch's iterator draws its base seed and then its
        # shuffle from `generator`, as without workers; a persistent one draws the seed only
        # in the first epoch of a process, so a resumed run would shuffle differently.
        self.train_loader = DataLoader(train_set, batch_size=config.batch_size,
                                       shuffle=self.sampler is None, sampler=self.sampler,
                                       num_workers=workers, pin_memory=pin, generator=generator,
                                       # a stop signal sent to every process of the run
                                       worker_init_fn=ignore_stop_signals if workers else None)
        self.non_blocking = pin
        # The model as the forward pass calls it: DDP averages its gradients across processes
        # (the pooler and, without reconstruction, the mask vector get none: unused parameters).
        self.ddp_model = (DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=True) if self.distributed.enabled else None)
        self.generator = generator
        self.dev_loader = dev_loader
        self.evaluate_dev = evaluate_dev
        self.checkpoint_dir = Path(checkpoint_dir)
        self.tokenizer = tokenizer
        self.id2rel = id2rel(model.rel2id)

        batches = len(self.train_loader)
        if config.max_steps_per_epoch is not None:
            batches = min(batches, config.max_steps_per_epoch * config.grad_accum)
        self.batches_per_epoch = batches
        self.steps_per_epoch = math.ceil(batches / config.grad_accum)
        total_steps = self.steps_per_epoch * config.epochs
        # The student heads of SA-KD / KD belong to the model step (new parameters, lr_new).
        self.trained_parameters = list(model.parameters()) + objective.generator_parameters()
        owners = [model, objective]
        self.optimizer = torch.optim.AdamW(parameter_groups(
            [(list(model.encoder.parameters()), config.lr_encoder),
             (model.new_parameters() + objective.generator_parameters(), config.lr_new)],
            weight_decay=config.weight_decay, decay_bias_and_norm=config.decay_bias_and_norm,
            owners=owners))
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, num_warmup_steps=int(config.warmup_ratio * total_steps),
            num_training_steps=total_steps)
        self.disc_optimizer = (torch.optim.AdamW(parameter_groups(
            [(list(objective.discriminators.parameters()), config.lr_discriminator)],
            weight_decay=config.weight_decay, decay_bias_and_norm=config.decay_bias_and_norm,
            owners=owners)) if objective.adversarial else None)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=config.precision == "fp16")
        self.history: list[EpochRecord] = []
        self.best_f1 = -1.0
        self.best_epoch = None
        # Resume bookkeeping (pyg_docre.training.resume).
        self.state_dir = None if state_dir is None else Path(state_dir)
        self._progress = Progress()
        self._epoch_generator_state = generator.get_state()
        self._resume_mid_epoch = False

    # ------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> EpochRecord:
        model, cfg = self.model, self.config
        model.train()
        self.objective.train()
        progress = self._begin_epoch(epoch)
        sums: dict[str, float] = dict(progress.loss_sums)
        counts: dict[str, int] = dict(progress.loss_counts)
        documents, steps, start = progress.documents, progress.steps_done, time.perf_counter()
        skip = progress.batches_done
        bar = tqdm(total=self.batches_per_epoch, desc=f"epoch {epoch}", unit="batch",
                   dynamic_ncols=True, leave=False, initial=skip,
                   disable=not self.distributed.is_main)
        self.optimizer.zero_grad(set_to_none=True)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)       # a new shuffle per epoch, the same on all ranks
        for i, data in enumerate(self.train_loader):
            if i >= self.batches_per_epoch:
                break
            if i < skip:        # consumed before the run was interrupted (same shuffle order)
                continue
            last = (i + 1) % cfg.grad_accum == 0 or i + 1 == self.batches_per_epoch
            parts = self.train_step(data, last=last)
            steps += int(last)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            documents += data.num_graphs
            if last:
                self._after_optimizer_step(i + 1, steps, documents, sums, counts)
            elapsed = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{parts['loss']:.4f}", docs_per_s=f"{documents / elapsed:.2f}")
        bar.close()
        seconds = time.perf_counter() - start
        count = max(1, min(self.batches_per_epoch, i + 1))
        losses = all_reduce_mean({k: v / max(1, counts.get(k, count)) for k, v in sums.items()},
                                 self.device)
        if self.distributed.enabled:                    # documents of all processes
            documents = int(round(all_reduce_mean({"d": documents}, self.device)["d"]
                                  * self.distributed.world_size))
        return EpochRecord(epoch=epoch, steps=steps, train_seconds=seconds,
                           train_documents=documents, losses=losses)

    def train_step(self, data, *, last: bool = True) -> dict[str, float]:
        """One micro-batch of training, as :meth:`train_epoch` runs it: move ``data`` to the
        device, forward under the configured autocast, the discriminator step (SA-KD), the
        model loss's backward, and, when ``last`` (the last micro-batch of an accumulation),
        clipping and the optimiser and scheduler steps. Returns the loss parts (floats).

        Under DDP the micro-batches before the last run under ``no_sync``: their gradients
        accumulate locally and are averaged across processes once, with the last one.
        """
        data = data.to(self.device, non_blocking=self.non_blocking)
        sync = (self.ddp_model.no_sync() if self.ddp_model is not None and not last
                else contextlib.nullcontext())
        with sync:
            with self.autocast():
                forward = self.model if self.ddp_model is None else self.ddp_model
                out = forward(data)
            return self._step(out, data, last=last)

    def _step(self, out, data, last: bool) -> dict[str, float]:
        cfg = self.config
        disc_loss = (self.objective.discriminator_loss(out) if self._discriminator_turn()
                     else None)
        if disc_loss is not None:
            self.disc_optimizer.zero_grad(set_to_none=True)
            disc_loss.backward()
            all_reduce_gradients(self.objective.discriminators.parameters())
            self.disc_optimizer.step()
        loss, terms = self.objective.model_loss_terms(out, data[PAIR_EDGE_TYPE].y)
        if disc_loss is not None:
            terms["L_D"] = disc_loss.detach()
        self.scaler.scale(loss / cfg.grad_accum).backward()
        # The step's one read from the device, once the backward pass is queued: the loss parts
        # for the log and whether the loss is finite (no optimiser step follows a non-finite one).
        parts = read_scalars({**terms, "finite": torch.isfinite(loss)})
        if not parts.pop("finite"):
            raise FloatingPointError(f"non-finite loss {parts}; try precision=fp32 or a lower "
                                     f"learning rate")
        if last:
            # DDP averaged the model's gradients in backward; the student heads are averaged
            # here (see pyg_docre.training.distributed).
            all_reduce_gradients(self.objective.generator_parameters())
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trained_parameters, cfg.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return parts

    def _discriminator_turn(self) -> bool:
        """Whether the SA-KD discriminators take their step in this optimiser step: every
        ``objectives.discriminator_every``-th step, counted from 0 (all micro-batches of an
        accumulated step alike; the count is the resumable ``global_step``)."""
        return self._progress.global_step % self.objective.config.discriminator_every == 0

    # ------------------------------------------------------------------------------------
    # Resume state (kept apart from the step math; see pyg_docre.training.resume)
    def _begin_epoch(self, epoch: int) -> Progress:
        """The progress to start ``epoch`` from: restored mid-epoch, or a fresh one."""
        if self._resume_mid_epoch and self._progress.epoch == epoch:
            self._resume_mid_epoch = False      # the generator holds the epoch-start state
        else:
            self._resume_mid_epoch = False
            self._progress = Progress(epoch=epoch, global_step=self._progress.global_step)
            self._epoch_generator_state = self.generator.get_state()
        return self._progress

    def _after_optimizer_step(self, batches: int, steps: int, documents: int,
                              sums: dict, counts: dict) -> None:
        p = self._progress
        p.batches_done, p.steps_done, p.documents = batches, steps, documents
        p.loss_sums, p.loss_counts = dict(sums), dict(counts)
        p.global_step += 1
        every = self.config.save_every_steps
        saved = bool(self.state_dir is not None and every and p.global_step % every == 0
                     and batches < self.batches_per_epoch)  # the epoch end saves anyway
        if saved:
            self.save_training_state()
        self._stop_if_asked(already_saved=saved)

    def _stop_if_asked(self, already_saved: bool) -> None:
        """Raise :class:`TrainingStopped` (after saving the state) if a stop signal came.

        Under DDP the processes agree first (one small all-reduce per check; none without
        ``stop_signals``), so all of them stop at the same step: a process that received the
        signal alone would otherwise leave the others waiting in the next collective."""
        if self.stop_signals is None:
            return
        signum = self.stop_signals.received
        if self.distributed.enabled:
            anyone = all_reduce_mean({"stop": float(signum is not None)}, self.device)["stop"]
            if anyone > 0 and signum is None:
                signum = signal.SIGTERM                     # another process received it
        if signum is None:
            return
        if self.state_dir is not None and not already_saved:
            self.save_training_state()
        p = self._progress
        raise TrainingStopped(signum, p.epoch, p.batches_done, self.state_dir,
                              epochs=self.config.epochs)

    @property
    def progress(self) -> Progress:
        """Where training stands (epoch in progress, batches consumed, optimiser steps)."""
        return self._progress

    def save_training_state(self, directory: Path | None = None) -> None:
        """Save the complete training state (default: into ``state_dir``); under DDP rank 0
        writes it (the states are identical) while the others wait."""
        if self.distributed.is_main:
            save_training_state(self, directory or self.state_dir, self._progress,
                                self._epoch_generator_state)
        barrier()

    def load_training_state(self, directory: Path | None = None) -> None:
        """Restore a state saved by :meth:`save_training_state`; :meth:`fit` then continues
        from the saved epoch and batch."""
        self._progress, generator_state = load_training_state(self, directory or self.state_dir)
        self.generator.set_state(generator_state)
        self._epoch_generator_state = generator_state
        self._resume_mid_epoch = self._progress.batches_done > 0

    # ------------------------------------------------------------------------------------
    def predict(self, loader) -> list[dict]:
        """Official predictions of ``loader``'s documents; under DDP every process predicts
        its shard (a loader over :func:`~pyg_docre.training.distributed.shard`) and all get
        the gathered list."""
        return gather_lists(predict(self.model, loader, self.device, self.id2rel,
                                    self.model.config.top_k, autocast=self.autocast))

    def fit(self) -> list[EpochRecord]:
        """Train for ``epochs``, evaluate on dev after each, keep the best (dev F1) checkpoint."""
        for epoch in range(self._progress.epoch, self.config.epochs + 1):
            record = self.train_epoch(epoch)
            start = time.perf_counter()
            record.dev = self.evaluate_dev(self.predict(self.dev_loader))
            record.eval_seconds = time.perf_counter() - start
            self.history.append(record)
            improved = record.dev["f1"] > self.best_f1
            if improved:
                self.best_f1, self.best_epoch = record.dev["f1"], epoch
                if self.distributed.is_main:
                    self.model.save_pretrained(self.checkpoint_dir, tokenizer=self.tokenizer)
                barrier()
            losses = " ".join(f"{k}={v:.4f}" for k, v in record.losses.items())
            log.info("epoch %d/%d: %s | %.1fs, %.2f docs/s | dev F1 %.2f Ign F1 %s%s",
                     epoch, self.config.epochs, losses, record.train_seconds,
                     record.train_documents / max(record.train_seconds, 1e-9), record.dev["f1"],
                     _fmt(record.dev.get("ign_f1")), " (best, saved)" if improved else "")
            self._progress = Progress(epoch=epoch + 1, global_step=self._progress.global_step)
            self._epoch_generator_state = self.generator.get_state()
            saved = self.state_dir is not None
            if saved:
                self.save_training_state()
            self._stop_if_asked(already_saved=saved)
        return self.history


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
