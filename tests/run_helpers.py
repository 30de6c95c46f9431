"""Running the checkout's commands in a subprocess (imported by tests as ``run_helpers``; a
module of its own because ``from conftest import ...`` resolves to whichever ``conftest``
pytest imported first)."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(*args, timeout=900, **kwargs):
    """``python ARGS`` in the checkout's root, with this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def run_process_group(command, timeout, **kwargs):
    """``subprocess.run(command, capture_output=True, text=True)`` for a command that starts
    processes of its own (torchrun): on ``timeout`` the whole process group is killed and the
    test fails with the output's tail. ``subprocess.run``'s own timeout kills only the first
    process, and the workers, holding the output pipes, would then block the test for good."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(map(str, command))} did not end in {timeout} s (its process "
                    f"group was killed); stderr tail:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
