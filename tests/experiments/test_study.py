"""experiments/study.py: the study file's checks, the run order, the summary, --verify, and one
real two-run study with the `smoke` config."""
import gzip
import importlib.util
import json
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pyg_docre.metrics import write_result

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "study.py"


@pytest.fixture(scope="module")
def study_mod():
    spec = importlib.util.spec_from_file_location("study_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module      # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def write_study(tmp_path, rows=None, seeds=(66, 67, 68), name="study.yaml", **extra):
    values = {"protocol": "test-protocol", "seeds": list(seeds),
              "output": str(tmp_path / "results" / "study"),
              "runs_dir": str(tmp_path / "runs"),
              "rows": rows if rows is not None else [
                  {"name": "full", "config": "smoke", "overrides": []},
                  {"name": "atlop", "config": "smoke", "overrides": ["model.baseline=true"]},
                  {"name": "no_kd", "config": "smoke",
                   "overrides": ["objectives.distillation=none"]}]}
    values.update(extra)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


# ------------------------------------------------------------------------ the study file

def test_the_packaged_study_file_is_valid(study_mod):
    study = study_mod.load_study(ROOT / "experiments" / "studies" / "redocred_cpu.yaml")
    assert study.protocol == "redocred-cpu" and study.seeds == (66, 67, 68)
    names = [r.name for r in study.rows]
    table3 = ["full", "atlop", "no_sakd", "sakd_to_kd", "sakd_raw", "no_reconstruction",
              "no_cross_local", "no_cross_global", "no_cross_attention", "no_global_head",
              "self_attention"]
    assert names == table3 + ["full_8_epochs", "atlop_8_epochs"]
    assert study.row("sakd_to_kd").overrides == ("training.epochs=12",
                                                 "objectives.distillation=kd",
                                                 "objectives.student_projection=false")
    # The study's schedule is the lever study's 12 epochs for every row it compares; the
    # packaged configs' 8 only in the history rows.
    assert all(study.row(n).overrides[0] == "training.epochs=12" for n in table3)
    assert all(study.row(n).overrides == ("training.epochs=8",)
               for n in ("full_8_epochs", "atlop_8_epochs"))
    assert study.reference("atlop_8_epochs") == "full_8_epochs"
    assert study.output == ROOT / "experiments" / "results" / "redocred_cpu_study"
    assert study.runs_dir == ROOT / "runs" / "study" / "redocred_cpu"


@pytest.mark.parametrize("path", sorted((ROOT / "experiments" / "studies").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_study_pairs_rows_with_references_made_alike(study_mod, path):
    """A row and the row it is compared with train at the same precision and encoder padding,
    unless the study compares exactly that (its non_inferiority rows); so a lever's gain is
    never a precision or padding difference in disguise. Reference rows themselves (full_bf16 in
    the lever study) are skipped: their own gap to full is shown, not used."""
    study = study_mod.load_study(path)
    compared = {row for spec in study.non_inferiority for row in spec.rows}
    references = {study.reference(r.name) for r in study.rows}
    for r in study.rows:
        ref = study.reference(r.name)
        if ref == r.name or r.name in compared or r.name in references:
            continue
        mine, theirs = (study_mod._wanted_config(study, name, 66) for name in (r.name, ref))
        assert mine.training.precision == theirs.training.precision, (path.name, r.name, ref)
        assert mine.model.encoder_max_padding == theirs.model.encoder_max_padding, \
            (path.name, r.name, ref)


@pytest.mark.parametrize("change, expected", [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"seeds": []}, "seeds: expected a non-empty list"),
    ({"seeds": [66, 66]}, "seeds: a seed is listed twice"),
    ({"seeds": ["66"]}, "seeds: expected a non-empty list of integers"),
    ({"protocol": 3}, "protocol: expected a non-empty string"),
    ({"rows": []}, "rows: expected a non-empty list"),
    ({"rows": [{"name": "a", "config": "smoke", "extra": 1}]}, "rows[0]: unknown key 'extra'"),
    ({"rows": [{"config": "smoke"}]}, "rows[0]: name: required"),
    ({"rows": [{"name": "a"}]}, "rows[0]: config: required"),
    ({"rows": [{"name": "a/b", "config": "smoke"}]}, "rows[0]: name: 'a/b' is not a folder"),
    ({"rows": [{"name": "a", "config": "smoke"}, {"name": "a", "config": "smoke"}]},
     "rows[1]: name: 'a' is used by an earlier row"),
    ({"rows": [{"name": "a", "config": "no_such_config"}]}, "rows[0] (a): config:"),
    ({"rows": [{"name": "a", "config": "smoke", "overrides": "x=1"}]},
     "rows[0] (a): overrides: expected a list"),
    ({"rows": [{"name": "a", "config": "smoke", "overrides": ["training.seed=1"]}]},
     "set by the study's seeds"),
    # a typo in an override is caught before anything runs
    ({"rows": [{"name": "ok", "config": "smoke"},
               {"name": "typo", "config": "smoke", "overrides": ["model.gtn.cross_locl=false"]}]},
     "rows[1] (typo): overrides:"),
    ({"rows": [{"name": "a", "config": "smoke", "overrides": ["objectives.distillation=kld"]}]},
     "objectives.distillation: 'kld' is not one of"),
    ({"rows": [{"name": "a", "config": "smoke", "overrides": ["training.epochs"]}]},
     "expected key=value"),
])
def test_study_file_errors_name_file_and_field(study_mod, tmp_path, change, expected):
    path = write_study(tmp_path, **change) if "rows" not in change else write_study(
        tmp_path, rows=change["rows"], **{k: v for k, v in change.items() if k != "rows"})
    with pytest.raises(study_mod.StudyError) as info:
        study_mod.load_study(path)
    assert str(path) in str(info.value) and expected in str(info.value), str(info.value)


def test_missing_field_and_missing_file(study_mod, tmp_path):
    path = write_study(tmp_path)
    values = yaml.safe_load(path.read_text())
    del values["runs_dir"]
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(study_mod.StudyError, match=r"study.yaml: runs_dir: required"):
        study_mod.load_study(path)
    with pytest.raises(study_mod.StudyError, match="no such study file"):
        study_mod.load_study(tmp_path / "absent.yaml")


def test_bad_override_fails_fast_from_the_command_line(study_mod, tmp_path, capsys):
    path = write_study(tmp_path, rows=[
        {"name": "full", "config": "smoke"},
        {"name": "bad", "config": "smoke", "overrides": ["training.epoch=2"]}])
    assert study_mod.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "rows[1] (bad)" in err and "training.epoch" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()
    assert study_mod.main([str(write_study(tmp_path)), "--rows", "nope", "--dry-run"]) == 2
    assert "--rows: nope not in" in capsys.readouterr().err
    assert study_mod.main([str(write_study(tmp_path)), "--seeds", "1", "--dry-run"]) == 2
    assert study_mod.main([str(write_study(tmp_path)), "--parallel", "0"]) == 2


# ------------------------------------------------------------------------ fabricated results

def fake_metrics(f1, *, ign=None, dev=None, device="cpu", commit="abc123", seed=66,
                 modified=None):
    test = {"precision": f1 + 10, "recall": f1 - 10, "f1": f1,
            "ign_f1": f1 - 0.5 if ign is None else ign, "intra_f1": f1 + 2, "inter_f1": f1 - 2}
    dev_scores = dict(test, f1=f1 - 3 if dev is None else dev)
    environment = {"git_commit": commit, "device": device, "seed": seed, "world_size": 1,
                   "versions": {}}
    if modified is not None:
        environment["git_modified"] = modified
    return {"name": "x", "dev": dev_scores, "test": test, "environment": environment}


def resolved_config_yaml(study, row, seed):
    from pyg_docre.config import load_config
    r = study.row(row)
    config = load_config(r.config_path, [*r.overrides, f"training.seed={seed}"])
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def _fake_outputs(folder, study, row, seed, metrics, result_suffix):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    for split in ("dev", "test"):
        write_result([], folder / f"result_{split}{result_suffix}")
    (folder / "config.yaml").write_text(resolved_config_yaml(study, row, seed))


def fake_done(study, row, seed, metrics):
    """A results folder as the runner leaves it (predictions gzip-compressed)."""
    _fake_outputs(study.result_dir(row, seed), study, row, seed, metrics, ".json.gz")


def fake_complete_run(study, row, seed, metrics):
    """A complete run folder (not yet collected)."""
    folder = study.run_dir(row, seed)
    _fake_outputs(folder, study, row, seed, metrics, ".json")
    (folder / "run_state.json").write_text(json.dumps({"state": "complete"}))


def test_order_is_seed_major_and_skips_done_runs(study_mod, tmp_path):
    study = study_mod.load_study(write_study(tmp_path))
    plan = study_mod.plan_runs(study)
    assert plan == [("full", 66), ("atlop", 66), ("no_kd", 66), ("full", 67), ("atlop", 67),
                    ("no_kd", 67), ("full", 68), ("atlop", 68), ("no_kd", 68)]
    fake_done(study, "atlop", 66, fake_metrics(50.0))
    # an incomplete results folder (no result_test.json.gz) is not done
    fake_done(study, "full", 67, fake_metrics(50.0))
    (study.result_dir("full", 67) / "result_test.json.gz").unlink()
    assert study_mod.plan_runs(study)[:4] == [("full", 66), ("no_kd", 66), ("full", 67),
                                              ("atlop", 67)]
    # the selection keeps the study's order, whatever the order given
    assert study_mod.plan_runs(study, rows=["no_kd", "full"], seeds=[68, 66]) == [
        ("full", 66), ("no_kd", 66), ("full", 68), ("no_kd", 68)]


def test_results_of_an_edited_row_are_neither_mixed_nor_replaced(study_mod, tmp_path):
    study = study_mod.load_study(write_study(tmp_path))
    fake_done(study, "no_kd", 66, fake_metrics(50.0))
    # a config saved by an older version (no training.device, etc.) is still up to date
    stored = yaml.safe_load((study.result_dir("no_kd", 66) / "config.yaml").read_text())
    del stored["training"]["device"]
    stored["training"]["num_workers"] = 3             # where it ran does not matter
    (study.result_dir("no_kd", 66) / "config.yaml").write_text(yaml.safe_dump(stored))
    assert study_mod.stale_keys(study, "no_kd", 66) == []
    assert ("no_kd", 66) not in study_mod.plan_runs(study)
    # the row is edited after its results were made
    edited = write_study(tmp_path, rows=[
        {"name": "full", "config": "smoke", "overrides": []},
        {"name": "no_kd", "config": "smoke",
         "overrides": ["objectives.distillation=none", "objectives.alpha=0.5"]}])
    study = study_mod.load_study(edited)
    assert study_mod.stale_keys(study, "no_kd", 66) == ["objectives.alpha"]
    with pytest.raises(study_mod.StudyError, match=r"no_kd/66 \(differs in objectives.alpha\)"):
        study_mod.plan_runs(study)
    assert study.is_done("no_kd", 66)                 # nothing was deleted


def test_train_command_resumes_in_the_run_folder(study_mod, tmp_path):
    study = study_mod.load_study(write_study(tmp_path))
    cmd = study_mod.train_command(study, "atlop", 67, device="cpu")
    assert cmd[1:5] == ["-m", "pyg_docre", "train", "--config"] and cmd[5] == "smoke"
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    assert sets == ["model.baseline=true", "training.seed=67", "training.device=cpu"]
    assert cmd[cmd.index("--output") + 1] == str(tmp_path / "runs" / "atlop" / "67")
    assert cmd[-1] == "--resume"


def test_collect_copies_only_complete_runs(study_mod, tmp_path):
    study = study_mod.load_study(write_study(tmp_path))
    fake_complete_run(study, "full", 66, fake_metrics(55.0))
    (study.run_dir("full", 66) / "run_state.json").write_text('{"state": "running"}')
    assert not study_mod.collect_run(study, "full", 66) and not study.is_done("full", 66)
    (study.run_dir("full", 66) / "run_state.json").write_text('{"state": "complete"}')
    assert study_mod.collect_run(study, "full", 66) and study.is_done("full", 66)
    copied = sorted(p.name for p in study.result_dir("full", 66).iterdir())
    assert copied == ["config.yaml", "metrics.json", "result_dev.json.gz", "result_test.json.gz"]
    # the predictions are stored compressed, byte for byte the run's files inside
    run, results = study.run_dir("full", 66), study.result_dir("full", 66)
    for split in ("dev", "test"):
        assert gzip.decompress((results / f"result_{split}.json.gz").read_bytes()) == (
            run / f"result_{split}.json").read_bytes()
        assert study_mod.result_file(results, split) == results / f"result_{split}.json.gz"


def md_table(md: str, header: str) -> dict:
    """The Markdown table whose header starts with ``header``: {first cell: [cells]}."""
    lines = md.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(header))
    table = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.split("|")[1:-1]]
        table[cells[0]] = cells
    return table


