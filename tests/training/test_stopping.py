"""Stopping training on SIGTERM / SIGINT (pyg_docre.training.stopping): the first signal is
recorded, not obeyed at once; the run state says ``stopped`` and the CLI exits 128 + N with the
command that continues it. That the trainer then saves a state from which ``--resume`` ends
exactly as an uninterrupted run is in test_resume.py."""
import json
import os
import signal
import threading
import time

import pytest

from pyg_docre.cli import main
from pyg_docre.training import experiment, stopping
from pyg_docre.training.run_folder import write_run_state
from pyg_docre.training.stopping import StopSignals, TrainingStopped, ignore_stop_signals

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


def _deliver(signum):
    """Send ``signum`` to this process; its Python handler runs in the main thread before this
    returns (at the latest on the next bytecode after the sleep)."""
    os.kill(os.getpid(), signum)
    time.sleep(0.01)


@pytest.fixture
def recording_sigterm():
    """A Python SIGTERM handler that records calls (so no test can end pytest by mistake)."""
    calls = []

    def record(signum, frame):
        calls.append(signum)
    previous = signal.signal(signal.SIGTERM, record)
    yield record, calls
    signal.signal(signal.SIGTERM, previous)


def test_the_first_signal_is_recorded_and_the_second_acts_as_before(recording_sigterm):
    record, calls = recording_sigterm
    with StopSignals() as stop:
        assert signal.getsignal(signal.SIGTERM) is not record
        _deliver(signal.SIGTERM)
        assert stop.received == signal.SIGTERM and calls == []
        _deliver(signal.SIGTERM)
        assert calls == [signal.SIGTERM]                  # the handler from before
        assert signal.getsignal(signal.SIGTERM) is record
    assert signal.getsignal(signal.SIGTERM) is record and stop.received == signal.SIGTERM


@pytest.fixture
def interactive_sigint():
    """SIGINT as in an interactive session (a job started with `&` inherits it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_second_ctrl_c_interrupts_at_once(interactive_sigint):
    with StopSignals() as stop:
        _deliver(signal.SIGINT)
        assert stop.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            _deliver(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_signal_stays_ignored(recording_sigterm):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            _deliver(signal.SIGINT)
            assert stop.received is None
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_handlers_are_put_back_and_nothing_recorded_without_a_signal(recording_sigterm):
    record, _ = recording_sigterm
    with StopSignals() as stop:
        pass
    assert stop.received is None and signal.getsignal(signal.SIGTERM) is record


def test_outside_the_main_thread_no_handler_is_set(recording_sigterm):
    record, _ = recording_sigterm
    seen = []

    def enter():
        with StopSignals():
            seen.append(signal.getsignal(signal.SIGTERM))
    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert seen == [record]


def test_a_dataloader_worker_ignores_ctrl_c_and_ends_quietly_a_while_after_sigterm():
    """In a forked child (a worker's own process): SIGINT changes nothing; after SIGTERM it goes
    on (the main process may still wait for a batch) and then ends with exit status 0, not
    "killed by signal" (which the main process would raise at once)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                           # the child: never returns
        try:
            stopping.WORKER_STOP_GRACE_SECONDS = 0.5
            ignore_stop_signals(0)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            os.write(write_end, b"serving")
            time.sleep(10)
        finally:
            os._exit(3)                                    # SIGTERM did not end it
    os.close(write_end)
    start = time.monotonic()
    assert os.read(read_end, 16) == b"serving"
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert time.monotonic() - start < 5
    os.close(read_end)


@pytest.mark.parametrize("epoch, batches, epochs, where", [
    (2, 5, 8, "in epoch 2 after 5 batches"), (3, 0, 8, "before epoch 3"),
    (9, 0, 8, "after the last epoch, before the final evaluation")])
def test_the_message_says_where_training_stopped(tmp_path, epoch, batches, epochs, where):
    stop = TrainingStopped(signal.SIGTERM, epoch, batches, tmp_path, epochs=epochs)
    assert str(stop) == f"training stopped by SIGTERM {where}; its state is saved in {tmp_path}"
    assert TrainingStopped(signal.SIGINT, 1, 1, None).exit_status == 130
    assert "no state was saved" in str(TrainingStopped(signal.SIGINT, 1, 1, None))


def test_a_stopped_run_is_recorded_and_the_cli_says_how_to_continue(tmp_path, monkeypatch,
                                                                   capsys):
    """The training itself is replaced by a stop (the real one: test_resume.py): what is
    checked is the run folder's state, the exit status and the message."""
    def stopped_run(config, output_dir, *args, **kwargs):
        raise TrainingStopped(signal.SIGTERM, 2, 3, output_dir / "resume", epochs=8)
    monkeypatch.setattr(experiment, "_run", stopped_run)
    out = tmp_path / "run"
    argv = ["train", "--config", "smoke", "--output", str(out), "--set", "training.seed=7"]
    assert main(argv) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert f"training stopped by SIGTERM in epoch 2 after 3 batches; its state is saved in " \
           f"{out / 'resume'}; to continue: " in err
    assert err.rstrip().endswith(f"train --config smoke --output {out} --set training.seed=7 "
                                 f"--resume")
    state = json.loads((out / "run_state.json").read_text())
    assert (state["state"], state["signal"], state["epoch"], state["batches_done"]) == \
        ("stopped", "SIGTERM", 2, 3)
    assert "error" not in state

    assert main(argv) == 2                                 # neither --resume nor --overwrite
    assert "holds a stopped run; pass --resume" in capsys.readouterr().err
    # --resume takes the stopped run up again (here: to stop again)
    assert main(argv + ["--resume"]) == 128 + signal.SIGTERM
    assert json.loads((out / "run_state.json").read_text())["state"] == "stopped"


def test_each_state_keeps_only_its_own_fields(tmp_path):
    write_run_state(tmp_path, "failed", error="ValueError: x")
    record = write_run_state(tmp_path, "stopped", signal="SIGTERM", epoch=2, batches_done=3)
    assert "error" not in record and record["signal"] == "SIGTERM"
    record = write_run_state(tmp_path, "running")
    assert not {"error", "signal", "epoch", "batches_done"} & set(record)
