"""`pyg-docre train / predict / evaluate` as a user of a trained model calls them."""
import json
import sys

import pytest

from pyg_docre.cli import CONFIG_DIR, find_config, list_configs, main
from pyg_docre.data import load_docred
from pyg_docre.metrics import DocREDScorer, read_result

from run_helpers import ROOT, run_python

ALL = "-inf"


def cli(*args):
    return run_python("-m", "pyg_docre", *args)


# ------------------------------------------------------------------------------------------
# train

def test_list_configs_shows_the_packaged_configs(capsys):
    assert main(["train", "--list-configs"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()]
    assert {"docred_bert", "redocred_minilm_cpu", "smoke"} <= set(names) == set(list_configs())
    assert "DocRED, BERT-base-cased" in out


def test_configs_are_package_data():
    assert (CONFIG_DIR / "docred_bert.yaml").is_file()
    assert CONFIG_DIR.parent.name == "pyg_docre"
    import configparser
    from pathlib import Path
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    assert "configs/*.yaml" in cfg["options.package_data"]["pyg_docre"]
    # old spellings keep working
    for name in ("smoke", "smoke.yaml", "experiments/configs/smoke.yaml"):
        assert find_config(name) == CONFIG_DIR / "smoke.yaml"


def test_dry_run_prints_the_resolved_config_without_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", "smoke", "--dry-run", "--output", str(out),
                 "--set", "training.seed=7"]) == 0
    captured = capsys.readouterr()
    import yaml
    resolved = yaml.safe_load(captured.out)
    assert resolved["training"]["seed"] == 7 and resolved["data"]["train"]["docs"] == "0:8"
    assert "dry run ok" in captured.err and "train 8, dev 4, test 4" in captured.err
    assert not out.exists()


