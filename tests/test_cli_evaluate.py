"""``python -m pyg_docre evaluate``: one JSON line in percent, clear errors with exit status 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyg_docre.cli import main

from docred_factory import make_doc

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["precision", "recall", "f1", "ign_f1", "intra_f1", "inter_f1"]


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def files(tmp_path):
    gold = [
        make_doc("A", [[("Alpha", 0)], [("Beta", 0)], [("Gamma", 1)]],
                 [(0, 1, "P17"), (0, 2, "P131")]),                 # intra, inter
        make_doc("B", [[("Paris", 0)], [("France", 0)]], [(0, 1, "P17")]),   # intra
    ]
    train = [make_doc("T", [[("Paris", 0)], [("France", 1)]], [(0, 1, "P17")])]
    preds = [
        {"title": "A", "h_idx": 0, "t_idx": 1, "r": "P17"},   # correct, intra
        {"title": "A", "h_idx": 0, "t_idx": 1, "r": "P17"},   # duplicate
        {"title": "A", "h_idx": 0, "t_idx": 2, "r": "P17"},   # wrong, inter
        {"title": "B", "h_idx": 0, "t_idx": 1, "r": "P17"},   # correct, intra, in train
        {"title": "X", "h_idx": 0, "t_idx": 1, "r": "P6"},    # unknown title
    ]
    return {
        "gold": write_json(tmp_path / "gold.json", gold),
        "train": write_json(tmp_path / "train.json", train),
        "pred": write_json(tmp_path / "result.json", preds),
        "rel_info": write_json(tmp_path / "rel_info.json", {"P17": "country",
                                                           "P131": "located in"}),
    }


# 4 unique predictions, 3 gold facts, 2 correct (1 in train)
P, R = 2 / 4, 2 / 3
IGN_P = 1 / (3 + 1e-5)
EXPECTED = {
    "precision": 100 * P, "recall": 100 * R, "f1": 100 * 2 * P * R / (P + R),
    "ign_f1": 100 * 2 * IGN_P * R / (IGN_P + R),
    "intra_f1": 100.0,   # 2 of 2 intra predictions, 2 intra gold facts
    "inter_f1": 0.0,     # 1 wrong inter prediction, 1 inter gold fact
}


def run_cli(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", "pyg_docre", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_evaluate_subprocess_with_train_and_per_relation(files):
    proc = run_cli("evaluate", "--pred", files["pred"], "--gold", files["gold"],
                   "--train", files["train"], "--rel-info", files["rel_info"], "--per-relation")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    scores = json.loads(lines[0])
    assert list(scores) == KEYS
    for key in KEYS:
        assert scores[key] == pytest.approx(EXPECTED[key], abs=5e-5), key   # printed rounded to 4 decimals
    assert scores["ign_f1"] == pytest.approx(400 / 9, abs=1e-3)   # ign_p ~ 1/3, R = 2/3
    assert scores["ign_f1"] < scores["f1"]
    # the per-relation table goes to stderr, in percent, with names
    table = proc.stderr
    assert "relation" in table and "country" in table and "located in" in table
    p17 = next(line for line in table.splitlines() if line.startswith("P17")).split()
    # P17: 2 gold (A 0-1, B 0-1), 3 predicted (A 0-1, A 0-2, B 0-1), 2 correct
    assert p17 == ["P17", "country", "66.67", "100.0", "80.0", "2", "3", "2"]
    assert "P6" in table and "Traceback" not in table


def test_evaluate_subprocess_without_train(files):
    proc = run_cli("evaluate", "--pred", files["pred"], "--gold", files["gold"])
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout.strip())
    assert list(scores) == KEYS and scores["ign_f1"] is None
    assert scores["f1"] == pytest.approx(EXPECTED["f1"], abs=5e-5)
    assert "--train" in proc.stderr and "ign_f1" in proc.stderr


def test_evaluate_subprocess_missing_file(files, tmp_path):
    missing = tmp_path / "no_such_result.json"
    proc = run_cli("evaluate", "--pred", missing, "--gold", files["gold"])
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert str(missing) in proc.stderr and "no such file" in proc.stderr


def test_evaluate_subprocess_gold_not_json(files, tmp_path):
    bad = tmp_path / "broken_gold.json"
    bad.write_text("[{\"title\": ")
    proc = run_cli("evaluate", "--pred", files["pred"], "--gold", bad)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and "not valid JSON" in proc.stderr


def test_evaluate_in_process_matches(files, capsys):
    assert main(["evaluate", "--pred", str(files["pred"]), "--gold", str(files["gold"]),
                 "--train", str(files["train"])]) == 0
    out = capsys.readouterr().out
    scores = json.loads(out)
    assert scores == pytest.approx(EXPECTED, abs=5e-5)


def _mutate_json(path, mutate):
    obj = json.loads(path.read_text())
    mutate(obj)
    path.write_text(json.dumps(obj))


@pytest.mark.parametrize("target,mutate,expected", [
    ("pred", lambda p: p[3].update(t_idx=5), ["prediction 3", "'B'", "t_idx"]),
    ("pred", lambda p: p[1].pop("r"), ["prediction 1", "r: missing key"]),
    ("pred", lambda p: p[2].update(h_idx=2), ["prediction 2", "same entity"]),
    ("gold", lambda g: g[1]["labels"][0].pop("t"), ["document 1", "'B'", "labels[0].t"]),
    ("gold", lambda g: g[0]["vertexSet"][2][0].update(sent_id=7), ["document 0",
                                                                    "vertexSet[2][0].sent_id"]),
    ("gold", lambda g: g.append(dict(g[0])), ["document 2", "'A'", "title", "duplicate"]),
    ("train", lambda t: t[0]["labels"][0].update(h=4), ["document 0", "labels[0].h"]),
    ("train", lambda t: t.clear() or t.append({"title": "T"}), ["document 0", "sents"]),
])
def test_evaluate_bad_input_names_file_and_field(files, capsys, target, mutate, expected):
    _mutate_json(files[target], mutate)
    code = main(["evaluate", "--pred", str(files["pred"]), "--gold", str(files["gold"]),
                 "--train", str(files["train"])])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(files[target]) in err
    for fragment in expected:
        assert fragment in err


def test_evaluate_other_bad_inputs(files, tmp_path, capsys):
    # a directory instead of a file
    assert main(["evaluate", "--pred", str(tmp_path), "--gold", str(files["gold"])]) == 2
    assert str(tmp_path) in capsys.readouterr().err
    # rel_info that is not a JSON object
    bad_info = write_json(tmp_path / "bad_rel_info.json", ["P17"])
    assert main(["evaluate", "--pred", str(files["pred"]), "--gold", str(files["gold"]),
                 "--rel-info", str(bad_info)]) == 2
    assert "bad_rel_info.json" in capsys.readouterr().err
    # usage errors
    assert main(["evaluate", "--pred", str(files["pred"])]) == 2
    assert "--gold" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["no-such-command"]) == 2
