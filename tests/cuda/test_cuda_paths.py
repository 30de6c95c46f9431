"""GPU paths end to end: experiment runner, predict, evaluation, loading, precisions, the
windowed encoder and the chunked cross heads, sparse = dense (see conftest.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.loader import DataLoader

from pyg_docre.config import ModelConfig, ObjectivesConfig, TrainingConfig
from pyg_docre.data import build_hdg, to_gtn_inputs
from pyg_docre.models.docre_model import DocREModel
from pyg_docre.nn import GTN
from pyg_docre.training.objective import DocREObjective
from pyg_docre.training.trainer import Trainer
from run_helpers import run_process_group

ROOT = Path(__file__).resolve().parents[2]


def _on(module: torch.nn.Module, device: torch.device) -> bool:
    want = device.type
    return all(t.device.type == want for t in [*module.parameters(), *module.buffers()])


@pytest.fixture(scope="module")
def graphs(dev_docs, tokenizer, rel2id):
    return [build_hdg(dev_docs[i], tokenizer, rel2id) for i in range(4)]


def test_sparse_equals_dense_and_chunked(device, graphs):
    """The GTN's sparse, dense and chunked computations agree on the device (float32)."""
    torch.manual_seed(0)
    batch = next(iter(DataLoader(graphs, batch_size=4))).to(device)
    view = to_gtn_inputs(batch)
    x = torch.randn(view.num_nodes, 384, device=device)
    token_x = torch.randn(batch["token"].num_nodes, 384, device=device)
    gtn = GTN(384).to(device).eval()
    with torch.no_grad():
        sparse = gtn(x, token_x=token_x, **view.graph_kwargs())
        gtn.attention = "dense"
        dense = gtn(x, token_x=token_x, **view.graph_kwargs())
        gtn.attention = "sparse"
        for conv in gtn.convs:
            conv.cross_chunk_edges = 500                  # force the chunked local cross heads
        chunked = gtn(x, token_x=token_x, **view.graph_kwargs())
    assert sparse.device.type == device.type
    torch.testing.assert_close(dense, sparse, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(chunked, sparse, atol=1e-5, rtol=1e-5)


def test_long_document_windows_on_device(device, graphs, rel2id):
    """Documents longer than the encoder window (128 tokens: several windows each) train."""
    torch.manual_seed(0)
    model = DocREModel(ModelConfig(max_length=128), rel2id,
                       **ObjectivesConfig(distill_layers=[3, 6]).model_outputs()).to(device).train()
    batch = next(iter(DataLoader(graphs[:2], batch_size=2))).to(device)
    enc = model.encoder(batch["token"].input_ids, batch["token"].ptr,
                        query_index=batch["mention"].token_index)
    assert (enc.num_windows > 1).all()
    out = model(batch)
    out.logits.float().sum().backward()
    assert out.logits.device.type == device.type
    assert model.encoder.model.embeddings.word_embeddings.weight.grad is not None


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_steps_in_every_precision(device, graphs, rel2id, tmp_path, precision):
    """Reconstruction, SA-KD with its own optimiser, GradScaler (fp16) on the device."""
    if precision == "fp16" and device.type != "cuda":
        pytest.skip("fp16 autocast is a CUDA path")
    torch.manual_seed(0)
    objectives = ObjectivesConfig(distill_layers=[3, 6])
    model = DocREModel(ModelConfig(), rel2id, **objectives.model_outputs())
    objective = DocREObjective(objectives, model.channels, model.distill_layers)
    config = TrainingConfig(epochs=1, batch_size=2, device=str(device), precision=precision)
    trainer = Trainer(model, objective, config, graphs, dev_loader=[],
                      evaluate_dev=lambda preds: {"f1": 0.0}, checkpoint_dir=tmp_path / "ckpt")
    before = model.classifier.bilinear.weight.detach().clone()
    disc_before = [p.detach().clone() for p in objective.discriminators.parameters()]
    record = trainer.train_epoch(1)
    assert set(record.losses) >= {"L_R", "L_N", "L_A", "L_D"}
    assert all(torch.isfinite(torch.tensor(v)) for v in record.losses.values()), record.losses
    assert not torch.equal(before, model.classifier.bilinear.weight)
    assert any(not torch.equal(a, b) for a, b in zip(disc_before,
                                                     objective.discriminators.parameters()))
    assert _on(model, device) and _on(objective, device)


def test_save_and_load_on_device(device, graphs, rel2id, tokenizer, tmp_path):
    torch.manual_seed(0)
    model = DocREModel(ModelConfig(), rel2id,
                       **ObjectivesConfig().model_outputs()).to(device).eval()
    model.save_pretrained(tmp_path / "ckpt", tokenizer=tokenizer)
    loaded = DocREModel.from_pretrained(tmp_path / "ckpt", map_location=device).eval()
    assert _on(loaded, device)
    batch = next(iter(DataLoader(graphs[:2], batch_size=2))).to(device)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).logits, model(batch).logits)


