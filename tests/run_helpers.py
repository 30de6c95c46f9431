"""Running the checkout's commands in a subprocess (imported by tests as ``run_helpers``; a
module of its own because ``from conftest import ...`` resolves to whichever ``conftest``
pytest imported first)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(*args, timeout=900, **kwargs):
    """``python ARGS`` in the checkout's root, with this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)
