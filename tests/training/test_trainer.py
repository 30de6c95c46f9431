"""Trainer mechanics on a few real documents: accumulation, bf16 autocast, schedule, selection."""
import pytest
import torch

from pyg_docre.config import ModelConfig, ObjectivesConfig, TrainingConfig
from pyg_docre.data import build_hdg
from pyg_docre.models.docre_model import DocREModel
from pyg_docre.training.objective import DocREObjective
from pyg_docre.training.trainer import Trainer, autocast_factory, resolve_device


@pytest.fixture(scope="module")
def graphs(dev_docs, tokenizer, rel2id):
    return [build_hdg(dev_docs[i], tokenizer, rel2id) for i in range(4)]


def _trainer(graphs, rel2id, tmp_path, **training):
    torch.manual_seed(0)
    objectives = ObjectivesConfig(distill_layers=[6])
    model = DocREModel(ModelConfig(), rel2id, **objectives.model_outputs())
    objective = DocREObjective(objectives, model.channels, model.distill_layers)
    config = TrainingConfig(**{"epochs": 1, "batch_size": 2, "device": "cpu", **training})
    scores = iter([{"f1": 10.0, "ign_f1": 9.0}, {"f1": 5.0, "ign_f1": 4.0}])
    return Trainer(model, objective, config, graphs, dev_loader=[],
                   evaluate_dev=lambda preds: next(scores), checkpoint_dir=tmp_path / "ckpt")


def test_accumulation_counts_optimizer_steps_and_schedule(graphs, rel2id, tmp_path):
    trainer = _trainer(graphs, rel2id, tmp_path, grad_accum=2, epochs=2, warmup_ratio=0.5)
    assert trainer.steps_per_epoch == 1
    lrs = []
    record = trainer.train_epoch(1)
    lrs.append(trainer.scheduler.get_last_lr()[0])
    assert record.steps == 1 and record.train_documents == 4
    assert set(record.losses) == {"L_R", "L_N", "L_A", "L_D", "loss"}
    # Warm-up over the first step of two, then linear decay to zero.
    trainer.train_epoch(2)
    lrs.append(trainer.scheduler.get_last_lr()[0])
    assert lrs[0] == pytest.approx(trainer.config.lr_encoder)
    assert lrs[1] == pytest.approx(0.0)


def test_bf16_autocast_step_runs_and_changes_weights(graphs, rel2id, tmp_path):
    trainer = _trainer(graphs, rel2id, tmp_path, precision="bf16")
    before = trainer.model.classifier.bilinear.weight.detach().clone()
    record = trainer.train_epoch(1)
    assert all(torch.isfinite(torch.tensor(v)) for v in record.losses.values())
    assert not torch.equal(before, trainer.model.classifier.bilinear.weight)


def test_fit_keeps_the_best_dev_checkpoint(graphs, rel2id, tmp_path):
    trainer = _trainer(graphs, rel2id, tmp_path, epochs=2, max_steps_per_epoch=1)
    history = trainer.fit()
    assert [r.dev["f1"] for r in history] == [10.0, 5.0]
    assert trainer.best_epoch == 1 and (tmp_path / "ckpt" / "model.safetensors").exists()


def test_precision_and_device_errors():
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        autocast_factory("fp16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "cuda")