def test_summary_json_and_markdown(study_mod, tmp_path, capsys):
    path = write_study(tmp_path)
    study = study_mod.load_study(path)
    full = {66: 56.0, 67: 57.0, 68: 55.0}
    for seed, f1 in full.items():
        fake_done(study, "full", seed, fake_metrics(f1, seed=seed))
    fake_done(study, "atlop", 68, fake_metrics(54.0, seed=68, device="cuda:0",
                                               commit="def456-dirty"))
    fake_done(study, "atlop", 66, fake_metrics(53.5, ign=53.0, dev=51.0, seed=66,
                                               commit="abc123-dirty",
                                               modified=["experiments/results/x.md"]))
    fake_done(study, "atlop", 67, fake_metrics(53.0, seed=67, commit="abc123-dirty",
                                               modified=["benchmarks/results/a.md",
                                                         "pyg_docre/nn/gtn.py"]))
    # a complete run folder not yet collected is collected by --summary-only
    fake_complete_run(study, "no_kd", 67, fake_metrics(56.25, seed=67))
    assert study_mod.main([str(path), "--summary-only"]) == 0

    summary = json.loads(study.summary_path(".json").read_text())
    assert summary == {"protocol": "test-protocol", "rows": [
        {"name": "full", "config": "smoke", "overrides": [], "seeds": [66, 67, 68],
         "test_f1": [56.0, 57.0, 55.0], "test_ign_f1": [55.5, 56.5, 54.5],
         "dev_f1": [53.0, 54.0, 52.0]},
        {"name": "atlop", "config": "smoke", "overrides": ["model.baseline=true"],
         "seeds": [66, 67, 68], "test_f1": [53.5, 53.0, 54.0],
         "test_ign_f1": [53.0, 52.5, 53.5], "dev_f1": [51.0, 50.0, 51.0]},
        {"name": "no_kd", "config": "smoke", "overrides": ["objectives.distillation=none"],
         "seeds": [67], "test_f1": [56.25], "test_ign_f1": [55.75], "dev_f1": [53.25]}]}

    md = study.summary_path(".md").read_text()
    rows = md_table(md, "| row | config |")
    # headline table: n, P, R, F1, Ign F1, intra, inter, dev F1
    assert rows["full"][3] == "3"
    assert rows["full"][6] == f"56.00 ± {statistics.stdev([56, 57, 55]):.2f}" == "56.00 ± 1.00"
    assert rows["full"][4] == "66.00 ± 1.00" and rows["full"][10] == "53.00 ± 1.00"
    assert rows["no_kd"][3] == "1" and rows["no_kd"][6] == "56.25 ± n/a"
    assert "python experiments/study.py " + str(path) + " --summary-only" in md
    assert "test-protocol" in md
    assert "different devices" in md and "`cuda:0`" in md and "`cpu`" in md
    assert "`abc123`" in md and "`def456-dirty`: 1 run(s) (atlop/68)" in md
    # uncommitted changes: code (or not recorded) is a warning naming the runs and files;
    # changes to result files alone are a note
    assert ("uncommitted changes** (abc123-dirty, def456-dirty): their code is not exactly the "
            "commit, or was not recorded: atlop/67 (pyg_docre/nn/gtn.py); "
            "atlop/68 (files not recorded).") in md
    assert ("1 run(s) from a `-dirty` checkout whose only uncommitted changes were results "
            "(experiments/results/, benchmarks/results/), so with the commit's code: "
            "atlop/66.") in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in md
    else:
        assert study.summary_path(".png").read_bytes()[:4] == b"\x89PNG"


