"""Training on several processes (GPUs or CPU processes, one or many machines) with
``torch.distributed``, as started by ``torchrun``.

``torchrun --nproc_per_node=N experiments/run.py --config X`` starts ``N`` processes that each
set ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` reads them, joins the process
group (NCCL on GPUs, gloo on the CPU) and gives every process its device (``cuda:LOCAL_RANK``).
Without those variables (a plain ``python`` run) nothing is initialised and everything below is
a no-op, so one code path serves both.

How the trainer uses it (see :class:`~pyg_docre.training.Trainer`):

* every process trains on its own shard of each epoch (``DistributedSampler``, reshuffled per
  epoch with ``set_epoch``); ``training.batch_size`` is the batch *per process*, so one optimiser
  step sees ``batch_size * grad_accum * world_size`` documents;
* the :class:`~pyg_docre.models.DocREModel` is wrapped in ``DistributedDataParallel``, whose
  gradient all-reduce overlaps the backward pass; micro-batches before the last of an
  accumulation run under ``no_sync``;
* the objective's own modules (SA-KD student heads and discriminators) are small and run several
  times per step in two backward passes (discriminator step, model step), which DDP's reducer
  does not support; their gradients are averaged explicitly with
  :func:`all_reduce_gradients` just before their optimiser steps, which is what DDP computes;
* evaluation is sharded (:func:`shard`), predictions are gathered (:func:`gather_lists`) and
  scored once, so every world size gives the scores of one process;
* only rank 0 writes files (config, log, checkpoints, predictions, metrics).
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "context_from_environment", "setup", "teardown",
           "all_reduce_gradients", "all_reduce_mean", "gather_lists", "broadcast_object",
           "barrier", "shard"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its
    machine. The default is a single process."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and logs."""
        return self.rank == 0


#: Whether :func:`setup` created the process group (then :func:`teardown` destroys it; a group
#: the caller created is left alone).
_GROUP_OWNED = False


def context_from_environment(environ=os.environ) -> DistributedContext:
    """The context torchrun describes in ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``."""
    try:
        world = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ValueError(f"malformed torchrun environment (RANK, LOCAL_RANK, WORLD_SIZE): "
                         f"{err}") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, "
                         f"LOCAL_RANK={local}, WORLD_SIZE={world}")
    return DistributedContext(rank=rank, local_rank=local, world_size=world)


def setup(device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Join the process group when started by torchrun; return the context and this process's
    device (``cuda:LOCAL_RANK`` on GPUs, the given device otherwise)."""
    ctx = context_from_environment()
    if not ctx.enabled:
        return ctx, device
    if device.type == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK={ctx.local_rank} but this machine has "
                               f"{torch.cuda.device_count()} CUDA device(s); start at most that "
                               f"many processes per node (torchrun --nproc_per_node)")
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        global _GROUP_OWNED
        dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)
        _GROUP_OWNED = True
    return ctx, device


def teardown(synchronize: bool = True) -> None:
    """Leave the process group that :func:`setup` created (a no-op otherwise).

    With ``synchronize`` (a normal end), every process waits at a barrier first: a process that
    destroys the group while another still uses it can leave that one hanging in its own
    ``destroy_process_group`` (seen with gloo: rank 0 still saving its outputs). After an error,
    ``synchronize=False``: the other processes may never arrive (torchrun stops them).

    Drop every ``DistributedDataParallel`` model (the :class:`~pyg_docre.training.Trainer`
    holding one) *before* calling this. A DDP reducer keeps a reference to the group; if it
    holds the last one, the group is destroyed when the reducer is, and that destructor holds
    the GIL while it waits for gloo's worker threads, one of which may still need the GIL to
    free the barrier's work: the process hangs for good (pytorch/pytorch#56297; seen about
    one run in ten of a two-process test worker that kept its trainer alive). Destroyed here,
    through the group's own Python object, the destructor releases the GIL first. Garbage is
    collected before the barrier so that a model left in a reference cycle goes now too.
    """
    global _GROUP_OWNED
    if _GROUP_OWNED and dist.is_available() and dist.is_initialized():
        gc.collect()
        if synchronize and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
    _GROUP_OWNED = False


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average the ``.grad`` of ``parameters`` over all processes (in place, one collective).

    Parameters without a gradient on this process take part with zeros, so that every process
    sends tensors of the same sizes (and ends with the same gradient).
    """
    if not _active():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The mean of each value over all processes (the same keys on every process)."""
    if not _active() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def gather_lists(items: list) -> list:
    """Concatenate every process's list (rank order); the process's own list without a group."""
    if not _active():
        return list(items)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(items))
    return [x for part in gathered for x in part]


def broadcast_object(obj, src: int = 0):
    """``obj`` as rank ``src`` has it, on every process."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if _active():
        dist.barrier()


def shard(dataset: Sequence, ctx: DistributedContext) -> Sequence:
    """This process's share of ``dataset`` for evaluation: items ``rank, rank + world, ...``
    (no padding, no repeats: the shards partition the dataset)."""
    if not ctx.enabled:
        return dataset
    return torch.utils.data.Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))