@pytest.mark.parametrize("override,fragment", [
    ("data.dev.file=re-docred/nope.json", "nope.json: no such file"),
    ("data.train.docs=900:1000", "data.train.docs"),
    ("model.encoder=/no/such/encoder", "model.encoder"),
    ("objectives.distill_layers=[3,9]", "objectives.distill_layers: [9]"),
    ("training.epoch=2", "training.epoch"),
])
def test_dry_run_reports_what_would_fail(override, fragment, capsys):
    assert main(["train", "--config", "smoke", "--dry-run", "--set", override]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_train_needs_a_config(capsys):
    assert main(["train"]) == 2
    assert "--list-configs" in capsys.readouterr().err
    assert main(["train", "--config", "no_such_config"]) == 2
    assert "available: " in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# predict

@pytest.fixture(scope="module")
def checkpoint(smoke_run):
    return smoke_run[0] / "checkpoint"


@pytest.fixture(scope="module")
def docs(redocred_test_path):
    return [{k: v for k, v in d.items() if k != "labels"}
            for d in load_docred(redocred_test_path)[0:3]]


def test_predict_to_stdout_rich_with_threshold_and_top_k(checkpoint, docs, tmp_path):
    path = tmp_path / "docs.json"
    path.write_text(json.dumps(docs))
    proc = cli("predict", "--model", checkpoint, "--input", path, "--output", "-",
               "--format", "rich", "--threshold", ALL, "--top-k", "1", "--device", "cpu",
               "--progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (ROOT / "-").exists()                  # the subprocess ran in ROOT
    rows = json.loads(proc.stdout)
    pairs = sum(len(d["vertexSet"]) * (len(d["vertexSet"]) - 1) for d in docs)
    assert len(rows) == pairs
    row = rows[0]
    assert set(row) == {"title", "h_idx", "t_idx", "r", "h_name", "t_name", "relation_name",
                        "score", "h_pos", "t_pos"}
    doc = next(d for d in docs if d["title"] == row["title"])
    assert row["h_name"] == doc["vertexSet"][row["h_idx"]][0]["name"]
    assert row["h_pos"][0] == [doc["vertexSet"][row["h_idx"]][0]["sent_id"],
                               *doc["vertexSet"][row["h_idx"]][0]["pos"]]
    assert "extracting relations" in proc.stderr      # the progress bar
    assert f"{pairs} relations predicted in 3 documents -> stdout" in proc.stderr


def test_predict_accepts_a_single_document_object(checkpoint, docs, tmp_path, capsys):
    one = tmp_path / "one.json"
    one.write_text(json.dumps(docs[0]))
    out = tmp_path / "result.json"
    assert main(["predict", "--model", str(checkpoint), "--input", str(one), "--output",
                 str(out), "--threshold", ALL, "--top-k", "1"]) == 0
    rows = read_result(out)
    n = len(docs[0]["vertexSet"])
    assert len(rows) == n * (n - 1) and set(rows[0]) == {"title", "h_idx", "t_idx", "r"}
    # a JSON value that is neither
    bad = tmp_path / "bad.json"
    bad.write_text("42")
    assert main(["predict", "--model", str(checkpoint), "--input", str(bad), "--output",
                 str(tmp_path / "x.json")]) == 2
    assert "one document object" in capsys.readouterr().err


def test_predict_plain_text_without_a_backend_names_the_extra(checkpoint, tmp_path, capsys):
    try:
        import spacy  # noqa: F401
        pytest.skip("spaCy is installed: the missing-backend error cannot be produced")
    except ImportError:
        pass
    text = tmp_path / "plain.txt"
    text.write_text("Paris is the capital of France.")
    out = tmp_path / "result.json"
    assert main(["predict", "--model", str(checkpoint), "--input", str(text), "--output",
                 str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'pyg_docre[text]'" in err and str(text) in err
    assert not out.exists()


def test_predict_plain_text_with_spacy(checkpoint, tmp_path):
    spacy = pytest.importorskip("spacy")
    try:
        spacy.load("en_core_web_sm")
    except OSError:
        pytest.skip("no English spaCy pipeline installed")
    text = tmp_path / "plain.txt"
    text.write_text("Angela Merkel was born in Hamburg. Hamburg is a city in Germany.")
    proc = cli("predict", "--model", checkpoint, "--input", text, "--output", "-", "--format",
               "rich", "--threshold", ALL, "--top-k", "1")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    raw = text.read_text()
    assert rows and all(raw[s:e] == r["h_name"] for r in rows for s, e in r["h_mentions"][:1])


# ------------------------------------------------------------------------------------------
# evaluate

def test_train_docs_reproduces_the_run_ign_f1(smoke_run, redocred_dev_path, redocred_test_path,
                                              capsys):
    out, _ = smoke_run
    metrics = json.loads((out / "metrics.json").read_text())
    pred = out / "result_test.json"
    args = ["evaluate", "--pred", str(pred), "--gold", str(redocred_test_path),
            "--train", str(redocred_dev_path)]
    # the smoke run's Ign F1 is against its 8 training documents
    assert main(args + ["--train-docs", "0:8"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["ign_f1"] == pytest.approx(metrics["test"]["ign_f1"], abs=1e-4)
    # the CPU protocol: training documents 0-449 of dev_revised.json
    assert main(args + ["--train-docs", "0:450"]) == 0
    scores = json.loads(capsys.readouterr().out)
    gold = load_docred(redocred_test_path)
    expected = DocREDScorer(gold, load_docred(redocred_dev_path)[0:450]).score(
        read_result(pred)).to_dict(percent=True)
    assert scores == pytest.approx(expected, abs=1e-4)
    assert main(args[:-2] + ["--train-docs", "0:450"]) == 2
    assert "--train-docs needs --train" in capsys.readouterr().err
    assert main(args + ["--train-docs", "0:9999:2"]) == 2
    assert "--train-docs" in capsys.readouterr().err


def test_evaluate_rounds_to_four_decimals(smoke_run, redocred_test_path, capsys, tmp_path):
    gold = load_docred(redocred_test_path)[0:4]
    # two of three facts of one document, one wrong prediction: thirds everywhere
    doc = next(d for d in gold if len(d["labels"]) >= 3)
    gold_path = tmp_path / "gold.json"
    gold_path.write_text(json.dumps([doc]))
    labels = doc["labels"]
    wrong = next((h, t) for h in range(len(doc["vertexSet"])) for t in range(len(doc["vertexSet"]))
                 if h != t and not any(l["h"] == h and l["t"] == t for l in labels))
    preds = [{"title": doc["title"], "h_idx": l["h"], "t_idx": l["t"], "r": l["r"]}
             for l in labels[:2]] + [{"title": doc["title"], "h_idx": wrong[0],
                                      "t_idx": wrong[1], "r": "P17"}]
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(preds))
    assert main(["evaluate", "--pred", str(pred_path), "--gold", str(gold_path)]) == 0
    line = capsys.readouterr().out.strip()
    scores = json.loads(line)
    assert scores["precision"] == round(200 / 3, 4) == 66.6667
    for value in scores.values():
        assert value is None or len(repr(value).split(".")[-1]) <= 4


def test_pr_curve_from_rich_predictions(checkpoint, docs, redocred_test_path, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")          # (installed by pyg_docre; absent from the GPU image)
    input_path = tmp_path / "docs.json"
    input_path.write_text(json.dumps(docs))
    rich = tmp_path / "rich.json"
    assert main(["predict", "--model", str(checkpoint), "--input", str(input_path), "--output",
                 str(rich), "--format", "rich", "--threshold", ALL]) == 0
    capsys.readouterr()
    png = tmp_path / "pr.png"
    assert main(["evaluate", "--pred", str(rich), "--gold", str(redocred_test_path),
                 "--pr-curve", str(png)]) == 0
    captured = capsys.readouterr()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "precision-recall curve" in captured.err and "best F1" in captured.err
    json.loads(captured.out)                                   # still one JSON line
    # the curve's recall is DocRED recall: at the lowest threshold it equals the file's recall
    from pyg_docre.metrics.curves import precision_recall_points
    gold = load_docred(redocred_test_path)
    scorer = DocREDScorer(gold)
    curve = precision_recall_points(read_result(rich), scorer)
    assert curve.recall[0] == pytest.approx(scorer.score(read_result(rich)).recall)
    # an official file has no scores
    official = tmp_path / "official.json"
    official.write_text(json.dumps([{k: r[k] for k in ("title", "h_idx", "t_idx", "r")}
                                    for r in read_result(rich)]))
    assert main(["evaluate", "--pred", str(official), "--gold", str(redocred_test_path),
                 "--pr-curve", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "score" in err and "--format rich" in err and not (tmp_path / "x.png").exists()


def test_pr_curve_without_matplotlib_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["evaluate", "--pred", str(tmp_path / "p.json"), "--gold",
                 str(tmp_path / "g.json"), "--pr-curve", str(tmp_path / "x.png")]) == 2
    assert "pip install 'pyg_docre[bench]'" in capsys.readouterr().err
