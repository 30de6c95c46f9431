"""`pyg-docre train --config smoke` end to end (the session's `smoke_run` fixture, conftest.py),
and its outputs checked independently; `experiments/run.py` is the same command."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyg_docre.data import load_docred
from pyg_docre.metrics import SCORE_KEYS, DocREDScorer, read_result

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, **kwargs):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, **kwargs)


def test_outputs_exist(smoke_run):
    out, proc = smoke_run
    for name in ("config.yaml", "metrics.json", "result_dev.json", "result_test.json",
                 "train.log", "checkpoint/config.json", "checkpoint/model.safetensors"):
        assert (out / name).exists(), name
    # the results table: once on stdout, once in train.log, not repeated on the console log
    assert proc.stdout.count("| test |") == 1
    assert "| test |" not in proc.stderr
    assert (out / "train.log").read_text().count("| test |") == 1


def test_metrics_record_the_environment(smoke_run):
    import platform
    import subprocess

    import torch

    import pyg_docre

    out, _ = smoke_run
    metrics = json.loads((out / "metrics.json").read_text())
    env = metrics["environment"]
    assert env["versions"]["python"] == platform.python_version()
    assert env["versions"]["torch"] == torch.__version__
    assert env["versions"]["pyg_docre"] == pyg_docre.__version__
    assert set(env["versions"]) == {"python", "torch", "torch_geometric", "transformers",
                                    "pyg_docre"}
    assert env["device"] == "cpu" and env["seed"] == 66 and env["world_size"] == 1
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True)
    if head.returncode == 0:
        assert env["git_commit"].split("-")[0] == head.stdout.strip()
    assert metrics["command"].startswith("python -m pyg_docre train --config smoke")


def test_checkpoint_names_its_relations(smoke_run, rel2id_path):
    out, _ = smoke_run
    meta = json.loads((out / "checkpoint" / "config.json").read_text())
    rel_info = json.loads((rel2id_path.parent / "rel_info.json").read_text())
    assert meta["rel_info"] == rel_info and meta["rel_info"]["P17"] == "country"


def test_run_py_is_the_train_command(tmp_path):
    """experiments/run.py forwards to `pyg-docre train` (checked without training)."""
    proc = _run("experiments/run.py", "--config", "experiments/configs/smoke.yaml",
                "--dry-run", "--set", "training.epochs=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import yaml
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["name"] == "smoke" and resolved["training"]["epochs"] == 3
    assert "dry run ok" in proc.stderr


def test_metrics_equal_an_independent_rescoring(smoke_run, redocred_dev_path, redocred_test_path):
    out, _ = smoke_run
    metrics = json.loads((out / "metrics.json").read_text())
    dev_docs = load_docred(redocred_dev_path)
    test_docs = load_docred(redocred_test_path)
    train = dev_docs[0:8]
    for split, gold in (("dev", dev_docs[450:454]), ("test", test_docs[0:4])):
        assert set(SCORE_KEYS) <= set(metrics[split])
        rescored = DocREDScorer(gold, train).score(read_result(out / f"result_{split}.json"))
        for key, value in rescored.to_dict(percent=True).items():
            assert metrics[split][key] == pytest.approx(value, abs=1e-9), (split, key)
    assert len(metrics["history"]) == 1
    assert metrics["wall_seconds"] > 0 and metrics["seconds_per_train_document"] > 0


def test_predict_command_reproduces_the_test_predictions(smoke_run, tmp_path, redocred_test_path):
    out, _ = smoke_run
    docs = tmp_path / "docs.json"
    docs.write_text(json.dumps([{k: v for k, v in d.items() if k != "labels"}
                                for d in load_docred(redocred_test_path)[0:4]]))
    result = tmp_path / "result.json"
    proc = _run("-m", "pyg_docre", "predict", "--model", str(out / "checkpoint"),
                "--input", str(docs), "--output", str(result))
    assert proc.returncode == 0, proc.stderr[-3000:]
    key = lambda p: (p["title"], p["h_idx"], p["t_idx"], p["r"])
    assert sorted(map(key, read_result(result))) == sorted(
        map(key, read_result(out / "result_test.json")))


def test_unknown_config_key_is_reported(tmp_path):
    proc = _run("experiments/run.py", "--config", "smoke", "--set", "training.epoch=1",
                "--output", str(tmp_path))
    assert proc.returncode == 2
    assert "training.epoch" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("experiments/run.py", "--config", "no_such_config")
    assert proc.returncode == 2 and "available:" in proc.stderr