def test_gap_table_pairs_seeds(study_mod, tmp_path):
    summary = {"protocol": "p", "rows": [
        {"name": "full", "seeds": [66, 67, 68], "test_f1": [56.0, 57.0, 55.0]},
        {"name": "atlop", "seeds": [66, 68], "test_f1": [53.5, 54.0]},
        {"name": "no_kd", "seeds": [67], "test_f1": [56.25]},
        {"name": "none", "seeds": [], "test_f1": []}]}
    gaps = {g["name"]: g for g in study_mod.gap_table(summary, [66, 67, 68])}
    assert set(gaps) == {"atlop", "no_kd", "none"}
    assert gaps["atlop"]["gaps"] == {66: -2.5, 68: -1.0}
    assert gaps["atlop"]["mean"] == pytest.approx(-1.75)
    assert gaps["no_kd"]["gaps"] == {67: -0.75} and gaps["no_kd"]["mean"] == -0.75
    assert gaps["none"]["gaps"] == {} and gaps["none"]["mean"] is None
    assert study_mod.gap_table({"rows": summary["rows"][1:]}, [66]) == []
    # and in the markdown
    study = study_mod.load_study(write_study(tmp_path))
    for seed, f1 in {66: 56.0, 67: 57.0, 68: 55.0}.items():
        fake_done(study, "full", seed, fake_metrics(f1))
    fake_done(study, "atlop", 66, fake_metrics(53.5))
    fake_done(study, "atlop", 68, fake_metrics(54.0))
    md = study_mod.summary_markdown(study, "cmd")
    test_part, dev_part = md.split("Paired gap in test F1")[1].split("Paired gap in dev F1")
    gaps = md_table(test_part, "| row | vs | seed 66 |")
    assert gaps["atlop"][1:] == ["full", "-2.50", "n/a", "-1.00", "-1.75", "2"]
    assert gaps["no_kd"][1:] == ["full", "n/a", "n/a", "n/a", "n/a", "0"] and "full" not in gaps
    # dev F1 of fake_metrics is test F1 - 3, so the dev gaps equal the test gaps here
    assert md_table(dev_part, "| row | vs | seed 66 |")["atlop"][2:] == gaps["atlop"][2:]
    assert "different devices" not in md and "uncommitted" not in md


