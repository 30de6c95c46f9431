"""`evaluate` refuses scores that only mean "wrong file"; `predict` checks its arguments and
output path before loading a model (no model is needed to reach these errors)."""
import json
import os

import pytest

from pyg_docre.cli import main

from docred_factory import make_doc


@pytest.fixture
def gold(tmp_path):
    path = tmp_path / "gold.json"
    path.write_text(json.dumps([make_doc("A", [[("Alpha", 0)], [("Beta", 0)]], [(0, 1, "P17")])]))
    return path


def _pred(tmp_path, title):
    path = tmp_path / "result.json"
    path.write_text(json.dumps([{"title": title, "h_idx": 0, "t_idx": 1, "r": "P17"}]))
    return path


def test_empty_gold_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert main(["evaluate", "--pred", str(_pred(tmp_path, "A")), "--gold", str(empty)]) == 2
    assert "empty.json: holds no documents" in capsys.readouterr().err


def test_no_matching_title_is_an_error(tmp_path, gold, capsys):
    assert main(["evaluate", "--pred", str(_pred(tmp_path, "Zeta")), "--gold", str(gold)]) == 2
    err = capsys.readouterr().err
    assert "none of its 1 predicted titles" in err and "'Zeta'" in err


def test_matching_titles_and_empty_predictions_still_score(tmp_path, gold, capsys):
    assert main(["evaluate", "--pred", str(_pred(tmp_path, "A")), "--gold", str(gold)]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == 100.0
    none = tmp_path / "none.json"
    none.write_text("[]")
    assert main(["evaluate", "--pred", str(none), "--gold", str(gold)]) == 0


@pytest.mark.parametrize("case,message", [
    ("batch", "--batch-size: must be >= 1"),
    ("dir", "is a folder"),
    ("noparent", "does not exist"),
    ("readonly", "not writable"),
    ("device", "--device: 'tpu9' is not a device"),
])
def test_predict_checks_before_loading_the_model(tmp_path, capsys, case, message):
    output = tmp_path / "out.json"
    extra = []
    if case == "batch":
        extra = ["--batch-size", "0"]
    elif case == "dir":
        output = tmp_path
    elif case == "noparent":
        output = tmp_path / "missing" / "out.json"
    elif case == "device":
        extra = ["--device", "tpu9"]
    elif case == "readonly":
        if os.geteuid() == 0:
            pytest.skip("root can write anywhere")
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        output = locked / "out.json"
    # The model folder does not exist: reaching the model would give another error.
    code = main(["predict", "--model", str(tmp_path / "no-model"), "--input",
                 str(tmp_path / "no-docs.json"), "--output", str(output), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "no-model" not in err


def test_predict_with_a_missing_model_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "docs.json").write_text("[]")
    code = main(["predict", "--model", str(tmp_path / "no-model"), "--input",
                 str(tmp_path / "docs.json"), "--output", str(tmp_path / "out.json"),
                 "--device", "cpu"])
    assert code == 2
    assert "no-model: does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
