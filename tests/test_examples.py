"""The runnable examples under ``examples/`` run end to end (in a subprocess, quickly)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, timeout: float = 120) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("attention", ["sparse", "dense"])
def test_gtn_conv_usage(redocred_dev_path, rel2id_path, attention):
    out = run_example("gtn_conv_usage.py", "--data", str(redocred_dev_path), "--num-docs", "8",
                      "--steps", "3", "--attention", attention)
    assert f"attention='{attention}'" in out
    losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)", out)]
    assert len(losses) == 3 and all(0 < v < 10 for v in losses), out