def test_rows_can_be_compared_with_another_row(study_mod, tmp_path):
    """A lever of the baseline is compared with the baseline (compare_to), on dev and test."""
    rows = [{"name": "full", "config": "smoke"},
            {"name": "atlop", "config": "smoke", "overrides": ["model.baseline=true"]},
            {"name": "atlop_lever", "config": "smoke", "compare_to": "atlop",
             "overrides": ["model.baseline=true", "training.decay_bias_and_norm=false"]}]
    study = study_mod.load_study(write_study(tmp_path, rows=rows, seeds=[66]))
    assert study.row("atlop_lever").compare_to == "atlop" and study.row("atlop").compare_to is None
    fake_done(study, "full", 66, fake_metrics(56.0, dev=50.0))
    fake_done(study, "atlop", 66, fake_metrics(55.0, dev=48.0))
    fake_done(study, "atlop_lever", 66, fake_metrics(55.5, dev=49.25))
    md = study_mod.summary_markdown(study, "cmd")
    test_part, dev_part = md.split("Paired gap in test F1")[1].split("Paired gap in dev F1")
    test_gaps = md_table(test_part, "| row | vs |")
    dev_gaps = md_table(dev_part, "| row | vs |")
    assert test_gaps["atlop"][1:3] == ["full", "-1.00"]
    assert test_gaps["atlop_lever"][1:3] == ["atlop", "+0.50"]
    assert dev_gaps["atlop"][1:3] == ["full", "-2.00"]
    assert dev_gaps["atlop_lever"][1:3] == ["atlop", "+1.25"]
    for bad, message in ((dict(rows[2], compare_to="nope"), "compare_to: 'nope' is not a row"),
                         (dict(rows[2], compare_to="atlop_lever"), "compare_to: expected")):
        with pytest.raises(study_mod.StudyError, match=message):
            study_mod.load_study(write_study(tmp_path, rows=[*rows[:2], bad], seeds=[66]))


