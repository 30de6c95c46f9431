"""experiments/study_noise.py: the document bootstrap of a study's done runs."""
import importlib.util
import sys
from pathlib import Path

import pytest

from pyg_docre.data import load_docred
from pyg_docre.metrics import write_result

from test_study import fake_done, fake_metrics, md_table, write_study

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def noise_mod():
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("study_noise_under_test",
                                                  ROOT / "experiments" / "study_noise.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _gold_predictions(path, docs, keep):
    """Predictions = the gold facts of the first ``keep`` of each document's labels."""
    gold = load_docred(ROOT / "datasets" / path)
    return [{"title": gold[i]["title"], "h_idx": lab["h"], "t_idx": lab["t"], "r": lab["r"]}
            for i in docs for lab in gold[i]["labels"][:keep]]


def _fake_run(study, row, seed, keep):
    """A done (row, seed) whose predictions are the first ``keep`` gold facts of each document
    (dev: 10 documents, test: 4)."""
    fake_done(study, row, seed, fake_metrics(50.0, seed=seed))
    folder = study.result_dir(row, seed)
    write_result(_gold_predictions("re-docred/dev_revised.json", range(450, 460), keep),
                 folder / "result_dev.json.gz")
    write_result(_gold_predictions("re-docred/test_revised.json", range(0, 4), keep),
                 folder / "result_test.json.gz")


def test_noise_table_of_a_study(noise_mod, tmp_path):
    study = noise_mod.study_lib.load_study(write_study(tmp_path, seeds=[66]))
    for row, keep in (("full", 100), ("atlop", 1)):
        fake_done(study, row, 66, fake_metrics(50.0))
        folder = study.result_dir(row, 66)
        write_result(_gold_predictions("re-docred/dev_revised.json", range(450, 454), keep),
                     folder / "result_dev.json.gz")
        write_result(_gold_predictions("re-docred/test_revised.json", range(0, 4), keep),
                     folder / "result_test.json.gz")
    md = noise_mod.noise_markdown(study, "cmd", samples=200)
    spread = md_table(md, "| row | seed | dev F1 |")
    assert spread["full"][2] == "100.00" and spread["full"][3] == "0.00"    # perfect everywhere
    assert 0 < float(spread["atlop"][2]) < 100 and float(spread["atlop"][3]) > 0
    paired = md_table(md, "| row | vs | seed |")
    assert paired["atlop"][1:3] == ["full", "66"]
    diff, interval = float(paired["atlop"][3]), paired["atlop"][4]
    assert diff == pytest.approx(float(spread["atlop"][2]) - 100.0, abs=0.01)
    low, high = (float(x) for x in interval.strip("[]").split(","))
    assert low <= diff <= high <= 0
    assert "no_kd" not in paired                      # not done
    pooled = md_table(md, "| row | vs | seeds |")
    assert pooled["atlop"][1:4] == ["full", "1", paired["atlop"][3]]   # one seed: the same


def test_lever_decisions_pool_rows_and_seeds(noise_mod, tmp_path):
    rows = [{"name": "full", "config": "smoke", "overrides": []},
            {"name": "atlop", "config": "smoke", "overrides": ["model.baseline=true"]},
            {"name": "better", "config": "smoke", "overrides": ["objectives.alpha=0.5"]},
            {"name": "atlop_better", "config": "smoke", "compare_to": "atlop",
             "overrides": ["model.baseline=true", "objectives.alpha=0.5"]},
            {"name": "worse", "config": "smoke", "overrides": ["objectives.alpha=0.2"]}]
    levers = {"better": ["better", "atlop_better"], "worse": ["worse"]}
    study = noise_mod.study_lib.load_study(write_study(tmp_path, rows=rows, seeds=[66, 67],
                                                       levers=levers))
    assert study.levers == (("better", ("better", "atlop_better")), ("worse", ("worse",)))
    keep = {"full": 2, "atlop": 2, "better": 100, "atlop_better": 100, "worse": 1}
    for row, k in keep.items():
        for seed in (66, 67):
            if row == "atlop_better" and seed == 67:
                continue                                  # one pair still missing
            _fake_run(study, row, seed, k)
    decisions = md_table(noise_mod.noise_markdown(study, "cmd", samples=200),
                         "| lever | rows | pairs |")
    assert decisions["better"][2] == "3" and decisions["better"][5] == "pending (3 of 4 pairs)"
    assert float(decisions["better"][3]) > 0
    assert decisions["worse"][2] == "2" and decisions["worse"][5] == "not adopted"
    assert float(decisions["worse"][3]) < 0
    # the missing pair done: the lever is decided
    _fake_run(study, "atlop_better", 67, 100)
    decisions = md_table(noise_mod.noise_markdown(study, "cmd", samples=200),
                         "| lever | rows | pairs |")
    assert decisions["better"][2] == "4" and decisions["better"][5] == "adopt"


def test_a_withdrawn_lever_is_not_adopted_and_its_runs_are_not_planned(noise_mod, tmp_path):
    """A lever stopped early (``withdrawn``) is never adopted, even with a positive gain so far;
    its reason is printed, and the runner plans none of its rows' remaining runs."""
    rows = [{"name": "full", "config": "smoke", "overrides": []},
            {"name": "better", "config": "smoke", "overrides": ["objectives.alpha=0.5"]}]
    study = noise_mod.study_lib.load_study(write_study(
        tmp_path, rows=rows, seeds=[66, 67], levers={"better": ["better"]},
        withdrawn={"better": "superseded by   another\nlever"}))
    assert study.withdrawn == (("better", "superseded by another lever"),)
    assert study.withdrawn_rows() == {"better": "better"}
    _fake_run(study, "full", 66, 2)
    _fake_run(study, "better", 66, 100)
    md = noise_mod.noise_markdown(study, "cmd", samples=200)
    decision = md_table(md, "| lever | rows | pairs |")["better"]
    assert float(decision[3]) > 0 and decision[5] == "withdrawn at 1 of 2 pairs: not adopted"
    assert "- `better`: superseded by another lever" in md
    plan = noise_mod.study_lib.plan_runs(study)
    assert plan == [("full", 67)]                         # not ("better", 67)
    with pytest.raises(noise_mod.study_lib.StudyError,
                       match="--rows: better belongs to the withdrawn lever better"):
        noise_mod.study_lib.plan_runs(study, rows=["better"])


@pytest.mark.parametrize("withdrawn,message", [
    ({"nope": "why"}, "withdrawn: 'nope' is not a lever"),
    ({"x": ""}, "withdrawn: x: expected the reason it was stopped"),
    ({"x": None}, "withdrawn: x: expected the reason it was stopped"),
    (["x"], "withdrawn: expected a mapping"),
])
def test_bad_withdrawn_names_the_field(noise_mod, tmp_path, withdrawn, message):
    with pytest.raises(noise_mod.study_lib.StudyError, match=message):
        noise_mod.study_lib.load_study(write_study(tmp_path, levers={"x": ["atlop"]},
                                                   withdrawn=withdrawn))


def test_infer_table_scores_each_run_against_its_test_split(noise_mod, tmp_path):
    """Infer P / R / F1 per row are the means of each run's infer_scores against the test split
    of its own config; the paired column is row minus reference, seed by seed."""
    from pyg_docre.metrics import infer_scores, read_result
    study = noise_mod.study_lib.load_study(write_study(tmp_path, seeds=[66, 67]))
    for seed in (66, 67):
        _fake_run(study, "full", seed, 100)
        _fake_run(study, "atlop", seed, 1 if seed == 66 else 2)
    expected = {}
    for row in ("full", "atlop"):
        for seed in (66, 67):
            folder = study.result_dir(row, seed)
            _, splits = noise_mod.study_lib.result_splits(folder, study.base_dir)
            gold = next(g for name, g, _ in splits if name == "test")
            expected[row, seed] = infer_scores(gold, read_result(folder / "result_test.json.gz"))
    table = md_table(noise_mod.noise_markdown(study, "cmd", samples=200),
                     "| row | seeds | Infer P |")
    for row in ("full", "atlop"):
        mean_f1 = (expected[row, 66]["f1"] + expected[row, 67]["f1"]) / 2
        assert table[row][1] == "2"
        assert float(table[row][4].split(" ± ")[0]) == pytest.approx(mean_f1, abs=0.006)
    assert expected["full", 66]["f1"] > expected["atlop", 66]["f1"] > 0
    assert table["full"][5:] == ["", "", ""]
    diffs = [expected["atlop", s]["f1"] - expected["full", s]["f1"] for s in (66, 67)]
    assert table["atlop"][5] == "full"
    assert table["atlop"][6] == ", ".join(f"{d:+.2f}" for d in diffs)
    assert float(table["atlop"][7]) == pytest.approx(sum(diffs) / 2, abs=0.006)


def test_seed_interval_is_the_student_t_interval_of_the_mean(noise_mod):
    b = noise_mod.seed_interval([-0.76, -1.36, -0.09])
    assert b["value"] == pytest.approx(-0.7367, abs=1e-4)
    assert b["sd"] == pytest.approx(0.6353, abs=1e-4)
    half = 4.302653 * b["sd"] / 3 ** 0.5                   # t(0.975, 2 df)
    assert (b["low"], b["high"]) == pytest.approx((b["value"] - half, b["value"] + half))
    one = noise_mod.seed_interval([0.5])
    assert one["value"] == 0.5 and all(one[k] != one[k] for k in ("sd", "low", "high"))  # NaN


def test_seed_spread_table_lists_each_seeds_difference(noise_mod, tmp_path):
    study = noise_mod.study_lib.load_study(write_study(tmp_path, seeds=[66, 67]))
    for seed in (66, 67):
        _fake_run(study, "full", seed, 100)
        _fake_run(study, "atlop", seed, 1 if seed == 66 else 2)
    md = noise_mod.noise_markdown(study, "cmd", samples=200)
    paired = md_table(md, "| row | vs | seed |")
    table = md_table(md, "| row | vs | seeds | dev diffs |")
    assert table["atlop"][1:3] == ["full", "2"]
    test_diffs = [float(x) for x in table["atlop"][6].split(",")]
    assert len(test_diffs) == 2 and all(d < 0 for d in test_diffs)
    # md_table keeps the last row of a first cell: seed 67's line of the per-seed table
    assert paired["atlop"][2] == "67"
    assert test_diffs[1] == pytest.approx(float(paired["atlop"][5]), abs=0.01)
    low, high = (float(x) for x in table["atlop"][8].strip("[]").split(","))
    assert low <= sum(test_diffs) / 2 <= high


@pytest.mark.parametrize("levers,message", [
    ({"x": ["nope"]}, "levers: x: 'nope' is not a row"),
    ({"x": ["full"]}, "levers: x: 'full' has no other row to be compared with"),
    ({"x": []}, "levers: x: expected a non-empty list of row names"),
    (["full"], "levers: expected a mapping"),
])
def test_bad_levers_name_the_field(noise_mod, tmp_path, levers, message):
    with pytest.raises(noise_mod.study_lib.StudyError, match=message):
        noise_mod.study_lib.load_study(write_study(tmp_path, levers=levers))


def test_non_inferiority_needs_every_row_to_hold(noise_mod, tmp_path):
    rows = [{"name": "full", "config": "smoke", "overrides": []},
            {"name": "full_fast", "config": "smoke", "overrides": ["objectives.alpha=0.5"]},
            {"name": "atlop", "config": "smoke", "overrides": ["model.baseline=true"]},
            {"name": "atlop_fast", "config": "smoke", "compare_to": "atlop",
             "overrides": ["model.baseline=true", "objectives.alpha=0.5"]}]
    spec = {"fast": {"rows": ["full_fast", "atlop_fast"], "split": "test", "margin": 0.5}}
    study = noise_mod.study_lib.load_study(write_study(tmp_path, rows=rows, seeds=[66, 67],
                                                       non_inferiority=spec))
    assert study.non_inferiority == (noise_mod.study_lib.NonInferiority(
        "fast", ("full_fast", "atlop_fast"), "test", 0.5),)
    keep = {"full": 2, "full_fast": 2, "atlop": 100, "atlop_fast": 1}    # atlop_fast loses F1
    for row, k in keep.items():
        for seed in (66, 67):
            if not (row == "full_fast" and seed == 67):
                _fake_run(study, row, seed, k)

    def table():
        md = noise_mod.noise_markdown(study, "cmd", samples=200)
        lines = md[md.index("| setting | row |"):].splitlines()[2:]
        return {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]]
                for line in lines if line.startswith("| fast |")}

    decided = table()
    assert decided["full_fast"][2:4] == ["1", "+0.00"]
    assert decided["full_fast"][6] == "pending (1 of 2 seeds)"
    assert float(decided["atlop_fast"][3]) < -0.5 and decided["atlop_fast"][6] == "no"
    assert {cells[7] for cells in decided.values()} == {"not adopted"}    # one row fails: final
    # the same study where the setting costs nothing: adopted once every seed is done
    for seed in (66, 67):
        _fake_run(study, "atlop_fast", seed, 100)
    assert {cells[7] for cells in table().values()} == {"pending"}
    _fake_run(study, "full_fast", 67, 2)
    decided = table()
    assert [decided[r][6] for r in ("full_fast", "atlop_fast")] == ["yes", "yes"]
    assert {cells[7] for cells in decided.values()} == {"adopt"}


@pytest.mark.parametrize("spec,message", [
    ({"x": {"rows": ["nope"], "split": "test", "margin": 0.5}},
     "non_inferiority: x: rows: 'nope' is not a row"),
    ({"x": {"rows": ["atlop"], "split": "train", "margin": 0.5}},
     "non_inferiority: x: split: expected dev or test"),
    ({"x": {"rows": ["atlop"], "split": "test", "margin": -1}},
     "non_inferiority: x: margin: expected a number"),
    ({"x": {"rows": ["atlop"], "split": "test"}}, "non_inferiority: x: expected exactly the keys"),
    (["atlop"], "non_inferiority: expected a mapping"),
])
def test_bad_non_inferiority_names_the_field(noise_mod, tmp_path, spec, message):
    with pytest.raises(noise_mod.study_lib.StudyError, match=message):
        noise_mod.study_lib.load_study(write_study(tmp_path, non_inferiority=spec))
