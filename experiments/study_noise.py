#!/usr/bin/env python
"""How far a study's scores move with the choice of documents (document bootstrap).

    python experiments/study_noise.py experiments/studies/redocred_cpu_levers.yaml

For every done (row, seed) of a study (experiments/study.py), the spread of its dev and test F1
when the documents of the split are resampled (pyg_docre.metrics.bootstrap_f1), and for every
row the paired difference to the row it is compared with (``compare_to``, default ``full``),
seed by seed, with its 95% interval. A dev difference whose interval spans 0 cannot be told from
the choice of the 50 dev documents. For reading beside it, the same mean differences against the
training seeds (Student-t interval over the per-seed differences, documents fixed), and the
paper's other test measure, Infer-F1 (Table 5; :func:`pyg_docre.metrics.infer_counts`), per row
and paired. Writes ``OUTPUT_noise.md`` beside the study's summary.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import study as study_lib  # noqa: E402  (experiments/study.py)

from pyg_docre.io import atomic_write_text  # noqa: E402
from pyg_docre.metrics import (PRF, DocREDScorer, bootstrap_f1,  # noqa: E402
                               bootstrap_mean_difference, document_counts, infer_counts,
                               read_result)

SPLITS = ("dev", "test")


def run_counts(study, row: str, seed: int, cache: dict) -> tuple[dict, PRF | None]:
    """One done (row, seed), scored against its own config's data: ``{split: DocumentCounts}``
    and its Infer counts on test (paper Table 5, precision over every prediction; None without
    a test result). Each result file is read once and each split scored by one scorer."""
    _, splits = study_lib.result_splits(study.result_dir(row, seed), study.base_dir, cache)
    counts, infer = {}, None
    for split_name, gold, result in splits:
        scorer, predictions = DocREDScorer(gold), read_result(result)
        counts[split_name] = document_counts(scorer, predictions)
        if split_name == "test":
            infer = infer_counts(scorer, predictions)
    return counts, infer


def infer_table(study, infer: dict) -> list[str]:
    """Infer precision, recall and F1 on test per row (mean ± sample sd over its seeds), and the
    paired Infer-F1 difference to the row's reference, seed by seed and its mean."""
    lines = ["", "Infer-F1 on test (paper Table 5: the gold facts in a reasoning chain "
             "e1→e2→e3 with e1→e3, precision over every prediction; "
             "`pyg_docre.metrics.infer_counts`), mean ± sd over the seeds, and the paired "
             "Infer-F1 difference to the row compared with:", "",
             "| row | seeds | Infer P | Infer R | Infer F1 | vs | Infer-F1 diff by seed | "
             "mean diff |", "|---|---|---|---|---|---|---|---|"]
    names = {r.name for r in study.rows}
    for r in study.rows:
        seeds = [s for s in study.seeds if infer.get((r.name, s)) is not None]
        if not seeds:
            continue
        cells = [study_lib.mean_sd_text([100.0 * getattr(infer[r.name, s], key) for s in seeds])
                 for key in ("precision", "recall", "f1")]
        ref = study.reference(r.name)
        paired = [s for s in seeds if infer.get((ref, s)) is not None]
        if r.name == ref or ref not in names or not paired:
            cells += ["", "", ""]
        else:
            diffs = [100.0 * (infer[r.name, s].f1 - infer[ref, s].f1) for s in paired]
            cells += [ref, ", ".join(f"{d:+.2f}" for d in diffs),
                      f"{sum(diffs) / len(diffs):+.2f}"]
        lines.append(f"| {r.name} | {len(seeds)} | " + " | ".join(cells) + " |")
    return lines


def paired_counts(study, counts: dict, row: str, split: str) -> list:
    """[(row's counts, its reference's counts)] on ``split``, for every seed both have done."""
    ref = study.reference(row)
    return [(counts[row, seed][split], counts[ref, seed][split]) for seed in study.seeds
            if split in counts.get((row, seed), {}) and split in counts.get((ref, seed), {})]


