"""Saved models: atomic saves, loading on the requested device, and a named CheckpointError
for every kind of damage (never a library traceback, never the network)."""
import dataclasses
import json
import os
import shutil

import pytest
import torch

from pyg_docre.config import GTNConfig, ModelConfig, ObjectivesConfig
from pyg_docre.models import CheckpointError, DocREModel


@pytest.fixture(scope="module")
def saved(tmp_path_factory, rel2id, tokenizer):
    torch.manual_seed(0)
    model = DocREModel(ModelConfig(gtn=GTNConfig(num_layers=1)), rel2id,
                       **ObjectivesConfig(distill_layers=[6]).model_outputs())
    directory = tmp_path_factory.mktemp("ckpt") / "model"
    model.save_pretrained(directory, tokenizer=tokenizer)
    return model, directory


@pytest.fixture
def copy(saved, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved[1], target)
    return target


def test_round_trip_on_the_requested_device(saved):
    model, directory = saved
    loaded = DocREModel.from_pretrained(directory, map_location="cpu")
    assert {p.device for p in loaded.parameters()} == {torch.device("cpu")}
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert DocREModel.load_tokenizer(directory).is_fast


def test_save_is_atomic_and_modes_are_consistent(saved, tmp_path, tokenizer):
    model, directory = saved
    listing = sorted(os.listdir(directory.parent))
    assert listing == ["model"]                                 # no temporary folder left
    modes = {p.name: p.stat().st_mode & 0o777 for p in directory.rglob("*") if p.is_file()}
    assert len(set(modes.values())) == 1, modes                 # weights no longer 0600
    # Saving again replaces the folder as a whole (a stale file does not survive).
    target = tmp_path / "again"
    shutil.copytree(directory, target)
    (target / "stale.bin").write_bytes(b"x")
    model.save_pretrained(target, tokenizer=tokenizer)
    assert not (target / "stale.bin").exists()


def _corrupt_config(path, change):
    meta = json.loads((path / "config.json").read_text())
    change(meta)
    (path / "config.json").write_text(json.dumps(meta))


DAMAGE = {
    "missing dir": (lambda p: shutil.rmtree(p), "does not exist"),
    "missing config": (lambda p: (p / "config.json").unlink(), "config.json: missing"),
    "broken config": (lambda p: (p / "config.json").write_text("{not json"), "not valid JSON"),
    "missing key": (lambda p: _corrupt_config(p, lambda m: m.pop("rel2id")), "'rel2id'"),
    "wrong format": (lambda p: _corrupt_config(p, lambda m: m.update(format="x")), "'format'"),
    "unknown model key": (lambda p: _corrupt_config(p, lambda m: m["model"].update(foo=1)),
                          "model.foo"),
    "missing weights": (lambda p: (p / "model.safetensors").unlink(), "model.safetensors: missing"),
    "truncated weights": (lambda p: (p / "model.safetensors").write_bytes(
        (p / "model.safetensors").read_bytes()[:5000]), "model.safetensors"),
    "empty weights": (lambda p: (p / "model.safetensors").write_bytes(b""), "model.safetensors"),
    "random weights": (lambda p: (p / "model.safetensors").write_bytes(os.urandom(4096)),
                       "model.safetensors"),
    "other architecture": (lambda p: _corrupt_config(
        p, lambda m: m["model"]["gtn"].update(num_layers=2)), "do not match the architecture"),
    "flat and nested key": (lambda p: _corrupt_config(p, lambda m: m["model"].update(
        gtn_layers=1)), "model.gtn_layers and model.gtn.num_layers are both given"),
    "bad outputs": (lambda p: _corrupt_config(p, lambda m: m["outputs"].pop("mask_ratio")),
                    "'outputs' must be an object"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damage_gives_a_named_checkpoint_error(copy, kind):
    damage, message = DAMAGE[kind]
    damage(copy)
    with pytest.raises(CheckpointError, match=message):
        DocREModel.from_pretrained(copy)


@pytest.mark.parametrize("kind", ["missing", "broken"])
def test_tokenizer_damage_is_a_checkpoint_error_without_network(copy, kind):
    if kind == "missing":
        shutil.rmtree(copy / "tokenizer")
    else:
        (copy / "tokenizer" / "tokenizer.json").write_text("{broken")
        for other in ("vocab.txt", "vocab.json"):
            (copy / "tokenizer" / other).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="tokenizer"):
        DocREModel.load_tokenizer(copy)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loads_directly_onto_cuda(saved):
    loaded = DocREModel.from_pretrained(saved[1], map_location="cuda")
    assert {p.device.type for p in loaded.parameters()} == {"cuda"}


def test_checkpoints_of_the_flat_model_layout_still_load(saved, copy):
    """config.json of models saved before the model.gtn section: flat keys and the whole
    objectives section instead of ``outputs``."""
    model, _ = saved
    meta = json.loads((copy / "config.json").read_text())
    gtn = meta["model"].pop("gtn")
    meta["model"].update(gtn_layers=gtn.pop("num_layers"), gtn_dropout=gtn.pop("dropout"), **gtn)
    del meta["outputs"]
    meta["objectives"] = dataclasses.asdict(ObjectivesConfig(distill_layers=[6]))
    (copy / "config.json").write_text(json.dumps(meta))
    with pytest.warns(FutureWarning, match="model.gtn"):
        loaded = DocREModel.from_pretrained(copy)
    assert loaded.config == model.config
    assert (loaded.distill_layers, loaded.reconstruction) == ([6], True)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