def test_failed_run_is_reported_and_the_others_go_on(study_mod, tmp_path, monkeypatch, capsys):
    """A run that fails does not stop the study; its log is named, the exit status is 1."""
    path = write_study(tmp_path, seeds=[66])
    study = study_mod.load_study(path)
    started = []

    def fake_run_one(study_, row, seed, cmd, env, processes):
        started.append((row, seed))
        if row == "atlop":
            return 3
        fake_complete_run(study_, row, seed, fake_metrics(50.0))
        return 0

    monkeypatch.setattr(study_mod, "_run_one", fake_run_one)
    assert study_mod.main([str(path)]) == 1
    assert started == [("full", 66), ("atlop", 66), ("no_kd", 66)]
    err = capsys.readouterr().err
    assert "atlop/66 failed (exit status 3)" in err
    assert str(study.run_dir("atlop", 66) / "study.log") in err
    assert study.is_done("full", 66) and study.is_done("no_kd", 66)
    assert json.loads(study.summary_path(".json").read_text())["rows"][0]["seeds"] == [66]
    # a second sitting runs only what is left; --max-runs 0 runs nothing
    started.clear()
    assert study_mod.main([str(path), "--max-runs", "0"]) == 0 and started == []
    assert study_mod.main([str(path)]) == 1 and started == [("atlop", 66)]