def noise_markdown(study, command: str, samples: int = 2000) -> str:
    cache, counts, infer = {}, {}, {}
    for r in study.rows:
        for seed in study.seeds:
            if study.is_done(r.name, seed):
                counts[r.name, seed], infer[r.name, seed] = run_counts(study, r.name, seed,
                                                                        cache)
    lines = [f"# Document noise of the study `{study.protocol}`", "",
             f"Document bootstrap ({samples} resamples of the split's documents, numpy seed 0): "
             f"the spread of F1 that comes from which documents are scored, not from the "
             f"training seed. Written by:", "", "```bash", command, "```", "",
             "Spread of each run's F1 (sd over resamples, percent):", "",
             "| row | seed | dev F1 | dev sd | test F1 | test sd |", "|---|---|---|---|---|---|"]
    for (row, seed), c in counts.items():
        cells = []
        for split in SPLITS:
            if split in c:
                b = bootstrap_f1(c[split], samples=samples)
                cells += [f"{b['value']:.2f}", f"{b['sd']:.2f}"]
            else:
                cells += ["n/a", "n/a"]
        lines.append(f"| {row} | {seed} | " + " | ".join(cells) + " |")
    lines += ["", "Paired difference to the row compared with (row − reference, same seed, same "
              "resampled documents; 95% interval):", "",
              "| row | vs | seed | dev diff | dev 95% | test diff | test 95% |",
              "|---|---|---|---|---|---|---|"]
    names = {r.name for r in study.rows}
    for r in study.rows:
        ref = study.reference(r.name)
        if r.name == ref or ref not in names:
            continue
        for seed in study.seeds:
            if (r.name, seed) not in counts or (ref, seed) not in counts:
                continue
            cells = []
            for split in SPLITS:
                mine, theirs = counts[r.name, seed].get(split), counts[ref, seed].get(split)
                if mine is None or theirs is None:
                    cells += ["n/a", "n/a"]
                    continue
                b = bootstrap_f1(mine, theirs, samples=samples)
                cells += [f"{b['value']:+.2f}", f"[{b['low']:+.2f}, {b['high']:+.2f}]"]
            lines.append(f"| {r.name} | {ref} | {seed} | " + " | ".join(cells) + " |")
    lines += ["", "Mean paired difference over the seeds both rows have (the documents "
              "resampled once for all seeds; 95% interval):", "",
              "| row | vs | seeds | dev mean diff | dev 95% | test mean diff | test 95% |",
              "|---|---|---|---|---|---|---|"]
    for r in study.rows:
        ref = study.reference(r.name)
        seeds = [s for s in study.seeds if (r.name, s) in counts and (ref, s) in counts]
        if r.name == ref or not seeds:
            continue
        cells = []
        for split in SPLITS:
            pairs = paired_counts(study, counts, r.name, split)
            if not pairs:
                cells += ["n/a", "n/a"]
                continue
            b = bootstrap_mean_difference(pairs, samples=samples)
            cells += [f"{b['value']:+.2f}", f"[{b['low']:+.2f}, {b['high']:+.2f}]"]
        lines.append(f"| {r.name} | {ref} | {len(seeds)} | " + " | ".join(cells) + " |")
    lines += seed_spread_table(study, counts)
    lines += infer_table(study, infer)
    lines += lever_decisions(study, counts, samples)
    lines += non_inferiority_decisions(study, counts, samples)
    return "\n".join(lines) + "\n"


def seed_interval(diffs: list[float]) -> dict[str, float]:
    """Mean of per-seed paired differences with its sample sd and the Student-t 95% interval of
    the mean (``n - 1`` degrees of freedom): the uncertainty from the training seed, which the
    document bootstrap holds fixed. ``sd``/``low``/``high`` are NaN below two seeds."""
    from scipy.stats import t as student_t
    values = np.asarray(diffs, dtype=np.float64)
    mean, n = float(values.mean()), values.size
    if n < 2:
        return {"value": mean, "sd": float("nan"), "low": float("nan"), "high": float("nan")}
    sd = float(values.std(ddof=1))
    half = float(student_t.ppf(0.975, n - 1)) * sd / np.sqrt(n)
    return {"value": mean, "sd": sd, "low": mean - half, "high": mean + half}


