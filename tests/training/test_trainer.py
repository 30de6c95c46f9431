"""Trainer mechanics on a few real documents: accumulation, bf16 autocast, schedule, selection."""
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from pyg_docre.config import ModelConfig, ObjectivesConfig, TrainingConfig
from pyg_docre.data import build_hdg
from pyg_docre.models.docre_model import DocREModel
from pyg_docre.training.objective import DocREObjective
from pyg_docre.training.trainer import Trainer, autocast_factory, resolve_device


@pytest.fixture(scope="module")
def graphs(dev_docs, tokenizer, rel2id):
    return [build_hdg(dev_docs[i], tokenizer, rel2id) for i in range(4)]


def _trainer(graphs, rel2id, tmp_path, objectives=None, model=None, **training):
    torch.manual_seed(0)
    objectives = ObjectivesConfig(distill_layers=[6], **(objectives or {}))
    model_config = model or ModelConfig()
    model = DocREModel(model_config, rel2id, **objectives.model_outputs(model_config.baseline))
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


class _IndexCopyAsOnCuda(TorchFunctionMode):
    """CPU autocast promotes ``index_copy``'s operands to a common dtype; CUDA autocast does not
    (``self and source expected to have the same dtype``). This mode refuses the mix on the CPU
    as CUDA does."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.index_copy, torch.Tensor.index_copy_, torch.index_copy):
            source = kwargs.get("source", args[3] if len(args) > 3 else None)
            if source is not None and source.dtype != args[0].dtype:
                raise RuntimeError(f"index_copy: self {args[0].dtype}, source {source.dtype} "
                                   f"(an error under CUDA autocast)")
        return func(*args, **kwargs)


@pytest.mark.parametrize("baseline", [False, True], ids=["full", "atlop"])
def test_bf16_step_mixes_no_dtypes_that_cuda_autocast_refuses(graphs, rel2id, tmp_path,
                                                               baseline):
    """Every bf16 run on CUDA crashed in localized_context (bf16 product copied into float32
    context) while CPU runs passed: autocast's rules differ by device."""
    trainer = _trainer(graphs, rel2id, tmp_path, model=ModelConfig(baseline=baseline),
                       precision="bf16")
    with _IndexCopyAsOnCuda():
        record = trainer.train_epoch(1)
        trainer.model.eval()
        batch = next(iter(trainer.train_loader))
        with torch.no_grad(), trainer.autocast():
            trainer.model(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in record.losses.values())


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


def test_discriminator_every_k_steps(graphs, rel2id, tmp_path):
    trainer = _trainer(graphs, rel2id, tmp_path, objectives={"discriminator_every": 2},
                       batch_size=1, epochs=1)
    disc = trainer.objective.discriminators["6"]
    seen = []
    for data in list(trainer.train_loader)[:3]:
        before = [p.detach().clone() for p in disc.parameters()]
        parts = trainer.train_step(data)
        trainer._progress.global_step += 1          # as train_epoch's bookkeeping does
        changed = any(not torch.equal(b, p) for b, p in zip(before, disc.parameters()))
        seen.append((changed, "L_D" in parts))
    assert seen == [(True, True), (False, False), (True, True)]


def test_epoch_mean_of_l_d_counts_only_the_discriminator_steps(graphs, rel2id, tmp_path):
    trainer = _trainer(graphs, rel2id, tmp_path, objectives={"discriminator_every": 2},
                       batch_size=1, epochs=1)
    logged = []
    step = trainer.train_step
    trainer.train_step = lambda data, last=True: logged.append(step(data, last=last)) or logged[-1]
    record = trainer.train_epoch(1)
    values = [p["L_D"] for p in logged if "L_D" in p]
    assert len(values) == 2 and len(logged) == 4
    assert record.losses["L_D"] == pytest.approx(sum(values) / 2)


def test_no_weight_decay_on_biases_and_norms(graphs, rel2id, tmp_path):
    trainer = _trainer(graphs, rel2id, tmp_path, decay_bias_and_norm=False, weight_decay=0.1)
    names = {id(p): n for n, p in [*trainer.model.named_parameters(),
                                   *(("objective." + n, p)
                                     for n, p in trainer.objective.named_parameters())]}
    groups = trainer.optimizer.param_groups + trainer.disc_optimizer.param_groups
    decayed = [names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    plain = [names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]]
    assert decayed and plain
    assert not [n for n in decayed if n.endswith("bias") or "LayerNorm" in n or ".norm" in n]
    assert all(n.endswith("bias") or "LayerNorm" in n or "norm" in n for n in plain)
    # every trained parameter is in exactly one group, with its learning rate
    all_ids = [id(p) for g in groups for p in g["params"]]
    assert len(all_ids) == len(set(all_ids)) == len(names)
    encoder = {id(p) for p in trainer.model.encoder.parameters()}
    for g in trainer.optimizer.param_groups:
        inside = {id(p) in encoder for p in g["params"]}
        assert len(inside) == 1
        assert g["lr"] == (trainer.config.lr_encoder if inside.pop() else trainer.config.lr_new)


def test_default_groups_decay_everything(graphs, rel2id, tmp_path):
    trainer = _trainer(graphs, rel2id, tmp_path)
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [1e-4, 1e-4]


def test_non_finite_loss_stops_before_the_optimiser_step(graphs, rel2id, tmp_path):
    """The loss is checked after its backward pass is queued (the step's one read from the
    device), before any optimiser step: the parameters stay as they were."""
    trainer = _trainer(graphs, rel2id, tmp_path, batch_size=1, epochs=1)
    data = next(iter(trainer.train_loader))
    terms = trainer.objective.model_loss_terms
    trainer.objective.model_loss_terms = lambda out, y: (
        lambda loss, parts: (loss * float("nan"), parts))(*terms(out, y))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        trainer.train_step(data)
    assert all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def test_a_training_step_reads_its_losses_back_once(graphs, rel2id, tmp_path):
    """The loss parts (L_R, L_N, L_A, L_D, loss) and the finiteness check: one read."""
    import sys
    from collections import Counter

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import host_syncs

    trainer = _trainer(graphs, rel2id, tmp_path, batch_size=2, epochs=1)
    data = next(iter(trainer.train_loader))
    counts = Counter()
    with host_syncs._SyncProneCalls(counts):
        parts = trainer.train_step(data)
    assert set(parts) == {"L_R", "L_N", "L_A", "L_D", "loss"}
    assert all(isinstance(v, float) for v in parts.values())
    training = {(call, site.rsplit(" ", 1)[-1]): n for (call, site), n in counts.items()
                if "pyg_docre/training/" in site}
    assert training == {("tolist", "read_scalars"): 1}, counts


def test_compile_gtn_trains_through_the_compiled_stack(graphs, rel2id, tmp_path, monkeypatch):
    """``training.compile_gtn``: the model's GTN is compiled (here with the fast ``aot_eager``
    backend, ``fullgraph=True``: the model's call has no graph break) and trained through it,
    node reconstruction's second pass included."""
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")
    original = DocREModel.compile_gtn
    monkeypatch.setattr(DocREModel, "compile_gtn", lambda self, **kw: original(
        self, backend=counter, fullgraph=True, **kw))
    torch._dynamo.reset()
    try:
        trainer = _trainer(graphs, rel2id, tmp_path, compile_gtn=True, max_steps_per_epoch=1)
        weight = trainer.model.gtn.convs[0].lin_value.weight
        before = weight.detach().clone()
        trainer.train_epoch(1)
        assert counter.frame_count >= 1
        assert not torch.equal(before, weight)
    finally:
        torch._dynamo.reset()
