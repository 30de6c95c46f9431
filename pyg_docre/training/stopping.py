"""Stop training gracefully on SIGTERM or SIGINT, losing nothing.

A cluster's preemption (SLURM, Kubernetes), ``kill`` or Ctrl-C ends a run with SIGTERM or
SIGINT. While :class:`StopSignals` is active (around :meth:`Trainer.fit
<pyg_docre.training.trainer.Trainer.fit>`), the first such signal is only recorded. The trainer
finishes the optimiser step in progress (or the epoch-end evaluation), saves its training state
into ``state_dir`` as ``save_every_steps`` would, and raises :class:`TrainingStopped`.
``pyg-docre train --resume`` continues from there to the same result as an uninterrupted run.
A second signal ends the process at once, as it would have without the handler.

Under DDP the processes agree on the step to stop at (see ``Trainer``), so that none waits
forever in a collective that the others have left.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Optional

from pyg_docre.signals import signal_handlers

__all__ = ["StopSignals", "TrainingStopped", "ignore_stop_signals",
           "WORKER_STOP_GRACE_SECONDS"]

log = logging.getLogger(__name__)


class TrainingStopped(Exception):
    """Training stopped on a signal after saving its state.

    Attributes:
        signum: the signal (``signal.SIGTERM``, ``signal.SIGINT``).
        epoch: the epoch the saved state continues in.
        batches_done: batches of ``epoch`` already consumed (0: the epoch starts afresh).
        state_dir: where the state was saved (``None``: the trainer had no ``state_dir``).
        epochs: the run's number of epochs, if known (for the message).
    """

    def __init__(self, signum: int, epoch: int, batches_done: int,
                 state_dir: Optional[Path], epochs: Optional[int] = None):
        self.signum, self.epoch, self.batches_done = signum, epoch, batches_done
        self.state_dir = state_dir
        if epochs is not None and epoch > epochs:
            where = "after the last epoch, before the final evaluation"
        elif batches_done == 0:
            where = f"before epoch {epoch}"
        else:
            where = f"in epoch {epoch} after {batches_done} batches"
        saved = (f"its state is saved in {state_dir}" if state_dir is not None
                 else "no state was saved (the trainer has no state_dir)")
        super().__init__(f"training stopped by {self.signal_name} {where}; {saved}")

    @property
    def signal_name(self) -> str:
        """``"SIGTERM"``, ``"SIGINT"`` (the number for a signal Python does not name)."""
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return str(self.signum)

    @property
    def exit_status(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal."""
        return 128 + self.signum


class StopSignals:
    """Record the first SIGTERM or SIGINT in :attr:`received` instead of ending the process.

    A context manager; the handlers are set on entry and the previous ones put back on exit.
    A signal that is ignored on entry stays ignored (SIGINT of a job started in the background
    with ``&``). Signal handlers can only be set in the main thread: elsewhere it records
    nothing (and the signals act as before)::

        with StopSignals() as stop:
            trainer.stop_signals = stop
            trainer.fit()           # raises TrainingStopped after the first signal
    """

    def __init__(self, signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
        self.signums = tuple(signums)
        self.received: Optional[int] = None
        self._handlers = signal_handlers(self.signums, self._handle)
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        self._previous = self._handlers.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._handlers.__exit__(*exc_info)

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signum
            log.warning("%s received: training stops after the current step and saves its "
                        "state (%s again stops at once)", name, name)
            return
        # The second signal: act as without this handler (restored now, not again on exit).
        handler = self._previous.get(signum, signal.SIG_DFL)
        for other, old in list(self._previous.items()):
            signal.signal(other, old)
            del self._previous[other]
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), signum)


#: How long a DataLoader worker serves batches after a SIGTERM before it ends (exit status 0).
WORKER_STOP_GRACE_SECONDS = 60.0


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``DataLoader(worker_init_fn=...)``: how a worker meets the signals that a terminal (Ctrl-C)
    or a cluster (preemption) sends to every process of a run, so that it keeps serving batches
    until the main process has finished its step and saved.

    SIGINT is ignored. SIGTERM ends the worker :data:`WORKER_STOP_GRACE_SECONDS` later with exit
    status 0, not at once (the main process may be waiting for its next batch) and not never
    (multiprocessing ends daemonic workers with SIGTERM at exit and waits for them); the main
    process normally shuts it down before then. Status 0, not "killed by signal", which torch
    would raise in the main process at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_later)


def _exit_later(signum, frame) -> None:
    timer = threading.Timer(WORKER_STOP_GRACE_SECONDS, os._exit, args=(0,))
    timer.daemon = True
    timer.start()