CHILD = """import os, sys, time
open(sys.argv[1], "a").write(f"{os.getpid()}\\n")
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_runner_stops_its_training_process_and_starts_no_other(
        study_mod, tmp_path, monkeypatch, capsys, signum):
    """Stopping the runner ends the training process it started (it does not go on training
    unattended) and starts none of the queued runs; the stopped run is named, the exit status
    is 128 + the signal, and the runner's signal handlers are put back."""
    path = write_study(tmp_path, seeds=[66])
    study = study_mod.load_study(path)
    pid_file = tmp_path / "started.txt"
    # a child that sleeps longer than the test may take: if the stop did not reach it, the
    # runner would wait for it and the test would fail on the exit status, not hang for long
    monkeypatch.setattr(study_mod, "train_command", lambda study_, row, seed, device=None:
                        [sys.executable, "-c", CHILD, str(pid_file), "20"])

    def stop_once_started():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (pid_file.exists()
                                                    and pid_file.read_text().strip()):
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    def not_the_runner(signum_, frame):     # a runner without its handler fails, not pytest
        raise RuntimeError("SIGTERM reached the test's handler, not the runner's")

    # SIGINT as in an interactive session (a job started with `&` inherits it ignored)
    sigint_before = signal.signal(signal.SIGINT, signal.default_int_handler)
    handler_before = signal.signal(signal.SIGTERM, not_the_runner)
    stopper = threading.Thread(target=stop_once_started, daemon=True)
    stopper.start()
    started = time.monotonic()
    try:
        assert study_mod.main([str(path)]) == 128 + signum
    finally:
        handler_in_test = signal.signal(signal.SIGTERM, handler_before)
        signal.signal(signal.SIGINT, sigint_before)
    assert time.monotonic() - started < 15
    stopper.join()
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 1                                # atlop and no_kd never started
    with pytest.raises(ProcessLookupError):              # ended and reaped
        os.kill(pids[0], 0)
    out, err = capsys.readouterr()
    assert "stopped full/66" in out and str(study.run_dir("full", 66) / "study.log") in out
    assert f"stopped by {signal.Signals(signum).name}" in err
    assert not study.run_dir("atlop", 66).exists() and not study.is_done("full", 66)
    assert handler_in_test is not_the_runner


def test_a_runner_under_nohup_is_not_stopped_by_a_hangup(study_mod):
    """SIGHUP ignored on entry (nohup) stays ignored; SIGTERM is the runner's."""
    before = {s: signal.signal(s, h) for s, h in ((signal.SIGHUP, signal.SIG_IGN),
                                                   (signal.SIGTERM, signal.SIG_DFL))}
    try:
        with study_mod._interrupt_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_training_processes_start_none_once_stopped(study_mod, tmp_path):
    processes = study_mod.TrainingProcesses()
    assert processes.stop() == []
    assert processes.start(("full", 66), [sys.executable, "-c", "pass"]) is None


# ------------------------------------------------------------------------ real runs

SMOKE_OVERRIDES = ["training.max_steps_per_epoch=1", "data.train.docs=0:4",
                   "data.dev.docs=450:452", "data.test.docs=0:2"]


