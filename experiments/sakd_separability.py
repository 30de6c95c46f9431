#!/usr/bin/env python
"""How easily can an SA-KD discriminator tell GTN nodes from encoder-layer nodes?

    python experiments/sakd_separability.py runs/redocred_minilm_cpu_raw_sakd/checkpoint

Loads a trained model (``DocREModel.from_pretrained``), computes, without gradients and in
training mode (the mode in which the model builds the distilled features), the GTN output
F^(L) and the node features F^(l) of every distilled encoder layer on the first ``--docs``
documents of Re-DocRED ``dev_revised.json``, splits the nodes in halves (first half of the
documents' nodes to train, second to evaluate), and reports for each layer:

* ``raw``: a fresh ``NodeDiscriminator`` trained for ``--steps`` full-batch Adam steps on raw
  features, its held-out accuracy (chance = 0.5) and the generator loss BCE(C(F^(l)) -> 1) on
  the held-out student nodes;
* ``normalized``: the same on per-node normalised features (zero mean, unit variance), i.e.
  without the norm and offset cues;
* ``student_head``: a ``StudentProjection`` trained against the discriminator (alternating
  steps, as in training, with the encoder frozen): the discriminator and generator losses at
  the end; near 2 log 2 = 1.39 and log 2 = 0.69 when the game is balanced.

Prints one JSON object. Used in ``experiments/results/redocred_cpu.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyg_docre.data import DocREDDataset  # noqa: E402
from pyg_docre.models.docre_model import DocREModel  # noqa: E402
from pyg_docre.training.sakd import (NodeDiscriminator, StudentProjection,  # noqa: E402
                                     discriminator_loss, generator_loss)


def node_features(model: DocREModel, dataset, batch_size: int = 4):
    """``(teacher [N, d], {layer: student [N, d]})`` over the whole dataset."""
    from torch_geometric.loader import DataLoader

    teacher, students = [], {}
    model.train()
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size):
            out = model(batch)
            teacher.append(out.gtn_output)
            for layer, x in out.layer_features.items():
                students.setdefault(layer, []).append(x)
    return torch.cat(teacher), {l: torch.cat(xs) for l, xs in students.items()}


def fit_discriminator(teacher, student, steps: int, lr: float, normalize: bool) -> dict:
    transform = (lambda x: F.layer_norm(x, x.shape[-1:])) if normalize else (lambda x: x)
    half = teacher.size(0) // 2
    disc = NodeDiscriminator(teacher.size(1))
    opt = torch.optim.Adam(disc.parameters(), lr=lr)
    for _ in range(steps):
        loss = discriminator_loss(disc, transform(teacher[:half]), transform(student[:half]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        t_logits, s_logits = disc(transform(teacher[half:])), disc(transform(student[half:]))
        accuracy = 0.5 * ((t_logits > 0).float().mean() + (s_logits < 0).float().mean())
        gen = F.binary_cross_entropy_with_logits(s_logits, torch.ones_like(s_logits))
    return {"train_discriminator_loss": loss.item(), "heldout_accuracy": float(accuracy),
            "heldout_generator_loss": float(gen)}


def fit_with_student_head(teacher, student, steps: int, lr: float, head_lr: float) -> dict:
    disc, head = NodeDiscriminator(teacher.size(1)), StudentProjection(teacher.size(1))
    disc_opt = torch.optim.Adam(disc.parameters(), lr=lr)
    head_opt = torch.optim.Adam(head.parameters(), lr=head_lr)
    for _ in range(steps):
        d_loss = discriminator_loss(disc, teacher, head(student).detach())
        disc_opt.zero_grad()
        d_loss.backward()
        disc_opt.step()
        g_loss = generator_loss(disc, head(student))
        head_opt.zero_grad()
        g_loss.backward()
        head_opt.step()
    return {"discriminator_loss": d_loss.item(), "generator_loss": g_loss.item()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a directory saved by save_pretrained")
    parser.add_argument("--data", type=Path,
                        default=ROOT / "datasets" / "re-docred" / "dev_revised.json")
    parser.add_argument("--docs", default="0:40", help="document range (default: 0:40)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-4, help="discriminator (as the configs)")
    parser.add_argument("--head-lr", type=float, default=3e-4, help="student head (lr_new)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = DocREModel.from_pretrained(args.checkpoint)
    if model.gtn is None or not model.distill_layers:
        parser.error(f"{args.checkpoint}: a baseline model (no GTN or no distilled layers)")
    tokenizer = DocREModel.load_tokenizer(args.checkpoint)
    dataset = DocREDDataset(args.data, tokenizer, model.rel2id, docs=args.docs)
    teacher, students = node_features(model, dataset)
    report = {"checkpoint": str(args.checkpoint), "docs": args.docs, "nodes": teacher.size(0),
              "teacher_norm": [float(teacher.norm(dim=-1).mean()),
                               float(teacher.norm(dim=-1).std())], "layers": {}}
    for layer, student in sorted(students.items()):
        report["layers"][str(layer)] = {
            "student_norm": [float(student.norm(dim=-1).mean()),
                             float(student.norm(dim=-1).std())],
            "raw": fit_discriminator(teacher, student, args.steps, args.lr, normalize=False),
            "normalized": fit_discriminator(teacher, student, args.steps, args.lr,
                                            normalize=True),
            "student_head": fit_with_student_head(teacher, student, args.steps, args.lr,
                                                  args.head_lr),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
