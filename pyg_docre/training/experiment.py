"""One experiment end to end: data, model, training, dev selection, test, and its output folder.

Before anything is loaded the configuration is checked against this machine and its files
(:func:`~pyg_docre.training.validation.validate_runtime`) and the output folder's policy applied
(:func:`~pyg_docre.training.run_folder.prepare_run_folder`): a non-empty folder is refused unless
``resume=True`` (continue the run in it, same config) or ``overwrite=True`` (clear it).

Output folder::

    run_state.json      running / complete / failed (with the error) / stopped (by a signal,
                        with the state saved: ``resume=True`` continues it), written atomically
    config.yaml         the resolved configuration
    train.log           the log (a resumed run appends to it)
    resume/             the latest complete training state (epoch ends, save_every_steps)
    checkpoint/         the best dev checkpoint (config.json, model.safetensors, tokenizer/)
    result_dev.json     official-format predictions of the best checkpoint on dev
    result_test.json    ... and on test (when the config has a test split)
    metrics.json        dev and test scores in percent, per-epoch history, wall time

Under ``torchrun`` every process runs this function; rank 0 alone decides on the output folder
and writes every file, the others train their shards and wait for it where a file must exist.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import yaml
from torch_geometric.loader import DataLoader

from pyg_docre.config import ExperimentConfig, SplitConfig
from pyg_docre.data import (DocREDDataset, load_docred, load_rel2id, load_rel_info,
                            parse_doc_range)
from pyg_docre.io import atomic_write_text
from pyg_docre.metrics import SCORE_KEYS, DocREDScorer, write_result
from pyg_docre.models.docre_model import DocREModel
from pyg_docre.pretrained import load_tokenizer

from . import distributed
from .metadata import run_environment
from .objective import DocREObjective
from .resume import has_training_state
from .run_folder import RunFolderError, prepare_run_folder, write_run_state
from .stopping import StopSignals, TrainingStopped
from .trainer import Trainer, resolve_device, set_seed
from .validation import validate_runtime

__all__ = ["run_experiment", "format_results_table", "RunFolderError"]

log = logging.getLogger("pyg_docre.train")


def _setup_logging(output_dir: Path, main: bool = True) -> logging.Handler:
    """train.log and the console (rank 0); other processes log warnings to the console only."""
    root = logging.getLogger("pyg_docre")
    if main:
        handler: logging.Handler = logging.FileHandler(output_dir / "train.log", encoding="utf-8")
        root.setLevel(logging.INFO)
    else:
        handler = logging.NullHandler()
        root.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        # Records logged with extra={"console": False} (the final results table, which the
        # caller prints once on stdout) go to train.log only.
        console.addFilter(lambda record: getattr(record, "console", True))
        root.addHandler(console)
    return handler


def _split_docs(config: ExperimentConfig, split: SplitConfig, base: Path) -> list[dict]:
    docs = load_docred(config.data.resolve(split.file, base), unique_titles=False)
    return [docs[i] for i in parse_doc_range(split.docs, len(docs))]


def format_results_table(metrics: dict) -> str:
    """A Markdown table of the dev and test scores (percent)."""
    header = "| split | " + " | ".join(SCORE_KEYS) + " |"
    lines = [header, "|" + "---|" * (len(SCORE_KEYS) + 1)]
    for split in ("dev", "test"):
        if split in metrics:
            cells = [("n/a" if metrics[split].get(k) is None else f"{metrics[split][k]:.2f}")
                     for k in SCORE_KEYS]
            lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_experiment(config: ExperimentConfig, output_dir: str | Path, *,
                   base_dir: str | Path = ".", command: str | None = None,
                   resume: bool = False, overwrite: bool = False) -> dict:
    """Train, select on dev, evaluate on test; write the output folder; return metrics.

    Args:
        resume: continue the run in ``output_dir`` from its ``resume/`` state (the same
            configuration is required); a complete run is not repeated, its metrics are
            returned (with ``"already_complete": True``).
        overwrite: clear a non-empty ``output_dir`` (a run folder) and start afresh.

    Raises:
        ConfigError: a config value is invalid on this machine (before anything is loaded).
        RunFolderError: ``output_dir`` is not empty and neither flag is given (nothing is
            touched), or the run there cannot be resumed.
        TrainingStopped: a SIGTERM or SIGINT came during training; the training state was
            saved first (``run_state.json`` says ``stopped``) and ``resume=True`` continues.
    """
    base_dir = Path(base_dir)
    output_dir = Path(output_dir)
    validate_runtime(config, base_dir)
    ctx, device = distributed.setup(resolve_device(config.training.device))
    try:
        metrics = _run_in_folder(config, output_dir, base_dir, command, resume, overwrite, ctx,
                                 device)
    except BaseException:
        distributed.teardown(synchronize=False)     # the other processes may never arrive
        raise
    distributed.teardown()
    return metrics


def _run_in_folder(config: ExperimentConfig, output_dir: Path, base_dir: Path,
                   command: str | None, resume: bool, overwrite: bool,
                   ctx: distributed.DistributedContext, device) -> dict:
    """Apply the output-folder policy (rank 0 decides, all follow), then run."""
    decision: tuple[str, str] | None = None
    if ctx.is_main:
        try:
            decision = ("ok", prepare_run_folder(output_dir, config.to_dict(), resume=resume,
                                                 overwrite=overwrite))
        except RunFolderError as err:
            decision = ("error", str(err))
    status, mode = distributed.broadcast_object(decision)
    if status == "error":
        raise RunFolderError(mode)
    if mode == "complete":
        metrics = json.loads((output_dir / "metrics.json").read_text(encoding="utf-8"))
        return {**metrics, "already_complete": True}
    if ctx.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_run_state(output_dir, "running", command=command, resumed=mode == "resume",
                        world_size=ctx.world_size)
    distributed.barrier()
    handler = _setup_logging(output_dir, main=ctx.is_main)
    try:
        metrics = _run(config, output_dir, base_dir, command, resume=mode == "resume",
                       ctx=ctx, device=device)
    except TrainingStopped as stop:
        if ctx.is_main:
            write_run_state(output_dir, "stopped", signal=stop.signal_name,
                            epoch=stop.epoch, batches_done=stop.batches_done)
        raise
    except BaseException as err:
        if ctx.is_main:
            write_run_state(output_dir, "failed", error=f"{type(err).__name__}: {err}"[:2000])
        raise
    finally:
        logging.getLogger("pyg_docre").removeHandler(handler)
        handler.close()
    if ctx.is_main:
        write_run_state(output_dir, "complete")
    return metrics


def _run(config: ExperimentConfig, output_dir: Path, base_dir: Path, command: str | None, *,
         resume: bool, ctx: distributed.DistributedContext | None = None, device=None) -> dict:
    """The experiment itself, in a prepared output folder."""
    ctx = ctx or distributed.DistributedContext()
    wall_start = time.perf_counter()
    # The code and libraries that run: recorded now, not after hours of training (the checkout
    # may have moved on by then).
    environment = run_environment(device if device is not None else config.training.device,
                                  config.training.seed, world_size=ctx.world_size)
    if ctx.is_main:
        atomic_write_text(output_dir / "config.yaml",
                          yaml.safe_dump(config.to_dict(), sort_keys=False))
    set_seed(config.training.seed)
    data_cfg = config.data
    rel2id = load_rel2id(data_cfg.resolve(data_cfg.rel2id, base_dir))
    tokenizer = load_tokenizer(config.model.encoder)
    cache = None if data_cfg.cache_dir is None else base_dir / data_cfg.cache_dir

    def dataset(split: SplitConfig, unique_titles: bool = True) -> DocREDDataset:
        return DocREDDataset(data_cfg.resolve(split.file, base_dir), tokenizer, rel2id,
                             cache_dir=cache, docs=split.docs, unique_titles=unique_titles)

    train_set, dev_set = dataset(data_cfg.train, unique_titles=False), dataset(data_cfg.dev)
    test_set = dataset(data_cfg.test) if data_cfg.test is not None else None
    ign_docs = (train_set.documents if data_cfg.ign_train is None
                else _split_docs(config, data_cfg.ign_train, base_dir))
    log.info("data: %d train, %d dev, %s test documents; Ign F1 against %d documents",
             len(train_set), len(dev_set), len(test_set) if test_set else 0, len(ign_docs))

    scorers = {"dev": DocREDScorer(dev_set.documents, ign_docs)}
    if test_set is not None and all("labels" in d for d in test_set.documents):
        scorers["test"] = DocREDScorer(test_set.documents, ign_docs)
    elif test_set is not None:
        log.info("the test split has no labels (e.g. DocRED's test.json, scored on "
                 "CodaLab): result_test.json is written, no test scores")
    eval_bs = config.training.eval_batch_size
    # Under DDP each process predicts its shard; Trainer.predict gathers the predictions.
    loaders = {"dev": DataLoader(distributed.shard(dev_set, ctx), batch_size=eval_bs)}
    if test_set is not None:
        loaders["test"] = DataLoader(distributed.shard(test_set, ctx), batch_size=eval_bs)

    model = DocREModel(config.model, rel2id, **config.objectives.model_outputs(config.model.baseline))
    rel_info_path = (None if data_cfg.rel_info is None
                     else data_cfg.resolve(data_cfg.rel_info, base_dir))
    if rel_info_path is not None and rel_info_path.is_file():
        model.rel_info = load_rel_info(rel_info_path)   # saved with the checkpoint
    objective = DocREObjective(config.objectives, model.channels, model.distill_layers)
    log.info("model: %s, %.1fM parameters (%.1fM new)", config.model.encoder,
             sum(p.numel() for p in model.parameters()) / 1e6,
             sum(p.numel() for p in model.new_parameters()) / 1e6)
    checkpoint = output_dir / "checkpoint"
    trainer = Trainer(model, objective, config.training, train_set, loaders["dev"],
                      lambda preds: scorers["dev"].score(preds).to_dict(percent=True),
                      checkpoint, tokenizer=tokenizer, state_dir=output_dir / "resume",
                      distributed=ctx, device=device)
    if resume and has_training_state(output_dir / "resume"):
        trainer.load_training_state()
        log.info("resuming %s from epoch %d, %d batches in (%d optimiser steps done)",
                 output_dir, trainer.progress.epoch, trainer.progress.batches_done,
                 trainer.progress.global_step)
    elif resume:
        log.info("no saved training state in %s: starting from the beginning", output_dir)
    train_start = time.perf_counter()
    with StopSignals() as stop:          # a SIGTERM or Ctrl-C: save, then TrainingStopped
        trainer.stop_signals = stop
        history = trainer.fit()
    trainer.stop_signals = None
    train_seconds = time.perf_counter() - train_start

    best = DocREModel.from_pretrained(checkpoint, map_location=trainer.device)
    if config.training.compile_gtn:
        best.compile_gtn()
    trainer.model = best
    metrics: dict = {"name": config.name, "command": command, "best_epoch": trainer.best_epoch,
                     "environment": {**environment, "device": str(trainer.device)}}
    for split, loader in loaders.items():
        predictions = trainer.predict(loader)
        if ctx.is_main:
            write_result(predictions, output_dir / f"result_{split}.json")
        if split in scorers:
            metrics[split] = scorers[split].score(predictions).to_dict(percent=True)
    train_docs = sum(r.train_documents for r in history)
    metrics["history"] = [asdict(r) for r in history]
    metrics["train_seconds"] = train_seconds
    metrics["seconds_per_train_document"] = (sum(r.train_seconds for r in history)
                                             / max(train_docs, 1))
    metrics["wall_seconds"] = time.perf_counter() - wall_start
    if ctx.is_main:
        atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    log.info("best epoch %s", trainer.best_epoch)
    log.info("results\n%s", format_results_table(metrics), extra={"console": False})
    return metrics