def seed_spread_table(study, counts: dict) -> list[str]:
    """Each row's paired differences seed by seed, with :func:`seed_interval` (for reading
    next to the bootstrap; no decision rule uses it)."""
    lines = ["", "The same mean differences against the training seeds (each seed's difference "
             "on all documents; sd over seeds; Student-t 95% interval of the mean, n - 1 "
             "degrees of freedom). The document bootstrap above holds the seeds fixed; this "
             "interval holds the documents fixed. No decision rule uses it:", "",
             "| row | vs | seeds | dev diffs | dev sd | dev t 95% | test diffs | test sd | "
             "test t 95% |", "|---|---|---|---|---|---|---|---|---|"]
    for r in study.rows:
        ref = study.reference(r.name)
        if r.name == ref:
            continue
        cells, seeds = [], 0
        for split in SPLITS:
            diffs = [mine.f1() - theirs.f1()
                     for mine, theirs in paired_counts(study, counts, r.name, split)]
            if not diffs:
                cells += ["n/a"] * 3
                continue
            seeds = max(seeds, len(diffs))
            b = seed_interval(diffs)
            spread = "n/a" if np.isnan(b["sd"]) else f"{b['sd']:.2f}"
            interval = ("n/a" if np.isnan(b["low"])
                        else f"[{b['low']:+.2f}, {b['high']:+.2f}]")
            cells += [", ".join(f"{d:+.2f}" for d in diffs), spread, interval]
        if seeds:
            lines.append(f"| {r.name} | {ref} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def lever_decisions(study, counts: dict, samples: int) -> list[str]:
    """The study's ``levers`` judged by the selection rule fixed before the lever runs were read
    (experiments/results/redocred_cpu_fidelity.md): a lever is adopted when the mean paired
    dev F1 gain of its rows over their references, pooled over every seed and every row of the
    lever (both models for a lever that has an ATLOP row), has a document-bootstrap 95% interval
    above 0. It is decided only when every (row, seed) of the lever and its references is done;
    test F1 plays no part. A lever the study file lists as ``withdrawn`` (stopped before all its
    pairs were run) is not adopted, whatever its pairs so far; its reason is printed under the
    table."""
    if not study.levers:
        return []
    lines = ["", "Lever decisions on dev F1 (the rule: adopt when the 95% interval of the mean "
             "paired dev gain, pooled over all seeds and rows of the lever, lies above 0; "
             "decided once every seed of every row is done; test plays no part):", "",
             "| lever | rows | pairs | dev mean gain | dev 95% | decision |",
             "|---|---|---|---|---|---|"]
    withdrawn = dict(study.withdrawn)
    for lever, rows in study.levers:
        pairs = [pair for row in rows for pair in paired_counts(study, counts, row, "dev")]
        total = len(rows) * len(study.seeds)
        cells = ["n/a", "n/a"]
        decision = f"pending ({len(pairs)} of {total} pairs)"
        if pairs:
            b = bootstrap_mean_difference(pairs, samples=samples)
            cells = [f"{b['value']:+.2f}", f"[{b['low']:+.2f}, {b['high']:+.2f}]"]
            if len(pairs) == total:
                decision = "adopt" if b["low"] > 0 else "not adopted"
        if lever in withdrawn:
            decision = f"withdrawn at {len(pairs)} of {total} pairs: not adopted"
        lines.append(f"| {lever} | {', '.join(rows)} | {len(pairs)} | " + " | ".join(cells)
                     + f" | {decision} |")
    if withdrawn:
        lines += ["", "Withdrawn levers (the study file's `withdrawn`: why each was stopped "
                  "before all its pairs ran):", ""]
        lines += [f"- `{lever}`: {reason}" for lever, reason in study.withdrawn]
    return lines


def non_inferiority_decisions(study, counts: dict, samples: int) -> list[str]:
    """The study's ``non_inferiority`` settings judged by their rule (fixed in the study file
    before the runs were read): a setting is adopted when, for EACH of its rows, the mean paired
    F1 difference to the row's reference over all seeds (on the setting's split) is above
    ``-margin`` and its document-bootstrap 95% interval reaches 0 (upper end >= 0). It is decided
    only when every seed of every row and reference is done."""
    if not study.non_inferiority:
        return []
    lines = ["", "Non-inferiority decisions (the rule: adopt a setting when for every one of its "
             "rows the mean paired difference over all seeds is above -margin and its 95% "
             "interval reaches 0; decided once every seed of every row is done):", "",
             "| setting | row | vs | split | seeds | mean diff | 95% | margin | row holds | "
             "decision |", "|---|---|---|---|---|---|---|---|---|---|"]
    for spec in study.non_inferiority:
        verdicts, rows = [], []
        for row in spec.rows:
            ref = study.reference(row)
            pairs = paired_counts(study, counts, row, spec.split)
            cells, holds = ["n/a", "n/a"], f"pending ({len(pairs)} of {len(study.seeds)} seeds)"
            if pairs:
                b = bootstrap_mean_difference(pairs, samples=samples)
                cells = [f"{b['value']:+.2f}", f"[{b['low']:+.2f}, {b['high']:+.2f}]"]
                if len(pairs) == len(study.seeds):
                    holds = "yes" if b["value"] > -spec.margin and b["high"] >= 0 else "no"
            verdicts.append(holds)
            rows.append([row, ref, spec.split, str(len(pairs)), *cells, f"{spec.margin:g}",
                         holds])
        if all(v == "yes" for v in verdicts):
            decision = "adopt"
        elif "no" in verdicts:
            decision = "not adopted"
        else:
            decision = "pending"
        for cells in rows:
            lines.append(f"| {spec.setting} | " + " | ".join(cells) + f" | {decision} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="a study file (experiments/studies/*.yaml)")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    try:
        study = study_lib.load_study(args.study)
    except study_lib.StudyError as err:
        print(f"study_noise: error: {err}", file=sys.stderr)
        return 2
    shown = [study_lib.display_path(Path(args.study).resolve(), study.base_dir)]
    if args.samples != 2000:
        shown += ["--samples", str(args.samples)]
    command = shlex.join(["python", "experiments/study_noise.py", *shown])
    path = study.summary_path("_noise.md")
    atomic_write_text(path, noise_markdown(study, command, samples=args.samples))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
