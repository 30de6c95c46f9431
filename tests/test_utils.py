"""Small shared helpers: seeding, id2rel, the dataset lookup, the pair -> document index."""
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from pyg_docre.data import id2rel, pair_batch
from pyg_docre.paths import find_dataset_file
from pyg_docre.training.trainer import set_seed as trainer_set_seed
from pyg_docre.utils import read_back, set_seed


def test_set_seed_seeds_python_numpy_and_torch():
    assert trainer_set_seed is set_seed        # the name the trainer and its callers import
    draws = []
    for _ in range(2):
        set_seed(7)
        draws.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
    assert draws[0] == draws[1]
    random.seed(7), np.random.seed(7), torch.manual_seed(7)   # what set_seed did by hand
    assert draws[0] == (random.random(), float(np.random.rand()), float(torch.rand(1)))


def test_id2rel_inverts_rel2id():
    assert id2rel({"Na": 0, "P17": 2, "P6": 1}) == ["Na", "P6", "P17"]


def test_find_dataset_file(tmp_path):
    (tmp_path / "b" / "x").mkdir(parents=True)
    (tmp_path / "b" / "x" / "f.json").write_text("[]")
    roots = [tmp_path / "a", tmp_path / "b"]
    assert find_dataset_file("x", "f.json", roots) == tmp_path / "b" / "x" / "f.json"
    with pytest.raises(FileNotFoundError, match="x/g.json not found under .*make data"):
        find_dataset_file("x", "g.json", roots)


def test_pair_batch():
    entity_ptr = torch.tensor([0, 2, 2, 5])          # documents of 2, 0 and 3 entities
    pairs = torch.tensor([[0, 1, 2, 4], [1, 0, 3, 2]])
    assert pair_batch(pairs, entity_ptr).tolist() == [0, 0, 2, 2]


def test_read_back_reads_once_and_splits():
    """Several integer tensors in one copy to the host, split back in order."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import host_syncs

    parts = [torch.tensor([0, 3, 7]), torch.tensor([[1, 2], [5, 6]]), torch.tensor(9),
             torch.tensor([], dtype=torch.long), torch.tensor([4], dtype=torch.int32)]
    counts = Counter()
    with host_syncs._SyncProneCalls(counts):
        values = read_back(parts)
    assert values == [[0, 3, 7], [1, 2, 5, 6], [9], [], [4]]
    assert sum(counts.values()) == 1, counts
    assert read_back([]) == []