def test_study_end_to_end_with_smoke(study_mod, tmp_path, redocred_test_path, rel2id_path,
                                     capsys):
    """Two real smoke runs at once through subprocesses, the summary, and --verify (which
    notices a tampered score)."""
    path = write_study(tmp_path, seeds=[66], rows=[
        # the GTN model without the auxiliary objectives: the cheapest real runs
        {"name": "full", "config": "smoke", "overrides": SMOKE_OVERRIDES + [
            "objectives.distillation=none", "objectives.reconstruction=false"]},
        {"name": "atlop", "config": "smoke",
         "overrides": SMOKE_OVERRIDES + ["model.baseline=true"]}])
    assert study_mod.main([str(path), "--parallel", "2", "--device", "cpu"]) == 0, \
        capsys.readouterr()
    study = study_mod.load_study(path, device="cpu")
    for row in ("full", "atlop"):
        assert study.is_done(row, 66)
        run = study.run_dir(row, 66)
        assert "pyg_docre train" in (run / "study.log").read_text()
        assert (run / "checkpoint" / "model.safetensors").is_file()
        metrics = json.loads((study.result_dir(row, 66) / "metrics.json").read_text())
        assert metrics["environment"]["device"] == "cpu"
        assert "--resume" in metrics["command"]
    saved = yaml.safe_load((study.result_dir("atlop", 66) / "config.yaml").read_text())
    assert saved["model"]["baseline"] is True and saved["training"]["seed"] == 66
    summary = json.loads(study.summary_path(".json").read_text())
    assert [r["seeds"] for r in summary["rows"]] == [[66], [66]]

    capsys.readouterr()
    assert study_mod.main([str(path), "--verify"]) == 0
    assert "verified 2 run(s): 0 mismatch(es)" in capsys.readouterr().out
    # nothing left to run
    assert study_mod.main([str(path), "--device", "cpu"]) == 0
    assert "nothing to run" in capsys.readouterr().out

    # --verify catches a tampered number and names the file and the field
    metrics_path = study.result_dir("full", 66) / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["test"]["ign_f1"] += 0.01
    metrics_path.write_text(json.dumps(metrics))
    assert study_mod.main([str(path), "--verify"]) == 1
    err = capsys.readouterr().err
    assert f"{metrics_path}: test.ign_f1: stored" in err and "atlop" not in err
    metrics["test"]["ign_f1"] -= 0.01
    metrics_path.write_text(json.dumps(metrics))
    cache = {}
    assert study_mod.verify_run(study.result_dir("full", 66), ROOT, cache) == []
    # ... and a tampered prediction file: the gold facts score 100, not what the model scored
    test_docs = json.loads(redocred_test_path.read_text())[0:2]
    write_result([{"title": d["title"], "h_idx": l["h"], "t_idx": l["t"], "r": l["r"]}
                  for d in test_docs for l in d["labels"]],
                 study.result_dir("full", 66) / "result_test.json.gz")
    assert study_mod.rescore_run(study.result_dir("full", 66), ROOT, cache)["test"]["f1"] == 100
    problems = study_mod.verify_run(study.result_dir("full", 66), ROOT, cache)
    assert any(p.startswith(f"{metrics_path}: test.f1: stored") for p in problems), problems


