"""Setting signal handlers for a while, the same way everywhere: the training's graceful stop
(:mod:`pyg_docre.training.stopping`) and the study runner (``experiments/study.py``). Imports
nothing heavy, so that scripts which only read results start fast."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["signal_handlers"]


@contextmanager
def signal_handlers(signums, handler: Callable) -> Iterator[dict[int, object]]:
    """Set ``handler`` for each of ``signums`` and put the previous handlers back on exit.

    Only in the main thread (the only one where Python can set them; elsewhere nothing is set),
    and not for a signal that is ignored on entry: it stays ignored (SIGHUP under ``nohup``,
    SIGINT of a job started with ``&``). Yields ``{signum: previous handler}`` of those set; a
    caller that restores one early removes it from that dict."""
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, handler) for s in signums
                    if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield previous
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
