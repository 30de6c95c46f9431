"""The README's Python examples run as written: each block is executed with only its file paths
pointed at the test session's data (the smoke run's checkpoint, a few dev documents), and what its
comments promise (the keys of a prediction, the logits' shape) is checked."""
import ast
import json
import re
from pathlib import Path

import torch
from torch_geometric.loader import DataLoader

from pyg_docre.data import DocREDDataset, to_gtn_inputs

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_block(containing: str) -> str:
    """The one ```python block of the README that contains ``containing``."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"),
                                    flags=re.S) if containing in b]
    assert len(blocks) == 1, f"README.md has {len(blocks)} python blocks with {containing!r}"
    return blocks[0]


def with_paths(code: str, paths: dict[str, Path]) -> str:
    """``code`` with each quoted path of ``paths`` replaced (each must occur, so that a README
    edit cannot leave the test running something else)."""
    for old, new in paths.items():
        assert f'"{old}"' in code, f"the README example no longer uses {old!r}"
        code = code.replace(f'"{old}"', repr(str(new)))
    return code


def run_block(code: str, name: str, namespace: dict | None = None) -> dict:
    """Execute ``code`` as a script in ``namespace`` (the variables a fragment assumes); the
    value of its last expression statement, if any, is stored as ``_`` in the returned
    namespace (as an interactive session shows it)."""
    tree = ast.parse(code, filename=name)
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        tree.body[-1] = ast.copy_location(
            ast.Assign(targets=[ast.Name("_", ast.Store())], value=last.value), last)
        ast.fix_missing_locations(tree)
    namespace = {"__name__": "__readme__", **(namespace or {})}
    exec(compile(tree, name, "exec"), namespace)
    return namespace


def promised_keys(code: str) -> list[str]:
    """The keys of the prediction dict shown in the block's ``# -> [{...}]`` comment."""
    comment = " ".join(line.lstrip("# ->").strip() for line in code.splitlines()
                       if line.startswith("#"))
    keys = re.findall(r"'(\w+)':", comment)
    assert keys, "the README example no longer shows the keys of a prediction"
    return keys


def test_readme_relation_extractor_example(smoke_run):
    out, _ = smoke_run
    code = python_block("RelationExtractor.from_pretrained")
    namespace = run_block(with_paths(code, {"runs/smoke/checkpoint": out / "checkpoint"}),
                          "README.md (RelationExtractor)")
    assert isinstance(namespace["_"], list)
    # The README's note: the smoke model predicts nothing above its threshold, so its best
    # guess per pair is asked for to see a prediction's keys.
    text = "Paris is the capital of France."
    entities = [{"mentions": [[0, 5]]}, {"mentions": [[24, 30]]}]
    guesses = namespace["extractor"].predict_text(text, entities=entities,
                                                  threshold=float("-inf"), top_k=1)
    assert guesses, "threshold=-inf, top_k=1 gave no prediction"
    for guess in guesses:
        assert list(guess) == promised_keys(code)
        assert {guess["h_name"], guess["t_name"]} == {"Paris", "France"}


def test_readme_model_api_example(smoke_run, dev_docs, rel2id_path, tmp_path):
    out, _ = smoke_run
    docs = dev_docs[:4]
    small_dev = tmp_path / "dev.json"
    small_dev.write_text(json.dumps(docs), encoding="utf-8")
    code = with_paths(python_block("DocREModel.from_pretrained"), {
        "datasets/re-docred/dev_revised.json": small_dev,
        "datasets/docred-meta/rel2id.json": rel2id_path,
        ".cache/hdg": tmp_path / "cache",
        "runs/redocred_minilm_cpu/checkpoint": out / "checkpoint"})
    namespace = run_block(code, "README.md (model API)")
    logits, rel2id = namespace["logits"], namespace["rel2id"]
    assert logits.dim() == 2 and logits.size(1) == len(rel2id) == 97   # "[num_pairs, 97]"
    num_pairs = sum(len(d["vertexSet"]) * (len(d["vertexSet"]) - 1) for d in docs)
    assert logits.size(0) == num_pairs


def test_readme_gtn_conv_example(dev_docs, rel2id, tokenizer):
    """The layer example is a fragment: its inputs come from a real HDG batch through
    ``to_gtn_inputs(batch).graph_kwargs()``, as the README says, with random features of the
    example's width (384)."""
    batch = next(iter(DataLoader(DocREDDataset(dev_docs[:2], tokenizer, rel2id, cache_dir=None),
                                 batch_size=2)))
    view = to_gtn_inputs(batch)
    inputs = view.graph_kwargs()
    torch.manual_seed(0)
    inputs["x"] = torch.randn(view.num_nodes, 384)
    inputs["token_x"] = torch.randn(inputs["token_batch"].numel(), 384)
    namespace = run_block(python_block("GTNConv(384"), "README.md (GTNConv)", inputs)
    out = namespace["out"]
    assert out.shape == (view.num_nodes, 384) and bool(torch.isfinite(out).all())
