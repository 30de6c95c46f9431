"""experiments/sakd_separability.py runs on a saved model and reports sane numbers."""
import json
import subprocess
import sys
from pathlib import Path

from pyg_docre.config import ModelConfig, ObjectivesConfig
from pyg_docre.models.docre_model import DocREModel

ROOT = Path(__file__).resolve().parents[2]


def test_separability_report(tmp_path, redocred_dev_path, rel2id, tokenizer):
    model = DocREModel(ModelConfig(), rel2id,
                       **ObjectivesConfig(distill_layers=[3, 6]).model_outputs())
    model.save_pretrained(tmp_path / "model", tokenizer=tokenizer)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "sakd_separability.py"),
         str(tmp_path / "model"), "--data", str(redocred_dev_path), "--docs", "0:4",
         "--steps", "5"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["nodes"] > 20 and sorted(report["layers"]) == ["3", "6"]
    for layer in report["layers"].values():
        for kind in ("raw", "normalized"):
            assert 0.0 <= layer[kind]["heldout_accuracy"] <= 1.0
            assert layer[kind]["heldout_generator_loss"] > 0
        assert layer["student_head"]["discriminator_loss"] > 0


def test_separability_rejects_a_baseline(tmp_path, redocred_dev_path, rel2id, tokenizer):
    model = DocREModel(ModelConfig(baseline=True), rel2id,
                       **ObjectivesConfig().model_outputs(baseline=True))
    model.save_pretrained(tmp_path / "base", tokenizer=tokenizer)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "sakd_separability.py"),
         str(tmp_path / "base"), "--data", str(redocred_dev_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and "a baseline model" in proc.stderr
