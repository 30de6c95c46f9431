"""Command line: ``python -m pyg_docre <command>`` (also installed as ``pyg-docre``).

Commands:

``train --config NAME [--output DIR] [--set key=value ...] [--dry-run] [--list-configs]``
    Trains from a YAML config (a path, or a name of the packaged configs in
    ``pyg_docre/configs/``), selects on dev, tests, and writes the output folder (see
    :mod:`pyg_docre.training.experiment`). ``--dry-run`` checks the config, data files, encoder
    and device and prints the resolved config (YAML) without training. ``experiments/run.py`` is
    this command.

``evaluate --pred P --gold G [--train T [--train-docs RANGE]] [--rel-info R] [--per-relation]
[--pr-curve FILE.png]``
    Scores an official-format ``result.json`` against a gold DocRED file and prints ONE JSON line
    on stdout, in percent rounded to 4 decimals, with the keys
    ``precision recall f1 ign_f1 intra_f1 inter_f1`` (``ign_f1`` is ``null`` without
    ``--train``). ``--train-docs 0:450`` keeps a range of the training file for Ign F1 (as a
    config's ``docs``). ``--per-relation`` also prints the per-relation table to stderr (names
    from ``--rel-info``). ``--pr-curve`` plots precision against recall over the ``score`` of a
    rich predictions file (``predict --format rich``).

``predict --model DIR --input DOCS --output RESULT [--format docred|rich] [--threshold X]
[--top-k K] [--device D]``
    Runs a saved model (a run's ``checkpoint/`` folder) on a DocRED JSON list, a single DocRED
    document object, or a plain ``.txt`` file (entities found by the NER backend of the ``text``
    extra), and writes the official ``result.json`` (``docred``) or rich records with entity
    names, relation names, scores and mention offsets (``rich``). ``--output -`` writes to stdout.

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

from pyg_docre.errors import FormatError, PygDocreError

__all__ = ["CLIError", "build_parser", "main", "find_config", "list_configs", "CONFIG_DIR"]


class CLIError(PygDocreError):
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


#: Decimals of the scores (percent) printed by ``evaluate``.
SCORE_DECIMALS = 4


def _rounded(scores: dict) -> dict:
    return {k: (None if v is None else round(v, SCORE_DECIMALS)) for k, v in scores.items()}


def _run_evaluate(args: argparse.Namespace) -> int:
    from .data.dataset import parse_doc_range
    from .data.docred import load_docred
    from .data.relations import load_rel_info
    from .metrics import DocREDScorer, read_result

    if args.train_docs is not None and args.train is None:
        raise CLIError("--train-docs needs --train (the file the range is taken from)")
    if args.pr_curve is not None:
        _check_matplotlib()
    try:
        predictions = read_result(args.pred)
        gold = load_docred(args.gold, require_labels=True)
        # Only the training file's facts are used, so its titles may repeat.
        train = None if args.train is None else load_docred(
            args.train, require_labels=True, unique_titles=False)
        if train is not None and args.train_docs is not None:
            try:
                train = [train[i] for i in parse_doc_range(args.train_docs, len(train))]
            except ValueError as err:
                raise CLIError(f"--train-docs: {err} ({args.train})") from None
        rel_info = None if args.rel_info is None else load_rel_info(args.rel_info)
        scorer = DocREDScorer(gold, train, gold_path=args.gold, train_path=args.train)
        scores = scorer.score(predictions, pred_path=args.pred)
        table = scorer.per_relation(predictions, rel_info, pred_path=args.pred) \
            if args.per_relation else None
        infer = None
        if args.infer:
            from .metrics import INFER_KEYS, infer_counts
            infer = infer_counts(scorer, predictions, pred_path=args.pred)
        curve = None
        if args.pr_curve is not None:
            from .metrics.curves import precision_recall_points
            curve = precision_recall_points(predictions, scorer, pred_path=args.pred)
    except FormatError as err:
        raise CLIError(str(err)) from None
    except OSError as err:  # e.g. a directory or an unreadable file
        name = err.filename if err.filename is not None else "input"
        raise CLIError(f"{name}: {err.strerror or err}") from None

    _check_evaluation_matches(gold, predictions, args)
    if train is None:
        print("note: no --train file, ign_f1 is null", file=sys.stderr)
    if table is not None:
        print(_format_per_relation(table), file=sys.stderr)
    if curve is not None:
        from .metrics.curves import plot_precision_recall
        plot_precision_recall(curve, args.pr_curve, title=f"{args.pred.name} vs {args.gold.name}")
        print(f"precision-recall curve ({len(curve.thresholds)} thresholds) -> {args.pr_curve}; "
              f"best F1 {100 * curve.best_f1:.2f} at score > {curve.best_threshold:.4g}",
              file=sys.stderr)
    out = scores.to_dict(percent=True)
    if infer is not None:
        if infer.gold == 0:
            print(f"note: {args.gold} has no inferable facts (no gold e1->e2->e3 with e1->e3), "
                  f"the infer scores are 0", file=sys.stderr)
        out.update(zip(INFER_KEYS, (100.0 * infer.precision, 100.0 * infer.recall,
                                    100.0 * infer.f1)))
    print(json.dumps(_rounded(out)), flush=True)
    return 0


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CLIError("--pr-curve needs matplotlib: pip install 'pyg_docre[bench]' "
                       "(or pip install matplotlib)") from None


def _add_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="official DocRED scores of a result.json",
        description="Score an official-format result.json against a gold DocRED file. Prints "
                    "one JSON line (percent): precision recall f1 ign_f1 intra_f1 inter_f1 "
                    "(and infer_precision infer_recall infer_f1 with --infer).")
    p.add_argument("--pred", required=True, type=Path, metavar="P",
                   help="predictions: a JSON list of {title, h_idx, t_idx, r}")
    p.add_argument("--gold", required=True, type=Path, metavar="G",
                   help="annotated DocRED-format file to score against")
    p.add_argument("--train", type=Path, metavar="T",
                   help="training file for Ign F1 (without it ign_f1 is null)")
    p.add_argument("--train-docs", metavar="RANGE",
                   help="use only these documents of --train for Ign F1, as a config's docs: "
                        "'0:450' (the CPU protocol's training documents of dev_revised.json)")
    p.add_argument("--rel-info", type=Path, metavar="R",
                   help="rel_info.json (P-id -> name) for the per-relation table")
    p.add_argument("--per-relation", action="store_true",
                   help="also print per-relation precision/recall/F1 to stderr")
    p.add_argument("--infer", action="store_true",
                   help="also print Infer-F1 (Zeng et al. 2020, as in DocRE-BSI's Table 5): "
                        "infer_precision infer_recall infer_f1 over the gold facts on a two-hop "
                        "chain e1->e2->e3 with e1->e3; see pyg_docre.metrics.infer")
    p.add_argument("--pr-curve", type=Path, metavar="FILE.png",
                   help="plot the precision-recall curve over the predictions' scores (a rich "
                        "file from `predict --format rich`; `--threshold -inf` gives the whole "
                        "curve); needs matplotlib")
    p.set_defaults(handler=_run_evaluate)


# --------------------------------------------------------------------------------------------
# predict

def _check_predict_args(args: argparse.Namespace) -> None:
    """Arguments and the output path, checked before the model is loaded or anything run."""
    if args.batch_size < 1:
        raise CLIError(f"--batch-size: must be >= 1, got {args.batch_size}")
    if str(args.output) != "-":                      # "-" is standard output
        _check_output_path(Path(args.output))
    if getattr(args, "device", None) is not None:
        from .config import ConfigError
        from .training.validation import check_device
        try:
            check_device(args.device, key="--device")
        except ConfigError as err:
            raise CLIError(str(err)) from None


def _check_output_path(output: Path) -> None:
    """A file path whose folder exists and is writable (not a folder itself)."""
    import os

    parent = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise CLIError(f"--output {output}: is a folder; give a file path such as "
                       f"{output / 'result.json'}")
    if not parent.is_dir():
        raise CLIError(f"--output {output}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (output.exists()
                                                    and not os.access(output, os.W_OK)):
        raise CLIError(f"--output {output}: not writable")


def _read_predict_input(path: Path, ner_model: str | None):
    """``(documents, text_spans)`` from a DocRED JSON list, one DocRED object, or a .txt file
    (then one document, and per entity the mentions' character spans)."""
    from .data.docred import read_json_file, validate_documents

    if path.suffix.lower() == ".txt":
        from .text import MissingBackendError, SpacyNER, TextFormatError, find_entities
        from .text import text_to_document
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CLIError(f"{path}: no such file") from None
        except UnicodeDecodeError as err:
            raise CLIError(f"{path}: not UTF-8 text ({err})") from None
        try:
            ner = SpacyNER() if ner_model is None else SpacyNER(ner_model)
            entities = find_entities(text, ner=ner)
            doc, spans = text_to_document(text, entities, title=path.stem)
        except (MissingBackendError, TextFormatError) as err:
            raise CLIError(f"{path}: {err}") from None
        return [doc], [spans]
    obj = read_json_file(path)
    docs = [obj] if isinstance(obj, dict) else obj
    if not isinstance(docs, list):
        raise CLIError(f"{path}: must hold a JSON list of DocRED documents or one document "
                       f"object, got {type(obj).__name__}")
    validate_documents(docs, path=path)
    return docs, None


def _records(doc: dict, relations: list[dict], fmt: str, spans) -> list[dict]:
    rows = []
    for rel in relations:
        row = {"title": doc["title"], "h_idx": rel["h"], "t_idx": rel["t"], "r": rel["relation"]}
        if fmt == "rich":
            row.update(h_name=rel["h_name"], t_name=rel["t_name"],
                       relation_name=rel["relation_name"], score=round(rel["score"], 6))
            if spans is not None:
                row.update(h_mentions=spans[rel["h"]], t_mentions=spans[rel["t"]])
            else:
                vs = doc["vertexSet"]
                row.update(h_pos=[[m["sent_id"], *m["pos"]] for m in vs[rel["h"]]],
                           t_pos=[[m["sent_id"], *m["pos"]] for m in vs[rel["t"]]])
        rows.append(row)
    return rows


def _run_predict(args: argparse.Namespace) -> int:
    _check_predict_args(args)
    from .data.docred import DocREDFormatError
    from .extractor import RelationExtractor
    from .io import atomic_write_text
    from .models.checkpoint import CheckpointError
    from .training.trainer import resolve_device

    try:
        docs, spans = _read_predict_input(args.input, args.spacy_model)
        device = resolve_device(args.device)
        extractor = RelationExtractor.from_pretrained(args.model, device=device)
        per_doc = extractor.predict(docs, threshold=args.threshold, top_k=args.top_k,
                                    batch_size=args.batch_size, progress=args.progress)
    except (FileNotFoundError, DocREDFormatError, CheckpointError, RuntimeError) as err:
        raise CLIError(str(err)) from None
    rows = []
    for i, (doc, relations) in enumerate(zip(docs, per_doc)):
        rows.extend(_records(doc, relations, args.format,
                             None if spans is None else spans[i]))
    text = json.dumps(rows, ensure_ascii=False, indent=None if args.format == "docred" else 1)
    if str(args.output) == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        where = "stdout"
    else:
        try:
            atomic_write_text(args.output, text)
        except OSError as err:
            raise CLIError(f"{args.output}: {err.strerror or err}") from None
        where = str(args.output)
    print(f"{len(rows)} relations predicted in {len(docs)} documents -> {where}",
          file=sys.stderr)
    return 0


def _float_or_inf(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (or -inf), got {value!r}") from None


def _add_predict(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="run a saved model on documents or plain text",
        description="Predict relations with a saved model (a training run's checkpoint/ folder) "
                    "and write them in the official result.json format or as rich records.")
    p.add_argument("--model", required=True, type=Path, metavar="DIR",
                   help="a saved model directory (config.json, model.safetensors, tokenizer/)")
    p.add_argument("--input", required=True, type=Path, metavar="DOCS",
                   help="a DocRED JSON list of documents, one document object (labels not "
                        "needed), or a plain .txt file (entities found by spaCy: "
                        "pip install 'pyg_docre[text]')")
    p.add_argument("--output", required=True, type=Path, metavar="RESULT",
                   help="where to write the predictions; '-' for stdout")
    p.add_argument("--format", choices=("docred", "rich"), default="docred",
                   help="docred: official {title, h_idx, t_idx, r} (default); rich: also "
                        "h_name, t_name, relation_name, score (logit - threshold logit) and "
                        "mention offsets (h_pos/t_pos [sent_id, start, end] words for JSON "
                        "input, h_mentions/t_mentions [start, end] characters for .txt)")
    p.add_argument("--threshold", type=_float_or_inf, default=None, metavar="X",
                   help="keep a relation when logit - threshold logit > X (default: the "
                        "learned threshold, X = 0; -inf: each pair's top-k)")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="at most K relations per pair (default: the model's, 4)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--spacy-model", default=None, metavar="NAME",
                   help="spaCy pipeline for .txt input (default en_core_web_sm)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal)")
    p.set_defaults(handler=_run_predict)


# --------------------------------------------------------------------------------------------
# train

#: The packaged experiment configs (``pyg_docre/configs/*.yaml``).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def list_configs() -> list[str]:
    """Names of the packaged configs (``pyg-docre train --config NAME``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def find_config(name: str) -> Path:
    """A config file from a path or a packaged config's name (``.yaml`` may be omitted).

    ``experiments/configs/NAME.yaml`` (where the configs lived before they moved into the
    package) resolves to the packaged file of the same name.
    """
    given = Path(name)
    candidates = [given, CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"]
    if given.parent.parts[-2:] == ("experiments", "configs"):
        candidates.append(CONFIG_DIR / given.name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"config {name!r} not found (a path, or a name in {CONFIG_DIR}); "
                            f"available: {', '.join(list_configs())}")


def _run_train(args: argparse.Namespace) -> int:
    import os
    import shlex

    import yaml

    if args.list_configs:
        for name in list_configs():
            first = ""
            try:
                text = (CONFIG_DIR / f"{name}.yaml").read_text(encoding="utf-8")
                first = next((l.lstrip("# ").strip() for l in text.splitlines()
                              if l.startswith("#")), "")
            except OSError:
                pass
            print(f"{name:28s} {first}".rstrip())
        return 0
    if args.config is None:
        raise CLIError("--config is required (or --list-configs to see the packaged configs)")

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .config import ConfigError, load_config

    base_dir = Path(args.base_dir) if args.base_dir is not None else Path.cwd()
    try:
        path = find_config(args.config)
        config = load_config(path, args.overrides)
    except (FileNotFoundError, ConfigError) as err:
        raise CLIError(str(err)) from None
    if args.dry_run:
        from .training.preflight import PreflightError, preflight
        try:
            summary = preflight(config, base_dir)
        except PreflightError as err:
            raise CLIError(str(err)) from None
        sys.stdout.write(yaml.safe_dump(config.to_dict(), sort_keys=False))
        splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
        enc = summary["encoder"]
        print(f"dry run ok: {path}; documents: {splits}; {summary['relations']} relations; "
              f"encoder {enc['name']} ({enc['layers']} layers, hidden {enc['hidden_size']}); "
              f"device {summary['device']}", file=sys.stderr)
        return 0

    from .training.distributed import context_from_environment
    from .training.experiment import format_results_table, run_experiment

    def is_main_process() -> bool:
        return context_from_environment().is_main

    output = Path(args.output) if args.output else base_dir / "runs" / path.stem
    command = " ".join([args.prog_name] + [shlex.quote(a) for a in args.argv])
    from .training.stopping import TrainingStopped
    try:
        metrics = run_experiment(config, output, base_dir=base_dir, command=command,
                                 resume=args.resume, overwrite=args.overwrite)
    except PygDocreError as err:    # config, run folder, data, checkpoint, resume
        raise CLIError(str(err)) from None
    except TrainingStopped as stop:
        if is_main_process():
            again = [a for a in args.argv if a not in ("--resume", "--overwrite")]
            print(f"{args.prog_name}: {stop}; to continue: "
                  f"{' '.join([args.prog_name] + [shlex.quote(a) for a in again])} --resume",
                  file=sys.stderr)
        return stop.exit_status
    if metrics.get("already_complete"):
        print(f"the run in {output} is already complete; nothing to resume")
    if is_main_process():
        print(format_results_table(metrics))
        print(f"outputs in {output}")
    return 0


def _add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train from a YAML config, select on dev, test",
        description="Train DocRE-BSI (or a baseline/ablation) from a YAML config, select on dev, "
                    "test. The output folder (default runs/NAME) receives config.yaml, "
                    "metrics.json, result_dev.json, result_test.json, checkpoint/ and train.log.")
    p.add_argument("--config", help="a config path or a packaged config name "
                                    "(see --list-configs; .yaml may be omitted)")
    p.add_argument("--output", help="output folder (default: runs/NAME)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="override a config key, dotted path, YAML value (repeatable), e.g. "
                        "--set training.epochs=2")
    p.add_argument("--list-configs", action="store_true",
                   help="list the packaged configs and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="check config, data files, encoder and device, print the resolved "
                        "config (YAML) and exit without training")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the (interrupted) run in the output folder from its "
                           "resume/ state (same config); a complete run is not repeated")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace the run in a non-empty output folder")
    p.set_defaults(handler=_run_train)


# --------------------------------------------------------------------------------------------

_COMMANDS: tuple[Callable, ...] = (_add_train, _add_evaluate, _add_predict)


def build_parser() -> argparse.ArgumentParser:
    """The ``pyg_docre`` parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m pyg_docre",
        description="Document-level relation extraction (DocRE-BSI) on PyTorch Geometric.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in _COMMANDS:
        add_command(subparsers)
    return parser


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--threshold -inf`` -> ``--threshold=-inf`` (argparse takes ``-inf`` for an option)."""
    out = []
    for arg in argv:
        if out and out[-1] == "--threshold" and arg.startswith("-"):
            out[-1] = f"--threshold={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None, *, prog: str | None = None,
         base_dir: str | Path | None = None) -> int:
    """Run one command; returns the exit status (0 success, 2 usage or input error).

    ``prog`` names the program in the command that ``train`` records in metrics.json, and
    ``base_dir`` is where ``train`` resolves the data root and the default ``runs/`` folder
    (default: the current directory); ``experiments/run.py`` passes its own name and the
    checkout's root.
    """
    parser = build_parser()
    if prog is not None:
        parser.prog = prog
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(_join_negative_values(argv))
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    args.argv = argv[1:]
    args.prog_name = f"{parser.prog} {args.command}" if prog is None else prog
    args.base_dir = base_dir
    try:
        return args.handler(args)
    except CLIError as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
