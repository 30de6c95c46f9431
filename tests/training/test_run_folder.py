"""Output-folder policy, run_state.json, and up-front validation of every config value:
problems are reported (ConfigError / RunFolderError naming the key or folder) before any data
is loaded, and a refused folder is left untouched."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyg_docre.config import ConfigError, load_config
from pyg_docre.training.experiment import RunFolderError, run_experiment
from pyg_docre.training.run_folder import read_run_state
from pyg_docre.training.validation import validate_runtime

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "pyg_docre" / "configs" / "smoke.yaml"


def _config(*overrides):
    return load_config(SMOKE, list(overrides))


@pytest.mark.parametrize("override,message", [
    ("data.train.docs=[999]", r"data.train.docs: .*outside"),
    ("data.dev.docs=0:99999", r"data.dev.docs: .*99999 is outside"),
    ("data.test.file=re-docred/nope.json", r"data.test.file: .*nope.json does not exist"),
    ("model.encoder=no-such/encoder-xyz", r"model.encoder: 'no-such/encoder-xyz' cannot be "
                                          r"loaded offline.*not a local folder.*cache"),
    ("training.precision=fp16", r"training.precision: fp16 needs CUDA"),
    ("data.rel2id=missing.json", r"data.rel2id: .*missing.json does not exist"),
    ("objectives.distill_layers=[3, 12]", r"objectives.distill_layers: \[12\] outside 1..6"),
])
def test_runtime_problems_are_config_errors_naming_the_key(override, message):
    if "fp16" in override and torch.cuda.is_available():
        pytest.skip("fp16 is valid with CUDA")
    with pytest.raises(ConfigError, match=message):
        validate_runtime(_config(override, "training.device=cpu"), ROOT)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="training.device: 'cuda' but CUDA is not available"):
        validate_runtime(_config("training.device=cuda"), ROOT)


def test_the_smoke_config_is_valid_here():
    assert validate_runtime(_config("training.device=cpu"), ROOT) == torch.device("cpu")


def test_invalid_config_touches_no_output_folder(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError):
        run_experiment(_config("data.train.docs=0:99999"), out, base_dir=ROOT)
    assert not out.exists()


def test_non_empty_folder_is_refused_and_untouched(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("old run")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RunFolderError, match="--resume.*--overwrite"):
        run_experiment(_config(), out, base_dir=ROOT)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_overwrite_clears_only_run_folders(tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(RunFolderError, match="not a run folder"):
        run_experiment(_config(), out, base_dir=ROOT, overwrite=True)
    assert (out / "thesis.tex").read_text() == "precious"
    with pytest.raises(RunFolderError, match="exclude each other"):
        run_experiment(_config(), out, base_dir=ROOT, overwrite=True, resume=True)


def test_resuming_a_complete_run_returns_its_metrics(tmp_path):
    import yaml
    out = tmp_path / "run"
    out.mkdir()
    config = _config()
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    (out / "metrics.json").write_text(json.dumps({"dev": {"f1": 12.5}}))
    (out / "run_state.json").write_text(json.dumps({"state": "complete"}))
    metrics = run_experiment(config, out, base_dir=ROOT, resume=True)
    assert metrics["already_complete"] and metrics["dev"]["f1"] == 12.5
    # ... but not with another configuration.
    with pytest.raises(RunFolderError, match="differs in training.epochs"):
        run_experiment(_config("training.epochs=3"), out, base_dir=ROOT, resume=True)


def test_a_failing_run_records_failed_with_the_error(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "bad.json").write_text(json.dumps([{"title": "x"}] * 3))
    config = _config(f"data.root={data}", "data.train.file=bad.json", "data.train.docs=0:2",
                     "data.dev.file=bad.json", "data.dev.docs=2:3", "data.test=null",
                     f"data.rel2id={ROOT / 'datasets/docred-meta/rel2id.json'}",
                     "data.rel_info=null", "data.cache_dir=null")
    out = tmp_path / "run"
    with pytest.raises(Exception, match="bad.json"):
        run_experiment(config, out, base_dir=ROOT)
    state = read_run_state(out)
    assert state["state"] == "failed" and "bad.json" in state["error"]


def test_run_py_reports_config_problems_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "experiments/run.py", "--config", "smoke", "--output", str(tmp_path / "o"),
         "--set", "data.train.docs=10:99999"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 2
    assert "data.train.docs" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_run_started_with_flat_gtn_keys_can_be_resumed(tmp_path):
    """config.yaml of a run folder written before the model.gtn section compares equal."""
    import yaml

    from pyg_docre.training.run_folder import prepare_run_folder

    current = _config().to_dict()
    saved = json.loads(json.dumps(current))
    gtn = saved["model"].pop("gtn")
    saved["model"].update(gtn_layers=gtn.pop("num_layers"), gtn_dropout=gtn.pop("dropout"), **gtn)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    assert prepare_run_folder(tmp_path, current, resume=True) == "resume"
    saved["model"]["gtn_dropout"] = 0.5
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(RunFolderError, match=r"differs in model.gtn.dropout"):
        prepare_run_folder(tmp_path, current, resume=True)
