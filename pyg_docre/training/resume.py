"""The complete state of an unfinished training run, saved atomically and restored exactly.

A resume folder (``OUTPUT/resume/``) holds:

``state.json``
    progress (epoch in progress, batches of it already consumed, optimiser steps, the partial
    loss sums), best dev F1 and epoch, the per-epoch history, and the Python and NumPy RNG
    states.
``model.safetensors``, ``objective.safetensors``
    the model's and the objective's (discriminators, student heads) parameters.
``optim.pt``
    the state dicts of both AdamW optimisers, the scheduler and the GradScaler, the torch (and
    CUDA) RNG states and the train DataLoader generator's state at the start of the epoch in
    progress: tensors, numbers and strings only, read back with ``torch.load(weights_only=True)``.

The folder is written with :func:`pyg_docre.io.atomic_write_dir`, so a run killed while saving
keeps its previous complete state. Restoring the generator's epoch-start state and skipping the
batches already consumed reproduces the same shuffle order, and restoring the RNG states last
makes the continued run identical to an uninterrupted one (on the same device).
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from pyg_docre.errors import ResumeError
from pyg_docre.io import atomic_write_dir, recover_dir

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["ResumeError", "Progress", "EpochRecord", "save_training_state",
           "load_training_state", "has_training_state"]

STATE_NAME = "state.json"
FORMAT = "pyg_docre.training_state/1"


@dataclass
class Progress:
    """Where training stands: ``epoch`` is the epoch in progress (1-based) of which
    ``batches_done`` batches (``steps_done`` optimiser steps) are consumed."""

    epoch: int = 1
    batches_done: int = 0
    steps_done: int = 0
    global_step: int = 0
    documents: int = 0
    loss_sums: dict = field(default_factory=dict)
    #: How many batches contributed to each loss sum (L_D only on the discriminator's steps).
    loss_counts: dict = field(default_factory=dict)


@dataclass
class EpochRecord:
    """One finished epoch of the training history (saved with the training state)."""

    epoch: int
    steps: int
    train_seconds: float
    train_documents: int
    losses: dict[str, float]
    dev: dict[str, Optional[float]] = field(default_factory=dict)
    eval_seconds: float = 0.0


def _rng_state() -> dict:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def _set_rng_state(state: dict, tensors: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch_rng"])
    cuda = tensors.get("cuda_rng") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def has_training_state(directory: str | Path) -> bool:
    """Whether ``directory`` holds a (complete) saved training state."""
    return (recover_dir(Path(directory)) / STATE_NAME).is_file()


def save_training_state(trainer: "Trainer", directory: str | Path, progress: Progress,
                        epoch_generator_state: torch.Tensor) -> None:
    """Write everything needed to continue ``trainer`` from ``progress`` into ``directory``."""
    from safetensors.torch import save_model

    state = {
        "format": FORMAT,
        "progress": asdict(progress),
        "best_f1": trainer.best_f1,
        "best_epoch": trainer.best_epoch,
        "history": [asdict(r) for r in trainer.history],
        "rng": _rng_state(),
    }
    tensors = {
        "optimizer": trainer.optimizer.state_dict(),
        "disc_optimizer": (None if trainer.disc_optimizer is None
                           else trainer.disc_optimizer.state_dict()),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": epoch_generator_state,
    }

    def write(tmp: Path) -> None:
        save_model(trainer.model, str(tmp / "model.safetensors"))
        save_model(trainer.objective, str(tmp / "objective.safetensors"))
        torch.save(tensors, tmp / "optim.pt")
        (tmp / STATE_NAME).write_text(json.dumps(state), encoding="utf-8")

    atomic_write_dir(directory, write)


def load_training_state(trainer: "Trainer", directory: str | Path) -> tuple[Progress, torch.Tensor]:
    """Restore ``trainer`` from ``directory``; return the progress and the generator state at
    the start of the epoch in progress. The RNG states are restored last."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    directory = recover_dir(Path(directory))
    state_file = directory / STATE_NAME
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        if state.get("format") != FORMAT:
            raise ResumeError(f"{state_file}: format {state.get('format')!r}, expected {FORMAT!r}")
        progress = Progress(**state["progress"])
        history = [EpochRecord(**r) for r in state["history"]]
    except FileNotFoundError:
        raise ResumeError(f"{state_file}: missing (no saved training state)") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ResumeError(f"{state_file}: damaged ({type(err).__name__}: {err})") from None
    for module, name in ((trainer.model, "model.safetensors"),
                         (trainer.objective, "objective.safetensors")):
        path = directory / name
        try:
            device = trainer.device
            load_model(module, str(path), strict=True, device=str(device))
        except (SafetensorError, OSError, RuntimeError) as err:
            raise ResumeError(f"{path}: cannot be restored ({str(err)[:300]})") from None
    optim_file = directory / "optim.pt"
    try:
        tensors = torch.load(optim_file, weights_only=True, map_location="cpu")
        trainer.optimizer.load_state_dict(tensors["optimizer"])
        if trainer.disc_optimizer is not None:
            trainer.disc_optimizer.load_state_dict(tensors["disc_optimizer"])
        trainer.scheduler.load_state_dict(tensors["scheduler"])
        trainer.scaler.load_state_dict(tensors["scaler"])
    except FileNotFoundError:
        raise ResumeError(f"{optim_file}: missing") from None
    except Exception as err:  # unpickling / shape errors of several types
        raise ResumeError(f"{optim_file}: cannot be restored ({type(err).__name__}: "
                          f"{str(err)[:300]})") from None
    trainer.history = history
    trainer.best_f1 = state["best_f1"]
    trainer.best_epoch = state["best_epoch"]
    _set_rng_state(state["rng"], tensors)
    return progress, tensors["generator"]
