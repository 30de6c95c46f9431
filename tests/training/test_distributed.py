"""Training with DistributedDataParallel: two gloo processes on the CPU (torchrun)."""
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from pyg_docre.training.distributed import (DistributedContext, context_from_environment,
                                            shard)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ddp_step_worker  # noqa: E402
from run_helpers import run_process_group  # noqa: E402


def _torchrun(*args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "TOKENIZERS_PARALLELISM": "false"}
    return run_process_group([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc_per_node=2", *args], timeout, cwd=ROOT, env=env)


def test_context_from_torchrun_environment():
    assert context_from_environment({}) == DistributedContext()
    ctx = context_from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.local_rank, ctx.world_size) == (3, 1, 4)
    assert ctx.enabled and not ctx.is_main
    with pytest.raises(ValueError, match="inconsistent"):
        context_from_environment({"WORLD_SIZE": "2", "RANK": "2"})


def test_evaluation_shards_partition_the_dataset():
    data = list(range(7))
    parts = [list(shard(data, DistributedContext(rank=r, world_size=3))) for r in range(3)]
    assert sorted(x for p in parts for x in p) == data
    assert shard(data, DistributedContext()) is data


def test_first_step_equals_one_process_on_the_combined_batch(tmp_path):
    """Two processes, one document each: after the first optimiser step (model, student
    heads, discriminators) the parameters equal those of one process on both documents."""
    from safetensors.torch import load_file

    out = tmp_path / "ddp.safetensors"
    proc = _torchrun("tests/training/ddp_step_worker.py", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    ddp = load_file(out)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        graphs = ddp_step_worker.load_graphs()
        trainer = ddp_step_worker.make_trainer(graphs, tmp_path)
        predictions = trainer.predict(ddp_step_worker.eval_loader(graphs))
        initial = ddp_step_worker.trained_state(trainer)
        record = trainer.train_epoch(1)
    finally:
        torch.set_num_threads(threads)
    assert record.steps == 1 and record.train_documents == 2
    # sharded evaluation, gathered: the predictions of one process
    key = lambda p: (p["title"], p["h_idx"], p["t_idx"], p["r"])
    gathered = json.loads(out.with_suffix(".json").read_text())
    assert predictions and sorted(map(key, gathered)) == sorted(map(key, predictions))
    single = ddp_step_worker.trained_state(trainer)
    assert ddp.keys() == single.keys()
    moved = [k for k in single if not torch.equal(single[k], initial[k])]
    assert any(k.startswith("model.encoder.") for k in moved)
    assert any(k.startswith("objective.discriminators.") for k in moved)
    assert any(k.startswith("objective.student_heads.") for k in moved)
    # Adam's first step moves every parameter by about lr * sign(gradient) (lr 5e-5 / 1e-4
    # here): a step computed from other gradients moves most elements differently by ~lr.
    # Elements whose gradient is float noise (|g| ~ Adam's eps) may differ; they are rare.
    total = sum(v.numel() for v in single.values())
    off = sum(int(((ddp[k].float() - single[k].float()).abs() > 1e-6).sum()) for k in single)
    worst = max((ddp[k].float() - single[k].float()).abs().max().item() for k in single)
    assert off <= 1e-5 * total, (off, total)
    assert worst < 1e-4


def test_smoke_experiment_through_torchrun(tmp_path):
    """``torchrun --nproc_per_node=2 experiments/run.py --config smoke`` completes; rank 0
    writes the run folder; metrics.json records the world size."""
    out = tmp_path / "run"
    proc = _torchrun("experiments/run.py", "--config", "smoke", "--output", str(out),
                     "--set", "training.device=cpu", "--set", "training.max_steps_per_epoch=2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["environment"]["world_size"] == 2
    # 8 training documents, 4 per process and batch: one step per epoch, all 8 documents seen
    assert {"dev", "test"} <= set(metrics)
    assert metrics["history"][0]["steps"] == 1
    assert metrics["history"][0]["train_documents"] == 8
    assert json.loads((out / "run_state.json").read_text())["state"] == "complete"
    for name in ("result_dev.json", "result_test.json", "checkpoint/model.safetensors",
                 "config.yaml", "train.log"):
        assert (out / name).exists(), name
    assert proc.stdout.count("| test |") == 1          # one results table, from rank 0


def test_run_experiment_drops_its_trainer_before_leaving_the_group(tmp_path, monkeypatch):
    """A DDP model still alive when the process group is destroyed can hang the process for
    good (``distributed.teardown``): ``run_experiment`` releases its trainer first."""
    import gc
    import weakref

    from pyg_docre.config import load_config
    from pyg_docre.training import experiment
    from pyg_docre.training.trainer import Trainer

    alive: weakref.WeakSet = weakref.WeakSet()
    original_init = Trainer.__init__

    def tracked_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        alive.add(self)

    def teardown(synchronize=True):
        gc.collect()                        # as distributed.teardown does
        live_at_teardown.append(len(alive))

    live_at_teardown: list[int] = []
    monkeypatch.setattr(Trainer, "__init__", tracked_init)
    monkeypatch.setattr(experiment.distributed, "teardown", teardown)
    config = load_config(ROOT / "pyg_docre" / "configs" / "smoke.yaml",
                         ["training.device=cpu", "training.max_steps_per_epoch=1",
                          "data.test.docs=0:1", "data.dev.docs=450:451"])
    experiment.run_experiment(config, tmp_path / "run", base_dir=ROOT)
    assert live_at_teardown == [0]
