"""`experiments/run.py --resume` after a SIGKILL mid-epoch ends with the metrics and parameters
of an uninterrupted run of the same config and seed (CPU)."""
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
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _mid_epoch_state(out):
    try:
        progress = json.loads((out / "resume" / "state.json").read_text())["progress"]
    except (OSError, ValueError, KeyError):
        return None
    return progress if progress["batches_done"] > 0 else None


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    proc = _run(reference)
    assert proc.returncode == 0, proc.stderr[-3000:]

    out = tmp_path / "killed"
    child = _run(out, wait=False)
    deadline = time.time() + 600
    while _mid_epoch_state(out) is None:
        assert child.poll() is None, "the run ended before its first mid-epoch save"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert json.loads((out / "run_state.json").read_text())["state"] == "running"
    assert not (out / "metrics.json").exists()

    refused = _run(out)                                   # neither --resume nor --overwrite
    assert refused.returncode == 2 and "--resume" in refused.stderr

    proc = _run(out, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
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

    again = _run(out, "--resume")
    assert again.returncode == 0 and "already complete" in again.stdout
