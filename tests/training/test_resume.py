"""Resume: a run interrupted mid-epoch and continued from its saved state ends with exactly the
parameters, optimiser state and history of an uninterrupted run."""
import json

import pytest
import torch

from pyg_docre.config import GTNConfig, ModelConfig, ObjectivesConfig, TrainingConfig
from pyg_docre.data import build_hdg
from pyg_docre.models.docre_model import DocREModel
from pyg_docre.training.objective import DocREObjective
from pyg_docre.training.resume import ResumeError
from pyg_docre.training.trainer import Trainer


@pytest.fixture(scope="module")
def graphs(dev_docs, tokenizer, rel2id):
    return [build_hdg(dev_docs[i], tokenizer, rel2id) for i in range(4)]


def _trainer(graphs, rel2id, tmp_path, state_dir=None):
    torch.manual_seed(0)
    objectives = ObjectivesConfig(distill_layers=[6])
    model = DocREModel(ModelConfig(gtn=GTNConfig(num_layers=1)), rel2id,
                       **objectives.model_outputs())
    objective = DocREObjective(objectives, model.channels, model.distill_layers)
    config = TrainingConfig(epochs=2, batch_size=2, device="cpu", save_every_steps=1, seed=3)
    # A "dev score" that depends on the trained weights only.
    score = lambda preds: {"f1": float(model.classifier.bilinear.weight.detach().sum()),
                           "ign_f1": None}
    return Trainer(model, objective, config, graphs, dev_loader=[], evaluate_dev=score,
                   checkpoint_dir=tmp_path / "ckpt", state_dir=state_dir)


class Interrupt(Exception):
    pass


def _interrupt_after(trainer, calls):
    step, count = trainer._step, [0]

    def counting(*args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            raise Interrupt
        return step(*args, **kwargs)
    trainer._step = counting


@pytest.fixture
def one_thread():
    """Bitwise comparisons need one intra-op thread: with several, the CPU's parallel
    scatter-adds sum in varying order, and two uninterrupted runs already differ by ~1e-7."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_mid_epoch_resume_matches_an_uninterrupted_run(graphs, rel2id, tmp_path, one_thread):
    reference = _trainer(graphs, rel2id, tmp_path / "a")
    reference_history = reference.fit()

    state = tmp_path / "b" / "resume"
    interrupted = _trainer(graphs, rel2id, tmp_path / "b", state_dir=state)
    _interrupt_after(interrupted, 3)               # dies on the 2nd batch of epoch 2
    with pytest.raises(Interrupt):
        interrupted.fit()
    saved = json.loads((state / "state.json").read_text())["progress"]
    assert saved["epoch"] == 2 and saved["batches_done"] == 1 and saved["global_step"] == 3

    resumed = _trainer(graphs, rel2id, tmp_path / "c", state_dir=state)
    resumed.load_training_state()
    history = resumed.fit()

    for (name, a), b in zip(reference.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(reference.objective.state_dict().values(),
                    resumed.objective.state_dict().values()):
        assert torch.equal(a, b)
    assert reference.scheduler.state_dict() == resumed.scheduler.state_dict()
    assert [r.losses for r in history] == [r.losses for r in reference_history]
    assert [(r.steps, r.train_documents, r.dev) for r in history] == \
        [(r.steps, r.train_documents, r.dev) for r in reference_history]
    assert resumed.best_epoch == reference.best_epoch


def test_damaged_state_is_a_named_resume_error(graphs, rel2id, tmp_path):
    trainer = _trainer(graphs, rel2id, tmp_path, state_dir=tmp_path / "resume")
    with pytest.raises(ResumeError, match="state.json: missing"):
        trainer.load_training_state()
    trainer.save_training_state()
    (tmp_path / "resume" / "optim.pt").write_bytes(b"garbage")
    with pytest.raises(ResumeError, match="optim.pt"):
        trainer.load_training_state()
