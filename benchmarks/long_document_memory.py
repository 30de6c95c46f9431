r"""Peak memory of ``predict`` on one long document, and where it goes.

A long document is built from real Re-DocRED dev documents: their sentences one after the other
until about ``--tokens`` MiniLM tokens, with the entities of the first ``--entity-docs`` of them
(the rest is plain text). Entities set the number of candidate pairs (``E (E - 1)``), tokens the
length of every attention row, so the two knobs separate the two costs.

Every point runs in a fresh interpreter (``--point JSON``, started by the sweep) that builds the
graph and an untrained ``DocREModel`` (the embedded MiniLM-L6, defaults of ``ModelConfig``;
weights do not change memory), records its resident size (``VmRSS``) as the *baseline*, resets
the kernel's peak counter (``/proc/self/clear_refs``) and runs
:func:`pyg_docre.training.evaluation.predict` on the document (batch 1, CPU, fp32), then reads
the peak (``VmHWM``). Reported: peak and peak over the baseline (what inference itself needs).

``chunked`` is the code as it is: localized context pooling and the grouped bilinear classifier
take the pairs in chunks of at most ``CHUNK_ELEMENTS`` elements per intermediate.
``unchunked`` sets that budget to infinity in the child, which is the computation before
chunking: it shows where the memory of a long document went (the ``[pairs, heads, tokens]``
attention products of context pooling and the ``[pairs, d * block]`` outer products).

    python benchmarks/long_document_memory.py                 # the default sweep
    python benchmarks/long_document_memory.py --tokens 20000 --entity-docs 1,4

Writes ``long_document_memory.json`` and ``.md`` into ``--out`` (default
``benchmarks/results/``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (puts the repository root on sys.path too)

#: Peak over baseline that ``predict`` may need for a 20,000-token document (issue target).
TARGET_MB = 2048
MODES = ("chunked", "unchunked")


def long_document(tokens: int, entity_docs: int, docs: list[dict], tokenizer) -> dict:
    """Sentences of consecutive dev documents until about ``tokens`` tokens; the entities of the
    first ``entity_docs`` documents (sentence ids shifted)."""
    sents: list = []
    vertex_set: list = []
    count, i = 2, 0                                     # [CLS] ... [SEP]
    while count < tokens:
        doc = docs[i % len(docs)]
        offset = len(sents)
        if i < entity_docs:
            for entity in doc["vertexSet"]:
                vertex_set.append([{**m, "sent_id": m["sent_id"] + offset} for m in entity])
        for sent in doc["sents"]:
            sents.append(sent)
            count += len(tokenizer(" ".join(sent), add_special_tokens=False)["input_ids"])
        i += 1
    return {"title": f"long-{tokens}-{entity_docs}", "sents": sents, "vertexSet": vertex_set}


def run_point(point: dict) -> dict:
    """In the child: build, measure the baseline, predict, measure the peak."""
    import torch
    from torch_geometric.loader import DataLoader

    import pyg_docre.models.classifier as classifier
    from pyg_docre.config import ModelConfig
    from pyg_docre.data import build_hdg
    from pyg_docre.data import id2rel as make_id2rel
    from pyg_docre.models.docre_model import DocREModel
    from pyg_docre.training.evaluation import predict

    torch.manual_seed(0)
    rel2id = _common.load_rel2id()
    docs = _common.load_documents("dev_revised.json", rel2id)
    tokenizer = _common.load_tokenizer()
    doc = long_document(point["tokens"], point["entity_docs"], docs, tokenizer)
    graph = build_hdg(doc, tokenizer, rel2id)
    model = DocREModel(ModelConfig(encoder_max_padding="auto"), rel2id).eval()   # as shipped
    if point["mode"] == "unchunked":
        classifier.CHUNK_ELEMENTS = float("inf")
        model.classifier.chunk_elements = float("inf")
        classifier.localized_context.__defaults__ = (float("inf"),)
    id2rel = make_id2rel(rel2id)
    loader = DataLoader([graph], batch_size=1)
    baseline = _common.current_rss_bytes()
    reset = _common.reset_peak_rss()
    start = time.perf_counter()
    predict(model, loader, torch.device("cpu"), id2rel, model.config.top_k, progress=False)
    seconds = time.perf_counter() - start
    peak = _common.peak_rss_bytes()
    return {**point, "num_tokens": graph["token"].num_nodes,
            "entities": graph["entity"].num_nodes, "mentions": graph["mention"].num_nodes,
            "pairs": graph["entity", "pair", "entity"].edge_index.size(1),
            "baseline_mb": baseline / _common.MB, "peak_mb": peak / _common.MB,
            "peak_over_baseline_mb": (peak - baseline) / _common.MB, "peak_reset": reset,
            "seconds": seconds}


def sweep(tokens: Sequence[int], entity_docs: Sequence[int], modes: Sequence[str],
          limit_gb: float) -> list[dict]:
    rows = []
    for n in tokens:
        for e in entity_docs:
            for mode in modes:
                point = {"tokens": n, "entity_docs": e, "mode": mode}
                proc = subprocess.run(
                    [sys.executable, __file__, "--point", json.dumps(point),
                     "--limit-gb", str(limit_gb)], capture_output=True, text=True)
                if proc.returncode != 0:
                    tail = proc.stderr.strip().splitlines()[-1:] or ["killed"]
                    rows.append({**point, "error": f"exit {proc.returncode}: {tail[0][:200]}"})
                else:
                    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(_row_text(rows[-1]), flush=True)
    return rows


def _row_text(row: dict) -> str:
    if "error" in row:
        return f"{row['tokens']} tokens, {row['entity_docs']} entity docs, {row['mode']}: " \
               f"{row['error']}"
    return (f"{row['num_tokens']} tokens, {row['entities']} entities ({row['pairs']} pairs), "
            f"{row['mode']}: peak {row['peak_mb']:.0f} MB, +{row['peak_over_baseline_mb']:.0f} "
            f"MB over the loaded model, {row['seconds']:.1f} s")


def markdown_report(result: dict) -> str:
    rows = []
    for r in result["rows"]:
        if "error" in r:
            rows.append([r["tokens"], r["entity_docs"], "", "", r["mode"], r["error"], "", ""])
        else:
            rows.append([r["num_tokens"], r["entities"], r["mentions"], r["pairs"], r["mode"],
                         r["peak_mb"], r["peak_over_baseline_mb"], r["seconds"]])
    return "\n".join([
        "# Peak memory of predict on one long document\n",
        f"One document of real Re-DocRED sentences, untrained `DocREModel()` (MiniLM-L6), batch "
        f"1, CPU, fp32; peak resident memory during `predict` in a fresh process. Target: at "
        f"most {TARGET_MB} MB over the loaded model for a 20,000-token document. `unchunked` is "
        f"the computation before context pooling and the classifier took pairs in chunks. "
        f"See the module docstring of `benchmarks/long_document_memory.py`.\n",
        _common.markdown_table(["tokens", "entities", "mentions", "pairs", "mode", "peak MB",
                                "peak over baseline MB", "seconds"], rows),
        "", _common.metadata_markdown(result["metadata"])])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", default="5000,20000", help="comma-separated token counts")
    parser.add_argument("--entity-docs", default="1,4",
                        help="comma-separated: documents whose entities are kept")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--limit-gb", type=float, default=16.0,
                        help="address-space limit of each child (a runaway point fails "
                             "instead of taking the machine)")
    parser.add_argument("--point", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.point:
        _common.limit_data_bytes(int(args.limit_gb * 1024 ** 3))
        print(json.dumps(run_point(json.loads(args.point))))
        return 0
    ints = lambda text: [int(x) for x in text.split(",") if x]
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes: unknown {unknown}; choose from {MODES}")
    out_dir = _common.resolve_out(args.out)
    meta = _common.metadata(_common.script_argv(__file__, argv))
    with _common.exit_on_stop_signals():        # a killed sweep kills its running child
        rows = sweep(ints(args.tokens), ints(args.entity_docs), modes, args.limit_gb)
    result = {"benchmark": "long_document_memory", "metadata": meta, "target_mb": TARGET_MB,
              "rows": rows}
    _common.write_json(out_dir / "long_document_memory.json", result)
    _common.write_text_atomic(out_dir / "long_document_memory.md", markdown_report(result))
    print(f"wrote {out_dir / 'long_document_memory.json'}, {out_dir / 'long_document_memory.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
