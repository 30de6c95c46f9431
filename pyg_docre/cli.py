"""Command line: ``python -m pyg_docre <command>`` (also installed as ``pyg-docre``).

Commands:

``evaluate --pred P --gold G [--train T] [--rel-info R] [--per-relation]``
    Scores an official-format ``result.json`` against a gold DocRED file and prints ONE JSON line
    on stdout, in percent, with the keys ``precision recall f1 ign_f1 intra_f1 inter_f1``
    (``ign_f1`` is ``null`` without ``--train``). ``--per-relation`` also prints the per-relation
    table to stderr (names from ``--rel-info``).

``predict --model DIR --input DOCS --output RESULT``
    Runs a model saved by ``experiments/run.py`` (its ``checkpoint/`` folder) on DocRED-format
    documents and writes the official ``result.json``.

Bad input (missing file, invalid JSON, malformed document or prediction) prints a one-line
error naming the file and exits with status 2.

Each command is a ``_add_<command>(subparsers)`` function that registers its parser and sets
``handler``; a new command (e.g. ``predict``) adds one such function to :data:`_COMMANDS`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["CLIError", "build_parser", "main"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# --------------------------------------------------------------------------------------------
# evaluate

def _format_per_relation(frame) -> str:
    """The per-relation table with scores in percent (two decimals)."""
    shown = frame.copy()
    for col in ("precision", "recall", "f1"):
        shown[col] = (shown[col] * 100.0).round(2)
    return shown.to_string()


def _check_evaluation_matches(gold: list, predictions: list, args: argparse.Namespace) -> None:
    """All-zero scores that only mean "wrong file" are errors: an empty gold file, or
    predictions none of whose titles is a gold title."""
    if not gold:
        raise CLIError(f"{args.gold}: holds no documents, nothing to score against")
    titles = {p["title"] for p in predictions}
    if titles and not titles & {d["title"] for d in gold}:
        example = ", ".join(repr(t) for t in sorted(titles)[:3])
        raise CLIError(f"{args.pred}: none of its {len(titles)} predicted titles (e.g. "
                       f"{example}) is a title of {args.gold}; is it the right gold file?")


def _run_evaluate(args: argparse.Namespace) -> int:
    from .data.docred import DocREDFormatError, load_docred
    from .data.relations import load_rel_info
    from .metrics import DocREDScorer, DocumentFormatError, PredictionFormatError, read_result

    try:
        predictions = read_result(args.pred)
        gold = load_docred(args.gold, require_labels=True)
        # Only the training file's facts are used, so its titles may repeat.
        train = None if args.train is None else load_docred(
            args.train, require_labels=True, unique_titles=False)
        rel_info = None if args.rel_info is None else load_rel_info(args.rel_info)
        scorer = DocREDScorer(gold, train, gold_path=args.gold, train_path=args.train)
        scores = scorer.score(predictions, pred_path=args.pred)
        table = scorer.per_relation(predictions, rel_info, pred_path=args.pred) \
            if args.per_relation else None
    except (DocREDFormatError, DocumentFormatError, PredictionFormatError) as err:
        raise CLIError(str(err)) from None
    except OSError as err:  # e.g. a directory or an unreadable file
        name = err.filename if err.filename is not None else "input"
        raise CLIError(f"{name}: {err.strerror or err}") from None

    _check_evaluation_matches(gold, predictions, args)
    if train is None:
        print("note: no --train file, ign_f1 is null", file=sys.stderr)
    if table is not None:
        print(_format_per_relation(table), file=sys.stderr)
    print(json.dumps(scores.to_dict(percent=True)), flush=True)
    return 0


def _add_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="official DocRED scores of a result.json",
        description="Score an official-format result.json against a gold DocRED file. Prints "
                    "one JSON line (percent): precision recall f1 ign_f1 intra_f1 inter_f1.")
    p.add_argument("--pred", required=True, type=Path, metavar="P",
                   help="predictions: a JSON list of {title, h_idx, t_idx, r}")
    p.add_argument("--gold", required=True, type=Path, metavar="G",
                   help="annotated DocRED-format file to score against")
    p.add_argument("--train", type=Path, metavar="T",
                   help="training file for Ign F1 (without it ign_f1 is null)")
    p.add_argument("--rel-info", type=Path, metavar="R",
                   help="rel_info.json (P-id -> name) for the per-relation table")
    p.add_argument("--per-relation", action="store_true",
                   help="also print per-relation precision/recall/F1 to stderr")
    p.set_defaults(handler=_run_evaluate)


# --------------------------------------------------------------------------------------------
# predict

def _check_predict_args(args: argparse.Namespace) -> None:
    """Arguments and the output path, checked before the model is loaded or anything run."""
    import os

    if args.batch_size < 1:
        raise CLIError(f"--batch-size: must be >= 1, got {args.batch_size}")
    output = Path(args.output)
    parent = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise CLIError(f"--output {output}: is a folder; give a file path such as "
                       f"{output / 'result.json'}")
    if not parent.is_dir():
        raise CLIError(f"--output {output}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (output.exists()
                                                    and not os.access(output, os.W_OK)):
        raise CLIError(f"--output {output}: not writable")
    if getattr(args, "device", None) is not None:
        from .config import ConfigError
        from .training.validation import check_device
        try:
            check_device(args.device, key="--device")
        except ConfigError as err:
            raise CLIError(str(err)) from None


def _run_predict(args: argparse.Namespace) -> int:
    _check_predict_args(args)
    from torch_geometric.loader import DataLoader

    from .data import DocREDDataset
    from .data.docred import DocREDFormatError
    from .metrics import write_result
    from .models.checkpoint import CheckpointError
    from .models.docre_model import DocREModel
    from .training.evaluation import predict
    from .training.trainer import resolve_device

    try:
        device = resolve_device(args.device)
        model = DocREModel.from_pretrained(args.model, map_location=device)
        tokenizer = DocREModel.load_tokenizer(args.model)
        dataset = DocREDDataset(args.input, tokenizer, model.rel2id, cache_dir=None)
    except (FileNotFoundError, DocREDFormatError, CheckpointError, RuntimeError) as err:
        raise CLIError(str(err)) from None
    id2rel = [r for r, _ in sorted(model.rel2id.items(), key=lambda kv: kv[1])]
    loader = DataLoader(dataset, batch_size=args.batch_size)
    predictions = predict(model.to(device), loader, device, id2rel, model.config.top_k)
    write_result(predictions, args.output)
    print(f"{len(predictions)} relations predicted in {len(dataset)} documents -> {args.output}",
          file=sys.stderr)
    return 0


def _add_predict(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="run a saved model on DocRED-format documents",
        description="Predict relations with a model saved by experiments/run.py (its "
                    "checkpoint/ folder) and write an official-format result.json.")
    p.add_argument("--model", required=True, type=Path, metavar="DIR",
                   help="a saved model directory (config.json, model.safetensors, tokenizer/)")
    p.add_argument("--input", required=True, type=Path, metavar="DOCS",
                   help="DocRED-format documents (labels not needed)")
    p.add_argument("--output", required=True, type=Path, metavar="RESULT",
                   help="where to write the predictions (official result.json format)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.set_defaults(handler=_run_predict)


# --------------------------------------------------------------------------------------------

_COMMANDS: tuple[Callable, ...] = (_add_evaluate, _add_predict)


def build_parser() -> argparse.ArgumentParser:
    """The ``pyg_docre`` parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m pyg_docre",
        description="Document-level relation extraction (DocRE-BSI) on PyTorch Geometric.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in _COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 success, 2 usage or input error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.handler(args)
    except CLIError as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