def _python(*args, timeout=1500):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_smoke_experiment_and_predict_end_to_end(device, tmp_path, redocred_test_path):
    """run.py trains, selects, reloads the best checkpoint and tests on the device; then
    ``predict`` on the device reproduces the test predictions."""
    out = tmp_path / "run"
    proc = _python("experiments/run.py", "--config", "smoke", "--output", str(out),
                   "--set", f"training.device={device}", "--set", "training.epochs=2",
                   "--set", "training.max_steps_per_epoch=2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test" in metrics and len(metrics["history"]) == 2
    from pyg_docre.data import load_docred
    from pyg_docre.metrics import read_result
    docs = tmp_path / "docs.json"
    docs.write_text(json.dumps([{k: v for k, v in d.items() if k != "labels"}
                                for d in load_docred(redocred_test_path)[0:4]]))
    result = tmp_path / "result.json"
    proc = _python("-m", "pyg_docre", "predict", "--model", str(out / "checkpoint"),
                   "--input", str(docs), "--output", str(result), "--device", str(device))
    assert proc.returncode == 0, proc.stderr[-4000:]
    key = lambda p: (p["title"], p["h_idx"], p["t_idx"], p["r"])
    assert sorted(map(key, read_result(result))) == sorted(
        map(key, read_result(out / "result_test.json")))


def test_compiled_gtn_on_device(device, graphs):
    """torch.compile (Inductor: Triton kernels on CUDA) gives the eager GTN's outputs and
    gradients on the device, for two batch shapes without recompiling."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch.manual_seed(0)
    torch._dynamo.reset()
    gtn = GTN(384).to(device).eval()
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(gtn, backend=counter, dynamic=True, fullgraph=True)
    frames = None
    for size in (4, 2):
        batch = next(iter(DataLoader(graphs[:size], batch_size=size))).to(device)
        view = to_gtn_inputs(batch)
        token_x = torch.randn(batch["token"].num_nodes, 384, device=device)
        kwargs = view.graph_kwargs()
        structure = gtn.structure(**{k: v for k, v in kwargs.items() if k != "token_edge_index"},
                                  num_nodes=view.num_nodes, num_tokens=token_x.size(0))
        results = []
        for call in (compiled, gtn):
            gtn.zero_grad()
            x = torch.randn(view.num_nodes, 384, device=device,
                            generator=torch.Generator(device).manual_seed(size))
            x.requires_grad_()
            out = call(x, token_x=token_x, check_inputs=False, structure=structure, **kwargs)
            out.pow(2).mean().backward()
            results.append([out.detach(), x.grad, gtn.convs[0].lin_value.weight.grad.clone()])
        for ours, eager in zip(*results):
            torch.testing.assert_close(ours, eager, atol=1e-4, rtol=1e-4)
        frames = counter.frame_count if frames is None else frames
        assert counter.frame_count == frames, "recompiled for another batch shape"
    torch._dynamo.reset()


def test_smoke_experiment_with_compiled_gtn(device, tmp_path):
    """training.compile_gtn end to end: training, evaluation and the reloaded test model."""
    out = tmp_path / "run"
    proc = _python("experiments/run.py", "--config", "smoke", "--output", str(out),
                   "--set", f"training.device={device}", "--set", "training.epochs=1",
                   "--set", "training.max_steps_per_epoch=2",
                   "--set", "training.compile_gtn=true")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "test" in json.loads((out / "metrics.json").read_text())


def test_torchrun_two_gpus(device, tmp_path):
    """DDP with NCCL: two processes on two GPUs run the smoke experiment."""
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    out = tmp_path / "ddp"
    proc = run_process_group(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "experiments/run.py", "--config", "smoke", "--output", str(out),
         "--set", "training.device=cuda", "--set", "training.max_steps_per_epoch=2"],
        1500, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((out / "metrics.json").read_text())["environment"]["world_size"] == 2


def test_mid_epoch_resume_on_device(device, graphs, rel2id, tmp_path):
    """A run interrupted mid-epoch and resumed on the device continues the same run: the CUDA
    generators (dropout) are restored with the CPU one. Not bitwise (CUDA scatter-adds sum in
    varying order), but a dropout stream that was not restored moves the losses by far more than
    the tolerance."""
    from pyg_docre.config import GTNConfig

    def trainer(folder, state_dir=None):
        torch.manual_seed(0)
        objectives = ObjectivesConfig(distill_layers=[6])
        model = DocREModel(ModelConfig(gtn=GTNConfig(num_layers=1)), rel2id,
                           **objectives.model_outputs())
        objective = DocREObjective(objectives, model.channels, model.distill_layers)
        config = TrainingConfig(epochs=2, batch_size=2, device=str(device), save_every_steps=1,
                                seed=3, num_workers=0)
        score = lambda preds: {"f1": float(model.classifier.bilinear.weight.detach().sum()),
                               "ign_f1": None}
        return Trainer(model, objective, config, graphs, dev_loader=[], evaluate_dev=score,
                       checkpoint_dir=folder / "ckpt", state_dir=state_dir)

    reference = trainer(tmp_path / "a")
    reference_history = reference.fit()

    class Interrupt(Exception):
        pass

    state = tmp_path / "b" / "resume"
    interrupted = trainer(tmp_path / "b", state_dir=state)
    step, calls = interrupted._step, [0]

    def dies_on_the_fourth_batch(*args, **kwargs):
        calls[0] += 1
        if calls[0] > 3:
            raise Interrupt
        return step(*args, **kwargs)
    interrupted._step = dies_on_the_fourth_batch
    with pytest.raises(Interrupt):
        interrupted.fit()
    # Whatever the interrupted process drew from the generators must not matter.
    torch.manual_seed(12345)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(12345)

    resumed = trainer(tmp_path / "c", state_dir=state)
    resumed.load_training_state()
    history = resumed.fit()
    assert _on(resumed.model, device)
    for (name, a), b in zip(reference.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=name)
    for ours, theirs in zip(history, reference_history):
        assert ours.losses.keys() == theirs.losses.keys()
        for key in ours.losses:
            assert ours.losses[key] == pytest.approx(theirs.losses[key], rel=1e-3, abs=1e-4), key


def test_host_syncs_counts_on_the_device(device, tmp_path):
    """benchmarks/host_syncs.py on the device (on CUDA: torch.cuda.set_sync_debug_mode)."""
    proc = _python("benchmarks/host_syncs.py", "--device", str(device), "--steps", "1",
                   "--batch-size", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "host_syncs.json").read_text())
    assert result["models"]["full"]["per_step"] > 0
    # Read from nowhere but the model's one read of its batch, the losses' one read, the
    # encoder's model call (transformers' padding-mask check) and PyTorch's own code:
    # the plan, the GTN, context pooling and the loss parts read nothing back.
    for name in ("full", "baseline"):
        functions = {s["site"].rsplit(" ", 1)[-1] for s in result["models"][name]["sites"]}
        assert not functions & {"plan_batch", "plan_queries", "_to_host", "as_list",
                                "batch_sizes", "localized_context", "model_loss_terms",
                                "_gather_rows", "_explicit_rows"}, (name, functions)
        files = {s["site"].split(":")[0] for s in result["models"][name]["sites"]}
        assert "pyg_docre/nn/window_plan.py" not in files, (name, files)
