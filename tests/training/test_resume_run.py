"""`experiments/run.py --resume` after a SIGKILL mid-epoch, or after a SIGTERM that stopped the
run gracefully, ends with the metrics and parameters of an uninterrupted run of the same config
and seed (CPU)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--config", "smoke", "--set", "training.epochs=2", "--set", "training.max_steps_per_epoch=2",
        "--set", "training.save_every_steps=1", "--set", "training.device=cpu",
        "--set", "data.train.docs=0:8", "--set", "training.batch_size=2"]


def _run(out, *extra, wait=True):
    cmd = [sys.executable, "experiments/run.py", *TINY, "--output", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if not wait:        # in its own process group, as a job of a shell or a cluster
        with open(out.parent / f"{out.name}.stderr", "w") as stderr:
            return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=stderr, start_new_session=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _mid_epoch_state(out):
    try:
        progress = json.loads((out / "resume" / "state.json").read_text())["progress"]
    except (OSError, ValueError, KeyError):
        return None
    return progress if progress["batches_done"] > 0 else None


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``reference(*extra)``: the folder of the uninterrupted run with those extra arguments (one
    run each). With truncated epochs (``max_steps_per_epoch``) a DataLoader worker's prefetching
    exhausts the sampler, which then draws from the generator once more, so ``num_workers``
    changes the later epochs' shuffle: an interrupted run is compared with its own settings."""
    runs = {}

    def get(*extra):
        if extra not in runs:
            out = tmp_path_factory.mktemp("reference")
            proc = _run(out, *extra, "--overwrite")
            assert proc.returncode == 0, proc.stderr[-3000:]
            runs[extra] = out
        return runs[extra]
    return get


def _stop_after_first_mid_epoch_save(out, signum, *extra):
    child = _run(out, *extra, wait=False)
    deadline = time.time() + 600
    while _mid_epoch_state(out) is None:
        assert child.poll() is None, "the run ended before its first mid-epoch save"
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(child.pid, signum)            # the whole group, DataLoader workers included
    child.wait(timeout=600)
    return child.returncode, (out.parent / f"{out.name}.stderr").read_text()


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "killed"
    rc, _ = _stop_after_first_mid_epoch_save(out, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert json.loads((out / "run_state.json").read_text())["state"] == "running"
    assert not (out / "metrics.json").exists()

    refused = _run(out)                                   # neither --resume nor --overwrite
    assert refused.returncode == 2 and "--resume" in refused.stderr

    proc = _run(out, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_run(out, reference())

    again = _run(out, "--resume")
    assert again.returncode == 0 and "already complete" in again.stdout


@pytest.mark.slow
def test_sigterm_stops_gracefully_and_resume_equals_an_uninterrupted_run(tmp_path, reference):
    """SIGTERM to the run's process group (as a cluster's preemption or Ctrl-C sends it), with a
    DataLoader worker: the run finishes its step, saves, says how to continue and exits 143."""
    out = tmp_path / "stopped"
    workers = ("--set", "training.num_workers=1")
    rc, stderr = _stop_after_first_mid_epoch_save(out, signal.SIGTERM, *workers)
    assert rc == 128 + signal.SIGTERM, stderr[-3000:]
    told = [line for line in stderr.splitlines() if "training stopped by SIGTERM" in line]
    assert len(told) == 1 and told[0].rstrip().endswith("training.num_workers=1 --resume"), \
        stderr[-3000:]
    state = json.loads((out / "run_state.json").read_text())
    assert state["state"] == "stopped" and state["signal"] == "SIGTERM"
    progress = json.loads((out / "resume" / "state.json").read_text())["progress"]
    assert (progress["epoch"], progress["batches_done"]) == (state["epoch"],
                                                              state["batches_done"])
    assert not (out / "metrics.json").exists()

    proc = _run(out, *workers, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_run(out, reference(*workers))


def _assert_same_run(out, reference):
    assert json.loads((out / "run_state.json").read_text())["state"] == "complete"
    expected = json.loads((reference / "metrics.json").read_text())
    got = json.loads((out / "metrics.json").read_text())
    for split in ("dev", "test"):
        assert got[split] == expected[split], split
    assert got["best_epoch"] == expected["best_epoch"]
    assert [r["losses"] for r in got["history"]] == [r["losses"] for r in expected["history"]]
    a = load_file(reference / "checkpoint" / "model.safetensors")
    b = load_file(out / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a = load_file(reference / "resume" / "model.safetensors")
    b = load_file(out / "resume" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)      # final parameters