def test_threads_per_run(study_mod, monkeypatch):
    """--parallel N gives each run cpu_count // N threads (at least 1) unless the user set it."""
    monkeypatch.setattr(study_mod.os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert study_mod._child_env(2)["OMP_NUM_THREADS"] == "4"
    assert study_mod._child_env(16)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    env = study_mod._child_env(2)
    assert env["OMP_NUM_THREADS"] == "3"
    assert env["PYTHONPATH"].split(study_mod.os.pathsep)[0] == str(ROOT)


# ------------------------------------------------------------------------ reuse across studies

def _sibling_study(tmp_path, name, rows, seeds=(66,)):
    """A study whose results folder sits beside the others in tmp_path/results/."""
    return write_study(tmp_path, rows=rows, seeds=seeds, name=f"{name}.yaml",
                       output=str(tmp_path / "results" / name),
                       runs_dir=str(tmp_path / "runs" / name))


def test_a_run_done_by_another_study_is_reused_not_rerun(study_mod, tmp_path, capsys):
    full = {"name": "full", "config": "smoke", "overrides": []}
    atlop = {"name": "atlop", "config": "smoke", "overrides": ["model.baseline=true"]}
    # (named "source": it sorts after "main", so the reuse order is tested, not the names)
    levers = study_mod.load_study(_sibling_study(tmp_path, "source", [full, atlop]))
    fake_done(levers, "full", 66, fake_metrics(55.0, device="cpu"))
    fake_done(levers, "atlop", 66, fake_metrics(53.0, device="cuda:0"))   # on another device
    # the main study names its rows differently; what counts is the config and the seed
    main_path = _sibling_study(tmp_path, "main", [
        {"name": "full_model", "config": "smoke", "overrides": []}, atlop,
        {"name": "no_kd", "config": "smoke", "overrides": ["objectives.distillation=none"]}])
    study = study_mod.load_study(main_path)
    assert study_mod.equivalent_result(study, "full_model", 66, "cpu") == \
        levers.result_dir("full", 66)
    assert study_mod.equivalent_result(study, "atlop", 66, "cpu") is None        # cuda run
    assert study_mod.equivalent_result(study, "atlop", 66, "cuda") == levers.result_dir("atlop", 66)
    assert study_mod.equivalent_result(study, "no_kd", 66, "cpu") is None        # other config

    assert study_mod.main([str(main_path), "--dry-run", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "would reuse full_model/66 <- " in out and "2 run(s) to do" in out
    assert not study.is_done("full_model", 66)                                # dry run: nothing

    plan = study_mod.plan_runs(study)
    assert study_mod.reuse_equivalent_runs(study, plan, "cpu", say=lambda _: None) == [
        ("full_model", 66)]
    assert study.is_done("full_model", 66)
    source, dest = levers.result_dir("full", 66), study.result_dir("full_model", 66)
    for name in ("metrics.json", "config.yaml", "result_dev.json.gz", "result_test.json.gz"):
        assert (dest / name).read_bytes() == (source / name).read_bytes()    # copied as is
    assert (dest / "reused_from.txt").read_text().strip() == str(source)
    assert study_mod.plan_runs(study) == [("atlop", 66), ("no_kd", 66)]
    # the reused results are this study's own from now on (its summary, --verify, stale checks)
    assert study_mod.stale_keys(study, "full_model", 66) == []

    # a third study takes the original run, not the copy the main study reused
    third = study_mod.load_study(_sibling_study(tmp_path, "third", [full]))
    assert study_mod.equivalent_result(third, "full", 66, "cpu") == levers.result_dir("full", 66)

    # --no-reuse runs everything here
    other = study_mod.load_study(_sibling_study(tmp_path, "other", [full]))
    assert study_mod.main([str(other.path), "--dry-run", "--no-reuse", "--device", "cpu"]) == 0
    assert "would reuse" not in capsys.readouterr().out


def test_gpu_study_has_the_cpu_study_rows(study_mod):
    """redocred_gpu.yaml repeats the CPU study on a GPU: the same rows, configs and overrides
    (its own full runs are the ablations' reference there), so the two stay comparable."""
    cpu = study_mod.load_study(ROOT / "experiments" / "studies" / "redocred_cpu.yaml")
    gpu = study_mod.load_study(ROOT / "experiments" / "studies" / "redocred_gpu.yaml")
    describe = lambda s: [(r.name, r.config, list(r.overrides)) for r in s.rows]
    assert describe(gpu) == describe(cpu) and gpu.seeds == cpu.seeds


def test_mean_sd_text_and_display_path(study_mod, tmp_path):
    # the two formatting helpers study_noise.py shares with study.py
    assert study_mod.mean_sd_text([]) == "n/a"
    assert study_mod.mean_sd_text([55.0]) == "55.00 ± n/a"
    assert study_mod.mean_sd_text([55.0, 57.0]) == f"56.00 ± {statistics.stdev([55.0, 57.0]):.2f}"
    assert study_mod.display_path(tmp_path / "a" / "b.yaml", tmp_path) == "a/b.yaml"
    outside = Path("/elsewhere/b.yaml")
    assert study_mod.display_path(outside, tmp_path) == str(outside)
