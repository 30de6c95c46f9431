"""Resume: a run interrupted mid-epoch and continued from its saved state ends with exactly the
parameters, optimiser state and history of an uninterrupted run."""
import json
import signal

import pytest
import torch

from pyg_docre.config import GTNConfig, ModelConfig, ObjectivesConfig, TrainingConfig
from pyg_docre.data import build_hdg
from pyg_docre.models.docre_model import DocREModel
from pyg_docre.training.objective import DocREObjective
from pyg_docre.training.resume import ResumeError
from pyg_docre.training.stopping import TrainingStopped
from pyg_docre.training.trainer import Trainer


@pytest.fixture(scope="module")
def graphs(dev_docs, tokenizer, rel2id):
    return [build_hdg(dev_docs[i], tokenizer, rel2id) for i in range(4)]


def _trainer(graphs, rel2id, tmp_path, state_dir=None, save_every_steps=1, num_workers=0):
    torch.manual_seed(0)
    objectives = ObjectivesConfig(distill_layers=[6])
    model = DocREModel(ModelConfig(gtn=GTNConfig(num_layers=1)), rel2id,
                       **objectives.model_outputs())
    objective = DocREObjective(objectives, model.channels, model.distill_layers)
    config = TrainingConfig(epochs=2, batch_size=2, device="cpu", num_workers=num_workers,
                            save_every_steps=save_every_steps, seed=3)
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


@pytest.fixture(scope="module")
def reference(graphs, rel2id, tmp_path_factory):
    """One uninterrupted run (one thread, as ``one_thread``), shared by the tests below."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = _trainer(graphs, rel2id, tmp_path_factory.mktemp("reference"),
                           save_every_steps=None)
        trainer.history_run = trainer.fit()
    finally:
        torch.set_num_threads(threads)
    return trainer


@pytest.mark.parametrize("num_workers", [0, 1])
def test_mid_epoch_resume_matches_an_uninterrupted_run(graphs, rel2id, tmp_path, one_thread,
                                                       reference, num_workers):
    """Also with a DataLoader worker (the default on CUDA), against the reference without one:
    over full epochs the shuffle is the same with or without workers, interrupted or not (a
    persistent worker would draw the loader's base seed only in a process's first epoch)."""
    state = tmp_path / "b" / "resume"
    interrupted = _trainer(graphs, rel2id, tmp_path / "b", state_dir=state,
                           num_workers=num_workers)
    _interrupt_after(interrupted, 3)               # dies on the 2nd batch of epoch 2
    with pytest.raises(Interrupt):
        interrupted.fit()
    saved = json.loads((state / "state.json").read_text())["progress"]
    assert saved["epoch"] == 2 and saved["batches_done"] == 1 and saved["global_step"] == 3

    _assert_resumes_to(reference, _trainer(graphs, rel2id, tmp_path / "c", state_dir=state,
                                           num_workers=num_workers))


def _assert_resumes_to(reference, resumed):
    """``resumed``, loaded from its state and trained to the end, equals the uninterrupted
    ``reference``: parameters, objective (discriminators), scheduler, history, best epoch."""
    resumed.load_training_state()
    history = resumed.fit()
    for (name, a), b in zip(reference.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(reference.objective.state_dict().values(),
                    resumed.objective.state_dict().values()):
        assert torch.equal(a, b)
    assert reference.scheduler.state_dict() == resumed.scheduler.state_dict()
    assert [(r.epoch, r.steps, r.train_documents, r.losses, r.dev) for r in history] == \
        [(r.epoch, r.steps, r.train_documents, r.losses, r.dev) for r in reference.history_run]
    assert resumed.best_epoch == reference.best_epoch


def test_damaged_state_is_a_named_resume_error(graphs, rel2id, tmp_path):
    trainer = _trainer(graphs, rel2id, tmp_path, state_dir=tmp_path / "resume")
    with pytest.raises(ResumeError, match="state.json: missing"):
        trainer.load_training_state()
    trainer.save_training_state()
    (tmp_path / "resume" / "optim.pt").write_bytes(b"garbage")
    with pytest.raises(ResumeError, match="optim.pt"):
        trainer.load_training_state()


class RecordedSignal:
    """Stands in for StopSignals: the test sets ``received`` as a signal handler would."""
    received = None


def _signal_at(trainer, where, stop):
    """Set ``stop.received`` after the ``where``-th optimiser micro-batch, or during the first
    dev evaluation (``where == "eval"``)."""
    if where == "eval":
        evaluate = trainer.evaluate_dev

        def evaluating(preds):
            stop.received = signal.SIGTERM
            return evaluate(preds)
        trainer.evaluate_dev = evaluating
        return
    step, count = trainer._step, [0]

    def counting(*args, **kwargs):
        count[0] += 1
        if count[0] == where:
            stop.received = signal.SIGTERM
        return step(*args, **kwargs)
    trainer._step = counting


@pytest.mark.parametrize("where, epoch, batches, steps", [
    (3, 2, 1, 3),           # in epoch 2, after its first batch
    (2, 1, 2, 2),           # at the last step of epoch 1, before its dev evaluation
    ("eval", 2, 0, 2),      # during epoch 1's dev evaluation: at the epoch end
], ids=["mid-epoch", "last-step", "evaluation"])
def test_a_stop_signal_saves_the_state_and_resume_matches_an_uninterrupted_run(
        graphs, rel2id, tmp_path, one_thread, reference, where, epoch, batches, steps):
    """No periodic saves here (save_every_steps=None): the stop itself saves the state."""
    state = tmp_path / "b" / "resume"
    stopped = _trainer(graphs, rel2id, tmp_path / "b", state_dir=state, save_every_steps=None)
    stopped.stop_signals = stop = RecordedSignal()
    _signal_at(stopped, where, stop)
    with pytest.raises(TrainingStopped) as info:
        stopped.fit()
    assert (info.value.signum, info.value.epoch, info.value.batches_done) == \
        (signal.SIGTERM, epoch, batches)
    assert info.value.exit_status == 143 and str(state) in str(info.value)
    saved = json.loads((state / "state.json").read_text())["progress"]
    assert (saved["epoch"], saved["batches_done"], saved["global_step"]) == (epoch, batches, steps)

    _assert_resumes_to(reference, _trainer(graphs, rel2id, tmp_path / "c", state_dir=state,
                                           save_every_steps=None))


def test_a_stop_after_the_last_epoch_says_only_the_final_evaluation_is_left(graphs, rel2id,
                                                                          tmp_path):
    trainer = _trainer(graphs, rel2id, tmp_path, state_dir=tmp_path / "resume",
                       save_every_steps=None)
    trainer.stop_signals = stop = RecordedSignal()
    _signal_at(trainer, 4, stop)                    # the last step of the last epoch
    with pytest.raises(TrainingStopped, match="in epoch 2 after 2 batches"):
        trainer.fit()
    trainer = _trainer(graphs, rel2id, tmp_path, state_dir=tmp_path / "resume")
    trainer.load_training_state()
    trainer.stop_signals = stop = RecordedSignal()
    _signal_at(trainer, "eval", stop)
    with pytest.raises(TrainingStopped, match="after the last epoch, before the final"):
        trainer.fit()
    trainer = _trainer(graphs, rel2id, tmp_path, state_dir=tmp_path / "resume")
    trainer.load_training_state()
    trainer._step = lambda *args, **kwargs: pytest.fail("no training step is left")
    assert [r.epoch for r in trainer.fit()] == [1, 2] and trainer.progress.epoch == 3
