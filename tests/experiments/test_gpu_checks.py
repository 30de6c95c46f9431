"""tools/gpu_checks.sh, run as on a lent GPU machine but on the CPU: what it leaves in $OUT must
come back from that machine, which returns at most 8 files, none more than two folders down."""
import gzip
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pyg_docre.pretrained import EMBEDDED_ENCODER, resolve_pretrained
from test_study import write_study

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "gpu_checks.sh"
#: The device's limits on what comes back from $OUT (its README).
MAX_FILES, MAX_FOLDERS_DOWN = 8, 2


@pytest.mark.parametrize("trained", [
    pytest.param(False, id="run-done"),
    pytest.param(True, id="run-trained", marks=pytest.mark.slow)])
def test_outputs_fit_what_the_device_returns(tmp_path, smoke_run, trained):
    """``run-done``: the study's one run is already in its results folder (the session's smoke
    run), so the script only summarises and packs; ``run-trained`` (slow) trains it first."""
    encoder = resolve_pretrained(EMBEDDED_ENCODER)     # the package's folder, or the copy set
    # the session's smoke run: config smoke, seed 66, two optimiser steps
    study = write_study(tmp_path, rows=[{"name": "full", "config": "smoke",
                                         "overrides": ["training.max_steps_per_epoch=2"]}],
                        seeds=[66])
    results = tmp_path / "results" / "study" / "full" / "66"
    if not trained:
        results.mkdir(parents=True)
        for name in ("result_dev.json", "result_test.json"):
            with open(smoke_run[0] / name, "rb") as src, gzip.open(results / f"{name}.gz",
                                                                 "wb") as dst:
                shutil.copyfileobj(src, dst)
        for name in ("config.yaml", "metrics.json"):
            shutil.copy(smoke_run[0] / name, results / name)
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), DEVICE="cpu", SKIP_CHECKS="1", STUDY=str(study),
               STUDY_SECONDS="300", PYTHON=sys.executable, OMP_NUM_THREADS="1",
               PYG_DOCRE_EMBEDDED_ENCODER=encoder)
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with tarfile.open(out / "gpu_checks.tar.gz") as archive:
        log = archive.extractfile("./study.log" if "./study.log" in archive.getnames()
                                  else "study.log").read().decode()
    assert "study rc=0" in proc.stdout, log[-3000:]

    files = [p for p in out.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["gpu_checks.tar.gz", "summary.txt"]
    assert len(files) <= MAX_FILES
    assert all(len(p.relative_to(out).parts) - 1 <= MAX_FOLDERS_DOWN for p in files)
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("checkout ") and summary[1].startswith("study rc=0")

    with tarfile.open(out / "gpu_checks.tar.gz") as archive:
        names = {Path(n).as_posix().lstrip("./") for n in archive.getnames()}
    assert {"summary.txt", "study.log", "study_summary.log"} <= names
    # the repository's results folder travels back inside the archive, however deep
    assert any(n.startswith("results/") and n.endswith("metrics.json") for n in names)
    # the study's own results were written where its file says
    assert (results / "result_test.json.gz").is_file()

